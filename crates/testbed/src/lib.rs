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
pub mod netcheck;
pub mod qemu;
pub mod sound;

use std::path::{Path, PathBuf};

/// The workspace root.
#[must_use]
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A `cargo build --release --target-dir <target_dir>` run from `dir`
/// for programs of a test bed, without the outer cargo's settings (they are
/// for the host test binaries).
#[must_use]
pub fn cargo_build(dir: &Path, target_dir: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO"));
    cmd.current_dir(dir)
        .args(["build", "--release", "--target-dir"])
        .arg(target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET");
    cmd
}

/// A sparse disk image of `mib` MiB at `target/vm-testbed/<name>.img`,
/// with `fills` (offset, length, byte) written into it.
///
/// # Panics
/// If the image cannot be written.
#[must_use]
pub fn disk_image(name: &str, mib: u64, fills: &[(u64, usize, u8)]) -> PathBuf {
    use std::os::unix::fs::FileExt;
    let p = repo().join(format!("target/vm-testbed/{name}.img"));
    std::fs::create_dir_all(p.parent().expect("a parent")).expect("image directory");
    let f = std::fs::File::create(&p).expect("create the image");
    f.set_len(mib << 20).expect("size the image");
    for &(offset, len, byte) in fills {
        f.write_all_at(&vec![byte; len], offset)
            .expect("fill the image");
    }
    p
}

/// A QEMU `-drive` with `id` on a disk image `name` of `mib` MiB written
/// whole (0x5a) and synced, past the host's page cache (`cache=none`), for
/// benchmarks: a sparse image would let the first reads hit holes the host
/// file system answers without reading, and dirty pages would be written
/// back during the first direct reads.
///
/// # Panics
/// If the image cannot be made.
#[must_use]
pub fn bench_drive(id: &str, name: &str, mib: u64) -> String {
    let len = usize::try_from(mib << 20).expect("an image that fits in memory");
    let img = disk_image(name, mib, &[(0, len, 0x5a)]);
    std::fs::File::open(&img)
        .and_then(|f| f.sync_all())
        .expect("sync the image");
    format!(
        "if=none,id={id},format=raw,cache=none,file={}",
        img.display()
    )
}

/// Asserts the `len` bytes at `offset` of `image` are all `byte`.
///
/// # Panics
/// If they are not, or the image cannot be read.
pub fn assert_filled(image: &Path, offset: u64, len: usize, byte: u8) {
    use std::os::unix::fs::FileExt;
    let mut b = vec![0u8; len];
    std::fs::File::open(image)
        .and_then(|f| f.read_exact_at(&mut b, offset))
        .expect("read the image");
    assert!(
        b.iter().all(|&x| x == byte),
        "{}: {len} bytes at {offset} are not all {byte:#04x}",
        image.display()
    );
}

/// The median of a benchmark's rounds (the upper one of an even count).
///
/// # Panics
/// With no rounds.
#[must_use]
pub fn median(mut rounds: Vec<f64>) -> f64 {
    rounds.sort_by(f64::total_cmp);
    rounds[rounds.len() / 2]
}
