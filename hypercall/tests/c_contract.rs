//! Runs the C contract program (`tests/c/contract.c`) against the static
//! library: the hypercalls as a C rump kernel calls them, with a fake set
//! of upcalls that checks the virtual-CPU protocol.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

fn build_contract() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("contract");
    let lib = support::staticlib();
    let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pthread", "-O1"])
        .arg("-I")
        .arg(manifest.join("include"))
        .arg(manifest.join("tests/c/contract.c"))
        .arg(&lib)
        .args(["-ldl", "-lm", "-o"])
        .arg(&out)
        .status()
        .expect("run the C compiler");
    assert!(status.success(), "compiling the contract program failed");
    out
}

#[test]
fn c_programs_see_the_rumpuser_contract() {
    let exe = build_contract_once();
    let dir = tempdir();
    let out = Command::new(&exe).arg(&dir).output().expect("run contract");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}{stderr}");
    assert!(out.status.success(), "contract checks failed:\n{stderr}");
    assert!(stdout.contains(", 0 failed"), "{stdout}");
    assert!(
        stderr.contains("contract: dprintf 42 ok"),
        "dprintf output missing"
    );
    assert!(
        stderr.contains("contract: putchar ok"),
        "putchar output missing"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn daemonize_hands_the_child_status_to_the_parent() {
    let exe = build_contract_once();
    let out = Command::new(exe)
        .arg("daemonize")
        .output()
        .expect("run contract");
    // The parent exits with the status the child reported (7), after the
    // child's own checks passed (98 otherwise).
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn build_contract_once() -> PathBuf {
    static EXE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    EXE.get_or_init(build_contract).clone()
}

fn tempdir() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("contract-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}
