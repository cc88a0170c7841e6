// A tail call from a BPF subprogram (bpf-to-bpf call): the x86-64 JIT
// allows it since Linux 5.10, arm64's since 6.0. Elsewhere the verifier
// rejects it ("tail_calls are not allowed in non-JITed programs with
// bpf-to-bpf calls").
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} jump SEC(".maps");

static __attribute__((noinline)) int hop(struct xdp_md *ctx)
{
	bpf_tail_call(ctx, &jump, 0);
	return XDP_PASS;
}

SEC("xdp")
int xdp_tail_from_subprog(struct xdp_md *ctx)
{
	return hop(ctx);
}

char LICENSE[] SEC("license") = "GPL";
