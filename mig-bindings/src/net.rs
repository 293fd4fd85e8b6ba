//! GNU Mach's network devices (`device/net_status.h`): status flavors,
//! interface flags, and the `net_rcv_msg` a driver sends a filter's port
//! for every frame the filter accepts (`device/net_io.c`, `net_deliver`).
//!
//! A `net_rcv_msg` is not a MIG message: a simple message with id
//! [`NET_RCV_MSG_ID`], two inline byte items and GNU Mach's own size
//! rule. In `struct net_rcv_msg` on `x86_64`:
//!
//! | offset | field |
//! |---|---|
//! | 0 | `mach_msg_header_t` |
//! | 32 | `header_type`: `BYTE`, 8 bits, [`NET_HDW_HDR_MAX`] |
//! | 40 | `header`: the hardware (Ethernet) header, zero-padded to 64 bytes |
//! | 104 | `packet_type`: `BYTE`, 8 bits, `count` |
//! | 112 | `packet`: `struct packet_header` { length, type }, then the payload |
//!
//! `msgh_size` is `P2ROUND(sizeof(struct net_rcv_msg) - sizeof sent -
//! NET_RCV_MAX + count, alignof(uintptr_t))`, i.e. `117 + count` rounded up
//! to 8: up to 8 bytes more than the items cover (the struct's own
//! padding), which a sender fills with zeros.

use mach::KernReturn;
use mach::msg::{self, HEADER_SIZE, Header, MsgBuf, TypeDesc};
use mach::port::{PortName, type_name as tn};

/// `NET_STATUS`: `device_get_status` flavor of [`NetStatus`].
pub const NET_STATUS: u32 = ((b'n' as u32) << 16) + 1;
/// `NET_ADDRESS`: the hardware address, in words in network order.
pub const NET_ADDRESS: u32 = ((b'n' as u32) << 16) + 2;
/// `NET_DSTADDR`: the destination address of a point-to-point link.
pub const NET_DSTADDR: u32 = ((b'n' as u32) << 16) + 3;
/// `NET_FLAGS`: `device_set_status` flavor setting the interface flags
/// (one word of `IFF_*`).
pub const NET_FLAGS: u32 = ((b'n' as u32) << 16) + 4;
/// `NET_STATUS_COUNT`: words of [`NetStatus`].
pub const NET_STATUS_COUNT: usize = 7;
/// `HDR_ETHERNET`: [`NetStatus::header_format`] of Ethernet.
pub const HDR_ETHERNET: i32 = 1;

/// `IFF_UP`: the interface is up.
pub const IFF_UP: i32 = 0x1;
/// `IFF_BROADCAST`: it can broadcast.
pub const IFF_BROADCAST: i32 = 0x2;
/// `IFF_LOOPBACK`: a loopback interface.
pub const IFF_LOOPBACK: i32 = 0x8;
/// `IFF_POINTOPOINT`: a point-to-point link.
pub const IFF_POINTOPOINT: i32 = 0x10;
/// `IFF_RUNNING`: its resources are allocated.
pub const IFF_RUNNING: i32 = 0x40;
/// `IFF_NOARP`: no address resolution.
pub const IFF_NOARP: i32 = 0x80;
/// `IFF_PROMISC`: every frame on the wire is received.
pub const IFF_PROMISC: i32 = 0x100;
/// `IFF_ALLMULTI`: every multicast frame is received.
pub const IFF_ALLMULTI: i32 = 0x200;
/// `IFF_MULTICAST`: it supports multicast.
pub const IFF_MULTICAST: i32 = 0x1000;

/// `NET_MAX_FILTER`: words of a `device_set_filter` program.
pub const NET_MAX_FILTER: usize = 128;
/// `NET_HI_PRI`: a filter of this priority or more takes a frame for
/// itself (no filter after it sees it).
pub const NET_HI_PRI: i32 = 100;
/// `NET_PRI_MAX`: the highest filter priority.
pub const NET_PRI_MAX: i32 = 255;
/// `NET_RCV_MAX`: bytes of the `packet` field (packet header included).
pub const NET_RCV_MAX: usize = 4095;
/// `NET_HDW_HDR_MAX`: bytes of the `header` field.
pub const NET_HDW_HDR_MAX: usize = 64;
/// `NET_RCV_MSG_ID`: the id of a `net_rcv_msg`.
pub const NET_RCV_MSG_ID: i32 = 2999;
/// An Ethernet header: destination, source, type.
pub const ETHER_HEADER: usize = 14;

/// Offset of `header_type` in `struct net_rcv_msg`.
pub const HEADER_TYPE_OFFSET: usize = HEADER_SIZE;
/// Offset of `header`.
pub const HEADER_OFFSET: usize = HEADER_TYPE_OFFSET + msg::TYPE_SIZE;
/// Offset of `packet_type`.
pub const PACKET_TYPE_OFFSET: usize = HEADER_OFFSET + NET_HDW_HDR_MAX;
/// Offset of `packet`.
pub const PACKET_OFFSET: usize = PACKET_TYPE_OFFSET + msg::TYPE_SIZE;
/// `sizeof(struct packet_header)`: it starts the `packet` field.
pub const PACKET_HEADER_SIZE: usize = 4;
/// Payload bytes a `net_rcv_msg` carries at most.
pub const MAX_PAYLOAD: usize = NET_RCV_MAX - PACKET_HEADER_SIZE;
/// `sizeof(struct net_rcv_msg)` (with its trailing `boolean_t sent`).
pub const NET_RCV_MSG_SIZE: usize = 4216;
/// `sizeof(boolean_t)`: the `sent` field GNU Mach leaves out of messages.
const SENT_SIZE: usize = 4;
/// The largest `net_rcv_msg` ([`net_rcv_msg_size`] of `NET_RCV_MAX`): a
/// buffer this long never grows.
pub const NET_RCV_MSG_MAX: usize = net_rcv_msg_size(NET_RCV_MAX);

/// `header_type` as GNU Mach sets it.
const HEADER_DESC: TypeDesc = TypeDesc::inline(tn::BYTE, 8, NET_HDW_HDR_MAX as u32);

/// `msgh_size` of a `net_rcv_msg` whose `packet` holds `count` bytes,
/// by `net_deliver`'s rule.
#[must_use]
pub const fn net_rcv_msg_size(count: usize) -> usize {
    let n = NET_RCV_MSG_SIZE - SENT_SIZE - NET_RCV_MAX + count;
    (n + 7) & !7
}

/// `struct net_status`: the answer to `device_get_status(NET_STATUS)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStatus {
    /// Smallest frame, header included.
    pub min_packet_size: i32,
    /// Largest frame, header included.
    pub max_packet_size: i32,
    /// Header format (`HDR_ETHERNET`).
    pub header_format: i32,
    /// Bytes of the hardware header.
    pub header_size: i32,
    /// Bytes of a hardware address.
    pub address_size: i32,
    /// `IFF_*` flags.
    pub flags: i32,
    /// Memory a mapped interface needs (0: not mappable).
    pub mapped_size: i32,
}

impl NetStatus {
    /// The status words, in the order of the C struct.
    #[must_use]
    pub fn to_words(&self) -> [i32; NET_STATUS_COUNT] {
        [
            self.min_packet_size,
            self.max_packet_size,
            self.header_format,
            self.header_size,
            self.address_size,
            self.flags,
            self.mapped_size,
        ]
    }

    /// The status in a `device_get_status(NET_STATUS)` reply: `None` when
    /// it is shorter than [`NET_STATUS_COUNT`] words (longer is taken, as
    /// by C callers that read the struct).
    #[must_use]
    pub fn from_words(words: &[i32]) -> Option<Self> {
        let w: &[i32; NET_STATUS_COUNT] = words.get(..NET_STATUS_COUNT)?.try_into().ok()?;
        Some(Self {
            min_packet_size: w[0],
            max_packet_size: w[1],
            header_format: w[2],
            header_size: w[3],
            address_size: w[4],
            flags: w[5],
            mapped_size: w[6],
        })
    }
}

/// Writes into `buf` the `net_rcv_msg` for one frame and returns its
/// `msgh_size` (`buf` is that long): destination `dest`, a send right of
/// the caller's that stays its own (`COPY_SEND`), no reply port.
///
/// `header` is the frame's hardware header (at most [`NET_HDW_HDR_MAX`]
/// bytes are used; the rest of the field is zeros), `packet_type` the
/// Ethernet type as it is on the wire, `payload` the bytes after the
/// header. A payload longer than [`MAX_PAYLOAD`] is cut to that length, as
/// a filter that accepts fewer bytes cuts it in GNU Mach: `count` is then
/// [`NET_RCV_MAX`] and the packet header's length still says how long the
/// payload was (`payload.len() + 4`, at most `u16::MAX`).
///
/// Nothing is allocated once `buf` has held a message as long (a buffer
/// from [`net_rcv_buffer`] never grows); every byte of the message is
/// written, so nothing of an earlier one shows through.
pub fn write_net_rcv_msg(
    buf: &mut MsgBuf,
    dest: PortName,
    header: &[u8],
    packet_type: [u8; 2],
    payload: &[u8],
) -> usize {
    let length = u16::try_from(payload.len() + PACKET_HEADER_SIZE).unwrap_or(u16::MAX);
    let payload = &payload[..payload.len().min(MAX_PAYLOAD)];
    let header = &header[..header.len().min(NET_HDW_HDR_MAX)];
    let count = PACKET_HEADER_SIZE + payload.len();
    let size = net_rcv_msg_size(count);
    buf.resize(size);
    let b = buf.as_bytes_mut();
    Header {
        bits: msg::bits(tn::COPY_SEND, 0),
        size: size as u32,
        remote: dest,
        local: PortName::NULL,
        seqno: 0,
        id: NET_RCV_MSG_ID,
    }
    .write(b);
    b[HEADER_TYPE_OFFSET..HEADER_OFFSET].copy_from_slice(&HEADER_DESC.encode());
    let (area, rest) = b[HEADER_OFFSET..].split_at_mut(NET_HDW_HDR_MAX);
    area[..header.len()].copy_from_slice(header);
    area[header.len()..].fill(0);
    rest[..msg::TYPE_SIZE].copy_from_slice(&TypeDesc::inline(tn::BYTE, 8, count as u32).encode());
    let packet = &mut rest[msg::TYPE_SIZE..];
    packet[0..2].copy_from_slice(&length.to_ne_bytes());
    packet[2..4].copy_from_slice(&packet_type);
    packet[PACKET_HEADER_SIZE..count].copy_from_slice(payload);
    packet[count..].fill(0);
    size
}

/// A message buffer that holds any `net_rcv_msg`, for
/// [`write_net_rcv_msg`] to reuse from one frame to the next.
#[must_use]
pub fn net_rcv_buffer() -> MsgBuf {
    MsgBuf::zeroed(NET_RCV_MSG_MAX)
}

/// A received `net_rcv_msg`, borrowed from the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetRcv<'a> {
    /// The whole `header` field ([`NET_HDW_HDR_MAX`] bytes; an Ethernet
    /// header is its first [`ETHER_HEADER`]).
    pub header: &'a [u8],
    /// The packet header's length: payload bytes plus 4 of the frame,
    /// which may exceed what was delivered.
    pub packet_header_len: u16,
    /// The packet header's type, as on the wire.
    pub packet_type: [u8; 2],
    /// The payload delivered (`packet_type.msgt_number - 4` bytes).
    pub payload: &'a [u8],
}

/// Decodes a received `net_rcv_msg`. A message of another id is
/// `MIG_BAD_ID`; a complex one, descriptors other than GNU Mach's
/// (`header_type` exactly `BYTE`/8/64 inline short form, `packet_type`
/// `BYTE`/8 inline short form with 4 to [`NET_RCV_MAX`] bytes), or a
/// `msgh_size` that does not cover the packet or exceeds `bytes` is
/// `MIG_BAD_ARGUMENTS`. A `msgh_size` beyond the items (GNU Mach's
/// rounding, or another sender's) is accepted.
pub fn decode_net_rcv_msg(bytes: &[u8]) -> Result<NetRcv<'_>, KernReturn> {
    let bad = KernReturn::MIG_BAD_ARGUMENTS;
    let h = Header::read(bytes).map_err(|_| bad)?;
    if h.id != NET_RCV_MSG_ID {
        return Err(KernReturn::MIG_BAD_ID);
    }
    let size = h.size as usize;
    if h.is_complex() || size < PACKET_OFFSET || size > bytes.len() {
        return Err(bad);
    }
    let ht = TypeDesc::read(&bytes[HEADER_TYPE_OFFSET..]).map_err(|_| bad)?;
    if ht.encode() != HEADER_DESC.encode() {
        return Err(bad);
    }
    let pt = TypeDesc::read(&bytes[PACKET_TYPE_OFFSET..]).map_err(|_| bad)?;
    let count = pt.number as usize;
    if pt.encode() != TypeDesc::inline(tn::BYTE, 8, pt.number).encode()
        || !(PACKET_HEADER_SIZE..=NET_RCV_MAX).contains(&count)
        || PACKET_OFFSET + count > size
    {
        return Err(bad);
    }
    let packet = &bytes[PACKET_OFFSET..PACKET_OFFSET + count];
    Ok(NetRcv {
        header: &bytes[HEADER_OFFSET..PACKET_TYPE_OFFSET],
        packet_header_len: u16::from_ne_bytes([packet[0], packet[1]]),
        packet_type: [packet[2], packet[3]],
        payload: &packet[PACKET_HEADER_SIZE..],
    })
}
