// Two tracepoint programs of one object, as in bcc's mountsnoop: the first
// reads into a flexible array member with CO-RE, which aya 0.14 cannot
// relocate; the second only reads `ret`. Each is judged on its own.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct trace_event_raw_sys_enter {
	long id;
	char __data[0];
} __attribute__((preserve_access_index));

struct trace_event_raw_sys_exit {
	long ret;
} __attribute__((preserve_access_index));

SEC("tracepoint/syscalls/sys_enter_mount")
int mount_entry(struct trace_event_raw_sys_enter *ctx)
{
	return BPF_CORE_READ(ctx, __data[0]) == 0;
}

SEC("tracepoint/syscalls/sys_exit_mount")
int mount_exit(struct trace_event_raw_sys_exit *ctx)
{
	return BPF_CORE_READ(ctx, ret) == 0;
}

char LICENSE[] SEC("license") = "GPL";
