// Entry programs declared `static`, as the OpenTelemetry profiler declares
// its unwinders (loaded by cilium/ebpf, reached by tail calls): each is a
// program of the object and gets its own verdict. libbpf refuses static
// entry programs; aya and cilium/ebpf load them.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);
} unwinders SEC(".maps");

// Loads everywhere.
SEC("xdp") __attribute__((used))
static int xdp_static_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

// Rejected everywhere: reads past the packet without a bounds check.
SEC("xdp") __attribute__((used))
static int xdp_static_unchecked(struct xdp_md *ctx)
{
	unsigned char *data = (void *)(long)ctx->data;
	return data[20] == 6 ? XDP_DROP : XDP_PASS;
}

// A global entry that tail-calls the unwinders.
SEC("xdp")
int xdp_global_entry(struct xdp_md *ctx)
{
	bpf_tail_call(ctx, &unwinders, 0);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
