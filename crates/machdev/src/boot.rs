//! The Hurd's bootstrap chain, as the C stack's libmachdev runs it:
//! command-line ports, a control port whose `fsys_getpriv` hands out this
//! server's master port as the device master, `fsys_startup`/`fsys_init`
//! forwarded up the chain, and `startup_dosync` turned into a driver sync.
//!
//! The host side — making a task's bootstrap port, resuming it, registering
//! with the startup server — is [`BootHost`]; the Hurd implements it with
//! Mach and Hurd RPCs, tests with the loopback kernel.

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use mach::{KernReturn, PortName};

/// Ports from the command line (`--host-priv-port`, `--device-master-port`,
/// `--next-task`; port names as decimal numbers, from the boot script).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BootOptions {
    /// The host privileged port.
    pub host_priv: Option<PortName>,
    /// The kernel's (or the previous link's) device master.
    pub device_master: Option<PortName>,
    /// The next task of the chain, to resume with our control port as its
    /// bootstrap port.
    pub next_task: Option<PortName>,
}

impl BootOptions {
    /// Refuses bootstrap-chain options where there is no GNU Mach to chain
    /// with (a translator run on Linux).
    pub fn none_outside_mach(&self) -> Result<(), String> {
        if *self == Self::default() {
            Ok(())
        } else {
            Err("the bootstrap-chain options need GNU Mach".to_owned())
        }
    }

    /// Takes the bootstrap options out of `args` (`--opt=N`, `--opt N`, or
    /// the short `-h`/`-d`/`-N` forms); returns the other arguments.
    pub fn parse(args: &[String]) -> Result<(Self, Vec<String>), String> {
        let mut o = Self::default();
        let mut rest = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let (key, inline) = match a.split_once('=') {
                Some((k, v)) if k.starts_with("--") => (k, Some(v.to_owned())),
                _ => (a.as_str(), None),
            };
            let slot = match key {
                "--host-priv-port" | "-h" => &mut o.host_priv,
                "--device-master-port" | "-d" => &mut o.device_master,
                "--next-task" | "-N" => &mut o.next_task,
                _ => {
                    rest.push(a.clone());
                    continue;
                }
            };
            let value = match inline {
                Some(v) => v,
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("{key} needs a port name"))?,
            };
            let n: u32 = value
                .parse()
                .map_err(|_| format!("{key}: {value:?} is not a port name"))?;
            *slot = (n != 0).then_some(PortName(n));
        }
        Ok((o, rest))
    }
}

/// A translator's own options after [`BootOptions::parse`]: each comes as
/// `--key=value`, `--key value` or a bare flag.
#[derive(Debug)]
pub struct OptionArgs {
    args: alloc::vec::IntoIter<String>,
    key: String,
    inline: Option<String>,
}

impl OptionArgs {
    /// Goes through `args`.
    #[must_use]
    pub fn new(args: Vec<String>) -> Self {
        Self {
            args: args.into_iter(),
            key: String::new(),
            inline: None,
        }
    }

    /// The next option's key (`--image`, `-V` ...), or `None` at the end.
    pub fn next_key(&mut self) -> Option<&str> {
        let a = self.args.next()?;
        (self.key, self.inline) = match a.split_once('=') {
            Some((k, v)) if k.starts_with("--") => (k.to_owned(), Some(v.to_owned())),
            _ => (a, None),
        };
        Some(&self.key)
    }

    /// The current option's value: after its `=`, else the next argument.
    pub fn value(&mut self) -> Result<String, String> {
        match self.inline.take() {
            Some(v) => Ok(v),
            None => self
                .args
                .next()
                .ok_or_else(|| format!("{} needs a value", self.key)),
        }
    }

    /// The current option's value parsed as a `T`; a value that does not
    /// parse is `"--key VALUE: <expected>"`.
    pub fn parsed<T: core::str::FromStr>(&mut self, expected: &str) -> Result<T, String> {
        let v = self.value()?;
        v.parse()
            .map_err(|_| format!("{} {v:?}: {expected}", self.key))
    }

    /// The options every translator takes, for the current key: `--threads
    /// N` into `threads`, and `-?`/`--help` (prints `help`) and
    /// `-V`/`--version` (prints `name version`), which exit. Returns
    /// whether the key was one of them.
    #[cfg(feature = "std")]
    pub fn common(
        &mut self,
        help: &str,
        name: &str,
        version: &str,
        threads: &mut Option<usize>,
    ) -> Result<bool, String> {
        match self.key.as_str() {
            "--threads" => *threads = Some(self.parsed("not a number")?),
            "-?" | "--help" => {
                std::print!("{help}");
                std::process::exit(0);
            }
            "-V" | "--version" => {
                std::println!("{name} {version}");
                std::process::exit(0);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// The chain as this server sees it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Chain {
    /// Our bootstrap port: the previous link's control port. `fsys_startup`
    /// and `fsys_init` are forwarded there.
    pub bootstrap: Option<PortName>,
    /// The host privileged port handed out by `fsys_getpriv`.
    pub host_priv: Option<PortName>,
}

/// Host services of the bootstrap chain.
pub trait BootHost: Send + Sync {
    /// After `fsys_init` went up the chain: the system is up enough to
    /// register this task with the startup server (essential task, shutdown
    /// notification on `sync_port`).
    fn system_initialized(
        &self,
        proc_server: PortName,
        auth: PortName,
        sync_port: PortName,
    ) -> Result<(), KernReturn>;
}

/// A Hurd `error_t` from its errno number (BSD numbering: `EPERM` 1 ...).
#[must_use]
pub const fn hurd_error(errno: i32) -> KernReturn {
    KernReturn(0x4000_0000 | errno)
}

/// Hurd errno `EOPNOTSUPP`, answered to `fsys` routines a device server
/// does not provide (and to `fsys_startup` at the top of a chain).
pub const HURD_EOPNOTSUPP: KernReturn = hurd_error(45);
/// Hurd errno `EBUSY`, answered to `fsys_goaway`: the system's disks do
/// not go away.
pub const HURD_EBUSY: KernReturn = hurd_error(16);

/// A translator's `main`: parses the command line with `parse` (an error
/// is exit status 64 with a pointer to `--help`), then runs `run` (an error
/// is printed, exit status 1). Messages start with `name`.
#[cfg(feature = "std")]
pub fn translator_main<O>(
    name: &str,
    parse: impl FnOnce(&[String]) -> Result<O, String>,
    run: impl FnOnce(&O) -> Result<(), String>,
) -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let o = match parse(&args) {
        Ok(o) => o,
        Err(e) => {
            std::eprintln!("{name}: {e}\nTry `{name} --help' for more information.");
            return std::process::ExitCode::from(64);
        }
    };
    match run(&o) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            std::eprintln!("{name}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn boot_script_options_parse_in_every_form() {
        let (o, rest) = BootOptions::parse(&args(&[
            "--host-priv-port=1",
            "-d",
            "2",
            "--next-task",
            "17",
            "wd0",
        ]))
        .unwrap();
        assert_eq!(o.host_priv, Some(PortName(1)));
        assert_eq!(o.device_master, Some(PortName(2)));
        assert_eq!(o.next_task, Some(PortName(17)));
        assert_eq!(rest, ["wd0"]);
        let (o, _) = BootOptions::parse(&args(&["--next-task=0"])).unwrap();
        assert_eq!(o.next_task, None);
    }

    #[test]
    fn bad_port_names_are_refused_clearly() {
        assert!(
            BootOptions::parse(&args(&["--host-priv-port=x"]))
                .unwrap_err()
                .contains("not a port name")
        );
        assert!(
            BootOptions::parse(&args(&["-N"]))
                .unwrap_err()
                .contains("needs a port name")
        );
    }
}
