//! `surge_fuzz::exposition` under libFuzzer: `cargo +nightly fuzz run exposition ../corpus/exposition` from `fuzz/libfuzzer/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    surge_fuzz::exposition(data);
});
