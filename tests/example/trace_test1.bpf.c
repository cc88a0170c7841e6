// A tracing program (load only): fentry on a function every kernel with
// BPF_PROG_TEST_RUN has, attached through the kernel's BTF.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("fentry/bpf_fentry_test1")
int trace_test1(void *ctx)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
