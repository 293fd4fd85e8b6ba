//! Mach semantics of the loopback kernel: what the device server and its
//! clients rely on.

#![cfg(feature = "loopback")]
#![allow(clippy::many_single_char_names)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use mach::KernReturn;
use mach::ipc::{Ipc, option};
use mach::loopback::{Kernel, Task};
use mach::msg::{self, Builder, Header, MsgBuf, Reader};
use mach::port::{PortName, Right, notify, type_name as tn};

fn send(t: &Task, mut m: MsgBuf) -> KernReturn {
    let len = m.len() as u32;
    // SAFETY: a valid buffer of `len` bytes.
    unsafe {
        t.mach_msg(
            m.as_mut_ptr(),
            option::SEND_MSG,
            len,
            0,
            PortName::NULL,
            0,
            PortName::NULL,
        )
    }
}

fn recv(t: &Task, name: PortName, timeout_ms: Option<u32>) -> Result<MsgBuf, KernReturn> {
    let mut buf = MsgBuf::zeroed(4096);
    let opt = option::RCV_MSG
        | if timeout_ms.is_some() {
            option::RCV_TIMEOUT
        } else {
            0
        };
    // SAFETY: a valid 4096-byte buffer.
    let r = unsafe {
        t.mach_msg(
            buf.as_mut_ptr(),
            opt,
            0,
            4096,
            name,
            timeout_ms.unwrap_or(0),
            PortName::NULL,
        )
    };
    if r == KernReturn::SUCCESS {
        Ok(buf)
    } else {
        Err(r)
    }
}

fn simple(dest: PortName, disp: u8, reply: PortName, reply_disp: u8, id: i32) -> Builder {
    Builder::new(Header {
        bits: msg::bits(disp, reply_disp),
        remote: dest,
        local: reply,
        id,
        ..Header::default()
    })
}

fn pair() -> (Arc<Kernel>, Task, Task) {
    let k = Kernel::new();
    let a = k.new_task();
    let b = k.new_task();
    (k, a, b)
}

#[test]
fn request_and_send_once_reply_round_trip() {
    let (_k, server, client) = pair();
    let port = server.port_allocate(Right::Receive).unwrap();
    let to_server = server.give_send_right(port, &client).unwrap();
    let reply = client.reply_port();

    let mut b = simple(to_server, tn::COPY_SEND, reply, tn::MAKE_SEND_ONCE, 1000);
    b.int32(42);
    assert_eq!(send(&client, b.finish()), KernReturn::SUCCESS);

    let m = recv(&server, port, Some(1000)).unwrap();
    let (h, mut r) = Reader::new(m.as_bytes()).unwrap();
    assert_eq!(h.id, 1000);
    assert_eq!(h.local, port);
    assert_eq!(h.remote_bits(), tn::MOVE_SEND_ONCE);
    assert_eq!(r.int32().unwrap(), 42);

    let mut b = simple(h.remote, tn::MOVE_SEND_ONCE, PortName::NULL, 0, 1100);
    b.int32(7);
    assert_eq!(send(&server, b.finish()), KernReturn::SUCCESS);
    // The send-once right was consumed.
    let mut b = simple(h.remote, tn::MOVE_SEND_ONCE, PortName::NULL, 0, 1100);
    b.int32(8);
    assert_eq!(send(&server, b.finish()), KernReturn::SEND_INVALID_DEST);

    let m = recv(&client, reply, Some(1000)).unwrap();
    let (h, mut r) = Reader::new(m.as_bytes()).unwrap();
    assert_eq!(h.id, 1100);
    assert_eq!(r.int32().unwrap(), 7);
}

#[test]
fn invalid_destinations_and_rights_are_refused() {
    let (_k, server, client) = pair();
    let port = server.port_allocate(Right::Receive).unwrap();
    let b = simple(PortName(0x4242), tn::COPY_SEND, PortName::NULL, 0, 1);
    assert_eq!(send(&client, b.finish()), KernReturn::SEND_INVALID_DEST);
    // A receive right's name in another space means nothing there.
    let b = simple(port, tn::COPY_SEND, PortName::NULL, 0, 1);
    assert_eq!(send(&client, b.finish()), KernReturn::SEND_INVALID_DEST);
    let to_server = server.give_send_right(port, &client).unwrap();
    let b = simple(
        to_server,
        tn::COPY_SEND,
        PortName(0x777),
        tn::MAKE_SEND_ONCE,
        1,
    );
    assert_eq!(send(&client, b.finish()), KernReturn::SEND_INVALID_REPLY);
    let mut b = simple(to_server, tn::COPY_SEND, PortName::NULL, 0, 1);
    b.port(PortName(0x999), tn::COPY_SEND);
    assert_eq!(send(&client, b.finish()), KernReturn::SEND_INVALID_RIGHT);
    let mut tiny = MsgBuf::zeroed(16);
    // SAFETY: valid 16-byte buffer.
    let r = unsafe {
        client.mach_msg(
            tiny.as_mut_ptr(),
            option::SEND_MSG,
            16,
            0,
            PortName::NULL,
            0,
            PortName::NULL,
        )
    };
    assert_eq!(r, KernReturn::SEND_MSG_TOO_SMALL);
    assert_eq!(
        recv(&client, PortName(0x1234), Some(0)).unwrap_err(),
        KernReturn::RCV_INVALID_NAME
    );
}

#[test]
fn receive_times_out_and_too_large_messages_are_reported() {
    let (_k, server, client) = pair();
    let port = server.port_allocate(Right::Receive).unwrap();
    let t0 = Instant::now();
    assert_eq!(
        recv(&server, port, Some(50)).unwrap_err(),
        KernReturn::RCV_TIMED_OUT
    );
    assert!(t0.elapsed() >= Duration::from_millis(45));

    let to_server = server.give_send_right(port, &client).unwrap();
    let mut b = simple(to_server, tn::COPY_SEND, PortName::NULL, 0, 5);
    b.bytes_inline(&[7u8; 200], true);
    assert_eq!(send(&client, b.finish()), KernReturn::SUCCESS);
    let mut small = MsgBuf::zeroed(64);
    // SAFETY: valid 64-byte buffer.
    let r = unsafe {
        server.mach_msg(
            small.as_mut_ptr(),
            option::RCV_MSG | option::RCV_LARGE | option::RCV_TIMEOUT,
            0,
            64,
            port,
            100,
            PortName::NULL,
        )
    };
    assert_eq!(r, KernReturn::RCV_TOO_LARGE);
    let needed = u32::from_ne_bytes(small.as_bytes()[4..8].try_into().unwrap());
    assert_eq!(needed as usize, msg::HEADER_SIZE + 8 + 200);
    // With RCV_LARGE the message stayed queued.
    let m = recv(&server, port, Some(100)).unwrap();
    assert_eq!(m.header().unwrap().id, 5);
}

#[test]
fn full_queue_blocks_or_times_out_the_sender() {
    let (_k, server, client) = pair();
    let port = server.port_allocate(Right::Receive).unwrap();
    let to_server = server.give_send_right(port, &client).unwrap();
    for i in 0..5 {
        assert_eq!(
            send(
                &client,
                simple(to_server, tn::COPY_SEND, PortName::NULL, 0, i).finish()
            ),
            KernReturn::SUCCESS
        );
    }
    let mut m = simple(to_server, tn::COPY_SEND, PortName::NULL, 0, 99).finish();
    let len = m.len() as u32;
    // SAFETY: valid buffer.
    let r = unsafe {
        client.mach_msg(
            m.as_mut_ptr(),
            option::SEND_MSG | option::SEND_TIMEOUT,
            len,
            0,
            PortName::NULL,
            20,
            PortName::NULL,
        )
    };
    assert_eq!(r, KernReturn::SEND_TIMED_OUT);
    for i in 0..5 {
        assert_eq!(
            recv(&server, port, Some(100)).unwrap().header().unwrap().id,
            i
        );
    }
}

#[test]
fn out_of_line_data_is_copied_and_deallocated_when_asked() {
    let (_k, server, client) = pair();
    let port = server.port_allocate(Right::Receive).unwrap();
    let to_server = server.give_send_right(port, &client).unwrap();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 13) as u8).collect();

    // From ordinary memory, no deallocation.
    let mut b = simple(to_server, tn::COPY_SEND, PortName::NULL, 0, 1);
    b.ool(data.as_ptr() as u64, data.len(), false);
    assert_eq!(send(&client, b.finish()), KernReturn::SUCCESS);
    let m = recv(&server, port, Some(100)).unwrap();
    let (h, mut r) = Reader::new(m.as_bytes()).unwrap();
    assert!(h.is_complex());
    let d = r.desc().unwrap();
    assert!(!d.inline && d.number as usize == data.len());
    let addr = r.address().unwrap();
    assert_ne!(addr, data.as_ptr() as u64, "received data must be a copy");
    // SAFETY: the kernel handed us this region.
    let got = unsafe { std::slice::from_raw_parts(addr as *const u8, data.len()) };
    assert_eq!(got, &data[..]);
    // SAFETY: our region, not used afterwards.
    let r = unsafe { server.vm_deallocate(addr, data.len()) };
    assert_eq!(r, KernReturn::SUCCESS);

    // From vm_allocate'd memory with the deallocate bit: it is freed.
    let region = client.vm_allocate(8192).unwrap();
    let mut b = simple(to_server, tn::COPY_SEND, PortName::NULL, 0, 2);
    b.ool(region, 8192, true);
    assert_eq!(send(&client, b.finish()), KernReturn::SUCCESS);
    // SAFETY: deliberately double-freeing through the API, which refuses.
    let r = unsafe { client.vm_deallocate(region, 8192) };
    assert_eq!(r, KernReturn::INVALID_ADDRESS);
    // Deallocate bit on memory vm_allocate did not hand out is refused.
    let mut b = simple(to_server, tn::COPY_SEND, PortName::NULL, 0, 3);
    b.ool(data.as_ptr() as u64, data.len(), true);
    assert_eq!(send(&client, b.finish()), KernReturn::SEND_INVALID_MEMORY);
}

#[test]
fn port_rights_travel_and_merge() {
    let (_k, server, client) = pair();
    let port = server.port_allocate(Right::Receive).unwrap();
    let to_server = server.give_send_right(port, &client).unwrap();
    let own = client.port_allocate(Right::Receive).unwrap();
    let mut b = simple(to_server, tn::COPY_SEND, PortName::NULL, 0, 1);
    b.port(own, tn::MAKE_SEND);
    assert_eq!(send(&client, b.finish()), KernReturn::SUCCESS);
    let m = recv(&server, port, Some(100)).unwrap();
    let (_, mut r) = Reader::new(m.as_bytes()).unwrap();
    let got = r.port(tn::MOVE_SEND).unwrap();
    assert!(got.is_valid());
    // The server can now send to the client's port.
    let b = simple(got, tn::MOVE_SEND, PortName::NULL, 0, 77);
    assert_eq!(send(&server, b.finish()), KernReturn::SUCCESS);
    assert_eq!(
        recv(&client, own, Some(100)).unwrap().header().unwrap().id,
        77
    );
    // Sending the same right twice merges under one name.
    for _ in 0..2 {
        let mut b = simple(to_server, tn::COPY_SEND, PortName::NULL, 0, 1);
        b.port(own, tn::MAKE_SEND);
        assert_eq!(send(&client, b.finish()), KernReturn::SUCCESS);
    }
    let n1 = Reader::new(recv(&server, port, Some(100)).unwrap().as_bytes())
        .unwrap()
        .1
        .port(tn::MOVE_SEND)
        .unwrap();
    let n2 = Reader::new(recv(&server, port, Some(100)).unwrap().as_bytes())
        .unwrap()
        .1
        .port(tn::MOVE_SEND)
        .unwrap();
    assert_eq!(n1, n2);
}

fn expect_notification(t: &Task, on: PortName, id: i32) -> MsgBuf {
    let m = recv(t, on, Some(1000)).unwrap_or_else(|e| panic!("no notification {id}: {e}"));
    assert_eq!(m.header().unwrap().id, id);
    m
}

#[test]
fn no_senders_fires_when_the_last_send_right_goes() {
    let (k, server, client) = pair();
    let port = server.port_allocate(Right::Receive).unwrap();
    let notify_port = server.port_allocate(Right::Receive).unwrap();
    let to_server = server.give_send_right(port, &client).unwrap();
    server
        .request_notification(port, notify::NO_SENDERS, 0, notify_port, tn::MAKE_SEND_ONCE)
        .unwrap();
    let other = k.new_task();
    let from_other = client.give_send_right(to_server, &other).unwrap();
    assert_eq!(client.port_deallocate(to_server), KernReturn::SUCCESS);
    assert_eq!(
        recv(&server, notify_port, Some(30)).unwrap_err(),
        KernReturn::RCV_TIMED_OUT
    );
    let _ = from_other;
    drop(other); // the task dies holding the last send right
    let m = expect_notification(&server, notify_port, notify::NO_SENDERS);
    let (_, mut r) = Reader::new(m.as_bytes()).unwrap();
    assert_eq!(
        r.int32().unwrap(),
        1,
        "make-send count: one MAKE_SEND, the copy made none"
    );
}

#[test]
fn dead_name_and_send_once_notifications_when_a_server_dies() {
    let (_k, server, client) = pair();
    let port = server.port_allocate(Right::Receive).unwrap();
    let to_server = server.give_send_right(port, &client).unwrap();
    let notify_port = client.port_allocate(Right::Receive).unwrap();
    client
        .request_notification(
            to_server,
            notify::DEAD_NAME,
            0,
            notify_port,
            tn::MAKE_SEND_ONCE,
        )
        .unwrap();
    // A request is pending with a send-once reply right when the server dies.
    let reply = client.reply_port();
    let b = simple(to_server, tn::COPY_SEND, reply, tn::MAKE_SEND_ONCE, 2800);
    assert_eq!(send(&client, b.finish()), KernReturn::SUCCESS);
    drop(server);
    let m = expect_notification(&client, notify_port, notify::DEAD_NAME);
    let (_, mut r) = Reader::new(m.as_bytes()).unwrap();
    let d = r.desc().unwrap();
    assert_eq!((d.name, d.size), (tn::PORT_NAME, 32));
    let name = u32::from_ne_bytes(r.data(4).unwrap().try_into().unwrap());
    assert_eq!(name, to_server.0);
    // The queued request was destroyed: its reply right came back as a
    // send-once notification (MIG stubs turn it into MIG_SERVER_DIED).
    expect_notification(&client, reply, notify::SEND_ONCE);
    // Sending to the dead name fails.
    let b = simple(to_server, tn::COPY_SEND, PortName::NULL, 0, 1);
    assert_eq!(send(&client, b.finish()), KernReturn::SEND_INVALID_DEST);
}

#[test]
fn port_deleted_when_a_watched_right_is_deallocated() {
    let (_k, server, client) = pair();
    let port = server.port_allocate(Right::Receive).unwrap();
    let to_server = server.give_send_right(port, &client).unwrap();
    let notify_port = client.port_allocate(Right::Receive).unwrap();
    client
        .request_notification(
            to_server,
            notify::DEAD_NAME,
            0,
            notify_port,
            tn::MAKE_SEND_ONCE,
        )
        .unwrap();
    assert_eq!(client.port_deallocate(to_server), KernReturn::SUCCESS);
    expect_notification(&client, notify_port, notify::PORT_DELETED);
}

#[test]
fn port_sets_receive_from_every_member() {
    let (_k, server, client) = pair();
    let set = server.port_allocate(Right::PortSet).unwrap();
    let a = server.port_allocate(Right::Receive).unwrap();
    let b = server.port_allocate(Right::Receive).unwrap();
    server.port_move_member(a, set).result().unwrap();
    server.port_move_member(b, set).result().unwrap();
    let sa = server.give_send_right(a, &client).unwrap();
    let sb = server.give_send_right(b, &client).unwrap();
    assert_eq!(
        send(
            &client,
            simple(sb, tn::COPY_SEND, PortName::NULL, 0, 2).finish()
        ),
        KernReturn::SUCCESS
    );
    assert_eq!(
        send(
            &client,
            simple(sa, tn::COPY_SEND, PortName::NULL, 0, 1).finish()
        ),
        KernReturn::SUCCESS
    );
    let mut got = Vec::new();
    for _ in 0..2 {
        let h = recv(&server, set, Some(100)).unwrap().header().unwrap();
        got.push((h.local, h.id));
    }
    got.sort();
    assert_eq!(got, [(a, 1), (b, 2)]);
    assert_eq!(
        recv(&server, a, Some(0)).unwrap_err(),
        KernReturn::RCV_IN_SET
    );
}

#[test]
fn many_threads_receive_on_one_port() {
    let (_k, server, client) = pair();
    let server = Arc::new(server);
    let port = server.port_allocate(Right::Receive).unwrap();
    let to_server = server.give_send_right(port, &client).unwrap();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let s = Arc::clone(&server);
            std::thread::spawn(move || {
                let mut n = 0;
                while recv(&s, port, Some(200)).is_ok() {
                    n += 1;
                }
                n
            })
        })
        .collect();
    for i in 0..200 {
        assert_eq!(
            send(
                &client,
                simple(to_server, tn::COPY_SEND, PortName::NULL, 0, i).finish()
            ),
            KernReturn::SUCCESS
        );
    }
    let total: i32 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert_eq!(total, 200);
}

#[test]
fn rights_release_themselves() {
    use mach::rights::{ReceiveRight, SendRight};

    let (_k, server, client) = pair();
    let server = Arc::new(server);
    let client = Arc::new(client);
    let port = ReceiveRight::new(&server).unwrap();
    let notify_port = server.port_allocate(Right::Receive).unwrap();
    server
        .request_notification(
            port.name(),
            notify::NO_SENDERS,
            1,
            notify_port,
            tn::MAKE_SEND_ONCE,
        )
        .unwrap();
    let right = SendRight::from_name(
        &client,
        server.give_send_right(port.name(), &client).unwrap(),
    );
    assert_eq!(
        recv(&server, notify_port, Some(20)).unwrap_err(),
        KernReturn::RCV_TIMED_OUT
    );
    drop(right);
    expect_notification(&server, notify_port, notify::NO_SENDERS);

    // Dropping the receive right kills the port: a client's right goes dead.
    let again = client.give_send_right(PortName::NULL, &server);
    assert!(again.is_err());
    let to_port = server.give_send_right(port.name(), &client).unwrap();
    drop(port);
    let b = simple(to_port, tn::COPY_SEND, PortName::NULL, 0, 1);
    assert_eq!(send(&client, b.finish()), KernReturn::SEND_INVALID_DEST);
}

#[test]
fn a_right_moved_twice_in_one_message_is_refused_and_nothing_is_lost() {
    // Found by the fuzzer: each move checked alone passed, the second
    // failed midway.
    let (k, server, client) = pair();
    let port = server.port_allocate(Right::Receive).unwrap();
    let to_server = server.give_send_right(port, &client).unwrap();
    let mut b = simple(to_server, tn::COPY_SEND, PortName::NULL, 0, 1);
    b.port(to_server, tn::MOVE_SEND);
    b.port(to_server, tn::MOVE_SEND);
    assert_eq!(send(&client, b.finish()), KernReturn::SEND_INVALID_RIGHT);
    // Destination moved, then copied: the copy finds nothing left.
    let mut b = simple(to_server, tn::MOVE_SEND, PortName::NULL, 0, 1);
    b.port(to_server, tn::COPY_SEND);
    assert_eq!(send(&client, b.finish()), KernReturn::SEND_INVALID_RIGHT);
    // The client still holds its right: a plain send works.
    assert_eq!(
        send(
            &client,
            simple(to_server, tn::COPY_SEND, PortName::NULL, 0, 7).finish()
        ),
        KernReturn::SUCCESS
    );
    assert_eq!(
        recv(&server, port, Some(100)).unwrap().header().unwrap().id,
        7
    );
    // A right moved once and copied before that is fine.
    let mut b = simple(to_server, tn::COPY_SEND, PortName::NULL, 0, 8);
    b.port(to_server, tn::COPY_SEND);
    b.port(to_server, tn::MOVE_SEND);
    assert_eq!(send(&client, b.finish()), KernReturn::SUCCESS);
    assert_eq!(k.stats().queued, 1);
}

#[test]
fn vm_allocate_is_zeroed_even_when_a_region_is_reused() {
    let (_k, t, _) = pair();
    let fill = |addr: u64, n: usize| {
        // SAFETY: a region of at least `n` bytes this task owns.
        unsafe { std::ptr::write_bytes(addr as *mut u8, 0xee, n) };
    };
    let zeros = |addr: u64, from: usize, to: usize| {
        // SAFETY: as above.
        let s = unsafe { std::slice::from_raw_parts(addr as *const u8, to) };
        s[from..].iter().all(|&b| b == 0)
    };
    for _ in 0..2 {
        let a = t.vm_allocate(8192).unwrap();
        assert!(zeros(a, 0, 8192), "vm_allocate must zero-fill");
        fill(a, 8192);
        // SAFETY: ours, not used afterwards.
        assert_eq!(unsafe { t.vm_deallocate(a, 8192) }, KernReturn::SUCCESS);
    }
    // For overwrite: the bytes asked for may be stale, never the rest of
    // the last page.
    let a = t.vm_allocate_for_overwrite(5000).unwrap();
    assert!(zeros(a, 5000, 8192), "the tail past the size must be zero");
    fill(a, 8192);
    // SAFETY: ours, not used afterwards.
    assert_eq!(unsafe { t.vm_deallocate(a, 8192) }, KernReturn::SUCCESS);
    let a = t.vm_allocate(8192).unwrap();
    assert!(zeros(a, 0, 8192), "vm_allocate after an overwrite region");
}

/// One RPC: `m` sent and the reply received on `reply` in one call, with
/// `timeout_ms` on both or none.
fn rpc(t: &Task, mut m: MsgBuf, reply: PortName, timeout_ms: Option<u32>) -> MsgBuf {
    let len = m.len() as u32;
    m.resize(4096);
    let timed = if timeout_ms.is_some() {
        option::SEND_TIMEOUT | option::RCV_TIMEOUT
    } else {
        0
    };
    // SAFETY: a valid 4096-byte buffer holding a `len`-byte message.
    let r = unsafe {
        t.mach_msg(
            m.as_mut_ptr(),
            option::SEND_MSG | option::RCV_MSG | timed,
            len,
            4096,
            reply,
            timeout_ms.unwrap_or(0),
            PortName::NULL,
        )
    };
    assert_eq!(r, KernReturn::SUCCESS);
    m
}

/// Answers a request with its number plus one, from `server`.
fn answer(server: &Task, request: &[u8]) -> u32 {
    let (h, mut r) = Reader::new(request).unwrap();
    let n = r.int32().unwrap();
    let mut b = simple(h.remote, tn::MOVE_SEND_ONCE, PortName::NULL, 0, h.id + 100);
    b.int32(n + 1);
    assert_eq!(send(server, b.finish()), KernReturn::SUCCESS);
    h.seqno
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let t = Instant::now();
    while !ok() {
        assert!(t.elapsed() < Duration::from_secs(10), "{what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn an_rpc_is_handed_off_only_to_a_waiting_receiver_and_without_timeouts() {
    use std::sync::Mutex;
    use std::thread::ThreadId;

    let (k, server, client) = pair();
    let server = Arc::new(server);
    let set = server.port_allocate(Right::PortSet).unwrap();
    let port = server.port_allocate(Right::Receive).unwrap();
    assert_eq!(server.port_move_member(port, set), KernReturn::SUCCESS);
    let to_server = server.give_send_right(port, &client).unwrap();
    let reply = client.reply_port();
    // Only receive rights and sets of the task's own take a handler.
    let nothing: mach::loopback::Handler = Arc::new(|_: &[u8]| {});
    assert_eq!(
        server.set_handoff(port, Arc::clone(&nothing)),
        Err(KernReturn::INVALID_NAME),
        "a port in a set is received through the set"
    );
    assert_eq!(
        client.set_handoff(to_server, nothing),
        Err(KernReturn::INVALID_NAME)
    );
    let ran: Arc<Mutex<Vec<(ThreadId, u32)>>> = Arc::default();
    let (weak, log) = (Arc::downgrade(&server), Arc::clone(&ran));
    server
        .set_handoff(
            set,
            Arc::new(move |m: &[u8]| {
                let server = weak.upgrade().expect("server task");
                let (h, mut r) = Reader::new(m).unwrap();
                assert_eq!((h.local, h.remote_bits()), (port, tn::MOVE_SEND_ONCE));
                assert!(r.int32().unwrap() >= 0, "a server bug");
                let seqno = answer(&server, m);
                log.lock()
                    .unwrap()
                    .push((std::thread::current().id(), seqno));
            }),
        )
        .unwrap();
    let request = |n: i32| {
        let mut b = simple(to_server, tn::COPY_SEND, reply, tn::MAKE_SEND_ONCE, 1000);
        b.int32(n);
        b.finish()
    };
    let reply_to = |m: &MsgBuf| {
        let (h, mut r) = Reader::new(m.as_bytes()).unwrap();
        assert_eq!(h.id, 1100);
        r.int32().unwrap()
    };

    // No thread receiving: the RPC waits in the queue for one.
    std::thread::scope(|s| {
        let rpc = s.spawn(|| reply_to(&rpc(&client, request(1), reply, None)));
        wait_until("the request is queued", || k.stats().queued == 1);
        let m = recv(&server, set, Some(10_000)).unwrap();
        assert_eq!(answer(&server, m.as_bytes()), 0);
        assert_eq!(rpc.join().unwrap(), 2);
    });
    assert_eq!(k.stats().handoffs, 0);

    // A thread asleep receiving: the RPC runs the handler on the caller.
    let receiver = std::thread::spawn({
        let server = Arc::clone(&server);
        move || {
            let m = recv(&server, set, Some(60_000)).unwrap();
            answer(&server, m.as_bytes())
        }
    });
    wait_until("the receiver sleeps", || k.stats().waiting == 1);
    assert_eq!(reply_to(&rpc(&client, request(5), reply, None)), 6);
    let me = std::thread::current().id();
    assert_eq!(*ran.lock().unwrap(), [(me, 1)]);
    assert_eq!((k.stats().handoffs, k.stats().waiting), (1, 1));

    // A panicking handler unwinds into its caller, and the receiver is
    // lent again afterwards.
    let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rpc(&client, request(-1), reply, None)
    }));
    assert!(crashed.is_err());
    assert_eq!((k.stats().handoffs, k.stats().waiting), (2, 1));

    // A timed RPC waits for the receiving thread instead.
    assert_eq!(reply_to(&rpc(&client, request(7), reply, Some(10_000))), 8);
    assert_eq!(receiver.join().unwrap(), 3);
    assert_eq!(ran.lock().unwrap().len(), 1);
    assert_eq!(k.stats().handoffs, 2);

    // Plain sends are never handed off either.
    let receiver = std::thread::spawn({
        let server = Arc::clone(&server);
        move || recv(&server, set, Some(60_000)).map(|m| Header::read(m.as_bytes()).unwrap().id)
    });
    wait_until("the receiver sleeps", || k.stats().waiting == 1);
    let b = simple(to_server, tn::COPY_SEND, PortName::NULL, 0, 77);
    assert_eq!(send(&client, b.finish()), KernReturn::SUCCESS);
    assert_eq!(receiver.join().unwrap(), Ok(77));
    assert_eq!(k.stats().handoffs, 2);
}
