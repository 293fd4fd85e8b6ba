//! Interrupts and DMA on real GNU Mach: a task drives QEMU's legacy
//! virtio-blk function from user space (I/O permissions, a virtqueue in
//! `vm_allocate_contiguous` memory, `vm_pages_phys`, the `irq` device) and
//! checks the sectors the host wrote.

use gnumach_tests::Boot;

#[test]
fn virtio_blk_interrupt_and_dma_from_a_task() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("irq-dma");
    std::fs::create_dir_all(&dir).unwrap();
    let image = dir.join("disk.img");
    let data: Vec<u8> = (0..2048u64 * 512)
        .map(|b| {
            let (s, i) = (b / 512, b % 512);
            (s as u8).wrapping_mul(7).wrapping_add(i as u8) ^ 0x5a
        })
        .collect();
    std::fs::write(&image, data).unwrap();
    let drive = format!("file={},if=none,id=d0,format=raw", image.display());
    let out = Boot::new()
        .task(
            "irqdma",
            "'${host-port}' '${device-port}' '$(task-create)' '$(task-resume)'",
        )
        .qemu(&[
            "-drive",
            &drive,
            "-device",
            "virtio-blk-pci,drive=d0,disable-modern=on",
        ])
        .run("irq-dma");
    out.assert_passed(
        &["irqdma"],
        &[
            "pci: virtio-blk found",
            "dma: vm_allocate_contiguous is contiguous",
            "virtio: capacity",
            "dma: vm_pages_phys gives the page",
            "irq: interrupt 1 delivered",
            "dma: virtio-blk read of sector 5",
            "irq: interrupt 2 delivered",
            "dma: virtio-blk read of sector 6",
        ],
    );
}
