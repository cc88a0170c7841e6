// Verifying a program that calls bpf_probe_write_user makes the kernel log
// "... is installing a program with bpf_probe_write_user helper that may
// corrupt user memory!": a real kernel line, which must go with this
// program's load test and no other.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("kprobe/do_nanosleep")
int quiet(void *ctx)
{
	return 0;
}

SEC("kprobe/do_nanosleep")
int writes_user(void *ctx)
{
	char zero = 0;

	bpf_probe_write_user((void *)8, &zero, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
