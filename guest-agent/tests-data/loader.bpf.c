// loader/'s tests: programs global and static, in shared and own sections,
// beside a .text function; globals in .rodata, .data and .bss; maps a
// loader sizes (PERF_EVENT_ARRAY, DEVMAP) or the suite must (STACK_TRACE,
// RINGBUF). WITH_STATIC adds the static program libbpf refuses.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

const volatile __u32 threshold = 0x11223344;
const volatile __u64 limit = 0x5566778899aabbccULL;
__u32 hits = 7;
__u64 seen;

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(max_entries, 4);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} sized_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__type(key, __u32);
} stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 8);
	__uint(key_size, sizeof(__u32));
} devices SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
} ring SEC(".maps");

__noinline int over(__u64 value)
{
	return value > threshold && value < limit;
}

SEC("xdp")
int count(struct xdp_md *ctx)
{
	hits++;
	seen = ctx->data_end - ctx->data;
	if (over(seen))
		return bpf_redirect_map(&devices, 0, XDP_PASS);
	return XDP_PASS;
}

SEC("xdp")
int count_too(struct xdp_md *ctx)
{
	return hits > 1 ? XDP_PASS : XDP_DROP;
}

#ifdef WITH_STATIC
SEC("tc") __attribute__((used))
static int classify(struct __sk_buff *skb)
{
	return 0;
}
#endif

SEC("kprobe/do_sys_openat2")
int record_stack(void *ctx)
{
	__u32 cpu = 0;

	bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, &cpu, sizeof(cpu));
	bpf_perf_event_output(ctx, &sized_events, BPF_F_CURRENT_CPU, &cpu, sizeof(cpu));
	bpf_ringbuf_output(&ring, &cpu, sizeof(cpu), 0);
	return bpf_get_stackid(ctx, &stacks, 0) < 0;
}

char LICENSE[] SEC("license") = "GPL";
