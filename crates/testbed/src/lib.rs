//! QEMU test beds, driven from Rust tests.
//!
//! - [`qemu`]: runs one QEMU under a time limit and returns its serial
//!   console (the GNU Mach test bed, `tests/gnumach`, boots through it).
//! - [`guest`]: a Linux guest (Debian's amd64 kernel and modules, busybox,
//!   an emulated IOMMU so vfio-pci works) that runs the project's statically
//!   linked programs against emulated PCI devices and returns their output
//!   and exit status. Every hardware test and VM benchmark runs in it.
//! - [`cpio`]: the initramfs format the guest boots from.
//!
//! QEMU runs under TCG: KVM on this kind of machine is a nested PVM
//! hypervisor that hangs ordinary guests (`VMTEST_ACCEL=kvm` opts in where
//! KVM works).

pub mod cpio;
pub mod guest;
pub mod qemu;

use std::path::{Path, PathBuf};

/// The workspace root.
#[must_use]
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}
