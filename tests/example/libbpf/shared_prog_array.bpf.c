// Two program families tail-calling through one program array: the
// kernel lets one program type own a program array, so in a single
// instance of the object whichever family loads second fails after a clean
// verification. Each program's verdict must not depend on that order.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} jumps SEC(".maps");

SEC("kprobe/do_unlinkat")
int from_kprobe(void *ctx)
{
	bpf_tail_call(ctx, &jumps, 0);
	return 0;
}

SEC("perf_event")
int from_perf_event(void *ctx)
{
	bpf_tail_call(ctx, &jumps, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
