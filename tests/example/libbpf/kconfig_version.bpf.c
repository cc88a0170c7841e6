// Reads the running kernel's version from a `.kconfig` extern, as bcc's
// libbpf-tools do, and returns whether it is at least 5.0 (1) or not (0).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

extern unsigned int LINUX_KERNEL_VERSION __kconfig;

SEC("raw_tracepoint/sys_enter")
int kernel_at_least_5(void *ctx)
{
	return LINUX_KERNEL_VERSION >= ((5 << 16) | (0 << 8));
}

char LICENSE[] SEC("license") = "GPL";
