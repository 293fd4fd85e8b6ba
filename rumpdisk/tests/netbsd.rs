//! rumpdisk's NetBSD back end: an etfs-attached image through the rump
//! kernel's disk layer, served over the device interface. Without a rump
//! kernel (`RUMP_PREFIX` unset at build time) the test says it was skipped.

#![cfg(target_os = "linux")]
#![allow(clippy::many_single_char_names)]

#[cfg(not(rump_kernel))]
#[test]
fn netbsd_back_end_serves_an_etfs_image() {
    println!("skipped: RUMP_PREFIX not set");
}

#[cfg(rump_kernel)]
#[test]
fn netbsd_back_end_serves_an_etfs_image() {
    use std::collections::BTreeMap;
    use std::os::unix::fs::FileExt;
    use std::sync::Arc;

    use mach::KernReturn;
    use machdev::loopback::LocalServer;
    use machdev::{Mode, PoolConfig};
    use mig_bindings::device::Client;
    use rumpdisk::device::{DEV_FLUSH_CACHE, DEV_GET_RECORDS, Disks};
    use rumpdisk::disk::Disk;
    use rumpdisk::netbsd::NetbsdDisk;

    let dir = std::env::temp_dir().join(format!("rumpdisk-netbsd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let img = dir.join("wd0.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let kernel = rump::Rump::init().unwrap();
    let disk = Arc::new(NetbsdDisk::attach_image(kernel, "rumpdisk_wd0", &img, false).unwrap());
    let mut disks: BTreeMap<String, Arc<dyn Disk>> = BTreeMap::new();
    disks.insert("wd0".into(), disk.clone());
    let local =
        LocalServer::start(vec![Arc::new(Disks::new(disks))], PoolConfig::default()).unwrap();
    let (t, m) = local.client().unwrap();
    let c = Client::new(&t);
    let d = c.open(m, Mode::READ | Mode::WRITE, "wd0").unwrap();
    assert_eq!(c.get_status(d, DEV_GET_RECORDS, 2).unwrap(), [32768, 512]);

    // Whole transfers: one kernel call per 1 MiB request.
    let data: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 239) as u8).collect();
    let ops = disk.ops();
    assert_eq!(c.write(d, 2048, &data).unwrap(), data.len() as i32);
    assert_eq!(c.read(d, 2048, data.len() as i32).unwrap(), data);
    assert_eq!(disk.ops() - ops, 2, "one pwrite and one pread");
    c.set_status(d, DEV_FLUSH_CACHE, &[]).unwrap();
    let mut host = vec![0u8; data.len()];
    std::fs::File::open(&img)
        .unwrap()
        .read_exact_at(&mut host, 2048 * 512)
        .unwrap();
    assert!(host == data, "the write reached the host image");
    // Errors as for host images.
    assert_eq!(c.read(d, 32769, 512), Err(KernReturn::D_INVALID_SIZE));
    // A partial sector through the raw device: read whole, cut.
    assert_eq!(c.read(d, 2048, 100).unwrap(), data[..100].to_vec());
    let _ = std::fs::remove_dir_all(dir);
}
