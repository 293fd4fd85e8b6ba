//! The rumpsound translator in the guest, listened to: it drives a
//! virtio-sound function from user space and plays a WAV file through the
//! Mach device interface (`rumpsound --play`); QEMU's `wav` audio back end
//! records what the emulated card played, and the host checks the
//! recording: a 440 Hz tone on the left and 1 kHz on the right (Goertzel),
//! at their levels, every frame there and in order (the recording matches
//! the file sample for sample: no gap, no drop, the duration exact). On a
//! second function (QEMU's `none` back end) `sound-check` tries bad input,
//! a writer that goes away mid-stream, and a timed second of capture.

use testbed::guest::Guest;
use testbed::sound::{RATE, check_recording, frames_of, tone_wav, wav_audiodev};

const SCRIPT: &str = r"
sound-check 0000:00:0b.0 2>/tmp/check.log || { cat /tmp/check.log; exit 1; }
rumpsound --virtio 0000:00:0a.0 --play /root/tone.wav 2>/tmp/play.log || { cat /tmp/play.log; exit 1; }
grep -iE 'error|panic' /tmp/play.log /tmp/check.log
exit 0
";

#[test]
fn a_tone_played_through_rumpsound_is_what_the_card_recorded() {
    let dir = std::env::temp_dir().join(format!("rumpsound-vm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("out.wav");
    let audiodev = wav_audiodev("snd0", &out);
    let o = Guest::new()
        .module("vfio-pci")
        .program("rumpsound", "rumpsound")
        .program("vm-tests", "sound-check")
        .file("root/tone.wav", tone_wav())
        .qemu(&[
            "-audiodev",
            &audiodev,
            "-audiodev",
            "none,id=snd1",
            "-device",
            "virtio-sound-pci,audiodev=snd0,addr=0xa,disable-legacy=on,iommu_platform=on",
            "-device",
            "virtio-sound-pci,audiodev=snd1,addr=0xb,disable-legacy=on,iommu_platform=on",
        ])
        .run("rumpsound", SCRIPT);
    o.assert_success();
    for l in o.lines("SOUND ") {
        println!("{l}");
    }
    let field = |key: &str| -> u64 {
        o.lines("SOUND ")
            .iter()
            .flat_map(|l| l.split_whitespace())
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
            .unwrap_or_else(|| panic!("no {key}\n{}", o.log))
    };
    // Bad input was refused as it should be (sound-check exits 1 at
    // once otherwise); the stream after an abandoned one played whole.
    assert_eq!(field("replay_frames"), u64::from(RATE) / 5);
    assert!(field("close_mid_stream_ms") < 1000);
    // Capture: a second of frames, at the card's pace (TCG: generous).
    assert!(field("capture_frames") >= u64::from(RATE));
    let ms = field("capture_ms");
    assert!(
        (700..=3000).contains(&ms),
        "a second of capture took {ms} ms"
    );
    assert_eq!(
        field("capture_nonzero"),
        0,
        "QEMU's none back end is silent"
    );
    let played = o
        .output
        .iter()
        .find(|l| l.starts_with("played "))
        .unwrap_or_else(|| panic!("no play report\n{}", o.log));
    println!("{played}");
    check_recording(&frames_of(&std::fs::read(&out).expect("QEMU's recording")));
    let _ = std::fs::remove_dir_all(&dir);
}
