//! Guest program: the small-frame rate between two kernel interfaces (a
//! card, or rumpnet's TAP interface). Usage:
//! - `frame-rate send IFACE DST_MAC COUNT SIZE`: sends COUNT frames of SIZE
//!   bytes (the test ethertype) as fast as the interface takes them, and
//!   prints `SENT frames= secs=`;
//! - `frame-rate recv IFACE SECONDS`: counts test frames arriving on IFACE
//!   until one second passes without any (or SECONDS in all), and prints
//!   `RECV frames= secs=` (first to last frame).

#[cfg(target_os = "linux")]
mod rate {
    use std::io;
    use std::time::{Duration, Instant};

    use vm_tests::packet::{ETHERTYPE, PacketSocket, interface, parse_mac};

    fn number(s: &str) -> io::Result<u64> {
        s.parse().map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("{s:?}: not a number"))
        })
    }

    pub fn main() -> io::Result<()> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        match args
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice()
        {
            ["send", ifname, dst, count, size] => {
                let (mac, index) = interface(ifname)?;
                let sock = PacketSocket::open(index)?;
                let size = usize::try_from(number(size)?).unwrap_or(60).clamp(60, 1514);
                let mut f = Vec::with_capacity(size);
                f.extend_from_slice(&parse_mac(dst)?);
                f.extend_from_slice(&mac);
                f.extend_from_slice(&ETHERTYPE.to_be_bytes());
                f.resize(size, 0x5a);
                let count = number(count)?;
                let t0 = Instant::now();
                for seq in 0..count {
                    f[14..22].copy_from_slice(&seq.to_be_bytes());
                    // The queue may be full for a moment: try again.
                    while let Err(e) = sock.send(&f) {
                        if e.raw_os_error() != Some(libc::ENOBUFS) {
                            return Err(e);
                        }
                        std::thread::yield_now();
                    }
                }
                println!("SENT frames={count} secs={:.3}", t0.elapsed().as_secs_f64());
                Ok(())
            }
            ["recv", ifname, secs] => {
                let (_, index) = interface(ifname)?;
                let sock = PacketSocket::open(index)?;
                let limit = Duration::from_secs(number(secs)?);
                let start = Instant::now();
                let mut buf = vec![0u8; 2048];
                let (mut n, mut first, mut last) = (0u64, None, start);
                while start.elapsed() < limit {
                    match sock.recv(&mut buf) {
                        Ok(len) if len >= 14 && buf[12..14] == ETHERTYPE.to_be_bytes() => {
                            last = Instant::now();
                            first.get_or_insert(last);
                            n += 1;
                        }
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            if first.is_some() {
                                break;
                            }
                        }
                        Err(e) => return Err(e),
                    }
                }
                let secs = first.map_or(0.0, |f| (last - f).as_secs_f64());
                println!("RECV frames={n} secs={secs:.3}");
                Ok(())
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "usage: frame-rate send IFACE DST_MAC COUNT SIZE | recv IFACE SECONDS",
            )),
        }
    }
}

#[cfg(target_os = "linux")]
fn main() -> std::process::ExitCode {
    match rate::main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("frame-rate: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn main() {}
