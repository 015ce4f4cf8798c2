//! CloudWatch outputs: the embedded metric format (EMF) on stdout or to CloudWatch Logs, and
//! `PutMetricData`. Each is a [`QueuedOutput`]: the queue, tiers, retries and drop accounting are the
//! sender's; this crate only says how a chunk of batches becomes requests.
//!
//! ```text
//! Chunk ─▶ points::Preparer (names, dimensions, counter deltas, histograms, refusals)
//!   ├─▶ emf::EmfEncoder (documents within the EMF limits) ─▶ logs::EmfLines (stdout)
//!   │                                                     └▶ logs::cut_log_batches ─▶ logs::EmfLogs (PutLogEvents)
//!   └─▶ pmd::cut_calls (data within the PutMetricData limits) ─▶ pmd::PutMetricData
//! ```
//!
//! Architecture invariant: this crate (with `surge-alb`) is the only library that links the AWS SDK;
//! the agent receives these outputs as `Arc<dyn Output>` built by the binary.

pub mod aws;
pub mod emf;
pub mod logs;
pub mod pmd;
pub mod points;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use regex::Regex;
use surge_config::{CloudWatchQueueConfig, EmfConfig, EmfDestination, PutMetricDataConfig};
use surge_sender::{Output, QueuedOptions, QueuedOutput, SenderMetrics};

pub use aws::AwsTarget;
use emf::EmfEncoder;
use logs::{EmfLines, EmfLogs, EmfPipeline};
use points::{Layout, Preparer};

/// Why an output could not be built (only for configs that skipped validation).
#[derive(Debug, thiserror::Error)]
pub enum CloudWatchError {
    /// `counter_pattern` is not a regular expression.
    #[error("{output}: counter_pattern {pattern:?} is not a regular expression")]
    CounterPattern {
        output: String,
        pattern: String,
        #[source]
        source: regex::Error,
    },
}

/// Now in ms since the epoch, from the system clock.
pub fn system_clock() -> Arc<dyn Fn() -> i64 + Send + Sync> {
    Arc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    })
}

fn layout(
    output: &str,
    dimensions: &[String],
    counter_pattern: Option<&str>,
) -> Result<Layout, CloudWatchError> {
    let counter_pattern = counter_pattern
        .map(|p| {
            Regex::new(p).map_err(|source| CloudWatchError::CounterPattern {
                output: output.to_owned(),
                pattern: p.to_owned(),
                source,
            })
        })
        .transpose()?;
    Ok(Layout {
        dimensions: dimensions.to_vec(),
        counter_pattern,
    })
}

fn queued_options(name: &str, q: &CloudWatchQueueConfig) -> QueuedOptions {
    QueuedOptions {
        name: name.to_owned(),
        capacity: q.capacity,
        max_samples_per_send: q.max_samples_per_send,
        batch_send_deadline: q.batch_send_deadline,
        min_backoff: q.min_backoff,
        max_backoff: q.max_backoff,
        attempt_timeout: q.timeout,
        max_requests_per_second: q.max_requests_per_second,
    }
}

fn target(aws: &surge_config::AwsConfig) -> AwsTarget {
    AwsTarget {
        region: aws.region.clone(),
        endpoint_url: aws.endpoint_url.clone(),
    }
}

/// Starts every `emf` and `cloudwatch` output of the agent's config, in that order.
pub async fn start_outputs(
    agent: &surge_config::AgentConfig,
    metrics: &SenderMetrics,
) -> Result<Vec<Arc<dyn Output>>, CloudWatchError> {
    let mut outputs = Vec::with_capacity(agent.emf.len() + agent.cloudwatch.len());
    for e in &agent.emf {
        outputs.push(start_emf(e, metrics).await?);
    }
    for c in &agent.cloudwatch {
        outputs.push(start_put_metric_data(c, metrics).await?);
    }
    Ok(outputs)
}

/// Starts an EMF output (needs a tokio runtime). With `destination: cloudwatch_logs` the AWS
/// configuration is loaded first (the credential chain itself resolves lazily, on the first call).
pub async fn start_emf(
    config: &EmfConfig,
    metrics: &SenderMetrics,
) -> Result<Arc<dyn Output>, CloudWatchError> {
    let pipeline = EmfPipeline {
        preparer: Preparer::new(layout(
            &config.name,
            &config.dimensions,
            config.counter_pattern.as_deref(),
        )?),
        encoder: EmfEncoder::new(&config.namespace, config.max_event_bytes),
    };
    let opts = queued_options(&config.name, &config.queue_config);
    Ok(match config.destination {
        EmfDestination::Stdout => Arc::new(QueuedOutput::start(
            opts,
            EmfLines::new(pipeline, std::io::stdout()),
            metrics,
        )),
        EmfDestination::CloudwatchLogs => {
            let sdk = aws::load(&target(&config.aws), config.queue_config.timeout).await;
            let client = aws_sdk_cloudwatchlogs::Client::new(&sdk);
            let deliver = EmfLogs::new(
                pipeline,
                client,
                config.log_group.clone(),
                config.log_stream.clone(),
                system_clock(),
            );
            Arc::new(QueuedOutput::start(opts, deliver, metrics))
        }
    })
}

/// Starts a `PutMetricData` output (needs a tokio runtime).
pub async fn start_put_metric_data(
    config: &PutMetricDataConfig,
    metrics: &SenderMetrics,
) -> Result<Arc<dyn Output>, CloudWatchError> {
    let preparer = Preparer::new(layout(
        &config.name,
        &config.dimensions,
        config.counter_pattern.as_deref(),
    )?);
    let sdk = aws::load(&target(&config.aws), config.queue_config.timeout).await;
    let client = aws_sdk_cloudwatch::Client::new(&sdk);
    let deliver =
        pmd::PutMetricData::new(preparer, client, config.namespace.clone(), system_clock());
    Ok(Arc::new(QueuedOutput::start(
        queued_options(&config.name, &config.queue_config),
        deliver,
        metrics,
    )))
}
