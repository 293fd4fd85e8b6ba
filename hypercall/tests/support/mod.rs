//! Finding the static library this crate builds, for tests that link or
//! inspect it from outside Rust.

use std::path::PathBuf;

/// `libhypercall.a` of the current build. Cargo builds the crate as rlib
/// and staticlib in one go and leaves the library in the test binary's
/// `deps` directory (`libhypercall-<hash>.a`); `cargo build` also copies
/// one up a level. The newest of them is the one matching this build.
pub fn staticlib() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("deps dir").to_path_buf();
    let mut candidates: Vec<PathBuf> = std::fs::read_dir(&deps)
        .expect("read deps")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libhypercall-"))
                && p.extension().is_some_and(|e| e == "a")
        })
        .collect();
    candidates.push(deps.join("../libhypercall.a"));
    candidates
        .into_iter()
        .filter(|p| p.exists())
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
        .expect("libhypercall.a was not built next to the tests")
}
