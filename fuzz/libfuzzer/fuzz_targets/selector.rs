//! `surge_fuzz::selector` under libFuzzer: `cargo +nightly fuzz run selector ../corpus/selector` from `fuzz/libfuzzer/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    surge_fuzz::selector(data);
});
