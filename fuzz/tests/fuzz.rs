//! Every fuzz target for a bounded time on stable: the committed corpus and past crashes first, then
//! mutations (see `surge_fuzz::harness`). The targets run as parallel tests of one binary.
//!
//! - `SURGE_FUZZ_SECONDS`: seconds of mutation per target (default 10; 0 replays corpus and
//!   regressions only).
//! - `SURGE_FUZZ_SEED`: the mutation seed (default: from the clock; printed, so a run can be repeated).
//! - `SURGE_FUZZ_SAVE=1`: write inputs that reached new outcomes into `fuzz/corpus/<target>/`.
//!
//! A crash fails the test with the input's path under `fuzz/regressions/<target>/`: commit it with the
//! fix, and every later run replays it first.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use surge_fuzz::harness::{RunConfig, run};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn fuzz(name: &str) {
    let (_, target) = surge_fuzz::TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let seed = env_u64("SURGE_FUZZ_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let cfg = RunConfig {
        corpus: root.join("corpus").join(name),
        regressions: root.join("regressions").join(name),
        budget: Duration::from_secs(env_u64("SURGE_FUZZ_SECONDS").unwrap_or(10)),
        seed,
        save_new: std::env::var_os("SURGE_FUZZ_SAVE").is_some(),
    };
    match run(*target, &cfg) {
        Ok(r) => {
            eprintln!(
                "fuzz {name}: {} executions in {:?} (SURGE_FUZZ_SEED={seed}), {} seeds, {} regressions, {} outcomes, corpus {}",
                r.executions, cfg.budget, r.seeds, r.regressions, r.outcomes, r.corpus
            );
            assert!(r.seeds > 0, "{name}: the corpus is empty");
            assert!(
                r.executions > (r.seeds + r.regressions) as u64 || cfg.budget.is_zero(),
                "{name}: no mutation ran"
            );
        }
        Err(crash) => panic!("fuzz {name} (SURGE_FUZZ_SEED={seed}): {crash}"),
    }
}

#[test]
fn exposition() {
    fuzz("exposition");
}

#[test]
fn remote_write() {
    fuzz("remote_write");
}

#[test]
fn config() {
    fuzz("config");
}

#[test]
fn promql() {
    fuzz("promql");
}

#[test]
fn selector() {
    fuzz("selector");
}
