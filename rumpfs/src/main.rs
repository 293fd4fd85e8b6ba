//! rumpfs: the file-system translator.

use std::path::PathBuf;
use std::process::ExitCode;

use rumpfs::detect::FsType;
use rumpfs::store::Store;

const HELP: &str = "\
Usage: rumpfs [OPTION...] STORE
Serve the file system in STORE with NetBSD's own file-system code (FFS,
ext2, FAT) running in a rump kernel.

STORE is a libstore-style name: file:PATH (an image or block device; a
bare PATH means the same), part:N:STORE (partition N of an MBR or GPT
table, logical MBR partitions from 5), or device:NAME (a Mach disk device,
on the Hurd).

  -t, --type=TYPE            ffs (UFS1/UFS2), ext2fs or msdos (FAT12/16/32);
                             default: detected from the superblock
  -r, --readonly             Mount read-only (the store is opened read-only)
  -s, --sync                 Every write reaches the store before it is
                             answered
      --accept-kernel-defect Serve FFS or ext2 read-write on a kernel whose
                             directory compaction is known to corrupt
                             directories (rumpfs refuses otherwise; see
                             docs/rumpfs.md): safe only for workloads that
                             never remove or rename
      --fuse=MOUNTPOINT      (Linux) Serve through FUSE on MOUNTPOINT until
                             `fusermount -u MOUNTPOINT', SIGTERM or SIGINT;
                             the file system is unmounted cleanly then
      --threads=N            FUSE worker threads (default 4)
  -?, --help                 Give this help list
  -V, --version              Print program version

On the Hurd rumpfs is a translator (settrans -c /mnt /hurd/rumpfs STORE)
answering io/fs/fsys RPCs as libnetfs's translators do: lookups (with
FS_RETRY_REAUTH for `..' at the root and FS_RETRY_MAGICAL for absolute
symbolic links), read/write/seek/stat, open modes, directories, links,
attributes, statfs, sync, and glibc's symlink/mknod (dir_mkfile and the
short-circuited /hurd/symlink, chrdev, blkdev, fifo translators);
fsys_goaway, SIGTERM and the startup server's startup_dosync unmount it
cleanly. device:NAME stores are opened through
the device master (--device-master-port, else the system's: root only).
What is not served (io_map, file_exec, locks, starting translators on
nodes, ...) answers EOPNOTSUPP; see docs/rumpfs.md.

Served through FUSE: lookup, getattr/setattr (mode, owner, size, times),
readdir and readdirplus, create/mknod/mkdir/symlink/link, unlink/rmdir,
rename (RENAME_NOREPLACE; RENAME_EXCHANGE answers EINVAL), read/write
(1 MiB), fsync/fsyncdir, statfs. Permissions are checked by the Linux
kernel (default_permissions); xattrs and locks are not served (ENOSYS).

Logging: RUST_LOG=debug.
";

#[derive(Debug)]
struct Options {
    boot: machdev::BootOptions,
    store: Store,
    fstype: Option<FsType>,
    readonly: bool,
    sync: bool,
    accept_kernel_defect: bool,
    fuse: Option<PathBuf>,
    threads: Option<usize>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let (boot, args) = machdev::BootOptions::parse(args)?;
    let mut store = None;
    let mut o = Options {
        boot,
        store: Store::File(PathBuf::new()),
        fstype: None,
        readonly: false,
        sync: false,
        accept_kernel_defect: false,
        fuse: None,
        threads: None,
    };
    let mut args = machdev::OptionArgs::new(args);
    while let Some(key) = args.next_key() {
        let key = key.to_owned();
        if args.common(HELP, "rumpfs", env!("CARGO_PKG_VERSION"), &mut o.threads)? {
            continue;
        }
        match key.as_str() {
            "-t" | "--type" => o.fstype = Some(FsType::from_name(&args.value()?)?),
            "-r" | "--readonly" => o.readonly = true,
            "-s" | "--sync" => o.sync = true,
            "--accept-kernel-defect" => o.accept_kernel_defect = true,
            "--fuse" => o.fuse = Some(PathBuf::from(args.value()?)),
            k if k.starts_with('-') && k.len() > 1 => {
                return Err(format!("unrecognized option '{k}'"));
            }
            name => {
                if store.is_some() {
                    return Err(format!("one store only (and {name:?})"));
                }
                store = Some(Store::parse(name)?);
            }
        }
    }
    o.store = store.ok_or("no store given")?;
    if o.threads == Some(0) {
        return Err("--threads 0: at least one".into());
    }
    Ok(o)
}

#[cfg(all(rump_kernel, target_os = "linux"))]
fn run(o: &Options) -> Result<(), String> {
    o.boot.none_outside_mach()?;
    let Some(mountpoint) = &o.fuse else {
        return Err(
            "on Linux rumpfs serves through FUSE: give --fuse MOUNTPOINT (the Hurd's \
             io/fs front end is served on the Hurd, as a translator)"
                .into(),
        );
    };
    let (vol, signals) = block_signals_and_mount(o, None)?;
    eprintln!(
        "rumpfs: serving {} on {}{}",
        vol.fstype(),
        mountpoint.display(),
        if o.readonly { " (read-only)" } else { "" }
    );
    let served = rumpfs::fuse::serve(&vol, mountpoint, o.threads.unwrap_or(4), move |unmount| {
        on_signal(signals, unmount);
    });
    match served {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = vol.unmount();
            Err(format!("{}: {e}", mountpoint.display()))
        }
    }
}

/// The Hurd: a translator on the node it is set on, serving io/fs/fsys.
#[cfg(all(rump_kernel, target_os = "hurd"))]
fn run(o: &Options) -> Result<(), String> {
    use std::sync::Arc;

    use machdev::sys::hurd;
    use rumpfs::hurd::HurdFs;
    use rumpfs::store::DeviceMaster;

    if o.fuse.is_some() {
        return Err(
            "--fuse is Linux's; on the Hurd rumpfs is a translator: settrans -c /mnt \
             /hurd/rumpfs STORE"
                .into(),
        );
    }
    let device_master = if o.store.is_device() {
        let port = hurd::device_master(&o.boot)
            .map_err(|e| format!("no device master for {:?} (root only): {e}", o.store))?;
        Some(DeviceMaster {
            ipc: hurd::ipc(),
            port,
        })
    } else {
        None
    };
    let (vol, signals) = block_signals_and_mount(o, device_master)?;
    let signalled = Arc::clone(&vol);
    on_signal(signals, move || {
        std::process::exit(i32::from(signalled.unmount().is_err()));
    });
    let pool = machdev::PoolConfig::with_max_threads(o.threads);
    hurd::serve_netfs("rumpfs", Arc::new(HurdFs::new(vol)), pool).map(|never| match never {})
}

/// Blocks SIGTERM, SIGINT and SIGHUP (every thread started from here on
/// inherits the mask: one thread takes them, and unmounts) and mounts the
/// volume; returns it and the signals to wait for.
#[cfg(all(rump_kernel, any(target_os = "linux", target_os = "hurd")))]
fn block_signals_and_mount(
    o: &Options,
    device_master: Option<rumpfs::store::DeviceMaster>,
) -> Result<(std::sync::Arc<rumpfs::volume::Volume>, libc::sigset_t), String> {
    use rumpfs::volume::{self, Volume};

    let signals = signal_set();
    // SAFETY: a valid, initialised set.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &raw const signals, std::ptr::null_mut()) };
    let vol = Volume::mount(&volume::Options {
        store: o.store.clone(),
        fstype: o.fstype,
        readonly: o.readonly,
        sync: o.sync,
        accept_kernel_defect: o.accept_kernel_defect,
        device_master,
    })
    .map_err(|e| e.to_string())?;
    Ok((std::sync::Arc::new(vol), signals))
}

/// Runs `unmount` on a thread of its own once one of `signals` comes.
#[cfg(all(rump_kernel, any(target_os = "linux", target_os = "hurd")))]
fn on_signal(signals: libc::sigset_t, unmount: impl FnOnce() + Send + 'static) {
    std::thread::spawn(move || {
        let mut sig = 0;
        // SAFETY: the set is valid; `sig` is written by sigwait.
        unsafe { libc::sigwait(&raw const signals, &raw mut sig) };
        log::info!("signal {sig}: unmounting");
        unmount();
    });
}

#[cfg(all(rump_kernel, any(target_os = "linux", target_os = "hurd")))]
fn signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set before sigaddset reads it.
    unsafe {
        let mut set = std::mem::zeroed();
        libc::sigemptyset(&raw mut set);
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&raw mut set, s);
        }
        set
    }
}

#[cfg(not(all(rump_kernel, any(target_os = "linux", target_os = "hurd"))))]
fn run(o: &Options) -> Result<(), String> {
    let _ = (
        &o.boot,
        &o.store,
        o.fstype,
        o.readonly,
        o.sync,
        o.accept_kernel_defect,
        &o.fuse,
    );
    Err(
        "this rumpfs was built without a rump kernel (set RUMP_PREFIX to a NetBSD rump \
         kernel install tree and rebuild): NetBSD's file systems are the rump kernel's"
            .into(),
    )
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    machdev::translator_main("rumpfs", parse, run)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn options_parse_and_bad_ones_say_why() {
        let o = parse(&args(&[
            "-t",
            "ext2",
            "--readonly",
            "--fuse=/mnt",
            "part:1:disk.img",
        ]))
        .unwrap();
        assert_eq!(o.fstype, Some(FsType::Ext2));
        assert!(o.readonly && !o.sync);
        assert_eq!(o.fuse, Some(PathBuf::from("/mnt")));
        assert_eq!(
            o.store,
            Store::Part(1, Box::new(Store::File("disk.img".into())))
        );
        assert!(parse(&args(&[])).unwrap_err().contains("no store"));
        assert!(parse(&args(&["a", "b"])).unwrap_err().contains("one store"));
        assert!(
            parse(&args(&["-t", "zfs", "a"]))
                .unwrap_err()
                .contains("zfs")
        );
        assert!(
            parse(&args(&["--frob", "a"]))
                .unwrap_err()
                .contains("--frob")
        );
        assert!(
            parse(&args(&["--threads=0", "a"]))
                .unwrap_err()
                .contains("at least")
        );
    }
}
