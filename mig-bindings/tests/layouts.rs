//! Byte layouts of the Hurd interface codecs, checked against what the
//! current MIG generates for the Hurd's `fsys`, `io`, `fs`, `auth`,
//! `startup`, `pci` and `acpi` interfaces (sizes, complex bit, descriptor words at their offsets).

use mach::PortName;
use mach::msg::MsgBuf;
use mach::port::type_name as tn;
use mig_bindings::rpc::ReplyTo;
use mig_bindings::{acpi, auth, fs, fsys, io, pci, startup};

fn word(m: &MsgBuf, off: usize) -> u32 {
    u32::from_ne_bytes(m.as_bytes()[off..off + 4].try_into().unwrap())
}

fn shape(m: &MsgBuf) -> (usize, bool, i32) {
    let h = m.header().unwrap();
    (h.size as usize, h.is_complex(), h.id)
}

const INT32: u32 = 0x2000_2002;
const INT64: u32 = 0x2000_400b;
const STRING_1024: u32 = 0x2000_080c;

#[test]
fn fsys_requests() {
    let (d, r) = (PortName(5), PortName(6));
    let m = fsys::getpriv_request(d, r);
    assert_eq!(shape(&m), (32, false, 22006));
    assert_eq!(m.header().unwrap().bits, 0x1513);
    let m = fsys::startup_request(d, r, 3, PortName(9), tn::MAKE_SEND);
    assert_eq!(shape(&m), (64, true, 22000));
    assert_eq!((word(&m, 32), word(&m, 36), word(&m, 40)), (INT32, 1, 3));
    assert_eq!((word(&m, 48), word(&m, 56)), (0x2000_4014, 9));
    let m = fsys::init_request(
        d,
        r,
        (PortName(7), tn::MAKE_SEND),
        (PortName(8), tn::COPY_SEND),
    );
    assert_eq!(shape(&m), (64, true, 22007));
    assert_eq!((word(&m, 48), word(&m, 56)), (0x2000_4013, 8));
    let m = fsys::syncfs_request(d, r, true, false);
    assert_eq!(shape(&m), (64, false, 22004));
    assert_eq!((word(&m, 40), word(&m, 48), word(&m, 56)), (1, INT32, 0));
}

#[test]
fn fsys_replies() {
    let to = ReplyTo {
        port: PortName(3),
        right: tn::MOVE_SEND_ONCE,
        id: 22006,
    };
    let m = fsys::getpriv_reply(
        &to,
        [
            (PortName(1), tn::COPY_SEND),
            (PortName(2), tn::MAKE_SEND),
            (PortName(4), tn::COPY_SEND),
        ],
    );
    assert_eq!(shape(&m), (96, true, 22106));
    assert_eq!(m.header().unwrap().bits & 0xffff, 0x12);
    assert_eq!((word(&m, 32), word(&m, 40)), (INT32, 0));
    assert_eq!(
        (word(&m, 48), word(&m, 64), word(&m, 80)),
        (0x2000_4013, 0x2000_4014, 0x2000_4013)
    );
    let to = ReplyTo {
        port: PortName(3),
        right: tn::MOVE_SEND_ONCE,
        id: 22000,
    };
    assert_eq!(
        shape(&fsys::startup_reply(&to, PortName(9), tn::MOVE_SEND)),
        (64, true, 22100)
    );
}

#[test]
fn startup_requests() {
    let m = startup::essential_task_request(
        PortName(5),
        PortName(6),
        PortName(1),
        PortName::NULL,
        "rumpdisk",
        PortName(2),
    );
    assert_eq!(shape(&m), (1112, true, 29000));
    assert_eq!(word(&m, 32), 0x2000_4013);
    assert_eq!(word(&m, 48), 0x2000_4010);
    assert_eq!((word(&m, 64), word(&m, 68)), (STRING_1024, 1024));
    assert_eq!(&m.as_bytes()[72..81], b"rumpdisk\0");
    assert_eq!(word(&m, 1096), 0x2000_4013);
    let m = startup::request_notification_request(
        PortName(5),
        PortName(6),
        PortName(7),
        tn::MAKE_SEND,
        "rumpdisk",
    );
    assert_eq!(shape(&m), (1080, true, 29001));
    assert_eq!((word(&m, 48), word(&m, 52)), (STRING_1024, 1024));
}

#[test]
fn pci_and_acpi_requests() {
    let (d, r) = (PortName(5), PortName(6));
    let m = pci::conf_read_request(d, r, 0x10, 4);
    assert_eq!(shape(&m), (64, false, 39000));
    assert_eq!(
        (word(&m, 32), word(&m, 40), word(&m, 48), word(&m, 56)),
        (INT32, 0x10, INT64, 4)
    );
    let m = pci::conf_write_request(d, r, 4, &[1, 2, 3]);
    assert_eq!(shape(&m), (64, false, 39001));
    assert_eq!((word(&m, 48), word(&m, 52)), (0x6000_0808, 3));
    assert_eq!(
        shape(&pci::bare_request(d, r, pci::ID_GET_DEV_REGIONS)),
        (32, false, 39003)
    );
    let m = acpi::get_pci_irq_request(d, r, 0, 3, 1);
    assert_eq!(shape(&m), (80, false, 41001));
    assert_eq!((word(&m, 56), word(&m, 64), word(&m, 72)), (3, INT32, 1));
}

const CHAR_INLINE_LONG: u32 = 0x6000_0808;
const CHAR_OOL_DEALLOC: u32 = 0xc000_0808;

fn reply_to(id: i32) -> ReplyTo {
    ReplyTo {
        port: PortName(3),
        right: tn::MOVE_SEND_ONCE,
        id,
    }
}

/// Sizes and descriptors of `_Xio_*` in MIG's `ioS.c` for `hurd/io.defs`.
#[test]
fn io_requests_and_replies() {
    let (d, r) = (PortName(5), PortName(6));
    let m = io::write_request(d, r, b"abc", -1);
    assert_eq!(shape(&m), (56 + 8, false, 21000));
    assert_eq!((word(&m, 32), word(&m, 36)), (CHAR_INLINE_LONG, 3));
    assert_eq!((word(&m, 48), word(&m, 56)), (INT64, u32::MAX));
    let big = vec![0u8; 4096];
    let m = io::write_request(d, r, &big, 0);
    assert_eq!(shape(&m), (56 + 8, true, 21000));
    assert_eq!(
        (word(&m, 32) & 0x7fff_ffff, word(&m, 36)),
        (0x4000_0808, 4096)
    );
    let m = io::read_request(d, r, 7, 100);
    assert_eq!(shape(&m), (64, false, 21001));
    assert_eq!((word(&m, 32), word(&m, 48)), (INT64, INT64));
    let m = io::seek_request(d, r, 7, 2);
    assert_eq!(shape(&m), (64, false, 21002));
    assert_eq!((word(&m, 48), word(&m, 56)), (INT32, 2));
    assert_eq!(
        shape(&io::int32_request(d, r, io::ID_SET_ALL_OPENMODES, 1)),
        (48, false, 21004)
    );
    assert_eq!(
        shape(&io::bare_request(d, r, io::ID_STAT)),
        (32, false, 21013)
    );
    // io_select, io_pathconf: an int; io_select_timeout: a timespec_t
    // (INTEGER_64 x 2) first, 72 bytes in all.
    for (id, want) in [(io::ID_SELECT, 21012), (io::ID_PATHCONF, 21028)] {
        let m = io::int32_request(d, r, id, 3);
        assert_eq!(shape(&m), (48, false, want));
        assert!(io::decode_request(m.as_bytes()).is_ok());
    }
    let m = io::select_timeout_request(d, r, (5, 6), io::select::READ);
    assert_eq!(shape(&m), (72, false, 21031));
    assert_eq!(
        (word(&m, 32), word(&m, 36), word(&m, 56)),
        (INT64, 2, INT32)
    );
    assert_eq!(
        io::decode_request(m.as_bytes()),
        Ok(io::Request::SelectTimeout {
            timeout: (5, 6),
            select_type: 1
        })
    );
    let m = io::int32_reply(&reply_to(21012), 3);
    assert_eq!(shape(&m), (64, false, 21112));

    let m = io::read_reply_inline(&reply_to(21001), &[1; 5]);
    assert_eq!(shape(&m), (56 + 8, false, 21101));
    assert_eq!((word(&m, 48), word(&m, 52)), (CHAR_INLINE_LONG, 5));
    let m = io::read_reply_ool(&reply_to(21001), 0x1000, 9000);
    assert_eq!(shape(&m), (56 + 8, true, 21101));
    assert_eq!((word(&m, 48), word(&m, 52)), (CHAR_OOL_DEALLOC, 9000));
    let m = io::int64_reply(&reply_to(21000), 5);
    assert_eq!(shape(&m), (64, false, 21100));
    assert_eq!(word(&m, 48), INT64);
    let m = io::stat_reply(&reply_to(21013), &[0; io::STATBUF_LEN]);
    assert_eq!(shape(&m), (232, false, 21113));
    assert_eq!((word(&m, 48), word(&m, 52)), (INT64, 22));
    let m = io::restrict_auth_request(d, r, &[1000], &[]);
    assert_eq!(shape(&m), (48 + 8, false, 21015));
    assert_eq!((word(&m, 32), word(&m, 36)), (0x6000_2002, 1));
    let m = io::server_version_reply(&reply_to(21017), "rumpfs", [0, 1, 0]);
    assert_eq!(shape(&m), (1128, false, 21117));
    assert_eq!(
        io::decode_server_version_reply(m.as_bytes()),
        Ok(("rumpfs".into(), [0, 1, 0]))
    );
    let m = io::port_reply(&reply_to(21016), PortName(9), tn::MAKE_SEND);
    assert_eq!(shape(&m), (64, true, 21116));
    // io_statbuf_t: glibc's struct stat field offsets.
    let st = io::Stat {
        ino: 0x1122,
        mode: 0o100_644,
        size: 77,
        mtime: (5, 6),
        ..io::Stat::default()
    };
    let b = st.encode();
    assert_eq!(&b[16..24], &0x1122u64.to_ne_bytes());
    assert_eq!(&b[40..44], &0o100_644u32.to_ne_bytes());
    assert_eq!(&b[64..72], &77i64.to_ne_bytes());
    assert_eq!(&b[88..96], &5i64.to_ne_bytes());
    assert_eq!(io::Stat::decode(&b), st);
}

/// Sizes and descriptors of `_Xfile_*` and `_Xdir_*` in MIG's `fsS.c` for
/// `hurd/fs.defs`.
#[test]
fn fs_requests_and_replies() {
    let (d, r) = (PortName(5), PortName(6));
    let m = fs::lookup_request(d, r, "a/b", 3, 0o644);
    assert_eq!(shape(&m), (1096, false, 20018));
    assert_eq!((word(&m, 32), word(&m, 36)), (STRING_1024, 1024));
    assert_eq!(&m.as_bytes()[40..44], b"a/b\0");
    assert_eq!((word(&m, 1064), word(&m, 1080)), (INT32, INT32));
    assert_eq!(
        shape(&fs::readdir_request(d, r, 0, -1, 0)),
        (80, false, 20019)
    );
    assert_eq!(
        shape(&fs::name_request(d, r, fs::ID_MKDIR, "x", Some(0o755))),
        (1080, false, 20020)
    );
    assert_eq!(
        shape(&fs::name_request(d, r, fs::ID_UNLINK, "x", None)),
        (1064, false, 20022)
    );
    let m = fs::link_request(d, r, (PortName(9), tn::COPY_SEND), "x", true);
    assert_eq!(shape(&m), (1096, true, 20023));
    let m = fs::rename_request(d, r, "a", (PortName(9), tn::COPY_SEND), "b", false);
    assert_eq!(shape(&m), (2128, true, 20024));
    assert_eq!(word(&m, 1064), 0x2000_4013);
    assert_eq!(
        shape(&fs::ints_request(d, r, fs::ID_CHOWN, &[1, 2])),
        (64, false, 20001)
    );
    assert_eq!(shape(&fs::set_size_request(d, r, 9)), (48, false, 20006));
    assert_eq!(
        shape(&fs::mkfile_request(d, r, 2, 0o644)),
        (64, false, 20025)
    );
    let m = fs::set_translator_request(d, r, fs::FS_TRANS_SET, b"/hurd/symlink\0x\0");
    // MIG: 104 bytes and the passive data, padded to 8.
    assert_eq!(shape(&m), (104 + 16, true, 20027));
    assert_eq!((word(&m, 80), word(&m, 84)), (CHAR_INLINE_LONG, 16));
    assert_eq!(word(&m, 104), 0x2000_4013);
    let m = fs::utimens_request(d, r, (1, 2), (3, 4));
    assert_eq!(shape(&m), (80, false, 20035));
    assert_eq!((word(&m, 32), word(&m, 36)), (INT64, 2));

    let m = fs::lookup_reply(&reply_to(20018), 1, "", PortName(9), tn::MAKE_SEND);
    assert_eq!(shape(&m), (1112, true, 20118));
    assert_eq!((word(&m, 48), word(&m, 64)), (INT32, STRING_1024));
    assert_eq!(word(&m, 1096), 0x2000_4014);
    let m = fs::readdir_reply_inline(&reply_to(20019), &[0; 24], 1);
    assert_eq!(shape(&m), (72 + 24, false, 20119));
    let m = fs::readdir_reply_ool(&reply_to(20019), 0x1000, 4096, 100);
    assert_eq!(shape(&m), (72 + 8, true, 20119));
    let m = fs::statfs_reply(&reply_to(20012), &[0; fs::STATFSBUF_LEN]);
    assert_eq!(shape(&m), (168, false, 20112));
    assert_eq!((word(&m, 48), word(&m, 52)), (INT64, 14));
    // glibc's struct dirent: d_ino, d_reclen, d_type, d_namlen, d_name.
    let mut b = Vec::new();
    fs::put_dirent(&mut b, 42, fs::dt::REG, b"name");
    assert_eq!(b.len(), 24);
    assert_eq!(
        (&b[0..8], &b[8..10]),
        (&42u64.to_ne_bytes()[..], &24u16.to_ne_bytes()[..])
    );
    assert_eq!((b[10], b[11], &b[12..17]), (8, 4, &b"name\0"[..]));
    assert_eq!(fs::parse_dirents(&b), [(42, 8, b"name".to_vec())]);
}

#[test]
fn fsys_getroot_carries_the_credentials() {
    let m = fsys::getroot_request_as(
        PortName(5),
        PortName(6),
        // As received: the right arrives as MOVE_SEND.
        (PortName(7), tn::MOVE_SEND),
        &[1000, 0],
        &[100],
        1,
    );
    // MIG: 80 bytes with empty arrays, each array padded to 8.
    assert_eq!(shape(&m), (80 + 8 + 8, true, 22002));
    let g = fsys::decode_getroot(m.as_bytes()).unwrap();
    assert_eq!((g.dotdot, g.flags), (PortName(7), 1));
    assert_eq!(g.uids, io::Ids::Inline(&[0xe8, 3, 0, 0, 0, 0, 0, 0]));
    assert_eq!(g.gids, io::Ids::Inline(&[100, 0, 0, 0]));
}

/// The Hurd's `EACCES`.
const EACCES: i32 = 0x4000_000d;

/// The first word of a port descriptor: `name`, 64 bits, inline.
const fn port_word(name: u8) -> u32 {
    0x2000_4000 | name as u32
}

/// `io_reauthenticate` (ioU.c: a 48-byte complex simpleroutine, the
/// rendezvous polymorphic, `COPY_SEND` and no reply port) and the two
/// rendezvous routines of `authU.c`/`authS.c` for `hurd/auth.defs`.
#[test]
fn io_reauthenticate_and_the_auth_rendezvous() {
    let m = io::reauthenticate_request(PortName(5), PortName(8), tn::MAKE_SEND);
    assert_eq!(shape(&m), (48, true, 21014));
    let h = m.header().unwrap();
    assert_eq!(
        (h.bits & 0xffff, h.local),
        (u32::from(tn::COPY_SEND), PortName::NULL)
    );
    assert_eq!(word(&m, 32), port_word(tn::MAKE_SEND));
    // As the server receives it.
    let mut got = m.clone();
    got.as_bytes_mut()[32] = tn::MOVE_SEND;
    assert_eq!(
        io::decode_request(got.as_bytes()),
        Ok(io::Request::Reauthenticate {
            rendezvous: PortName(8)
        })
    );
    // A simple message, or a wrong size, is refused as MIG refuses it.
    let mut simple = got.clone();
    simple.as_bytes_mut()[3] &= 0x7f;
    assert!(io::decode_request(simple.as_bytes()).is_err());

    let m = auth::user_authenticate_request(PortName(5), PortName(6), (PortName(8), tn::MAKE_SEND));
    assert_eq!(shape(&m), (48, true, 25002));
    assert_eq!(word(&m, 32), port_word(tn::MAKE_SEND));
    let m = auth::server_authenticate_request(
        PortName(5),
        PortName(6),
        (PortName(8), tn::MOVE_SEND),
        (PortName(9), tn::MAKE_SEND),
    );
    assert_eq!(shape(&m), (64, true, 25003));
    assert_eq!(
        (word(&m, 32), word(&m, 48)),
        (port_word(tn::MOVE_SEND), port_word(tn::MAKE_SEND))
    );
    let mut got = m.clone();
    got.as_bytes_mut()[48] = tn::MOVE_SEND;
    assert_eq!(
        auth::decode_request(got.as_bytes()),
        Ok(auth::Request::ServerAuthenticate {
            rendezvous: PortName(8),
            newport: PortName(9),
            newport_disp: tn::MOVE_SEND,
        })
    );

    let m = auth::user_authenticate_reply(&reply_to(25002), PortName(9), tn::MOVE_SEND);
    assert_eq!(shape(&m), (64, true, 25102));
    assert_eq!(
        auth::decode_user_authenticate_reply(m.as_bytes()),
        Ok(PortName(9))
    );
    let ids = auth::AuthIds {
        euids: vec![1000],
        auids: vec![1000, 1000],
        egids: vec![100],
        agids: vec![],
    };
    let m = auth::server_authenticate_reply(&reply_to(25003), &ids);
    // authS.c: 80 bytes with four empty arrays, each padded to 8.
    assert_eq!(shape(&m), (80 + 8 + 8 + 8, false, 25103));
    assert_eq!((word(&m, 48), word(&m, 52)), (0x6000_2002, 1));
    let ipc = mach::loopback::Kernel::new().new_task();
    assert_eq!(
        auth::decode_server_authenticate_reply(&ipc, m.as_bytes()),
        Ok(ids)
    );
    // An error reply is the error; a truncated one a type error.
    let e = mig_bindings::rpc::error_reply(&reply_to(25003), mach::KernReturn(EACCES));
    assert_eq!(
        auth::decode_server_authenticate_reply(&ipc, e.as_bytes()),
        Err(mach::KernReturn(EACCES))
    );
    let mut short = m.clone();
    short.as_bytes_mut()[4..8].copy_from_slice(&88u32.to_ne_bytes());
    assert_eq!(
        auth::decode_server_authenticate_reply(&ipc, &short.as_bytes()[..88]),
        Err(mach::KernReturn::MIG_TYPE_ERROR)
    );
}

/// `file_lock` (48 bytes, an int; a bare reply) and `file_lock_stat` (32
/// bytes; its reply 80, two ints) as fsU.c/fsS.c have them.
#[test]
fn file_lock_and_its_status() {
    let m = fs::ints_request(PortName(5), PortName(6), fs::ID_LOCK, &[2 | 4]);
    assert_eq!(shape(&m), (48, false, 20007));
    assert_eq!(fs::decode_request(m.as_bytes()), Ok(fs::Request::Lock(6)));
    let m = io::bare_request(PortName(5), PortName(6), fs::ID_LOCK_STAT);
    assert_eq!(shape(&m), (32, false, 20008));
    assert_eq!(fs::decode_request(m.as_bytes()), Ok(fs::Request::LockStat));
    let m = fs::lock_stat_reply(&reply_to(20008), 1, 2);
    assert_eq!(shape(&m), (80, false, 20108));
    assert_eq!((word(&m, 48), word(&m, 64)), (INT32, INT32));
    assert_eq!(fs::decode_lock_stat_reply(m.as_bytes()), Ok((1, 2)));
}

/// `file_record_lock` as fsS.c has it: 104 bytes, complex (an int, the
/// `flock_t` as four `INTEGER_64`, the rendezvous port); the reply 88.
#[test]
fn file_record_lock_and_its_flock() {
    let lock = fs::Flock {
        kind: fs::record::F_WRLCK,
        whence: 1,
        start: -5,
        len: 1 << 40,
        pid: 77,
    };
    let m = fs::record_lock_request(
        PortName(5),
        PortName(6),
        fs::record::F_SETLKW64,
        &lock,
        (PortName::NULL, tn::MOVE_SEND),
    );
    assert_eq!(shape(&m), (104, true, 20036));
    assert_eq!((word(&m, 32), word(&m, 40)), (INT32, 12));
    assert_eq!((word(&m, 48), word(&m, 52)), (INT64, 4));
    // l_type, l_whence, then l_start at 8 and l_len at 16 of the struct.
    assert_eq!((word(&m, 56), word(&m, 60)), (2, 1));
    assert_eq!(word(&m, 64), (-5i32) as u32);
    assert_eq!(word(&m, 88), port_word(tn::MOVE_SEND));
    assert_eq!(
        fs::decode_request(m.as_bytes()),
        Ok(fs::Request::RecordLock {
            cmd: 12,
            lock,
            rendezvous: PortName::NULL
        })
    );
    let m = fs::record_lock_reply(&reply_to(20036), &lock);
    assert_eq!(shape(&m), (88, false, 20136));
    assert_eq!((word(&m, 48), word(&m, 52)), (INT64, 4));
    assert_eq!(fs::decode_record_lock_reply(m.as_bytes()), Ok(lock));
}

/// `file_getlinknode`, `file_get_translator`, `file_get_translator_cntl`:
/// bare 32-byte requests (fsS.c); a port reply, a `data_t` reply.
#[test]
fn link_nodes_and_translators() {
    for (id, want) in [
        (fs::ID_GETLINKNODE, 20016),
        (fs::ID_GET_TRANSLATOR, 20028),
        (fs::ID_GET_TRANSLATOR_CNTL, 20029),
    ] {
        let m = io::bare_request(PortName(5), PortName(6), id);
        assert_eq!(shape(&m), (32, false, want));
    }
    let m = io::bare_request(PortName(5), PortName(6), fs::ID_GET_TRANSLATOR);
    assert_eq!(
        fs::decode_request(m.as_bytes()),
        Ok(fs::Request::GetTranslator)
    );
    let m = io::port_reply(&reply_to(20016), PortName(9), tn::MAKE_SEND);
    assert_eq!(shape(&m), (64, true, 20116));
    let m = io::read_reply_inline(&reply_to(20028), b"/hurd/fifo\0");
    assert_eq!(shape(&m), (56 + 16, false, 20128));
    assert_eq!(
        io::decode_data_reply(m.as_bytes(), fs::ID_GET_TRANSLATOR),
        Ok(io::Data::Inline(b"/hurd/fifo\0"))
    );
}

/// `io_identity` (ioS.c): a bare request; the reply 96 bytes, complex:
/// two ports, then the file number as an `INTEGER_64`.
#[test]
fn io_identity_and_its_ports() {
    let m = io::bare_request(PortName(5), PortName(6), io::ID_IDENTITY);
    assert_eq!(shape(&m), (32, false, 21029));
    assert_eq!(io::decode_request(m.as_bytes()), Ok(io::Request::Identity));
    let m = io::identity_reply(&reply_to(21029), PortName(7), PortName(8), 42);
    assert_eq!(shape(&m), (96, true, 21129));
    assert_eq!(
        (word(&m, 48), word(&m, 64), word(&m, 80)),
        (port_word(tn::MAKE_SEND), port_word(tn::MAKE_SEND), INT64)
    );
    assert_eq!((word(&m, 56), word(&m, 72), word(&m, 88)), (7, 8, 42));
}
