// Calls the bpf_loop helper, added in Linux 5.17: rejected by older kernels.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

static long count(__u32 index, void *ctx)
{
	__u64 *total = ctx;

	*total += index;
	return 0;
}

SEC("xdp")
int sum_with_loop(struct xdp_md *ctx)
{
	__u64 total = 0;

	bpf_loop(16, count, &total, 0);
	return total == 120 ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
