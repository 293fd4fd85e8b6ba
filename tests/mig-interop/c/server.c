/*
 * A device server built from MIG-generated server stubs (device.defs): a
 * 1 MiB RAM disk named "cram" behind one port. The Rust client drives it.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <string.h>

#include <mach/mig_errors.h>
#include <mach/mig_support.h>
#include <device/device_types.h>
#include <device/net_status.h>
#include "deviceServer.h"

#define RAM_SIZE (1 << 20)
#define RECORD 512

static char ram[RAM_SIZE];
/* Per thread: each test serves its own port. */
static _Thread_local mach_port_t the_port;

/* The demultiplexer MIG generated. */
boolean_t device_server(mach_msg_header_t *, mach_msg_header_t *);

/* Releases the rights and memory of a request that will not be processed. */
void interop_msg_destroy(mach_msg_header_t *);

static kern_return_t
open_common(const char *name, mach_port_t *device, mach_msg_type_name_t *poly)
{
	if (strcmp(name, "cram") != 0)
		return D_NO_SUCH_DEVICE;
	*device = the_port;
	*poly = MACH_MSG_TYPE_MAKE_SEND;
	return KERN_SUCCESS;
}

kern_return_t
ds_device_open(mach_port_t master, mach_port_t reply, mach_msg_type_name_t reply_poly,
    dev_mode_t mode, const_dev_name_t name, mach_port_t *device, mach_msg_type_name_t *poly)
{
	return open_common(name, device, poly);
}

kern_return_t
ds_device_open_new(mach_port_t master, mach_port_t reply, mach_msg_type_name_t reply_poly,
    dev_mode_t mode, const_dev_name_t name, mach_port_t *device, mach_msg_type_name_t *poly)
{
	return open_common(name, device, poly);
}

kern_return_t
ds_device_close(mach_port_t device)
{
	return KERN_SUCCESS;
}

static int
in_range(recnum_t recnum, size_t len)
{
	return recnum < RAM_SIZE / RECORD && recnum * RECORD + len <= RAM_SIZE;
}

kern_return_t
ds_device_write(mach_port_t device, mach_port_t reply, mach_msg_type_name_t reply_poly,
    dev_mode_t mode, recnum_t recnum, io_buf_ptr_t data, mach_msg_type_number_t cnt, int *written)
{
	if (!in_range(recnum, cnt))
		return D_INVALID_RECNUM;
	memcpy(ram + recnum * RECORD, data, cnt);
	interop_vm_deallocate((vm_address_t)data, cnt);
	*written = (int)cnt;
	return KERN_SUCCESS;
}

kern_return_t
ds_device_write_inband(mach_port_t device, mach_port_t reply, mach_msg_type_name_t reply_poly,
    dev_mode_t mode, recnum_t recnum, const io_buf_ptr_inband_t data, mach_msg_type_number_t cnt,
    int *written)
{
	if (!in_range(recnum, cnt))
		return D_INVALID_RECNUM;
	memcpy(ram + recnum * RECORD, data, cnt);
	*written = (int)cnt;
	return KERN_SUCCESS;
}

kern_return_t
ds_device_read(mach_port_t device, mach_port_t reply, mach_msg_type_name_t reply_poly,
    dev_mode_t mode, recnum_t recnum, int wanted, io_buf_ptr_t *data, mach_msg_type_number_t *cnt)
{
	vm_address_t addr;

	if (wanted < 0 || !in_range(recnum, (size_t)wanted))
		return D_INVALID_RECNUM;
	if (interop_vm_allocate(&addr, (vm_size_t)wanted) != KERN_SUCCESS)
		return D_NO_MEMORY;
	memcpy((void *)addr, ram + recnum * RECORD, (size_t)wanted);
	*data = (io_buf_ptr_t)addr;
	*cnt = (mach_msg_type_number_t)wanted;
	return KERN_SUCCESS;
}

kern_return_t
ds_device_read_inband(mach_port_t device, mach_port_t reply, mach_msg_type_name_t reply_poly,
    dev_mode_t mode, recnum_t recnum, int wanted, io_buf_ptr_inband_t data,
    mach_msg_type_number_t *cnt)
{
	size_t n = wanted < 0 ? 0 : (size_t)wanted;

	if (n > *cnt)
		n = *cnt;
	if (!in_range(recnum, n))
		return D_INVALID_RECNUM;
	memcpy(data, ram + recnum * RECORD, n);
	*cnt = (mach_msg_type_number_t)n;
	return KERN_SUCCESS;
}

kern_return_t
ds_device_get_status(mach_port_t device, dev_flavor_t flavor, dev_status_t status,
    mach_msg_type_number_t *cnt)
{
	if (flavor != DEV_GET_SIZE || *cnt < DEV_GET_SIZE_COUNT)
		return D_INVALID_OPERATION;
	status[DEV_GET_SIZE_DEVICE_SIZE] = RAM_SIZE;
	status[DEV_GET_SIZE_RECORD_SIZE] = RECORD;
	*cnt = DEV_GET_SIZE_COUNT;
	return KERN_SUCCESS;
}

kern_return_t
ds_device_set_status(mach_port_t device, dev_flavor_t flavor, const dev_status_t status,
    mach_msg_type_number_t cnt)
{
	return flavor == 7 && cnt == 3 && status[2] == 3 ? KERN_SUCCESS : D_INVALID_OPERATION;
}

kern_return_t
ds_device_map(mach_port_t device, vm_prot_t prot, vm_offset_t offset, vm_size_t size,
    mach_port_t *pager, int unmap)
{
	return D_INVALID_OPERATION;
}

/* From net.c. */
const filter_t *interop_bpf_program(unsigned int *);
int interop_filter_priority(void);
const unsigned char *interop_test_frame(size_t *);
mach_msg_size_t interop_net_build(struct net_rcv_msg *, mach_port_t, mach_msg_type_name_t,
    const unsigned char *, size_t);

/*
 * Takes pfinet's program at the tests' priority only; then uses the right
 * as GNU Mach does, for one frame: the net_rcv_msg of the test frame goes
 * to receive_port, the right moved with it.
 */
kern_return_t
ds_device_set_filter(mach_port_t device, mach_port_t receive_port, int priority,
    const filter_array_t filter, mach_msg_type_number_t cnt)
{
	struct net_rcv_msg m;
	unsigned int want;
	const filter_t *bpf = interop_bpf_program(&want);
	const unsigned char *frame;
	size_t len;
	mach_msg_size_t size;

	if (receive_port == MACH_PORT_NULL || priority != interop_filter_priority() || cnt != want
	    || memcmp(filter, bpf, want * sizeof(filter_t)) != 0)
		return D_INVALID_OPERATION;
	frame = interop_test_frame(&len);
	size = interop_net_build(&m, receive_port, MACH_MSG_TYPE_MOVE_SEND, frame, len);
	return mach_msg(&m.msg_hdr, MACH_SEND_MSG | MACH_SEND_TIMEOUT, size, 0, MACH_PORT_NULL, 0,
	    MACH_PORT_NULL);
}

/* The "irq" device as GNU Mach serves it, reduced to bookkeeping. */
static int irq_registered = -1, irq_acks;

kern_return_t
ds_device_intr_register(mach_port_t device, int id, int flags, mach_port_t receive_port)
{
	if (receive_port == MACH_PORT_NULL || flags != 0)
		return D_INVALID_OPERATION;
	irq_registered = id;
	return KERN_SUCCESS;
}

kern_return_t
ds_device_intr_ack(mach_port_t device, mach_port_t receive_port)
{
	if (irq_registered < 0 || receive_port == MACH_PORT_NULL)
		return D_INVALID_OPERATION;
	irq_acks++;
	return KERN_SUCCESS;
}

int
interop_irq_state(int *acks)
{
	*acks = irq_acks;
	return irq_registered;
}

/* Serves `port` until it is destroyed; returns 0 then, else the error. */
int
interop_server_run(mach_port_t port)
{
	static _Thread_local union { mach_msg_header_t h; char b[8192]; } in, out;
	mig_reply_header_t *reply = (mig_reply_header_t *)&out;
	kern_return_t kr;

	the_port = port;
	for (;;) {
		kr = mach_msg(&in.h, MACH_RCV_MSG, 0, sizeof(in), port, MACH_MSG_TIMEOUT_NONE, MACH_PORT_NULL);
		if (kr == MACH_RCV_INVALID_NAME || kr == MACH_RCV_PORT_DIED)
			return 0;
		if (kr != MACH_MSG_SUCCESS)
			return kr;
		device_server(&in.h, &out.h);
		if (reply->RetCode != KERN_SUCCESS && reply->RetCode != MIG_NO_REPLY) {
			in.h.msgh_remote_port = MACH_PORT_NULL;
			interop_msg_destroy(&in.h);
		}
		if (reply->RetCode == MIG_NO_REPLY || out.h.msgh_remote_port == MACH_PORT_NULL)
			continue;
		(void)mach_msg(&out.h, MACH_SEND_MSG | MACH_SEND_TIMEOUT, out.h.msgh_size, 0,
		    MACH_PORT_NULL, 0, MACH_PORT_NULL);
	}
}
