//! The smallest test: the runtime itself (argv, heap, console, markers).
#![no_std]
#![no_main]

extern crate alloc;

use gnumach_tasks::{Args, check, end, entry};

entry!(main);

fn main(args: &Args) -> ! {
    check(
        "runtime: argv has host and device ports",
        args.argv.len() >= 3,
        || alloc::format!("{:?}", args.argv),
    );
    let big = alloc::vec![7u8; 3 << 20];
    let small: alloc::vec::Vec<alloc::boxed::Box<u64>> =
        (0..10_000).map(alloc::boxed::Box::new).collect();
    check(
        "runtime: heap",
        big.iter().all(|&b| b == 7) && small.iter().enumerate().all(|(i, b)| **b == i as u64),
        || "corrupt".into(),
    );
    end(true)
}
