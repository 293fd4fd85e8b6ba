//! Interrupts and DMA from a user task on real GNU Mach: the task finds
//! QEMU's legacy virtio-blk function through PCI configuration ports
//! (`i386_io_perm_create`/`modify`), puts its virtqueue in memory from
//! `vm_allocate_contiguous` (checked page by page with `vm_pages_phys`),
//! reads sectors the host wrote into a buffer from plain `vm_allocate`
//! (physical address from `vm_pages_phys`), and waits for the device's
//! interrupt through the kernel's `irq` device (`device_intr_register`,
//! notification id 100, `device_intr_ack` before the next one).
//!
//! Boot-script words: host port, device master. The disk holds, at byte
//! `i` of sector `s`, `(s * 7 + i) as u8 ^ 0x5a`.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use core::arch::asm;
use core::sync::atomic::{Ordering, fence};

use gnumach_tasks::{Args, MACH, check, end, entry, fail, must};
use mach::ipc::option;
use mach::kernel_rpc::KernelRpc;
use mach::msg::MsgBuf;
use mach::port::Right;
use mach::{Ipc, KernReturn, PortName};
use mig_bindings::device::Client;

const PAGE: u64 = 4096;
/// `device_intr_notify`'s message id.
const INTR_NOTIFY: i32 = 100;

fn outl(port: u16, v: u32) {
    // SAFETY: port I/O the kernel granted this task.
    unsafe { asm!("out dx, eax", in("dx") port, in("eax") v, options(nomem, nostack)) };
}
fn inl(port: u16) -> u32 {
    let v: u32;
    // SAFETY: as `outl`.
    unsafe { asm!("in eax, dx", in("dx") port, out("eax") v, options(nomem, nostack)) };
    v
}
fn outw(port: u16, v: u16) {
    // SAFETY: as `outl`.
    unsafe { asm!("out dx, ax", in("dx") port, in("ax") v, options(nomem, nostack)) };
}
fn inw(port: u16) -> u16 {
    let v: u16;
    // SAFETY: as `outl`.
    unsafe { asm!("in ax, dx", in("dx") port, out("ax") v, options(nomem, nostack)) };
    v
}
fn outb(port: u16, v: u8) {
    // SAFETY: as `outl`.
    unsafe { asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack)) };
}
fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: as `outl`.
    unsafe { asm!("in al, dx", in("dx") port, out("al") v, options(nomem, nostack)) };
    v
}

fn conf_read(devfn: u32, reg: u32) -> u32 {
    outl(0xcf8, 0x8000_0000 | (devfn << 8) | (reg & 0xfc));
    inl(0xcfc)
}
fn conf_write(devfn: u32, reg: u32, v: u32) {
    outl(0xcf8, 0x8000_0000 | (devfn << 8) | (reg & 0xfc));
    outl(0xcfc, v);
}

fn grant(master: PortName, from: u16, to: u16) -> Result<(), KernReturn> {
    let perm = MACH.io_perm_create(master, from, to)?;
    MACH.io_perm_modify(perm, true)
}

fn expected(sector: u64, i: usize) -> u8 {
    (sector as u8).wrapping_mul(7).wrapping_add(i as u8) ^ 0x5a
}

/// Volatile access to a mapped address.
fn poke<T>(addr: u64, v: T) {
    // SAFETY: `addr` lies in a region this task allocated for the device.
    unsafe { (addr as *mut T).write_volatile(v) };
}
fn peek<T: Copy>(addr: u64) -> T {
    // SAFETY: as `poke`.
    unsafe { (addr as *const T).read_volatile() }
}

entry!(main);

#[allow(clippy::too_many_lines)]
fn main(args: &Args) -> ! {
    let host_priv = args.port(1);
    let master = args.port(2);
    must(
        "io ports: PCI configuration (0xcf8-0xcff)",
        grant(master, 0xcf8, 0xcff),
    );

    // Bus 0: the legacy virtio-blk function 1af4:1001.
    let Some(dev) = (0..32).find(|&d| conf_read(d << 3, 0) == 0x1001_1af4) else {
        fail("pci: virtio-blk found", "no 1af4:1001 on bus 0");
        end(true)
    };
    let bar0 = conf_read(dev << 3, 0x10);
    let line = conf_read(dev << 3, 0x3c) & 0xff;
    check(
        "pci: virtio-blk found with an I/O BAR",
        bar0 & 1 == 1 && line != 0 && line < 0xff,
        || format!("bar0 {bar0:#x} line {line}"),
    );
    let io = (bar0 & !3) as u16;
    let cmd = conf_read(dev << 3, 4) & 0xffff;
    conf_write(dev << 3, 4, cmd | 0x5); // I/O space, bus master
    must("io ports: virtio BAR", grant(master, io, io + 0x1f));

    // Legacy virtio: reset, ACKNOWLEDGE|DRIVER, no features, queue 0.
    outb(io + 18, 0);
    outb(io + 18, 3);
    let _ = inl(io);
    outl(io + 4, 0);
    outw(io + 14, 0);
    let qs = u64::from(inw(io + 12));
    let avail_off = 16 * qs;
    let used_off = (avail_off + 6 + 2 * qs).next_multiple_of(PAGE);
    let ring_size = used_off + (6 + 8 * qs).next_multiple_of(PAGE);
    let (ring, ring_phys) = must(
        "dma: vm_allocate_contiguous below 4 GiB",
        MACH.vm_allocate_contiguous(host_priv, ring_size, 0, 1 << 32, PAGE),
    );
    let pages = must(
        "dma: vm_pages_phys of the ring",
        MACH.vm_pages_phys(host_priv, ring, ring_size),
    );
    let contiguous = pages.len() as u64 == ring_size / PAGE
        && pages
            .iter()
            .enumerate()
            .all(|(i, &p)| p == ring_phys + i as u64 * PAGE);
    check(
        "dma: vm_allocate_contiguous is contiguous per vm_pages_phys",
        contiguous,
        || format!("phys {ring_phys:#x} pages {pages:x?}"),
    );
    outl(io + 8, (ring_phys / PAGE) as u32);
    outb(io + 18, 7); // DRIVER_OK
    let capacity = u64::from(inl(io + 20)) | (u64::from(inl(io + 24)) << 32);
    check(
        "virtio: capacity of the 1 MiB disk",
        capacity == 2048,
        || format!("{capacity} sectors"),
    );

    // A buffer from plain vm_allocate: header at 0, status at 16, data at 512.
    let buf = must("dma: vm_allocate", MACH.vm_allocate(PAGE as usize));
    poke::<u64>(buf, 0); // fault the page in
    let phys = must(
        "dma: vm_pages_phys of a vm_allocate page",
        MACH.vm_pages_phys(host_priv, buf, PAGE),
    );
    check(
        "dma: vm_pages_phys gives the page",
        phys.len() == 1 && phys[0] != 0,
        || format!("{phys:x?}"),
    );
    let bphys = phys[0];

    // Interrupts through the kernel's irq device.
    let c = Client::new(&MACH);
    let irq = must("irq: device_open(\"irq\")", c.open(master, 1, "irq"));
    let rcv = must("irq: receive port", MACH.port_allocate(Right::Receive));
    must(
        "irq: device_intr_register",
        c.intr_register(irq, line as i32, 0, rcv),
    );

    for (n, sector) in [5u64, 6].into_iter().enumerate() {
        let n = n as u64;
        poke::<u32>(buf, 0); // VIRTIO_BLK_T_IN
        poke::<u32>(buf + 4, 0);
        poke::<u64>(buf + 8, sector);
        poke::<u8>(buf + 16, 0xff);
        for i in 0..512 {
            poke::<u8>(buf + 512 + i, 0);
        }
        let d = ring;
        // desc: addr u64, len u32, flags u16, next u16
        for (i, (addr, len, flags, next)) in [
            (bphys, 16u32, 1u16, 1u16),
            (bphys + 512, 512, 3, 2),
            (bphys + 16, 1, 2, 0),
        ]
        .into_iter()
        .enumerate()
        {
            let at = d + 16 * i as u64;
            poke::<u64>(at, addr);
            poke::<u32>(at + 8, len);
            poke::<u16>(at + 12, flags);
            poke::<u16>(at + 14, next);
        }
        let avail = ring + avail_off;
        poke::<u16>(avail + 4 + 2 * (n % qs), 0);
        fence(Ordering::SeqCst);
        poke::<u16>(avail + 2, (n + 1) as u16);
        fence(Ordering::SeqCst);
        outw(io + 16, 0);

        let mut msg = MsgBuf::zeroed(128);
        // SAFETY: a 128-byte receive buffer.
        let r = unsafe {
            MACH.mach_msg(
                msg.as_mut_ptr(),
                option::RCV_MSG | option::RCV_TIMEOUT,
                0,
                128,
                rcv,
                10_000,
                PortName::NULL,
            )
        };
        let id = msg.header().map_or(0, |h| h.id);
        check(
            &format!("irq: interrupt {} delivered (line {line})", n + 1),
            r == KernReturn::SUCCESS && id == INTR_NOTIFY,
            || format!("{r} id {id}"),
        );
        let isr = inb(io + 19);
        let used: u16 = peek(ring + used_off + 2);
        let status: u8 = peek(buf + 16);
        let good = (0..512).all(|i| peek::<u8>(buf + 512 + i) == expected(sector, i as usize));
        check(
            &format!("dma: virtio-blk read of sector {sector} into vm_pages_phys memory"),
            isr & 1 == 1 && used == (n + 1) as u16 && status == 0 && good,
            || format!("isr {isr} used {used} status {status} data ok {good}"),
        );
        must("irq: device_intr_ack", c.intr_ack(irq, rcv));
    }
    end(true)
}
