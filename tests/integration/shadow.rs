//! Shadow mode (`[settings] mode = "shadow"`): every preflight goes to an upstream that
//! answers CORS its own way (`test_upstream --cors`, whose policy differs from these rules on
//! purpose), the client gets the upstream's answer byte for byte, and preflightd counts and
//! lists how its rules would have answered differently.

use std::io::{BufReader, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{
    Preflightd, RawResponse, Upstream, WAIT, connect, preflight, read_response, send,
};

/// The rules under test: not the upstream's policy (see `examples/test_upstream.rs`).
const SHADOW_RULES: &str = r#"
[settings]
mode = "shadow"

[[rule]]
name = "web"
hosts = ["api.example.com"]
origins = ["https://app.example.com", "https://new.example.com"]
methods = ["PUT", "DELETE"]
headers = ["content-type", "x-api-key"]
credentials = true
max_age = 300

[[rule]]
name = "legacy"
hosts = ["api.example.com"]
origins = ["https://legacy.example.com"]
methods = ["PUT"]
headers = ["content-type"]
max_age = 60
"#;

/// Status line, header lines (the `Date` value blanked: two answers a second apart differ
/// there only) and body.
fn shape(response: &RawResponse) -> (String, Vec<(String, String)>, Vec<u8>) {
    let headers = response
        .headers
        .iter()
        .map(|(name, value)| {
            let value = if name == "date" { "" } else { value.as_str() };
            (name.clone(), value.to_owned())
        })
        .collect();
    (response.status_line.clone(), headers, response.body.clone())
}

fn shadow_report(edge: &Preflightd) -> Value {
    let response = send(
        edge.admin,
        "GET /shadow HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(response.status, 200);
    serde_json::from_slice(&response.body).expect("/shadow is JSON")
}

fn comparisons(edge: &Preflightd, rule: &str, result: &str) -> f64 {
    edge.metric(&format!(
        "preflightd_shadow_comparisons_total{{result=\"{result}\",rule=\"{rule}\"}}"
    ))
}

/// (what it shows, host, origin, method, requested headers, times sent, the comparison, the
/// rule label).
type Case = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    usize,
    &'static str,
    &'static str,
);

const CASES: &[Case] = &[
    (
        "both allow with credentials and max-age 300",
        "api.example.com",
        "https://app.example.com",
        "PUT",
        "content-type",
        1,
        "match",
        "web",
    ),
    (
        "both deny an unknown origin",
        "api.example.com",
        "https://evil.example",
        "PUT",
        "",
        1,
        "match",
        "(none)",
    ),
    (
        "the upstream lists PATCH, the rule does not",
        "api.example.com",
        "https://app.example.com",
        "PATCH",
        "",
        3,
        "only_upstream_allows",
        "web",
    ),
    (
        "the upstream lists x-legacy, the rule does not",
        "api.example.com",
        "https://app.example.com",
        "PUT",
        "x-legacy",
        2,
        "only_upstream_allows",
        "web",
    ),
    (
        "the upstream allows a tenant origin no rule lists",
        "api.example.com",
        "https://a1.tenant.example",
        "PUT",
        "",
        1,
        "only_upstream_allows",
        "(none)",
    ),
    (
        "the upstream allows a host no rule covers",
        "other.example.com",
        "https://app.example.com",
        "PUT",
        "",
        1,
        "only_upstream_allows",
        "(none)",
    ),
    (
        "the rule allows DELETE, the upstream does not list it",
        "api.example.com",
        "https://app.example.com",
        "DELETE",
        "",
        1,
        "only_rules_allow",
        "web",
    ),
    (
        "the rule allows an origin the upstream does not know",
        "api.example.com",
        "https://new.example.com",
        "PUT",
        "",
        1,
        "only_rules_allow",
        "web",
    ),
    (
        "both allow without credentials, max-age 300 against 60",
        "api.example.com",
        "https://legacy.example.com",
        "PUT",
        "content-type",
        1,
        "both_allow_differently",
        "legacy",
    ),
];

#[test]
fn shadow_mode_clients_get_the_upstreams_answer_and_the_differences_are_counted_and_listed() {
    let behind = Upstream::start_cors(&[]);
    let alone = Upstream::start_cors(&[]);
    let edge = Preflightd::start(SHADOW_RULES, Some(&behind.url()), &[]);
    let mut sent = 0;
    for (what, host, origin, method, headers, times, _, _) in CASES {
        let request = preflight("/v1/items/7", host, origin, method, headers);
        let expected = shape(&send(alone.address, &request));
        for _ in 0..*times {
            // A new connection each time: the fast path hands every shadowed preflight over.
            let got = send(edge.data, &request);
            assert_eq!(shape(&got), expected, "{what}");
            assert_eq!(got.header("x-upstream"), Some("preflight"), "{what}");
            sent += 1;
        }
    }

    // The upstream saw every preflight, in order.
    assert_eq!(behind.preflights(), sent);
    let seen: Vec<String> = behind.seen("origin");
    let expected: Vec<&str> = CASES
        .iter()
        .flat_map(|(_, _, origin, _, _, times, _, _)| std::iter::repeat_n(*origin, *times))
        .collect();
    assert_eq!(seen, expected);

    // Each comparison counted once per preflight, by rule.
    let mut expected_counts: Vec<((&str, &str), usize)> = Vec::new();
    for (_, _, _, _, _, times, result, rule) in CASES {
        match expected_counts
            .iter_mut()
            .find(|(k, _)| *k == (*rule, *result))
        {
            Some((_, n)) => *n += times,
            None => expected_counts.push(((*rule, *result), *times)),
        }
    }
    for ((rule, result), count) in &expected_counts {
        assert_eq!(
            comparisons(&edge, rule, result),
            *count as f64,
            "{rule} {result}"
        );
    }
    let text = edge.metrics();
    let total: f64 = text
        .lines()
        .filter(|l| l.starts_with("preflightd_shadow_comparisons_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(total, sent as f64);
    // Nothing was answered at the edge, everything was proxied.
    assert!(
        !text.contains("preflightd_preflight_requests_total{"),
        "a shadowed preflight counted as answered at the edge"
    );
    assert_eq!(
        crate::support::sample(&text, "preflightd_proxy_requests_total{code_class=\"2xx\"}"),
        sent as f64
    );

    // /shadow: the mismatches only, most frequent first, each with both answers.
    let report = shadow_report(&edge);
    assert_eq!(report["mode"], "shadow");
    assert_eq!(report["generation"], 1);
    assert_eq!(report["capacity"], 256);
    assert_eq!(report["overflow"], 0);
    let mismatches = report["mismatches"].as_array().expect("mismatches");
    let differing = CASES.iter().filter(|c| c.6 != "match").count();
    assert_eq!(report["distinct"], differing);
    assert_eq!(mismatches.len(), differing);
    let first = &mismatches[0];
    assert_eq!(first["count"], 3);
    assert_eq!(first["result"], "only_upstream_allows");
    assert_eq!(first["rule"], "web");
    assert_eq!(first["request"]["method"], "PATCH");
    assert_eq!(first["request"]["host"], "api.example.com");
    assert_eq!(first["request"]["path"], "/v1/items/7");
    assert_eq!(first["upstream"]["status"], 204);
    assert_eq!(first["upstream"]["allows"], "with_credentials");
    assert_eq!(first["upstream"]["max_age"], 300);
    assert_eq!(first["rules"]["status"], 403);
    assert_eq!(first["rules"]["decision"], "method");
    assert_eq!(first["rules"]["allows"], "nothing");
    assert_eq!(first["rules"]["fails_at"]["without_credentials"], "origin");
    assert_eq!(first["rules"]["headers"], Value::Array(vec![]));
    // `explain`'s prescription: the smallest edit `check` accepts, with the rule's place.
    let suggestion = |m: &Value| m["suggestion"].as_str().unwrap_or_default().to_owned();
    assert!(
        suggestion(first).starts_with("add \"PATCH\" to methods of rule \"web\" (")
            && suggestion(first).ends_with("rules.toml:5)"),
        "{first:#}"
    );
    let upstream_headers = first["upstream"]["headers"].to_string();
    assert!(
        upstream_headers.contains("[\"access-control-allow-methods\",\"GET, POST, PUT, PATCH\"]"),
        "{upstream_headers}"
    );
    let second = &mismatches[1];
    assert_eq!(
        (&second["count"], &second["request"]["headers"]),
        (&Value::from(2), &serde_json::json!(["x-legacy"]))
    );
    assert!(
        suggestion(second).starts_with("add \"x-legacy\" to headers of rule \"web\" ("),
        "{second:#}"
    );
    let find = |origin: &str, host: &str, method: &str| {
        mismatches
            .iter()
            .find(|m| {
                m["request"]["origin"] == origin
                    && m["request"]["host"] == host
                    && m["request"]["method"] == method
            })
            .unwrap_or_else(|| panic!("no mismatch for {origin} {host} {method}: {report:#}"))
    };
    let tenant = find("https://a1.tenant.example", "api.example.com", "PUT");
    assert_eq!(tenant["rules"]["decision"], "origin");
    assert!(
        tenant["suggestion"]
            .as_str()
            .is_some_and(|s| s.starts_with("add \"https://a1.tenant.example\" to origins of rule")),
        "{tenant:#}"
    );
    let out_of_scope = find("https://app.example.com", "other.example.com", "PUT");
    assert_eq!(out_of_scope["rules"]["decision"], "no_rule");
    assert!(
        out_of_scope["suggestion"]
            .as_str()
            .is_some_and(|s| s.starts_with("add \"other.example.com\" to hosts of rule \"web\"")),
        "{out_of_scope:#}"
    );
    // Where the rules allow more, or as much differently, there is nothing to prescribe.
    let delete = find("https://app.example.com", "api.example.com", "DELETE");
    assert_eq!(delete["result"], "only_rules_allow");
    assert_eq!(delete["rules"]["allows"], "with_credentials");
    assert_eq!(
        delete["upstream"]["fails_at"]["without_credentials"],
        "method"
    );
    assert_eq!(delete["suggestion"], Value::Null);
    let legacy = find("https://legacy.example.com", "api.example.com", "PUT");
    assert_eq!(legacy["result"], "both_allow_differently");
    assert_eq!(
        (&legacy["upstream"]["max_age"], &legacy["rules"]["max_age"]),
        (&Value::from(300), &Value::from(60))
    );
    assert_eq!(
        legacy["rules"]["fails_at"]["with_credentials"],
        "credentials"
    );

    // A mismatch is logged with both answers and the rule (rate-limited: the first is).
    let line = edge.process.wait_for_line("shadow mismatch");
    for needle in [
        "\"result\":\"only_upstream_allows\"",
        "\"rule\":\"web\"",
        "PATCH",
        "api.example.com",
        "/v1/items/7",
        "access-control-allow-methods: GET, POST, PUT, PATCH",
        "\"rules\":\"403 []\"",
        "denied at method",
    ] {
        assert!(line.contains(needle), "{needle} not in {line}");
    }

    // Any rules change starts the table over (a new policy, a new table) ...
    let wait_generation = |generation: u64| {
        let deadline = Instant::now() + WAIT;
        loop {
            let report = shadow_report(&edge);
            if report["generation"] == generation {
                return report;
            }
            assert!(
                Instant::now() < deadline,
                "generation {generation} was never applied"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let rules_file = edge.rules_dir().join("rules.toml");
    std::fs::write(&rules_file, format!("{SHADOW_RULES}\n# reviewed\n")).expect("rewrite rules");
    let report = wait_generation(2);
    assert_eq!(
        (&report["mode"], &report["distinct"]),
        (&Value::from("shadow"), &Value::from(0))
    );
    let patch = preflight(
        "/v1/x",
        "api.example.com",
        "https://app.example.com",
        "PATCH",
        "",
    );
    assert_eq!(
        send(edge.data, &patch).header("x-upstream"),
        Some("preflight")
    );
    let report = shadow_report(&edge);
    assert_eq!(report["distinct"], 1);
    assert_eq!(report["mismatches"][0]["count"], 1);
    assert_eq!(comparisons(&edge, "web", "only_upstream_allows"), 6.0);

    // ... and `enforce` ends it: the edge answers again, the upstream sees no preflight.
    std::fs::write(
        &rules_file,
        SHADOW_RULES.replace("mode = \"shadow\"", "mode = \"enforce\""),
    )
    .expect("rewrite rules");
    let report = wait_generation(3);
    assert_eq!(report["mode"], "enforce");
    assert_eq!(report["mismatches"], Value::Array(vec![]));
    let answered = send(edge.data, &patch);
    assert_eq!(answered.status, 403);
    assert_eq!(answered.header("x-upstream"), None);
    assert_eq!(behind.preflights(), sent + 1);
}

#[test]
fn out_of_scope_preflights_forwarded_by_the_rules_are_not_compared() {
    let upstream = Upstream::start_cors(&[]);
    let rules = SHADOW_RULES.replace(
        "mode = \"shadow\"",
        "mode = \"shadow\"\nunmatched = \"forward\"",
    );
    let edge = Preflightd::start(&rules, Some(&upstream.url()), &[]);
    let request = preflight(
        "/",
        "other.example.com",
        "https://app.example.com",
        "PUT",
        "",
    );
    assert_eq!(
        send(edge.data, &request).header("x-upstream"),
        Some("preflight")
    );
    assert_eq!(
        edge.metric("preflightd_preflight_requests_total{result=\"forwarded\",rule=\"(none)\"}"),
        1.0
    );
    assert!(
        !edge
            .metrics()
            .contains("preflightd_shadow_comparisons_total{")
    );
    assert_eq!(shadow_report(&edge)["distinct"], 0);
}

#[test]
fn a_failing_or_stalled_upstream_on_a_shadowed_preflight_is_502_or_504_and_counted_apart() {
    // Down: 502, as for any proxied request.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let down = Preflightd::start(
        SHADOW_RULES,
        Some(&format!("http://{closed}")),
        &["--upstream-connect-timeout", "2s"],
    );
    let request = preflight(
        "/v1/x",
        "api.example.com",
        "https://app.example.com",
        "PUT",
        "",
    );
    let failed = send(down.data, &request);
    assert_eq!(failed.status_line, "HTTP/1.1 502 Bad Gateway");
    assert_eq!(failed.text(), "upstream request failed\n");
    assert_eq!(
        down.metric("preflightd_shadow_upstream_failures_total{kind=\"error\"}"),
        1.0
    );
    assert_eq!(
        down.metric("preflightd_shadow_upstream_failures_total{kind=\"timeout\"}"),
        0.0
    );
    assert!(
        !down
            .metrics()
            .contains("preflightd_shadow_comparisons_total{")
    );

    // Stalled: 504 after --upstream-timeout, while other preflights are answered meanwhile.
    let upstream = Upstream::start_cors(&[]);
    let edge = Preflightd::start(
        SHADOW_RULES,
        Some(&upstream.url()),
        &["--upstream-timeout", "1s"],
    );
    let data = edge.data;
    let stalled = std::thread::spawn(move || {
        let started = Instant::now();
        let response = send(
            data,
            &preflight(
                "/slow?ms=8000",
                "api.example.com",
                "https://app.example.com",
                "PUT",
                "",
            ),
        );
        (response, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(200));
    let mut meanwhile = 0;
    while !stalled.is_finished() {
        let started = Instant::now();
        let answered = send(edge.data, &request);
        assert_eq!(answered.status, 204);
        assert_eq!(answered.header("x-upstream"), Some("preflight"));
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "a preflight waited on the stalled one: {:?}",
            started.elapsed()
        );
        meanwhile += 1;
        assert!(meanwhile < 1000, "the stalled preflight never ended");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (response, took) = stalled.join().expect("stalled thread");
    assert_eq!(response.status_line, "HTTP/1.1 504 Gateway Timeout");
    assert_eq!(response.text(), "upstream timed out\n");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "took {took:?}"
    );
    assert!(meanwhile >= 5, "only {meanwhile} preflights meanwhile");
    assert_eq!(
        edge.metric("preflightd_shadow_upstream_failures_total{kind=\"timeout\"}"),
        1.0
    );
    assert_eq!(comparisons(&edge, "web", "match"), f64::from(meanwhile));
}

/// A small xorshift generator: random origins without a dependency.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn the_shadow_table_stays_bounded_under_100k_distinct_random_origins() {
    const ORIGINS: u64 = 100_000;
    const THREADS: u64 = 4;
    const BATCH: u64 = 100;
    let upstream = Upstream::start_cors(&[]);
    let edge = Preflightd::start(SHADOW_RULES, Some(&upstream.url()), &[]);
    // Each thread floods on one keep-alive connection, BATCH preflights per write.
    let flood = |thread: u64, from: u64, to: u64, seed: u64| {
        let mut random = Random(seed | 1);
        let mut stream = BufReader::new(connect(edge.data));
        let mut i = from;
        while i < to {
            let end = (i + BATCH).min(to);
            let mut batch = String::new();
            let mut origins = Vec::new();
            for n in i..end {
                // Distinct by the counter, random by the rest.
                let origin = format!(
                    "https://t{thread}n{n}r{:x}.tenant.example",
                    random.next() >> 16
                );
                batch.push_str(&preflight("/bulk/x", "api.example.com", &origin, "PUT", ""));
                origins.push(origin);
            }
            stream
                .get_mut()
                .write_all(batch.as_bytes())
                .expect("write batch");
            for origin in &origins {
                let response = read_response(&mut stream);
                assert_eq!(response.status, 204, "{origin}");
                assert_eq!(
                    response.header("access-control-allow-origin"),
                    Some(origin.as_str())
                );
            }
            i = end;
        }
    };
    // Warm up (connections, buffers, a full table), then take the RSS baseline.
    flood(9, 0, 300, 7);
    let rss_before = edge.process.rss_kib();

    let stop = Arc::new(AtomicBool::new(false));
    let probes = Arc::new(AtomicU64::new(0));
    let prober = {
        let (stop, probes, data) = (Arc::clone(&stop), Arc::clone(&probes), edge.data);
        std::thread::spawn(move || {
            let request = preflight(
                "/v1/x",
                "api.example.com",
                "https://app.example.com",
                "PUT",
                "",
            );
            let mut slowest = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let response = send(data, &request);
                assert_eq!(response.status, 204);
                assert_eq!(response.header("x-upstream"), Some("preflight"));
                slowest = slowest.max(started.elapsed());
                probes.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
            slowest
        })
    };
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let per = ORIGINS / THREADS;
            let flood = &flood;
            scope.spawn(move || flood(thread, thread * per, (thread + 1) * per, seed + thread));
        }
    });
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let slowest = prober.join().expect("prober");
    let probes = probes.load(Ordering::Relaxed);
    eprintln!("100k shadowed preflights in {took:?}; {probes} probes, slowest {slowest:?}");
    assert!(took < Duration::from_secs(300), "took {took:?}");
    assert!(
        probes >= 3,
        "only {probes} probes answered during the flood"
    );
    assert!(slowest < Duration::from_secs(2), "a probe took {slowest:?}");

    let all = ORIGINS + 300;
    assert_eq!(upstream.preflights(), all + probes);
    assert_eq!(
        comparisons(&edge, "(none)", "only_upstream_allows"),
        all as f64
    );
    assert_eq!(comparisons(&edge, "web", "match"), probes as f64);
    let report = shadow_report(&edge);
    assert_eq!(report["distinct"], 256);
    assert_eq!(report["mismatches"].as_array().map(Vec::len), Some(256));
    assert_eq!(report["overflow"], all - 256);
    assert!(
        report["mismatches"]
            .as_array()
            .is_some_and(|m| m.iter().all(|e| e["count"] == 1))
    );
    assert_eq!(
        edge.metric("preflightd_shadow_table_overflow_total"),
        (all - 256) as f64
    );
    // The memory bound: 256 entries of at most a few KiB; 100 000 kept would be far more.
    let rss_after = edge.process.rss_kib();
    assert!(
        rss_after < rss_before + 48 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    // Logged at most once a second (the rest counted as suppressed).
    let logged = edge
        .process
        .lines
        .try_iter()
        .filter(|l| l.contains("shadow mismatch"))
        .count();
    assert!(
        logged as u64 <= took.as_secs() + 3,
        "{logged} mismatch lines in {took:?}"
    );
}

/// Who answered a preflight for `https://app.example.com` (`PUT`, `content-type`): the edge
/// (max-age 600, no `X-Upstream`) or the upstream (its max-age 300 and `X-Upstream`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answered {
    Edge,
    Upstream,
}

fn answered_by(response: &RawResponse) -> Answered {
    assert_eq!(response.status, 204, "{response:?}");
    assert_eq!(
        response.header("access-control-allow-origin"),
        Some("https://app.example.com"),
        "{response:?}"
    );
    match (
        response.header("access-control-max-age"),
        response.header("x-upstream"),
    ) {
        (Some("600"), None) => Answered::Edge,
        (Some("300"), Some("preflight")) => Answered::Upstream,
        other => panic!("an answer neither the edge's nor the upstream's: {other:?}"),
    }
}

#[test]
fn switching_mode_by_a_rules_reload_under_load_changes_who_answers_with_no_failed_request() {
    let upstream = Upstream::start_cors(&[]);
    let rules = |mode: &str| {
        SHADOW_RULES
            .replace("mode = \"shadow\"", &format!("mode = \"{mode}\""))
            .replace("max_age = 300", "max_age = 600")
    };
    let edge = Preflightd::start(
        &rules("enforce"),
        Some(&upstream.url()),
        &["--reload-debounce", "20ms"],
    );
    let request = preflight(
        "/v1/x",
        "api.example.com",
        "https://app.example.com",
        "PUT",
        "content-type",
    );
    let get = "GET /v1/x HTTP/1.1\r\nHost: api.example.com\r\n\r\n";
    let stop = Arc::new(AtomicBool::new(false));
    // Every answer: (when its request was sent, who answered).
    type Seen = Vec<(Instant, Answered)>;
    let client = |kind: u8, stop: Arc<AtomicBool>, data: SocketAddr, request: String| {
        std::thread::spawn(move || -> Seen {
            let mut seen = Seen::new();
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut kept = BufReader::new(connect(data));
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let sent = Instant::now();
                let response = match kind {
                    // A new connection for each preflight: the fast path decides it.
                    0 => send(data, &request),
                    // One keep-alive connection for everything, proxied GETs between.
                    _ => {
                        n += 1;
                        if kind == 2 && n.is_multiple_of(3) {
                            kept.get_mut().write_all(get.as_bytes()).expect("write get");
                            let proxied = read_response(&mut kept);
                            assert_eq!(proxied.status, 200, "{proxied:?}");
                            continue;
                        }
                        kept.get_mut().write_all(request.as_bytes()).expect("write");
                        read_response(&mut kept)
                    }
                };
                seen.push((sent, answered_by(&response)));
                std::thread::sleep(Duration::from_millis(2));
            }
            seen
        })
    };
    let clients: Vec<_> = (0..3u8)
        .map(|kind| client(kind, Arc::clone(&stop), edge.data, request.clone()))
        .collect();

    // Phases: (from when every new request must see the mode, until when, who answers).
    let mut phases = Vec::new();
    let generation = |edge: &Preflightd| -> u64 {
        let response = send(
            edge.admin,
            "GET /rules HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        );
        let json: Value = serde_json::from_slice(&response.body).expect("rules json");
        json["generation"].as_u64().expect("generation")
    };
    let mut from = Instant::now();
    let mut who = Answered::Edge;
    for (current, mode) in (1..).zip(["shadow", "enforce", "shadow", "enforce"]) {
        std::thread::sleep(Duration::from_millis(400));
        let until = Instant::now();
        phases.push((from, until, who));
        std::fs::write(edge.rules_dir().join("rules.toml"), rules(mode)).expect("write rules");
        let deadline = Instant::now() + WAIT;
        while generation(&edge) == current {
            assert!(Instant::now() < deadline, "{mode} was never applied");
            std::thread::sleep(Duration::from_millis(10));
        }
        // The new policy is live: every request sent from now on is decided on it.
        from = Instant::now();
        who = if mode == "shadow" {
            Answered::Upstream
        } else {
            Answered::Edge
        };
    }
    std::thread::sleep(Duration::from_millis(400));
    phases.push((from, Instant::now(), who));
    stop.store(true, Ordering::Relaxed);
    let seen: Vec<Seen> = clients
        .into_iter()
        .map(|c| c.join().expect("a client failed a request"))
        .collect();

    // A request sent just before a rules write is decided before the new policy is live
    // unless the server sat on it past the debounce: leave a margin at the end of a phase.
    let margin = Duration::from_millis(150);
    let mut by_upstream = 0;
    let mut by_edge = 0;
    for (kind, answers) in seen.iter().enumerate() {
        for (from, until, who) in &phases {
            let inside: Vec<Answered> = answers
                .iter()
                .filter(|(sent, _)| sent >= from && *sent + margin < *until)
                .map(|(_, who)| *who)
                .collect();
            assert!(!inside.is_empty(), "client {kind}: no request in a phase");
            assert!(
                inside.iter().all(|w| w == who),
                "client {kind}: {inside:?} in a phase the {who:?} answers"
            );
        }
        by_upstream += answers
            .iter()
            .filter(|(_, w)| *w == Answered::Upstream)
            .count();
        by_edge += answers.iter().filter(|(_, w)| *w == Answered::Edge).count();
    }
    // Every answer is accounted for on the side that gave it.
    assert_eq!(upstream.preflights(), by_upstream as u64);
    assert_eq!(
        edge.metric("preflightd_preflight_requests_total{result=\"allowed\",rule=\"web\"}"),
        by_edge as f64
    );
    // Rules max-age 600 against the upstream's 300: the same access, differently cached.
    assert_eq!(
        comparisons(&edge, "web", "both_allow_differently"),
        by_upstream as f64
    );
}

#[test]
fn without_an_upstream_shadow_mode_answers_from_the_rules_and_says_so() {
    let edge = Preflightd::start(SHADOW_RULES, None, &[]);
    edge.process.wait_for_line("without --upstream");
    let answered = send(
        edge.data,
        &preflight("/", "api.example.com", "https://app.example.com", "PUT", ""),
    );
    assert_eq!(answered.status, 204);
    assert_eq!(answered.header("access-control-max-age"), Some("300"));
    assert_eq!(
        edge.metric("preflightd_preflight_requests_total{result=\"allowed\",rule=\"web\"}"),
        1.0
    );
    assert!(
        !edge
            .metrics()
            .contains("preflightd_shadow_comparisons_total{")
    );
}

/// A hostile application: 40 KiB of CORS fields in every preflight answer (40
/// `Access-Control-Allow-Origin` lines of 424 bytes, 19 KiB of `-Allow-Headers`). The client
/// gets them unchanged; what shadow mode keeps of them is bounded (README, Limits: at most 8
/// `Access-Control-*` lines per answer, each value cut at 1 KiB), and preflights are
/// answered meanwhile.
#[test]
fn a_hostile_upstreams_cors_fields_reach_the_client_and_are_kept_bounded() {
    let upstream = Upstream::start_cors(&[]);
    let edge = Preflightd::start(SHADOW_RULES, Some(&upstream.url()), &[]);
    // Requests the rules allow (and the flood, with 40 origins, does not): 16 distinct
    // mismatches, each kept.
    let mut requests = Vec::new();
    for origin in ["https://app.example.com", "https://new.example.com"] {
        for method in ["PUT", "DELETE"] {
            for headers in ["", "content-type", "x-api-key", "content-type, x-api-key"] {
                requests.push((origin, method, headers));
            }
        }
    }
    for (origin, method, headers) in requests {
        let response = send(
            edge.data,
            &preflight("/cors-flood", "api.example.com", origin, method, headers),
        );
        assert_eq!(response.status, 204);
        let origins = response.all("access-control-allow-origin");
        assert_eq!(origins.len(), 40, "the upstream's lines, unchanged");
        assert!(
            origins.iter().all(|o| o.len() == 424),
            "{:?}",
            origins[0].len()
        );
        // "x-h0,...,x-h2499": 18 889 bytes.
        assert_eq!(
            response
                .header("access-control-allow-headers")
                .map(str::len),
            Some(18_889)
        );
    }
    let report = shadow_report(&edge);
    let mismatches = report["mismatches"].as_array().expect("mismatches");
    assert_eq!(mismatches.len(), 16, "{report:#}");
    for mismatch in mismatches {
        assert_eq!(mismatch["result"], "only_rules_allow");
        let kept = mismatch["upstream"]["headers"].as_array().expect("headers");
        assert!(kept.len() <= 8, "{} lines kept", kept.len());
        for field in kept {
            let value = field[1].as_str().expect("value");
            assert!(value.len() <= 1024, "a value of {} bytes kept", value.len());
        }
    }
    let line = edge.process.wait_for_line("shadow mismatch");
    assert!(line.len() < 32 * 1024, "a log line of {} bytes", line.len());
    // The edge still answers what the rules answer, in enforce mode or not: the upstream
    // answers this one, promptly.
    let started = Instant::now();
    let probe = send(
        edge.data,
        &preflight("/", "api.example.com", "https://app.example.com", "PUT", ""),
    );
    assert_eq!(probe.status, 204);
    assert!(started.elapsed() < Duration::from_millis(500));
}
