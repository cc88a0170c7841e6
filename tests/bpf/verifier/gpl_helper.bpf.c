// Rejected everywhere: a GPL-only helper (bpf_trace_printk) called from a
// program that is not GPL-compatible.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int proprietary_print(struct xdp_md *ctx)
{
	bpf_printk("hello");
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Proprietary";
