//! The Prometheus registry and its families (DESIGN 7). No label takes request data.
//!
//! Counting on the request path takes no lock and no map lookup: labelled children are
//! resolved once, into [`PreflightCounters`] per compiled policy (built beside the policy and
//! swapped with it) and into plain handles here for the fixed label sets.

use std::sync::OnceLock;

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::cors::shadow::{COMPARISON_LABELS, Comparison};
use crate::cors::{Answer, RESULT_LABELS};
use crate::policy::Policy;

/// `rule` label of preflights no rule answered (`no_rule`, `origin`, `malformed`, `forwarded`).
/// Rule names are `[a-z0-9_-]`, so this can never collide with one.
pub const NO_RULE_LABEL: &str = "(none)";

/// The column of `forwarded` in [`RESULT_LABELS`]: the last, after the outcomes.
const FORWARDED_COLUMN: usize = RESULT_LABELS.len() - 1;

pub const UPSTREAM_ERROR_KINDS: [&str; 4] = ["connect", "timeout", "reset", "protocol"];

/// `kind` label values of `preflightd_client_errors_total`, in [`ClientError`] order.
pub const CLIENT_ERROR_KINDS: [&str; 10] = [
    "malformed_body",
    "aborted",
    "body_timeout",
    "header_timeout",
    "send_timeout",
    "bad_host",
    "connect_method",
    "admin_header_timeout",
    "evicted",
    "proxy_protocol",
];

/// The `result` values of `preflightd_tls_handshakes_total`, in [`TlsHandshake`] order.
pub const TLS_HANDSHAKE_RESULTS: [&str; 6] = [
    "success",
    "incompatible",
    "malformed",
    "alert",
    "eof",
    "other",
];

/// How a TLS handshake ended: a small fixed set, so failures can be alerted on by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsHandshake {
    Success,
    /// Nothing in common: protocol version, cipher suites, ALPN, signature schemes.
    Incompatible,
    /// Not TLS, or broken TLS (a plain HTTP request on the TLS port).
    Malformed,
    /// The client aborted with an alert (for instance, it does not trust the certificate).
    Alert,
    /// The client closed the connection mid-handshake.
    Eof,
    Other,
}

/// A request the client got wrong or gave up on: counted apart from upstream errors, which
/// page someone (the upstream is not at fault).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientError {
    /// Malformed body framing (RFC 9112 7.1): answered 400.
    MalformedBody,
    /// The client went away before its request body was complete.
    Aborted,
    /// No byte of the request body for `--client-body-timeout`: 408.
    BodyTimeout,
    /// The first request head (or a later one, once begun) did not complete within
    /// `--header-read-timeout`: the connection is closed.
    HeaderTimeout,
    /// The client read nothing of the response for `--send-timeout`: closed.
    SendTimeout,
    /// A missing, duplicated, invalid or disagreeing `Host` / `:authority`: 400.
    BadHost,
    /// `CONNECT`, refused at the edge: 405.
    ConnectMethod,
    /// An admin connection that did not send its request head in time.
    AdminHeaderTimeout,
    /// A connection that had sent no complete request closed to make room on a full
    /// listener.
    Evicted,
    /// `--proxy-protocol`: the connection did not start with a valid PROXY header.
    ProxyProtocol,
}

/// `kind` label values of `preflightd_shadow_upstream_failures_total`, in
/// [`ShadowUpstreamFailure`] order.
pub const SHADOW_UPSTREAM_FAILURE_KINDS: [&str; 2] = ["error", "timeout"];

/// How the upstream failed a shadowed preflight (the client got the edge's 502 / 503 or 504).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShadowUpstreamFailure {
    /// Unreachable, reset, broke the protocol, or no connection free (502, 503).
    Error,
    /// Silent past `--upstream-timeout` (504).
    Timeout,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamError {
    Connect,
    Timeout,
    Reset,
    Protocol,
}

pub struct Metrics {
    pub registry: Registry,
    preflight_requests: IntCounterVec,
    pub preflight_duration: Histogram,
    proxy_requests: [IntCounter; 5],
    pub upstream_duration: Histogram,
    upstream_errors: [IntCounter; 4],
    client_errors: [IntCounter; CLIENT_ERROR_KINDS.len()],
    /// Requests that found every upstream connection in use for the whole wait (503).
    pub upstream_exhausted: IntCounter,
    pub upstream_connections_open: IntGauge,
    log_lines_dropped: IntCounter,
    /// Preflights that carried `Access-Control-Request-Private-Network` (legacy PNA).
    private_network_preflights: IntCounter,
    /// The non-blocking log writer's own count, read at each scrape.
    log_drops: OnceLock<tracing_appender::non_blocking::ErrorCounter>,
    log_drops_seen: std::sync::atomic::AtomicU64,
    /// Access-log lines dropped: the writer's queue was full, or a write failed.
    pub access_log_dropped: IntCounter,
    pub connections_open: IntGauge,
    reloads: IntCounterVec,
    tls_handshakes: [IntCounter; TLS_HANDSHAKE_RESULTS.len()],
    tls_reloads: IntCounterVec,
    /// `notAfter` of each served certificate, by its file.
    pub tls_certificate_expiry: GaugeVec,
    pub last_reload_successful: IntGauge,
    pub last_reload_success_timestamp: Gauge,
    pub rules_loaded: IntGauge,
    rules_info: IntGaugeVec,
    shadow_comparisons: IntCounterVec,
    shadow_upstream_failures: [IntCounter; SHADOW_UPSTREAM_FAILURE_KINDS.len()],
    /// Mismatches not kept in `/shadow` because its table was full.
    pub shadow_overflow: IntCounter,
}

/// Latency buckets from 5 µs (a preflight answered from memory) to 30 s (a slow upstream).
const BUCKETS: &[f64] = &[
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let preflight_requests = IntCounterVec::new(
            Opts::new(
                "preflightd_preflight_requests_total",
                "CORS preflights, by the rule that answered and the result",
            ),
            &["rule", "result"],
        )?;
        let preflight_duration = Histogram::with_opts(
            HistogramOpts::new(
                "preflightd_preflight_duration_seconds",
                "Time to decide and build a preflight answer",
            )
            .buckets(BUCKETS.to_vec()),
        )?;
        let proxy = IntCounterVec::new(
            Opts::new(
                "preflightd_proxy_requests_total",
                "Requests passed to the upstream, by the status class answered",
            ),
            &["code_class"],
        )?;
        let upstream_duration = Histogram::with_opts(
            HistogramOpts::new(
                "preflightd_upstream_duration_seconds",
                "Time from sending a request upstream to its response headers",
            )
            .buckets(BUCKETS.to_vec()),
        )?;
        let upstream_errors = IntCounterVec::new(
            Opts::new(
                "preflightd_upstream_errors_total",
                "Upstream failures, by kind",
            ),
            &["kind"],
        )?;
        let client_errors = IntCounterVec::new(
            Opts::new(
                "preflightd_client_errors_total",
                "Requests the client got wrong or abandoned, by kind (not upstream errors)",
            ),
            &["kind"],
        )?;
        let upstream_exhausted = IntCounter::new(
            "preflightd_upstream_connections_exhausted_total",
            "Requests answered 503 because every upstream connection (--upstream-max-connections) stayed in use for --upstream-connect-timeout",
        )?;
        let upstream_connections_open = IntGauge::new(
            "preflightd_upstream_connections_open",
            "Connections open to the upstream",
        )?;
        let log_lines_dropped = IntCounter::new(
            "preflightd_log_lines_dropped_total",
            "Log lines dropped because the log writer's buffer was full (logging never blocks a request)",
        )?;
        let private_network_preflights = IntCounter::new(
            "preflightd_private_network_preflights_total",
            "Preflights that carried Access-Control-Request-Private-Network (legacy Private Network Access; any value)",
        )?;
        let access_log_dropped = IntCounter::new(
            "preflightd_access_log_dropped_total",
            "Access log lines dropped because the writer's queue was full or a write failed (the access log never blocks a request)",
        )?;
        let connections_open = IntGauge::new(
            "preflightd_connections_open",
            "Client connections open on the data listener",
        )?;
        let reloads = IntCounterVec::new(
            Opts::new(
                "preflightd_rules_reloads_total",
                "Rules reload attempts, by result and what triggered them",
            ),
            &["result", "trigger"],
        )?;
        let tls_handshakes = IntCounterVec::new(
            Opts::new(
                "preflightd_tls_handshakes_total",
                "TLS handshakes on the data listener, by result",
            ),
            &["result"],
        )?;
        let tls_reloads = IntCounterVec::new(
            Opts::new(
                "preflightd_tls_certificate_reloads_total",
                "Certificate reload attempts, by result and what triggered them",
            ),
            &["result", "trigger"],
        )?;
        let tls_certificate_expiry = GaugeVec::new(
            Opts::new(
                "preflightd_tls_certificate_expiry_timestamp_seconds",
                "Unix time at which each served certificate expires (notAfter), by its file",
            ),
            &["certificate"],
        )?;
        let last_reload_successful = IntGauge::new(
            "preflightd_rules_last_reload_successful",
            "1 if the last reload attempt applied or found no change, 0 if it failed",
        )?;
        let last_reload_success_timestamp = Gauge::new(
            "preflightd_rules_last_reload_success_timestamp_seconds",
            "Unix time of the last successful rules load",
        )?;
        let rules_loaded = IntGauge::new("preflightd_rules_loaded", "Rules in the active policy")?;
        let rules_info = IntGaugeVec::new(
            Opts::new(
                "preflightd_rules_info",
                "The active rules, by the sha256 of their files (1 for the active set)",
            ),
            &["sha256"],
        )?;
        let shadow_comparisons = IntCounterVec::new(
            Opts::new(
                "preflightd_shadow_comparisons_total",
                "Shadow mode: preflights answered by the upstream, by the rule preflightd would have used and how its answer compares",
            ),
            &["rule", "result"],
        )?;
        let shadow_upstream_failures = IntCounterVec::new(
            Opts::new(
                "preflightd_shadow_upstream_failures_total",
                "Shadow mode: preflights the upstream failed (502 / 503) or timed out on (504), not compared",
            ),
            &["kind"],
        )?;
        let shadow_overflow = IntCounter::new(
            "preflightd_shadow_table_overflow_total",
            "Shadow mode: mismatches not kept in /shadow because its table of distinct mismatches was full",
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new("preflightd_build_info", "Build information"),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(preflight_requests.clone()),
            Box::new(preflight_duration.clone()),
            Box::new(proxy.clone()),
            Box::new(upstream_duration.clone()),
            Box::new(upstream_errors.clone()),
            Box::new(client_errors.clone()),
            Box::new(upstream_exhausted.clone()),
            Box::new(upstream_connections_open.clone()),
            Box::new(log_lines_dropped.clone()),
            Box::new(private_network_preflights.clone()),
            Box::new(access_log_dropped.clone()),
            Box::new(connections_open.clone()),
            Box::new(reloads.clone()),
            Box::new(tls_handshakes.clone()),
            Box::new(tls_reloads.clone()),
            Box::new(tls_certificate_expiry.clone()),
            Box::new(last_reload_successful.clone()),
            Box::new(last_reload_success_timestamp.clone()),
            Box::new(rules_loaded.clone()),
            Box::new(rules_info.clone()),
            Box::new(shadow_comparisons.clone()),
            Box::new(shadow_upstream_failures.clone()),
            Box::new(shadow_overflow.clone()),
            Box::new(build_info),
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ];
        for collector in collectors {
            registry.register(collector)?;
        }
        let class = |c: &str| proxy.with_label_values(&[c]);
        let kind = |k: &str| upstream_errors.with_label_values(&[k]);
        // Every upstream error kind shows from the start, at 0, so alerts can rate() them.
        Ok(Metrics {
            proxy_requests: [
                class("1xx"),
                class("2xx"),
                class("3xx"),
                class("4xx"),
                class("5xx"),
            ],
            upstream_errors: UPSTREAM_ERROR_KINDS.map(kind),
            client_errors: CLIENT_ERROR_KINDS.map(|k| client_errors.with_label_values(&[k])),
            upstream_exhausted,
            upstream_connections_open,
            log_lines_dropped,
            private_network_preflights,
            log_drops: OnceLock::new(),
            log_drops_seen: std::sync::atomic::AtomicU64::new(0),
            access_log_dropped,
            registry,
            preflight_requests,
            preflight_duration,
            upstream_duration,
            connections_open,
            reloads,
            tls_handshakes: TLS_HANDSHAKE_RESULTS.map(|r| tls_handshakes.with_label_values(&[r])),
            tls_reloads,
            tls_certificate_expiry,
            last_reload_successful,
            last_reload_success_timestamp,
            rules_loaded,
            rules_info,
            shadow_comparisons,
            shadow_upstream_failures: SHADOW_UPSTREAM_FAILURE_KINDS
                .map(|k| shadow_upstream_failures.with_label_values(&[k])),
            shadow_overflow,
        })
    }

    pub fn count_proxy_status(&self, status: http::StatusCode) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.proxy_requests[class].inc();
    }

    pub fn count_upstream_error(&self, kind: UpstreamError) {
        self.upstream_errors[kind as usize].inc();
    }

    pub fn count_client_error(&self, kind: ClientError) {
        self.client_errors[kind as usize].inc();
    }

    pub fn count_shadow_upstream_failure(&self, kind: ShadowUpstreamFailure) {
        self.shadow_upstream_failures[kind as usize].inc();
    }

    pub fn count_tls_handshake(&self, result: TlsHandshake) {
        self.tls_handshakes[result as usize].inc();
    }

    pub fn count_tls_reload(&self, result: &str, trigger: &str) {
        self.tls_reloads.with_label_values(&[result, trigger]).inc();
    }

    pub fn count_reload(&self, result: &str, trigger: &str) {
        self.reloads.with_label_values(&[result, trigger]).inc();
    }

    /// Marks `sha256` as the active rules (and no other).
    pub fn set_rules_info(&self, sha256: &str, rules: usize) {
        self.rules_info.reset();
        self.rules_info.with_label_values(&[sha256]).set(1);
        self.rules_loaded
            .set(i64::try_from(rules).unwrap_or(i64::MAX));
    }

    /// The per-rule preflight counters of a policy. Each child is resolved on its first use
    /// (then kept): a rule set of 10 000 rules does not export 70 000 series at zero.
    pub fn preflight_counters(&self, policy: &Policy) -> PreflightCounters {
        PreflightCounters {
            counters: RuleCounters::new(&self.preflight_requests, policy),
            private_network: self.private_network_preflights.clone(),
        }
    }

    /// The per-rule `preflightd_shadow_comparisons_total` counters of a policy in shadow
    /// mode, resolved on first use as [`Metrics::preflight_counters`] are.
    pub fn shadow_counters(&self, policy: &Policy) -> ShadowCounters {
        ShadowCounters(RuleCounters::new(&self.shadow_comparisons, policy))
    }

    /// Removes every `preflightd_preflight_requests_total` (and
    /// `preflightd_shadow_comparisons_total`) series of `rule`: a rule no longer
    /// loaded must not keep its series for the life of the process (generated rule names
    /// would grow the scrape without bound).
    pub fn forget_rule(&self, rule: &str) {
        for result in RESULT_LABELS {
            // Absent series (never counted) are no error worth reporting.
            let _ = self.preflight_requests.remove_label_values(&[rule, result]);
        }
        for result in COMPARISON_LABELS {
            let _ = self.shadow_comparisons.remove_label_values(&[rule, result]);
        }
    }

    /// Where the non-blocking log writer counts the lines it dropped.
    pub fn watch_log_drops(&self, counter: tracing_appender::non_blocking::ErrorCounter) {
        let _ = self.log_drops.set(counter);
    }

    /// The Prometheus text exposition of every family.
    pub fn render(&self) -> Result<Vec<u8>, prometheus::Error> {
        if let Some(drops) = self.log_drops.get() {
            let now = drops.dropped_lines() as u64;
            let seen = self
                .log_drops_seen
                .swap(now, std::sync::atomic::Ordering::Relaxed);
            self.log_lines_dropped.inc_by(now.saturating_sub(seen));
        }
        let mut out = Vec::with_capacity(16 * 1024);
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        Ok(out)
    }
}

/// `preflightd_preflight_requests_total` handles for one policy: a row per rule, a column per
/// result. After a cell's first use, counting is an atomic load and an atomic add: no lock,
/// no label hashing.
pub struct PreflightCounters {
    counters: RuleCounters<{ RESULT_LABELS.len() }>,
    private_network: IntCounter,
}

impl PreflightCounters {
    /// Counts an answer the edge gave: its rule and result, and whether it carried the
    /// legacy Private Network Access header.
    #[inline]
    pub fn count(&self, answer: &Answer<'_>) {
        self.counters
            .cell(answer.rule, answer.outcome.index(), &RESULT_LABELS)
            .inc();
        if answer.private_network_asked() {
            self.private_network.inc();
        }
    }

    #[inline]
    pub fn count_forwarded(&self) {
        self.counters
            .cell(None, FORWARDED_COLUMN, &RESULT_LABELS)
            .inc();
    }
}

/// `preflightd_shadow_comparisons_total` handles for one policy in shadow mode, as
/// [`PreflightCounters`] are.
pub struct ShadowCounters(RuleCounters<{ COMPARISON_LABELS.len() }>);

impl ShadowCounters {
    #[inline]
    pub fn count(&self, rule: Option<usize>, comparison: Comparison) {
        self.0
            .cell(rule, comparison.index(), &COMPARISON_LABELS)
            .inc();
    }

    /// The `rule` label of `rule` (its name, or `(none)`), for logs and `/shadow`.
    pub fn rule_label(&self, rule: Option<usize>) -> &str {
        self.0.row(rule).rule.as_str()
    }
}

/// One counter family's handles for one policy: a row per rule (and one for no rule), a
/// column per value of the other label, each cell resolved on its first use.
struct RuleCounters<const N: usize> {
    family: IntCounterVec,
    by_rule: Vec<Row<N>>,
    no_rule: Row<N>,
}

struct Row<const N: usize> {
    rule: String,
    cells: [OnceLock<IntCounter>; N],
}

impl<const N: usize> RuleCounters<N> {
    fn new(family: &IntCounterVec, policy: &Policy) -> Self {
        let row = |rule: &str| Row {
            rule: rule.to_owned(),
            cells: std::array::from_fn(|_| OnceLock::new()),
        };
        RuleCounters {
            family: family.clone(),
            by_rule: policy.rule_names().map(row).collect(),
            no_rule: row(NO_RULE_LABEL),
        }
    }

    #[inline]
    fn row(&self, rule: Option<usize>) -> &Row<N> {
        rule.and_then(|i| self.by_rule.get(i))
            .unwrap_or(&self.no_rule)
    }

    #[inline]
    fn cell(&self, rule: Option<usize>, column: usize, labels: &[&str; N]) -> &IntCounter {
        let row = self.row(rule);
        row.cells[column].get_or_init(|| {
            self.family
                .with_label_values(&[row.rule.as_str(), labels[column]])
        })
    }
}
