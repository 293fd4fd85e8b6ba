/*
 * GNU Mach's network-device messages as C code sees them: the layout of
 * struct net_rcv_msg and the constants of <device/net_status.h>, a
 * net_rcv_msg built as net_deliver (device/net_io.c) builds it, a receiver
 * written like pfinet's ethernet_demuxer, and pfinet's BPF program.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <mach/mig_support.h>
#include <device/device_types.h>
#include <device/net_status.h>

/* GNU Mach's kern/macros.h. */
#define P2ROUND(x, align) (-(-(x) & -(align)))
#define ETH_HLEN 14

/* Offsets and sizes of struct net_rcv_msg and struct packet_header. */
void
interop_net_layout(size_t out[8])
{
	out[0] = offsetof(struct net_rcv_msg, header_type);
	out[1] = offsetof(struct net_rcv_msg, header);
	out[2] = offsetof(struct net_rcv_msg, packet_type);
	out[3] = offsetof(struct net_rcv_msg, packet);
	out[4] = offsetof(struct net_rcv_msg, sent);
	out[5] = sizeof(struct net_rcv_msg);
	out[6] = sizeof(struct packet_header);
	out[7] = offsetof(struct packet_header, type);
}

/* msgh_size of a net_rcv_msg with `count` packet bytes, as net_deliver sets it. */
size_t
interop_net_rcv_size(unsigned int count)
{
	return (mach_msg_size_t)P2ROUND(sizeof(struct net_rcv_msg)
	    - sizeof(((struct net_rcv_msg *)0)->sent)
	    - NET_RCV_MAX + count, __alignof__(uintptr_t));
}

/* The constants of <device/net_status.h>, in the order the Rust side lists them. */
void
interop_net_constants(long out[13])
{
	out[0] = NET_STATUS;
	out[1] = NET_ADDRESS;
	out[2] = NET_DSTADDR;
	out[3] = NET_FLAGS;
	out[4] = NET_STATUS_COUNT;
	out[5] = HDR_ETHERNET;
	out[6] = NET_HI_PRI;
	out[7] = NET_PRI_MAX;
	out[8] = NET_RCV_MAX;
	out[9] = NET_HDW_HDR_MAX;
	out[10] = NET_RCV_MSG_ID;
	out[11] = NET_MAX_FILTER;
	out[12] = sizeof(struct net_status);
}

static const mach_msg_type_t header_type = {
	.msgt_name = MACH_MSG_TYPE_BYTE,
	.msgt_size = 8,
	.msgt_number = NET_HDW_HDR_MAX,
	.msgt_inline = TRUE,
	.msgt_longform = FALSE,
	.msgt_deallocate = FALSE,
	.msgt_unused = 0
};

static const mach_msg_type_t packet_type = {
	.msgt_name = MACH_MSG_TYPE_BYTE,
	.msgt_size = 8,
	.msgt_number = 0,
	.msgt_inline = TRUE,
	.msgt_longform = FALSE,
	.msgt_deallocate = FALSE,
	.msgt_unused = 0
};

/*
 * The net_rcv_msg of one Ethernet frame (at least ETH_HLEN bytes) to
 * `dest` with disposition `disp`: the header and packet filled as GNU
 * Mach's driver glue fills them, the rest as net_deliver does. Returns
 * msgh_size.
 */
mach_msg_size_t
interop_net_build(struct net_rcv_msg *m, mach_port_t dest, mach_msg_type_name_t disp,
    const unsigned char *frame, size_t len)
{
	struct packet_header *ph = (struct packet_header *)m->packet;
	size_t payload = len - ETH_HLEN;
	unsigned int count;

	if (payload > NET_RCV_MAX - sizeof(*ph))
		payload = NET_RCV_MAX - sizeof(*ph);
	count = (unsigned int)(payload + sizeof(*ph));
	memset(m, 0, sizeof(*m));
	memcpy(m->header, frame, ETH_HLEN);
	ph->length = (unsigned short)(len - ETH_HLEN + sizeof(*ph));
	memcpy(&ph->type, frame + 12, sizeof(ph->type));
	memcpy(m->packet + sizeof(*ph), frame + ETH_HLEN, payload);

	m->msg_hdr.msgh_bits = MACH_MSGH_BITS(disp, 0);
	m->msg_hdr.msgh_size = (mach_msg_size_t)P2ROUND(sizeof(struct net_rcv_msg)
	    - sizeof(m->sent) - NET_RCV_MAX + count, __alignof__(uintptr_t));
	m->msg_hdr.msgh_remote_port = dest;
	m->msg_hdr.msgh_local_port = MACH_PORT_NULL;
	m->msg_hdr.msgh_id = NET_RCV_MSG_ID;
	m->header_type = header_type;
	m->packet_type = packet_type;
	m->net_rcv_msg_packet_count = count;
	return m->msg_hdr.msgh_size;
}

/*
 * pfinet's ethernet_demuxer, reduced to what it reads of the message: the
 * id, msg->header, msg->packet after its packet_header, and
 * packet_type.msgt_number. Rebuilds the frame into `frame` (room bytes)
 * and returns its length; -1 for another message, -2 for descriptors
 * other than GNU Mach's. `length` and `type` get the packet_header.
 */
int
interop_ethernet_demux(const mach_msg_header_t *inp, unsigned char *frame, size_t room,
    unsigned short *length, unsigned short *type)
{
	const struct net_rcv_msg *msg = (const struct net_rcv_msg *)inp;
	const struct packet_header *ph = (const struct packet_header *)msg->packet;
	int datalen;

	if (inp->msgh_id != NET_RCV_MSG_ID)
		return -1;
	if (msg->header_type.msgt_name != MACH_MSG_TYPE_BYTE || msg->header_type.msgt_size != 8
	    || msg->header_type.msgt_number != NET_HDW_HDR_MAX || !msg->header_type.msgt_inline
	    || msg->packet_type.msgt_name != MACH_MSG_TYPE_BYTE || msg->packet_type.msgt_size != 8
	    || !msg->packet_type.msgt_inline || msg->packet_type.msgt_longform
	    || msg->packet_type.msgt_number < sizeof(struct packet_header))
		return -2;

	datalen = ETH_HLEN + msg->packet_type.msgt_number - sizeof(struct packet_header);
	if ((size_t)datalen > room)
		return -2;
	memcpy(frame, msg->header, ETH_HLEN);
	memcpy(frame + ETH_HLEN, msg->packet + sizeof(struct packet_header), datalen - ETH_HLEN);
	*length = ph->length;
	*type = ph->type;
	return datalen;
}

/* pfinet's filter (pfinet/ethernet.c): ARP, IPv4 and IPv6, 1500 bytes. */
static const struct bpf_insn bpf_ether_filter[] = {
	{NETF_IN | NETF_BPF, 0, 0, 0},			/* Header. */
	{BPF_LD | BPF_H | BPF_ABS, 0, 0, 12},		/* Load Ethernet type */
	{BPF_JMP | BPF_JEQ | BPF_K, 2, 0, 0x0806},	/* Accept ARP */
	{BPF_JMP | BPF_JEQ | BPF_K, 1, 0, 0x0800},	/* Accept IPv4 */
	{BPF_JMP | BPF_JEQ | BPF_K, 0, 1, 0x86DD},	/* Accept IPv6 */
	{BPF_RET | BPF_K, 0, 0, 1500},			/* And return 1500 bytes */
	{BPF_RET | BPF_K, 0, 0, 0},			/* Or discard it all */
};

/* The priority the tests install it with. */
int
interop_filter_priority(void)
{
	return 3;
}

const filter_t *
interop_bpf_program(unsigned int *cnt)
{
	*cnt = (unsigned int)(sizeof(bpf_ether_filter) / (sizeof(filter_t)));
	return (const filter_t *)bpf_ether_filter;
}

/* An IPv4 frame of 60 bytes: broadcast, from 52:54:00:12:34:56. */
static const unsigned char test_frame[60] = {
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x00,
	0x45, 0x00, 0x00, 0x2e, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00,
	10, 0, 2, 15, 10, 0, 2, 2, 0x30, 0x39, 0x00, 0x35, 0x00, 0x1a, 0x00, 0x00,
	'n', 'e', 't', '_', 'r', 'c', 'v', '_', 'm', 's', 'g', '!', 0, 0, 0, 0, 0, 0,
};

const unsigned char *
interop_test_frame(size_t *len)
{
	*len = sizeof(test_frame);
	return test_frame;
}
