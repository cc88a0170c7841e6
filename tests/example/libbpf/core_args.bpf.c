// A tracepoint reading its second argument through CO-RE, as bcc's
// execsnoop and opensnoop do: `ctx->args[1]` of a struct whose last member
// is a flexible array.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct trace_entry {
	unsigned short type;
	unsigned char flags;
	unsigned char preempt_count;
	int pid;
} __attribute__((preserve_access_index));

struct trace_event_raw_sys_enter {
	struct trace_entry ent;
	long int id;
	unsigned long args[6];
	char __data[0];
} __attribute__((preserve_access_index));

__u64 last_flags = 0;

SEC("tracepoint/syscalls/sys_enter_openat")
int openat_flags(struct trace_event_raw_sys_enter *ctx)
{
	last_flags = BPF_CORE_READ(ctx, args[2]);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
