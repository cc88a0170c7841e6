// A socket filter: keeps whole TCP packets, drops everything else. As on an
// AF_INET socket (and in BPF_PROG_TEST_RUN), the packet starts at its IP
// header.
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>

SEC("socket")
int socket_tcp_only(struct __sk_buff *skb)
{
	__u8 protocol = 0;

	if (bpf_skb_load_bytes(skb, 9, &protocol, 1) < 0)
		return 0;
	return protocol == IPPROTO_TCP ? skb->len : 0;
}

char LICENSE[] SEC("license") = "GPL";
