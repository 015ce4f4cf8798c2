//! `surge_fuzz::config` under libFuzzer: `cargo +nightly fuzz run config ../corpus/config` from `fuzz/libfuzzer/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    surge_fuzz::config(data);
});
