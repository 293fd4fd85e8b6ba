//! Tells the tests whether the rump crate linked a kernel, and with which
//! components (the rump crate reports both through `links = "rump"`
//! metadata), and adds the link arguments executables over the kernel need.

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_RUMP_COMPONENTS");
    println!("cargo::rustc-check-cfg=cfg(rump_component, values(any()))");
    if netbsd_src::kernel_linked_cfg("rump_kernel_linked") {
        for c in std::env::var("DEP_RUMP_COMPONENTS")
            .unwrap_or_default()
            .split_whitespace()
        {
            println!("cargo:rustc-cfg=rump_component=\"{c}\"");
        }
    } else {
        println!("cargo:warning=NetBSD kernel tests skipped: RUMP_PREFIX not set");
    }
}
