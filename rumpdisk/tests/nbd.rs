//! The NBD front end with a real client (qemu-io) and with malformed
//! requests written by hand.

#![cfg(target_os = "linux")]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use rumpdisk::device::Disks;
use rumpdisk::disk::Disk;
use rumpdisk::image::{Cache, Image};

fn serve(name: &str, size: u64, ro: bool) -> (PathBuf, PathBuf) {
    let img = dir(name).join("disk.img");
    std::fs::File::create(&img).unwrap().set_len(size).unwrap();
    (img.clone(), serve_path(name, &img, ro))
}

fn dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rumpdisk-nbd-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Serves the image or block device at `path` as `wd0`; returns the socket.
fn serve_path(name: &str, path: &std::path::Path, ro: bool) -> PathBuf {
    let mut disks: BTreeMap<String, Arc<dyn Disk>> = BTreeMap::new();
    disks.insert(
        "wd0".into(),
        Arc::new(Image::open(path, ro, Cache::Writeback).unwrap()),
    );
    let sock = std::env::temp_dir()
        .join(format!("rumpdisk-nbd-{}-{name}", std::process::id()))
        .join("nbd.sock");
    rumpdisk::nbd::serve_unix_in_background(Arc::new(Disks::new(disks)), &sock).unwrap();
    sock
}

fn qemu_io_with(flags: &[&str], sock: &std::path::Path, cmds: &[&str]) -> (bool, String) {
    let mut c = Command::new("qemu-io");
    c.args(flags);
    c.args([
        "-f",
        "raw",
        &format!("nbd+unix:///wd0?socket={}", sock.display()),
    ]);
    for cmd in cmds {
        c.args(["-c", cmd]);
    }
    let out = c
        .output()
        .expect("qemu-io (Debian package qemu-utils, see tests/setup.sh)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.success()
            && !text.contains("failed")
            && !text.contains("Pattern verification failed"),
        text,
    )
}

fn qemu_io(sock: &std::path::Path, cmds: &[&str]) -> (bool, String) {
    qemu_io_with(&[], sock, cmds)
}

#[test]
fn qemu_io_writes_and_reads_back() {
    let (img, sock) = serve("rw", 16 << 20, false);
    let (ok, out) = qemu_io(
        &sock,
        &[
            "write -P 0x3c 1M 512K",
            "read -P 0x3c 1M 512K",
            "read -P 0 0 1M",
            "flush",
        ],
    );
    assert!(ok, "{out}");
    let mut b = vec![0; 512 * 1024];
    std::fs::File::open(&img)
        .unwrap()
        .read_exact_at(&mut b, 1 << 20)
        .unwrap();
    assert!(b.iter().all(|&x| x == 0x3c));
    // Past the end is refused, not wrapped or truncated.
    let (ok, out) = qemu_io(&sock, &["read 16M 512"]);
    assert!(!ok, "{out}");
}

#[test]
fn export_flags_say_what_the_disk_does() {
    let (_img, sock) = serve("flags", 1 << 20, false);
    // HAS_FLAGS, SEND_FLUSH, SEND_FUA, SEND_TRIM, CAN_MULTI_CONN.
    assert_eq!(handshake_flags(&sock).1, 1 | 4 | 8 | 32 | 256);
    let (_img, sock) = serve("flags-ro", 1 << 20, true);
    // READ_ONLY, and no TRIM.
    assert_eq!(handshake_flags(&sock).1, 1 | 2 | 4 | 8 | 256);
}

#[test]
fn read_only_exports_refuse_writes() {
    let (_img, sock) = serve("ro", 1 << 20, true);
    let (ok, out) = qemu_io_with(&["-r"], &sock, &["read -P 0 0 4K"]);
    assert!(ok, "{out}");
    // The export says it is read-only: a writer cannot even attach.
    let (ok, out) = qemu_io(&sock, &["write -P 1 0 4K"]);
    assert!(!ok && out.contains("denied"), "{out}");
}

fn handshake(sock: &std::path::Path) -> UnixStream {
    handshake_flags(sock).0
}

/// The handshake; returns the connection and the export's transmission
/// flags.
fn handshake_flags(sock: &std::path::Path) -> (UnixStream, u16) {
    let mut s = UnixStream::connect(sock).unwrap();
    let mut flags = None;
    let mut hello = [0u8; 18];
    s.read_exact(&mut hello).unwrap();
    assert_eq!(&hello[..8], b"NBDMAGIC");
    s.write_all(&3u32.to_be_bytes()).unwrap(); // fixed newstyle, no zeroes
    // NBD_OPT_GO "wd0", no info requests.
    let mut opt = 0x4948_4156_454F_5054u64.to_be_bytes().to_vec();
    opt.extend_from_slice(&7u32.to_be_bytes());
    opt.extend_from_slice(&9u32.to_be_bytes());
    opt.extend_from_slice(&3u32.to_be_bytes());
    opt.extend_from_slice(b"wd0");
    opt.extend_from_slice(&0u16.to_be_bytes());
    s.write_all(&opt).unwrap();
    // Replies until ACK (type 1).
    loop {
        let mut h = [0u8; 20];
        s.read_exact(&mut h).unwrap();
        let kind = u32::from_be_bytes(h[12..16].try_into().unwrap());
        let len = u32::from_be_bytes(h[16..20].try_into().unwrap());
        let mut data = vec![0; len as usize];
        s.read_exact(&mut data).unwrap();
        if kind == 1 {
            return (s, flags.expect("NBD_INFO_EXPORT"));
        }
        assert!(kind == 3, "unexpected option reply {kind:#x}");
        if data[..2] == [0, 0] {
            flags = Some(u16::from_be_bytes(data[10..12].try_into().unwrap()));
        }
    }
}

fn request(s: &mut UnixStream, cmd: u16, handle: u64, offset: u64, len: u32) {
    let mut r = 0x2560_9513u32.to_be_bytes().to_vec();
    r.extend_from_slice(&0u16.to_be_bytes());
    r.extend_from_slice(&cmd.to_be_bytes());
    r.extend_from_slice(&handle.to_be_bytes());
    r.extend_from_slice(&offset.to_be_bytes());
    r.extend_from_slice(&len.to_be_bytes());
    s.write_all(&r).unwrap();
}

fn reply_error(s: &mut UnixStream, handle: u64) -> u32 {
    let mut h = [0u8; 16];
    s.read_exact(&mut h).unwrap();
    assert_eq!(u32::from_be_bytes(h[..4].try_into().unwrap()), 0x6744_6698);
    assert_eq!(u64::from_be_bytes(h[8..].try_into().unwrap()), handle);
    u32::from_be_bytes(h[4..8].try_into().unwrap())
}

#[test]
fn malformed_requests_get_errors_or_a_closed_connection() {
    let (_img, sock) = serve("bad", 1 << 20, false);
    let mut s = handshake(&sock);
    request(&mut s, 0, 1, 1 << 20, 512); // past the end
    assert_eq!(reply_error(&mut s, 1), 22);
    request(&mut s, 0, 2, 100, 512); // misaligned
    assert_eq!(reply_error(&mut s, 2), 22);
    request(&mut s, 9, 3, 0, 0); // unknown command
    assert_eq!(reply_error(&mut s, 3), 95);
    request(&mut s, 0, 4, 0, 512); // a good one still works
    assert_eq!(reply_error(&mut s, 4), 0);
    let mut data = [1u8; 512];
    s.read_exact(&mut data).unwrap();
    assert_eq!(data, [0; 512]);
    // A bad magic ends the connection.
    s.write_all(&[0xde; 28]).unwrap();
    let mut b = [0u8; 1];
    assert_eq!(s.read(&mut b).unwrap_or(0), 0);
    // So does a huge length.
    let mut s = handshake(&sock);
    request(&mut s, 1, 5, 0, u32::MAX);
    assert_eq!(s.read(&mut b).unwrap_or(0), 0);
    // Bad option magic during the handshake.
    let mut s = UnixStream::connect(&sock).unwrap();
    let mut hello = [0u8; 18];
    s.read_exact(&mut hello).unwrap();
    s.write_all(&[0, 0, 0, 3]).unwrap();
    s.write_all(&[0x11; 16]).unwrap();
    assert_eq!(s.read(&mut b).unwrap_or(0), 0);
    // The server still takes new clients.
    let mut s = handshake(&sock);
    request(&mut s, 3, 6, 0, 0); // flush
    assert_eq!(reply_error(&mut s, 6), 0);
    request(&mut s, 2, 7, 0, 0); // disconnect
}

#[test]
fn pipelined_requests_are_all_answered_by_handle() {
    let (img, sock) = serve("pipelined", 1 << 20, false);
    let mut s = handshake(&sock);
    // Writes, reads, a bad request and a flush, sent before any reply is
    // read: replies may come in any order, each with its handle.
    let mut sent = Vec::new();
    for i in 0..8u64 {
        let at = i * 65536;
        request(&mut s, 1, 100 + i, at, 8192);
        s.write_all(&[i as u8 + 1; 8192]).unwrap();
        request(&mut s, 0, 200 + i, 512 * 1024 + at / 2, 4096);
        sent.extend([(100 + i, 0), (200 + i, 4096)]);
    }
    request(&mut s, 0, 300, 100, 512); // misaligned
    request(&mut s, 3, 301, 0, 0); // flush
    sent.extend([(300, 0), (301, 0)]);
    let mut got = BTreeMap::new();
    for _ in 0..sent.len() {
        let mut h = [0u8; 16];
        s.read_exact(&mut h).unwrap();
        assert_eq!(u32::from_be_bytes(h[..4].try_into().unwrap()), 0x6744_6698);
        let err = u32::from_be_bytes(h[4..8].try_into().unwrap());
        let handle = u64::from_be_bytes(h[8..].try_into().unwrap());
        let len = sent
            .iter()
            .find(|x| x.0 == handle)
            .expect("a handle sent")
            .1;
        let mut data = vec![0xee; if err == 0 { len } else { 0 }];
        s.read_exact(&mut data).unwrap();
        assert!(
            got.insert(handle, (err, data)).is_none(),
            "two replies to {handle}"
        );
    }
    assert_eq!(got.len(), sent.len());
    assert_eq!(got[&300].0, 22);
    for i in 0..8u64 {
        assert_eq!(got[&(100 + i)].0, 0);
        assert_eq!(got[&(200 + i)], (0, vec![0; 4096]));
        let mut b = vec![0; 8192];
        std::fs::File::open(&img)
            .unwrap()
            .read_exact_at(&mut b, i * 65536)
            .unwrap();
        assert_eq!(b, vec![i as u8 + 1; 8192]);
    }
    request(&mut s, 2, 302, 0, 0); // disconnect
    let mut b = [0u8; 1];
    assert_eq!(s.read(&mut b).unwrap_or(0), 0);
}

/// Writes the export's first MiB, then discards it through qemu-io: the
/// blocks `file` holds go, and the range reads zeros.
fn write_then_discard_first_mib(sock: &std::path::Path, file: &std::path::Path) {
    use std::os::unix::fs::MetadataExt;
    let (ok, out) = qemu_io(sock, &["write -P 0x55 0 1M", "flush"]);
    assert!(ok, "{out}");
    let allocated = || std::fs::metadata(file).unwrap().blocks() * 512;
    assert!(allocated() >= 1 << 20);
    // qemu passes discards on only when told to (`-d unmap`), and only to
    // an export that offers TRIM.
    let (ok, out) = qemu_io_with(
        &["-d", "unmap"],
        sock,
        &[
            "discard 0 1M",
            "read -P 0 0 1M",
            "read -P 0 1M 64k",
            "flush",
        ],
    );
    assert!(ok, "{out}");
    let left = allocated();
    assert!(left < 1 << 20, "{left} bytes still allocated");
}

#[test]
fn trim_frees_an_images_blocks_and_is_refused_where_it_cannot_be() {
    let (img, sock) = serve("trim", 4 << 20, false);
    write_then_discard_first_mib(&sock, &img);
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 4 << 20);

    let mut s = handshake(&sock);
    request(&mut s, 4, 1, 100, 512); // misaligned
    assert_eq!(reply_error(&mut s, 1), 22);
    // Past the end; a length over the largest payload is no reason to close
    // the connection (a trim carries none).
    request(&mut s, 4, 2, 0, 64 << 20);
    assert_eq!(reply_error(&mut s, 2), 22);
    request(&mut s, 4, 3, 2 << 20, 1 << 20);
    assert_eq!(reply_error(&mut s, 3), 0);
    request(&mut s, 2, 4, 0, 0);

    let (_img, sock) = serve("trim-ro", 1 << 20, true);
    let mut s = handshake(&sock);
    request(&mut s, 4, 5, 0, 4096);
    assert_eq!(reply_error(&mut s, 5), 1);
}

/// A loop device over a file, detached when dropped.
struct Loop(String);

impl Loop {
    /// A loop device (root, util-linux) over a new 4 MiB file in the test
    /// directory `name`; returns it and the file, or `None` (having said
    /// the test is skipped) where none can be made.
    fn over(name: &str) -> Option<(Self, PathBuf)> {
        let backing = dir(name).join("backing.img");
        std::fs::File::create(&backing)
            .unwrap()
            .set_len(4 << 20)
            .unwrap();
        let Some(dev) = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(&backing)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        else {
            println!("skipped: no loop device (needs root and losetup)");
            return None;
        };
        Some((Self(dev), backing))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

#[test]
fn trim_of_a_block_device_discards_its_blocks() {
    // A loop device passes discards on to its file.
    let Some((dev, backing)) = Loop::over("trim-blk") else {
        return;
    };
    let sock = serve_path("trim-blk", std::path::Path::new(&dev.0), false);
    write_then_discard_first_mib(&sock, &backing);
}

/// A rumpdisk process, killed with SIGKILL when dropped.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the rumpdisk program serving `path` as `wd0` with `cache`, plus
/// `extra` options, and NBD on `sock`; returns once the socket exists.
fn start(path: &std::path::Path, cache: &str, sock: &std::path::Path, extra: &[&str]) -> Server {
    let _ = std::fs::remove_file(sock);
    let child = Command::new(env!("CARGO_BIN_EXE_rumpdisk"))
        .args([
            "--image",
            &format!("wd0={}", path.display()),
            "--cache",
            cache,
        ])
        .args(extra)
        .arg("--nbd-unix")
        .arg(sock)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run rumpdisk");
    let server = Server(child);
    let t = std::time::Instant::now();
    while !sock.exists() {
        assert!(t.elapsed().as_secs() < 20, "rumpdisk did not start");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    server
}

/// `len` bytes of `file` at `offset`, read from the file itself (for a loop
/// device: its backing file, which holds only what the device was made to
/// write out, not what sits in the device's own page cache).
fn stored(file: &std::path::Path, offset: u64, len: usize) -> Vec<u8> {
    let mut b = vec![0; len];
    std::fs::File::open(file)
        .unwrap()
        .read_exact_at(&mut b, offset)
        .unwrap();
    b
}

/// The replies to `n` requests sent: each one's handle and error.
fn replies(s: &mut UnixStream, n: usize) -> BTreeMap<u64, u32> {
    let mut got = BTreeMap::new();
    for _ in 0..n {
        let mut h = [0u8; 16];
        s.read_exact(&mut h).unwrap();
        assert_eq!(u32::from_be_bytes(h[..4].try_into().unwrap()), 0x6744_6698);
        let handle = u64::from_be_bytes(h[8..].try_into().unwrap());
        got.insert(handle, u32::from_be_bytes(h[4..8].try_into().unwrap()));
    }
    got
}

const CHUNK: usize = 64 << 10;

/// Writes through NBD that the server acknowledges as stable — with FUA,
/// and plain ones followed by an acknowledged FLUSH — then SIGKILL at once:
/// every acknowledged byte is in `backing`. Then the same through the Mach
/// device interface (`--ctl` write and `DEV_FLUSH_CACHE`).
fn acknowledged_writes_survive_kill(path: &std::path::Path, backing: &std::path::Path, tag: &str) {
    for (round, cache) in ["writeback", "none"].into_iter().enumerate() {
        let sock = dir(&format!("durable-{tag}-{cache}")).join("nbd.sock");
        let server = start(path, cache, &sock, &[]);
        let mut s = handshake(&sock);
        let fill = |k: usize| (round * 16 + k + 1) as u8;
        // Eight FUA writes in flight at once.
        for k in 0..8 {
            let mut r = 0x2560_9513u32.to_be_bytes().to_vec();
            r.extend_from_slice(&1u16.to_be_bytes()); // FUA
            r.extend_from_slice(&1u16.to_be_bytes()); // write
            r.extend_from_slice(&(k as u64).to_be_bytes());
            r.extend_from_slice(&((k * CHUNK) as u64).to_be_bytes());
            r.extend_from_slice(&(CHUNK as u32).to_be_bytes());
            s.write_all(&r).unwrap();
            s.write_all(&vec![fill(k); CHUNK]).unwrap();
        }
        assert!(replies(&mut s, 8).values().all(|&e| e == 0));
        // Eight plain writes, acknowledged, then a flush.
        for k in 8..16 {
            request(&mut s, 1, k as u64, (k * CHUNK) as u64, CHUNK as u32);
            s.write_all(&vec![fill(k); CHUNK]).unwrap();
        }
        assert!(replies(&mut s, 8).values().all(|&e| e == 0));
        request(&mut s, 3, 99, 0, 0);
        assert_eq!(replies(&mut s, 1)[&99], 0);
        // A write on this connection made stable by a flush on another (the
        // export offers several connections).
        request(&mut s, 1, 16, (16 * CHUNK) as u64, CHUNK as u32);
        s.write_all(&vec![fill(16); CHUNK]).unwrap();
        assert_eq!(replies(&mut s, 1)[&16], 0);
        let mut other = handshake(&sock);
        request(&mut other, 3, 100, 0, 0);
        assert_eq!(replies(&mut other, 1)[&100], 0);
        drop(server); // SIGKILL right after the acknowledgement
        for k in 0..17 {
            assert_eq!(
                stored(backing, (k * CHUNK) as u64, CHUNK),
                vec![fill(k); CHUNK],
                "{tag}, cache={cache}: acknowledged write {k} lost"
            );
        }

        // The device interface: device_write, then DEV_FLUSH_CACHE.
        let byte = 0x40 + round as u8;
        let sock = dir(&format!("durable-{tag}-{cache}-mach")).join("nbd.sock");
        let script = format!("write wd0 1m 256k {byte}; flush wd0");
        let mut server = start(path, cache, &sock, &["--ctl", &script]);
        // The socket exists once the commands have run: their output is
        // there to read.
        let mut out = String::new();
        let mut stdout = server.0.stdout.take().unwrap();
        while !out.contains("cache flushed") {
            let mut b = [0u8; 256];
            let n = stdout.read(&mut b).unwrap();
            assert!(n > 0, "rumpdisk ended: {out}");
            out.push_str(&String::from_utf8_lossy(&b[..n]));
        }
        drop(server);
        assert_eq!(
            stored(backing, 1 << 20, 256 << 10),
            vec![byte; 256 << 10],
            "{tag}, cache={cache}: write flushed through the device interface lost ({out})"
        );
    }
}

#[test]
fn acknowledged_writes_to_an_image_survive_sigkill() {
    let img = dir("durable-file").join("disk.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(4 << 20)
        .unwrap();
    acknowledged_writes_survive_kill(&img, &img, "file");
}

/// Over a loop device the test sees whether flushes reach the device: what
/// is written to the device stays in its own page cache until it is
/// flushed (or the kernel's writeback gets to it, after 30 s), and only
/// then is in the backing file read here. The test keeps the device open
/// itself, so the kernel's sync at the last close does not do rumpdisk's
/// flushing for it when rumpdisk is killed.
#[test]
fn acknowledged_writes_to_a_block_device_survive_sigkill() {
    let Some((dev, backing)) = Loop::over("durable-blk") else {
        return;
    };
    let _held = std::fs::File::open(&dev.0).unwrap();
    acknowledged_writes_survive_kill(std::path::Path::new(&dev.0), &backing, "blk");
}

/// Long reads go from the page cache to the socket through a pipe, when
/// their pages fit in it, else through a buffer: either way the bytes are
/// the image's, whole, and a read that fails before any of its data is
/// sent gets an error reply on a connection that goes on.
#[test]
fn long_reads_come_whole_spliced_or_buffered() {
    let (img, sock) = serve("long-reads", 8 << 20, false);
    let pattern: Vec<u8> = (0..8usize << 20)
        .map(|i| (i / 512 * 7 % 251) as u8)
        .collect();
    std::fs::write(&img, &pattern).unwrap();
    let mut s = handshake(&sock);
    // Spliced (64 KiB and 1 MiB on page boundaries), a 1 MiB read over 257
    // pages and a 4 MiB one (too many pages for the pipe), a short one.
    let reads: [(u64, usize); 5] = [
        (0, 1 << 20),
        (512, 1 << 20),
        (3 << 20, 4 << 20),
        (4096, 64 << 10),
        (7 << 20, 4096),
    ];
    for (h, &(at, len)) in reads.iter().enumerate() {
        request(&mut s, 0, h as u64, at, len as u32);
    }
    for _ in 0..reads.len() {
        let mut h = [0u8; 16];
        s.read_exact(&mut h).unwrap();
        assert_eq!(u32::from_be_bytes(h[4..8].try_into().unwrap()), 0);
        let handle = u64::from_be_bytes(h[8..].try_into().unwrap()) as usize;
        let (at, len) = reads[handle];
        let mut data = vec![0; len];
        s.read_exact(&mut data).unwrap();
        let at = at as usize;
        assert!(
            data == pattern[at..at + len],
            "read {handle} ({len} at {at})"
        );
    }
    // The image shrinks under the connection: a long read past its new end
    // fails (EIO) before any data goes out; the connection serves on.
    std::fs::File::options()
        .write(true)
        .open(&img)
        .unwrap()
        .set_len(2 << 20)
        .unwrap();
    request(&mut s, 0, 10, 1 << 20, 2 << 20);
    assert_eq!(reply_error(&mut s, 10), 5);
    request(&mut s, 0, 11, 1 << 20, 1 << 20);
    assert_eq!(reply_error(&mut s, 11), 0);
    let mut data = vec![0; 1 << 20];
    s.read_exact(&mut data).unwrap();
    assert!(data == pattern[1 << 20..2 << 20]);
    request(&mut s, 2, 12, 0, 0);
}

/// A request header and its payload in one buffer.
fn write_request(handle: u64, offset: u64, data: &[u8]) -> Vec<u8> {
    let mut r = 0x2560_9513u32.to_be_bytes().to_vec();
    r.extend_from_slice(&0u16.to_be_bytes());
    r.extend_from_slice(&1u16.to_be_bytes());
    r.extend_from_slice(&handle.to_be_bytes());
    r.extend_from_slice(&offset.to_be_bytes());
    r.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
    r.extend_from_slice(data);
    r
}

/// Long writes to a page-cache image go from the socket through a pipe
/// onto the disk in the reader's turn: whole whether the header came with
/// part of the payload or alone, whether the payload came in big pieces or
/// in small ones that fill the pipe's slots before its bytes (so what it
/// holds goes to the disk mid-payload), up to NBD's 32 MiB; short writes
/// beside them go through a buffer.
#[test]
fn long_writes_land_whole_through_the_pipe() {
    let (img, sock) = serve("long-writes", 48 << 20, false);
    let pattern = |seed: usize, len: usize| -> Vec<u8> {
        (0..len)
            .map(|i| ((i / 512 + seed) * 13 % 251) as u8)
            .collect()
    };
    let mut s = handshake(&sock);
    // (offset, length, sent in pieces of this many bytes)
    let writes: [(u64, usize, usize); 6] = [
        (0, 64 << 10, usize::MAX),
        (512, 1 << 20, usize::MAX),
        (2 << 20, (4 << 20) + 512, 1000),
        (7 << 20, 4096, usize::MAX),
        (8 << 20, 1 << 20, 333),
        (12 << 20, 32 << 20, 1 << 20),
    ];
    for (h, &(at, len, piece)) in writes.iter().enumerate() {
        let r = write_request(h as u64, at, &pattern(h, len));
        for part in r.chunks(piece) {
            s.write_all(part).unwrap();
        }
    }
    let mut answered = BTreeMap::new();
    for _ in 0..writes.len() {
        let mut h = [0u8; 16];
        s.read_exact(&mut h).unwrap();
        let handle = u64::from_be_bytes(h[8..].try_into().unwrap());
        answered.insert(handle, u32::from_be_bytes(h[4..8].try_into().unwrap()));
    }
    assert_eq!(answered, (0..6).map(|h| (h, 0)).collect());
    request(&mut s, 3, 9, 0, 0);
    assert_eq!(reply_error(&mut s, 9), 0);
    let stored = std::fs::read(&img).unwrap();
    for (h, &(at, len, _)) in writes.iter().enumerate() {
        let at = at as usize;
        assert!(
            stored[at..at + len] == pattern(h, len)[..],
            "write {h} ({len} at {at})"
        );
    }
    request(&mut s, 2, 10, 0, 0);
}

/// Unmounts its mount point when dropped.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A long write the host's file system cannot hold gets ENOSPC, and the
/// connection stays in step: the payload was read whole, and the next
/// requests are answered (root mounts a 2 MiB tmpfs for a 16 MiB sparse
/// image; elsewhere the test says it was skipped).
#[test]
fn a_full_file_system_answers_enospc_and_the_connection_goes_on() {
    let d = dir("full");
    let mnt = d.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&mnt)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: cannot mount a tmpfs (needs root)");
        return;
    }
    let _unmount = Unmount(mnt.clone());
    let img = mnt.join("disk.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let sock = serve_path("full", &img, false);
    let mut s = handshake(&sock);
    s.write_all(&write_request(1, 0, &vec![0x5a; 4 << 20]))
        .unwrap();
    assert_eq!(reply_error(&mut s, 1), 28);
    // The stream is in step: a short write where the long one found room
    // (its first blocks), and a read of it.
    s.write_all(&write_request(2, 0, &[0xa5; 4096])).unwrap();
    assert_eq!(reply_error(&mut s, 2), 0);
    request(&mut s, 0, 3, 0, 4096);
    assert_eq!(reply_error(&mut s, 3), 0);
    let mut data = [0u8; 4096];
    s.read_exact(&mut data).unwrap();
    assert_eq!(data, [0xa5; 4096]);
    request(&mut s, 2, 4, 0, 0);
}
