//! Enables the file systems when the rump crate linked a kernel
//! (`RUMP_PREFIX`), with the link arguments executables over it need.

fn main() {
    let _ = netbsd_src::kernel_linked_cfg("rump_kernel");
}
