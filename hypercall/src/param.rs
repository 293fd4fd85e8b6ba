//! Kernel parameters (`rumpuser_getparam`).
//!
//! Mandatory names (`_RUMPUSER_NCPU`, `_RUMPUSER_HOSTNAME`) always have a
//! value; other names come from values the program set with [`set`] or,
//! failing that, from the environment (`RUMP_NCPU`, `RUMP_VERBOSE`,
//! `RUMP_MEMLIMIT`, `RUMP_THREADS`, ...). `RUMP_MODULEBASE` defaults to "0"
//! so the kernel does not probe host directories for modules.

use std::collections::HashMap;
use std::sync::OnceLock;

use parking_lot::Mutex;

use crate::errno::{HyResult, NetbsdErrno, nb};

/// `RUMPUSER_PARAM_NCPU`.
pub const PARAM_NCPU: &str = "_RUMPUSER_NCPU";
/// `RUMPUSER_PARAM_HOSTNAME`.
pub const PARAM_HOSTNAME: &str = "_RUMPUSER_HOSTNAME";

fn overrides() -> &'static Mutex<HashMap<String, String>> {
    static MAP: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    MAP.get_or_init(Mutex::default)
}

/// Sets a parameter for the kernel, overriding the environment (a
/// translator's command-line options use this, e.g. `RUMP_NCPU`).
pub fn set(name: &str, value: &str) {
    overrides().lock().insert(name.to_owned(), value.to_owned());
}

fn lookup(name: &str) -> Option<String> {
    if let Some(v) = overrides().lock().get(name) {
        return Some(v.clone());
    }
    std::env::var(name).ok()
}

/// The value of parameter `name`: `EINVAL` for an unknown mandatory
/// (`_`-prefixed) name, `ENOENT` for an unset optional one.
pub fn get(name: &str) -> HyResult<String> {
    match name {
        PARAM_NCPU => Ok(ncpu(lookup("RUMP_NCPU").as_deref())),
        PARAM_HOSTNAME => Ok(lookup("RUMP_HOSTNAME").unwrap_or_else(default_hostname)),
        n if n.starts_with('_') => Err(NetbsdErrno(nb::EINVAL)),
        "RUMP_MODULEBASE" => Ok(lookup(name).unwrap_or_else(|| "0".to_owned())),
        n => lookup(n).ok_or(NetbsdErrno(nb::ENOENT)),
    }
}

/// `RUMP_NCPU`: a number, "host" for the host's processor count; unset or
/// unusable values give 2 (interrupt-driven drivers need at least two).
fn ncpu(v: Option<&str>) -> String {
    let host = || std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let n = match v {
        Some("host") => host(),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if n >= 1 => n,
            _ => {
                log::warn!("RUMP_NCPU={s:?} is not a CPU count; using 2");
                2
            }
        },
        None => 2,
    };
    n.to_string()
}

fn default_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is writable for its length.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let host = if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "localhost".to_owned()
    };
    format!("rump-{:05}.{host}", std::process::id())
}

/// Copies `value` NUL-terminated into `buf`; `ERANGE` if it does not fit.
pub fn copy_out(value: &str, buf: &mut [u8]) -> HyResult<()> {
    let bytes = value.as_bytes();
    if bytes.len() >= buf.len() {
        return Err(NetbsdErrno(nb::ERANGE));
    }
    buf[..bytes.len()].copy_from_slice(bytes);
    buf[bytes.len()] = 0;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ncpu_parsing() {
        assert_eq!(ncpu(None), "2");
        assert_eq!(ncpu(Some("4")), "4");
        assert_eq!(ncpu(Some("0")), "2");
        assert_eq!(ncpu(Some("x")), "2");
        assert!(ncpu(Some("host")).parse::<usize>().unwrap() >= 1);
    }

    #[test]
    fn unknown_mandatory_name_is_einval_and_optional_is_enoent() {
        assert_eq!(get("_RUMPUSER_NOPE").unwrap_err().0, nb::EINVAL);
        assert_eq!(get("RUMP_SURELY_UNSET_PARAM").unwrap_err().0, nb::ENOENT);
    }

    #[test]
    fn override_wins_and_copy_out_checks_space() {
        set("RUMP_TEST_OVERRIDE", "abc");
        assert_eq!(get("RUMP_TEST_OVERRIDE").unwrap(), "abc");
        let mut small = [0u8; 3];
        assert_eq!(copy_out("abc", &mut small).unwrap_err().0, nb::ERANGE);
        let mut ok = [0xffu8; 4];
        copy_out("abc", &mut ok).unwrap();
        assert_eq!(&ok, b"abc\0");
    }
}
