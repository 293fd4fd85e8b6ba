//! GNU Mach's packet filters, as `device/net_io.c` validates and runs them
//! for `device_set_filter`: the old NETF stack language and BPF programs
//! (marked by `NETF_BPF` in their first instruction).
//!
//! [`Filter::compile`] makes the checks `net_set_filter` makes (a program
//! it refuses is `D_INVALID_OPERATION` there) and a few more where GNU Mach
//! would misbehave: unknown BPF opcodes are refused at once. The program is
//! decoded once; [`Filter::run`] never panics, never loops (jumps go
//! forward only) and never reads outside the frame.
//!
//! The data a program sees is GNU Mach's:
//! - NETF: `PUSHWORD+n` reads 16-bit word `n` of the *packet*, which starts
//!   with GNU Mach's 4-byte `packet_header` (word 0: payload length + 4 in
//!   host order; word 1: the Ethernet type as on the wire), then the
//!   payload; `PUSHHDR+n` reads word `n` of the 64-byte header area (the
//!   Ethernet header, then zeros). Words are read in host byte order, as
//!   GNU Mach reads them. An accepting NETF filter takes the whole frame.
//! - BPF: offsets address the Ethernet header and then the payload as one
//!   buffer, the frame. A load past the end of the frame rejects it (GNU
//!   Mach reads up to `NET_RCV_MAX` bytes whatever the frame's length).
//!   `BPF_LEN` is the payload's length and `ret k` delivers `min(k,
//!   payload)` payload bytes, as in GNU Mach. `BPF_MATCH_IMM` (GNU Mach's
//!   hashed multi-session filters) accepts when the scratch words
//!   `mem[0..n]` equal the program's `n` `BPF_KEY` values.
//! - Trailing words that do not make a whole BPF instruction are ignored,
//!   as GNU Mach ignores them.

#![no_std]
// BPF's registers are A and X; its tables read best with bpf::*.
#![allow(clippy::many_single_char_names, clippy::wildcard_imports)]

extern crate alloc;

use alloc::vec::Vec;
use core::fmt;

/// `NETF_IN`: run on received frames.
pub const NETF_IN: u16 = 0x1;
/// `NETF_OUT`: run on sent frames.
pub const NETF_OUT: u16 = 0x2;
/// Bits per NETF argument.
pub const NETF_NBPA: u16 = 10;
/// The type bits of word 0.
pub const NETF_TYPE_MASK: u16 = 0x3f << NETF_NBPA;
/// `NETF_BPF`: the program is BPF.
pub const NETF_BPF: u16 = 1 << NETF_NBPA;
/// Most `filter_t` words in one program.
pub const NET_MAX_FILTER: usize = 128;
/// NETF stack depth.
pub const NET_FILTER_STACK_DEPTH: usize = 32;
/// Bytes of GNU Mach's header area.
pub const NET_HDW_HDR_MAX: usize = 64;
/// BPF scratch words.
pub const BPF_MEMWORDS: u32 = 16;
/// Keys a `BPF_MATCH_IMM` may have (`N_NET_HASH_KEYS`).
pub const N_NET_HASH_KEYS: u8 = 4;

const ETHER_HEADER: usize = 14;
const PACKET_HEADER: usize = 4;

/// NETF operators (`NETF_EQ` ...: operator << `NETF_NBPA`) and arguments.
pub mod netf {
    /// Push only.
    pub const NOP: u16 = 0;
    /// `==`.
    pub const EQ: u16 = 1 << 10;
    /// `<`.
    pub const LT: u16 = 2 << 10;
    /// `<=`.
    pub const LE: u16 = 3 << 10;
    /// `>`.
    pub const GT: u16 = 4 << 10;
    /// `>=`.
    pub const GE: u16 = 5 << 10;
    /// `&`.
    pub const AND: u16 = 6 << 10;
    /// `|`.
    pub const OR: u16 = 7 << 10;
    /// `^`.
    pub const XOR: u16 = 8 << 10;
    /// Accept at once if equal.
    pub const COR: u16 = 9 << 10;
    /// Reject at once if not equal.
    pub const CAND: u16 = 10 << 10;
    /// Reject at once if equal.
    pub const CNOR: u16 = 11 << 10;
    /// Accept at once if not equal.
    pub const CNAND: u16 = 12 << 10;
    /// `!=`.
    pub const NEQ: u16 = 13 << 10;
    /// `<<`.
    pub const LSH: u16 = 14 << 10;
    /// `>>`.
    pub const RSH: u16 = 15 << 10;
    /// `+`.
    pub const ADD: u16 = 16 << 10;
    /// `-`.
    pub const SUB: u16 = 17 << 10;
    /// Argument: push nothing (operate on the top two).
    pub const NOPUSH: u16 = 0;
    /// Argument: push the next word of the program.
    pub const PUSHLIT: u16 = 1;
    /// Argument: push 0.
    pub const PUSHZERO: u16 = 2;
    /// Argument: push the packet word the top of the stack indexes.
    pub const PUSHIND: u16 = 14;
    /// Argument: push the header word the top of the stack indexes.
    pub const PUSHHDRIND: u16 = 15;
    /// Argument base: packet word n.
    pub const PUSHWORD: u16 = 16;
    /// Argument base: header word n (0..32).
    pub const PUSHHDR: u16 = 960;
    /// Argument base: stack word n (0..32).
    pub const PUSHSTK: u16 = 992;
}

/// BPF opcodes (classic BPF, plus GNU Mach's `MATCH_IMM` and `KEY`).
pub mod bpf {
    /// Class: load into A.
    pub const LD: u16 = 0x00;
    /// Class: load into X.
    pub const LDX: u16 = 0x01;
    /// Class: store A.
    pub const ST: u16 = 0x02;
    /// Class: store X.
    pub const STX: u16 = 0x03;
    /// Class: arithmetic.
    pub const ALU: u16 = 0x04;
    /// Class: jumps.
    pub const JMP: u16 = 0x05;
    /// Class: return.
    pub const RET: u16 = 0x06;
    /// Class: miscellaneous.
    pub const MISC: u16 = 0x07;
    /// Size: word.
    pub const W: u16 = 0x00;
    /// Size: half word.
    pub const H: u16 = 0x08;
    /// Size: byte.
    pub const B: u16 = 0x10;
    /// Mode: immediate.
    pub const IMM: u16 = 0x00;
    /// Mode: absolute offset.
    pub const ABS: u16 = 0x20;
    /// Mode: offset X + k.
    pub const IND: u16 = 0x40;
    /// Mode: scratch memory.
    pub const MEM: u16 = 0x60;
    /// Mode: length.
    pub const LEN: u16 = 0x80;
    /// Mode: IP header length (`4 * (P[k] & 0xf)`).
    pub const MSH: u16 = 0xa0;
    /// ALU `+`.
    pub const ADD: u16 = 0x00;
    /// ALU `-`.
    pub const SUB: u16 = 0x10;
    /// ALU `*`.
    pub const MUL: u16 = 0x20;
    /// ALU `/`.
    pub const DIV: u16 = 0x30;
    /// ALU `|`.
    pub const OR: u16 = 0x40;
    /// ALU `&`.
    pub const AND: u16 = 0x50;
    /// ALU `<<`.
    pub const LSH: u16 = 0x60;
    /// ALU `>>`.
    pub const RSH: u16 = 0x70;
    /// ALU negate.
    pub const NEG: u16 = 0x80;
    /// ALU `%`.
    pub const MOD: u16 = 0x90;
    /// ALU `^`.
    pub const XOR: u16 = 0xa0;
    /// Jump always.
    pub const JA: u16 = 0x00;
    /// Jump if equal.
    pub const JEQ: u16 = 0x10;
    /// Jump if greater.
    pub const JGT: u16 = 0x20;
    /// Jump if greater or equal.
    pub const JGE: u16 = 0x30;
    /// Jump if any bit set.
    pub const JSET: u16 = 0x40;
    /// Source: k.
    pub const K: u16 = 0x00;
    /// Source: X.
    pub const X: u16 = 0x08;
    /// Return A.
    pub const A: u16 = 0x10;
    /// GNU Mach: return k if the keys match.
    pub const MATCH_IMM: u16 = 0x18;
    /// MISC: X = A.
    pub const TAX: u16 = 0x00;
    /// GNU Mach: a key of a `MATCH_IMM`.
    pub const KEY: u16 = 0x10;
    /// MISC: A = X.
    pub const TXA: u16 = 0x80;

    /// One `struct bpf_insn`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Insn {
        /// Opcode.
        pub code: u16,
        /// Jump if true.
        pub jt: u8,
        /// Jump if false.
        pub jf: u8,
        /// Operand.
        pub k: u32,
    }

    impl Insn {
        /// An instruction.
        #[must_use]
        pub const fn new(code: u16, jt: u8, jf: u8, k: u32) -> Self {
            Self { code, jt, jf, k }
        }

        /// Its four `filter_t` words, as in memory on this host.
        #[must_use]
        pub fn to_words(self) -> [u16; 4] {
            let k = self.k.to_ne_bytes();
            [
                self.code,
                u16::from_ne_bytes([self.jt, self.jf]),
                u16::from_ne_bytes([k[0], k[1]]),
                u16::from_ne_bytes([k[2], k[3]]),
            ]
        }

        pub(crate) fn from_words(w: &[u16]) -> Self {
            let [jt, jf] = w[1].to_ne_bytes();
            let [a, b] = w[2].to_ne_bytes();
            let [c, d] = w[3].to_ne_bytes();
            Self {
                code: w[0],
                jt,
                jf,
                k: u32::from_ne_bytes([a, b, c, d]),
            }
        }
    }

    /// A whole `device_set_filter` program: the `NETF_BPF | flags` marker
    /// instruction, then `prog`.
    #[must_use]
    pub fn program(flags: u16, prog: &[Insn]) -> alloc::vec::Vec<u16> {
        let mut words = alloc::vec::Vec::with_capacity(4 * (prog.len() + 1));
        words.extend_from_slice(&Insn::new(super::NETF_BPF | flags, 0, 0, 0).to_words());
        for i in prog {
            words.extend_from_slice(&i.to_words());
        }
        words
    }
}

/// Why a program was refused (`D_INVALID_OPERATION`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// No words at all.
    Empty,
    /// More than [`NET_MAX_FILTER`] words.
    TooLong(usize),
    /// Neither `NETF_IN` nor `NETF_OUT`.
    NoDirection,
    /// Type bits other than 0 (NETF) or `NETF_BPF`.
    UnknownType(u16),
    /// A NETF word that does not parse (at word `at`).
    Netf {
        /// Word index.
        at: usize,
        /// What is wrong.
        why: &'static str,
    },
    /// A BPF instruction that does not validate (at instruction `at`,
    /// counting the marker as 0).
    Bpf {
        /// Instruction index.
        at: usize,
        /// What is wrong.
        why: &'static str,
    },
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty program"),
            Self::TooLong(n) => write!(f, "{n} words, more than {NET_MAX_FILTER}"),
            Self::NoDirection => f.write_str("neither NETF_IN nor NETF_OUT"),
            Self::UnknownType(t) => write!(f, "unknown program type {t:#x}"),
            Self::Netf { at, why } => write!(f, "NETF word {at}: {why}"),
            Self::Bpf { at, why } => write!(f, "BPF instruction {at}: {why}"),
        }
    }
}

/// What a filter decided about a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not for this client.
    Reject,
    /// Deliver the header and this many payload bytes.
    Accept {
        /// Payload bytes (at most the frame's).
        payload: usize,
    },
}

#[derive(Clone, Debug)]
enum Program {
    Netf(Vec<u16>),
    Bpf {
        insns: Vec<bpf::Insn>,
        /// The keys of the `MATCH_IMM`, if there is one.
        keys: Vec<u32>,
    },
}

/// A validated program.
#[derive(Clone, Debug)]
pub struct Filter {
    words: Vec<u16>,
    program: Program,
}

impl Filter {
    /// Validates `words` (a `filter_t` array of `device_set_filter`).
    pub fn compile(words: &[u16]) -> Result<Self, Invalid> {
        let Some(&flags) = words.first() else {
            return Err(Invalid::Empty);
        };
        if words.len() > NET_MAX_FILTER {
            return Err(Invalid::TooLong(words.len()));
        }
        if flags & (NETF_IN | NETF_OUT) == 0 {
            return Err(Invalid::NoDirection);
        }
        let program = match flags & NETF_TYPE_MASK {
            0 => {
                check_netf(words)?;
                Program::Netf(words[1..].to_vec())
            }
            NETF_BPF => check_bpf(words)?,
            t => return Err(Invalid::UnknownType(t)),
        };
        Ok(Self {
            words: words.to_vec(),
            program,
        })
    }

    /// The program as given.
    #[must_use]
    pub fn words(&self) -> &[u16] {
        &self.words
    }

    /// Runs on received frames.
    #[must_use]
    pub fn inbound(&self) -> bool {
        self.words[0] & NETF_IN != 0
    }

    /// Runs on sent frames.
    #[must_use]
    pub fn outbound(&self) -> bool {
        self.words[0] & NETF_OUT != 0
    }

    /// A BPF program (else NETF).
    #[must_use]
    pub fn is_bpf(&self) -> bool {
        matches!(self.program, Program::Bpf { .. })
    }

    /// Runs on one whole Ethernet frame (14-byte header, then payload).
    /// A frame shorter than the header is rejected.
    #[must_use]
    pub fn run(&self, frame: &[u8]) -> Verdict {
        if frame.len() < ETHER_HEADER {
            return Verdict::Reject;
        }
        let payload = frame.len() - ETHER_HEADER;
        match &self.program {
            Program::Netf(code) => {
                if run_netf(code, frame) {
                    Verdict::Accept { payload }
                } else {
                    Verdict::Reject
                }
            }
            Program::Bpf { insns, keys } => match run_bpf(insns, keys, frame) {
                0 => Verdict::Reject,
                n => Verdict::Accept {
                    payload: (n as usize).min(payload),
                },
            },
        }
    }
}

fn netf_err(at: usize, why: &'static str) -> Invalid {
    Invalid::Netf { at, why }
}

/// `parse_net_filter`: operators, literals, index bounds, stack depth.
fn check_netf(words: &[u16]) -> Result<(), Invalid> {
    let depth = NET_FILTER_STACK_DEPTH as isize;
    // Entries on the stack; running starts with one (TRUE).
    let mut used: isize = 1;
    let mut i = 1;
    while i < words.len() {
        let w = words[i];
        let op = w & !0x3ff;
        let arg = w & 0x3ff;
        let pushes = match arg {
            netf::NOPUSH => false,
            netf::PUSHLIT => {
                i += 1;
                if i >= words.len() {
                    return Err(netf_err(i - 1, "literal missing"));
                }
                true
            }
            netf::PUSHZERO => true,
            // Replace the top with what it indexes.
            netf::PUSHIND | netf::PUSHHDRIND => {
                if used < 1 {
                    return Err(netf_err(i, "stack underflow"));
                }
                used -= 1;
                true
            }
            a if a >= netf::PUSHSTK => {
                if (a - netf::PUSHSTK) as isize >= used {
                    return Err(netf_err(i, "stack index out of range"));
                }
                true
            }
            // Header words 0..32: the whole header area.
            a if a >= netf::PUSHWORD => true,
            _ => return Err(netf_err(i, "unknown argument")),
        };
        if pushes {
            used += 1;
            if used > depth {
                return Err(netf_err(i, "stack overflow"));
            }
        }
        if op != netf::NOP {
            if op > netf::SUB {
                return Err(netf_err(i, "unknown operator"));
            }
            // Binary: two operands, one result (or none for the
            // conditional ones, which pop and may end the program).
            if used < 2 {
                return Err(netf_err(i, "stack underflow"));
            }
            used -= if matches!(op, netf::COR | netf::CAND | netf::CNOR | netf::CNAND) {
                2
            } else {
                1
            };
        }
        i += 1;
    }
    Ok(())
}

fn word(bytes: &[u8], n: usize) -> Option<u32> {
    let b = bytes.get(2 * n..2 * n + 2)?;
    Some(u32::from(u16::from_ne_bytes([b[0], b[1]])))
}

/// `net_do_filter` on `frame`.
fn run_netf(code: &[u16], frame: &[u8]) -> bool {
    let mut header = [0u8; NET_HDW_HDR_MAX];
    header[..ETHER_HEADER].copy_from_slice(&frame[..ETHER_HEADER]);
    let payload = &frame[ETHER_HEADER..];
    let length = (payload.len() + PACKET_HEADER) as u16;
    let packet_word = |n: usize| -> Option<u32> {
        match n {
            0 => Some(u32::from(length)),
            1 => Some(u32::from(u16::from_ne_bytes([frame[12], frame[13]]))),
            n => word(payload, n - 2),
        }
    };
    let mut stack = [0u32; NET_FILTER_STACK_DEPTH + 1];
    let mut sp = 0usize;
    stack[0] = 1;
    let mut i = 0;
    while i < code.len() {
        let w = code[i];
        i += 1;
        let op = w & !0x3ff;
        let arg = w & 0x3ff;
        let value = match arg {
            netf::NOPUSH => None,
            netf::PUSHZERO => Some(0),
            netf::PUSHLIT => {
                i += 1;
                Some(u32::from(code[i - 1]))
            }
            netf::PUSHIND => {
                let Some(v) = packet_word(stack[sp] as usize) else {
                    return false;
                };
                sp = sp.saturating_sub(1);
                Some(v)
            }
            netf::PUSHHDRIND => {
                let Some(v) = word(&header, stack[sp] as usize) else {
                    return false;
                };
                sp = sp.saturating_sub(1);
                Some(v)
            }
            a if a >= netf::PUSHSTK => Some(stack[sp - usize::from(a - netf::PUSHSTK)]),
            a if a >= netf::PUSHHDR => word(&header, usize::from(a - netf::PUSHHDR)),
            a => match packet_word(usize::from(a - netf::PUSHWORD)) {
                Some(v) => Some(v),
                None => return false,
            },
        };
        if let Some(v) = value {
            sp += 1;
            stack[sp] = v;
        }
        if op == netf::NOP {
            continue;
        }
        let arg = stack[sp];
        sp -= 1;
        let top = &mut stack[sp];
        match op {
            netf::EQ => *top = u32::from(*top == arg),
            netf::NEQ => *top = u32::from(*top != arg),
            netf::LT => *top = u32::from(*top < arg),
            netf::LE => *top = u32::from(*top <= arg),
            netf::GT => *top = u32::from(*top > arg),
            netf::GE => *top = u32::from(*top >= arg),
            netf::AND => *top &= arg,
            netf::OR => *top |= arg,
            netf::XOR => *top ^= arg,
            netf::LSH => *top = top.checked_shl(arg).unwrap_or(0),
            netf::RSH => *top = top.checked_shr(arg).unwrap_or(0),
            netf::ADD => *top = top.wrapping_add(arg),
            netf::SUB => *top = top.wrapping_sub(arg),
            _ => {
                // The conditional operators pop their operand too.
                let v = *top;
                sp = sp.saturating_sub(1);
                match op {
                    netf::COR if v == arg => return true,
                    netf::CAND if v != arg => return false,
                    netf::CNOR if v == arg => return false,
                    netf::CNAND if v != arg => return true,
                    _ => {}
                }
            }
        }
    }
    stack[sp] != 0
}

fn bpf_err(at: usize, why: &'static str) -> Invalid {
    Invalid::Bpf { at, why }
}

/// Whether `code` is an instruction the interpreter runs.
fn known(code: u16) -> bool {
    use bpf::*;
    match code & 0x07 {
        LD => matches!(
            code,
            0x00 | 0x20 | 0x28 | 0x30 | 0x40 | 0x48 | 0x50 | 0x60 | 0x80
        ),
        LDX => matches!(code, 0x01 | 0x61 | 0x81 | 0xb1),
        ST | STX => code & !0x07 == 0,
        ALU => {
            let op = code & 0xf0;
            (op <= XOR && op != NEG && code & !0xf8 == ALU) || code == ALU | NEG
        }
        JMP => {
            let op = code & 0xf0;
            code == JMP | JA || (matches!(op, JEQ | JGT | JGE | JSET) && code & !0xf8 == JMP)
        }
        RET => matches!(code, 0x06 | 0x16 | 0x1e),
        MISC => matches!(code, 0x07 | 0x87),
        _ => false,
    }
}

/// `bpf_validate`, with unknown opcodes refused.
fn check_bpf(words: &[u16]) -> Result<Program, Invalid> {
    let insns: Vec<bpf::Insn> = words
        .chunks_exact(4)
        .skip(1)
        .map(bpf::Insn::from_words)
        .collect();
    let len = insns.len();
    if len == 0 {
        return Err(bpf_err(0, "no instructions"));
    }
    let mut keys = None;
    let mut i = 0;
    while i < len {
        let p = insns[i];
        let at = i + 1;
        let class = p.code & 0x07;
        if class == bpf::MISC && p.code == bpf::MISC | bpf::KEY {
            return Err(bpf_err(at, "a key outside a match"));
        }
        if !known(p.code) {
            return Err(bpf_err(at, "unknown opcode"));
        }
        if class == bpf::JMP {
            let from = i + 1;
            let far = if p.code == bpf::JMP | bpf::JA {
                usize::try_from(p.k).unwrap_or(usize::MAX)
            } else {
                usize::from(p.jt.max(p.jf))
            };
            if from.saturating_add(far) >= len {
                return Err(bpf_err(at, "jump out of the program"));
            }
        }
        let mem = class == bpf::ST
            || class == bpf::STX
            || ((class == bpf::LD || class == bpf::LDX) && p.code & 0xe0 == bpf::MEM);
        if mem && p.k >= BPF_MEMWORDS {
            return Err(bpf_err(at, "scratch memory index out of range"));
        }
        if (p.code == bpf::ALU | bpf::DIV | bpf::K || p.code == bpf::ALU | bpf::MOD | bpf::K)
            && p.k == 0
        {
            return Err(bpf_err(at, "division by zero"));
        }
        if (p.code == bpf::ALU | bpf::LSH | bpf::K || p.code == bpf::ALU | bpf::RSH | bpf::K)
            && p.k >= 32
        {
            return Err(bpf_err(at, "shift by 32 or more"));
        }
        if p.code == bpf::RET | bpf::MATCH_IMM {
            if keys.is_some() {
                return Err(bpf_err(at, "a second match"));
            }
            let n = usize::from(p.jt);
            if n == 0 || p.jt > N_NET_HASH_KEYS || i + n >= len {
                return Err(bpf_err(at, "bad key count"));
            }
            let ks = &insns[i + 1..=i + n];
            if ks.iter().any(|k| k.code != bpf::MISC | bpf::KEY) {
                return Err(bpf_err(at, "a match without its keys"));
            }
            keys = Some(ks.iter().map(|k| k.k).collect::<Vec<_>>());
            i += n;
        }
        i += 1;
    }
    let last = insns[len - 1];
    let ends =
        last.code & 0x07 == bpf::RET || (keys.is_some() && last.code == bpf::MISC | bpf::KEY);
    if !ends {
        return Err(bpf_err(len, "the program does not end with a return"));
    }
    Ok(Program::Bpf {
        insns,
        keys: keys.unwrap_or_default(),
    })
}

fn load(frame: &[u8], k: u32, size: usize) -> Option<u32> {
    let at = usize::try_from(k).ok()?;
    let b = frame.get(at..at.checked_add(size)?)?;
    Some(match size {
        4 => u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        2 => u32::from(u16::from_be_bytes([b[0], b[1]])),
        _ => u32::from(b[0]),
    })
}

/// `bpf_do_filter` on `frame`: the payload bytes to deliver, 0 to reject.
fn run_bpf(insns: &[bpf::Insn], keys: &[u32], frame: &[u8]) -> u32 {
    use bpf::*;
    let wirelen = (frame.len() - ETHER_HEADER) as u32;
    let (mut a, mut x) = (0u32, 0u32);
    let mut mem = [0u32; BPF_MEMWORDS as usize];
    let mut pc = 0;
    while let Some(p) = insns.get(pc) {
        pc += 1;
        let k = p.k;
        macro_rules! ld {
            ($off:expr, $size:expr) => {
                match load(frame, $off, $size) {
                    Some(v) => v,
                    None => return 0,
                }
            };
        }
        macro_rules! jump {
            ($cond:expr) => {
                pc += usize::from(if $cond { p.jt } else { p.jf })
            };
        }
        match p.code {
            0x06 => return k.min(wirelen),
            0x16 => return a.min(wirelen),
            0x1e => {
                let n = keys.len();
                return if mem[..n] == *keys { k.min(wirelen) } else { 0 };
            }
            0x20 => a = ld!(k, 4),
            0x28 => a = ld!(k, 2),
            0x30 => a = ld!(k, 1),
            0x40 => a = ld!(x.wrapping_add(k), 4),
            0x48 => a = ld!(x.wrapping_add(k), 2),
            0x50 => a = ld!(x.wrapping_add(k), 1),
            0x80 => a = wirelen,
            0x81 => x = wirelen,
            0xb1 => x = (ld!(k, 1) & 0xf) << 2,
            0x00 => a = k,
            0x01 => x = k,
            0x60 => a = mem[k as usize],
            0x61 => x = mem[k as usize],
            0x02 => mem[k as usize] = a,
            0x03 => mem[k as usize] = x,
            c if c == JMP | JA => pc += k as usize,
            c if c == JMP | JGT | K => jump!(a > k),
            c if c == JMP | JGE | K => jump!(a >= k),
            c if c == JMP | JEQ | K => jump!(a == k),
            c if c == JMP | JSET | K => jump!(a & k != 0),
            c if c == JMP | JGT | X => jump!(a > x),
            c if c == JMP | JGE | X => jump!(a >= x),
            c if c == JMP | JEQ | X => jump!(a == x),
            c if c == JMP | JSET | X => jump!(a & x != 0),
            c if c == ALU | NEG => a = 0u32.wrapping_sub(a),
            c if c & 0x07 == ALU => {
                let v = if c & X != 0 { x } else { k };
                a = match c & 0xf0 {
                    ADD => a.wrapping_add(v),
                    SUB => a.wrapping_sub(v),
                    MUL => a.wrapping_mul(v),
                    DIV => match a.checked_div(v) {
                        Some(r) => r,
                        None => return 0,
                    },
                    MOD => match a.checked_rem(v) {
                        Some(r) => r,
                        None => return 0,
                    },
                    AND => a & v,
                    OR => a | v,
                    XOR => a ^ v,
                    LSH => a.checked_shl(v).unwrap_or(0),
                    _ => a.checked_shr(v).unwrap_or(0),
                };
            }
            0x07 => x = a,
            0x87 => a = x,
            // Validated away.
            _ => return 0,
        }
    }
    0
}

#[cfg(test)]
mod tests;
