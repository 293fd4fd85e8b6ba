//! The NetBSD rump kernel as an external, prebuilt dependency.
//!
//! NetBSD's sources are not part of this project. A rump kernel is found
//! as the systems that ship one install it:
//! - `RUMP_PREFIX=<dir>` with `<dir>/include/rump/rump.h` and
//!   `<dir>/lib/librump.a` (a buildrump.sh install tree, NetBSD's base
//!   system layout, or Debian GNU/Hurd's librump-dev under `/usr`);
//! - otherwise a `rump` pkg-config module, where a system ships one.
//!
//! Components register themselves from constructors or link sets that no
//! code references, so every component archive is linked whole
//! (`+whole-archive`), and `-z nostart-stop-gc` keeps the `__start_`/
//! `__stop_` link-set symbols that rust-lld would otherwise collect. The
//! project's `hypercall` crate provides the rumpuser interface:
//! NetBSD's `librumpuser` is never linked.
//!
//! Used from build scripts: [`RumpKernel::locate`], then
//! [`RumpKernel::link`] with a component list from [`components`].

use std::fmt;
use std::path::{Path, PathBuf};

pub mod components;

/// Why a rump kernel could not be used.
#[derive(Debug)]
pub enum LocateError {
    /// `RUMP_PREFIX` is set but the tree lacks a required file.
    Incomplete {
        /// The prefix.
        prefix: PathBuf,
        /// The missing file.
        missing: PathBuf,
    },
    /// A component the caller requires is not in the tree.
    MissingComponent {
        /// Library directory searched.
        libdir: PathBuf,
        /// The component (library name without `lib` and `.a`).
        component: String,
    },
    /// The caller asked to link NetBSD's own hypercall library.
    Librumpuser,
}

impl fmt::Display for LocateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Incomplete { prefix, missing } => write!(
                f,
                "RUMP_PREFIX={} is not a rump kernel install tree: {} is missing",
                prefix.display(),
                missing.display()
            ),
            Self::MissingComponent { libdir, component } => write!(
                f,
                "rump component {component} is not in {} (lib{component}.a)",
                libdir.display()
            ),
            Self::Librumpuser => write!(
                f,
                "librumpuser must not be linked: the hypercall crate is the rumpuser implementation"
            ),
        }
    }
}

impl std::error::Error for LocateError {}

/// A located rump kernel install.
#[derive(Debug, Clone)]
pub struct RumpKernel {
    /// Directory holding `rump/rump.h`.
    pub include_dir: PathBuf,
    /// Directory holding `librump*.a`.
    pub lib_dir: PathBuf,
}

impl RumpKernel {
    /// Finds the kernel: `RUMP_PREFIX` first, then pkg-config `rump`.
    /// `Ok(None)` when neither names one (everything still builds; NetBSD
    /// back ends and tests are then left out).
    pub fn locate() -> Result<Option<Self>, LocateError> {
        if let Some(prefix) = std::env::var_os("RUMP_PREFIX").filter(|p| !p.is_empty()) {
            return Self::from_prefix(Path::new(&prefix)).map(Some);
        }
        let Ok(lib) = pkg_config::Config::new()
            .cargo_metadata(false)
            .env_metadata(false)
            .probe("rump")
        else {
            return Ok(None);
        };
        let (Some(include_dir), Some(lib_dir)) =
            (lib.include_paths.first(), lib.link_paths.first())
        else {
            return Ok(None);
        };
        let k = Self {
            include_dir: include_dir.clone(),
            lib_dir: lib_dir.clone(),
        };
        k.check().map(|()| Some(k))
    }

    /// A kernel installed under `prefix` (`include/`, `lib/`).
    pub fn from_prefix(prefix: &Path) -> Result<Self, LocateError> {
        let k = Self {
            include_dir: prefix.join("include"),
            lib_dir: prefix.join("lib"),
        };
        k.check().map(|()| k).map_err(|e| match e {
            LocateError::Incomplete { missing, .. } => LocateError::Incomplete {
                prefix: prefix.to_owned(),
                missing,
            },
            e => e,
        })
    }

    fn check(&self) -> Result<(), LocateError> {
        for f in [
            self.include_dir.join("rump/rump.h"),
            self.include_dir.join("rump/rumpuser.h"),
            self.lib_dir.join("librump.a"),
        ] {
            if !f.exists() {
                return Err(LocateError::Incomplete {
                    prefix: PathBuf::new(),
                    missing: f,
                });
            }
        }
        Ok(())
    }

    /// Whether component `name` (e.g. `rumpfs_ffs`) is installed.
    #[must_use]
    pub fn has(&self, name: &str) -> bool {
        self.archive(name).is_some()
    }

    /// The archive to link for `name`: the position-independent variant
    /// (`lib<name>_pic.a`, needed for PIE executables) where present.
    #[must_use]
    pub fn archive(&self, name: &str) -> Option<(String, PathBuf)> {
        [format!("{name}_pic"), name.to_owned()]
            .into_iter()
            .map(|n| {
                let p = self.lib_dir.join(format!("lib{n}.a"));
                (n, p)
            })
            .find(|(_, p)| p.exists())
    }

    /// Whether the kernel's USB stack can drive a host controller: its
    /// `usbdi.c` must be built with `NUSB_DMA` > 0 (it then calls
    /// `usb_allocmem_flags` for transfer buffers). usbdi.c reads
    /// `usb_dma.h` only under `_KERNEL_OPT`, which rump builds do not
    /// define, so in the 2016 tree `NUSB_DMA` is 0 and `usbd_alloc_buffer`
    /// asserts on the first transfer of a real controller (a kernel built
    /// with `CPPFLAGS.usbdi.c=-DNUSB_DMA=1` works). Read from the archive with
    /// `nm` (binutils); `None` when there is no USB component or `nm`
    /// cannot tell.
    #[must_use]
    pub fn usb_dma(&self) -> Option<bool> {
        let (_, archive) = self.archive("rumpdev_usb")?;
        let out = std::process::Command::new("nm")
            .arg("-A")
            .arg(&archive)
            .output()
            .ok()
            .filter(|o| o.status.success())?;
        let text = String::from_utf8_lossy(&out.stdout);
        usb_dma_in_symbols(&text)
    }

    /// Whether the kernel's FFS and ext2fs compact directory blocks safely.
    /// Compaction (`ufs_direnter`, `ext2fs_direnter`) slides entries down
    /// with `memcpy(ep, nep, dsize)` over overlapping bytes; gcc 12 at -O2
    /// expands that memcpy inline (first and last quadwords, then `rep
    /// movsq`), and the early store of the last quadword overwrites source
    /// bytes not yet copied: after removals and renames, a directory block
    /// is corrupted and the next lookup panics ("bad dir", `ext2fs_dirbadentry`).
    /// The 2016 CI kernel is built that way; one built with
    /// `-mstringop-strategy=libcall` calls the kernel's memcpy, which
    /// copies forward, and is safe. Read from the archives with `objdump -d
    /// -r` (binutils): safe when every direnter/dircompact function calls
    /// memcpy or memmove; `None` without the file systems or objdump.
    #[must_use]
    pub fn dir_compaction_safe(&self) -> Option<bool> {
        let mut verdict = None;
        for lib in ["rumpfs_ffs", "rumpfs_ext2fs"] {
            let Some((_, archive)) = self.archive(lib) else {
                continue;
            };
            let out = std::process::Command::new("objdump")
                .args(["-d", "-r", "--no-show-raw-insn"])
                .arg(&archive)
                .output()
                .ok()
                .filter(|o| o.status.success())?;
            match compaction_calls_memcpy(&String::from_utf8_lossy(&out.stdout)) {
                Some(false) => return Some(false),
                Some(true) => verdict = Some(true),
                None => {}
            }
        }
        verdict
    }

    /// Resolves a component set against this install: every required
    /// component must exist; optional ones are kept only if present.
    /// Returns the library names in link order (leaf drivers first, the
    /// factions and `rump` last).
    pub fn resolve(&self, set: &components::ComponentSet) -> Result<Vec<String>, LocateError> {
        let mut out = Vec::new();
        for c in set.optional.iter().filter(|c| self.has(c)) {
            out.push((*c).to_owned());
        }
        for c in set.required {
            if *c == "rumpuser" {
                return Err(LocateError::Librumpuser);
            }
            if !self.has(c) {
                return Err(LocateError::MissingComponent {
                    libdir: self.lib_dir.clone(),
                    component: (*c).to_owned(),
                });
            }
            out.push((*c).to_owned());
        }
        out.sort_by_key(|c| components::link_rank(c));
        out.dedup();
        Ok(out)
    }

    /// Prints the cargo directives that link `components` (as returned by
    /// [`RumpKernel::resolve`]) whole into the crate's outputs.
    pub fn link(&self, components: &[String]) {
        println!("cargo:rustc-link-search=native={}", self.lib_dir.display());
        for c in components {
            let (name, _) = self.archive(c).expect("resolved component exists");
            println!("cargo:rustc-link-lib=static:+whole-archive,-bundle={name}");
        }
        println!("cargo:rustc-link-lib=dylib=pthread");
        binary_link_args();
    }
}

/// Link arguments every executable containing the kernel needs (cargo
/// applies a library's link arguments to that package's own targets only,
/// so each package with binaries or tests over the kernel calls this from
/// its build script): keep the link-set `__start_`/`__stop_` symbols that
/// rust-lld's default `-z start-stop-gc` would drop, and send the drivers'
/// `bus_space_unmap` calls to the hypercall crate's (the rump PCI glue's
/// panics for memory space).
pub fn binary_link_args() {
    println!("cargo:rustc-link-arg=-Wl,-z,nostart-stop-gc");
    println!("cargo:rustc-link-arg=-Wl,--wrap=rumpns_bus_space_unmap");
}

/// Build-script helper for crates over the rump crate: declares `cfg`, sets
/// it when the rump crate linked a kernel (its `links = "rump"` metadata),
/// adds the link arguments executables over the kernel need then, and
/// returns whether it did.
#[must_use]
pub fn kernel_linked_cfg(cfg: &str) -> bool {
    println!("cargo:rerun-if-env-changed=DEP_RUMP_KERNEL");
    println!("cargo::rustc-check-cfg=cfg({cfg})");
    let linked = std::env::var_os("DEP_RUMP_KERNEL").is_some();
    if linked {
        println!("cargo:rustc-cfg={cfg}");
        binary_link_args();
    }
    linked
}

/// [`RumpKernel::usb_dma`] from `nm -A` output of `librumpdev_usb`:
/// whether `usbdi.o` calls `usb_allocmem_flags` (`None` without `usbdi.o`).
#[must_use]
pub fn usb_dma_in_symbols(nm: &str) -> Option<bool> {
    let usbdi: Vec<&str> = nm.lines().filter(|l| l.contains("usbdi.o:")).collect();
    if usbdi.is_empty() {
        return None;
    }
    Some(
        usbdi
            .iter()
            .any(|l| l.trim_end().ends_with(" U rumpns_usb_allocmem_flags")),
    )
}

/// [`RumpKernel::dir_compaction_safe`] from `objdump -d -r` output: whether
/// every function whose name has `direnter` or `dircompact` in it calls
/// `memcpy` or `memmove` (`None` when there is none).
#[must_use]
pub fn compaction_calls_memcpy(objdump: &str) -> Option<bool> {
    let mut found = false;
    let mut current: Option<bool> = None;
    let mut all_call = true;
    for line in objdump.lines() {
        // A function starts: "0000000000001830 <ufs_dircompact.constprop.0>:"
        if let Some(name) = line
            .strip_suffix(">:")
            .and_then(|l| l.split_once(" <"))
            .map(|(_, n)| n)
        {
            if current == Some(false) {
                all_call = false;
            }
            current = (name.contains("direnter") || name.contains("dircompact")).then_some(false);
            found |= current.is_some();
        } else if current == Some(false)
            && (line.contains("rumpns_memcpy") || line.contains("rumpns_memmove"))
        {
            current = Some(true);
        }
    }
    if current == Some(false) {
        all_call = false;
    }
    found.then_some(all_call)
}

/// Build-script helper: locates the kernel, tells cargo when to look
/// again, and declares the `rump_kernel` cfg.
pub fn locate_for_build() -> Result<Option<RumpKernel>, LocateError> {
    println!("cargo:rerun-if-env-changed=RUMP_PREFIX");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    println!("cargo::rustc-check-cfg=cfg(rump_kernel)");
    let k = RumpKernel::locate()?;
    if let Some(k) = &k {
        println!(
            "cargo:rerun-if-changed={}",
            k.lib_dir.join("librump.a").display()
        );
    }
    Ok(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_tree(libs: &[&str]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "netbsd-src-test-{}-{}",
            std::process::id(),
            libs.join("-")
        ));
        std::fs::create_dir_all(dir.join("include/rump")).unwrap();
        std::fs::create_dir_all(dir.join("lib")).unwrap();
        std::fs::write(dir.join("include/rump/rump.h"), "").unwrap();
        std::fs::write(dir.join("include/rump/rumpuser.h"), "").unwrap();
        for l in libs {
            std::fs::write(dir.join(format!("lib/lib{l}.a")), "").unwrap();
        }
        dir
    }

    #[test]
    fn incomplete_prefix_names_the_missing_file() {
        let dir = fake_tree(&[]);
        let err = RumpKernel::from_prefix(&dir).unwrap_err();
        assert!(err.to_string().contains("librump.a"), "{err}");
    }

    #[test]
    fn directory_compaction_is_safe_only_where_it_calls_memcpy() {
        let inline = "\
0000000000001830 <ufs_dircompact.constprop.0>:
    19cf:\trep movsq %ds:(%rsi),%es:(%rdi)
    1ae3:\tcall   1ae8 <ufs_dircompact.constprop.0+0x2b8>
\t\t\t1ae4: R_X86_64_PLT32\trumpns_ufsdirhash_checkblock-0x4
0000000000001e70 <rumpns_ufs_direnter>:
    1fb0:\trep movsq %ds:(%rsi),%es:(%rdi)
0000000000002000 <rumpns_ufs_makedirentry>:
\t\t\t227: R_X86_64_PLT32\trumpns_memcpy-0x4
";
        assert_eq!(compaction_calls_memcpy(inline), Some(false));
        let libcall = "\
0000000000001830 <ufs_dircompact.constprop.0>:
\t\t\t1993: R_X86_64_PLT32\trumpns_memcpy-0x4
0000000000001e70 <rumpns_ufs_direnter>:
\t\t\t1fb1: R_X86_64_PLT32\trumpns_memcpy-0x4
";
        assert_eq!(compaction_calls_memcpy(libcall), Some(true));
        assert_eq!(compaction_calls_memcpy("0000 <other>:\n"), None);
    }

    #[test]
    fn usb_dma_is_read_from_usbdi_references() {
        let without = "librumpdev_usb.a:usbdi.o:0000000000000010 T rumpns_usbd_transfer\n\
                       librumpdev_usb.a:usb_mem.o:00000000000002d0 T rumpns_usb_allocmem_flags\n";
        assert_eq!(usb_dma_in_symbols(without), Some(false));
        let with = "librumpdev_usb.a:usbdi.o:                 U rumpns_usb_allocmem_flags\n\
                    librumpdev_usb.a:usbdi.o:0000000000000010 T rumpns_usbd_transfer\n";
        assert_eq!(usb_dma_in_symbols(with), Some(true));
        assert_eq!(usb_dma_in_symbols("librumpdev_usb.a:dummy.o:\n"), None);
    }

    #[test]
    fn resolve_orders_leaves_first_prefers_pic_and_skips_absent_optionals() {
        let dir = fake_tree(&[
            "rump",
            "rump_pic",
            "rumpvfs",
            "rumpdev",
            "rumpdev_disk",
            "rumpfs_ffs",
        ]);
        let k = RumpKernel::from_prefix(&dir).unwrap();
        let set = components::ComponentSet {
            required: &["rump", "rumpvfs", "rumpdev", "rumpdev_disk"],
            optional: &["rumpfs_ffs", "rumpfs_nope"],
        };
        let libs = k.resolve(&set).unwrap();
        assert_eq!(
            libs,
            ["rumpfs_ffs", "rumpdev_disk", "rumpdev", "rumpvfs", "rump"]
        );
        assert_eq!(k.archive("rump").unwrap().0, "rump_pic");
        assert_eq!(k.archive("rumpvfs").unwrap().0, "rumpvfs");
    }

    #[test]
    fn missing_required_component_and_librumpuser_are_errors() {
        let dir = fake_tree(&["rump", "rumpuser"]);
        let k = RumpKernel::from_prefix(&dir).unwrap();
        let need_pci = components::ComponentSet {
            required: &["rump", "rumpdev_pci"],
            optional: &[],
        };
        assert!(matches!(
            k.resolve(&need_pci),
            Err(LocateError::MissingComponent { .. })
        ));
        let bad = components::ComponentSet {
            required: &["rump", "rumpuser"],
            optional: &[],
        };
        assert!(matches!(k.resolve(&bad), Err(LocateError::Librumpuser)));
    }
}
