//! GNU Mach's packet filters: any program `device_set_filter` might bring,
//! on any frame. Compiling either refuses the program or yields one whose
//! run never panics, never loops and accepts at most the frame's payload.

#![no_main]

use libfuzzer_sys::fuzz_target;
use netfilter::{Filter, Verdict};

fuzz_target!(|data: &[u8]| {
    // First byte: how many filter words follow; then the words, then the
    // frame.
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n).min(rest.len() / 2);
    let (words, frame) = rest.split_at(2 * n);
    let words: Vec<u16> = words
        .chunks_exact(2)
        .map(|w| u16::from_ne_bytes([w[0], w[1]]))
        .collect();
    if let Ok(f) = Filter::compile(&words) {
        if let Verdict::Accept { payload } = f.run(frame) {
            assert!(frame.len() >= 14 && payload <= frame.len() - 14);
        }
    }
});
