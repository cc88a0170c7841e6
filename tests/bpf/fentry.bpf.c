// A BTF-attached tracing program: its target comes from the section name.
// bpf_fentry_test1 exists in every kernel with BPF_PROG_TEST_RUN for this use.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("fentry/bpf_fentry_test1")
int trace_fentry_test1(void *ctx)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
