//! The cost of GNU Mach's packet filters in rumpnet's delivery path:
//! frames per second through `FilterSet::deliver` with 1, 8 and 64 filters
//! installed (BPF and NETF), on the loopback kernel, with a client thread
//! receiving every message it can. Two loads: only the last filter takes
//! the frame (the others look and refuse: the cost of looking), and every
//! filter takes it (one message per filter; copies a full queue refuses
//! are counted as dropped). Ratios are to 1 filter in the same run.

#![allow(clippy::cast_precision_loss)] // rates from counts

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mach::ipc::{Ipc, option};
use mach::loopback::Kernel;
use mach::msg::MsgBuf;
use mach::port::Right;
use mach::{KernReturn, PortName};
use machdev::net::{Direction, FilterSet};
use netfilter::bpf::{self, Insn};
use netfilter::{NETF_IN, netf};

/// BPF: this ethertype, whole frames.
fn bpf_type(t: u16) -> Vec<u16> {
    bpf::program(
        NETF_IN,
        &[
            Insn::new(bpf::LD | bpf::H | bpf::ABS, 0, 0, 12),
            Insn::new(bpf::JMP | bpf::JEQ | bpf::K, 0, 1, u32::from(t)),
            Insn::new(bpf::RET | bpf::K, 0, 0, 1514),
            Insn::new(bpf::RET | bpf::K, 0, 0, 0),
        ],
    )
}

/// NETF: this ethertype (header word 6, as read in host order).
fn netf_type(t: u16) -> Vec<u16> {
    vec![
        NETF_IN,
        netf::PUSHHDR + 6,
        netf::PUSHLIT | netf::EQ,
        u16::from_ne_bytes(t.to_be_bytes()),
    ]
}

/// Frames per second, and the share of the messages sent that were
/// queued (not dropped at a full queue).
fn run(n: usize, all_take: bool, program: fn(u16) -> Vec<u16>) -> (f64, f64) {
    let kernel = Kernel::new();
    let server_task = Arc::new(kernel.new_task());
    let server: Arc<dyn Ipc> = server_task.clone();
    let client = Arc::new(kernel.new_task());
    let set_name = client.port_allocate(Right::PortSet).unwrap();
    let filters = FilterSet::new();
    for i in 0..n {
        let port = client.port_allocate(Right::Receive).unwrap();
        client.port_move_member(port, set_name).result().unwrap();
        let right = client.give_send_right(port, &server_task).unwrap();
        let t = if all_take || i == n - 1 {
            0x0800
        } else {
            0x9000 + i as u16
        };
        filters.set_filter(&server, right, 0, &program(t)).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let drain = {
        let (client, stop) = (Arc::clone(&client), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut buf = MsgBuf::zeroed(8192);
            while !stop.load(Ordering::Relaxed) {
                // SAFETY: a buffer of the size given.
                let r = unsafe {
                    client.mach_msg(
                        buf.as_mut_ptr(),
                        option::RCV_MSG | option::RCV_TIMEOUT,
                        0,
                        8192,
                        set_name,
                        10,
                        PortName::NULL,
                    )
                };
                assert!(matches!(r, KernReturn::SUCCESS | KernReturn::RCV_TIMED_OUT));
            }
        })
    };
    let mut frame = vec![0u8; 1514];
    frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let mut buf = mig_bindings::net::net_rcv_buffer();
    let start = Instant::now();
    let mut frames = 0u64;
    while start.elapsed() < Duration::from_millis(700) {
        for _ in 0..64 {
            filters.deliver(&frame, Direction::In, &mut buf);
        }
        frames += 64;
    }
    let rate = frames as f64 / start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    drain.join().unwrap();
    let s = filters.stats();
    assert!(s.delivered > 0, "{s:?}");
    let queued = s.delivered as f64 / (s.delivered + s.dropped_full) as f64;
    (rate, queued)
}

fn main() {
    println!(
        "frames/s through machdev::net::FilterSet::deliver (1514-byte frames, loopback kernel, \
         one receiving thread)"
    );
    for (name, program) in [
        ("BPF", bpf_type as fn(u16) -> Vec<u16>),
        ("NETF", netf_type),
    ] {
        for all_take in [false, true] {
            let load = if all_take {
                "every filter takes it"
            } else {
                "the last filter takes it"
            };
            let (base, q) = run(1, all_take, program);
            println!(
                "{name:4} {load:26}  1 filter:  {base:>9.0}/s  queued {:5.1}%",
                100.0 * q
            );
            for n in [8, 64] {
                let (r, q) = run(n, all_take, program);
                println!(
                    "{name:4} {load:26} {n:2} filters: {r:>9.0}/s  queued {:5.1}%  ratio to 1 \
                     filter {:.3}",
                    100.0 * q,
                    r / base
                );
            }
        }
    }
}
