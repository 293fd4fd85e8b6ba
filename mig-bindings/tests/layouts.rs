//! Byte layouts of the Hurd interface codecs, checked against what the
//! current MIG generates for the Hurd's `fsys`, `startup`, `pci` and `acpi`
//! interfaces (sizes, complex bit, descriptor words at their offsets).

use mach::PortName;
use mach::msg::MsgBuf;
use mach::port::type_name as tn;
use mig_bindings::rpc::ReplyTo;
use mig_bindings::{acpi, fsys, pci, startup};

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
