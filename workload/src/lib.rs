//! Synthetic scrape targets.
//!
//! - [`DemoWorkload`]: what `surge run` scrapes with no config: a small web service ("web", three pods)
//!   whose request rate rises and falls on a fixed schedule, exposing a request counter, a latency
//!   histogram and a queue depth, like a real app's client library would.
//! - [`BenchTargets`]: N targets × M series behind one listener (`/t/<i>/metrics`), for `surge bench` and
//!   the end-to-end benchmarks, with a load step that can be triggered at a known instant.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The demo's load schedule: requests per second across all pods at `t` seconds since start.
///
/// A 120 s cycle: 30 s calm at 40 rps, a 15 s ramp to 400 rps, 30 s at peak, a 15 s ramp down, 30 s calm.
pub fn demo_load_rps(t: f64) -> f64 {
    const CALM: f64 = 40.0;
    const PEAK: f64 = 400.0;
    let c = t.rem_euclid(120.0);
    match c {
        c if c < 30.0 => CALM,
        c if c < 45.0 => CALM + (PEAK - CALM) * (c - 30.0) / 15.0,
        c if c < 75.0 => PEAK,
        c if c < 90.0 => PEAK - (PEAK - CALM) * (c - 75.0) / 15.0,
        _ => CALM,
    }
}

/// Histogram bucket bounds of the demo's latency histogram (seconds).
const BUCKETS: [f64; 8] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

/// Integrates the load schedule from 0 to `t`: the counter value for "all requests". Whole 120 s cycles
/// are counted once, so the cost does not grow with uptime.
fn demo_requests_until(t: f64) -> f64 {
    fn within_cycle(c: f64) -> f64 {
        let steps = (c / 0.1) as u64;
        let mut sum = 0.0;
        for i in 0..steps {
            sum += demo_load_rps(i as f64 * 0.1) * 0.1;
        }
        sum + demo_load_rps(steps as f64 * 0.1) * (c - steps as f64 * 0.1)
    }
    let cycles = (t / 120.0).floor();
    cycles * within_cycle(120.0) + within_cycle(t - cycles * 120.0)
}

/// Renders one demo pod's exposition at `t` seconds since start.
pub fn render_demo_pod(pod: usize, pods: usize, t: f64) -> String {
    let share = 1.0 / pods as f64;
    let total = demo_requests_until(t) * share;
    let load = demo_load_rps(t);
    // Latency grows with load: median 20 ms when calm, ~200 ms at peak.
    let median = 0.02 + 0.18 * ((load - 40.0) / 360.0).clamp(0.0, 1.0);
    let mut s = String::with_capacity(2048);
    let pod_name = format!("web-{pod}");
    s.push_str(
        "# HELP http_requests_total Requests handled.\n# TYPE http_requests_total counter\n",
    );
    let errors = (total * 0.01).floor();
    let _ = writeln!(
        s,
        "http_requests_total{{service=\"web\",pod=\"{pod_name}\",code=\"200\"}} {}",
        (total - errors).floor()
    );
    let _ = writeln!(
        s,
        "http_requests_total{{service=\"web\",pod=\"{pod_name}\",code=\"500\"}} {errors}"
    );
    s.push_str("# HELP http_request_duration_seconds Request latency.\n# TYPE http_request_duration_seconds histogram\n");
    let count = total.floor();
    for le in BUCKETS {
        // A log-normal-ish shape: the fraction below `le` from a logistic curve around the median.
        let frac = 1.0 / (1.0 + (median / le).powf(2.5));
        let _ = writeln!(
            s,
            "http_request_duration_seconds_bucket{{service=\"web\",pod=\"{pod_name}\",le=\"{le}\"}} {}",
            (count * frac).floor()
        );
    }
    let _ = writeln!(
        s,
        "http_request_duration_seconds_bucket{{service=\"web\",pod=\"{pod_name}\",le=\"+Inf\"}} {count}"
    );
    let _ = writeln!(
        s,
        "http_request_duration_seconds_sum{{service=\"web\",pod=\"{pod_name}\"}} {:.3}",
        count * median * 1.1
    );
    let _ = writeln!(
        s,
        "http_request_duration_seconds_count{{service=\"web\",pod=\"{pod_name}\"}} {count}"
    );
    s.push_str("# HELP queue_depth Jobs waiting.\n# TYPE queue_depth gauge\n");
    // The queue builds up once load passes what the pods drain (250 rps).
    let depth = ((load - 250.0).max(0.0) * 2.0 * share).round();
    let _ = writeln!(
        s,
        "queue_depth{{service=\"web\",pod=\"{pod_name}\",queue=\"jobs\"}} {depth}"
    );
    s.push_str("# TYPE inflight_requests gauge\n");
    let _ = writeln!(
        s,
        "inflight_requests{{service=\"web\",pod=\"{pod_name}\"}} {:.0}",
        load * share * median
    );
    s
}

/// The demo workload: `pods` HTTP servers on consecutive ports, each serving `/metrics`.
pub struct DemoWorkload {
    pub addrs: Vec<SocketAddr>,
}

#[derive(Clone)]
struct DemoPod {
    pod: usize,
    pods: usize,
    start: Instant,
}

impl DemoWorkload {
    /// Binds `pods` listeners on `ip` starting at `first_port` (0 = any free port) and serves until the
    /// runtime stops.
    pub async fn start(
        ip: std::net::IpAddr,
        first_port: u16,
        pods: usize,
    ) -> std::io::Result<Self> {
        let start = Instant::now();
        let mut addrs = Vec::new();
        for pod in 0..pods {
            let port = if first_port == 0 {
                0
            } else {
                first_port + pod as u16
            };
            let listener = tokio::net::TcpListener::bind((ip, port)).await?;
            addrs.push(listener.local_addr()?);
            let app = Router::new()
                .route("/metrics", get(demo_metrics))
                .with_state(DemoPod { pod, pods, start });
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::error!(error = %e, "demo workload server stopped");
                }
            });
        }
        Ok(DemoWorkload { addrs })
    }
}

async fn demo_metrics(State(p): State<DemoPod>) -> impl IntoResponse {
    let t = p.start.elapsed().as_secs_f64();
    (
        [(header::CONTENT_TYPE, TEXT_CONTENT_TYPE)],
        render_demo_pod(p.pod, p.pods, t),
    )
}

/// Synthetic targets for benchmarks: `targets` × `series` gauges and counters behind one listener.
pub struct BenchTargets {
    pub addr: SocketAddr,
    pub targets: usize,
    state: Arc<BenchState>,
}

struct BenchState {
    series: usize,
    /// The value every `load` gauge reports; `step` changes it at a known instant.
    load: AtomicU64,
    /// Unix ms at which the load last changed.
    step_at_ms: AtomicU64,
    scrapes: AtomicU64,
}

impl BenchTargets {
    pub async fn start(
        ip: std::net::IpAddr,
        targets: usize,
        series: usize,
    ) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind((ip, 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(BenchState {
            series,
            load: AtomicU64::new(10f64.to_bits()),
            step_at_ms: AtomicU64::new(0),
            scrapes: AtomicU64::new(0),
        });
        let app = Router::new()
            .route("/t/{i}/metrics", get(bench_metrics))
            .with_state(state.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "bench targets server stopped");
            }
        });
        Ok(BenchTargets {
            addr,
            targets,
            state,
        })
    }

    /// `host:port` and path of target `i`.
    pub fn target_url(&self, i: usize) -> String {
        format!("http://{}/t/{i}/metrics", self.addr)
    }

    /// Sets every target's `bench_load` gauge to `value` now, and returns the instant (Unix ms).
    pub fn step(&self, value: f64) -> u64 {
        let now = unix_ms();
        self.state.step_at_ms.store(now, Ordering::SeqCst);
        self.state.load.store(value.to_bits(), Ordering::SeqCst);
        now
    }

    pub fn scrapes(&self) -> u64 {
        self.state.scrapes.load(Ordering::Relaxed)
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

/// Renders bench target `i`: one `bench_load` gauge plus `series - 1` counters with 5 labels each.
pub fn render_bench_target(i: usize, series: usize, load: f64, tick: u64) -> String {
    let mut s = String::with_capacity(series * 110);
    s.push_str("# TYPE bench_load gauge\n");
    let _ = writeln!(s, "bench_load{{target=\"t{i}\"}} {load}");
    s.push_str("# TYPE bench_requests_total counter\n");
    for j in 1..series {
        let _ = writeln!(
            s,
            "bench_requests_total{{target=\"t{i}\",route=\"/api/v{}/r{j}\",method=\"GET\",code=\"200\",shard=\"{}\"}} {}",
            j % 3,
            j % 16,
            tick * (j as u64 % 7 + 1)
        );
    }
    s
}

async fn bench_metrics(
    State(st): State<Arc<BenchState>>,
    Path(i): Path<usize>,
) -> impl IntoResponse {
    let tick = st.scrapes.fetch_add(1, Ordering::Relaxed);
    let load = f64::from_bits(st.load.load(Ordering::SeqCst));
    (
        [(header::CONTENT_TYPE, TEXT_CONTENT_TYPE)],
        render_bench_target(i, st.series, load, tick),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_schedule_rises_and_falls() {
        assert_eq!(demo_load_rps(10.0), 40.0);
        assert_eq!(demo_load_rps(60.0), 400.0);
        assert!(demo_load_rps(37.5) > 40.0 && demo_load_rps(37.5) < 400.0);
        assert_eq!(demo_load_rps(130.0), 40.0);
    }

    #[test]
    fn demo_counter_is_monotonic_and_histogram_cumulative() {
        let a = demo_requests_until(50.0);
        let b = demo_requests_until(51.0);
        assert!((b - a - 400.0).abs() < 1.0, "{a} {b}");
        let text = render_demo_pod(0, 3, 60.0);
        let buckets: Vec<f64> = text
            .lines()
            .filter(|l| l.starts_with("http_request_duration_seconds_bucket"))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(buckets.len(), 9);
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn bench_target_has_the_asked_series_count() {
        let text = render_bench_target(3, 100, 1.0, 5);
        assert_eq!(text.lines().filter(|l| !l.starts_with('#')).count(), 100);
    }
}
