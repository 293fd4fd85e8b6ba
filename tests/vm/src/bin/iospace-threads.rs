//! Guest program: I/O port access reaches every thread that may run a
//! driver. `hypercall::pci::rump::early_iospace_init` (what `rumpuser_init`
//! calls before the kernel starts its threads) must give it to threads
//! started after it, and `thread_iospace` (what binding a host thread to a
//! kernel LWP calls) to a thread started before. Each case reads port 0x80
//! (QEMU's POST port) in a child process; prints `IOSPACE <case> ok` or how
//! the child died (Linux keeps `iopl` per thread: a thread without it is
//! killed with `SIGSEGV`).

#[cfg(target_os = "linux")]
fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: a port read: no memory is touched; without I/O privilege the
    // kernel kills the process, which is what the parent looks for.
    unsafe { std::arch::asm!("in al, dx", out("al") v, in("dx") port) };
    v
}

#[cfg(target_os = "linux")]
fn child(case: &str) -> ! {
    use hypercall::pci::rump;
    // A function on the bus: early_iospace_init acts only then.
    rump::attach(&["0000:00:1f.0".parse().expect("an address")]).expect("attach");
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let before = std::thread::spawn(move || {
        wait.recv().ok();
        rump::thread_iospace();
        inb(0x80)
    });
    rump::early_iospace_init();
    if case == "after" {
        std::thread::spawn(|| inb(0x80)).join().ok();
    } else {
        go.send(()).ok();
        before.join().ok();
    }
    std::process::exit(0)
}

#[cfg(target_os = "linux")]
fn main() {
    for case in ["after", "bound"] {
        // SAFETY: the child runs `child` only, and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            child(case);
        }
        let mut status = 0;
        // SAFETY: waits for our own child.
        unsafe { libc::waitpid(pid, &raw mut status, 0) };
        if libc::WIFSIGNALED(status) {
            println!(
                "IOSPACE {case}: killed by signal {}",
                libc::WTERMSIG(status)
            );
        } else if libc::WEXITSTATUS(status) == 0 {
            println!("IOSPACE {case} ok");
        } else {
            println!("IOSPACE {case}: exit {}", libc::WEXITSTATUS(status));
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("iospace-threads: a Linux guest program");
    std::process::exit(2);
}
