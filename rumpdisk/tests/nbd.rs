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
fn read_only_exports_refuse_writes() {
    let (_img, sock) = serve("ro", 1 << 20, true);
    let (ok, out) = qemu_io_with(&["-r"], &sock, &["read -P 0 0 4K"]);
    assert!(ok, "{out}");
    // The export says it is read-only: a writer cannot even attach.
    let (ok, out) = qemu_io(&sock, &["write -P 1 0 4K"]);
    assert!(!ok && out.contains("denied"), "{out}");
}

fn handshake(sock: &std::path::Path) -> UnixStream {
    let mut s = UnixStream::connect(sock).unwrap();
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
            return s;
        }
        assert!(kind == 3, "unexpected option reply {kind:#x}");
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

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

#[test]
fn trim_of_a_block_device_discards_its_blocks() {
    let backing = dir("trim-blk").join("backing.img");
    std::fs::File::create(&backing)
        .unwrap()
        .set_len(4 << 20)
        .unwrap();
    // A loop device (root, util-linux): it passes discards on to its file.
    let Some(dev) = Command::new("losetup")
        .args(["-f", "--show"])
        .arg(&backing)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    else {
        println!("skipped: no loop device (needs root and losetup)");
        return;
    };
    let dev = Loop(dev);
    let sock = serve_path("trim-blk", std::path::Path::new(&dev.0), false);
    write_then_discard_first_mib(&sock, &backing);
}
