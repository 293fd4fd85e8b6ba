//! GNU Mach's `x86_64` traps, called without glibc: `syscall` with the
//! negative trap number in `rax`, arguments in `rdi`, `rsi`, `rdx`, `r10`,
//! `r8`, `r9` and a seventh one on the user stack at `[rsp+8]` (hence real
//! functions: the kernel finds it above the return address of the call).
//! Numbers from GNU Mach's `mach/syscall_sw.h`.

use core::arch::global_asm;

macro_rules! traps {
    ($($name:ident = $num:literal;)*) => {
        global_asm!($(
            concat!(".globl ", stringify!($name)),
            concat!(".type ", stringify!($name), ", @function"),
            concat!(stringify!($name), ":"),
            "    mov r10, rcx",
            concat!("    mov rax, ", stringify!($num)),
            "    syscall",
            "    ret",
        )*);
    };
}

traps! {
    gnumach_mach_msg_trap = -25;
    gnumach_mach_reply_port = -26;
    gnumach_mach_task_self = -28;
    gnumach_vm_allocate = -65;
    gnumach_vm_deallocate = -66;
    gnumach_task_terminate = -69;
    gnumach_task_set_special_port = -71;
    gnumach_mach_port_allocate = -72;
    gnumach_mach_port_deallocate = -73;
    gnumach_mach_port_insert_right = -74;
}

unsafe extern "C" {
    pub(super) fn gnumach_mach_msg_trap(
        msg: *mut u8,
        option: u32,
        send_size: u32,
        rcv_size: u32,
        rcv_name: u32,
        timeout: u32,
        notify: u32,
    ) -> i32;
    pub(super) fn gnumach_mach_reply_port() -> u32;
    pub(super) fn gnumach_mach_task_self() -> u32;
    pub(super) fn gnumach_vm_allocate(task: u32, addr: *mut u64, size: u64, anywhere: i32) -> i32;
    pub(super) fn gnumach_vm_deallocate(task: u32, addr: u64, size: u64) -> i32;
    pub(super) fn gnumach_task_terminate(task: u32) -> i32;
    pub(super) fn gnumach_task_set_special_port(task: u32, which: i32, port: u32) -> i32;
    pub(super) fn gnumach_mach_port_allocate(task: u32, right: u32, name: *mut u32) -> i32;
    pub(super) fn gnumach_mach_port_deallocate(task: u32, name: u32) -> i32;
    pub(super) fn gnumach_mach_port_insert_right(
        task: u32,
        name: u32,
        poly: u32,
        poly_type: u32,
    ) -> i32;
}
