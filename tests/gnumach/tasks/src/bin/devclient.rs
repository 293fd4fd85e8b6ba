//! The client of `devserver`: fetches the server's master port from the
//! server task's bootstrap port, then checks the device interface on real
//! GNU Mach — out-of-line reads and writes from 1 byte to 4 MiB,
//! inband transfers, status, modes, close, forwarding to the kernel's
//! devices, MIG error replies to malformed requests, no-senders on a
//! dropped right — and ends by terminating itself while holding opens.
//!
//! Boot-script words: host port, device master, the server's task port.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::vec::Vec;

use gnumach_tasks::ctl::{EXPECT_DEATH, STATS};
use gnumach_tasks::{Args, MACH, check, end, entry, fail, must, sleep_ms};
use mach::kernel_rpc::KernelRpc;
use mach::msg::{Builder, Header, MsgBuf};
use mach::sys::gnumach::TASK_BOOTSTRAP_PORT;
use mach::{Ipc, KernReturn, PortName};
use machdev::Mode;
use mig_bindings::device::{self as dev, Client};
use mig_bindings::rpc;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 12) as u8)
        .collect()
}

/// Sends a hand-made request and returns the server's return code.
fn raw(msg: impl FnOnce(PortName) -> MsgBuf) -> Result<KernReturn, KernReturn> {
    let m = rpc::rpc(&MACH, msg)?;
    let id = m.header().map_err(|_| KernReturn::MIG_TYPE_ERROR)?.id - rpc::REPLY_OFFSET;
    Ok(rpc::decode_simple_reply(m.as_bytes(), id)
        .err()
        .unwrap_or(KernReturn::SUCCESS))
}

fn server_master(server_task: PortName) -> PortName {
    for _ in 0..500 {
        match MACH.task_get_special_port(server_task, TASK_BOOTSTRAP_PORT) {
            Ok(p) if p.is_valid() => return p,
            Ok(_) => sleep_ms(10),
            Err(e) => {
                fail(
                    "client: server master",
                    &format!("task_get_special_port: {e}"),
                );
                end(true)
            }
        }
    }
    fail("client: server master", "not published within 5 s");
    end(true)
}

entry!(main);

#[allow(clippy::too_many_lines)]
fn main(args: &Args) -> ! {
    let master = server_master(args.port(3));
    let c = Client::new(&MACH);
    let ram = must(
        "client: open ram0",
        c.open(master, Mode::READ | Mode::WRITE, "ram0"),
    );

    // Out-of-line both ways, 1 byte to 4 MiB.
    let mut bad = Vec::new();
    for (i, len) in [1usize, 511, 512, 4095, 4096, 4097, 65536, 1 << 20, 4 << 20]
        .into_iter()
        .enumerate()
    {
        let data = pattern(len, i as u8);
        let recnum = (i as u64) * 8;
        let recnum = if len >= 1 << 20 { 4096 } else { recnum };
        match c.write(ram, recnum, &data) {
            Ok(n) if n as usize == len => {}
            r => bad.push(format!("write {len}: {r:?}")),
        }
        match c.read_region(ram, recnum, len as i32) {
            Ok(back) if *back == data[..] => {}
            Ok(back) => bad.push(format!("read {len}: {} bytes, differs", back.len())),
            Err(e) => bad.push(format!("read {len}: {e}")),
        }
    }
    check(
        "client: device_write/device_read out of line, 1 B to 4 MiB",
        bad.is_empty(),
        || format!("{bad:?}"),
    );

    let text = b"inband, through the machdev dispatch core";
    let r = c
        .write_inband(ram, 100, text)
        .and_then(|_| c.read_inband(ram, 100, text.len() as i32));
    check(
        "client: write_inband/read_inband",
        r.as_deref() == Ok(&text[..]),
        || format!("{r:?}"),
    );

    let size = c.get_status(ram, 0, 2);
    check(
        "client: get_status DEV_GET_SIZE",
        size == Ok(alloc::vec![512, 8 << 20]),
        || format!("{size:?}"),
    );
    let st = c
        .set_status(ram, EXPECT_DEATH, &[7, 8, 9])
        .and_then(|()| c.get_status(ram, EXPECT_DEATH, 16));
    check(
        "client: set_status then get_status",
        st == Ok(alloc::vec![7, 8, 9]),
        || format!("{st:?}"),
    );

    let beyond = c.read(ram, (8 << 20) / 512, 512);
    check(
        "client: read beyond the end refused",
        beyond == Err(KernReturn::D_INVALID_RECNUM),
        || format!("{beyond:?}"),
    );

    // Modes: a write-only open cannot read.
    let wo = c.open(master, Mode::WRITE, "ram0");
    let r = wo.and_then(|p| c.read(p, 0, 16).map(drop));
    check(
        "client: read on a write-only open refused",
        r == Err(KernReturn::D_INVALID_OPERATION),
        || format!("{r:?}"),
    );

    // Forwarding: names the server does not claim reach the kernel.
    let con = c.open(master, Mode::WRITE, "console");
    let w = con.and_then(|p| {
        c.write_inband(
            p,
            0,
            b"GMT-INFO console reached through the server's master\n",
        )
    });
    check(
        "client: unclaimed name forwarded to the kernel (console)",
        w.is_ok(),
        || format!("{w:?}"),
    );
    let none = c.open(master, Mode::READ, "nosuchdevice");
    check(
        "client: unknown name answered D_NO_SUCH_DEVICE",
        none == Err(KernReturn::D_NO_SUCH_DEVICE),
        || format!("{none:?}"),
    );

    // Malformed requests get MIG's error replies; the server lives on.
    let unknown_id = raw(|r| Builder::new(Header::request(ram, r, 2899)).finish());
    check(
        "client: unknown id answered MIG_BAD_ID",
        unknown_id == Ok(KernReturn::MIG_BAD_ID),
        || format!("{unknown_id:?}"),
    );
    let wrong_type = raw(|r| {
        let mut b = Builder::new(Header::request(ram, r, dev::ID_READ));
        b.int32(0).int32(0).int32(512); // recnum must be a 64-bit integer
        b.finish()
    });
    check(
        "client: wrong item type answered MIG_BAD_ARGUMENTS",
        wrong_type == Ok(KernReturn::MIG_BAD_ARGUMENTS),
        || format!("{wrong_type:?}"),
    );
    let short = raw(|r| {
        let mut b = Builder::new(Header::request(ram, r, dev::ID_WRITE_INBAND));
        b.int32(0);
        b.finish()
    });
    check(
        "client: truncated request answered MIG_BAD_ARGUMENTS",
        short == Ok(KernReturn::MIG_BAD_ARGUMENTS),
        || format!("{short:?}"),
    );
    let on_master = c.read(master, 0, 1);
    check(
        "client: device_read on the master refused",
        on_master == Err(KernReturn::D_INVALID_OPERATION),
        || format!("{on_master:?}"),
    );
    let alive = c.read(ram, 0, 1).map(|v| v.len());
    check(
        "client: server still serves after bad requests",
        alive == Ok(1),
        || format!("{alive:?}"),
    );

    // Close: the port goes away.
    let extra = c.open(master, Mode::READ, "ram0").expect("open");
    let closed = c.close(extra);
    let after = c.read(extra, 0, 1);
    check(
        "client: close, then the port is dead",
        closed.is_ok() && after.is_err(),
        || format!("{closed:?} {after:?}"),
    );

    // No-senders: dropping the only send right closes the open.
    let ctl = c
        .open(master, Mode::READ | Mode::WRITE, "ctl")
        .expect("open ctl");
    let before = c.get_status(ctl, STATS, 2).expect("stats");
    let dropped = c.open(master, Mode::READ, "ram0").expect("open");
    let _ = MACH.port_deallocate(dropped);
    let mut now = before.clone();
    for _ in 0..200 {
        now = c.get_status(ctl, STATS, 2).expect("stats");
        if now[1] == before[1] + 1 && now[0] == before[0] + 1 {
            break;
        }
        sleep_ms(10);
    }
    check(
        "client: dropped send right closed by no-senders",
        now[1] == before[1] + 1,
        || format!("before {before:?} now {now:?}"),
    );

    // Die holding opens: the server must close them all.
    for _ in 0..3 {
        let _ = c.open(master, Mode::READ, "ram0");
    }
    let armed = c.set_status(ctl, EXPECT_DEATH, &[]);
    check(
        "client: terminating with 4 opens held",
        armed.is_ok(),
        || format!("{armed:?}"),
    );
    end(false)
}
