#![no_main]
//! See `auralis::fuzz::frame` for the properties checked.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| auralis::fuzz::frame(data));
