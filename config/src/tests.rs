//! Loading tests: whole documents in, whole configs or whole error lists out.

use std::time::Duration;

use surge_model::Tier;

use super::*;

fn load(text: &str) -> Result<Config, ConfigErrors> {
    load_str(text, "surge.yaml", &MapEnv::new())
}

#[track_caller]
fn errors(text: &str) -> Vec<String> {
    match load(text) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e.to_lines(),
    }
}

#[test]
fn empty_document_is_all_defaults() {
    for text in ["", "# nothing\n", "agent:\naggregator:\n", "{}"] {
        let c = load(text).unwrap();
        assert_eq!(c, Config::default(), "{text:?}");
    }
}

#[test]
fn defaults_are_the_documented_ones() {
    let c = Config::default();
    assert_eq!(c.agent.listen.to_string(), "0.0.0.0:9092");
    assert_eq!(c.agent.shutdown_timeout, Duration::from_secs(5));
    assert_eq!(c.agent.tiers.critical.interval, Duration::from_secs(1));
    assert_eq!(c.agent.tiers.critical.timeout, Duration::from_millis(800));
    assert_eq!(c.agent.tiers.standard.interval, Duration::from_secs(15));
    assert_eq!(c.agent.tiers.standard.timeout, Duration::from_secs(10));
    let s = ScrapeConfig::default();
    assert_eq!(s.tier, Tier::Standard);
    assert_eq!(s.interval(), Duration::from_secs(15));
    assert_eq!(s.timeout(), Duration::from_secs(10));
    assert_eq!(s.metrics_path, "/metrics");
    assert!(s.honor_timestamps && !s.honor_labels);
    assert_eq!(s.body_size_limit, 64 << 20);
    assert_eq!(s.series_memory_limit, 16 << 20);
    assert_eq!(
        s.metric_name_validation_scheme,
        surge_model::NameValidationScheme::Utf8
    );
    assert_eq!(s.name_escaping(), surge_model::EscapingScheme::AllowUtf8);
    let q = QueueConfig::default();
    assert_eq!(
        (q.capacity, q.max_shards, q.max_samples_per_send),
        (100_000, 4, 2000)
    );
    assert_eq!(q.batch_send_deadline, Duration::from_secs(1));
    assert_eq!(q.min_backoff, Duration::from_millis(30));
    assert_eq!(q.max_backoff, Duration::from_secs(5));
    assert!(q.retry_on_http_429);
    assert_eq!(
        RemoteWriteConfig::default().remote_timeout,
        Duration::from_secs(5)
    );
    let a = &c.aggregator;
    assert_eq!(a.listen.to_string(), "0.0.0.0:9091");
    assert_eq!(a.max_request_body_size, 32 << 20);
    assert_eq!(a.cache.retention, Duration::from_secs(300));
    assert_eq!(a.cache.idle_ttl, Duration::from_secs(600));
    assert_eq!(a.cache.stale_after, Duration::from_secs(5));
    assert_eq!(a.cache.max_series, 2_000_000);
    assert_eq!(a.query.max_series, 100_000);
    assert_eq!(a.query.lookback_delta, Duration::from_secs(300));
    let r = RelabelConfig::default();
    assert_eq!(
        (
            r.separator.as_str(),
            r.regex.as_str(),
            r.replacement.as_str()
        ),
        (";", "(.*)", "$1")
    );
    assert_eq!(r.action, RelabelAction::Replace);
}

#[test]
fn full_schema_loads() {
    let c = load(
        r#"
agent:
  listen: "127.0.0.1:9092"
  external_labels: {cluster: prod}
  shutdown_timeout: 10s
  tiers:
    critical: {interval: 2s}
    standard: {interval: 30s, timeout: 20s}
  scrape_configs:
    - job_name: web
      tier: critical
      scrape_interval: 500ms
      scheme: https
      metrics_path: /stats
      params: {module: [http_2xx]}
      honor_labels: true
      sample_limit: 1000
      body_size_limit: 512KiB
      static_configs: [{targets: ["127.0.0.1:9100"], labels: {env: dev}}]
      file_sd_configs: [{files: ["/etc/surge/targets/*.json"], refresh_interval: 30s}]
      relabel_configs:
        - source_labels: [__address__]
          regex: "(.*):.*"
          target_label: host
      metric_relabel_configs:
        - action: labeldrop
          regex: "tmp_.*"
    - job_name: batch
      interval: 1m
  remote_write:
    - url: http://127.0.0.1:9091/api/v1/write
      headers: {X-Scope-OrgID: team-a}
      queue_config: {capacity: 5000, max_samples_per_send: 500}
aggregator:
  listen: "0.0.0.0:19091"
  max_request_body_size: 1048576
  cache: {retention: 10m, stale_after: 2s}
  query: {max_series: 10}
  remote_write:
    - name: mimir
      url: https://mimir.example:443/api/v1/push
"#,
    )
    .unwrap();
    let a = &c.agent;
    assert_eq!(a.listen.to_string(), "127.0.0.1:9092");
    assert_eq!(
        a.external_labels.get("cluster").map(String::as_str),
        Some("prod")
    );
    // A tier with only an interval keeps its default timeout when it fits.
    assert_eq!(a.tiers.critical.interval, Duration::from_secs(2));
    assert_eq!(a.tiers.critical.timeout, Duration::from_millis(800));
    assert_eq!(a.tiers.standard.timeout, Duration::from_secs(20));
    let web = &a.scrape_configs[0];
    assert_eq!(web.tier, Tier::Critical);
    // The alias `scrape_interval`, and a default timeout capped at the interval.
    assert_eq!(web.interval, Some(Duration::from_millis(500)));
    assert_eq!(web.timeout, Some(Duration::from_millis(500)));
    assert_eq!(web.scheme, Scheme::Https);
    assert_eq!(web.body_size_limit, 512 * 1024);
    assert_eq!(web.params["module"], ["http_2xx"]);
    assert_eq!(
        web.file_sd_configs[0].refresh_interval,
        Duration::from_secs(30)
    );
    assert_eq!(web.relabel_configs[0].target_label, "host");
    assert_eq!(
        web.metric_relabel_configs[0].action,
        RelabelAction::LabelDrop
    );
    let batch = &a.scrape_configs[1];
    assert_eq!(batch.tier, Tier::Standard);
    assert_eq!(batch.interval(), Duration::from_secs(60));
    // The standard tier's timeout from `tiers:`.
    assert_eq!(batch.timeout(), Duration::from_secs(20));
    let rw = &a.remote_write[0];
    assert_eq!(rw.name, "127.0.0.1:9091");
    assert_eq!(rw.queue_config.capacity, 5000);
    assert_eq!(rw.queue_config.max_shards, 4);
    let g = &c.aggregator;
    assert_eq!(g.max_request_body_size, 1 << 20);
    assert_eq!(g.cache.retention, Duration::from_secs(600));
    assert_eq!(g.cache.idle_ttl, Duration::from_secs(600));
    assert_eq!(g.remote_write[0].name, "mimir");
}

/// The acceptance test for validation: several problems, every one reported with its position.
#[test]
fn reports_every_validation_error_with_position() {
    let text = r#"agent:
  external_labels: {bad-name: x}
  scrape_configs:
    - job_name: web
      interval: 1s
      timeout: 2s
      body_size_limit: 0
      series_memory_limit: 0
      static_configs: [{targets: ["http://a:9100/metrics"]}]
      relabel_configs:
        - source_labels: [a]
          regex: "a(b"
          target_label: x
        - action: hashmod
          source_labels: [a]
          target_label: shard
    - job_name: web
      metrics_path: metrics
    - tier: critical
  remote_write:
    - url: ftp://x/y
    - url: http://a:1/
    - url: http://a:1/other
aggregator:
  cache: {max_series: 0}
"#;
    assert_eq!(
        errors(text),
        [
            r#"surge.yaml:2:21: agent.external_labels.bad-name: "bad-name" is not a valid label name (expected [a-zA-Z_][a-zA-Z0-9_]*)"#,
            r#"surge.yaml:6:16: agent.scrape_configs[0].timeout: timeout 2s is longer than interval 1s"#,
            r#"surge.yaml:7:24: agent.scrape_configs[0].body_size_limit: must be above 0: it bounds the memory one scrape may use (default 64MiB)"#,
            r#"surge.yaml:8:28: agent.scrape_configs[0].series_memory_limit: must be above 0: it bounds the memory one target's series may use (default 16MiB)"#,
            r#"surge.yaml:9:35: agent.scrape_configs[0].static_configs[0].targets[0]: "http://a:9100/metrics" is not host:port (set the scheme with scheme: and the path with metrics_path:)"#,
            r#"surge.yaml:12:18: agent.scrape_configs[0].relabel_configs[0].regex: "a(b" is not a valid regular expression: unclosed group"#,
            r#"surge.yaml:14:11: agent.scrape_configs[0].relabel_configs[1].modulus: action hashmod requires a modulus above 0"#,
            r#"surge.yaml:17:17: agent.scrape_configs[1].job_name: job_name "web" is already used by agent.scrape_configs[0]"#,
            r#"surge.yaml:18:21: agent.scrape_configs[1].metrics_path: "metrics" is not a path (it must start with /)"#,
            r#"surge.yaml:19:7: agent.scrape_configs[2]: job_name is required"#,
            r#"surge.yaml:21:12: agent.remote_write[0].url: "ftp://x/y" is not an http or https URL"#,
            r#"surge.yaml:23:7: agent.remote_write[2].name: name "a:1" is already used by remote_write[1] (names default to the URL's host:port; set name to tell them apart)"#,
            r#"surge.yaml:25:23: aggregator.cache.max_series: must be above 0"#,
        ]
    );
}

#[test]
fn unknown_fields_name_the_mapping_and_point_at_the_key() {
    let text = "agent:\n  scrape_configs:\n    - job_name: web\n      intervall: 1s\n";
    let e = errors(text);
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with(
            r#"surge.yaml:4:7: agent.scrape_configs[0]: unknown field "intervall", expected one of "job_name", "tier", "interval", "scrape_interval", "scrape_timeout", "timeout", "scheme""#
        ),
        "{}",
        e[0]
    );
    assert!(e[0].ends_with(r#" (did you mean "interval"?)"#), "{}", e[0]);

    assert_eq!(
        errors("agnet: {}\n"),
        [
            r#"surge.yaml:1:1: unknown field "agnet", expected one of "agent", "aggregator", "policies" (did you mean "agent"?)"#
        ]
    );
    assert_eq!(
        errors("aggregator:\n  cache:\n    ttl: 5m\n"),
        [
            r#"surge.yaml:3:5: aggregator.cache: unknown field "ttl", expected one of "retention", "idle_ttl", "stale_after", "max_series""#
        ]
    );
}

/// Prometheus 3's `metric_name_validation_scheme` and `metric_name_escaping_scheme`: the escaping
/// follows the validation unless set, and `allow-utf-8` cannot go with `legacy`.
#[test]
fn name_schemes() {
    use surge_model::{EscapingScheme, NameValidationScheme};
    let c = load(
        "agent:\n  scrape_configs:\n    - job_name: a\n      metric_name_validation_scheme: legacy\n\
         \x20   - job_name: b\n      metric_name_escaping_scheme: values\n\
         \x20   - job_name: c\n      metric_name_validation_scheme: legacy\n      metric_name_escaping_scheme: dots\n",
    )
    .unwrap();
    let got: Vec<_> = c
        .agent
        .scrape_configs
        .iter()
        .map(|s| (s.metric_name_validation_scheme, s.name_escaping()))
        .collect();
    assert_eq!(
        got,
        [
            (NameValidationScheme::Legacy, EscapingScheme::Underscores),
            (NameValidationScheme::Utf8, EscapingScheme::Values),
            (NameValidationScheme::Legacy, EscapingScheme::Dots),
        ]
    );
    let cases = [
        (
            "metric_name_validation_scheme: UTF8",
            r#"surge.yaml:4:38: agent.scrape_configs[0].metric_name_validation_scheme: "UTF8" is not a name validation scheme (expected utf8 or legacy)"#,
        ),
        (
            "metric_name_escaping_scheme: value",
            r#"surge.yaml:4:36: agent.scrape_configs[0].metric_name_escaping_scheme: "value" is not a name escaping scheme (expected allow-utf-8, underscores, dots or values)"#,
        ),
        (
            "metric_name_validation_scheme: legacy\n      metric_name_escaping_scheme: allow-utf-8",
            r#"surge.yaml:5:36: agent.scrape_configs[0].metric_name_escaping_scheme: allow-utf-8 keeps UTF-8 names, which legacy validation drops: use underscores, dots or values"#,
        ),
    ];
    for (fields, want) in cases {
        let text = format!("agent:\n  scrape_configs:\n    - job_name: a\n      {fields}\n");
        assert_eq!(errors(&text), [want], "{fields}");
    }
}

#[test]
fn value_errors_point_at_the_value() {
    let text = r#"agent:
  listen: "localhost"
  tiers:
    critical: {interval: 1x}
  scrape_configs:
    - job_name: web
      interval: 1x
    - job_name: api
      tier: fast
    - job_name: db
      sample_limit: lots
      body_size_limit: 12 parsecs
  remote_write:
    - url: http://a/
      queue_config: {retry_on_http_429: maybe}
aggregator:
  cache: {retention: 5}
"#;
    assert_eq!(
        errors(text),
        [
            r#"surge.yaml:2:11: agent.listen: "localhost" is not a listen address (e.g. 0.0.0.0:9092, [::]:9092, 127.0.0.1:9092)"#,
            r#"surge.yaml:7:17: agent.scrape_configs[0].interval: "1x" is not a duration (e.g. 1s, 500ms)"#,
            r#"surge.yaml:9:13: agent.scrape_configs[1].tier: "fast" is not a tier (expected critical or standard)"#,
            r#"surge.yaml:11:21: agent.scrape_configs[2].sample_limit: invalid type: string "lots", expected a whole number"#,
            r#"surge.yaml:15:41: agent.remote_write[0].queue_config.retry_on_http_429: invalid type: string "maybe", expected a boolean"#,
            r#"surge.yaml:17:22: aggregator.cache.retention: 5 is not a duration: give a unit (e.g. 5s or 5ms)"#,
        ]
    );
}

#[test]
fn syntax_errors_have_positions() {
    let e = errors("agent:\n  listen: [1, 2\n");
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("surge.yaml:3:1: "), "{}", e[0]);
    assert_eq!(
        errors("agent:\n  listen: a\n  listen: b\n"),
        [r#"surge.yaml:3:3: agent: "listen" appears twice in this mapping"#]
    );
    let e = errors("- a\n- b\n");
    assert_eq!(
        e,
        ["surge.yaml:1:1: a config is a mapping with agent: and aggregator: sections"]
    );
}

#[test]
fn environment_variables_are_substituted() {
    let env = MapEnv::new()
        .with("NODE_NAME", "node-1")
        .with("AGG", "http://agg:9091/api/v1/write");
    let c = load_str(
        r#"
agent:
  external_labels: {node: "${NODE_NAME}", zone: "${ZONE:-z1}"}
  scrape_configs:
    - job_name: web
      metric_relabel_configs:
        - source_labels: [a]
          regex: "(.*)-(.*)"
          replacement: "$$${2}-$1"
          target_label: b
  remote_write:
    - url: ${AGG}
"#,
        "surge.yaml",
        &env,
    )
    .unwrap();
    assert_eq!(c.agent.external_labels["node"], "node-1");
    assert_eq!(c.agent.external_labels["zone"], "z1");
    assert_eq!(
        c.agent.scrape_configs[0].metric_relabel_configs[0].replacement,
        "$${2}-$1"
    );
    assert_eq!(c.agent.remote_write[0].url, "http://agg:9091/api/v1/write");
}

#[test]
fn unset_variables_are_errors_at_their_position() {
    assert_eq!(
        errors("agent:\n  external_labels:\n    node: ${NODE_NAME}\n    zone: x-${ZONE}\n"),
        [
            r#"surge.yaml:3:11: environment variable "NODE_NAME" is not set (use ${NODE_NAME:-default} for a default, or $${NODE_NAME} for a literal)"#,
            r#"surge.yaml:4:13: environment variable "ZONE" is not set (use ${ZONE:-default} for a default, or $${ZONE} for a literal)"#,
        ]
    );
}

#[test]
fn positions_refer_to_the_text_before_substitution() {
    let env = MapEnv::new().with("LONG", "a-much-longer-value-than-the-reference");
    let e = load_str(
        "agent:\n  external_labels: {x: \"${LONG}\", bad-name: v}\n",
        "surge.yaml",
        &env,
    )
    .unwrap_err();
    assert_eq!(
        e.to_lines(),
        [
            r#"surge.yaml:2:35: agent.external_labels.bad-name: "bad-name" is not a valid label name (expected [a-zA-Z_][a-zA-Z0-9_]*)"#
        ]
    );
}

#[test]
fn each_list_item_is_read_on_its_own() {
    let e = errors(
        "agent:\n  scrape_configs:\n    - job_name: a\n      intervall: 1s\n    - job_name: b\n      timeout: soon\n",
    );
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0].starts_with("surge.yaml:4:7: agent.scrape_configs[0]: unknown field"));
    assert!(e[1].starts_with(
        r#"surge.yaml:6:16: agent.scrape_configs[1].timeout: "soon" is not a duration"#
    ));
}

#[test]
fn relabel_action_must_be_known() {
    let e = errors(
        "agent:\n  scrape_configs:\n    - job_name: a\n      relabel_configs: [{action: replcae}]\n",
    );
    assert_eq!(
        e,
        [
            r#"surge.yaml:4:34: agent.scrape_configs[0].relabel_configs[0].action: unknown variant "replcae", expected one of "replace", "keep", "drop", "keepequal", "dropequal", "hashmod", "labelmap", "labeldrop", "labelkeep", "lowercase", "uppercase""#
        ]
    );
}

#[test]
fn load_file_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("surge.yaml");
    std::fs::write(&path, "agent:\n  shutdown_timeout: never\n").unwrap();
    let e = load_file(&path).unwrap_err();
    assert_eq!(
        e.to_lines(),
        [format!(
            r#"{}:2:21: agent.shutdown_timeout: "never" is not a duration (e.g. 1s, 500ms)"#,
            path.display()
        )]
    );
    let e = load_file(&dir.path().join("missing.yaml")).unwrap_err();
    assert!(
        e.to_string()
            .contains("missing.yaml: cannot read the file: "),
        "{e}"
    );
}

#[test]
fn config_errors_display_one_per_line() {
    let e = load("agent:\n  scrape_configs: [{}, {}]\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "surge.yaml:2:20: agent.scrape_configs[0]: job_name is required\n\
         surge.yaml:2:24: agent.scrape_configs[1]: job_name is required"
    );
}

#[test]
fn loaded_configs_round_trip_through_yaml() {
    let c = load(
        "agent:\n  scrape_configs:\n    - job_name: a\n      relabel_configs: [{action: keep, source_labels: [x], regex: 'y|z'}]\n",
    )
    .unwrap();
    let text = serde_yaml_ng::to_string(&c).unwrap();
    let again = load(&text).unwrap();
    assert_eq!(c, again);
}
#[test]
fn label_values_may_be_written_as_numbers_or_booleans() {
    // As in Prometheus, where YAML scalars become label value strings.
    let c = load(
        "agent:\n  external_labels: {zone: 1, canary: true}\n  scrape_configs:\n    - job_name: a\n      static_configs: [{targets: [a:1], labels: {port: 8080}}]\n",
    )
    .unwrap();
    assert_eq!(c.agent.external_labels["zone"], "1");
    assert_eq!(c.agent.external_labels["canary"], "true");
    assert_eq!(
        c.agent.scrape_configs[0].static_configs[0].labels["port"],
        "8080"
    );
    assert_eq!(
        errors("agent:\n  external_labels: {zone: [1]}\n"),
        [
            r#"surge.yaml:2:27: agent.external_labels.zone: invalid type: sequence, expected a label value (a string)"#
        ]
    );
}

#[test]
fn metrics_api_listen_needs_its_own_port() {
    let text =
        "aggregator:\n  listen: 127.0.0.1:9091\n  kubernetes_api:\n    listen: 0.0.0.0:9091\n";
    assert_eq!(
        errors(text),
        [
            "surge.yaml:4:13: aggregator.kubernetes_api.listen: 0.0.0.0:9091 is also aggregator.listen (127.0.0.1:9091): the metrics APIs need a port of their own (e.g. 0.0.0.0:6443)"
        ]
    );
}

#[test]
fn cloudwatch_outputs_load_with_their_defaults() {
    let text = r#"
agent:
  emf:
    - namespace: surge
      dimensions: [namespace, pod]
    - name: logs
      namespace: surge
      destination: cloudwatch_logs
      log_group: /surge/metrics
      log_stream: node-1
      aws: {region: eu-west-1, endpoint_url: "http://127.0.0.1:4566"}
  cloudwatch:
    - namespace: surge
      counter_pattern: "^requests$"
      queue_config: {max_requests_per_second: 5}
"#;
    let c = load(text).unwrap();
    let a = &c.agent;
    assert_eq!(a.emf[0].name, "emf");
    assert_eq!(a.emf[0].destination, crate::EmfDestination::Stdout);
    assert_eq!(a.emf[0].max_event_bytes, 256 * 1024);
    assert_eq!(a.emf[1].destination, crate::EmfDestination::CloudwatchLogs);
    assert_eq!(a.emf[1].aws.region.as_deref(), Some("eu-west-1"));
    assert_eq!(a.cloudwatch[0].name, "cloudwatch");
    assert_eq!(
        a.cloudwatch[0].queue_config.max_requests_per_second,
        Some(5.0)
    );
    assert_eq!(
        a.cloudwatch[0].queue_config.batch_send_deadline,
        std::time::Duration::from_secs(5)
    );
}

#[test]
fn cloudwatch_outputs_report_every_problem_with_its_place() {
    let text = r#"agent:
  emf:
    - namespace: AWS/EC2
      dimensions: [pod, pod, "bad-name"]
      destination: cloudwatch_logs
      max_event_bytes: 2000000
    - name: x
      namespace: ok
      aws: {region: "EU WEST"}
  cloudwatch:
    - name: x
      counter_pattern: "a(b"
      queue_config: {capacity: 0, max_requests_per_second: 0}
"#;
    assert_eq!(
        errors(text),
        [
            r#"surge.yaml:3:7: agent.emf[0]: log_group is required with destination: cloudwatch_logs"#,
            r#"surge.yaml:3:7: agent.emf[0]: log_stream is required with destination: cloudwatch_logs"#,
            r#"surge.yaml:3:18: agent.emf[0].namespace: "AWS/EC2" is not a custom namespace (at most 255 characters, not AWS/…, not starting with :)"#,
            r#"surge.yaml:4:25: agent.emf[0].dimensions[1]: "pod" is listed twice"#,
            r#"surge.yaml:4:30: agent.emf[0].dimensions[2]: "bad-name" is not a label name"#,
            r#"surge.yaml:6:24: agent.emf[0].max_event_bytes: 2000000 is outside 1024..=1048550"#,
            r#"surge.yaml:7:7: agent.emf[1]: aws: applies to destination: cloudwatch_logs only"#,
            r#"surge.yaml:9:21: agent.emf[1].aws.region: "EU WEST" is not a region name (e.g. eu-west-1)"#,
            r#"surge.yaml:11:7: agent.cloudwatch[0]: namespace is required"#,
            r#"surge.yaml:11:13: agent.cloudwatch[0].name: name "x" is already used by emf[1]"#,
            r#"surge.yaml:12:24: agent.cloudwatch[0].counter_pattern: "a(b" is not a regular expression: regex parse error:
    a(b
     ^
error: unclosed group"#,
            r#"surge.yaml:13:32: agent.cloudwatch[0].queue_config.capacity: must be above 0"#,
            r#"surge.yaml:13:60: agent.cloudwatch[0].queue_config.max_requests_per_second: 0 must be a positive number"#,
        ]
    );
}

#[test]
fn a_durable_queue_loads_with_its_defaults_and_its_mistakes_are_listed() {
    let cfg = load(
        r#"
agent:
  remote_write:
    - url: http://a/
      queue_config:
        durable: {dir: /var/lib/surge/wal/a, max_bytes: 2GiB, fsync: always, when_full: backpressure}
    - url: http://b/
      queue_config:
        durable: {dir: /var/lib/surge/wal/b}
"#,
    )
    .unwrap();
    let a = cfg.agent.remote_write[0]
        .queue_config
        .durable
        .clone()
        .unwrap();
    assert_eq!(a.max_bytes, 2 << 30);
    assert_eq!(a.fsync, crate::FsyncMode::Always);
    assert_eq!(a.when_full, crate::WhenFullMode::Backpressure);
    let b = cfg.agent.remote_write[1]
        .queue_config
        .durable
        .clone()
        .unwrap();
    assert_eq!(
        (b.max_bytes, b.fsync, b.fsync_interval, b.when_full),
        (
            1 << 30,
            crate::FsyncMode::Batch,
            Duration::from_secs(1),
            crate::WhenFullMode::DropOldest
        )
    );
    let e = errors(
        r#"
agent:
  remote_write:
    - url: http://a/
      queue_config:
        durable: {max_bytes: 1KiB}
"#,
    );
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].contains("queue_config.durable.dir: is required"),
        "{}",
        e[0]
    );
    assert!(
        e[1].contains("queue_config.durable.max_bytes: 1024 is below"),
        "{}",
        e[1]
    );
    let e = errors(
        r#"
agent:
  remote_write:
    - url: http://a/
      queue_config:
        durable: {dir: /x, fsync: sometimes}
"#,
    );
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].contains("queue_config.durable.fsync"), "{}", e[0]);
}
