//! EMF documents delivered: as lines on stdout (for the CloudWatch agent or Fluent Bit) or as
//! CloudWatch Logs events with `PutLogEvents`.
//!
//! A `PutLogEvents` call carries events of one stream in time order, at most 10,000 of them, at most
//! 1,048,576 bytes counting 26 bytes per event, spanning less than 24 hours; events older than 14 days
//! or more than 2 hours ahead are refused. [`cut_log_batches`] keeps all of that: it sorts, drops (and
//! counts, `timestamp_out_of_range`) what would be refused, and starts a new call before any limit.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use aws_sdk_cloudwatchlogs::Client;
use aws_sdk_cloudwatchlogs::error::ProvideErrorMetadata;
use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use parking_lot::Mutex;
use surge_sender::{Attempt, Chunk, Cut, Deliver, Encoded, SendFuture};

use crate::aws::classify;
use crate::emf::{EmfEncoder, EmfEvent};
use crate::points::Preparer;

/// Bytes per `PutLogEvents` call, counting [`EVENT_OVERHEAD_BYTES`] per event.
pub const MAX_BATCH_BYTES: usize = 1_048_576;
/// What each event adds to a call's size besides its message.
pub const EVENT_OVERHEAD_BYTES: usize = 26;
/// Events per call.
pub const MAX_BATCH_EVENTS: usize = 10_000;
/// A call's events span less than this.
pub const MAX_BATCH_SPAN_MS: i64 = 24 * 3600 * 1000;
/// The oldest event CloudWatch Logs takes, relative to now.
pub const MAX_AGE_MS: i64 = 14 * 24 * 3600 * 1000;
/// The furthest ahead CloudWatch Logs takes an event.
pub const MAX_AHEAD_MS: i64 = 2 * 3600 * 1000;

/// One `PutLogEvents` call's events, in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct LogBatch {
    pub events: Vec<(i64, String)>,
}

impl LogBatch {
    /// The call's size as CloudWatch Logs counts it.
    pub fn bytes(&self) -> usize {
        self.events
            .iter()
            .map(|(_, m)| m.len() + EVENT_OVERHEAD_BYTES)
            .sum()
    }
}

/// Cuts `events` into `PutLogEvents` calls within every limit; `now_ms` bounds the accepted timestamps.
pub fn cut_log_batches(mut events: Vec<EmfEvent>, now_ms: i64) -> Encoded<LogBatch> {
    let mut out = Encoded::default();
    events.sort_by_key(|e| e.timestamp_ms);
    let mut out_of_range = 0;
    let mut too_large = 0;
    let mut current: Option<(Cut<LogBatch>, usize)> = None;
    for e in events {
        if e.timestamp_ms < now_ms - MAX_AGE_MS || e.timestamp_ms > now_ms + MAX_AHEAD_MS {
            out_of_range += e.samples;
            continue;
        }
        let size = e.json.len() + EVENT_OVERHEAD_BYTES;
        if size > MAX_BATCH_BYTES {
            too_large += e.samples;
            continue;
        }
        if let Some((cut, bytes)) = &current {
            let first = cut.request.events.first().map_or(e.timestamp_ms, |f| f.0);
            if cut.request.events.len() >= MAX_BATCH_EVENTS
                || bytes + size > MAX_BATCH_BYTES
                || e.timestamp_ms - first >= MAX_BATCH_SPAN_MS
            {
                out.requests.extend(current.take().map(|c| c.0));
            }
        }
        let (cut, bytes) = current.get_or_insert_with(|| {
            (
                Cut {
                    request: LogBatch { events: Vec::new() },
                    samples: 0,
                    highest_timestamp_ms: None,
                },
                0,
            )
        });
        cut.samples += e.samples;
        cut.highest_timestamp_ms = Some(e.timestamp_ms);
        cut.request.events.push((e.timestamp_ms, e.json));
        *bytes += size;
    }
    out.requests.extend(current.map(|c| c.0));
    if out_of_range > 0 {
        out.dropped.push(("timestamp_out_of_range", out_of_range));
    }
    if too_large > 0 {
        out.dropped.push(("event_too_large", too_large));
    }
    out
}

/// Chunks → EMF documents, shared by both sinks.
pub struct EmfPipeline {
    pub preparer: Preparer,
    pub encoder: EmfEncoder,
}

impl EmfPipeline {
    /// The chunk's documents and everything refused on the way.
    pub fn documents(&self, chunk: &Chunk) -> (Vec<EmfEvent>, Vec<(&'static str, usize)>) {
        let prepared = self.preparer.prepare(chunk);
        let mut docs = self.encoder.encode(&prepared.points);
        let mut dropped = prepared.dropped;
        dropped.append(&mut docs.dropped);
        (docs.events, dropped)
    }
}

/// EMF documents as lines on a writer (stdout in the agent), one JSON document per line.
///
/// A chunk is one request: its lines are written with one `write_all` under the writer's lock, so
/// lines of concurrent lanes never interleave.
pub struct EmfLines<W> {
    pipeline: EmfPipeline,
    writer: Mutex<W>,
}

impl<W: Write + Send + 'static> EmfLines<W> {
    pub fn new(pipeline: EmfPipeline, writer: W) -> Self {
        EmfLines {
            pipeline,
            writer: Mutex::new(writer),
        }
    }
}

impl<W: Write + Send + 'static> Deliver for EmfLines<W> {
    const KIND: &'static str = "EMF (stdout)";

    type Request = String;

    fn encode(&self, chunk: &Chunk) -> Encoded<String> {
        let (events, dropped) = self.pipeline.documents(chunk);
        let mut out = Encoded {
            requests: Vec::new(),
            dropped,
        };
        if events.is_empty() {
            return out;
        }
        let samples = events.iter().map(|e| e.samples).sum();
        let highest_timestamp_ms = events.iter().map(|e| e.timestamp_ms).max();
        let mut text = String::with_capacity(events.iter().map(|e| e.json.len() + 1).sum());
        for e in events {
            text.push_str(&e.json);
            text.push('\n');
        }
        out.requests.push(Cut {
            request: text,
            samples,
            highest_timestamp_ms,
        });
        out
    }

    fn send<'a>(&'a self, request: &'a String) -> SendFuture<'a> {
        let result = {
            let mut w = self.writer.lock();
            w.write_all(request.as_bytes()).and_then(|_| w.flush())
        };
        Box::pin(async move {
            match result {
                Ok(()) => Attempt::Delivered {
                    bytes: request.len(),
                },
                // A closed stdout does not come back: retrying would only hold the queue.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Attempt::Refused {
                    reason: "broken_pipe",
                    detail: e.to_string(),
                },
                Err(e) => Attempt::Retry {
                    reason: "io",
                    after: None,
                    detail: e.to_string(),
                },
            }
        })
    }
}

/// EMF documents as CloudWatch Logs events of one log group and stream, created when missing.
pub struct EmfLogs {
    pipeline: EmfPipeline,
    client: Client,
    group: String,
    stream: String,
    /// Whether the group and stream are known to exist (set after creating them or a first success).
    ready: AtomicBool,
    clock: Arc<dyn Fn() -> i64 + Send + Sync>,
}

impl EmfLogs {
    /// `clock` returns now in ms since the epoch (tests pass a fixed one).
    pub fn new(
        pipeline: EmfPipeline,
        client: Client,
        group: String,
        stream: String,
        clock: Arc<dyn Fn() -> i64 + Send + Sync>,
    ) -> Self {
        EmfLogs {
            pipeline,
            client,
            group,
            stream,
            ready: AtomicBool::new(false),
            clock,
        }
    }

    async fn put(&self, batch: &LogBatch) -> Result<(), Attempt> {
        let events = batch
            .events
            .iter()
            .map(|(ts, msg)| {
                InputLogEvent::builder()
                    .timestamp(*ts)
                    .message(msg.clone())
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Attempt::Refused {
                reason: "invalid_event",
                detail: e.to_string(),
            })?;
        let result = self
            .client
            .put_log_events()
            .log_group_name(&self.group)
            .log_stream_name(&self.stream)
            .set_log_events(Some(events))
            .send()
            .await;
        match result {
            Ok(out) => {
                if let Some(rejected) = out.rejected_log_events_info() {
                    tracing::warn!(
                        group = %self.group, stream = %self.stream, ?rejected,
                        "CloudWatch Logs rejected some EMF events"
                    );
                }
                Ok(())
            }
            Err(e) if e.code() == Some("ResourceNotFoundException") => Err(Attempt::Retry {
                reason: "missing_stream",
                after: None,
                detail: String::new(),
            }),
            Err(e) => Err(classify(&e)),
        }
    }

    /// Creates the group and the stream; either may exist already.
    async fn create(&self) -> Result<(), Attempt> {
        let group = self
            .client
            .create_log_group()
            .log_group_name(&self.group)
            .send()
            .await;
        if let Err(e) = group
            && e.code() != Some("ResourceAlreadyExistsException")
        {
            return Err(classify(&e));
        }
        let stream = self
            .client
            .create_log_stream()
            .log_group_name(&self.group)
            .log_stream_name(&self.stream)
            .send()
            .await;
        if let Err(e) = stream
            && e.code() != Some("ResourceAlreadyExistsException")
        {
            return Err(classify(&e));
        }
        tracing::info!(group = %self.group, stream = %self.stream, "CloudWatch Logs stream ready");
        Ok(())
    }
}

impl Deliver for EmfLogs {
    const KIND: &'static str = "EMF (CloudWatch Logs)";

    type Request = LogBatch;

    fn encode(&self, chunk: &Chunk) -> Encoded<LogBatch> {
        let (events, mut dropped) = self.pipeline.documents(chunk);
        let mut out = cut_log_batches(events, (self.clock)());
        out.dropped.append(&mut dropped);
        out
    }

    fn send<'a>(&'a self, request: &'a LogBatch) -> SendFuture<'a> {
        Box::pin(async move {
            if !self.ready.load(Ordering::Relaxed) {
                if let Err(a) = self.create().await {
                    return a;
                }
                self.ready.store(true, Ordering::Relaxed);
            }
            match self.put(request).await {
                Ok(()) => Attempt::Delivered {
                    bytes: request.bytes(),
                },
                Err(Attempt::Retry {
                    reason: "missing_stream",
                    ..
                }) => {
                    // Deleted behind our back: create it again, then retry this call.
                    self.ready.store(false, Ordering::Relaxed);
                    Attempt::Retry {
                        reason: "missing_stream",
                        after: None,
                        detail: format!("log stream {}/{} not found", self.group, self.stream),
                    }
                }
                Err(a) => a,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(ts: i64, len: usize) -> EmfEvent {
        EmfEvent {
            timestamp_ms: ts,
            json: "x".repeat(len),
            samples: 1,
        }
    }

    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn batches_are_time_ordered_and_within_every_limit() {
        let mut events = Vec::new();
        // 25,000 small events: the event-count limit cuts.
        for i in 0..25_000 {
            events.push(ev(NOW - 1000 - (i % 7), 10));
        }
        // 30 events of 100 kB: the byte limit cuts.
        for i in 0..30 {
            events.push(ev(NOW - 5000 + i, 100_000));
        }
        // Spread over 3 days: the 24 h span cuts.
        for h in 0..72 {
            events.push(ev(NOW - 3_600_000 * (h + 2), 10));
        }
        let total = events.len();
        let out = cut_log_batches(events, NOW);
        assert!(out.dropped.is_empty());
        let mut last = i64::MIN;
        let mut n = 0;
        for cut in &out.requests {
            let b = &cut.request;
            assert!(b.events.len() <= MAX_BATCH_EVENTS);
            assert!(b.bytes() <= MAX_BATCH_BYTES, "{}", b.bytes());
            let span = b.events.last().unwrap().0 - b.events[0].0;
            assert!(span < MAX_BATCH_SPAN_MS);
            for (ts, _) in &b.events {
                assert!(*ts >= last);
                last = *ts;
            }
            assert_eq!(cut.samples, b.events.len());
            n += b.events.len();
        }
        assert_eq!(n, total, "nothing lost");
    }

    #[test]
    fn events_cloudwatch_logs_would_refuse_are_dropped_and_counted() {
        let out = cut_log_batches(
            vec![
                ev(NOW - MAX_AGE_MS - 1, 5),
                ev(NOW + MAX_AHEAD_MS + 1, 5),
                ev(NOW, MAX_BATCH_BYTES),
                ev(NOW, 5),
            ],
            NOW,
        );
        assert_eq!(
            out.dropped,
            vec![("timestamp_out_of_range", 2), ("event_too_large", 1)]
        );
        assert_eq!(out.requests.len(), 1);
        assert_eq!(out.requests[0].request.events.len(), 1);
    }
}
