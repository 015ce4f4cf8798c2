//! Any bytes, in both formats: the parser must return entries or an error, never panic, and every
//! sample's labels must iterate. Run with `cargo +nightly fuzz run exposition` from `fuzz/`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use surge_proto::exposition::{Checks, Entry, Format, Parser};

fuzz_target!(|data: &[u8]| {
    let modes = [
        (Format::Text, Checks::Conformance),
        (Format::OpenMetrics, Checks::Conformance),
        (Format::OpenMetrics, Checks::Prometheus),
    ];
    for (format, checks) in modes {
        let mut errors = 0;
        for entry in Parser::with_checks(data, format, checks) {
            match entry {
                Ok(Entry::Sample(s)) => {
                    // A bare name starts the key; a quoted one is inside the key's quotes or braces.
                    assert!(
                        s.series_key.starts_with(s.name.raw())
                            || s.series_key.starts_with(['{', '"'])
                    );
                    for (name, value) in s.labels() {
                        std::hint::black_box((name, value));
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    assert!(e.line >= 1 && e.column >= 1);
                    errors += 1;
                }
            }
        }
        // After an error the iterator ends.
        assert!(errors <= 1);
    }
});
