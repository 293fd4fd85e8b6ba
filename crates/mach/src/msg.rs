//! Typed Mach messages in GNU Mach's `x86_64` ABI (2023 and later):
//! a 32-byte header, then typed items, each an 8-byte type descriptor and
//! its data, padded to 8 bytes. On LP64 the long form of a descriptor has
//! the same 8-byte layout (a 32-bit `msgt_number` fits every count); only
//! its `msgt_longform` bit differs, and MIG servers compare it. Ports in a
//! body take 8 bytes each; out-of-line data is an 8-byte address.

use alloc::vec::Vec;

use crate::kern::KernReturn;
use crate::port::PortName;

/// Size of `mach_msg_header_t`.
pub const HEADER_SIZE: usize = 32;
/// Size of a short type descriptor (`mach_msg_type_t`).
pub const TYPE_SIZE: usize = 8;
/// Size of a long type descriptor (`mach_msg_type_long_t`): the same on
/// LP64.
pub const TYPE_LONG_SIZE: usize = 8;
/// Every item in a body is aligned to this.
pub const ALIGN: usize = 8;

/// `MACH_MSGH_BITS_COMPLEX`: the body holds ports or out-of-line data.
pub const BITS_COMPLEX: u32 = 0x8000_0000;
/// Bits the sender may set (remote and local dispositions, complex).
pub const BITS_USER: u32 = 0x8000_ffff;

/// `MACH_MSGH_BITS(remote, local)`.
#[must_use]
pub const fn bits(remote: u8, local: u8) -> u32 {
    remote as u32 | ((local as u32) << 8)
}

/// Rounds `n` up to the item alignment.
#[must_use]
pub const fn pad(n: usize) -> usize {
    (n + ALIGN - 1) & !(ALIGN - 1)
}

/// `mach_msg_header_t`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// `msgh_bits`: dispositions and the complex flag.
    pub bits: u32,
    /// `msgh_size`: size of the whole message.
    pub size: u32,
    /// `msgh_remote_port`: destination on send, reply port on receive.
    pub remote: PortName,
    /// `msgh_local_port`: reply port on send, destination on receive.
    pub local: PortName,
    /// `msgh_seqno`.
    pub seqno: u32,
    /// `msgh_id`.
    pub id: i32,
}

impl Header {
    /// The header of an RPC request to `dest` with reply port `reply`
    /// (`COPY_SEND`, `MAKE_SEND_ONCE`), as MIG's user stubs build it.
    #[must_use]
    pub fn request(dest: PortName, reply: PortName, id: i32) -> Self {
        use crate::port::type_name as tn;
        Self {
            bits: bits(tn::COPY_SEND, tn::MAKE_SEND_ONCE),
            remote: dest,
            local: reply,
            id,
            ..Self::default()
        }
    }

    /// Disposition (send) or right (receive) of the remote port.
    #[must_use]
    pub fn remote_bits(&self) -> u8 {
        (self.bits & 0xff) as u8
    }

    /// Disposition (send) or right (receive) of the local port.
    #[must_use]
    pub fn local_bits(&self) -> u8 {
        ((self.bits >> 8) & 0xff) as u8
    }

    /// Whether the complex bit is set.
    #[must_use]
    pub fn is_complex(&self) -> bool {
        self.bits & BITS_COMPLEX != 0
    }

    /// Decodes the header at the start of `buf`.
    pub fn read(buf: &[u8]) -> Result<Self, MsgError> {
        if buf.len() < HEADER_SIZE {
            return Err(MsgError::Truncated);
        }
        Ok(Self {
            bits: u32_at(buf, 0),
            size: u32_at(buf, 4),
            remote: PortName(u64_at(buf, 8) as u32),
            local: PortName(u64_at(buf, 16) as u32),
            seqno: u32_at(buf, 24),
            id: u32_at(buf, 28) as i32,
        })
    }

    /// Encodes the header into the start of `buf`.
    pub fn write(&self, buf: &mut [u8]) {
        buf[0..4].copy_from_slice(&self.bits.to_ne_bytes());
        buf[4..8].copy_from_slice(&self.size.to_ne_bytes());
        buf[8..16].copy_from_slice(&u64::from(self.remote.0).to_ne_bytes());
        buf[16..24].copy_from_slice(&u64::from(self.local.0).to_ne_bytes());
        buf[24..28].copy_from_slice(&self.seqno.to_ne_bytes());
        buf[28..32].copy_from_slice(&self.id.to_ne_bytes());
    }
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_ne_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

/// A type descriptor, short or long form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TypeDesc {
    /// `msgt_name`: a `MACH_MSG_TYPE_*` value.
    pub name: u8,
    /// `msgt_size`: bits per element.
    pub size: u16,
    /// `msgt_number`: number of elements.
    pub number: u32,
    /// `msgt_inline`: data follows (else an address of out-of-line data).
    pub inline: bool,
    /// `msgt_longform`.
    pub longform: bool,
    /// `msgt_deallocate`: the sender's out-of-line region goes away.
    pub deallocate: bool,
}

const INLINE_BIT: u32 = 1 << 29;
const LONGFORM_BIT: u32 = 1 << 30;
const DEALLOC_BIT: u32 = 1 << 31;

impl TypeDesc {
    /// A short inline descriptor.
    #[must_use]
    pub const fn inline(name: u8, size: u16, number: u32) -> Self {
        Self {
            name,
            size,
            number,
            inline: true,
            longform: false,
            deallocate: false,
        }
    }

    /// Bytes of data the descriptor covers (inline: padded in the body).
    #[must_use]
    pub fn data_len(&self) -> Option<usize> {
        let bits = u64::from(self.number) * u64::from(self.size);
        usize::try_from(bits.div_ceil(8)).ok()
    }

    /// Encoded size of the descriptor itself (8 bytes, either form).
    #[must_use]
    pub fn desc_len(&self) -> usize {
        TYPE_SIZE
    }

    /// Size the item takes in the body: descriptor plus padded inline data,
    /// or descriptor plus an 8-byte address.
    #[must_use]
    pub fn item_len(&self) -> Option<usize> {
        let data = if self.inline {
            pad(self.data_len()?)
        } else {
            8
        };
        self.desc_len().checked_add(data)
    }

    /// The descriptor's 8 bytes.
    #[must_use]
    pub fn encode(&self) -> [u8; TYPE_SIZE] {
        let w = u32::from(self.name)
            | (u32::from(self.size) << 8)
            | if self.inline { INLINE_BIT } else { 0 }
            | if self.longform { LONGFORM_BIT } else { 0 }
            | if self.deallocate { DEALLOC_BIT } else { 0 };
        let mut out = [0u8; TYPE_SIZE];
        out[0..4].copy_from_slice(&w.to_ne_bytes());
        out[4..8].copy_from_slice(&self.number.to_ne_bytes());
        out
    }

    /// Decodes the descriptor at the start of `buf`.
    pub fn read(buf: &[u8]) -> Result<Self, MsgError> {
        if buf.len() < TYPE_SIZE {
            return Err(MsgError::Truncated);
        }
        let w = u32_at(buf, 0);
        Ok(Self {
            name: (w & 0xff) as u8,
            size: ((w >> 8) & 0xffff) as u16,
            number: u32_at(buf, 4),
            inline: w & INLINE_BIT != 0,
            longform: w & LONGFORM_BIT != 0,
            deallocate: w & DEALLOC_BIT != 0,
        })
    }
}

/// Why a message could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsgError {
    /// Shorter than its header or descriptors say.
    Truncated,
    /// A descriptor is not the expected type.
    BadType,
    /// A size or count is out of range.
    BadArguments,
}

impl MsgError {
    /// The MIG error a server answers for it.
    #[must_use]
    pub fn mig_code(self) -> KernReturn {
        match self {
            Self::BadType => KernReturn::MIG_TYPE_ERROR,
            Self::Truncated | Self::BadArguments => KernReturn::MIG_BAD_ARGUMENTS,
        }
    }
}

/// An 8-byte-aligned message buffer.
#[derive(Clone, Debug, Default)]
pub struct MsgBuf {
    words: Vec<u64>,
    len: usize,
}

impl MsgBuf {
    /// An empty buffer.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A zeroed buffer of `len` bytes (for receiving).
    #[must_use]
    pub fn zeroed(len: usize) -> Self {
        let mut b = Self::new();
        b.resize(len);
        b
    }

    /// A buffer holding a copy of `bytes`.
    #[must_use]
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let mut b = Self::zeroed(bytes.len());
        b.as_bytes_mut().copy_from_slice(bytes);
        b
    }

    /// Sets the length, zero-filling growth.
    pub fn resize(&mut self, len: usize) {
        self.words.resize(len.div_ceil(8), 0);
        if len < self.len {
            // Clear the dropped tail of the last word so appends start clean.
            let bytes = self.bytes_all_mut();
            bytes[len..].fill(0);
        }
        self.len = len;
    }

    fn bytes_all_mut(&mut self) -> &mut [u8] {
        let n = self.words.len() * 8;
        // SAFETY: u64 storage viewed as bytes; any byte pattern is valid.
        unsafe { core::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast::<u8>(), n) }
    }

    /// The message bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: u64 storage viewed as bytes, `len` within it.
        unsafe { core::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len) }
    }

    /// The message bytes, writable.
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        let len = self.len;
        &mut self.bytes_all_mut()[..len]
    }

    /// Length in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Pointer for `mach_msg`.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.words.as_mut_ptr().cast()
    }

    /// The header.
    pub fn header(&self) -> Result<Header, MsgError> {
        Header::read(self.as_bytes())
    }
}

/// Builds a message: header first, then typed items.
#[derive(Debug)]
pub struct Builder {
    buf: MsgBuf,
    complex: bool,
}

impl Builder {
    /// A message with this header (its size and complex bit are filled in
    /// by [`Builder::finish`]).
    #[must_use]
    pub fn new(header: Header) -> Self {
        let mut buf = MsgBuf::zeroed(HEADER_SIZE);
        header.write(buf.as_bytes_mut());
        Self {
            buf,
            complex: false,
        }
    }

    fn append(&mut self, bytes: &[u8]) {
        let at = self.buf.len();
        self.buf.resize(at + pad(bytes.len()));
        self.buf.as_bytes_mut()[at..at + bytes.len()].copy_from_slice(bytes);
    }

    /// Appends a descriptor.
    pub fn desc(&mut self, d: TypeDesc) -> &mut Self {
        self.append(&d.encode());
        self
    }

    /// Appends raw bytes padded to the alignment (data of the previous
    /// descriptor).
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.append(bytes);
        self
    }

    /// An inline 32-bit integer.
    pub fn int32(&mut self, v: i32) -> &mut Self {
        self.desc(TypeDesc::inline(crate::port::type_name::INTEGER_32, 32, 1))
            .raw(&v.to_ne_bytes())
    }

    /// An inline 64-bit integer.
    pub fn int64(&mut self, v: i64) -> &mut Self {
        self.desc(TypeDesc::inline(crate::port::type_name::INTEGER_64, 64, 1))
            .raw(&v.to_ne_bytes())
    }

    /// An inline array of 32-bit integers.
    pub fn int32_array(&mut self, v: &[i32], longform: bool) -> &mut Self {
        let mut d = TypeDesc::inline(crate::port::type_name::INTEGER_32, 32, v.len() as u32);
        d.longform = longform;
        self.desc(d);
        let mut bytes = Vec::with_capacity(v.len() * 4);
        for x in v {
            bytes.extend_from_slice(&x.to_ne_bytes());
        }
        self.raw(&bytes)
    }

    /// Inline bytes (`char` array).
    pub fn bytes_inline(&mut self, data: &[u8], longform: bool) -> &mut Self {
        let mut d = TypeDesc::inline(crate::port::type_name::CHAR, 8, data.len() as u32);
        d.longform = longform;
        self.desc(d).raw(data)
    }

    /// A C string of fixed capacity `cap` (MIG's `c_string[cap]`, sent in
    /// long form with the whole capacity).
    pub fn c_string(&mut self, s: &[u8], cap: usize) -> &mut Self {
        let mut d = TypeDesc::inline(crate::port::type_name::STRING_C, 8, cap as u32);
        d.longform = true;
        self.desc(d);
        let mut v = alloc::vec![0u8; cap];
        let n = s.len().min(cap.saturating_sub(1));
        v[..n].copy_from_slice(&s[..n]);
        self.raw(&v)
    }

    /// Out-of-line data at `addr` (`len` bytes), long form as MIG sends it.
    pub fn ool(&mut self, addr: u64, len: usize, deallocate: bool) -> &mut Self {
        self.ool_of(crate::port::type_name::BYTE, addr, len, deallocate)
    }

    /// Out-of-line data of 8-bit elements of type `name` (`BYTE`, `CHAR`).
    pub fn ool_of(&mut self, name: u8, addr: u64, len: usize, deallocate: bool) -> &mut Self {
        self.complex = true;
        let d = TypeDesc {
            name,
            size: 8,
            number: len as u32,
            inline: false,
            longform: true,
            deallocate,
        };
        self.desc(d).raw(&addr.to_ne_bytes())
    }

    /// A port right with disposition `disp` (`MACH_MSG_TYPE_*`).
    pub fn port(&mut self, name: PortName, disp: u8) -> &mut Self {
        self.complex = true;
        self.desc(TypeDesc::inline(disp, 64, 1))
            .raw(&u64::from(name.0).to_ne_bytes())
    }

    /// Current body length (header included).
    #[must_use]
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether only the header is there.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.buf.len() == HEADER_SIZE
    }

    /// Completes the message: sets `msgh_size` and the complex bit.
    #[must_use]
    pub fn finish(mut self) -> MsgBuf {
        let len = self.buf.len() as u32;
        let complex = self.complex;
        let bytes = self.buf.as_bytes_mut();
        bytes[4..8].copy_from_slice(&len.to_ne_bytes());
        if complex {
            let b = u32_at(bytes, 0) | BITS_COMPLEX;
            bytes[0..4].copy_from_slice(&b.to_ne_bytes());
        }
        self.buf
    }
}

/// Reads typed items of a received message, checking every descriptor.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Reads the body of `buf` (whose header says how long it is).
    pub fn new(buf: &'a [u8]) -> Result<(Header, Self), MsgError> {
        let h = Header::read(buf)?;
        let size = h.size as usize;
        if size < HEADER_SIZE || size > buf.len() {
            return Err(MsgError::Truncated);
        }
        Ok((
            h,
            Self {
                buf: &buf[..size],
                pos: HEADER_SIZE,
            },
        ))
    }

    /// Bytes left.
    #[must_use]
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Whether the body is consumed.
    #[must_use]
    pub fn at_end(&self) -> bool {
        self.pos == self.buf.len()
    }

    /// The next descriptor.
    pub fn desc(&mut self) -> Result<TypeDesc, MsgError> {
        let d = TypeDesc::read(&self.buf[self.pos..])?;
        self.pos += d.desc_len();
        Ok(d)
    }

    /// The next `len` data bytes (then skips the padding).
    pub fn data(&mut self, len: usize) -> Result<&'a [u8], MsgError> {
        let end = self.pos.checked_add(len).ok_or(MsgError::Truncated)?;
        let padded = self.pos.checked_add(pad(len)).ok_or(MsgError::Truncated)?;
        if padded > self.buf.len() {
            return Err(MsgError::Truncated);
        }
        let d = &self.buf[self.pos..end];
        self.pos = padded;
        Ok(d)
    }

    /// A descriptor that must be exactly `name`/`size`/`number`, inline.
    pub fn expect(&mut self, name: u8, size: u16, number: u32) -> Result<&'a [u8], MsgError> {
        let d = self.desc()?;
        if d.name != name || d.size != size || d.number != number || !d.inline {
            return Err(MsgError::BadType);
        }
        let n = d.data_len().ok_or(MsgError::BadArguments)?;
        self.data(n)
    }

    /// An inline 32-bit integer.
    pub fn int32(&mut self) -> Result<i32, MsgError> {
        let b = self.expect(crate::port::type_name::INTEGER_32, 32, 1)?;
        Ok(i32::from_ne_bytes(b.try_into().expect("4 bytes")))
    }

    /// An inline 64-bit integer.
    pub fn int64(&mut self) -> Result<i64, MsgError> {
        let b = self.expect(crate::port::type_name::INTEGER_64, 64, 1)?;
        Ok(i64::from_ne_bytes(b.try_into().expect("8 bytes")))
    }

    /// A port (right or name) with the received disposition `right`.
    pub fn port(&mut self, right: u8) -> Result<PortName, MsgError> {
        let b = self.expect(right, 64, 1)?;
        Ok(PortName(
            u64::from_ne_bytes(b.try_into().expect("8 bytes")) as u32
        ))
    }

    /// The 8-byte address of out-of-line data.
    pub fn address(&mut self) -> Result<u64, MsgError> {
        let b = self.data(8)?;
        Ok(u64::from_ne_bytes(b.try_into().expect("8 bytes")))
    }
}
