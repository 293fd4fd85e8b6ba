//! The bootstrap-task runtime on real GNU Mach: argv with port names from
//! the boot script, the heap over `vm_allocate`, console output through
//! `device_open`/`device_write_inband`, `host_reboot` at the end.

use gnumach_tests::Boot;

#[test]
fn runtime_boots_and_reports() {
    let out = Boot::new()
        .task(
            "hello",
            "'${host-port}' '${device-port}' '$(task-create)' '$(task-resume)'",
        )
        .run("runtime");
    out.assert_passed(&["hello"], &["runtime: argv", "runtime: heap"]);
}
