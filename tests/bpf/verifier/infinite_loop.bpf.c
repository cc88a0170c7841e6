// Rejected everywhere: a loop whose state never changes.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int spins(struct xdp_md *ctx)
{
	int i = 0;

	while (i < 10)
		asm volatile("" : "+r"(i));
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
