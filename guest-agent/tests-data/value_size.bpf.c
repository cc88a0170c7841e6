// btf_maps.rs's tests: maps whose value size a suite sets. `stacks` declares
// none, for its loader to set at run time; `sized` declares one, through the
// same `int (*)[8]` type as its max_entries; `first` and `second` share a
// named definition; `counts` has a typed value; `legacy` is a map of the
// old `maps` section. `count_exits` has a CO-RE record.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct trace_event_raw_sys_exit {
	long ret;
} __attribute__((preserve_access_index));

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__type(key, __u32);
} stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, 8);
	__uint(max_entries, 8);
} sized SEC(".maps");

struct shared_stacks {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__type(key, __u32);
	__uint(max_entries, 4);
};

struct shared_stacks first SEC(".maps"), second SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

struct legacy_map_def {
	unsigned int type;
	unsigned int key_size;
	unsigned int value_size;
	unsigned int max_entries;
	unsigned int map_flags;
};

struct legacy_map_def legacy SEC("maps") = {
	.type = BPF_MAP_TYPE_ARRAY,
	.key_size = sizeof(__u32),
	.value_size = sizeof(__u32),
	.max_entries = 1,
};

SEC("kprobe/do_sys_openat2")
int record_stacks(void *ctx)
{
	__u32 key = bpf_get_stackid(ctx, &stacks, 0);
	__u64 *count = bpf_map_lookup_elem(&counts, &key);

	if (count)
		__sync_fetch_and_add(count, 1);
	bpf_get_stackid(ctx, &sized, 0);
	bpf_get_stackid(ctx, &first, 0);
	bpf_get_stackid(ctx, &second, 0);
	return bpf_map_lookup_elem(&legacy, &key) != 0;
}

SEC("tracepoint/syscalls/sys_exit_openat")
int count_exits(struct trace_event_raw_sys_exit *ctx)
{
	__u32 key = BPF_CORE_READ(ctx, ret);

	return bpf_map_lookup_elem(&counts, &key) != 0;
}

char LICENSE[] SEC("license") = "GPL";
