//! Helpers for the NetBSD kernel tests: booting the kernel once, scratch
//! images, host tools.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Boots the kernel, or says why the test is skipped and returns `None`.
#[cfg(rump_kernel_linked)]
#[must_use]
pub fn kernel() -> Option<rump::Rump> {
    // The kernel's PCI bus gets no host function: tests never take over a
    // device of the machine they run on.
    hypercall::pci::rump::attach(&[]).expect("empty PCI bus");
    Some(rump::Rump::init().expect("rump_init on the hypercall crate"))
}

/// Boots the kernel, or says why the test is skipped and returns `None`.
#[cfg(not(rump_kernel_linked))]
#[must_use]
pub fn kernel() -> Option<()> {
    println!("skipped: RUMP_PREFIX not set");
    None
}

/// A scratch directory for one test.
#[must_use]
pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("netbsd-tests-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

/// Runs a host tool, failing the test with its output if it fails.
pub fn run(tool: &str, args: &[&str]) {
    let out = Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!("{tool} is needed for this test (Debian package: see tests/setup.sh): {e}")
    });
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Deterministic test data: byte `i` of a region starting at `base`.
#[must_use]
pub fn pattern(base: u64, len: usize, seed: u8) -> Vec<u8> {
    (0..len as u64)
        .map(|i| {
            let x = (base + i).wrapping_mul(2_654_435_761) >> 7;
            (x as u8) ^ seed
        })
        .collect()
}

/// Writes a host image of `len` bytes filled with [`pattern`] seed 0.
pub fn patterned_image(path: &Path, len: usize) {
    std::fs::write(path, pattern(0, len, 0)).expect("write image");
}
