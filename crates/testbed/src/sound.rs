//! Listening to a guest's sound card: the test tone a translator plays
//! (440 Hz on the left, 1 kHz on the right, as a WAV file), and the checks
//! of what QEMU's `wav` audio back end recorded of it: every frame there
//! and in order, silence after, each channel's frequency (Goertzel) and
//! level.

// Signal arithmetic on frame counts.
#![allow(clippy::cast_precision_loss)]

use std::f64::consts::TAU;

/// The tone's rate.
pub const RATE: u32 = 48_000;
/// The tone's length.
pub const SECONDS: f64 = 2.0;
/// Amplitudes of the left (440 Hz) and right (1 kHz) tones.
const LEFT: (f64, f64) = (440.0, 0.5);
const RIGHT: (f64, f64) = (1000.0, 0.3);

fn tone(frame: usize, (freq, amp): (f64, f64)) -> i16 {
    let t = frame as f64 / f64::from(RATE);
    (amp * f64::from(i16::MAX) * (TAU * freq * t).sin()).round() as i16
}

/// QEMU's `-audiodev` value for a `wav` back end `id` that records to
/// `path` in the tone's format.
#[must_use]
pub fn wav_audiodev(id: &str, path: &std::path::Path) -> String {
    format!(
        "wav,id={id},path={},out.frequency={RATE},out.channels=2,out.format=s16",
        path.display()
    )
}

/// The tone file: 16-bit stereo at [`RATE`].
#[must_use]
pub fn tone_wav() -> Vec<u8> {
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
#[must_use]
pub fn frames_of(wav: &[u8]) -> Vec<(i16, i16)> {
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

/// The recording holds the tone file, frame for frame, then silence; its
/// channels have their frequencies and levels.
pub fn check_recording(rec: &[(i16, i16)]) {
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
