/*
 * Drives a device server through MIG-generated user stubs (device.defs),
 * exactly as a Hurd client does. Returns the number of failed checks.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <stdio.h>
#include <string.h>

#include <mach/mig_errors.h>
#include <mach/mig_support.h>
#include <device/device_types.h>
#include <device/net_status.h>
#include "device.h"

/* Per thread: tests run side by side. */
static _Thread_local int checks, failures;

#define CHECK(cond) do {						\
	checks++;							\
	if (!(cond)) {							\
		failures++;						\
		fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); \
	}								\
} while (0)

vm_size_t
mig_strncpy(char *dst, const char *src, vm_size_t len)
{
	vm_size_t i;

	if (len == 0)
		return 0;
	for (i = 0; i < len - 1 && src[i] != '\0'; i++)
		dst[i] = src[i];
	dst[i] = '\0';
	return i;
}

int
interop_user_run(mach_port_t master)
{
	static char buf[65536];
	mach_port_t dev = MACH_PORT_NULL, ro = MACH_PORT_NULL, other;
	io_buf_ptr_t data;
	mach_msg_type_number_t cnt;
	io_buf_ptr_inband_t ib;
	int written = -1, status[DEV_GET_SIZE_COUNT + 4];
	kern_return_t kr;

	checks = failures = 0;
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (char)(i * 3 + 1);

	kr = device_open(master, D_READ | D_WRITE, "ram0", &dev);
	CHECK(kr == KERN_SUCCESS && dev != MACH_PORT_NULL);

	/* Out-of-line write, then read back. */
	kr = device_write(dev, 0, 16, buf, sizeof(buf), &written);
	CHECK(kr == KERN_SUCCESS && written == (int)sizeof(buf));
	kr = device_read(dev, 0, 16, sizeof(buf), &data, &cnt);
	CHECK(kr == KERN_SUCCESS && cnt == sizeof(buf));
	if (kr == KERN_SUCCESS) {
		CHECK(memcmp(data, buf, sizeof(buf)) == 0);
		interop_vm_deallocate((vm_address_t)data, cnt);
	}

	/* Inband. */
	memset(ib, 0, sizeof(ib));
	memcpy(ib, "hello inband", 12);
	kr = device_write_inband(dev, 0, 3, ib, 12, &written);
	CHECK(kr == KERN_SUCCESS && written == 12);
	cnt = sizeof(ib);
	memset(ib, 0, sizeof(ib));
	kr = device_read_inband(dev, 0, 3, 12, ib, &cnt);
	CHECK(kr == KERN_SUCCESS && cnt == 12 && memcmp(ib, "hello inband", 12) == 0);

	/* Status. */
	cnt = DEV_GET_SIZE_COUNT;
	kr = device_get_status(dev, DEV_GET_SIZE, status, &cnt);
	CHECK(kr == KERN_SUCCESS && cnt == DEV_GET_SIZE_COUNT);
	CHECK(status[DEV_GET_SIZE_DEVICE_SIZE] == 1 << 20 && status[DEV_GET_SIZE_RECORD_SIZE] == 512);
	kr = device_set_status(dev, 7, status, 3);
	CHECK(kr == KERN_SUCCESS);
	kr = device_set_status(dev, 8, status, 0);
	CHECK(kr == D_INVALID_OPERATION);

	/* Errors the server answers. */
	kr = device_open(master, D_READ, "nothing", &other);
	CHECK(kr == D_NO_SUCH_DEVICE);
	kr = device_open(master, D_READ, "ram0", &ro);
	CHECK(kr == KERN_SUCCESS);
	kr = device_write(ro, 0, 0, buf, 512, &written);
	CHECK(kr == D_INVALID_OPERATION);
	kr = device_read(dev, 0, (recnum_t)1 << 40, 512, &data, &cnt);
	CHECK(kr == D_INVALID_RECNUM);
	kr = device_read(master, 0, 0, 512, &data, &cnt);
	CHECK(kr == D_INVALID_OPERATION);

	/* device_open_new, then closes. */
	kr = device_open_new(master, D_READ, "ram0", &other);
	CHECK(kr == KERN_SUCCESS);
	CHECK(device_close(other) == KERN_SUCCESS);
	CHECK(device_close(ro) == KERN_SUCCESS);
	CHECK(device_close(dev) == KERN_SUCCESS);
	/* The closed port is gone: the stub reports the send error. */
	kr = device_close(dev);
	CHECK(kr == MACH_SEND_INVALID_DEST);

	printf("MIG user stubs against the Rust server: %d checks, %d failed\n", checks, failures);
	return failures;
}

/* From net.c. */
const filter_t *interop_bpf_program(unsigned int *);
int interop_filter_priority(void);
int interop_ethernet_demux(const mach_msg_header_t *, unsigned char *, size_t,
    unsigned short *, unsigned short *);

/*
 * device_set_filter through the MIG user stub, as pfinet installs its
 * filter, with `rcv` (a receive right of this task): the Rust side decodes
 * the request, sends the net_rcv_msg of `frame` on the send right it got,
 * and answers. Then the requests its decoder must refuse, and the largest
 * program. Returns the number of failed checks.
 */
int
interop_set_filter_user(mach_port_t dev, mach_port_t rcv, const unsigned char *frame, size_t len)
{
	static filter_t big[NET_MAX_FILTER + 1];
	union { mach_msg_header_t h; struct net_rcv_msg m; } in;
	unsigned char got[NET_HDW_HDR_MAX + NET_RCV_MAX];
	unsigned short length = 0, type = 0;
	unsigned int cnt;
	const filter_t *bpf = interop_bpf_program(&cnt);
	kern_return_t kr;
	int n;

	checks = failures = 0;
	kr = device_set_filter(dev, rcv, MACH_MSG_TYPE_MAKE_SEND, interop_filter_priority(),
	    (filter_array_t)bpf, cnt);
	CHECK(kr == KERN_SUCCESS);

	/* What the Rust side sent on the right, read as pfinet reads it. */
	kr = mach_msg(&in.h, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof(in), rcv, 10000,
	    MACH_PORT_NULL);
	CHECK(kr == MACH_MSG_SUCCESS);
	if (kr == MACH_MSG_SUCCESS) {
		n = interop_ethernet_demux(&in.h, got, sizeof(got), &length, &type);
		CHECK(n == (int)len && memcmp(got, frame, len) == 0);
		CHECK(length == len - 14 + sizeof(struct packet_header));
		CHECK(memcmp(&type, frame + 12, 2) == 0);
		CHECK(in.h.msgh_local_port == rcv && !(in.h.msgh_bits & MACH_MSGH_BITS_COMPLEX));
	}

	/* A send-once right or a bare name where the send right goes. */
	kr = device_set_filter(dev, rcv, MACH_MSG_TYPE_MAKE_SEND_ONCE, 0, (filter_array_t)bpf, cnt);
	CHECK(kr == MIG_BAD_ARGUMENTS);
	kr = device_set_filter(dev, rcv, MACH_MSG_TYPE_PORT_NAME, 0, (filter_array_t)bpf, cnt);
	CHECK(kr == MIG_BAD_ARGUMENTS);

	/* More than NET_MAX_FILTER words never leave the stub; that many do. */
	for (n = 0; n <= NET_MAX_FILTER; n++)
		big[n] = (filter_t)(n * 257);
	kr = device_set_filter(dev, rcv, MACH_MSG_TYPE_MAKE_SEND, 0, big, NET_MAX_FILTER + 1);
	CHECK(kr == MIG_ARRAY_TOO_LARGE);
	kr = device_set_filter(dev, rcv, MACH_MSG_TYPE_MAKE_SEND, NET_PRI_MAX, big, NET_MAX_FILTER);
	CHECK(kr == KERN_SUCCESS);

	printf("device_set_filter user stub against the Rust decoder: %d checks, %d failed\n",
	    checks, failures);
	return failures;
}
