//! The guest programs link rumpdisk, which links the NetBSD rump kernel when
//! `RUMP_PREFIX` names one: executables over the kernel need its link
//! arguments, and `cfg(rump_kernel)` enables the programs' NetBSD modes.

fn main() {
    let _ = netbsd_src::kernel_linked_cfg("rump_kernel");
}
