//! Guest program: sequential 1 MiB reads and writes of a virtio-blk disk,
//! the same loop through either driver:
//!
//! - `virtio-bench DDDD:BB:DD.F MIB`: rumpdisk's user-space driver
//!   (`VirtioDisk::read_at`/`write_at`, then a flush); prints `USER ...`.
//!   Each request maps its buffer for the device and unmaps it after, as
//!   rumpdisk's serving path does with reply regions (the VFIO back end
//!   keeps the idle mapping and takes it again while the buffer's page
//!   frames are unchanged).
//! - `virtio-bench --netbsd ld0 MIB` (built with a rump kernel): NetBSD's
//!   driver of the functions in `RUMP_PCI_DEVICES`, through rumpdisk's NetBSD
//!   back end (`/dev/rld0d`); prints `NETBSD ...`.
//! - `virtio-bench /dev/vda MIB`: the kernel's driver, with `O_DIRECT`
//!   `pread`/`pwrite` of 1 MiB (what `dd iflag=direct`/`oflag=direct` do),
//!   then `fsync`; prints `KERNEL ...`.
//!
//! Lines: `<WHO> read <MiB/s>`, `<WHO> write <MiB/s>`; with `--random N`
//! (before the target), `<WHO> random4k <IOPS>` of N 4 KiB reads.

// A measuring tool: rates are floating point.
#![allow(clippy::cast_precision_loss)]

#[cfg(target_os = "linux")]
fn main() {
    use std::time::Instant;

    use rumpdisk::disk::{AlignedBuf, Disk, PAGE};
    use rumpdisk::image::{Cache, Image};
    use rumpdisk::virtio::VirtioDisk;

    const MIB: usize = 1 << 20;
    let mut args = std::env::args().skip(1).peekable();
    // What the lines say the figures are of (default: the driver's name).
    let label = args.next_if(|a| a == "--label").and_then(|_| args.next());
    let netbsd = args.next_if(|a| a == "--netbsd").is_some();
    // Then this many 4 KiB reads at pseudo-random offsets.
    let random = args
        .next_if(|a| a == "--random")
        .and_then(|_| args.next())
        .and_then(|n| n.parse::<u64>().ok());
    let (Some(target), Some(mib)) = (
        args.next(),
        args.next().and_then(|a| a.parse::<usize>().ok()),
    ) else {
        eprintln!(
            "usage: virtio-bench [--label NAME] [--netbsd] [--random N] \
             DDDD:BB:DD.F|/dev/vdX|DEVICE MIB"
        );
        std::process::exit(64);
    };
    let (who, disk): (&str, Box<dyn Disk>) = if netbsd {
        ("NETBSD", netbsd_disk(&target))
    } else if target.starts_with('/') {
        // The kernel's driver, past the page cache: rumpdisk's image back
        // end with cache=none is exactly O_DIRECT pread/pwrite.
        let img =
            Image::open(std::path::Path::new(&target), false, Cache::None).unwrap_or_else(|e| {
                eprintln!("virtio-bench: {e}");
                std::process::exit(1);
            });
        ("KERNEL", Box::new(img))
    } else {
        let address = target.parse().unwrap_or_else(|_| {
            eprintln!("virtio-bench: {target}: not a PCI address");
            std::process::exit(64);
        });
        let d = VirtioDisk::open(address).unwrap_or_else(|e| {
            eprintln!("virtio-bench: {e}");
            std::process::exit(1);
        });
        ("USER", Box::new(d))
    };
    // Page-aligned, as O_DIRECT wants.
    let mut backing = AlignedBuf::new(MIB, PAGE).expect("buffer");
    let buf = backing.as_mut_slice();
    let t = Instant::now();
    for i in 0..mib {
        disk.read_at((i * MIB) as u64, buf).expect("read");
    }
    let read = mib as f64 / t.elapsed().as_secs_f64();
    buf.fill(0x6b);
    let t = Instant::now();
    for i in 0..mib {
        disk.write_at((i * MIB) as u64, buf).expect("write");
    }
    disk.flush().expect("flush");
    let write = mib as f64 / t.elapsed().as_secs_f64();
    let who = label.as_deref().unwrap_or(who);
    println!("{who} read {read:.1}");
    println!("{who} write {write:.1}");
    if let Some(count) = random {
        // The offsets rumpdisk's `--ctl random` reads (xorshift).
        let size = disk.size().expect("size");
        let blocks = (size / 4096).max(1);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let t = Instant::now();
        for _ in 0..count {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            disk.read_at((x % blocks) * 4096, &mut buf[..4096])
                .expect("read");
        }
        println!(
            "{who} random4k {:.0}",
            count as f64 / t.elapsed().as_secs_f64()
        );
    }
}

/// NetBSD's disk `name` in a rump kernel booted here.
#[cfg(all(target_os = "linux", rump_kernel))]
fn netbsd_disk(name: &str) -> Box<dyn rumpdisk::disk::Disk> {
    let kernel = rump::Rump::init().unwrap_or_else(|e| {
        eprintln!("virtio-bench: NetBSD kernel: {e}");
        std::process::exit(1);
    });
    let path = rumpdisk::netbsd::raw_device(name);
    Box::new(
        rumpdisk::netbsd::NetbsdDisk::open(kernel, &path, false).unwrap_or_else(|e| {
            eprintln!("virtio-bench: {path}: {e}");
            std::process::exit(1);
        }),
    )
}

#[cfg(all(target_os = "linux", not(rump_kernel)))]
fn netbsd_disk(_name: &str) -> Box<dyn rumpdisk::disk::Disk> {
    eprintln!("virtio-bench: built without a NetBSD rump kernel (RUMP_PREFIX)");
    std::process::exit(1);
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("virtio-bench runs in the Linux guest of the VM test bed");
    std::process::exit(1);
}
