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
    if let Err(e) = rumpcomp() {
        println!("FAIL rumpcomp: {e}");
        failed = true;
    }
    std::process::exit(i32::from(failed));
}

#[cfg(target_os = "linux")]
fn probe(kind: &str, a: Address) -> Result<(), hypercall::NetbsdErrno> {
    let d = std::sync::Arc::new(Device::open(a)?);
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
            let caps = rumpdisk::virtio::virtio_caps(&d, a);
            let names: Vec<&str> = caps
                .iter()
                .map(|c| match c.cfg_type {
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
                .find(|c| c.cfg_type == 1)
                .map(|c| -> Result<u16, hypercall::NetbsdErrno> {
                    let m = d.map_bar(c.bar)?;
                    Ok(m.read16(c.offset as usize + 0x12))
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

/// The rumpcomp PCI hypercalls as a rump kernel calls them, on the first
/// virtio function (attached as virtual slot 0).
#[cfg(target_os = "linux")]
#[allow(clippy::many_single_char_names)]
fn rumpcomp() -> Result<(), String> {
    use hypercall::abi::pci::{
        DmaSeg, rumpcomp_pci_confread, rumpcomp_pci_dmafree, rumpcomp_pci_dmalloc,
        rumpcomp_pci_dmamem_map, rumpcomp_pci_map, rumpcomp_pci_virt_to_mach,
    };
    let virtio = pci::devices()
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|i| i.vendor == 0x1af4)
        .ok_or("no virtio function")?;
    pci::rump::attach(&[virtio.address]).map_err(|e| e.to_string())?;
    let mut v = 0;
    // SAFETY: a valid out-pointer.
    let r = unsafe { rumpcomp_pci_confread(0, 0, 0, 0, &raw mut v) };
    println!("RUMPCOMP confread 0.0 {r} {v:08x}");
    // SAFETY: as above.
    let r = unsafe { rumpcomp_pci_confread(0, 0, 1, 0, &raw mut v) };
    println!("RUMPCOMP confread 0.1 {r} {v:08x}");
    let (mut pa, mut va) = (0, 0);
    // SAFETY: valid out-pointers.
    let r = unsafe { rumpcomp_pci_dmalloc(8192, 4096, &raw mut pa, &raw mut va) };
    if r != 0 {
        return Err(format!("dmalloc: {r}"));
    }
    let t = rumpcomp_pci_virt_to_mach((va + 100) as *mut _);
    println!(
        "RUMPCOMP dmalloc below4g={} translate={}",
        pa + 8192 <= 1 << 32,
        t == pa + 100
    );
    let heap = vec![0u8; 3 * 4096];
    let p = heap.as_ptr().wrapping_add(10);
    let t = rumpcomp_pci_virt_to_mach(p.cast_mut().cast());
    println!("RUMPCOMP heap identity={}", t == p as u64);
    let seg = DmaSeg {
        pa,
        len: 8192,
        vacookie: va,
    };
    let mut out = std::ptr::null_mut();
    // SAFETY: one segment, a writable out-pointer.
    let r = unsafe { rumpcomp_pci_dmamem_map(&raw const seg, 1, 8192, &raw mut out) };
    println!("RUMPCOMP dmamem_map {r} same={}", out as u64 == va);
    let bar = Device::open(virtio.address)
        .and_then(|d| d.bars())
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|b| matches!(b.kind, BarKind::Memory { .. }))
        .ok_or("no memory BAR")?;
    let m = rumpcomp_pci_map(bar.address, 4096);
    println!("RUMPCOMP map {}", !m.is_null());
    rumpcomp_pci_dmafree(va, 8192);
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("pci-probe runs in the Linux guest of the VM test bed");
    std::process::exit(1);
}
