//! The rumpusbdisk binary's options and its refusals: every bad start is a
//! clear error (exit status 64 for bad options, 1 for what cannot be
//! served), never a kernel panic.

use std::process::Command;

fn run(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_rumpusbdisk"))
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .expect("run rumpusbdisk");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn help_reads_like_a_translators() {
    let (rc, out, _) = run(&["--help"]);
    assert_eq!(rc, 0);
    assert!(out.starts_with("Usage: rumpusbdisk [OPTION...]"), "{out}");
    assert!(out.contains("--netbsd-pci=PCI"), "{out}");
}

#[test]
fn bad_starts_are_clear_errors() {
    let (rc, _, err) = run(&["--bogus"]);
    assert_eq!(rc, 64);
    assert!(err.contains("unrecognized option '--bogus'"), "{err}");
    let (rc, _, err) = run(&["--netbsd-pci", "not-a-bdf"]);
    assert_eq!(rc, 64);
    assert!(err.contains("not a PCI address"), "{err}");
    let (rc, _, err) = run(&[]);
    assert_eq!(rc, 1);
    if rump::LINKED {
        assert!(err.contains("no USB host controller given"), "{err}");
    } else {
        assert!(err.contains("built without a NetBSD rump kernel"), "{err}");
    }
}

#[test]
fn a_kernel_whose_usb_stack_cannot_do_dma_is_refused_before_it_panics() {
    if !rump::LINKED {
        println!("skipped: RUMP_PREFIX not set");
        return;
    }
    if rump::USB_DMA {
        println!("skipped: this kernel's USB stack has usb_dma");
        return;
    }
    let (rc, _, err) = run(&["--netbsd-pci", "0000:00:08.0"]);
    assert_eq!(rc, 1);
    assert!(err.contains("built without usb_dma (NUSB_DMA 0)"), "{err}");
}
