/*
 * What MIG stubs expect from <mach/mig_support.h> (glibc on the Hurd),
 * for compiling them on Linux against the loopback kernel. The functions
 * are provided by the Rust test harness.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef INTEROP_MIG_SUPPORT_H
#define INTEROP_MIG_SUPPORT_H

#include <string.h>
#include <mach/std_types.h>
#include <mach/message.h>

mach_port_t mig_get_reply_port(void);
void mig_dealloc_reply_port(mach_port_t);
void mig_put_reply_port(mach_port_t);
void mig_allocate(vm_address_t *, vm_size_t);
void mig_deallocate(vm_address_t, vm_size_t);
void mig_reply_setup(const mach_msg_header_t *, mach_msg_header_t *);
vm_size_t mig_strncpy(char *, const char *, vm_size_t);

/* Memory of this task's VM, from the harness. */
kern_return_t interop_vm_allocate(vm_address_t *, vm_size_t);
kern_return_t interop_vm_deallocate(vm_address_t, vm_size_t);

#endif
