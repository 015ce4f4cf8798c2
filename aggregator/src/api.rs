//! The Prometheus HTTP API subset (`/api/v1/query`, `query_range`, `series`, `labels`,
//! `label/<name>/values`, and Grafana's flavour probes `status/buildinfo` and `metadata`), `/metrics`,
//! `/healthz` and `/readyz`.
//!
//! Parameters are read from the URL and, for `POST`, from an `application/x-www-form-urlencoded` body
//! (body first, as Go's `FormValue`). Times are RFC 3339 or Unix seconds; durations are Prometheus durations
//! or float seconds. Responses use Prometheus's JSON envelope, numbers formatted as Go's
//! `strconv.FormatFloat(v, 'f', -1, 64)`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use surge_model::Labels;

use surge_promql::lexer::parse_duration;
use surge_promql::{self as promql, Value, format_timestamp, format_value};
use surge_store::{Matcher, Series};

use crate::AggregatorState;
use crate::error::HttpError;
use crate::ingest::write_handler;

/// The aggregator's routes. Extend with `router(state).merge(other)`.
pub fn router(state: Arc<AggregatorState>) -> Router {
    Router::new()
        .route("/api/v1/write", post(write_handler))
        .route(crate::peers::DUMP_PATH, get(crate::peers::dump_handler))
        .route("/api/v1/query", get(query).post(query))
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/labels", get(labels).post(labels))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route("/api/v1/status/buildinfo", get(buildinfo))
        .route("/api/v1/metadata", get(metadata))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// Query parameters from the URL and a form body.
#[derive(Debug, Default)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &S) -> Result<Self, HttpError> {
        let url: Vec<(String, String)> = Query::<Vec<(String, String)>>::try_from_uri(req.uri())
            .map(|q| q.0)
            .map_err(|e| HttpError::BadData(format!("invalid query string: {}", e.body_text())))?;
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if req.method() == Method::POST && is_form {
            let Form(mut body) = Form::<Vec<(String, String)>>::from_request(req, state)
                .await
                .map_err(|e| HttpError::BadData(format!("invalid form body: {}", e.body_text())))?;
            body.extend(url);
            return Ok(Params(body));
        }
        Ok(Params(url))
    }
}

/// Parses a Prometheus API time: Unix seconds (float) or RFC 3339, to milliseconds.
pub fn parse_time(s: &str) -> Option<i64> {
    if let Ok(f) = s.parse::<f64>() {
        if !f.is_finite() {
            return None;
        }
        let secs = f.trunc();
        let frac = ((f - secs) * 1000.0).round();
        return Some(
            (secs as i64)
                .saturating_mul(1000)
                .saturating_add(frac as i64),
        );
    }
    parse_rfc3339(s)
}

/// RFC 3339 (`2024-01-02T03:04:05.678Z`, `…+02:00`) to milliseconds. A timestamp needs its offset
/// (`Z` or `±hh:mm`), as Go's `time.RFC3339Nano` does.
fn parse_rfc3339(s: &str) -> Option<i64> {
    s.parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond())
}

/// Parses a Prometheus API duration: float seconds or a duration string, to milliseconds.
pub fn parse_step(s: &str) -> Option<i64> {
    if let Ok(f) = s.parse::<f64>() {
        let ms = f * 1000.0;
        if !ms.is_finite() || ms.abs() > 9.2e18 {
            return None;
        }
        return Some(ms as i64);
    }
    parse_duration(s)
}

fn time_param(p: &Params, name: &str, default: Option<i64>) -> Result<i64, HttpError> {
    match (p.get(name), default) {
        (None | Some(""), Some(d)) => Ok(d),
        (v, _) => {
            let v = v.unwrap_or("");
            parse_time(v).ok_or_else(|| {
                HttpError::BadData(format!(
                    "invalid parameter {name:?}: cannot parse {v:?} to a valid timestamp"
                ))
            })
        }
    }
}

fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn labels_json(out: &mut String, l: &Labels) {
    out.push('{');
    for (i, lab) in l.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_str(out, &lab.name);
        out.push(':');
        json_str(out, &lab.value);
    }
    out.push('}');
}

fn point_json(out: &mut String, t_ms: i64, v: f64) {
    out.push('[');
    out.push_str(&format_timestamp(t_ms));
    out.push_str(",\"");
    out.push_str(&format_value(v));
    out.push_str("\"]");
}

fn success(data: &str) -> Response {
    let mut body = String::with_capacity(data.len() + 32);
    body.push_str("{\"status\":\"success\",\"data\":");
    body.push_str(data);
    body.push('}');
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Renders an instant-query value as Prometheus's `data` object.
pub fn value_json(v: &Value, t_ms: i64) -> String {
    let mut out = String::with_capacity(256);
    match v {
        Value::Scalar(x) => {
            out.push_str("{\"resultType\":\"scalar\",\"result\":");
            point_json(&mut out, t_ms, *x);
        }
        Value::String(s) => {
            out.push_str("{\"resultType\":\"string\",\"result\":[");
            out.push_str(&format_timestamp(t_ms));
            out.push(',');
            json_str(&mut out, s);
            out.push(']');
        }
        Value::Vector(v) => {
            out.push_str("{\"resultType\":\"vector\",\"result\":[");
            for (i, s) in v.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                labels_json(&mut out, &s.metric.to_labels());
                out.push_str(",\"value\":");
                point_json(&mut out, t_ms, s.value);
                out.push('}');
            }
            out.push(']');
        }
        Value::Matrix(m) => {
            matrix_json(&mut out, m);
            return out;
        }
    }
    out.push('}');
    out
}

fn matrix_json(out: &mut String, m: &[promql::RangeSeries]) {
    out.push_str("{\"resultType\":\"matrix\",\"result\":[");
    for (i, s) in m.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"metric\":");
        labels_json(out, &s.labels);
        out.push_str(",\"values\":[");
        for (j, p) in s.points.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            point_json(out, p.timestamp_ms, p.value);
        }
        out.push_str("]}");
    }
    out.push_str("]}");
}

fn parse_query(p: &Params) -> Result<promql::Expr, HttpError> {
    promql::parse(p.get("query").unwrap_or(""))
        .map_err(|e| HttpError::BadData(format!("invalid parameter \"query\": {e}")))
}

/// The query API's limits in force: a slot per concurrent query, the deadline and the sample bound.
#[derive(Debug)]
pub(crate) struct QueryGate {
    pub(crate) limits: crate::QueryLimits,
    slots: Arc<tokio::sync::Semaphore>,
}

impl QueryGate {
    pub(crate) fn new(limits: crate::QueryLimits) -> QueryGate {
        QueryGate {
            slots: Arc::new(tokio::sync::Semaphore::new(limits.max_concurrent.max(1))),
            limits,
        }
    }
}

/// Raises the evaluation's cancel flag when dropped: the deadline passed, or the client went away and
/// axum dropped the handler.
struct CancelOnDrop(promql::Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Runs one evaluation off the async threads (a blocking-pool thread), at most `max_concurrent` at a
/// time, under the query deadline: waiting for a slot counts against it, and when it passes the
/// evaluator's cancel flag is raised and the answer is 503 `timeout`. One heavy query therefore
/// neither stalls the accept path nor other requests.
async fn evaluate<T: Send + 'static>(
    st: &Arc<AggregatorState>,
    eval: impl FnOnce(&surge_store::SeriesCache, &promql::EvalOptions) -> Result<T, promql::EvalError>
    + Send
    + 'static,
) -> Result<T, HttpError> {
    let gate = st.query_gate();
    let deadline = tokio::time::Instant::now() + gate.limits.timeout;
    let timed_out = |st: &AggregatorState, what: &str| {
        st.query_metrics.refused("timeout");
        HttpError::Timeout(format!(
            "query timed out in {what} (the aggregator's query timeout is {:?})",
            gate.limits.timeout
        ))
    };
    let slot = match tokio::time::timeout_at(deadline, gate.slots.clone().acquire_owned()).await {
        Ok(Ok(slot)) => slot,
        Ok(Err(_)) => return Err(HttpError::Internal("query slots closed".into())),
        Err(_) => return Err(timed_out(st, "queue (too many concurrent queries)")),
    };
    let cancel = promql::Cancel::new();
    let _cancel_on_drop = CancelOnDrop(cancel.clone());
    let opts = promql::EvalOptions {
        max_samples: gate.limits.max_samples,
        cancel: Some(cancel.clone()),
        ..st.eval_options()
    };
    let cache = st.cache().clone();
    let mut task = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        eval(&cache, &opts)
    });
    let joined = tokio::select! {
        j = &mut task => j,
        _ = tokio::time::sleep_until(deadline) => {
            cancel.cancel();
            task.await
        }
    };
    match joined {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(promql::EvalError::Cancelled)) => Err(timed_out(st, "expression evaluation")),
        Ok(Err(e)) => {
            match &e {
                promql::EvalError::TooManySamples { .. } => {
                    st.query_metrics.refused("too_many_samples")
                }
                promql::EvalError::TooManySeries { .. } => {
                    st.query_metrics.refused("too_many_series")
                }
                _ => {}
            }
            Err(match e {
                promql::EvalError::RangeQueryType(_) => HttpError::BadData(e.to_string()),
                e => HttpError::Execution(e.to_string()),
            })
        }
        Err(e) => {
            tracing::error!(error = %e, "query evaluation task failed");
            Err(HttpError::Internal("query evaluation failed".into()))
        }
    }
}

async fn query(State(st): State<Arc<AggregatorState>>, p: Params) -> Result<Response, HttpError> {
    let started = Instant::now();
    let t = time_param(&p, "time", Some(crate::now_ms()))?;
    let expr = parse_query(&p)?;
    let v = evaluate(&st, move |cache, opts| {
        promql::eval_instant(cache, &expr, t, opts)
    })
    .await?;
    let body = value_json(&v, t);
    st.query_metrics
        .observe("query", started.elapsed().as_secs_f64());
    Ok(success(&body))
}

/// Prometheus's limit on points per series of a range query.
const MAX_POINTS: i64 = 11_000;

async fn query_range(
    State(st): State<Arc<AggregatorState>>,
    p: Params,
) -> Result<Response, HttpError> {
    let started = Instant::now();
    let start = time_param(&p, "start", None)?;
    let end = time_param(&p, "end", None)?;
    if end < start {
        return Err(HttpError::BadData(
            "end timestamp must not be before start time".into(),
        ));
    }
    let step_s = p.get("step").unwrap_or("");
    let step = parse_step(step_s).ok_or_else(|| {
        HttpError::BadData(format!(
            "invalid parameter \"step\": cannot parse {step_s:?} to a valid duration"
        ))
    })?;
    if step <= 0 {
        return Err(HttpError::BadData(
            "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
        ));
    }
    if (end - start) / step > MAX_POINTS {
        return Err(HttpError::BadData(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".into(),
        ));
    }
    let expr = parse_query(&p)?;
    let m = evaluate(&st, move |cache, opts| {
        promql::eval_range(cache, &expr, start, end, step, opts)
    })
    .await?;
    let mut body = String::with_capacity(256);
    matrix_json(&mut body, &m);
    st.query_metrics
        .observe("query_range", started.elapsed().as_secs_f64());
    Ok(success(&body))
}

fn matchers(p: &Params) -> Result<Vec<Vec<Matcher>>, HttpError> {
    p.all("match[]")
        .map(|m| {
            promql::parse_selector(m)
                .map_err(|e| HttpError::BadData(format!("invalid parameter \"match[]\": {e}")))
        })
        .collect()
}

/// Series matching any of the `match[]` selectors with a sample in `[start, end]` when given.
fn matching_series(st: &AggregatorState, p: &Params) -> Result<Vec<Arc<Series>>, HttpError> {
    let start = time_param(p, "start", Some(i64::MIN))?;
    let end = time_param(p, "end", Some(i64::MAX))?;
    let mut out: Vec<Arc<Series>> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for ms in matchers(p)? {
        let sel = st
            .cache()
            .select(&ms, st.query_opts.max_series)
            .map_err(|e| HttpError::Execution(e.to_string()))?;
        for s in sel {
            let in_range = (start == i64::MIN && end == i64::MAX)
                || s.latest_at(end).is_some_and(|x| x.timestamp_ms >= start);
            if in_range && seen.insert(s.id()) {
                out.push(s);
            }
        }
    }
    Ok(out)
}

fn string_list(v: &[String]) -> String {
    let mut out = String::from("[");
    for (i, s) in v.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_str(&mut out, s);
    }
    out.push(']');
    out
}

async fn series(State(st): State<Arc<AggregatorState>>, p: Params) -> Result<Response, HttpError> {
    let started = Instant::now();
    if p.get("match[]").is_none() {
        return Err(HttpError::BadData("no match[] parameter provided".into()));
    }
    let mut list: Vec<Labels> = matching_series(&st, &p)?
        .iter()
        .map(|s| s.labels().clone())
        .collect();
    list.sort();
    let mut out = String::from("[");
    for (i, l) in list.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        labels_json(&mut out, l);
    }
    out.push(']');
    st.query_metrics
        .observe("series", started.elapsed().as_secs_f64());
    Ok(success(&out))
}

async fn labels(State(st): State<Arc<AggregatorState>>, p: Params) -> Result<Response, HttpError> {
    let started = Instant::now();
    let names = if p.get("match[]").is_some() {
        let mut set = std::collections::BTreeSet::new();
        for s in matching_series(&st, &p)? {
            for l in s.labels().iter() {
                set.insert(l.name.to_string());
            }
        }
        set.into_iter().collect()
    } else {
        st.cache().label_names()
    };
    st.query_metrics
        .observe("labels", started.elapsed().as_secs_f64());
    Ok(success(&string_list(&names)))
}

async fn label_values(
    State(st): State<Arc<AggregatorState>>,
    Path(name): Path<String>,
    p: Params,
) -> Result<Response, HttpError> {
    let started = Instant::now();
    if !surge_model::is_valid_label_name(&name) {
        return Err(HttpError::BadData(format!("invalid label name: {name:?}")));
    }
    let values = if p.get("match[]").is_some() {
        let mut set = std::collections::BTreeSet::new();
        for s in matching_series(&st, &p)? {
            if let Some(v) = s.labels().get(&name) {
                set.insert(v.to_string());
            }
        }
        set.into_iter().collect()
    } else {
        st.cache().label_values(&name)
    };
    st.query_metrics
        .observe("label_values", started.elapsed().as_secs_f64());
    Ok(success(&string_list(&values)))
}

/// The Prometheus release whose query semantics surge's API follows (and which the differential test
/// compares against): what `buildinfo` reports as `version`, so Grafana treats the data source as a
/// Prometheus of that release and enables the features it has.
pub const PROMETHEUS_COMPATIBLE_VERSION: &str = "2.42.0";

/// `GET /api/v1/status/buildinfo` in Prometheus's shape. Grafana reads `version` to pick its
/// Prometheus features; the other fields say what is really answering.
async fn buildinfo() -> Response {
    let data = serde_json::json!({
        "version": PROMETHEUS_COMPATIBLE_VERSION,
        "revision": concat!("surge-", env!("CARGO_PKG_VERSION")),
        "branch": "surge",
        "buildUser": "surge",
        "buildDate": "",
        "goVersion": "none (surge is written in Rust)",
    });
    success(&data.to_string())
}

/// `GET /api/v1/metadata`: metric TYPE/HELP/UNIT by name. surge's store keeps no metadata (remote-write
/// 1.0 metadata is skipped on ingest), so the answer is Prometheus's for a server without any: an empty
/// object. `limit`, `limit_per_metric` and `metric` are validated as Prometheus does.
async fn metadata(p: Params) -> Result<Response, HttpError> {
    for name in ["limit", "limit_per_metric"] {
        if let Some(v) = p.get(name).filter(|v| !v.is_empty())
            && v.parse::<i64>().is_err()
        {
            return Err(HttpError::BadData(format!("{name} must be a number")));
        }
    }
    Ok(success("{}"))
}

async fn metrics(State(st): State<Arc<AggregatorState>>) -> Response {
    let Some(registry) = st.registry() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics registry not published yet\n",
        )
            .into_response();
    };
    let mut body = String::new();
    if prometheus_client::encoding::text::encode(&mut body, registry).is_err() {
        return HttpError::Internal("encoding metrics failed".into()).into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn readyz(State(st): State<Arc<AggregatorState>>) -> Response {
    if st.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_steps() {
        assert_eq!(parse_time("1700000000"), Some(1_700_000_000_000));
        assert_eq!(parse_time("1700000000.123"), Some(1_700_000_000_123));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Some(1_700_000_000_000));
        assert_eq!(
            parse_time("2023-11-14T22:13:20.5Z"),
            Some(1_700_000_000_500)
        );
        assert_eq!(
            parse_time("2023-11-15T00:13:20+02:00"),
            Some(1_700_000_000_000)
        );
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_time("yesterday"), None);
        // An offset is required; a date alone is not a time.
        assert_eq!(parse_time("2023-11-14T22:13:20"), None);
        assert_eq!(parse_time("2023-11-14"), None);
        assert_eq!(parse_step("15s"), Some(15_000));
        assert_eq!(parse_step("0.5"), Some(500));
        assert_eq!(parse_step("1m30s"), Some(90_000));
    }
}
