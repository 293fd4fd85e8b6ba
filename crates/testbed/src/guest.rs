//! A Linux guest that runs the project's programs on emulated PCI devices.
//!
//! [`Guest`] builds an initramfs from busybox-static, the closure of the
//! kernel modules asked for (from Debian's `linux-image-*-amd64`, unpacked
//! by `setup-guest.sh` into `target/vm-guest`) and the project's programs
//! built statically (`target/vm-programs`); boots it under QEMU on a q35
//! machine with an emulated Intel IOMMU (Debian's kernel has no VFIO
//! no-IOMMU mode, so vfio-pci needs one); runs a shell script as root; and
//! returns what the script printed and its exit status. The console is the
//! serial port; the script's output sits between `VMTEST-BEGIN` and
//! `VMTEST-EXIT <status>`. The guest powers off when the script ends.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::cpio::Archive;
use crate::{qemu, repo};

/// QEMU is killed after this long (a boot with a few tests takes 10–20 s
/// under TCG).
const LIMIT: Duration = Duration::from_mins(4);

/// Where the guest's kernel and modules are.
#[derive(Debug)]
struct Kernel {
    image: PathBuf,
    root: PathBuf,
    version: String,
}

fn kernel() -> &'static Kernel {
    static K: OnceLock<Kernel> = OnceLock::new();
    K.get_or_init(|| {
        let out = Command::new("bash")
            .arg(repo().join("crates/testbed/setup-guest.sh"))
            .output()
            .expect("run crates/testbed/setup-guest.sh");
        assert!(
            out.status.success(),
            "setup-guest.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let get = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k))
                .unwrap_or_else(|| panic!("setup-guest.sh did not print {k}"))
                .to_owned()
        };
        Kernel {
            image: PathBuf::from(get("GUEST_KERNEL=")),
            root: PathBuf::from(get("GUEST_MODULES=")),
            version: get("GUEST_KVER="),
        }
    })
}

/// One guest: modules, programs, QEMU devices.
#[derive(Debug, Default)]
pub struct Guest {
    modules: Vec<String>,
    programs: Vec<(String, String)>,
    /// Programs linked with the NetBSD rump kernel at `RUMP_PREFIX`.
    kernel_programs: Vec<(String, String)>,
    qemu_args: Vec<String>,
    hooks: Vec<qemu::Hook>,
    /// Files put in the initramfs: path (relative, e.g. `root/a.wav`) and
    /// contents.
    files: Vec<(String, Vec<u8>)>,
}

/// What a guest run printed.
#[derive(Debug)]
pub struct Outcome {
    /// The script's output lines (between the markers).
    pub output: Vec<String>,
    /// The script's exit status; `None` if it never reported one.
    pub status: Option<i32>,
    /// The whole serial console (kernel messages included).
    pub log: String,
}

impl Outcome {
    /// Asserts the script exited 0.
    ///
    /// # Panics
    /// Otherwise, with the console.
    pub fn assert_success(&self) {
        assert_eq!(self.status, Some(0), "guest script failed:\n{}", self.log);
    }

    /// Shows the script's output, asserts it exited 0 and printed each of
    /// `wants` (anywhere in its output).
    ///
    /// # Panics
    /// Otherwise, with the console.
    pub fn assert_printed(&self, wants: &[&str]) {
        let out = self.output.join("\n");
        eprintln!("{out}");
        self.assert_success();
        for want in wants {
            assert!(out.contains(want), "no {want:?}\n{}", self.log);
        }
    }

    /// What follows `prefix` on the output lines that start with it.
    #[must_use]
    pub fn lines(&self, prefix: &str) -> Vec<&str> {
        self.output
            .iter()
            .filter_map(|l| l.strip_prefix(prefix))
            .collect()
    }

    /// The largest number printed after `prefix` (a benchmark's best
    /// round), 0 without one.
    #[must_use]
    pub fn best(&self, prefix: &str) -> f64 {
        self.lines(prefix)
            .iter()
            .filter_map(|l| l.trim().parse::<f64>().ok())
            .fold(0f64, f64::max)
    }
}

impl Guest {
    /// A guest with no devices, modules or programs yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads kernel module `name` (and what it depends on) at boot.
    #[must_use]
    pub fn module(mut self, name: &str) -> Self {
        self.modules.push(name.to_owned());
        self
    }

    /// Installs binary `bin` of workspace package `package`, linked
    /// statically, as `/bin/<bin>`.
    #[must_use]
    pub fn program(mut self, package: &str, bin: &str) -> Self {
        self.programs.push((package.to_owned(), bin.to_owned()));
        self
    }

    /// As [`Guest::program`], linked with the NetBSD rump kernel that
    /// `RUMP_PREFIX` names (the caller checks it is set).
    #[must_use]
    pub fn program_with_rump_kernel(mut self, package: &str, bin: &str) -> Self {
        self.kernel_programs
            .push((package.to_owned(), bin.to_owned()));
        self
    }

    /// Puts a file with `contents` at `path` in the guest (relative to its
    /// root, in an existing directory: `root/` is the script's).
    #[must_use]
    pub fn file(mut self, path: &str, contents: Vec<u8>) -> Self {
        self.files.push((path.to_owned(), contents));
        self
    }

    /// Extra QEMU arguments (devices, drives); pin `addr=` for stable BDFs.
    #[must_use]
    pub fn qemu(mut self, args: &[&str]) -> Self {
        self.qemu_args.extend(args.iter().map(|s| (*s).to_owned()));
        self
    }

    /// Sends the QEMU monitor `command` (hot-plug: `device_del`,
    /// `device_add` ...) once the guest prints the line `marker`; hooks run
    /// in the order given.
    #[must_use]
    pub fn on_line(mut self, marker: &str, command: &str) -> Self {
        self.hooks.push(qemu::Hook {
            marker: marker.to_owned(),
            command: command.to_owned(),
        });
        self
    }

    /// Boots, runs `script` with busybox `sh` and waits for the guest to
    /// power off. The run's files stay in `target/vm-testbed/<name>/`.
    ///
    /// # Panics
    /// If the guest cannot be built or QEMU fails or runs past its limit.
    #[must_use]
    pub fn run(&self, name: &str, script: &str) -> Outcome {
        let k = kernel();
        let dir = repo().join("target/vm-testbed").join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the run directory");
        let initrd = dir.join("initramfs.cpio");
        std::fs::write(&initrd, self.initramfs(k, script)).expect("write the initramfs");
        let serial = dir.join("serial.log");
        let mut args: Vec<String> = [
            "-machine",
            "q35",
            "-cpu",
            "max",
            "-smp",
            "2",
            // The IOMMU comes before the devices it translates for.
            "-device",
            "intel-iommu,intremap=on,aw-bits=48",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.extend(["-m".to_owned(), "1024".to_owned()]);
        args.extend(["-kernel".to_owned(), k.image.display().to_string()]);
        args.extend(["-initrd".to_owned(), initrd.display().to_string()]);
        args.extend([
            "-append".to_owned(),
            "console=ttyS0 loglevel=3 panic=-1 intel_iommu=on iommu=pt rdinit=/init".to_owned(),
        ]);
        args.extend(self.qemu_args.iter().cloned());
        let log = qemu::run_with_hooks(
            &args,
            &serial,
            LIMIT,
            &format!("vm-testbed {name}"),
            &self.hooks,
        );
        let mut output = Vec::new();
        let mut status = None;
        let mut inside = false;
        for l in log.lines() {
            let l = l.trim_end_matches('\r');
            if l.ends_with("VMTEST-BEGIN") {
                inside = true;
            } else if let Some(s) = l.strip_prefix("VMTEST-EXIT ") {
                status = s.trim().parse().ok();
                inside = false;
            } else if inside {
                output.push(l.to_owned());
            }
        }
        Outcome {
            output,
            status,
            log,
        }
    }

    fn initramfs(&self, k: &Kernel, script: &str) -> Vec<u8> {
        let mut a = Archive::new();
        for d in [
            "bin", "dev", "etc", "lib", "proc", "sys", "tmp", "mnt", "root",
        ] {
            a.dir(d).expect("dir");
        }
        // The kernel opens /dev/console for /init before devtmpfs is up.
        a.char_device("dev/console", 5, 1).expect("console");
        let busybox = std::fs::read("/bin/busybox")
            .expect("/bin/busybox (tests/setup.sh installs busybox-static)");
        a.file("bin/busybox", 0o755, &busybox).expect("busybox");
        a.symlink("bin/sh", "busybox").expect("sh");

        // Modules, dependencies first, each once.
        let mut list = String::new();
        let mut seen = BTreeSet::new();
        let mut dirs = BTreeSet::new();
        for m in &self.modules {
            for path in module_closure(k, m) {
                if !seen.insert(path.clone()) {
                    continue;
                }
                let parents: Vec<&Path> = Path::new(&path)
                    .ancestors()
                    .skip(1)
                    .filter(|p| !p.as_os_str().is_empty())
                    .collect();
                for p in parents.into_iter().rev() {
                    if dirs.insert(p.to_owned()) {
                        a.dir(&p.display().to_string()).expect("module dir");
                    }
                }
                let data = std::fs::read(k.root.join(&path))
                    .unwrap_or_else(|e| panic!("module {path}: {e}"));
                a.file(&path, 0o644, &data).expect("module");
                let _ = writeln!(list, "/{path}");
            }
        }
        a.file("etc/modules.list", 0o644, list.as_bytes())
            .expect("modules list");

        let built = build_programs(&self.programs, false)
            .into_iter()
            .chain(build_programs(&self.kernel_programs, true));
        for bin in built {
            let data = std::fs::read(&bin).expect("read a built program");
            let name = bin.file_name().expect("name").to_string_lossy();
            a.file(&format!("bin/{name}"), 0o755, &data)
                .expect("program");
        }
        for (path, contents) in &self.files {
            a.file(path, 0o644, contents).expect("a file");
        }
        a.file("init", 0o755, INIT.as_bytes()).expect("init");
        a.file("test.sh", 0o755, script.as_bytes()).expect("script");
        a.finish()
    }
}

/// The guest's first process: mounts, modules, the script, power-off.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
while read -r m; do
    insmod "$m" || echo "VMTEST-WARN insmod $m failed"
done < /etc/modules.list
cd /root
echo VMTEST-BEGIN
sh /test.sh
echo "VMTEST-EXIT $?"
sync
poweroff -f
echo o > /proc/sysrq-trigger
"#;

/// The modules `name` needs, in load order, relative to the module root
/// (built-in ones are skipped); asked of `modprobe` once per process.
fn module_closure(k: &Kernel, name: &str) -> Vec<String> {
    static KNOWN: Mutex<BTreeMap<String, Vec<String>>> = Mutex::new(BTreeMap::new());
    let mut known = KNOWN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    known
        .entry(name.to_owned())
        .or_insert_with(|| show_depends(k, name))
        .clone()
}

fn show_depends(k: &Kernel, name: &str) -> Vec<String> {
    let out = Command::new("modprobe")
        .arg("-d")
        .arg(&k.root)
        .args(["-S", &k.version, "--show-depends", name])
        .output()
        .expect("modprobe (tests/setup.sh installs kmod)");
    assert!(
        out.status.success(),
        "no module {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root = k.root.display().to_string();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("insmod "))
        .map(|p| {
            p.trim()
                .strip_prefix(&root)
                .unwrap_or(p)
                .trim_start_matches('/')
                .to_owned()
        })
        .collect()
}

/// Builds `programs` (package, binary) statically for the guest, with the
/// rump kernel of `RUMP_PREFIX` when `rump` (else without any); returns
/// their paths. One build at a time per test process.
fn build_programs(programs: &[(String, String)], rump: bool) -> Vec<PathBuf> {
    static LOCK: Mutex<()> = Mutex::new(());
    if programs.is_empty() {
        return Vec::new();
    }
    let _guard = LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let target_dir = repo().join(if rump {
        "target/vm-programs-rump"
    } else {
        "target/vm-programs"
    });
    let triple = "x86_64-unknown-linux-gnu";
    let mut cmd = crate::cargo_build(&repo(), &target_dir);
    cmd.args(["--target", triple])
        // Static glibc binaries: the guest has no shared libraries. The
        // flag reaches only the target's crates, not build scripts.
        .env(
            "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS",
            "-C target-feature=+crt-static",
        );
    if !rump {
        // Other guest programs never link a host's rump kernel.
        cmd.env_remove("RUMP_PREFIX");
    }
    for (package, bin) in programs {
        cmd.args(["-p", package, "--bin", bin]);
    }
    let out = cmd.output().expect("run cargo build for the guest");
    assert!(
        out.status.success(),
        "building the guest programs failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    programs
        .iter()
        .map(|(_, bin)| target_dir.join(triple).join("release").join(bin))
        .collect()
}
