// A BTF-attached tracing program: its target comes from the section name.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("fentry/do_unlinkat")
int trace_unlinkat(void *ctx)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
