//! The guest programs link rumpdisk, which links the NetBSD rump kernel when
//! `RUMP_PREFIX` names one: executables over the kernel need its link
//! arguments (harmless without it), and `cfg(rump_kernel)` enables the
//! programs' NetBSD modes.

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_RUMP_KERNEL");
    println!("cargo::rustc-check-cfg=cfg(rump_kernel)");
    if std::env::var_os("DEP_RUMP_KERNEL").is_some() {
        println!("cargo:rustc-cfg=rump_kernel");
    }
    netbsd_src::binary_link_args();
}
