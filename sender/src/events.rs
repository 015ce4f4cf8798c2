//! The sender's runtime failures as named events: each one counts and logs in one place.
//!
//! Logging is rate-limited per destination and event kind (one line per [`LOG_INTERVAL`], saying how many
//! similar events were folded into it), so a dead destination retried by every shard does not flood the
//! log, while the counters stay exact.

use std::borrow::Cow;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use super::metrics::DestinationMetrics;

/// At most one log line per destination and event kind in this interval.
pub(crate) const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Why a request is retried (the `reason` label of `surge_remote_write_retries_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetryReason {
    Http5xx,
    Http429,
    Timeout,
    Network,
    /// A [`QueuedOutput`](crate::queued::QueuedOutput)'s receiver named the reason (`throttled`, ...).
    Other(&'static str),
}

impl RetryReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RetryReason::Http5xx => "http_5xx",
            RetryReason::Http429 => "http_429",
            RetryReason::Timeout => "timeout",
            RetryReason::Network => "network",
            RetryReason::Other(reason) => reason,
        }
    }
}

/// Why samples were dropped (the `reason` label of `surge_remote_write_samples_dropped_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DropReason {
    /// The destination's `capacity` was full when the samples were submitted.
    QueueFull,
    /// The receiver refused the request with this status (not retried): `http_400`, `http_413`, ….
    Http(u16),
    /// Submitted after shutdown began, or still unsent at the shutdown deadline.
    Shutdown,
    /// The destination's options are invalid, so it sends nothing.
    InvalidOptions,
    /// A [`QueuedOutput`](crate::queued::QueuedOutput)'s encoder or receiver refused the samples, for a
    /// reason from its own fixed set (`nan`, `timestamp_out_of_range`, `auth`, ...).
    Refused(&'static str),
}

impl DropReason {
    pub(crate) fn label(self) -> Cow<'static, str> {
        match self {
            DropReason::QueueFull => Cow::Borrowed("queue_full"),
            DropReason::Http(status) => Cow::Owned(format!("http_{status}")),
            DropReason::Shutdown => Cow::Borrowed("shutdown"),
            DropReason::InvalidOptions => Cow::Borrowed("invalid_options"),
            DropReason::Refused(reason) => Cow::Borrowed(reason),
        }
    }
}

/// A request failed and will be sent again after `wait`. Not a drop: its samples are still queued.
pub(crate) struct RequestRetried<'a> {
    pub(crate) shard: usize,
    pub(crate) reason: RetryReason,
    pub(crate) attempt: u32,
    pub(crate) wait: Duration,
    pub(crate) detail: &'a str,
}

impl RequestRetried<'_> {
    pub(crate) fn emit(self, metrics: &DestinationMetrics) {
        metrics.retried(self.reason);
        if let Some(folded) = metrics.retry_log.admit() {
            tracing::warn!(
                destination = %metrics.destination,
                shard = self.shard,
                reason = self.reason.as_str(),
                attempt = self.attempt,
                retry_in = ?self.wait,
                similar_events_folded = folded,
                "{} request failed, retrying: {}",
                metrics.kind,
                self.detail,
            );
        }
    }
}

/// Samples were given up on.
pub(crate) struct SamplesDropped<'a> {
    pub(crate) reason: DropReason,
    pub(crate) count: usize,
    /// The receiver's answer, when it refused the request.
    pub(crate) detail: &'a str,
}

impl SamplesDropped<'_> {
    pub(crate) fn emit(self, metrics: &DestinationMetrics) {
        if self.count == 0 {
            return;
        }
        metrics.dropped(self.reason, self.count);
        if let Some(folded) = metrics.drop_log.admit() {
            tracing::error!(
                destination = %metrics.destination,
                reason = %self.reason.label(),
                samples = self.count,
                similar_events_folded = folded,
                "{} samples dropped{}{}",
                metrics.kind,
                if self.detail.is_empty() { "" } else { ": " },
                self.detail,
            );
        }
    }
}

/// Lets one log line through per [`LOG_INTERVAL`] and counts the ones it holds back.
#[derive(Debug, Default)]
pub(crate) struct LogGate {
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogGate {
    /// `Some(folded)` when a line may be logged now, with the number of events held back since the last.
    pub(crate) fn admit(&self) -> Option<u64> {
        let now = Instant::now();
        let mut state = self.state.lock();
        let (last, folded) = &mut *state;
        match last {
            Some(t) if now.duration_since(*t) < LOG_INTERVAL => {
                *folded += 1;
                None
            }
            _ => {
                *last = Some(now);
                Some(std::mem::take(folded))
            }
        }
    }
}
