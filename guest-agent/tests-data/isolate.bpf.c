// isolate.rs's tests. mount_exit (CO-RE, a map, a subprogram) shares its
// object, and its section, with programs whose CO-RE access into a flexible
// array member aya-obj 0.3 cannot relocate, as in bcc's mountsnoop; the
// object alone (ONLY_GOOD) is the reference. In `xdp`: a static program, and
// a program that calls another.
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

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, long);
} results SEC(".maps");

__noinline int record(long ret)
{
	__u32 key = 0;

	return bpf_map_update_elem(&results, &key, &ret, BPF_ANY);
}

#ifndef ONLY_GOOD
// INLINE puts the access aya fails on in mount_entry's own section.
#ifdef INLINE
static __always_inline long first_byte(struct trace_event_raw_sys_enter *ctx)
#else
static __noinline long first_byte(struct trace_event_raw_sys_enter *ctx)
#endif
{
	return BPF_CORE_READ(ctx, __data[0]);
}

SEC("tracepoint/syscalls/sys_enter_mount")
int mount_entry(struct trace_event_raw_sys_enter *ctx)
{
	return first_byte(ctx) == 0;
}

SEC("tracepoint/syscalls/sys_exit_mount")
int mount_exit_data(struct trace_event_raw_sys_enter *ctx)
{
	return BPF_CORE_READ(ctx, __data[0]) == 0;
}
#endif

SEC("tracepoint/syscalls/sys_exit_mount")
int mount_exit(struct trace_event_raw_sys_exit *ctx)
{
	return record(BPF_CORE_READ(ctx, ret));
}

#ifndef ONLY_GOOD
SEC("xdp")
static int quiet(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("xdp")
__noinline int pass(struct xdp_md *ctx)
{
	return ctx->data_end > ctx->data ? XDP_PASS : XDP_DROP;
}

SEC("xdp")
int pass_too(struct xdp_md *ctx)
{
	return pass(ctx);
}
#endif

char LICENSE[] SEC("license") = "GPL";
