//! Guest program: a buffer the user-space virtio driver read into is
//! unmapped and mapped anew at the same address (fresh page frames); the
//! next read into it must land in the new frames, not in the old ones an
//! idle IOMMU mapping still points at. Usage: `dma-remap-check
//! DDDD:BB:DD.F`; expects 0x5a in the first 64 KiB of the disk and 0xa5 in
//! the 64 KiB at 1 MiB. Prints `REMAP ok` or fails.

#[cfg(target_os = "linux")]
fn main() {
    use rumpdisk::disk::Disk;
    use rumpdisk::virtio::VirtioDisk;

    const LEN: usize = 65536;
    let address = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .expect("usage: dma-remap-check DDDD:BB:DD.F");
    let disk = VirtioDisk::open(address).expect("open");
    let map = |at: *mut libc::c_void, flags: i32| {
        // SAFETY: an anonymous mapping; with MAP_FIXED it replaces only our
        // own earlier mapping of the same range.
        let p = unsafe {
            libc::mmap(
                at,
                LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | flags,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "mmap");
        p
    };
    let p = map(std::ptr::null_mut(), 0);
    // SAFETY: `p` maps LEN writable bytes until it is unmapped below.
    let buf = unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), LEN) };
    disk.read_at(0, buf).expect("first read");
    assert!(buf.iter().all(|&b| b == 0x5a), "first read: wrong data");
    // SAFETY: our mapping, no longer borrowed.
    assert_eq!(unsafe { libc::munmap(p, LEN) }, 0);
    let q = map(p, libc::MAP_FIXED);
    assert_eq!(q, p);
    // SAFETY: as above, the new mapping.
    let buf = unsafe { std::slice::from_raw_parts_mut(q.cast::<u8>(), LEN) };
    // The same range again: an idle mapping of it exists.
    disk.read_at(1 << 20, buf).expect("second read");
    assert!(
        buf.iter().all(|&b| b == 0xa5),
        "second read did not reach the new page frames"
    );
    println!("REMAP ok");
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("dma-remap-check runs in the Linux guest of the VM test bed");
    std::process::exit(1);
}
