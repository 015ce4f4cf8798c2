//! `surge_fuzz::remote_write` under libFuzzer: `cargo +nightly fuzz run remote_write ../corpus/remote_write` from `fuzz/libfuzzer/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    surge_fuzz::remote_write(data);
});
