// A kprobe: loads everywhere, but BPF_PROG_TEST_RUN cannot run it.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("kprobe/do_sys_openat2")
int kprobe_open(void *ctx)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
