//! Guest program: enumerates PCI functions through the hypercall PCI API,
//! opens the storage controllers and reads their identity registers through
//! mapped BARs. One line per fact, for `tests/pci.rs`.

#[cfg(target_os = "linux")]
use hypercall::pci::{self, Address, BarKind, Device};

#[cfg(target_os = "linux")]
fn main() {
    let mut failed = false;
    for info in pci::devices().expect("enumerate") {
        println!(
            "PCI {} {:04x}:{:04x} class {:06x}",
            info.address, info.vendor, info.device, info.class
        );
        let kind = match (info.vendor, info.class) {
            (0x1af4, _) => "virtio",
            (_, 0x01_0802) => "nvme",
            (_, 0x01_0601) => "ahci",
            _ => continue,
        };
        if let Err(e) = probe(kind, info.address) {
            println!("FAIL {} {kind}: {e}", info.address);
            failed = true;
        }
    }
    // Bad input: no such function; an I/O BAR is not mappable.
    let none = Address {
        domain: 0,
        bus: 0,
        device: 31,
        function: 7,
    };
    if let Err(e) = Device::open(none) {
        println!("OPEN-MISSING {e}");
    } else {
        println!("FAIL opened a missing function");
        failed = true;
    }
    std::process::exit(i32::from(failed));
}

#[cfg(target_os = "linux")]
fn probe(kind: &str, a: Address) -> Result<(), hypercall::NetbsdErrno> {
    let d = Device::open(a)?;
    d.enable()?;
    let id = d.config_read32(0)?;
    println!("OPEN {a} id {id:08x}");
    for b in d.bars()? {
        println!(
            "BAR {a} {} {:?} {:#x} size {:#x}",
            b.index, b.kind, b.address, b.size
        );
        if b.kind == BarKind::Io {
            match d.map_bar(b.index) {
                Err(e) => println!("IOBAR-MAP {a} {e}"),
                Ok(_) => println!("FAIL {a}: mapped an I/O BAR"),
            }
        }
    }
    match kind {
        "nvme" => {
            let m = d.map_bar(0)?;
            println!("NVME {a} CAP={:016x} VS={:08x}", m.read64(0), m.read32(8));
        }
        "ahci" => {
            let m = d.map_bar(5)?;
            println!("AHCI {a} CAP={:08x} VS={:08x}", m.read32(0), m.read32(0x10));
        }
        _ => {
            // The virtio PCI capabilities (vendor-specific, id 9).
            let mut caps = Vec::new();
            let mut at = d.config_read32(0x34)? as u8 & 0xfc;
            while at != 0 && caps.len() < 48 {
                let head = d.config_read32(u16::from(at))?;
                if head & 0xff == 9 {
                    let cfg_type = (head >> 24) as u8;
                    let word = d.config_read32(u16::from(at) + 4)?;
                    let bar = word as u8;
                    let offset = d.config_read32(u16::from(at) + 8)?;
                    caps.push((cfg_type, bar, offset));
                }
                at = (head >> 8) as u8 & 0xfc;
            }
            let names: Vec<&str> = caps
                .iter()
                .map(|c| match c.0 {
                    1 => "common",
                    2 => "notify",
                    3 => "isr",
                    4 => "device",
                    5 => "pci",
                    _ => "other",
                })
                .collect();
            // num_queues: the 16-bit field at 0x12 of the common config.
            let queues = caps
                .iter()
                .find(|c| c.0 == 1)
                .map(|&(_, bar, off)| -> Result<u16, hypercall::NetbsdErrno> {
                    let m = d.map_bar(bar)?;
                    Ok(m.read16(off as usize + 0x12))
                })
                .transpose()?;
            println!(
                "VIRTIO {a} caps={} num_queues={}",
                names.join(","),
                queues.map_or("-".to_owned(), |q| q.to_string())
            );
        }
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("pci-probe runs in the Linux guest of the VM test bed");
    std::process::exit(1);
}
