//! `surge_fuzz::promql` under libFuzzer: `cargo +nightly fuzz run promql ../corpus/promql` from `fuzz/libfuzzer/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    surge_fuzz::promql(data);
});
