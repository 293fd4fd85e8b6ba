//! The Linux guest itself: it boots, loads modules, runs a script and
//! reports the script's status.

use testbed::guest::Guest;

#[test]
fn a_script_runs_as_root_and_its_status_comes_back() {
    let o = Guest::new()
        .module("vfio-pci")
        .qemu(&[
            "-device",
            "virtio-blk-pci,drive=d0,addr=0x5",
            "-drive",
            "if=none,id=d0,format=raw,file=null-co://,size=1M",
        ])
        .run(
            "smoke",
            "id -u\nls /sys/bus/pci/devices\nls /dev/vfio\ngrep -c . /proc/modules\nexit 3\n",
        );
    assert_eq!(o.status, Some(3), "{}", o.log);
    assert_eq!(o.output.first().map(String::as_str), Some("0"), "{}", o.log);
    assert!(
        o.output.iter().any(|l| l.contains("0000:00:05.0")),
        "{}",
        o.log
    );
    assert!(o.output.iter().any(|l| l.contains("vfio")), "{}", o.log);
    eprintln!("{:#?}", o.output);
}
