//! The OTLP destination as an [`Output`](surge_sender::Output): surge-sender's [`QueuedOutput`] (bounded
//! queue in samples, a lane per tier, retries with backoff and `Retry-After`, drops counted in the
//! remote-write families by `destination` and `reason`, bounded shutdown) in front of [`OtlpDeliver`],
//! which says how a chunk of batches becomes OTLP requests and how one is sent.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use surge_sender::{
    Attempt, Chunk, Cut, Deliver, QueuedOptions, QueuedOutput, SendFuture, SenderMetrics,
};

use crate::encode::Encoder;
use crate::transport::{Outcome, Prepared, Transport};
use crate::{OtlpOptions, StartError};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DestinationLabels {
    destination: String,
}

/// The OTLP outputs' own metrics (beside the queue's `surge_remote_write_*` families).
#[derive(Debug, Clone, Default)]
pub struct OtlpMetrics {
    rejected: Family<DestinationLabels, Counter>,
}

impl OtlpMetrics {
    /// Registers the metrics into `registry` (once per process).
    pub fn new(registry: &mut Registry) -> Self {
        let m = OtlpMetrics::default();
        registry.register(
            "surge_otlp_points_rejected",
            "Data points a receiver accepted the request of but rejected (OTLP partial_success).",
            m.rejected.clone(),
        );
        m
    }
}

/// Encodes chunks into OTLP requests and sends them over HTTP or gRPC.
pub struct OtlpDeliver {
    name: String,
    encoder: Encoder,
    transport: Transport,
    rejected: Counter,
}

impl OtlpDeliver {
    /// The encoder and transport of `opts` (needs a tokio runtime for gRPC).
    pub fn new(opts: &OtlpOptions, metrics: &OtlpMetrics) -> Result<Self, StartError> {
        Ok(OtlpDeliver {
            name: opts.name.clone(),
            encoder: Encoder::new(opts.resource_labels.clone(), opts.max_samples_per_send),
            transport: Transport::new(opts)?,
            rejected: metrics.rejected.get_or_create_owned(&DestinationLabels {
                destination: opts.name.clone(),
            }),
        })
    }
}

impl Deliver for OtlpDeliver {
    const KIND: &'static str = "OTLP";

    type Request = Prepared;

    fn encode(&self, chunk: &Chunk) -> surge_sender::Encoded<Prepared> {
        let encoded = self.encoder.encode(chunk.batches.iter().map(|b| &**b));
        surge_sender::Encoded {
            requests: encoded
                .requests
                .into_iter()
                .map(|r| Cut {
                    request: self.transport.prepare(r.message),
                    samples: r.samples,
                    highest_timestamp_ms: r.highest_timestamp_ms,
                })
                .collect(),
            dropped: encoded.dropped,
        }
    }

    fn send<'a>(&'a self, request: &'a Prepared) -> SendFuture<'a> {
        Box::pin(async move {
            match self.transport.send(request).await {
                Outcome::Delivered {
                    bytes,
                    rejected,
                    message,
                } => {
                    if rejected > 0 {
                        // Not retried: the receiver says these points will never be accepted.
                        self.rejected.inc_by(rejected);
                        tracing::warn!(
                            destination = %self.name,
                            rejected,
                            "OTLP receiver rejected points: {message}"
                        );
                    }
                    Attempt::Delivered { bytes }
                }
                Outcome::Retry {
                    reason,
                    after,
                    detail,
                } => Attempt::Retry {
                    reason,
                    after,
                    detail,
                },
                Outcome::Refused { reason, detail } => Attempt::Refused { reason, detail },
            }
        })
    }
}

/// Starts the OTLP output of `opts` (needs a tokio runtime).
pub fn start(
    opts: &OtlpOptions,
    sender_metrics: &SenderMetrics,
    otlp_metrics: &OtlpMetrics,
) -> Result<Arc<QueuedOutput<OtlpDeliver>>, StartError> {
    let deliver = OtlpDeliver::new(opts, otlp_metrics)?;
    let queued = QueuedOptions {
        name: opts.name.clone(),
        capacity: opts.capacity,
        max_samples_per_send: opts.max_samples_per_send,
        batch_send_deadline: opts.batch_send_deadline,
        min_backoff: opts.min_backoff,
        max_backoff: opts.max_backoff,
        attempt_timeout: opts.timeout,
        max_requests_per_second: None,
    };
    Ok(Arc::new(QueuedOutput::start(
        queued,
        deliver,
        sender_metrics,
    )))
}
