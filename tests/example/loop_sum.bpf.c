// Sums with the bpf_loop helper, which arrived in Linux 5.17.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

static long add(__u32 index, void *ctx)
{
	__u64 *total = ctx;

	*total += index;
	return 0;
}

SEC("xdp")
int xdp_loop_sum(struct xdp_md *ctx)
{
	__u64 total = 0;

	bpf_loop(16, add, &total, 0);
	return total == 120 ? XDP_PASS : XDP_ABORTED;
}

char LICENSE[] SEC("license") = "GPL";
