// Counts, per task, the times it ran a BPF test program: a
// BPF_MAP_TYPE_TASK_STORAGE map (Linux 5.11), which aya creates only when
// its loader opts in.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} runs SEC(".maps");

SEC("fentry/bpf_fentry_test1")
int count_runs(void *ctx)
{
	__u64 *count = bpf_task_storage_get(&runs, bpf_get_current_task_btf(), 0,
					    BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (count)
		*count += 1;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
