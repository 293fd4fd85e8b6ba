//! The hypercall PCI API in the guest: enumeration, configuration space and
//! mapped BARs of virtio-blk, `NVMe` and AHCI controllers through VFIO.

use testbed::guest::Guest;

#[test]
fn enumerates_and_reads_identity_registers_through_mapped_bars() {
    let o = Guest::new()
        .module("vfio-pci")
        .program("vm-tests", "pci-probe")
        .qemu(&[
            "-drive",
            "if=none,id=vd,format=raw,file=null-co://,size=16M",
            "-device",
            "virtio-blk-pci,drive=vd,addr=0x5,num-queues=1",
            "-drive",
            "if=none,id=nv,format=raw,file=null-co://,size=16M",
            "-device",
            "nvme,drive=nv,serial=rumpdisk0,addr=0x6",
            "-device",
            "ahci,id=ahci0,addr=0x7",
            "-drive",
            "if=none,id=sd,format=raw,file=null-co://,size=16M",
            "-device",
            "ide-hd,drive=sd,bus=ahci0.0",
        ])
        .run("pci-probe", "pci-probe\n");
    eprintln!("{}", o.output.join("\n"));
    o.assert_success();
    let line = |prefix: &str| {
        o.lines(prefix).first().map_or_else(
            || panic!("no {prefix} line\n{}", o.log),
            |s| (*s).to_owned(),
        )
    };
    // Every function of the q35 machine, not a capped list.
    assert!(o.lines("PCI ").len() >= 8, "{}", o.log);
    assert!(line("PCI 0000:00:05.0 ").starts_with("1af4:"));
    // NVMe: version 1.x, CAP.MQES non-zero.
    let nvme = line("NVME 0000:00:06.0 ");
    let vs = u32::from_str_radix(nvme.split("VS=").nth(1).unwrap(), 16).unwrap();
    assert_eq!(vs >> 16, 1, "{nvme}");
    let cap = u64::from_str_radix(&nvme["CAP=".len()..nvme.find(' ').unwrap()], 16).unwrap();
    assert_ne!(cap & 0xffff, 0, "{nvme}");
    // AHCI: version 1.x.
    let ahci = line("AHCI 0000:00:07.0 ");
    let vs = u32::from_str_radix(ahci.split("VS=").nth(1).unwrap(), 16).unwrap();
    assert_eq!(vs >> 16, 1, "{ahci}");
    // virtio: the modern capabilities, and one request queue.
    let virtio = line("VIRTIO 0000:00:05.0 ");
    for c in ["common", "notify", "isr", "device"] {
        assert!(virtio.contains(c), "{virtio}");
    }
    assert!(virtio.ends_with("num_queues=1"), "{virtio}");
    // The rumpcomp hypercalls on the same devices.
    assert_eq!(line("RUMPCOMP confread 0.0 "), "0 10011af4", "{}", o.log);
    assert!(
        line("RUMPCOMP confread 0.1 ").ends_with(" ffffffff"),
        "{}",
        o.log
    );
    assert_eq!(line("RUMPCOMP dmalloc "), "below4g=true translate=true");
    assert_eq!(line("RUMPCOMP heap "), "identity=true");
    assert_eq!(line("RUMPCOMP dmamem_map "), "0 same=true");
    assert_eq!(line("RUMPCOMP map "), "true");
    // Bad input gets errors, not crashes.
    assert!(line("OPEN-MISSING ").contains("No such file"), "{}", o.log);
    assert!(!o.lines("IOBAR-MAP ").is_empty(), "{}", o.log);
}
