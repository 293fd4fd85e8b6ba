//! I/O port access for the threads that may run NetBSD's drivers (see the
//! `iospace-threads` guest program): without it a rump kernel's soft
//! interrupt notifying a legacy virtio queue killed rumpnet.

use testbed::guest::Guest;

#[test]
fn port_access_reaches_threads_started_before_and_after_the_kernel() {
    let o = Guest::new()
        .program("vm-tests", "iospace-threads")
        .run("iospace-threads", "iospace-threads\n");
    o.assert_printed(&["IOSPACE after ok", "IOSPACE bound ok"]);
}
