//! The delay between retries of a failing watch: exponential with jitter, so a DaemonSet's agents do not
//! reconnect to a restarted API server in lockstep.

use std::hash::BuildHasher;
use std::time::Duration;

use kube::runtime::utils::Backoff;

/// First delay after an error.
const MIN: Duration = Duration::from_millis(500);
/// Longest delay: a pod created while the watch is down appears at most this long after the API server
/// is back. client-go's reflector uses 30 s; surge trades more reconnection attempts against a
/// recovering API server (one per agent per 5 s, jittered) for pod churn that is followed again soon.
const MAX: Duration = Duration::from_secs(5);

/// Doubles from [`MIN`] to [`MAX`]; each delay is drawn from [d/2, d]. Reset by the first good event.
#[derive(Debug)]
pub(crate) struct WatchBackoff {
    next: Duration,
    draws: u64,
    random: std::collections::hash_map::RandomState,
}

impl Default for WatchBackoff {
    fn default() -> Self {
        WatchBackoff {
            next: MIN,
            draws: 0,
            random: std::collections::hash_map::RandomState::new(),
        }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let d = self.next;
        self.next = (d * 2).min(MAX);
        // A uniform fraction in [0, 1) from a randomly keyed hash: no RNG crate needed for jitter.
        self.draws += 1;
        let fraction = (self.random.hash_one(self.draws) >> 11) as f64 / (1u64 << 53) as f64;
        Some(d.mul_f64(0.5 + fraction / 2.0))
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = MIN;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_jitter_and_resets() {
        let mut b = WatchBackoff::default();
        let bounds = [0.5, 1.0, 2.0, 4.0, 5.0, 5.0];
        for hi in bounds {
            let d = b.next().unwrap().as_secs_f64();
            assert!(d >= hi / 2.0 && d <= hi, "{d} not in [{}, {hi}]", hi / 2.0);
        }
        b.reset();
        assert!(b.next().unwrap() <= MIN);
    }
}
