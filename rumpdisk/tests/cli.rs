//! The rumpdisk program as a user runs it: options, errors, the in-process
//! device-interface client.

#![cfg(target_os = "linux")]

use std::path::{Path, PathBuf};

use std::process::{Command, Output};
use testbed::assert_filled;

fn rumpdisk(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rumpdisk"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run rumpdisk")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn image(name: &str, size: u64) -> PathBuf {
    let p = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("rumpdisk-cli-{}-{name}.img", std::process::id()));
    std::fs::File::create(&p).unwrap().set_len(size).unwrap();
    p
}

#[test]
fn help_and_bad_options() {
    let o = rumpdisk(&["--help"]);
    assert!(o.status.success());
    assert!(text(&o).contains("--next-task=TASK"), "{}", text(&o));
    let o = rumpdisk(&["--frobnicate"]);
    assert_eq!(o.status.code(), Some(64));
    assert!(
        text(&o).contains("unrecognized option '--frobnicate'"),
        "{}",
        text(&o)
    );
    let o = rumpdisk(&["--image", "nonsense"]);
    assert_eq!(o.status.code(), Some(64));
    assert!(text(&o).contains("expected NAME=PATH"));
    let o = rumpdisk(&["--host-priv-port=abc"]);
    assert_eq!(o.status.code(), Some(64));
    assert!(text(&o).contains("not a port name"));
    let o = rumpdisk(&["--netbsd-pci", "00:05.0"]);
    assert_eq!(o.status.code(), Some(64));
    assert!(text(&o).contains("not a PCI address"), "{}", text(&o));
    let o = rumpdisk(&["--virtio", "vd0"]);
    assert_eq!(o.status.code(), Some(64));
    assert!(
        text(&o).contains("expected NAME=DDDD:BB:DD.F"),
        "{}",
        text(&o)
    );
    let o = rumpdisk(&["--cache=unsafe"]);
    assert_eq!(o.status.code(), Some(64));
    assert!(
        text(&o).contains("expected writeback, none or evict"),
        "{}",
        text(&o)
    );
}

#[test]
fn missing_images_and_kernels_are_clear_errors() {
    let o = rumpdisk(&["--image", "wd0=/nonexistent/disk.img", "--exit"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("/nonexistent/disk.img"), "{}", text(&o));
    let o = rumpdisk(&[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("no disks to serve"));
    let o = rumpdisk(&["--image", "wd0=/dev/null"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("not a regular file or block device"),
        "{}",
        text(&o)
    );
    let o = rumpdisk(&["--next-task=5", "--image", "wd0=/dev/null"]);
    assert_eq!(o.status.code(), Some(1));
}

/// The host file holds `len` bytes of `byte` at `offset`.
#[test]
fn ctl_writes_reads_and_verifies_through_the_device_interface() {
    let img = image("ctl", 8 << 20);
    let arg = format!("wd0={}", img.display());
    let o = rumpdisk(&[
        "--image",
        &arg,
        "--exit",
        "--ctl",
        "size wd0; write wd0 64k 8k 0x42; verify wd0 64k 8k 0x42; read wd0 64k 512; flush wd0",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("wd0: 8388608 bytes, 16384 records of 512 bytes"),
        "{out}"
    );
    assert!(
        out.contains("verified 8192 bytes of 0x42 at 65536"),
        "{out}"
    );
    assert_filled(&img, 65536, 8192, 0x42);
    // The same past the page cache.
    let o = rumpdisk(&[
        "--image",
        &arg,
        "--cache=none",
        "--exit",
        "--ctl",
        "write wd0 1m 12k 0x5a; verify wd0 1m 12k 0x5a; flush wd0",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_filled(&img, 1 << 20, 12288, 0x5a);
    // Sixteen clients at once, each over a region of its own; bad
    // arguments are refused.
    let o = rumpdisk(&["--image", &arg, "--exit", "--ctl", "clients wd0 16 256k"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("wd0: 16 clients verified 262144 bytes each at once"),
        "{}",
        text(&o)
    );
    let o = rumpdisk(&["--image", &arg, "--exit", "--ctl", "clients wd0 16 1000"]);
    assert_eq!(o.status.code(), Some(1));
    // Past the end of the disk: the device's error, not a torn block.
    let o = rumpdisk(&["--image", &arg, "--exit", "--ctl", "clients wd0 8 2m"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("client 4: device_write"), "{}", text(&o));
    // A failed verification and an unknown command are errors.
    let o = rumpdisk(&["--image", &arg, "--exit", "--ctl", "verify wd0 0 512 0x42"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("FAILED"));
    let o = rumpdisk(&["--image", &arg, "--exit", "--ctl", "dance wd0"]);
    assert!(text(&o).contains("unknown command"));
    // Read-only: writes are refused with the device error.
    let o = rumpdisk(&[
        "--image",
        &arg,
        "--read-only",
        "--exit",
        "--ctl",
        "write wd0 0 512 1",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("D_READ_ONLY"), "{}", text(&o));
    let _ = std::fs::remove_file(img);
}

#[cfg(not(rump_kernel))]
#[test]
fn netbsd_options_need_a_kernel() {
    let o = rumpdisk(&["--netbsd", "wd0"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("without a NetBSD rump kernel"));
}

#[cfg(rump_kernel)]
#[test]
fn netbsd_image_through_the_kernel_disk_layer() {
    let img = image("netbsd", 4 << 20);
    let arg = format!("wd0={}", img.display());
    let o = rumpdisk(&[
        "--netbsd-image",
        &arg,
        "--exit",
        "--ctl",
        "size wd0; write wd0 1m 1m 0x77; verify wd0 1m 1m 0x77; flush wd0",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_filled(&img, 1 << 20, 1 << 20, 0x77);
    // A PCI function that does not exist gives the kernel's bus nothing:
    // its disk is missing, a clean error (an address no host has).
    let o = rumpdisk(&["--netbsd-pci", "ffff:ff:1f.7", "--netbsd", "ld0", "--exit"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("ld0"), "{}", text(&o));
    let _ = std::fs::remove_file(img);
}
