//! The rumpsound translator in the guest, listened to: it drives a
//! virtio-sound function from user space and plays a WAV file through the
//! Mach device interface (`rumpsound --play`); QEMU's `wav` audio back end
//! records what the emulated card played, and the host checks the
//! recording: a 440 Hz tone on the left and 1 kHz on the right (Goertzel),
//! at their levels, every frame there and in order (the recording matches
//! the file sample for sample: no gap, no drop, the duration exact). On a
//! second function (QEMU's `none` back end) `sound-check` tries bad input,
//! a writer that goes away mid-stream, and a timed second of capture.

// Signal arithmetic on frame counts.
#![allow(clippy::cast_precision_loss)]

use std::f64::consts::TAU;

use testbed::guest::Guest;

const RATE: u32 = 48_000;
const SECONDS: f64 = 2.0;
/// Amplitudes of the left (440 Hz) and right (1 kHz) tones.
const LEFT: (f64, f64) = (440.0, 0.5);
const RIGHT: (f64, f64) = (1000.0, 0.3);

fn tone(frame: usize, (freq, amp): (f64, f64)) -> i16 {
    let t = frame as f64 / f64::from(RATE);
    (amp * f64::from(i16::MAX) * (TAU * freq * t).sin()).round() as i16
}

/// The tone file: 16-bit stereo at `RATE`.
fn tone_wav() -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut out = std::io::Cursor::new(Vec::new());
    let mut w = hound::WavWriter::new(&mut out, spec).expect("wav writer");
    for f in 0..(SECONDS * f64::from(RATE)) as usize {
        w.write_sample(tone(f, LEFT)).expect("sample");
        w.write_sample(tone(f, RIGHT)).expect("sample");
    }
    w.finalize().expect("finalize");
    out.into_inner()
}

/// The frames of a WAV file QEMU wrote (16-bit stereo): the data chunk up
/// to the end of the file, whatever its header says.
fn frames_of(wav: &[u8]) -> Vec<(i16, i16)> {
    let fmt = wav
        .windows(4)
        .position(|w| w == b"fmt ")
        .expect("a fmt chunk");
    let channels = u16::from_le_bytes([wav[fmt + 10], wav[fmt + 11]]);
    let rate = u32::from_le_bytes(wav[fmt + 12..fmt + 16].try_into().unwrap());
    let bits = u16::from_le_bytes([wav[fmt + 22], wav[fmt + 23]]);
    assert_eq!(
        (channels, rate, bits),
        (2, RATE, 16),
        "QEMU's recording format"
    );
    let data = wav
        .windows(4)
        .position(|w| w == b"data")
        .expect("a data chunk")
        + 8;
    wav[data..]
        .chunks_exact(4)
        .map(|c| {
            (
                i16::from_le_bytes([c[0], c[1]]),
                i16::from_le_bytes([c[2], c[3]]),
            )
        })
        .collect()
}

/// Goertzel: the power of `freq` in `samples`.
fn power(samples: &[f64], freq: f64) -> f64 {
    let w = TAU * freq / f64::from(RATE);
    let (mut s1, mut s2) = (0.0, 0.0);
    for x in samples {
        let s = x + 2.0 * w.cos() * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2
}

fn rms(samples: &[f64]) -> f64 {
    (samples.iter().map(|x| x * x).sum::<f64>() / samples.len() as f64).sqrt()
}

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
    let audiodev = format!(
        "wav,id=snd0,path={},out.frequency={RATE},out.channels=2,out.format=s16",
        out.display()
    );
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

/// The recording holds the tone file, frame for frame, then silence; its
/// channels have their frequencies and levels.
fn check_recording(rec: &[(i16, i16)]) {
    let total = (SECONDS * f64::from(RATE)) as usize;
    // Where the tone starts: the offset that matches its first frames.
    let probe: Vec<(i16, i16)> = (0..256).map(|f| (tone(f, LEFT), tone(f, RIGHT))).collect();
    let start = (0..rec.len().saturating_sub(total - 1))
        .find(|&s| rec[s..s + probe.len()] == probe[..])
        .unwrap_or_else(|| {
            panic!(
                "the tone's start is not in the {} recorded frames",
                rec.len()
            )
        });
    // Every frame, in order: nothing lost, repeated or inserted.
    let differ = (0..total)
        .filter(|&f| rec[start + f] != (tone(f, LEFT), tone(f, RIGHT)))
        .count();
    assert_eq!(differ, 0, "recorded frames that differ from the file");
    // After it: silence (or nothing).
    let after = &rec[start + total..];
    assert!(
        after.iter().all(|&(l, r)| l == 0 && r == 0),
        "{} frames after the tone are not silent",
        after.len()
    );
    // Frequencies and levels per channel.
    let left: Vec<f64> = rec[start..start + total]
        .iter()
        .map(|f| f64::from(f.0))
        .collect();
    let right: Vec<f64> = rec[start..start + total]
        .iter()
        .map(|f| f64::from(f.1))
        .collect();
    let (l440, l1k) = (power(&left, LEFT.0), power(&left, RIGHT.0));
    let (r440, r1k) = (power(&right, LEFT.0), power(&right, RIGHT.0));
    assert!(l440 > 1e4 * l1k, "left: 440 Hz {l440:e}, 1 kHz {l1k:e}");
    assert!(r1k > 1e4 * r440, "right: 1 kHz {r1k:e}, 440 Hz {r440:e}");
    let expect = |amp: f64| amp * f64::from(i16::MAX) / 2f64.sqrt();
    for (name, got, want) in [
        ("left", rms(&left), expect(LEFT.1)),
        ("right", rms(&right), expect(RIGHT.1)),
    ] {
        assert!(
            (got / want - 1.0).abs() < 0.01,
            "{name} level {got:.0}, expected {want:.0}"
        );
    }
    println!(
        "recording: tone at frame {start}, {total} frames exact, then {} silent; left 440/1k \
         {:.0} dB, right 1k/440 {:.0} dB",
        after.len(),
        10.0 * (l440 / l1k).log10(),
        10.0 * (r1k / r440).log10()
    );
}
