//! `device_set_filter` decoded with the checks of MIG's server stub (and
//! nothing else accepted), and the `net_rcv_msg` of GNU Mach's network
//! devices written and read back. The bytes are pinned against MIG's C
//! stubs and GNU Mach's C struct in `tests/mig-interop`.

use mach::ipc::{Ipc, option};
use mach::loopback::Kernel;
use mach::msg::{BITS_COMPLEX, MsgBuf, TypeDesc};
use mach::port::{Right, type_name as tn};
use mach::{KernReturn, PortName};
use mig_bindings::device::{self, Client, Request};
use mig_bindings::net::{self, NetStatus};

const BAD: Result<Request<'static>, KernReturn> = Err(KernReturn::MIG_BAD_ARGUMENTS);

/// pfinet's BPF program (ARP, IPv4, IPv6) as `filter_t` words.
const PFINET: [u16; 28] = [
    0x0401, 0, 0, 0, 0x28, 0, 12, 0, 0x15, 2, 0x0806, 0, 0x15, 1, 0x0800, 0, 0x15, 0x100, 0x86dd,
    0, 0x06, 0, 1500, 0, 0x06, 0, 0, 0,
];

/// A request as a server receives it: the right arrives as `PORT_SEND`.
fn received(filter: &[u16]) -> MsgBuf {
    device::set_filter_request(
        PortName(0x10),
        PortName(0x11),
        PortName(0x12),
        tn::MOVE_SEND,
        7,
        filter,
    )
}

fn word(m: &MsgBuf, off: usize) -> u32 {
    u32::from_ne_bytes(m.as_bytes()[off..off + 4].try_into().unwrap())
}

fn set_word(m: &mut MsgBuf, off: usize, w: u32) {
    m.as_bytes_mut()[off..off + 4].copy_from_slice(&w.to_ne_bytes());
}

fn set_desc(m: &mut MsgBuf, off: usize, d: TypeDesc) {
    m.as_bytes_mut()[off..off + 8].copy_from_slice(&d.encode());
}

#[test]
fn set_filter_decodes_what_the_stub_accepts() {
    let m = received(&PFINET);
    assert_eq!(m.len(), 72 + 56);
    assert!(m.header().unwrap().is_complex());
    assert_eq!(
        device::decode_request(m.as_bytes()),
        Ok(Request::SetFilter {
            port: PortName(0x12),
            priority: 7,
            filter: PFINET.to_vec(),
        })
    );
    // No words, and as many as the stub sends.
    for n in [0, 1, 3, 4, 5, net::NET_MAX_FILTER] {
        let filter: Vec<u16> = (0..n as u16).collect();
        let m = received(&filter);
        assert_eq!(m.len(), 72 + (2 * n).div_ceil(8) * 8, "{n} words");
        let Ok(Request::SetFilter { filter: got, .. }) = device::decode_request(m.as_bytes())
        else {
            panic!("{n} words refused");
        };
        assert_eq!(got, filter);
    }
    // MIG does not look at the deallocate bit of an inline array.
    let mut m = received(&PFINET);
    let w = word(&m, 64) | 1 << 31;
    set_word(&mut m, 64, w);
    assert!(device::decode_request(m.as_bytes()).is_ok());
}

#[test]
fn set_filter_refuses_what_the_stub_refuses() {
    // More than NET_MAX_FILTER words (MIG's server buffer holds 128).
    assert_eq!(
        device::decode_request(received(&[0; net::NET_MAX_FILTER + 1]).as_bytes()),
        BAD
    );
    // Not complex: a bare name where the right goes (as MIG's user stub
    // sends one), or the complex bit cleared.
    let name = device::set_filter_request(
        PortName(1),
        PortName(2),
        PortName(3),
        tn::PORT_NAME,
        0,
        &PFINET,
    );
    assert!(!name.header().unwrap().is_complex());
    assert_eq!(device::decode_request(name.as_bytes()), BAD);
    let mut m = received(&PFINET);
    let w = word(&m, 0) & !BITS_COMPLEX;
    set_word(&mut m, 0, w);
    assert_eq!(device::decode_request(m.as_bytes()), BAD);

    // The port descriptor: a send-once right, a receive right, a bare
    // name, data, or the right in another shape.
    let port_descs = [
        TypeDesc::inline(tn::MOVE_SEND_ONCE, 64, 1),
        TypeDesc::inline(tn::MOVE_RECEIVE, 64, 1),
        TypeDesc::inline(tn::PORT_NAME, 64, 1),
        TypeDesc::inline(tn::INTEGER_64, 64, 1),
        TypeDesc::inline(tn::MOVE_SEND, 32, 2),
        TypeDesc::inline(tn::MOVE_SEND, 64, 0),
        TypeDesc {
            longform: true,
            ..TypeDesc::inline(tn::MOVE_SEND, 64, 1)
        },
        TypeDesc {
            inline: false,
            ..TypeDesc::inline(tn::MOVE_SEND, 64, 1)
        },
    ];
    for d in port_descs {
        let mut m = received(&PFINET);
        set_desc(&mut m, 32, d);
        assert_eq!(device::decode_request(m.as_bytes()), BAD, "{d:?}");
    }
    // The priority: anything but one inline short-form int.
    for d in [
        TypeDesc::inline(tn::INTEGER_64, 32, 1),
        TypeDesc::inline(tn::INTEGER_32, 32, 2),
        TypeDesc {
            longform: true,
            ..TypeDesc::inline(tn::INTEGER_32, 32, 1)
        },
    ] {
        let mut m = received(&PFINET);
        set_desc(&mut m, 48, d);
        assert_eq!(device::decode_request(m.as_bytes()), BAD, "{d:?}");
    }
    // The filter: other types, sizes, long form, out of line, or a count
    // the size does not match.
    let n = PFINET.len() as u32;
    for d in [
        TypeDesc::inline(tn::INTEGER_32, 16, n),
        TypeDesc::inline(tn::BYTE, 16, n),
        TypeDesc::inline(tn::INTEGER_16, 8, 2 * n),
        TypeDesc::inline(tn::INTEGER_16, 32, n / 2),
        TypeDesc {
            longform: true,
            ..TypeDesc::inline(tn::INTEGER_16, 16, n)
        },
        TypeDesc {
            inline: false,
            ..TypeDesc::inline(tn::INTEGER_16, 16, n)
        },
        TypeDesc::inline(tn::INTEGER_16, 16, n + 4),
        TypeDesc::inline(tn::INTEGER_16, 16, n - 4),
        TypeDesc::inline(tn::INTEGER_16, 16, u32::MAX),
    ] {
        let mut m = received(&PFINET);
        set_desc(&mut m, 64, d);
        assert_eq!(device::decode_request(m.as_bytes()), BAD, "{d:?}");
    }
    // msgh_size: below the fixed part, not the padded words, beyond the
    // bytes received.
    for size in [0u32, 32, 64, 71, 120, 136, 1 << 20] {
        let mut m = received(&PFINET);
        set_word(&mut m, 4, size);
        assert_eq!(device::decode_request(m.as_bytes()), BAD, "size {size}");
    }
    // Truncated buffers, whatever the header says.
    let m = received(&PFINET);
    for len in 0..m.len() {
        assert!(
            device::decode_request(&m.as_bytes()[..len]).is_err(),
            "{len} bytes"
        );
    }
}

#[test]
fn set_filter_never_panics_on_corrupt_descriptors() {
    let m = received(&PFINET);
    for off in 0..m.len() {
        for bit in 0..8 {
            let mut c = m.clone();
            c.as_bytes_mut()[off] ^= 1 << bit;
            let _ = device::decode_request(c.as_bytes());
        }
    }
}

#[test]
fn set_filter_right_travels_and_release_drops_it() {
    let kernel = Kernel::new();
    let server = kernel.new_task();
    let client = kernel.new_task();
    let dev_port = server.port_allocate(Right::Receive).unwrap();
    let dev = server.give_send_right(dev_port, &client).unwrap();
    let rcv = client.port_allocate(Right::Receive).unwrap();
    let reply = client.port_allocate(Right::Receive).unwrap();

    let mut m = device::set_filter_request(dev, reply, rcv, tn::MAKE_SEND, 3, &PFINET);
    let len = m.len() as u32;
    // SAFETY: a complete message of `len` bytes.
    let kr = unsafe {
        client.mach_msg(
            m.as_mut_ptr(),
            option::SEND_MSG,
            len,
            0,
            PortName::NULL,
            0,
            PortName::NULL,
        )
    };
    assert_eq!(kr, KernReturn::SUCCESS);
    let mut buf = MsgBuf::zeroed(1024);
    // SAFETY: 1024 writable bytes.
    let kr = unsafe {
        server.mach_msg(
            buf.as_mut_ptr(),
            option::RCV_MSG | option::RCV_TIMEOUT,
            0,
            1024,
            dev_port,
            1000,
            PortName::NULL,
        )
    };
    assert_eq!(kr, KernReturn::SUCCESS);
    let req = device::decode_request(buf.as_bytes()).unwrap();
    let Request::SetFilter { port, priority, .. } = req else {
        panic!("decoded {req:?}");
    };
    assert_eq!(priority, 3);
    assert!(port.is_valid());
    // A frame goes out on the right, a copy of it stays.
    let mut out = net::net_rcv_buffer();
    let size = net::write_net_rcv_msg(&mut out, port, &[0xff; 14], [0x08, 0x06], b"arp");
    // SAFETY: a complete message of `size` bytes.
    let kr = unsafe {
        server.mach_msg(
            out.as_mut_ptr(),
            option::SEND_MSG | option::SEND_TIMEOUT,
            size as u32,
            0,
            PortName::NULL,
            0,
            PortName::NULL,
        )
    };
    assert_eq!(kr, KernReturn::SUCCESS);
    req.release(&server);
    assert_ne!(
        server.port_deallocate(port),
        KernReturn::SUCCESS,
        "released once"
    );

    let mut got = MsgBuf::zeroed(net::NET_RCV_MSG_MAX);
    // SAFETY: `NET_RCV_MSG_MAX` writable bytes.
    let kr = unsafe {
        client.mach_msg(
            got.as_mut_ptr(),
            option::RCV_MSG | option::RCV_TIMEOUT,
            0,
            net::NET_RCV_MSG_MAX as u32,
            rcv,
            1000,
            PortName::NULL,
        )
    };
    assert_eq!(kr, KernReturn::SUCCESS);
    let h = got.header().unwrap();
    assert_eq!(
        (h.local, h.remote, h.is_complex()),
        (rcv, PortName::NULL, false)
    );
    let frame = net::decode_net_rcv_msg(got.as_bytes()).unwrap();
    assert_eq!(
        (frame.packet_type, frame.payload),
        ([0x08, 0x06], &b"arp"[..])
    );
}

#[test]
fn client_refuses_a_long_filter_as_the_stub_does() {
    let kernel = Kernel::new();
    let task = kernel.new_task();
    let c = Client::new(&task);
    assert_eq!(
        c.set_filter(
            PortName::NULL,
            PortName::NULL,
            tn::MAKE_SEND,
            0,
            &[0; net::NET_MAX_FILTER + 1]
        ),
        Err(KernReturn::MIG_ARRAY_TOO_LARGE)
    );
}

fn frame(payload: usize) -> Vec<u8> {
    (0..net::ETHER_HEADER + payload)
        .map(|i| (i * 13 + payload) as u8)
        .collect()
}

#[test]
fn net_rcv_msg_round_trip_in_one_buffer() {
    let mut buf = net::net_rcv_buffer();
    let at = buf.as_bytes().as_ptr();
    // Large, small, empty, large again: the same memory, no stale bytes.
    for payload in [4091, 1500, 46, 0, 1, 7, 8, 4091, 3] {
        let f = frame(payload);
        let (hdr, body) = f.split_at(net::ETHER_HEADER);
        let size = net::write_net_rcv_msg(&mut buf, PortName(9), hdr, [hdr[12], hdr[13]], body);
        assert_eq!(buf.as_bytes().as_ptr(), at, "no allocation");
        assert_eq!(size, buf.len());
        assert_eq!(size, (117 + 4 + payload).div_ceil(8) * 8);
        let h = buf.header().unwrap();
        assert_eq!(
            (h.id, h.size as usize, h.remote, h.local),
            (net::NET_RCV_MSG_ID, size, PortName(9), PortName::NULL)
        );
        assert_eq!(
            (h.remote_bits(), h.local_bits(), h.is_complex()),
            (tn::COPY_SEND, 0, false)
        );
        let b = buf.as_bytes();
        assert!(
            b[net::HEADER_OFFSET + 14..net::PACKET_TYPE_OFFSET]
                .iter()
                .all(|&x| x == 0)
        );
        assert!(
            b[net::PACKET_OFFSET + 4 + payload..]
                .iter()
                .all(|&x| x == 0)
        );
        let got = net::decode_net_rcv_msg(b).unwrap();
        assert_eq!(got.header.len(), net::NET_HDW_HDR_MAX);
        assert_eq!(&got.header[..14], hdr);
        assert_eq!(usize::from(got.packet_header_len), payload + 4);
        assert_eq!(got.packet_type, [hdr[12], hdr[13]]);
        assert_eq!(got.payload, body);
    }
}

#[test]
fn net_rcv_msg_cuts_what_does_not_fit() {
    let mut buf = MsgBuf::new();
    // A payload beyond NET_RCV_MAX - 4 bytes is cut; the packet header
    // keeps its length (up to u16::MAX).
    for (payload, length) in [(4092, 4096), (9000, 9004), (70_000, u16::MAX)] {
        let f = frame(payload);
        let size = net::write_net_rcv_msg(&mut buf, PortName(1), &f[..14], [0x86, 0xdd], &f[14..]);
        assert_eq!(size, net::NET_RCV_MSG_MAX);
        let got = net::decode_net_rcv_msg(buf.as_bytes()).unwrap();
        assert_eq!(got.payload, &f[14..14 + net::MAX_PAYLOAD]);
        assert_eq!(got.packet_header_len, length);
    }
    // A hardware header beyond 64 bytes is cut too.
    let long = [0xab; 80];
    net::write_net_rcv_msg(&mut buf, PortName(1), &long, [0, 0], b"x");
    let got = net::decode_net_rcv_msg(buf.as_bytes()).unwrap();
    assert_eq!(got.header, &long[..64]);
    assert_eq!(got.payload, b"x");
}

#[test]
fn net_rcv_msg_decoder_refuses_other_messages() {
    let mut good = MsgBuf::new();
    let f = frame(46);
    net::write_net_rcv_msg(&mut good, PortName(1), &f[..14], [8, 0], &f[14..]);
    assert!(net::decode_net_rcv_msg(good.as_bytes()).is_ok());
    let bad = Err(KernReturn::MIG_BAD_ARGUMENTS);

    let mut m = good.clone();
    set_word(&mut m, 28, 2998);
    assert_eq!(
        net::decode_net_rcv_msg(m.as_bytes()),
        Err(KernReturn::MIG_BAD_ID)
    );
    let mut m = good.clone();
    let w = word(&m, 0) | BITS_COMPLEX;
    set_word(&mut m, 0, w);
    assert_eq!(net::decode_net_rcv_msg(m.as_bytes()), bad);
    let count = 50;
    for (off, d) in [
        (net::HEADER_TYPE_OFFSET, TypeDesc::inline(tn::BYTE, 8, 63)),
        (net::HEADER_TYPE_OFFSET, TypeDesc::inline(tn::CHAR, 8, 64)),
        (net::HEADER_TYPE_OFFSET, TypeDesc::inline(tn::BYTE, 16, 32)),
        (
            net::HEADER_TYPE_OFFSET,
            TypeDesc {
                longform: true,
                ..TypeDesc::inline(tn::BYTE, 8, 64)
            },
        ),
        (net::PACKET_TYPE_OFFSET, TypeDesc::inline(tn::BYTE, 8, 3)),
        (net::PACKET_TYPE_OFFSET, TypeDesc::inline(tn::BYTE, 8, 4096)),
        (net::PACKET_TYPE_OFFSET, TypeDesc::inline(tn::BYTE, 8, 57)),
        (
            net::PACKET_TYPE_OFFSET,
            TypeDesc::inline(tn::INTEGER_16, 16, 25),
        ),
        (
            net::PACKET_TYPE_OFFSET,
            TypeDesc {
                inline: false,
                ..TypeDesc::inline(tn::BYTE, 8, count)
            },
        ),
    ] {
        let mut m = good.clone();
        set_desc(&mut m, off, d);
        assert_eq!(net::decode_net_rcv_msg(m.as_bytes()), bad, "{d:?} at {off}");
    }
    // msgh_size short of the packet, or beyond the bytes.
    for size in [0u32, 32, 111, 161, 4216] {
        let mut m = good.clone();
        set_word(&mut m, 4, size);
        assert!(
            net::decode_net_rcv_msg(m.as_bytes()).is_err(),
            "size {size}"
        );
    }
    // A larger msgh_size (another sender's rounding) is taken.
    let mut m = good.clone();
    m.resize(good.len() + 16);
    let len = m.len() as u32;
    set_word(&mut m, 4, len);
    assert!(net::decode_net_rcv_msg(m.as_bytes()).is_ok());
    for len in 0..good.len() {
        assert!(
            net::decode_net_rcv_msg(&good.as_bytes()[..len]).is_err(),
            "{len} bytes"
        );
    }
    for off in 0..good.len() {
        let mut c = good.clone();
        c.as_bytes_mut()[off] ^= 0x80;
        let _ = net::decode_net_rcv_msg(c.as_bytes());
    }
}

#[test]
fn net_status_words() {
    let s = NetStatus {
        min_packet_size: 60,
        max_packet_size: 1514,
        header_format: net::HDR_ETHERNET,
        header_size: 14,
        address_size: 6,
        flags: net::IFF_UP | net::IFF_BROADCAST | net::IFF_RUNNING | net::IFF_MULTICAST,
        mapped_size: 0,
    };
    let w = s.to_words();
    assert_eq!(w, [60, 1514, 1, 14, 6, 0x1043, 0]);
    assert_eq!(NetStatus::from_words(&w), Some(s));
    assert_eq!(
        NetStatus::from_words(&[w.as_slice(), &[9]].concat()),
        Some(s)
    );
    assert_eq!(NetStatus::from_words(&w[..6]), None);
    assert_eq!(net::NET_STATUS, 0x6e_0001);
    assert_eq!(net::NET_FLAGS, 0x6e_0004);
}
