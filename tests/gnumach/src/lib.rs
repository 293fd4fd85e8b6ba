//! The GNU Mach test bed: runs test programs as bootstrap tasks of the real
//! kernel and reads what they print.
//!
//! [`Boot`] builds the task programs (`tasks/`, their own workspace,
//! linked for a bare kernel into `target/gnumach-tasks`), writes a GRUB
//! boot script with one `module` line per task, makes an ISO with
//! `grub-mkrescue`, boots it with QEMU (TCG, `-no-reboot`) and returns the
//! serial console. Tasks print `GMT-PASS <check>`, `GMT-FAIL <check>: why`,
//! `GMT-PANIC ...` and `GMT-END <task>`, then end the run with
//! `host_reboot`. The kernel is trixie's `gnumach-image-1.8-amd64-up`,
//! unpacked by `mig-bindings/setup-mig.sh` (run by `tests/setup.sh`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use testbed::repo;

/// One boot: the tasks (in boot-script order) and the QEMU devices.
#[derive(Debug, Default)]
pub struct Boot {
    modules: Vec<(String, String)>,
    qemu_args: Vec<String>,
}

/// QEMU is killed after this long (a boot normally takes 1.5–4 s).
const QEMU_LIMIT: Duration = Duration::from_mins(2);

/// What a boot printed.
#[derive(Debug)]
pub struct Outcome {
    /// The serial console.
    pub log: String,
}

impl Outcome {
    /// What follows `prefix` on the lines that have it (the kernel may
    /// print before a task's first line, e.g. `start hello: `).
    #[must_use]
    pub fn lines(&self, prefix: &str) -> Vec<&str> {
        self.log
            .lines()
            .filter_map(|l| {
                let l = l.trim_end_matches('\r');
                l.find(prefix).map(|i| &l[i + prefix.len()..])
            })
            .collect()
    }

    /// Asserts no failure or panic, every task in `ended` ended, and every
    /// check in `expected` passed.
    pub fn assert_passed(&self, ended: &[&str], expected: &[&str]) {
        let fails = self.lines("GMT-FAIL ");
        let panics = self.lines("GMT-PANIC ");
        assert!(
            fails.is_empty() && panics.is_empty(),
            "failures {fails:?} panics {panics:?}\n{}",
            self.log
        );
        let passes = self.lines("GMT-PASS ");
        for e in expected {
            assert!(
                passes.iter().any(|p| p.starts_with(e)),
                "check {e:?} did not pass\n{}",
                self.log
            );
        }
        let ends = self.lines("GMT-END ");
        for t in ended {
            assert!(ends.contains(t), "task {t} did not end\n{}", self.log);
        }
    }
}

impl Boot {
    /// A boot with no task yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a task: `program` (a binary of `tasks/`) with the rest of its
    /// `module` line, in GNU Mach's boot-script syntax (`${host-port}`,
    /// `$(task-create)`, ...).
    #[must_use]
    pub fn task(mut self, program: &str, words: &str) -> Self {
        self.modules.push((program.to_owned(), words.to_owned()));
        self
    }

    /// Extra QEMU arguments (devices, drives).
    #[must_use]
    pub fn qemu(mut self, args: &[&str]) -> Self {
        self.qemu_args.extend(args.iter().map(|s| (*s).to_owned()));
        self
    }

    /// Boots and waits for QEMU to exit (at most [`QEMU_LIMIT`]).
    #[must_use]
    pub fn run(self, name: &str) -> Outcome {
        let kernel = kernel();
        let tasks = build_tasks();
        let dir = repo().join("target/gnumach-testbed").join(name);
        let _ = std::fs::remove_dir_all(&dir);
        let boot = dir.join("iso/boot");
        std::fs::create_dir_all(&boot).expect("create the ISO tree");
        std::fs::copy(kernel, boot.join("gnumach.gz")).expect("copy the kernel");
        let mut cfg = String::from(
            "set timeout=0\nserial --unit=0 --speed=115200\nterminal_output serial console\n\
             menuentry \"gnumach-testbed\" {\n  multiboot /boot/gnumach.gz console=com0\n",
        );
        for (program, words) in &self.modules {
            std::fs::copy(tasks.join(program), boot.join(program))
                .unwrap_or_else(|e| panic!("task program {program}: {e}"));
            let _ = writeln!(cfg, "  module /boot/{program} {program} {words}");
        }
        cfg.push_str("}\n");
        std::fs::create_dir_all(boot.join("grub")).expect("grub dir");
        std::fs::write(boot.join("grub/grub.cfg"), cfg).expect("grub.cfg");
        let iso = dir.join("boot.iso");
        let out = Command::new("grub-mkrescue")
            .arg("-o")
            .arg(&iso)
            .arg(dir.join("iso"))
            .output()
            .expect("grub-mkrescue (tests/setup.sh installs grub-pc-bin, xorriso, mtools)");
        assert!(
            out.status.success(),
            "grub-mkrescue: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let serial = dir.join("serial.log");
        let mut args: Vec<String> = ["-m", "512", "-cdrom"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        args.push(iso.display().to_string());
        args.extend(self.qemu_args.iter().cloned());
        let log = testbed::qemu::run(
            &args,
            &serial,
            QEMU_LIMIT,
            &format!("gnumach-testbed {name}"),
        );
        Outcome { log }
    }
}

/// The kernel image (fetched by `mig-bindings/setup-mig.sh`), found once
/// per test process.
fn kernel() -> &'static Path {
    static KERNEL: OnceLock<PathBuf> = OnceLock::new();
    KERNEL.get_or_init(find_kernel)
}

fn find_kernel() -> PathBuf {
    let out = Command::new("bash")
        .arg(repo().join("mig-bindings/setup-mig.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run mig-bindings/setup-mig.sh");
    assert!(out.status.success(), "mig-bindings/setup-mig.sh failed");
    let text = String::from_utf8_lossy(&out.stdout);
    let path = text
        .lines()
        .find_map(|l| l.strip_prefix("GNUMACH_KERNEL="))
        .expect("setup-mig.sh names the kernel");
    PathBuf::from(path)
}

/// Builds the task programs once per test process; returns their directory.
fn build_tasks() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(build)
}

fn build() -> PathBuf {
    let dir = repo().join("tests/gnumach/tasks");
    let target = repo().join("target/gnumach-tasks");
    let status = testbed::cargo_build(&dir, &target)
        .arg("--locked")
        .status()
        .expect("cargo build the GNU Mach tasks");
    assert!(status.success(), "building tests/gnumach/tasks failed");
    target.join("x86_64-unknown-linux-gnu/release")
}
