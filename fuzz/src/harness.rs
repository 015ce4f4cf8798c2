//! A small mutation fuzzer that runs on stable, inside `cargo test`, for a bounded time.
//!
//! It has no coverage instrumentation (that is what the nightly libFuzzer build adds); instead each
//! target reports an [`Outcome`](crate::Outcome), and an input whose outcome is new joins the in-memory
//! corpus, so mutations build on inputs that reached different behaviour. The mutations are libFuzzer's
//! basic ones: flip a bit, set a byte to an interesting value, insert or delete a run, duplicate a run,
//! splice two inputs, insert a token from the target's own corpus, truncate.
//!
//! A run: every regression input (past crashes), then every corpus file, then mutations until the time
//! budget is spent. A panic stops the run; the input is written to the regressions directory under its
//! hash (so the next run replays it first) and returned with the panic's message.

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::{Outcome, Target};

/// The longest input the mutator makes: parsers are linear, and longer inputs only slow the search.
const MAX_INPUT: usize = 16 << 10;
/// The most inputs the in-memory corpus keeps.
const MAX_CORPUS: usize = 4096;

/// How one run went.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    /// Target executions, corpus and regressions included.
    pub executions: u64,
    /// Inputs read from the corpus directory.
    pub seeds: usize,
    /// Past crashes replayed.
    pub regressions: usize,
    /// Distinct outcomes seen.
    pub outcomes: usize,
    /// Inputs in the in-memory corpus at the end (seeds and mutants with new outcomes).
    pub corpus: usize,
}

/// A crash: the input (also saved at `saved`) and the panic's message.
#[derive(Debug)]
pub struct Crash {
    pub saved: PathBuf,
    pub message: String,
    pub input: Vec<u8>,
}

impl std::fmt::Display for Crash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "crash ({}) on a {}-byte input, saved as {} (now a regression test)",
            self.message,
            self.input.len(),
            self.saved.display()
        )
    }
}

/// Where a target's inputs live and how long to fuzz it.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub corpus: PathBuf,
    pub regressions: PathBuf,
    pub budget: Duration,
    pub seed: u64,
    /// Write inputs with new outcomes into `corpus` (to grow the committed corpus; off in CI).
    pub save_new: bool,
}

/// Runs `target` as [`RunConfig`] says.
pub fn run(target: Target, cfg: &RunConfig) -> Result<RunReport, Crash> {
    let mut report = RunReport::default();
    let mut seen: HashSet<Outcome> = HashSet::new();
    let mut corpus: Vec<Vec<u8>> = Vec::new();
    let exec = |input: &[u8], report: &mut RunReport| -> Result<Outcome, Crash> {
        report.executions += 1;
        catch_unwind(AssertUnwindSafe(|| target(input)))
            .map_err(|panic| crash(&cfg.regressions, input, panic_message(&panic)))
    };

    for input in read_dir(&cfg.regressions) {
        exec(&input, &mut report)?;
        report.regressions += 1;
    }
    for input in read_dir(&cfg.corpus) {
        let o = exec(&input, &mut report)?;
        seen.insert(o);
        corpus.push(input);
        report.seeds += 1;
    }
    if corpus.is_empty() {
        corpus.push(Vec::new());
    }
    let tokens = dictionary(&corpus);
    let mut rng = Rng::new(cfg.seed);
    let deadline = Instant::now() + cfg.budget;
    // The clock is read once per 64 executions: reading it costs as much as a small parse.
    'run: loop {
        for _ in 0..64 {
            let base = &corpus[rng.below(corpus.len())];
            let other = &corpus[rng.below(corpus.len())];
            let input = mutate(base, other, &tokens, &mut rng);
            let o = exec(&input, &mut report)?;
            if seen.insert(o) && corpus.len() < MAX_CORPUS {
                if cfg.save_new {
                    save(&cfg.corpus, &input);
                }
                corpus.push(input);
            }
        }
        if Instant::now() >= deadline {
            break 'run;
        }
    }
    report.outcomes = seen.len();
    report.corpus = corpus.len();
    Ok(report)
}

/// Files of `dir`, sorted by name (a missing directory is empty).
fn read_dir(dir: &Path) -> Vec<Vec<u8>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.file_name().is_none_or(|n| n != "README.md"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .filter_map(|p| std::fs::read(p).ok())
        .collect()
}

fn save(dir: &Path, input: &[u8]) -> PathBuf {
    let path = dir.join(format!("{:016x}", xxhash_rust::xxh3::xxh3_64(input)));
    let _ = std::fs::create_dir_all(dir);
    let _ = std::fs::write(&path, input);
    path
}

fn crash(dir: &Path, input: &[u8], message: String) -> Crash {
    Crash {
        saved: save(dir, input),
        message,
        input: input.to_vec(),
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// Tokens worth inserting: the words and punctuation runs of the seeds (`le`, `{`, `# TYPE`, `=~`, …).
fn dictionary(corpus: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut tokens: HashSet<Vec<u8>> = HashSet::new();
    for input in corpus {
        let mut start = 0;
        for i in 1..=input.len() {
            let class = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
            if i == input.len() || class(input[i]) != class(input[i - 1]) {
                let t = &input[start..i];
                if (1..=16).contains(&t.len()) {
                    tokens.insert(t.to_vec());
                }
                start = i;
            }
        }
    }
    let mut tokens: Vec<_> = tokens.into_iter().collect();
    tokens.sort();
    tokens.truncate(4096);
    tokens
}

/// Bytes that break parsers: separators, quotes, escapes, signs, zero, high bytes, UTF-8 lead bytes.
const INTERESTING: &[u8] = b"\n\r\t {}[]()\"'\\,=:#+-.eE0123456789\x00\xff\xc3\xe2\xf0~!|";

/// One to four mutations of `base` (with `other` for splicing).
fn mutate(base: &[u8], other: &[u8], tokens: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
    let mut v = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = v.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 => {
                let i = rng.below(len + 1);
                v.insert(i, INTERESTING[rng.below(INTERESTING.len())]);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(32));
                v.drain(i..i + n);
            }
            4 if len > 0 => {
                // Duplicate a run (nesting, repeated lines).
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                let run = v[i..i + n].to_vec();
                let at = rng.below(len + 1);
                v.splice(at..at, run);
            }
            5 if !other.is_empty() => {
                let cut = rng.below(len + 1);
                let from = rng.below(other.len());
                v.truncate(cut);
                v.extend_from_slice(&other[from..]);
            }
            6 if !tokens.is_empty() => {
                let t = &tokens[rng.below(tokens.len())];
                let at = rng.below(len + 1);
                v.splice(at..at, t.iter().copied());
            }
            7 if len > 0 => v.truncate(rng.below(len)),
            _ => {
                let i = rng.below(len + 1);
                v.insert(i, rng.next() as u8);
            }
        }
    }
    v.truncate(MAX_INPUT);
    v
}

/// xorshift64*: deterministic for a seed, so a run can be repeated (`SURGE_FUZZ_SEED`).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panics_on_three_x(data: &[u8]) -> Outcome {
        assert!(!data.windows(3).any(|w| w == b"xxx"), "three x in a row");
        data.len() as u64
    }

    /// The harness finds a planted bug from a seed one mutation away, saves the input as a regression,
    /// and replays the regressions first on the next run.
    #[test]
    fn finds_saves_and_replays_a_crash() {
        let dir = std::env::temp_dir().join(format!("surge-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cfg = RunConfig {
            corpus: dir.join("corpus"),
            regressions: dir.join("regressions"),
            budget: Duration::from_secs(60),
            seed: 7,
            save_new: false,
        };
        save(&cfg.corpus, b"axxa");
        let crash = run(panics_on_three_x, &cfg).unwrap_err();
        assert!(crash.message.contains("three x"), "{crash}");
        assert_eq!(std::fs::read(&crash.saved).unwrap(), crash.input);
        // Replayed first: the same crash, before any mutation.
        let again = run(panics_on_three_x, &cfg).unwrap_err();
        assert_eq!(again.input, crash.input);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn mutants_stay_bounded() {
        let mut rng = Rng::new(1);
        let big = vec![b'a'; MAX_INPUT];
        for _ in 0..1000 {
            assert!(mutate(&big, &big, &[b"tok".to_vec()], &mut rng).len() <= MAX_INPUT);
        }
    }
}
