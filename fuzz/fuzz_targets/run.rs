//! Parse, check and run arbitrary text on a step budget (loops and recursion end) and a memory
//! budget (sizes a script asks for are refused, not allocated), in a scratch run folder:
//! never a panic, an abort or a stack overflow.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    beb_fuzz_common::on_big_stack(|| beb_fuzz_common::run(source));
});

#[path = "common.rs"]
mod beb_fuzz_common;
