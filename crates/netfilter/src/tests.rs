use alloc::vec;
use alloc::vec::Vec;

use super::bpf::{self as b, Insn};
use super::netf as n;
use super::*;

const ARP: u32 = 0x0806;
const IPV4: u32 = 0x0800;

fn frame(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x52, 0x54, 0, 1, 2, 3, 0x52, 0x54, 0, 9, 9, 9];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A TCP/IPv4 frame to `dport`.
fn tcp(dport: u16, len: usize) -> Vec<u8> {
    let mut ip = vec![0u8; 20 + 20 + len];
    ip[0] = 0x45;
    ip[9] = 6;
    ip[20 + 2..20 + 4].copy_from_slice(&dport.to_be_bytes());
    frame(0x0800, &ip)
}

fn accept(f: &Filter, frame: &[u8]) -> Option<usize> {
    match f.run(frame) {
        Verdict::Accept { payload } => Some(payload),
        Verdict::Reject => None,
    }
}

/// pfinet's program: IPv4 and ARP.
fn pfinet() -> Vec<u16> {
    b::program(
        NETF_IN,
        &[
            Insn::new(b::LD | b::H | b::ABS, 0, 0, 12),
            Insn::new(b::JMP | b::JEQ | b::K, 1, 0, ARP),
            Insn::new(b::JMP | b::JEQ | b::K, 0, 1, IPV4),
            Insn::new(b::RET | b::K, 0, 0, 1500),
            Insn::new(b::RET | b::K, 0, 0, 0),
        ],
    )
}

#[test]
fn pfinet_takes_ipv4_and_arp_whole() {
    let f = Filter::compile(&pfinet()).unwrap();
    assert!(f.is_bpf() && f.inbound() && !f.outbound());
    assert_eq!(accept(&f, &frame(0x0800, &[0; 100])), Some(100));
    assert_eq!(accept(&f, &frame(0x0806, &[0; 28])), Some(28));
    assert_eq!(accept(&f, &frame(0x86dd, &[0; 100])), None);
    assert_eq!(accept(&f, &[0; 13]), None);
}

/// `tcpdump -dd 'ip and tcp dst port 80'` (IPv4 only; fragments skipped).
fn tcp80() -> Vec<u16> {
    b::program(
        NETF_IN | NETF_OUT,
        &[
            Insn::new(0x28, 0, 0, 0x0000_000c),
            Insn::new(0x15, 0, 8, 0x0000_0800),
            Insn::new(0x30, 0, 0, 0x0000_0017),
            Insn::new(0x15, 0, 6, 0x0000_0006),
            Insn::new(0x28, 0, 0, 0x0000_0014),
            Insn::new(0x45, 4, 0, 0x0000_1fff),
            Insn::new(0xb1, 0, 0, 0x0000_000e),
            Insn::new(0x48, 0, 0, 0x0000_0010),
            Insn::new(0x15, 0, 1, 0x0000_0050),
            Insn::new(0x06, 0, 0, 0x0004_0000),
            Insn::new(0x06, 0, 0, 0x0000_0000),
        ],
    )
}

#[test]
fn tcpdump_programs_run_as_compiled() {
    let f = Filter::compile(&tcp80()).unwrap();
    assert!(f.inbound() && f.outbound());
    assert_eq!(accept(&f, &tcp(80, 10)), Some(50));
    assert_eq!(accept(&f, &tcp(81, 10)), None);
    assert_eq!(accept(&f, &frame(0x0806, &[0; 28])), None);
    // A frame cut short before the port: the load past the end rejects.
    assert_eq!(accept(&f, &tcp(80, 0)[..14 + 21]), None);
}

#[test]
fn the_return_value_truncates() {
    let f = Filter::compile(&b::program(NETF_IN, &[Insn::new(b::RET | b::K, 0, 0, 20)])).unwrap();
    assert_eq!(accept(&f, &frame(0x0800, &[0; 100])), Some(20));
    assert_eq!(accept(&f, &frame(0x0800, &[0; 10])), Some(10));
    // ret A with A = the payload length (GNU Mach's BPF_LEN).
    let len = b::program(
        NETF_IN,
        &[
            Insn::new(b::LD | b::W | b::LEN, 0, 0, 0),
            Insn::new(b::RET | b::A, 0, 0, 0),
        ],
    );
    let f = Filter::compile(&len).unwrap();
    assert_eq!(accept(&f, &frame(0x0800, &[0; 77])), Some(77));
    assert_eq!(accept(&f, &frame(0x0800, &[])), None);
}

#[test]
fn match_imm_compares_scratch_memory_with_its_keys() {
    let prog = |port: u32| {
        b::program(
            NETF_IN,
            &[
                Insn::new(0x48, 0, 0, 0), // ldh [x + 0]: x = 36 below
                Insn::new(b::ST, 0, 0, 0),
                Insn::new(b::RET | b::MATCH_IMM, 1, 0, 1500),
                Insn::new(b::MISC | b::KEY, 0, 0, port),
            ],
        )
    };
    // Load the destination port at 14 + 20 + 2 = 36 with X = 36.
    let mut words = b::program(NETF_IN, &[Insn::new(b::LDX | b::IMM, 0, 0, 36)]);
    words.extend_from_slice(&prog(80)[4..]);
    let f = Filter::compile(&words).unwrap();
    assert_eq!(accept(&f, &tcp(80, 4)), Some(44));
    assert_eq!(accept(&f, &tcp(22, 4)), None);
    let two = b::program(
        NETF_IN,
        &[
            Insn::new(b::RET | b::MATCH_IMM, 2, 0, 1),
            Insn::new(b::MISC | b::KEY, 0, 0, 0),
        ],
    );
    assert!(
        Filter::compile(&two).is_err(),
        "two keys promised, one given"
    );
}

#[test]
fn netf_programs() {
    // An empty program accepts everything.
    let all = Filter::compile(&[NETF_IN]).unwrap();
    assert!(!all.is_bpf());
    assert_eq!(accept(&all, &frame(0x1234, &[1; 9])), Some(9));
    // Header word 6 (bytes 12-13, the type) equals ARP as read in host order.
    let arp = u16::from_ne_bytes([0x08, 0x06]);
    let f = Filter::compile(&[NETF_IN, n::PUSHHDR + 6, n::PUSHLIT | n::EQ, arp]).unwrap();
    assert_eq!(accept(&f, &frame(0x0806, &[0; 28])), Some(28));
    assert_eq!(accept(&f, &frame(0x0800, &[0; 28])), None);
    // Packet word 1 is the packet header's type; word 0 its length.
    let f = Filter::compile(&[NETF_IN, n::PUSHWORD + 1, n::PUSHLIT | n::EQ, arp]).unwrap();
    assert_eq!(accept(&f, &frame(0x0806, &[0; 28])), Some(28));
    let f = Filter::compile(&[NETF_IN, n::PUSHWORD, n::PUSHLIT | n::EQ, 32]).unwrap();
    assert_eq!(accept(&f, &frame(0x0806, &[0; 28])), Some(28));
    assert_eq!(accept(&f, &frame(0x0806, &[0; 29])), None);
    // Short-circuit: ARP or IPv4.
    let ip = u16::from_ne_bytes([0x08, 0x00]);
    let f = Filter::compile(&[
        NETF_IN,
        n::PUSHHDR + 6,
        n::PUSHLIT | n::COR,
        arp,
        n::PUSHHDR + 6,
        n::PUSHLIT | n::EQ,
        ip,
    ])
    .unwrap();
    assert!(accept(&f, &frame(0x0806, &[])).is_some());
    assert!(accept(&f, &frame(0x0800, &[])).is_some());
    assert!(accept(&f, &frame(0x86dd, &[])).is_none());
    // A payload word past the packet rejects.
    let f = Filter::compile(&[NETF_IN, n::PUSHWORD + 100, n::PUSHZERO | n::NEQ]).unwrap();
    assert!(accept(&f, &frame(0x0800, &[0; 20])).is_none());
}

#[test]
fn bad_programs_are_refused() {
    let ret = Insn::new(b::RET | b::K, 0, 0, 1);
    let cases: Vec<(Vec<u16>, &str)> = vec![
        (vec![], "empty"),
        (vec![0], "no direction"),
        (vec![NETF_IN | (5 << NETF_NBPA)], "unknown type"),
        (vec![NETF_IN; 129], "too long"),
        (b::program(NETF_IN, &[]), "no instructions"),
        (
            b::program(NETF_IN, &[Insn::new(b::JMP | b::JA, 0, 0, 1), ret]),
            "ja out",
        ),
        (
            b::program(NETF_IN, &[Insn::new(0x15, 5, 0, 0), ret]),
            "jeq out",
        ),
        (
            b::program(NETF_IN, &[Insn::new(0x34, 0, 0, 0), ret]),
            "div by 0",
        ),
        (
            b::program(NETF_IN, &[Insn::new(0x94, 0, 0, 0), ret]),
            "mod by 0",
        ),
        (
            b::program(NETF_IN, &[Insn::new(0x64, 0, 0, 32), ret]),
            "shift 32",
        ),
        (
            b::program(NETF_IN, &[Insn::new(b::ST, 0, 0, 16), ret]),
            "mem index",
        ),
        (
            b::program(NETF_IN, &[Insn::new(0x60, 0, 0, 99), ret]),
            "mem load",
        ),
        (
            b::program(NETF_IN, &[Insn::new(0xffff, 0, 0, 0), ret]),
            "opcode",
        ),
        (
            b::program(NETF_IN, &[Insn::new(0x28, 0, 0, 12)]),
            "no return",
        ),
        (vec![NETF_IN, n::PUSHLIT | n::EQ], "literal missing"),
        (vec![NETF_IN, n::NOPUSH | n::EQ], "underflow"),
        (vec![NETF_IN, n::PUSHSTK + 5], "stack index"),
        (vec![NETF_IN, 18 << 10 | n::PUSHZERO], "operator"),
        (vec![NETF_IN, 3], "argument"),
        (
            vec![NETF_IN; 1]
                .into_iter()
                .chain([n::PUSHZERO; 40])
                .collect(),
            "overflow",
        ),
    ];
    for (words, what) in cases {
        assert!(
            Filter::compile(&words).is_err(),
            "{what}: {words:?} was accepted"
        );
    }
}

#[test]
fn runtime_faults_reject_without_panicking() {
    // Division by X = 0.
    let f = Filter::compile(&b::program(
        NETF_IN,
        &[Insn::new(0x3c, 0, 0, 0), Insn::new(b::RET | b::K, 0, 0, 1)],
    ))
    .unwrap();
    assert_eq!(accept(&f, &frame(0x0800, &[0; 10])), None);
    // A load far past the frame, directly and through X.
    for code in [0x20, 0x50] {
        let f = Filter::compile(&b::program(
            NETF_IN,
            &[
                Insn::new(code, 0, 0, u32::MAX - 1),
                Insn::new(b::RET | b::K, 0, 0, 1),
            ],
        ))
        .unwrap();
        assert_eq!(accept(&f, &frame(0x0800, &[0; 10])), None);
    }
    // Trailing words that are not a whole instruction are ignored.
    let mut words = b::program(NETF_IN, &[Insn::new(b::RET | b::K, 0, 0, 5)]);
    words.extend_from_slice(&[0xffff, 0xffff]);
    let f = Filter::compile(&words).unwrap();
    assert_eq!(accept(&f, &frame(0x0800, &[0; 10])), Some(5));
}
