//! One shard: a task that batches its series and sends one request at a time.
//!
//! The loop, each turn:
//! 1. if something must go now (critical samples pending, a full request's worth pending, or the input is
//!    closed for shutdown), cut one request and deliver it (retrying as long as it takes);
//! 2. otherwise wait for new input, the standard tier's `batch_send_deadline` (counted from the oldest
//!    pending sample), or cancellation.
//!
//! While a request is being retried, `submit` keeps queueing into the shard's channel; capacity, not the
//! channel, bounds it.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;

use super::Shared;
use super::events::DropReason;
use super::request::{PendingQueue, ShardMsg};
use super::service::{Delivery, Transport, deliver};

pub(crate) struct Shard<T> {
    id: usize,
    rx: mpsc::UnboundedReceiver<ShardMsg>,
    shared: Arc<Shared>,
    transport: Arc<T>,
    pending: PendingQueue,
    encoder: snap::raw::Encoder,
    raw: Vec<u8>,
    /// The channel is closed (shutdown began): flush without waiting for timers.
    closed: bool,
}

impl<T: Transport> Shard<T> {
    pub(crate) fn new(
        id: usize,
        rx: mpsc::UnboundedReceiver<ShardMsg>,
        shared: Arc<Shared>,
        transport: Arc<T>,
    ) -> Self {
        Shard {
            id,
            rx,
            shared,
            transport,
            pending: PendingQueue::default(),
            encoder: snap::raw::Encoder::new(),
            raw: Vec::new(),
            closed: false,
        }
    }

    pub(crate) async fn run(mut self) {
        let max = self.shared.opts.max_samples_per_send.max(1);
        let batch_deadline = self.shared.opts.batch_send_deadline;
        loop {
            if self.shared.cancel.is_cancelled() {
                break;
            }
            let send_now = !self.pending.is_empty()
                && (self.closed || self.pending.has_critical() || self.pending.len() >= max);
            if send_now {
                self.send_one(max).await;
                continue;
            }
            if self.closed && self.pending.is_empty() {
                return;
            }
            let deadline = self.pending.oldest().map(|t| t + batch_deadline);
            tokio::select! {
                biased;
                _ = self.shared.cancel.cancelled() => break,
                msg = self.rx.recv(), if !self.closed => match msg {
                    Some(msg) => {
                        self.pending.push(msg);
                        self.coalesce(max);
                    }
                    None => self.closed = true,
                },
                _ = sleep_until_opt(deadline) => self.send_one(max).await,
            }
        }
        self.drop_remaining();
    }

    /// Takes what is already queued in the channel (without waiting) until a request is full, so a
    /// critical batch carries whatever arrived alongside it.
    fn coalesce(&mut self, max: usize) {
        while self.pending.len() < max {
            match self.rx.try_recv() {
                Ok(msg) => self.pending.push(msg),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.closed = true;
                    break;
                }
            }
        }
    }

    /// Cuts one request from the front of the queue and delivers it.
    async fn send_one(&mut self, max: usize) {
        self.raw.clear();
        let stats = self.pending.take_request(max, &mut self.raw);
        if stats.samples == 0 {
            return;
        }
        let body = Bytes::from(surge_proto::remote_write::compress(
            &self.raw,
            &mut self.encoder,
        ));
        let body_len = body.len();
        let shared = &*self.shared;
        let outcome = deliver(
            &*self.transport,
            body,
            &shared.opts,
            shared.remote_timeout,
            &shared.metrics,
            &shared.cancel,
            self.id,
        )
        .await;
        match outcome {
            Delivery::Delivered => {
                shared.metrics.delivered(&stats, body_len);
                shared
                    .delivered
                    .fetch_add(stats.samples as u64, Ordering::Relaxed);
            }
            Delivery::Rejected { status, detail } => {
                shared.dropped_because(DropReason::Http(status), stats.samples, &detail);
            }
            Delivery::Cancelled => shared.dropped(DropReason::Shutdown, stats.samples),
        }
        shared.release(stats.samples);
    }

    /// At the shutdown deadline: everything pending or still in the channel is dropped and counted.
    fn drop_remaining(&mut self) {
        let mut n = self.pending.clear();
        self.rx.close();
        while let Ok(msg) = self.rx.try_recv() {
            n += msg.samples();
        }
        self.shared.release(n);
        self.shared.dropped(DropReason::Shutdown, n);
    }
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
