//! rumpsound over NetBSD's own sound drivers in the guest (with
//! `RUMP_PREFIX`): the translator gives a PCI function to the rump kernel
//! and plays the test tone through the Mach device interface and audio(4)
//! (`rumpsound --netbsd-pci PCI --netbsd audio0 --play`).
//!
//! - auich with ac97 on QEMU's AC'97 controller: the driver attaches
//!   (its link-rate calibration reads captured frames, so the card's audio
//!   back end is QEMU's `none`, which captures silence; the `wav` one
//!   captures nothing and the 2016 driver then spins for ever), and the
//!   whole file plays at the card's pace: every frame counted, in the
//!   file's duration.
//! - hdaudio with hdafg on QEMU's Intel HD Audio controller, recorded by
//!   QEMU's `wav` back end and checked frame for frame as for the native
//!   driver (`rumpsound.rs`). The 2016 kernel's hdaudio never sets
//!   `RINTCNT`, and QEMU's controller then answers no codec command (RIRB
//!   timeout): with that kernel the card does not attach and this part
//!   says it was skipped, giving the reason.
//!
//! Without a rump kernel the test says it was skipped.

use testbed::guest::Guest;
use testbed::sound::{RATE, SECONDS, check_recording, frames_of, tone_wav, wav_audiodev};

const SCRIPT: &str = r"
echo PLAY auich
RUMP_VERBOSE=1 rumpsound --netbsd-pci 0000:00:0d.0 --netbsd audio0 --play /root/tone.wav \
    >/tmp/auich.out 2>/tmp/auich.log || { cat /tmp/auich.log; exit 1; }
cat /tmp/auich.out
grep -E '^(auich|audio)0' /tmp/auich.log
# A PC's firmware leaves the HD Audio link out of reset; SeaBIOS does not,
# and NetBSD 7's hdaudio enters reset (where QEMU's codecs announce
# themselves) only from out of it: GCTL.CRST (BAR 0 + 8) set, as firmware
# would.
bar=$(head -1 /sys/bus/pci/devices/0000:00:0c.0/resource | cut -d' ' -f1)
devmem $((bar + 8)) 32 1 || exit 1
echo PLAY hdaudio
if RUMP_VERBOSE=1 rumpsound --netbsd-pci 0000:00:0c.0 --netbsd audio0 --play /root/tone.wav \
    >/tmp/hda.out 2>/tmp/hda.log; then
    cat /tmp/hda.out
else
    grep -q 'RIRB timeout' /tmp/hda.log && echo 'HDA RIRB timeout' || { cat /tmp/hda.log; exit 1; }
fi
grep -E '^(hdaudio|hdafg|audio)0' /tmp/hda.log
exit 0
";

#[test]
fn netbsd_auich_and_hdaudio_play_the_tone_through_rumpsound() {
    if std::env::var_os("RUMP_PREFIX").is_none() {
        println!("skipped: RUMP_PREFIX not set");
        return;
    }
    let dir = std::env::temp_dir().join(format!("rumpsound-netbsd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let hda = dir.join("hda.wav");
    let wav = wav_audiodev("hda", &hda);
    let o = Guest::new()
        .module("vfio-pci")
        .program_with_rump_kernel("rumpsound", "rumpsound")
        .file("root/tone.wav", tone_wav())
        .qemu(&[
            "-audiodev",
            "none,id=ac97",
            "-audiodev",
            &wav,
            "-device",
            "AC97,addr=0xd,audiodev=ac97",
            "-device",
            "intel-hda,addr=0xc",
            "-device",
            "hda-output,audiodev=hda",
        ])
        .run("rumpsound-netbsd", SCRIPT);
    o.assert_success();
    for l in &o.output {
        println!("{l}");
    }
    assert!(
        o.output.iter().any(|l| l.starts_with("audio0 at auich0")),
        "auich did not attach\n{}",
        o.log
    );
    // "played N frames in T s": everything but what the kernel still
    // counts in its last block, in the file's time (paced by the card).
    let reports: Vec<(f64, f64)> = o
        .output
        .iter()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.first() == Some(&"played")).then(|| (w[1].parse().unwrap(), w[4].parse().unwrap()))
        })
        .collect();
    let total = SECONDS * f64::from(RATE);
    let (frames, secs) = reports[0];
    assert!(
        frames >= total - 4800.0 && frames <= total,
        "auich played {frames} frames"
    );
    assert!(
        (SECONDS - 0.1..SECONDS + 0.5).contains(&secs),
        "auich took {secs} s"
    );
    if o.output.iter().any(|l| l == "HDA RIRB timeout") {
        println!(
            "hdaudio: skipped: this kernel's hdaudio never sets RINTCNT, so QEMU's intel-hda \
             answers no codec command (RIRB timeout); a newer NetBSD tree sets it"
        );
    } else {
        println!("hdaudio:");
        check_recording(&frames_of(&std::fs::read(&hda).expect("QEMU's recording")));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
