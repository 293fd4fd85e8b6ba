//! Links the NetBSD rump kernel when one is installed (`RUMP_PREFIX`):
//! the base components always, more as features ask.

use netbsd_src::components::{self, ComponentSet};

fn main() {
    println!("cargo::rustc-check-cfg=cfg(rump_usb_no_dma)");
    println!("cargo::rustc-check-cfg=cfg(rump_dirs_unsafe)");
    let kernel = match netbsd_src::locate_for_build() {
        Ok(Some(k)) => k,
        Ok(None) => return,
        Err(e) => panic!("{e}"),
    };
    let mut sets: Vec<ComponentSet> = vec![components::BASE];
    if std::env::var_os("CARGO_FEATURE_FILESYSTEMS").is_some() {
        sets.push(components::FILESYSTEMS);
    }
    if std::env::var_os("CARGO_FEATURE_DISK").is_some() {
        sets.push(components::DISK);
    }
    if std::env::var_os("CARGO_FEATURE_PCI").is_some() {
        sets.push(components::RUMPDISK);
    }
    if std::env::var_os("CARGO_FEATURE_USB").is_some() {
        sets.push(components::RUMPUSBDISK);
    }
    if std::env::var_os("CARGO_FEATURE_NET").is_some() {
        sets.push(components::RUMPNET);
    }
    if std::env::var_os("CARGO_FEATURE_AUDIO").is_some() {
        sets.push(components::RUMPSOUND);
    }
    let mut libs = Vec::new();
    for set in &sets {
        libs.extend(kernel.resolve(set).unwrap_or_else(|e| panic!("{e}")));
    }
    // Each component once (sets overlap), then in link order.
    let mut seen = std::collections::BTreeSet::new();
    libs.retain(|c| seen.insert(c.clone()));
    libs.sort_by_key(|c| components::link_rank(c));
    kernel.link(&libs);
    for c in &libs {
        println!("cargo::rustc-check-cfg=cfg(rump_component, values(\"{c}\"))");
        println!("cargo:rustc-cfg=rump_component=\"{c}\"");
    }
    println!("cargo:rustc-cfg=rump_kernel");
    if kernel.usb_dma() == Some(false) {
        println!("cargo:rustc-cfg=rump_usb_no_dma");
    }
    if std::env::var_os("CARGO_FEATURE_FILESYSTEMS").is_some()
        && kernel.dir_compaction_safe() == Some(false)
    {
        println!("cargo:rustc-cfg=rump_dirs_unsafe");
    }
    println!("cargo:kernel={}", kernel.lib_dir.display());
    println!("cargo:rustc-env=RUMP_LIB_DIR={}", kernel.lib_dir.display());
    println!("cargo:components={}", libs.join(" "));
    println!("cargo:rustc-env=RUMP_COMPONENTS={}", libs.join(" "));
}
