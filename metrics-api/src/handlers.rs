//! Routes, authentication, discovery, OpenAPI and the metric value handlers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde_json::{Value as Json, json};

use super::metrics::ApiKind;
use super::quantity::{format_quantity, format_rfc3339};
use super::rules::{CustomRule, ResourceKind, evaluate, narrow};
use super::selector::{self, Requirement, SelectorOp};
use super::status::ApiError;
use super::tls::ClientIdentity;
use super::{AuthPolicy, MetricsApi};
use surge_store::{MatchOp, Matcher};

const EXTERNAL: &str = "external.metrics.k8s.io";
const CUSTOM: &str = "custom.metrics.k8s.io";
const CUSTOM_VERSIONS: [&str; 2] = ["v1beta2", "v1beta1"];

/// The metrics APIs' routes, without a socket. Requests are authenticated from their
/// [`ClientIdentity`] extension (set per connection by the TLS loop); `/healthz`, `/livez` and `/readyz`
/// are open.
pub fn router(api: Arc<MetricsApi>) -> Router {
    let protected = Router::new()
        .route("/apis", any(apis_root))
        .route("/apis/", any(apis_root))
        .route("/apis/{*rest}", any(apis_rest))
        .route("/openapi/v2", any(openapi_v2))
        .route("/openapi/v3", any(openapi_v3))
        .fallback(|| async { ApiError::NoRoute })
        .layer(middleware::from_fn_with_state(api.clone(), authenticate));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .merge(protected)
        .layer(middleware::from_fn_with_state(api.clone(), observe))
        .with_state(api)
}

fn classify(path: &str) -> ApiKind {
    let segs = path.trim_start_matches('/').split('/').count();
    if path.starts_with("/apis/external.metrics.k8s.io/") && segs > 3 {
        ApiKind::External
    } else if path.starts_with("/apis/custom.metrics.k8s.io/") && segs > 3 {
        ApiKind::Custom
    } else if path == "/apis" || path.starts_with("/apis/") {
        ApiKind::Discovery
    } else if path.starts_with("/openapi/") {
        ApiKind::OpenApi
    } else if matches!(path, "/healthz" | "/livez" | "/readyz") {
        ApiKind::Health
    } else {
        ApiKind::Other
    }
}

async fn observe(State(api): State<Arc<MetricsApi>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let kind = classify(req.uri().path());
    let resp = next.run(req).await;
    let kind = resp.extensions().get::<ApiKind>().copied().unwrap_or(kind);
    api.metrics.observe(
        kind,
        resp.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    resp
}

async fn authenticate(
    State(api): State<Arc<MetricsApi>>,
    mut req: Request,
    next: Next,
) -> Response {
    let allowed = match &api.auth {
        AuthPolicy::Open => {
            // Nobody vouches for these headers: never pass them on.
            req.headers_mut().remove("x-remote-user");
            req.headers_mut().remove("x-remote-group");
            true
        }
        AuthPolicy::DenyAll => false,
        AuthPolicy::RequestHeader { allowed_names } => {
            req.extensions().get::<ClientIdentity>().is_some_and(|id| {
                allowed_names.is_empty()
                    || id
                        .common_name
                        .as_ref()
                        .is_some_and(|cn| allowed_names.iter().any(|a| a == cn))
            })
        }
    };
    if !allowed {
        return ApiError::Unauthorized.into_response();
    }
    if tracing::enabled!(tracing::Level::DEBUG) {
        let user = req
            .headers()
            .get("x-remote-user")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("system:anonymous");
        tracing::debug!(user, path = %req.uri().path(), "kubernetes metrics API request");
    }
    next.run(req).await
}

async fn readyz(State(api): State<Arc<MetricsApi>>) -> Response {
    if api.cache.is_ready() {
        (StatusCode::OK, "ok").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}

fn json_response(v: &Json) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

/// Whether `Accept` allows plain JSON. Aggregated discovery (`as=APIGroupDiscoveryList`) is not served, so
/// a client asking only for it gets 406 and falls back to the legacy documents.
fn accepts_json(headers: &HeaderMap) -> bool {
    let mut any = false;
    for v in headers.get_all(header::ACCEPT) {
        let Ok(v) = v.to_str() else { continue };
        for range in v.split(',') {
            any = true;
            let mut parts = range.split(';').map(str::trim);
            let mime = parts.next().unwrap_or("").to_ascii_lowercase();
            let typed = parts.any(|p| p.to_ascii_lowercase().starts_with("as="));
            if !typed && matches!(mime.as_str(), "application/json" | "application/*" | "*/*") {
                return true;
            }
        }
    }
    !any
}

fn group_version(group: &str, version: &str) -> Json {
    json!({"groupVersion": format!("{group}/{version}"), "version": version})
}

fn api_group(group: &str) -> Json {
    let versions: Vec<Json> = if group == CUSTOM {
        CUSTOM_VERSIONS
            .iter()
            .map(|v| group_version(group, v))
            .collect()
    } else {
        vec![group_version(group, "v1beta1")]
    };
    let preferred = versions.first().cloned().unwrap_or(Json::Null);
    json!({"name": group, "versions": versions, "preferredVersion": preferred})
}

async fn apis_root(method: Method, headers: HeaderMap) -> Result<Response, ApiError> {
    if method != Method::GET {
        return Err(ApiError::MethodNotAllowed);
    }
    if !accepts_json(&headers) {
        return Err(ApiError::NotAcceptable);
    }
    Ok(json_response(&json!({
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [api_group(CUSTOM), api_group(EXTERNAL)],
    })))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Query parameters by name (the first value wins).
struct Params(Vec<(String, String)>);

impl Params {
    fn of(uri: &Uri) -> Result<Params, ApiError> {
        Query::<Vec<(String, String)>>::try_from_uri(uri)
            .map(|q| Params(q.0))
            .map_err(|e| ApiError::BadRequest(format!("invalid query string: {}", e.body_text())))
    }

    fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

async fn apis_rest(
    State(api): State<Arc<MetricsApi>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if method != Method::GET {
        return Err(ApiError::MethodNotAllowed);
    }
    let path = uri
        .path()
        .trim_start_matches("/apis/")
        .trim_end_matches('/');
    let segs: Vec<String> = path.split('/').map(percent_decode).collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match segs.as_slice() {
        [group] | [group, _]
            if !accepts_json(&headers) && (*group == CUSTOM || *group == EXTERNAL) =>
        {
            Err(ApiError::NotAcceptable)
        }
        [group] if *group == CUSTOM || *group == EXTERNAL => {
            let mut g = api_group(group);
            g["kind"] = json!("APIGroup");
            g["apiVersion"] = json!("v1");
            Ok(json_response(&g))
        }
        [EXTERNAL, "v1beta1"] => Ok(json_response(&external_resources(&api).await)),
        [CUSTOM, version] if CUSTOM_VERSIONS.contains(version) => {
            Ok(json_response(&custom_resources(&api, version)))
        }
        [EXTERNAL, "v1beta1", "namespaces", ns, metric] => {
            external_value(&api, ns, metric, &uri, &headers).await
        }
        [CUSTOM, version, rest @ ..] if CUSTOM_VERSIONS.contains(version) => {
            let q = match rest {
                ["namespaces", ns, "metrics", metric] => ObjectQuery {
                    namespace: None,
                    resource: "namespaces",
                    name: Some(ns),
                    metric,
                },
                ["namespaces", ns, resource, name, metric] => ObjectQuery {
                    namespace: Some(ns),
                    resource,
                    name: (*name != "*").then_some(*name),
                    metric,
                },
                [resource, name, metric] => ObjectQuery {
                    namespace: None,
                    resource,
                    name: (*name != "*").then_some(*name),
                    metric,
                },
                _ => return Err(ApiError::NoRoute),
            };
            custom_value(&api, version, &q, &Params::of(&uri)?)
        }
        _ => Err(ApiError::NoRoute),
    }
}

async fn external_resources(api: &MetricsApi) -> Json {
    let mut resources: Vec<Json> = api
        .external
        .iter()
        .map(|r| {
            json!({"name": r.name, "singularName": "", "namespaced": true,
                   "kind": "ExternalMetricValueList", "verbs": ["get"]})
        })
        .collect();
    if let Some(f) = &api.forwarder {
        for r in f.resources().await {
            let name = r.get("name").and_then(Json::as_str).unwrap_or("");
            if !name.is_empty() && !api.external.iter().any(|e| e.name == name) {
                resources.push(r);
            }
        }
    }
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": format!("{EXTERNAL}/v1beta1"),
        "resources": resources,
    })
}

fn custom_resources(api: &MetricsApi, version: &str) -> Json {
    let resources: Vec<Json> = api
        .custom
        .iter()
        .map(|r| {
            json!({"name": format!("{}/{}", r.resource.resource, r.name), "singularName": "",
                   "namespaced": r.resource.namespaced, "kind": "MetricValueList", "verbs": ["get"]})
        })
        .collect();
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": format!("{CUSTOM}/{version}"),
        "resources": resources,
    })
}

async fn openapi_v2(method: Method) -> Result<Response, ApiError> {
    if method != Method::GET {
        return Err(ApiError::MethodNotAllowed);
    }
    Ok(json_response(&json!({
        "swagger": "2.0",
        "info": {"title": "surge metrics APIs", "version": env!("CARGO_PKG_VERSION")},
        "paths": {},
        "definitions": {},
    })))
}

async fn openapi_v3(method: Method) -> Result<Response, ApiError> {
    if method != Method::GET {
        return Err(ApiError::MethodNotAllowed);
    }
    Ok(json_response(&json!({"paths": {}})))
}

fn bad_selector(param: &str, value: &str, e: String) -> ApiError {
    ApiError::BadRequest(format!("invalid {param} {value:?}: {e}"))
}

fn find_external<'a>(api: &'a MetricsApi, metric: &str) -> Option<&'a super::rules::ExternalRule> {
    // Some clients lower-case resource names; an exact match wins.
    api.external.iter().find(|r| r.name == metric).or_else(|| {
        api.external
            .iter()
            .find(|r| r.name.eq_ignore_ascii_case(metric))
    })
}

async fn external_value(
    api: &MetricsApi,
    ns: &str,
    metric: &str,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let Some(rule) = find_external(api, metric) else {
        if let Some(f) = &api.forwarder {
            let pq = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
            let mut resp = f.forward(pq, headers).await;
            resp.extensions_mut().insert(ApiKind::ExternalForward);
            return Ok(resp);
        }
        return Err(ApiError::NotFound {
            metric: metric.to_owned(),
            what: format!("namespace {ns} (external.metrics.k8s.io)"),
        });
    };
    let params = Params::of(uri)?;
    let sel = params.get("labelSelector");
    let matchers =
        selector::selector_matchers(sel).map_err(|e| bad_selector("labelSelector", sel, e))?;
    let expr = narrow(&rule.expr, &matchers);
    let now = crate::now_ms();
    let ev = evaluate(
        &api.cache,
        &api.eval,
        &expr,
        now,
        &format!("external metric {:?}", rule.name),
    )?;
    let timestamp = format_rfc3339(now);
    let had_samples = !ev.samples.is_empty();
    let mut items: Vec<Json> = ev
        .samples
        .iter()
        .filter_map(|s| {
            let value = format_quantity(s.value)?;
            let labels: BTreeMap<&str, &str> =
                s.labels.iter().map(|l| (&*l.name, &*l.value)).collect();
            Some(json!({
                "metricName": rule.name,
                "metricLabels": if labels.is_empty() { Json::Null } else { json!(labels) },
                "timestamp": timestamp,
                "value": value,
            }))
        })
        .collect();
    if items.is_empty() {
        if had_samples {
            return Err(ApiError::Unavailable(format!(
                "external metric {:?} evaluated to a value that is not a number",
                rule.name
            )));
        }
        // Known but idle: an empty list is an error for the HPA, zero is the truth.
        items.push(json!({
            "metricName": rule.name,
            "metricLabels": Json::Null,
            "timestamp": timestamp,
            "value": "0",
        }));
    }
    Ok(json_response(&json!({
        "kind": "ExternalMetricValueList",
        "apiVersion": format!("{EXTERNAL}/v1beta1"),
        "metadata": {},
        "items": items,
    })))
}

/// A custom metrics request: one object (`name`) or all matching the label selector (`None`, `*`).
struct ObjectQuery<'a> {
    namespace: Option<&'a str>,
    resource: &'a str,
    name: Option<&'a str>,
    metric: &'a str,
}

/// A parsed selector as a `metav1.LabelSelector`.
fn label_selector_json(reqs: &[Requirement]) -> Json {
    if reqs.is_empty() {
        return Json::Null;
    }
    let mut match_labels = serde_json::Map::new();
    let mut exprs = Vec::new();
    for r in reqs {
        let first = r.values.first().cloned().unwrap_or_default();
        let (op, values) = match r.op {
            SelectorOp::Equals => {
                match_labels.insert(r.key.clone(), json!(first));
                continue;
            }
            SelectorOp::NotEquals => ("NotIn", vec![first]),
            SelectorOp::In => ("In", r.values.clone()),
            SelectorOp::NotIn => ("NotIn", r.values.clone()),
            SelectorOp::Exists => ("Exists", Vec::new()),
            SelectorOp::DoesNotExist => ("DoesNotExist", Vec::new()),
            SelectorOp::GreaterThan => ("Gt", r.values.clone()),
            SelectorOp::LessThan => ("Lt", r.values.clone()),
        };
        let mut e = json!({"key": r.key, "operator": op});
        if !values.is_empty() {
            e["values"] = json!(values);
        }
        exprs.push(e);
    }
    let mut out = serde_json::Map::new();
    if !match_labels.is_empty() {
        out.insert("matchLabels".into(), Json::Object(match_labels));
    }
    if !exprs.is_empty() {
        out.insert("matchExpressions".into(), Json::Array(exprs));
    }
    Json::Object(out)
}

fn equal(name: &str, value: &str) -> Result<Matcher, ApiError> {
    Matcher::new(MatchOp::Equal, name, value).map_err(|e| ApiError::Internal(e.to_string()))
}

fn find_custom<'a>(api: &'a MetricsApi, q: &ObjectQuery<'_>) -> Option<&'a CustomRule> {
    let matches = |r: &&CustomRule| r.resource.matches(q.resource);
    api.custom
        .iter()
        .filter(matches)
        .find(|r| r.name == q.metric)
        .or_else(|| {
            api.custom
                .iter()
                .filter(matches)
                .find(|r| r.name.eq_ignore_ascii_case(q.metric))
        })
}

fn custom_value(
    api: &MetricsApi,
    version: &str,
    q: &ObjectQuery<'_>,
    params: &Params,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::NotFound {
        metric: q.metric.to_owned(),
        what: match (q.namespace, q.name) {
            (Some(ns), Some(n)) => format!("{} {ns}/{n}", q.resource),
            (None, Some(n)) => format!("{} {n}", q.resource),
            (_, None) => format!("{} matching the selector", q.resource),
        },
    };
    let Some(rule) = find_custom(api, q) else {
        return Err(not_found());
    };
    let metric_sel = params.get("metricLabelSelector");
    let metric_reqs = selector::parse(metric_sel)
        .map_err(|e| bad_selector("metricLabelSelector", metric_sel, e))?;
    let mut matchers = selector::to_matchers(&metric_reqs)
        .map_err(|e| bad_selector("metricLabelSelector", metric_sel, e))?;
    if q.name.is_none() && !rule.ignore_label_selector {
        let sel = params.get("labelSelector");
        matchers.extend(
            selector::selector_matchers(sel).map_err(|e| bad_selector("labelSelector", sel, e))?,
        );
    }
    // Objects of a namespaced resource live in the request's namespace.
    let namespace = q.namespace.filter(|_| rule.resource.namespaced);
    if let Some(ns) = namespace {
        matchers.push(equal("namespace", ns)?);
    }
    if let Some(name) = q.name {
        matchers.push(equal(&rule.object_label, name)?);
    }
    let expr = narrow(&rule.expr, &matchers);
    let now = crate::now_ms();
    let what = format!(
        "custom metric {:?} of {}",
        rule.name, rule.resource.resource
    );
    let ev = evaluate(&api.cache, &api.eval, &expr, now, &what)?;
    // One value per object; several series of one object are summed.
    let mut per_object: BTreeMap<String, f64> = BTreeMap::new();
    for s in &ev.samples {
        let Some(obj) = s.labels.get(&rule.object_label) else {
            continue;
        };
        if let Some(ns) = namespace
            && s.labels.get("namespace").is_some_and(|n| n != ns)
        {
            continue;
        }
        *per_object.entry(obj.to_owned()).or_insert(0.0) += s.value;
    }
    let timestamp = format_rfc3339(now);
    let selector = label_selector_json(&metric_reqs);
    let items: Vec<Json> = per_object
        .iter()
        .filter_map(|(name, v)| {
            let value = format_quantity(*v)?;
            Some(item(
                version,
                &rule.resource,
                namespace,
                name,
                rule,
                &timestamp,
                &value,
                &selector,
            ))
        })
        .collect();
    if q.name.is_some() && items.is_empty() {
        return Err(not_found());
    }
    Ok(json_response(&json!({
        "kind": "MetricValueList",
        "apiVersion": format!("{CUSTOM}/{version}"),
        "metadata": {},
        "items": items,
    })))
}

#[allow(
    clippy::too_many_arguments,
    reason = "one item's fields, named at the single call site"
)]
fn item(
    version: &str,
    resource: &ResourceKind,
    namespace: Option<&str>,
    name: &str,
    rule: &CustomRule,
    timestamp: &str,
    value: &str,
    selector: &Json,
) -> Json {
    let mut described =
        json!({"kind": resource.kind, "name": name, "apiVersion": resource.api_version});
    if let Some(ns) = namespace {
        described["namespace"] = json!(ns);
    }
    if version == "v1beta1" {
        json!({
            "describedObject": described,
            "metricName": rule.name,
            "timestamp": timestamp,
            "window": rule.window_s,
            "value": value,
            "selector": selector,
        })
    } else {
        json!({
            "describedObject": described,
            "metric": {"name": rule.name, "selector": selector},
            "timestamp": timestamp,
            "windowSeconds": rule.window_s,
            "value": value,
        })
    }
}
