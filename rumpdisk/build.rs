//! Enables the NetBSD back end when the rump crate linked a kernel
//! (`RUMP_PREFIX`), with the link arguments executables over it need.

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_RUMP_KERNEL");
    println!("cargo::rustc-check-cfg=cfg(rump_kernel)");
    if std::env::var_os("DEP_RUMP_KERNEL").is_some() {
        println!("cargo:rustc-cfg=rump_kernel");
        netbsd_src::binary_link_args();
    }
}
