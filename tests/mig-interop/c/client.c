/*
 * Drives a device server through MIG-generated user stubs (device.defs),
 * exactly as a Hurd client does. Returns the number of failed checks.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <stdio.h>
#include <string.h>

#include <mach/mig_support.h>
#include <device/device_types.h>
#include "device.h"

static int checks, failures;

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
