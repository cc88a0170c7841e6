// A static XDP program: aya loads it as it is; libbpf refuses `static`
// entry programs.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
static int static_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
