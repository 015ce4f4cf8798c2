//! The 60 s source: `GetMetricData` for `AWS/ApplicationELB`, turned into series in the aggregator's store.
//!
//! One poll, one stage a line: window → queries (five metrics per target group, ActiveConnectionCount per
//! load balancer) → `GetMetricData` (≤ 500 queries a call, every page) → per series [`SeriesBook::plan`]
//! → a remote-write body → [`AggregatorState::ingest_body`], the path remote-write ingest takes, so
//! observers (the autoscaler, the onward writer) learn of the samples as of any agent's.
//!
//! Failures (a wrong credential or region, throttling, an unreachable endpoint) are logged once per
//! change of error and counted (`surge_alb_cloudwatch_requests_total{outcome}`); the loop keeps its
//! interval, so an error never turns into a retry storm.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, ScanBy};
use surge_aggregator::{AggregatorState, Sender};
use surge_config::AlbConfig;
use surge_model::{Labels, Sample};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::metrics::AlbMetrics;
use crate::naming::{self, AlbMetric, METRICS, REQUEST_RATE, Scope};
use crate::points::{PERIOD_MS, PlanCounts, SeriesBook, Window};
use crate::write::WriteBatch;
use surge_aggregator::peers::PeerWriter;
use surge_sender::{Batch, SeriesMeta, SeriesSamples};

/// `GetMetricData` takes at most this many queries per call.
const MAX_QUERIES_PER_CALL: usize = 500;
const NAMESPACE: &str = "AWS/ApplicationELB";

type GetMetricDataSdkError = aws_sdk_cloudwatch::error::SdkError<
    aws_sdk_cloudwatch::operation::get_metric_data::GetMetricDataError,
>;

/// Why a poll failed.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// `GetMetricData` failed (credentials, region, throttling, network); the source is the SDK's error.
    #[error("GetMetricData failed")]
    GetMetricData(#[source] Box<GetMetricDataSdkError>),
    /// The store refused the samples as a whole (it cannot for a body built here; kept for honesty).
    #[error("writing into the store failed")]
    Ingest(#[source] surge_aggregator::ingest::RequestError),
}

/// One series the source writes: its query, its labels and its memory.
struct SourceSeries {
    query_id: String,
    metric: AlbMetric,
    labels: Labels,
    /// The per-second request rate written beside `RequestCount` (`Sum / 60`).
    rate_labels: Option<Labels>,
    book: SeriesBook,
}

/// The CloudWatch ALB source.
pub struct CloudWatchSource {
    client: aws_sdk_cloudwatch::Client,
    state: Arc<AggregatorState>,
    series: Vec<SourceSeries>,
    lookback_ms: i64,
    zero_fill_after_ms: i64,
    interval: Duration,
    metrics: AlbMetrics,
    /// The peer replicas the written series also go to (this source runs on the leader only).
    replicate: Option<Arc<PeerWriter>>,
}

/// The SDK's HTTP client: rustls on ring, as every TLS connection of surge (no aws-lc build step).
pub fn http_client() -> aws_sdk_cloudwatch::config::SharedHttpClient {
    use aws_smithy_http_client::tls;
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// An SDK client for `cfg`: credentials and (unless set) region from the standard chain (environment,
/// profile, IRSA web identity, EKS Pod Identity, instance profile), `endpoint_url` if set.
pub async fn client(cfg: &AlbConfig) -> aws_sdk_cloudwatch::Client {
    let mut loader =
        aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http_client());
    if let Some(region) = &cfg.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(url) = &cfg.endpoint_url {
        loader = loader.endpoint_url(url.clone());
    }
    aws_sdk_cloudwatch::Client::new(&loader.load().await)
}

impl CloudWatchSource {
    /// A source for `cfg.target_groups` writing into `state`.
    pub fn new(
        client: aws_sdk_cloudwatch::Client,
        cfg: &AlbConfig,
        state: Arc<AggregatorState>,
        metrics: AlbMetrics,
    ) -> CloudWatchSource {
        let mut series = Vec::new();
        let mut load_balancers: Vec<&str> = Vec::new();
        for (g, tg) in cfg.target_groups.iter().enumerate() {
            for (m, metric) in METRICS.iter().enumerate() {
                if metric.scope != Scope::TargetGroup {
                    continue;
                }
                let labels = naming::cloudwatch_labels(
                    metric.series,
                    &tg.load_balancer,
                    Some(&tg.target_group),
                );
                let rate_labels = (metric.cloudwatch == "RequestCount").then(|| {
                    naming::cloudwatch_labels(
                        REQUEST_RATE,
                        &tg.load_balancer,
                        Some(&tg.target_group),
                    )
                });
                series.push(SourceSeries {
                    query_id: format!("tg{g}_m{m}"),
                    metric: *metric,
                    labels,
                    rate_labels,
                    book: SeriesBook::default(),
                });
            }
            if !load_balancers.contains(&tg.load_balancer.as_str()) {
                load_balancers.push(&tg.load_balancer);
            }
        }
        for (l, lb) in load_balancers.iter().enumerate() {
            for (m, metric) in METRICS.iter().enumerate() {
                if metric.scope == Scope::LoadBalancer {
                    series.push(SourceSeries {
                        query_id: format!("lb{l}_m{m}"),
                        metric: *metric,
                        labels: naming::cloudwatch_labels(metric.series, lb, None),
                        rate_labels: None,
                        book: SeriesBook::default(),
                    });
                }
            }
        }
        CloudWatchSource {
            client,
            state,
            series,
            lookback_ms: i64::try_from(cfg.lookback.as_millis()).unwrap_or(i64::MAX),
            zero_fill_after_ms: i64::try_from(cfg.zero_fill_after.as_millis()).unwrap_or(i64::MAX),
            interval: cfg.interval,
            metrics,
            replicate: None,
        }
    }

    fn query(s: &SourceSeries) -> MetricDataQuery {
        let dim = |name: &str, value: &str| Dimension::builder().name(name).value(value).build();
        let mut metric = Metric::builder()
            .namespace(NAMESPACE)
            .metric_name(s.metric.cloudwatch);
        if let Some(lb) = s.labels.get("load_balancer") {
            metric = metric.dimensions(dim("LoadBalancer", lb));
        }
        if let Some(tg) = s.labels.get("target_group") {
            metric = metric.dimensions(dim("TargetGroup", tg));
        }
        MetricDataQuery::builder()
            .id(&s.query_id)
            .metric_stat(
                MetricStat::builder()
                    .metric(metric.build())
                    .period(PERIOD_MS as i32 / 1000)
                    .stat(s.metric.stat)
                    .build(),
            )
            .return_data(true)
            .build()
    }

    /// Every point of every query over `window`: query id → period start (ms) → value.
    async fn fetch(
        &self,
        window: Window,
    ) -> Result<HashMap<String, BTreeMap<i64, f64>>, PollError> {
        let mut out: HashMap<String, BTreeMap<i64, f64>> = HashMap::new();
        for chunk in self.series.chunks(MAX_QUERIES_PER_CALL) {
            let queries: Vec<MetricDataQuery> = chunk.iter().map(Self::query).collect();
            let mut next: Option<String> = None;
            loop {
                let result = self
                    .client
                    .get_metric_data()
                    .start_time(DateTime::from_millis(window.start_ms))
                    .end_time(DateTime::from_millis(window.end_ms))
                    .scan_by(ScanBy::TimestampAscending)
                    .set_metric_data_queries(Some(queries.clone()))
                    .set_next_token(next.take())
                    .send()
                    .await;
                let page = match result {
                    Ok(p) => {
                        self.metrics.request("ok");
                        p
                    }
                    Err(e) => {
                        self.metrics.request(error_outcome(&e));
                        return Err(PollError::GetMetricData(Box::new(e)));
                    }
                };
                for r in page.metric_data_results() {
                    let Some(id) = r.id() else { continue };
                    let points = out.entry(id.to_owned()).or_default();
                    for (t, v) in r.timestamps().iter().zip(r.values()) {
                        if let Ok(ms) = t.to_millis() {
                            points.insert(ms, *v);
                        }
                    }
                }
                match page.next_token() {
                    Some(t) if !t.is_empty() => next = Some(t.to_owned()),
                    _ => break,
                }
            }
        }
        Ok(out)
    }

    /// One poll at `now_ms`: reads the window ending at the last whole minute and writes what is new.
    /// Returns the number of samples written.
    pub async fn poll(&mut self, now_ms: i64) -> Result<usize, PollError> {
        let window = Window::ending_at(now_ms, self.lookback_ms);
        let fetched = self.fetch(window).await?;
        let empty = BTreeMap::new();
        let mut batch = WriteBatch::default();
        let mut copies: Vec<SeriesSamples> = Vec::new();
        let mut copy = |labels: &surge_model::Labels, samples: &[Sample]| {
            if self.replicate.is_some() && !samples.is_empty() {
                copies.push(SeriesSamples {
                    series: SeriesMeta::new(labels.clone()),
                    samples: samples.iter().copied().collect(),
                });
            }
        };
        let mut counts = PlanCounts::default();
        for s in &mut self.series {
            let points = fetched.get(&s.query_id).unwrap_or(&empty);
            let samples = s.book.plan(
                s.metric.kind,
                points,
                window,
                now_ms,
                self.zero_fill_after_ms,
                &mut counts,
            );
            if let Some(rate) = &s.rate_labels {
                let per_second: Vec<Sample> = samples
                    .iter()
                    .map(|p| Sample {
                        timestamp_ms: p.timestamp_ms,
                        value: p.value / (PERIOD_MS as f64 / 1000.0),
                    })
                    .collect();
                batch.push(rate, &per_second);
                copy(rate, &per_second);
            }
            batch.push(&s.labels, &samples);
            copy(&s.labels, &samples);
        }
        self.metrics.points(&counts);
        let written = batch.samples();
        batch
            .ingest(&self.state, Sender::Other, now_ms)
            .map_err(PollError::Ingest)?;
        self.metrics
            .written(naming::SOURCE_CLOUDWATCH, written as u64);
        if let Some(peers) = &self.replicate
            && !copies.is_empty()
        {
            peers.submit(Batch {
                tier: surge_model::Tier::Critical,
                series: copies,
                scrape_end_ms: now_ms,
            });
        }
        Ok(written)
    }

    /// Also writes every polled series to the peer replicas, so a replica that does not lead holds the
    /// ALB series too (an HPA may read the metrics APIs through any replica).
    pub fn with_replication(mut self, peers: Arc<PeerWriter>) -> Self {
        self.replicate = Some(peers);
        self
    }

    /// Polls every `interval` until `cancel`, while `leader` says this replica leads (`None`: always,
    /// e.g. one replica without leader election). A new leader polls at once: its window backfills the
    /// last `lookback`.
    pub async fn run(
        mut self,
        mut leader: Option<watch::Receiver<bool>>,
        cancel: CancellationToken,
    ) {
        let mut last_error: Option<String> = None;
        loop {
            if let Some(rx) = &mut leader {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = rx.wait_for(|leads| *leads) => if r.is_err() { return },
                }
            }
            match self.poll(surge_aggregator::now_ms()).await {
                Ok(n) => {
                    if last_error.take().is_some() {
                        tracing::info!(written = n, "ALB CloudWatch source recovered");
                    }
                    tracing::debug!(written = n, "ALB CloudWatch poll");
                }
                Err(e) => {
                    let text = error_chain(&e);
                    // One line per distinct failure, not one per poll.
                    if last_error.as_deref() != Some(text.as_str()) {
                        tracing::warn!(error = %text, "ALB CloudWatch source: poll failed; next try in {:?}", self.interval);
                        last_error = Some(text);
                    }
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(self.interval) => {}
            }
        }
    }
}

/// The bounded `outcome` label of a failed call.
fn error_outcome<E, R>(e: &aws_sdk_cloudwatch::error::SdkError<E, R>) -> &'static str {
    use aws_sdk_cloudwatch::error::SdkError;
    match e {
        SdkError::ConstructionFailure(_) => "construction_failure",
        SdkError::TimeoutError(_) => "timeout",
        SdkError::DispatchFailure(_) => "dispatch_failure",
        SdkError::ResponseError(_) => "response_error",
        SdkError::ServiceError(_) => "service_error",
        _ => "other",
    }
}

/// The error and its causes on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        text.push_str(": ");
        text.push_str(&s.to_string());
        src = s.source();
    }
    text
}
