//! The parser and the name checker on arbitrary text: every input is a program or a syntax
//! error, and every error renders; never a panic, an abort or a stack overflow.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    beb_fuzz_common::on_big_stack(|| beb_fuzz_common::parse_and_check(source));
});

#[path = "common.rs"]
mod beb_fuzz_common;
