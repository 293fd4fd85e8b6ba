//! Generates C stubs for GNU Mach's `device/device.defs` with the current
//! MIG (built by `mig-bindings/setup-mig.sh`), and compiles them with the
//! C test programs. Without the MIG toolchain the interop tests say they
//! were skipped.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(mig_stubs)");
    println!("cargo:rerun-if-env-changed=MIG_TOOLCHAIN");
    println!("cargo:rerun-if-changed=c");
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("manifest dir"));
    let toolchain = std::env::var_os("MIG_TOOLCHAIN").map_or_else(
        || manifest.join("../../target/mig-toolchain"),
        PathBuf::from,
    );
    let mig = toolchain.join("mig/bin/x86_64-gnu-mig");
    let include = toolchain.join("gnumach/usr/include/x86_64-linux-gnu");
    if !mig.exists() || !include.join("device/device.defs").exists() {
        println!(
            "cargo:warning=MIG interop tests skipped: no MIG toolchain in {} (run mig-bindings/setup-mig.sh)",
            toolchain.display()
        );
        return;
    }
    println!("cargo:rerun-if-changed={}", mig.display());
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("out dir"));
    generate(&mig, &include, &out);
    cc::Build::new()
        .file(out.join("deviceUser.c"))
        .file(out.join("deviceServer.c"))
        .file(manifest.join("c/client.c"))
        .file(manifest.join("c/server.c"))
        .file(manifest.join("c/net.c"))
        .include(&out)
        .include(manifest.join("c/shim"))
        .include(&include)
        .define("DEVICE_ENABLE_DEVICE_OPEN_NEW", None)
        .flag("-std=gnu11")
        .warnings(true)
        .extra_warnings(true)
        .flag("-Wno-unused-parameter")
        .warnings_into_errors(true)
        .compile("mig_device_stubs");
    println!("cargo:rustc-cfg=mig_stubs");
}

fn generate(mig: &Path, include: &Path, out: &Path) {
    let status = Command::new(mig)
        .current_dir(out)
        .args([
            "-cc",
            "gcc -E -x c -nostdinc -DDEVICE_ENABLE_DEVICE_OPEN_NEW",
        ])
        .arg(format!("-I{}", include.display()))
        .args(["-user", "deviceUser.c", "-header", "device.h"])
        .args(["-server", "deviceServer.c", "-sheader", "deviceServer.h"])
        .arg(include.join("device/device.defs"))
        .status()
        .expect("run MIG");
    assert!(status.success(), "MIG failed on device.defs");
}
