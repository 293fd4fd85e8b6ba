//! The NetBSD back end against the rump kernel on the host (with
//! `RUMP_PREFIX`; the VM test `rumpnet_netbsd` drives real NICs): names the
//! kernel did not attach, and interfaces that are not Ethernet, are clear
//! errors. Without a kernel the test says it was skipped.

#[test]
fn interfaces_the_kernel_lacks_or_cannot_serve_are_clear_errors() {
    #[cfg(not(rump_kernel))]
    println!("skipped: RUMP_PREFIX not set");
    #[cfg(rump_kernel)]
    {
        use rumpnet::netbsd::NetbsdNic;
        let kernel = rump::Rump::init().expect("the kernel boots");
        let e = NetbsdNic::open(kernel, "wm0").unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        assert_eq!(
            e.to_string(),
            "no interface wm0 in the NetBSD kernel (it attached: lo0)"
        );
        let e = NetbsdNic::open(kernel, "lo0").unwrap_err();
        assert!(e.to_string().contains("lo0 has no Ethernet address"), "{e}");
        let e = NetbsdNic::open(kernel, "a-name-too-long-for-ifnamsiz").unwrap_err();
        assert!(e.to_string().contains("no interface"), "{e}");
    }
}
