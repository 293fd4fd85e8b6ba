//! rumpdisk's device semantics over the loopback kernel: sizes, records,
//! errors, modes, concurrency, dying clients, images changing under the
//! server.

#![cfg(target_os = "linux")]
#![allow(clippy::many_single_char_names)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mach::loopback::Task;
use mach::{KernReturn, PortName};
use machdev::loopback::LocalServer;
use machdev::{Mode, PoolConfig};
use mig_bindings::device::Client;
use rumpdisk::device::{BLKRRPART, DEV_FLUSH_CACHE, DEV_GET_RECORDS, DEV_GET_SIZE, Disks};
use rumpdisk::disk::Disk;
use rumpdisk::image::{Cache, Image};

struct Rig {
    local: LocalServer,
    dir: PathBuf,
}

impl Rig {
    fn new(name: &str, images: &[(&str, u64, bool)]) -> Self {
        Self::with_cache(name, images, Cache::Writeback)
    }

    fn with_cache(name: &str, images: &[(&str, u64, bool)], cache: Cache) -> Self {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("rumpdisk-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut disks: BTreeMap<String, Arc<dyn Disk>> = BTreeMap::new();
        for &(dev, size, ro) in images {
            let path = dir.join(format!("{dev}.img"));
            let f = std::fs::File::create(&path).unwrap();
            f.set_len(size).unwrap();
            disks.insert(
                dev.to_owned(),
                Arc::new(Image::open(&path, ro, cache).unwrap()),
            );
        }
        let local =
            LocalServer::start(vec![Arc::new(Disks::new(disks))], PoolConfig::default()).unwrap();
        Self { local, dir }
    }

    fn client(&self) -> (Task, PortName) {
        self.local.client().unwrap()
    }

    fn image(&self, dev: &str) -> PathBuf {
        self.dir.join(format!("{dev}.img"))
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn file_bytes(p: &Path, off: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let mut b = vec![0; len];
    std::fs::File::open(p)
        .unwrap()
        .read_exact_at(&mut b, off)
        .unwrap();
    b
}

#[test]
fn sizes_records_and_status_flavors() {
    let rig = Rig::new(
        "status",
        &[("wd0", 8 << 20, false), ("wd1", 3 << 30, false)],
    );
    let (t, m) = rig.client();
    let c = Client::new(&t);
    let d = c.open(m, Mode::READ, "wd0").unwrap();
    assert_eq!(c.get_status(d, DEV_GET_SIZE, 2).unwrap(), [8 << 20, 512]);
    assert_eq!(c.get_status(d, DEV_GET_RECORDS, 2).unwrap(), [16384, 512]);
    assert_eq!(c.get_status(d, 99, 2), Err(KernReturn::D_INVALID_OPERATION));
    c.set_status(d, BLKRRPART, &[]).unwrap();
    assert_eq!(
        c.set_status(d, 77, &[]),
        Err(KernReturn::D_INVALID_OPERATION)
    );
    // A 3 GiB disk: its byte size does not fit the 32-bit interface and is
    // refused rather than truncated; its record count fits.
    let big = c.open(m, Mode::READ, "wd1").unwrap();
    assert_eq!(
        c.get_status(big, DEV_GET_SIZE, 2),
        Err(KernReturn::D_INVALID_SIZE)
    );
    assert_eq!(
        c.get_status(big, DEV_GET_RECORDS, 2).unwrap(),
        [6 << 20, 512]
    );
    // And reads at its far end work (64-bit record numbers).
    assert_eq!(c.read(big, (6 << 20) - 1, 512).unwrap(), vec![0; 512]);
    assert_eq!(
        c.open(m, Mode::READ, "wd9"),
        Err(KernReturn::D_NO_SUCH_DEVICE)
    );
}

#[test]
fn transfers_and_their_errors() {
    transfers(Cache::Writeback);
}

#[test]
fn transfers_and_their_errors_past_the_page_cache() {
    transfers(Cache::None);
}

#[test]
fn transfers_and_their_errors_with_pages_evicted() {
    transfers(Cache::Evict);
}

fn transfers(cache: Cache) {
    let rig = Rig::with_cache(&format!("io-{cache:?}"), &[("wd0", 1 << 20, false)], cache);
    let (t, m) = rig.client();
    let c = Client::new(&t);
    let d = c.open(m, Mode::READ | Mode::WRITE, "wd0").unwrap();
    let data: Vec<u8> = (0..256 * 1024u32).map(|i| (i % 241) as u8).collect();
    assert_eq!(c.write(d, 16, &data).unwrap(), data.len() as i32);
    assert_eq!(c.read(d, 16, data.len() as i32).unwrap(), data);
    assert_eq!(file_bytes(&rig.image("wd0"), 16 * 512, data.len()), data);
    c.set_status(d, DEV_FLUSH_CACHE, &[]).unwrap();
    // As GNU Mach's disks: no inband transfers.
    assert_eq!(
        c.write_inband(d, 1, &[9; 128]),
        Err(KernReturn::D_INVALID_OPERATION)
    );
    assert_eq!(
        c.read_inband(d, 1, 128),
        Err(KernReturn::D_INVALID_OPERATION)
    );
    // A start past the end is refused; at the end nothing is transferred;
    // across the end the transfer is cut; negative sizes are refused.
    assert_eq!(c.read(d, 2049, 512), Err(KernReturn::D_INVALID_SIZE));
    assert_eq!(c.read(d, 2048, 512).unwrap(), Vec::<u8>::new());
    assert_eq!(c.read(d, 2047, 1024).unwrap().len(), 512);
    assert_eq!(c.write(d, 2047, &[3; 1024]).unwrap(), 512);
    assert_eq!(
        c.read(d, u64::MAX / 2, 512),
        Err(KernReturn::D_INVALID_SIZE)
    );
    assert_eq!(c.read(d, 0, -1), Err(KernReturn::D_INVALID_SIZE));
    assert_eq!(c.read(d, 0, 0).unwrap(), Vec::<u8>::new());
    assert_eq!(c.write(d, 0, &[]), Err(KernReturn::D_INVALID_SIZE));
    // Partial sectors: read cut from the whole sector, written by
    // read-modify-write, the rest of the sector untouched.
    assert_eq!(c.write(d, 3, &[0xee; 700]).unwrap(), 700);
    let back = c.read(d, 3, 1024).unwrap();
    assert!(back[..700].iter().all(|&b| b == 0xee));
    assert_eq!(
        &back[700..1024],
        &file_bytes(&rig.image("wd0"), 3 * 512 + 700, 324)[..]
    );
    assert_eq!(c.read(d, 3, 100).unwrap(), vec![0xee; 100]);
    // The data around the refused writes is intact.
    assert_eq!(c.read(d, 16, data.len() as i32).unwrap(), data);
}

#[test]
fn read_only_images_and_opens_refuse_writes() {
    let rig = Rig::new("ro", &[("wd0", 1 << 20, true), ("wd1", 1 << 20, false)]);
    let (t, m) = rig.client();
    let c = Client::new(&t);
    assert_eq!(
        c.open(m, Mode::READ | Mode::WRITE, "wd0"),
        Err(KernReturn::D_READ_ONLY)
    );
    let ro = c.open(m, Mode::READ, "wd0").unwrap();
    assert_eq!(
        c.write(ro, 0, &[1; 512]),
        Err(KernReturn::D_INVALID_OPERATION)
    );
    let ro1 = c.open(m, Mode::READ, "wd1").unwrap();
    assert_eq!(
        c.write(ro1, 0, &[1; 512]),
        Err(KernReturn::D_INVALID_OPERATION)
    );
    assert_eq!(c.read(ro1, 0, 512).unwrap(), vec![0; 512]);
}

#[test]
fn concurrent_clients_lose_and_tear_no_writes() {
    concurrent(Cache::Writeback);
}

#[test]
fn concurrent_clients_lose_and_tear_no_writes_past_the_page_cache() {
    concurrent(Cache::None);
}

#[test]
fn concurrent_clients_lose_and_tear_no_writes_with_pages_evicted() {
    concurrent(Cache::Evict);
}

/// Pages of `path` in the page cache, by `mincore` over a mapping of it.
fn resident_pages(path: &Path) -> usize {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).unwrap();
    let len = f.metadata().unwrap().len() as usize;
    // SAFETY: a private read-only mapping of our file, unmapped below.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    let mut vec = vec![0u8; len.div_ceil(4096)];
    // SAFETY: mincore fills one byte per page of the mapping.
    assert_eq!(unsafe { libc::mincore(p, len, vec.as_mut_ptr()) }, 0);
    // SAFETY: the mapping made above.
    unsafe { libc::munmap(p, len) };
    vec.iter().filter(|&&b| b & 1 != 0).count()
}

#[test]
fn evict_mode_leaves_no_pages_cached() {
    let rig = Rig::new("evict-pages", &[("wd0", 8 << 20, false)]);
    let path = rig.image("wd0");
    // Filled through the page cache, written back and dropped.
    std::fs::write(&path, vec![7u8; 8 << 20]).unwrap();
    {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open(&path).unwrap();
        f.sync_all().unwrap();
        // SAFETY: advice on our descriptor.
        unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
    assert_eq!(resident_pages(&path), 0);
    let evict = Image::open(&path, false, Cache::Evict).unwrap();
    let mut b = vec![0u8; 1 << 20];
    for i in 0..8u64 {
        evict.read_at(i << 20, &mut b).unwrap();
        assert_eq!(b, vec![7u8; 1 << 20]);
    }
    assert_eq!(resident_pages(&path), 0, "read pages stay cached");
    // Writes: all but the window's last are dropped as they go; a flush
    // drops the rest.
    let chunk = vec![9u8; 64 << 10];
    for i in 0..64u64 {
        evict.write_at(i * (64 << 10), &chunk).unwrap();
    }
    assert!(resident_pages(&path) <= rumpdisk::image::EVICT_WINDOW * 16);
    evict.flush().unwrap();
    assert_eq!(resident_pages(&path), 0, "flushed pages stay cached");
    assert_eq!(file_bytes(&path, 0, 4 << 20), vec![9u8; 4 << 20]);
    // The same loads through the page cache keep what they touched.
    let cached = Image::open(&path, false, Cache::Writeback).unwrap();
    cached.read_at(0, &mut b).unwrap();
    assert!(resident_pages(&path) >= 256);
}

fn concurrent(cache: Cache) {
    let rig = Arc::new(Rig::with_cache(
        &format!("conc-{cache:?}"),
        &[("wd0", 16 << 20, false)],
        cache,
    ));
    let workers: Vec<_> = (0..16u8)
        .map(|i| {
            let rig = Arc::clone(&rig);
            std::thread::spawn(move || {
                let (t, m) = rig.client();
                let c = Client::new(&t);
                let d = c.open(m, Mode::READ | Mode::WRITE, "wd0").unwrap();
                let base = u64::from(i) * 2048; // 1 MiB per client
                for round in 0..8u8 {
                    let data = vec![i.wrapping_mul(16).wrapping_add(round); 128 * 1024];
                    let rec = base + u64::from(round) * 256;
                    assert_eq!(c.write(d, rec, &data).unwrap(), data.len() as i32);
                    assert_eq!(
                        c.read(d, rec, data.len() as i32).unwrap(),
                        data,
                        "client {i} round {round}"
                    );
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let img = rig.image("wd0");
    for i in 0..16u8 {
        for round in 0..8u8 {
            let off = (u64::from(i) * 2048 + u64::from(round) * 256) * 512;
            assert!(
                file_bytes(&img, off, 128 * 1024)
                    .iter()
                    .all(|&b| b == i.wrapping_mul(16).wrapping_add(round))
            );
        }
    }
}

#[test]
fn a_client_killed_mid_transfer_leaves_the_server_serving() {
    let rig = Arc::new(Rig::new("kill", &[("wd0", 64 << 20, false)]));
    let (victim, m) = rig.client();
    let victim = Arc::new(victim);
    let v = Arc::clone(&victim);
    let writer = std::thread::spawn(move || {
        let c = Client::new(&*v);
        let d = c.open(m, Mode::READ | Mode::WRITE, "wd0").unwrap();
        let data = vec![0x77u8; 8 << 20];
        // Ends with an error once the task is terminated under it.
        for i in 0..1000u64 {
            if c.write(d, (i % 8) * 16384, &data).is_err() {
                return;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(50));
    victim.terminate();
    writer.join().unwrap();
    let t0 = Instant::now();
    while rig.local.server().open_count() != 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "the dead client's open leaked"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let (t, m) = rig.client();
    let c = Client::new(&t);
    let d = c.open(m, Mode::READ, "wd0").unwrap();
    assert_eq!(c.read(d, 0, 512).unwrap().len(), 512);
    assert_eq!(rig.local.kernel().stats().queued, 0);
}

#[test]
fn images_that_shrink_or_vanish_under_the_server() {
    let rig = Rig::new("shrink", &[("wd0", 4 << 20, false)]);
    let (t, m) = rig.client();
    let c = Client::new(&t);
    let d = c.open(m, Mode::READ | Mode::WRITE, "wd0").unwrap();
    assert_eq!(c.write(d, 4000, &[5; 512]).unwrap(), 512);
    let img = rig.image("wd0");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    assert_eq!(c.get_status(d, DEV_GET_RECORDS, 2).unwrap(), [2048, 512]);
    assert_eq!(c.read(d, 4000, 512), Err(KernReturn::D_INVALID_SIZE));
    assert_eq!(c.read(d, 100, 512).unwrap(), vec![0; 512]);
    // Unlinked: the open image goes on serving what it holds.
    std::fs::remove_file(&img).unwrap();
    assert_eq!(c.write(d, 10, &[6; 512]).unwrap(), 512);
    assert_eq!(c.read(d, 10, 512).unwrap(), vec![6; 512]);
}

#[test]
fn direct_io_bounces_misaligned_buffers_in_one_operation() {
    let rig = Rig::new("bounce", &[("wd0", 1 << 20, false)]);
    let img = Image::open(&rig.image("wd0"), false, Cache::None).unwrap();
    let mut backing = vec![0u8; 8192 + 1];
    // One byte past a page: no direct-I/O alignment accepts it.
    let skew = backing.as_ptr().align_offset(4096) + 1;
    let buf = &mut backing[skew..skew + 4096];
    buf.iter_mut()
        .enumerate()
        .for_each(|(i, b)| *b = (i % 253) as u8);
    let want = buf.to_vec();
    img.write_at(512 * 3, buf).unwrap();
    assert_eq!(file_bytes(&rig.image("wd0"), 512 * 3, 4096), want);
    buf.fill(0);
    img.read_at(512 * 3, buf).unwrap();
    assert_eq!(buf, &want[..]);
    assert_eq!(img.ops(), 2, "a bounced transfer is still one operation");
    // Past the end: a short read is an error, not stale bytes.
    assert!(img.read_at((1 << 20) - 512, &mut [0; 1024]).is_err());
}
