//! Guest program: rumpdisk's virtio driver with physical addresses gives a
//! buffer whose pages are scattered in physical memory to the device as a
//! scatter-gather list, split into several requests where it has more
//! pieces than one request carries, and the data arrives whole and in
//! order. Then 20 threads do the same at once with 520 KiB each, more
//! split transfers than the driver has request slots. Usage:
//! `virtio-sg-check DDDD:BB:DD.F` on a device that bypasses the IOMMU, of
//! at least 16 MiB; writes from 2 MiB on. Prints `SG ok` and
//! `SG concurrent ok`, or fails.

#[cfg(target_os = "linux")]
fn main() {
    use rumpdisk::disk::Disk;
    use rumpdisk::virtio::VirtioDisk;

    const LEN: usize = 1 << 20;
    const EACH: usize = 130 * 4096;
    env_logger::init();
    let address = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .expect("usage: virtio-sg-check DDDD:BB:DD.F");
    hypercall::pci::set_dma_addressing(hypercall::pci::DmaAddressing::Physical)
        .expect("physical addressing");
    let disk = VirtioDisk::open(address).expect("open");
    let out = scattered(LEN);
    for (i, b) in out.iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    disk.write_at(2 << 20, out).expect("write");
    let back = scattered(LEN);
    disk.read_at(2 << 20, back).expect("read");
    assert!(
        back == out,
        "the data read back differs from what was written"
    );
    println!("SG ok");
    // More split transfers at once than there are request slots (16).
    std::thread::scope(|t| {
        for i in 0..20u8 {
            let disk = &disk;
            t.spawn(move || {
                let at = (4 << 20) + u64::from(i) * EACH as u64;
                let out = scattered(EACH);
                out.fill(i + 1);
                disk.write_at(at, out).expect("concurrent write");
                let back = scattered(EACH);
                disk.read_at(at, back).expect("concurrent read");
                assert!(back.iter().all(|&b| b == i + 1), "thread {i}: wrong data");
            });
        }
    });
    println!("SG concurrent ok");
}

/// `len` bytes over every other page of a larger region, moved (with
/// their frames) next to each other: no two neighbours are consecutive
/// frames, so every page is its own piece.
#[cfg(target_os = "linux")]
fn scattered(len: usize) -> &'static mut [u8] {
    const PAGE: usize = 4096;
    let map = |len: usize, prot: i32| {
        // SAFETY: a fresh anonymous mapping, ours until the process
        // ends.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "mmap");
        p.cast::<u8>()
    };
    let buf = map(len, libc::PROT_NONE);
    let src = map(2 * len, libc::PROT_READ | libc::PROT_WRITE);
    // SAFETY: advice on, and writes to, our own mapping.
    unsafe {
        libc::madvise(src.cast(), 2 * len, libc::MADV_NOHUGEPAGE);
        for page in 0..2 * len / PAGE {
            src.add(page * PAGE).write(1);
        }
    }
    for page in 0..len / PAGE {
        // SAFETY: moves one page of `src` over one of `buf`, both ours.
        let p = unsafe {
            libc::mremap(
                src.add((2 * page + 1) * PAGE).cast(),
                PAGE,
                PAGE,
                libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                buf.add(page * PAGE),
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "mremap");
    }
    // SAFETY: `buf` now maps len writable bytes.
    unsafe { std::slice::from_raw_parts_mut(buf, len) }
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("virtio-sg-check runs in the Linux guest of the VM test bed");
    std::process::exit(1);
}
