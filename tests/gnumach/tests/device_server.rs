//! machdev's dispatch core as a device server task on real GNU Mach, and a
//! client task: out-of-line data both ways, inband, status, modes, close,
//! forwarding to the kernel, MIG error replies, no-senders on a dropped
//! right and on the client's death.

use gnumach_tests::Boot;

#[test]
fn device_server_and_client_on_gnumach() {
    let out = Boot::new()
        .task(
            "devserver",
            "'${host-port}' '${device-port}' '$(server-task=task-create)' '$(task-resume)'",
        )
        .task(
            "devclient",
            "'${host-port}' '${device-port}' '${server-task}' '$(task-create)' '$(task-resume)'",
        )
        .run("device-server");
    out.assert_passed(
        &["devclient", "devserver"],
        &[
            "server: master port published",
            "client: device_write/device_read out of line",
            "client: write_inband/read_inband",
            "client: get_status DEV_GET_SIZE",
            "client: set_status then get_status",
            "client: read beyond the end refused",
            "client: read on a write-only open refused",
            "client: unclaimed name forwarded",
            "client: unknown name answered",
            "client: unknown id answered MIG_BAD_ID",
            "client: wrong item type",
            "client: truncated request",
            "client: device_read on the master refused",
            "client: server still serves",
            "client: close, then the port is dead",
            "client: dropped send right closed by no-senders",
            "client: terminating with 4 opens held",
            "server: dead client's opens all closed by no-senders",
            "server: survived every request",
        ],
    );
}
