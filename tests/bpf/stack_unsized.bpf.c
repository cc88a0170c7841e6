// A stack trace map declared without a value size (or entries), as bcc's
// libbpf-tools declare theirs for their loader to size at run time
// (bpf_map__set_value_size, bpf_map__set_max_entries): the suite sizes it.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__type(key, __u32);
} stacks SEC(".maps");

SEC("kprobe/do_sys_openat2")
int record_stack(void *ctx)
{
	return bpf_get_stackid(ctx, &stacks, 0) < 0;
}

char LICENSE[] SEC("license") = "GPL";
