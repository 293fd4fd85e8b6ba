//! Guest program: rumpnet's native virtio-net driver against the guest
//! kernel's, on two NICs joined only to each other by a QEMU hub. Usage:
//! `virtio-net-check DDDD:BB:DD.F DDDD:BB:DD.F` — the function `VirtioNic`
//! drives (behind the IOMMU), then the one the kernel's `virtio_net`
//! drives (its interface must be up). Frames carry a sequence number and
//! a pattern derived from it, sizes 60..=1514; each side checks every
//! byte. Prints `NIC`, `TO-KERNEL`, `FROM-KERNEL`, `OVERSIZE` and `STATS`
//! lines; exits non-zero on any failure.

#[cfg(target_os = "linux")]
mod check {
    use std::io;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use rumpnet::nic::Nic;
    use rumpnet::virtio::VirtioNic;
    use vm_tests::packet::{self, ETHERTYPE, PacketSocket, interface_of};

    /// Frames per direction.
    const FRAMES: usize = 2000;
    /// Frames sent but not yet received that a sender allows.
    const WINDOW: usize = 128;
    /// How long a side waits without progress before counting the rest
    /// as lost.
    const STALL: Duration = Duration::from_secs(3);

    /// The length of frame `seq`: 60 and 1514 first, then spread over
    /// 60..=1514.
    fn size(seq: usize) -> usize {
        match seq {
            0 => 60,
            1 => 1514,
            _ => 60 + (seq * 7919) % (1514 - 60 + 1),
        }
    }

    /// Frame `seq` of direction `dir` from `src` to `dst`.
    fn frame(dir: u8, seq: usize, dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
        let mut f = Vec::with_capacity(size(seq));
        f.extend_from_slice(&dst);
        f.extend_from_slice(&src);
        f.extend_from_slice(&ETHERTYPE.to_be_bytes());
        f.push(dir);
        f.extend_from_slice(&(seq as u32).to_be_bytes());
        while f.len() < size(seq) {
            let i = f.len();
            f.push((seq.wrapping_mul(31) ^ i.wrapping_mul(13) ^ usize::from(dir)) as u8);
        }
        f
    }

    /// What one receiving side saw.
    #[derive(Default)]
    struct Seen {
        got: Vec<bool>,
        received: usize,
        corrupt: usize,
        duplicate: usize,
    }

    impl Seen {
        fn new() -> Self {
            Self {
                got: vec![false; FRAMES],
                ..Self::default()
            }
        }

        /// Checks a received frame of direction `dir`; ignores other
        /// traffic.
        fn check(&mut self, dir: u8, f: &[u8], dst: [u8; 6], src: [u8; 6]) -> bool {
            if f.len() < 19 || f[12..14] != ETHERTYPE.to_be_bytes() || f[14] != dir {
                return false;
            }
            let seq = u32::from_be_bytes([f[15], f[16], f[17], f[18]]) as usize;
            if seq >= FRAMES || f != frame(dir, seq, dst, src).as_slice() {
                self.corrupt += 1;
            } else if std::mem::replace(&mut self.got[seq], true) {
                self.duplicate += 1;
            } else {
                self.received += 1;
            }
            true
        }

        fn report(&self, what: &str, elapsed: Duration) {
            let bytes: usize = (0..FRAMES).filter(|&s| self.got[s]).map(size).sum();
            let secs = elapsed.as_secs_f64();
            println!(
                "{what} sent={FRAMES} received={} lost={} corrupt={} duplicate={} \
                 frames_per_s={:.0} mbit_per_s={:.1}",
                self.received,
                FRAMES - self.received,
                self.corrupt,
                self.duplicate,
                f64::from(self.received as u32) / secs,
                f64::from(bytes as u32) * 8.0 / secs / 1e6,
            );
        }

        fn ok(&self) -> bool {
            self.received == FRAMES && self.corrupt == 0 && self.duplicate == 0
        }
    }

    /// Waits until fewer than `WINDOW` of `sent` frames are unreceived, or
    /// nothing arrived for `STALL`.
    fn wait_window(received: &AtomicUsize, sent: usize, until: usize) {
        let mut last = received.load(Ordering::Acquire);
        let mut since = Instant::now();
        loop {
            let now = received.load(Ordering::Acquire);
            if sent - now.min(sent) <= until {
                return;
            }
            if now != last {
                last = now;
                since = Instant::now();
            } else if since.elapsed() > STALL {
                return;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    pub fn main() -> io::Result<bool> {
        let mut args = std::env::args().skip(1);
        let (Some(ours), Some(kernel)) = (args.next(), args.next()) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "usage: virtio-net-check DDDD:BB:DD.F DDDD:BB:DD.F",
            ));
        };
        let address = ours
            .parse()
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let nic = VirtioNic::open(address)?;
        let ifname = interface_of(&kernel)?;
        let (kmac, index) = packet::interface(&ifname)?;
        let vmac = nic.mac();
        println!(
            "NIC {} mac={} mtu={} link={} kernel={ifname}",
            nic.name(),
            vmac.map(|b| format!("{b:02x}")).join(":"),
            nic.mtu(),
            if nic.link_up() { "up" } else { "down" },
        );
        let sock = Arc::new(PacketSocket::open(index)?);

        // The kernel's side of the hub back to us: checked as they come.
        let from_kernel = Arc::new(Mutex::new(Seen::new()));
        let from_kernel_n = Arc::new(AtomicUsize::new(0));
        {
            let seen = Arc::clone(&from_kernel);
            let n = Arc::clone(&from_kernel_n);
            nic.start(Arc::new(move |f: &[u8]| {
                let mut s = seen.lock().expect("not poisoned");
                if s.check(2, f, vmac, kmac) {
                    n.store(s.received + s.corrupt + s.duplicate, Ordering::Release);
                }
            }))?;
        }

        // VirtioNic → kernel.
        let to_kernel_n = Arc::new(AtomicUsize::new(0));
        let reader = {
            let sock = Arc::clone(&sock);
            let n = Arc::clone(&to_kernel_n);
            std::thread::spawn(move || {
                let mut seen = Seen::new();
                let mut buf = vec![0u8; 2048];
                let mut idle = Instant::now();
                while seen.received < FRAMES && idle.elapsed() < STALL {
                    match sock.recv(&mut buf) {
                        Ok(len) => {
                            if seen.check(1, &buf[..len], kmac, vmac) {
                                idle = Instant::now();
                                n.store(
                                    seen.received + seen.corrupt + seen.duplicate,
                                    Ordering::Release,
                                );
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => panic!("receiving on the kernel's NIC: {e}"),
                    }
                }
                seen
            })
        };
        let t = Instant::now();
        for seq in 0..FRAMES {
            wait_window(&to_kernel_n, seq, WINDOW);
            nic.send(&frame(1, seq, kmac, vmac))?;
        }
        let to_kernel = reader.join().expect("the reader");
        to_kernel.report("TO-KERNEL", t.elapsed());

        // Kernel → VirtioNic.
        let t = Instant::now();
        for seq in 0..FRAMES {
            wait_window(&from_kernel_n, seq, WINDOW);
            sock.send(&frame(2, seq, vmac, kmac))?;
        }
        wait_window(&from_kernel_n, FRAMES, 0);
        let elapsed = t.elapsed();
        let from_kernel = from_kernel.lock().expect("not poisoned");
        from_kernel.report("FROM-KERNEL", elapsed);

        let mut ok = to_kernel.ok() && from_kernel.ok();
        match nic.send(&vec![0u8; 14 + nic.mtu() + 1]) {
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => println!("OVERSIZE InvalidInput"),
            other => {
                println!("OVERSIZE {other:?}");
                ok = false;
            }
        }
        let s = nic.stats();
        println!(
            "STATS rx_frames={} tx_frames={} rx_errors={}",
            s.rx_frames, s.tx_frames, s.rx_errors
        );
        Ok(ok)
    }
}

#[cfg(target_os = "linux")]
fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match check::main() {
        Ok(true) => println!("NET ok"),
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("virtio-net-check: {e}");
            std::process::exit(2);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("virtio-net-check runs in the Linux guest of the VM test bed");
    std::process::exit(1);
}
