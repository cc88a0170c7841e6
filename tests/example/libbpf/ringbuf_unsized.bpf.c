// A ring buffer declared with no size, as a profiler declares one that its
// loader sizes at run time from the CPU count; the suite gives the size.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
} events SEC(".maps");

SEC("xdp")
int xdp_report(struct xdp_md *ctx)
{
	__u32 len = ctx->data_end - ctx->data;

	bpf_ringbuf_output(&events, &len, sizeof(len), 0);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
