//! Instruction-count harness for the text parser (run under `valgrind --tool=cachegrind`; wall-clock on a
//! shared machine is too noisy). Parses a body N times, reading every label name and value as the
//! `parse` bench and the agent do:
//!
//! ```text
//! cargo build -p surge-proto --example parse_count
//! valgrind --tool=cachegrind --cache-sim=no target/debug/examples/parse_count node 20
//! valgrind --tool=cachegrind --cache-sim=no target/debug/examples/parse_count app 20
//! ```
//!
//! `node` is the Debian node_exporter capture in `testdata/`, `app` the synthetic 10,000-sample body of
//! `benches/benches/parse.rs` (same generator).

use std::hint::black_box;


#[path = "../testdata/parse_bodies.rs"]
mod parse_bodies;

use parse_bodies::{NODE_EXPORTER, surge, synthetic_app};

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "node".into());
    let rounds: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(20);
    let app;
    let body = match which.as_str() {
        "node" => NODE_EXPORTER,
        "app" => {
            app = synthetic_app();
            app.as_str()
        }
        other => panic!("unknown body {other:?}: node or app"),
    };
    let mut n = 0;
    for _ in 0..rounds {
        n += surge(black_box(body));
    }
    println!("{n}");
}
