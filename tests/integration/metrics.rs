//! The admin port (DESIGN 7): `/metrics` parses and counts exactly what was sent; health,
//! readiness and `/rules`.

use std::io::{BufReader, Write};

use crate::support::{
    Preflightd, RULES, Upstream, connect, preflight, read_response, sample, send,
};

#[test]
fn metrics_parse_and_count_exactly_what_was_sent() {
    let upstream = Upstream::start();
    let edge = Preflightd::start(RULES, Some(&upstream.url()), &[]);
    for _ in 0..3 {
        send(
            edge.data,
            &preflight("/", "api.example.com", "https://app.example.com", "PUT", ""),
        );
    }
    for _ in 0..2 {
        send(
            edge.data,
            &preflight("/", "api.example.com", "https://evil.example", "PUT", ""),
        );
    }
    send(
        edge.data,
        &preflight(
            "/",
            "api.example.com",
            "https://app.example.com",
            "PATCH",
            "",
        ),
    );
    send(
        edge.data,
        &preflight(
            "/",
            "api.example.com",
            "https://app.example.com",
            "PUT",
            "x-not-listed",
        ),
    );
    send(
        edge.data,
        &preflight(
            "/",
            "api.example.com",
            "https://app.example.com",
            "BAD METHOD",
            "",
        ),
    );
    send(
        edge.data,
        &preflight(
            "/",
            "other.example.com",
            "https://app.example.com",
            "PUT",
            "",
        ),
    );
    for _ in 0..4 {
        send(
            edge.data,
            "GET /small HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n",
        );
    }
    send(
        edge.data,
        "GET /status/404 HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n",
    );

    let text = edge.metrics();
    crate::prometheus_text::validate(&text)
        .unwrap_or_else(|e| panic!("invalid exposition: {e}\n{text}"));
    let count = |series: &str| sample(&text, series);
    assert_eq!(
        count("preflightd_preflight_requests_total{result=\"allowed\",rule=\"web\"}"),
        3.0
    );
    assert_eq!(
        count("preflightd_preflight_requests_total{result=\"origin\",rule=\"(none)\"}"),
        2.0
    );
    assert_eq!(
        count("preflightd_preflight_requests_total{result=\"method\",rule=\"web\"}"),
        1.0
    );
    assert_eq!(
        count("preflightd_preflight_requests_total{result=\"headers\",rule=\"web\"}"),
        1.0
    );
    assert_eq!(
        count("preflightd_preflight_requests_total{result=\"malformed\",rule=\"(none)\"}"),
        1.0
    );
    assert_eq!(
        count("preflightd_preflight_requests_total{result=\"no_rule\",rule=\"(none)\"}"),
        1.0
    );
    // The fast path times one answer in 16 per thread (README, Metrics): at most all 9.
    let timed = count("preflightd_preflight_duration_seconds_count");
    assert!(timed <= 9.0, "{timed} timed of 9 answers");
    assert_eq!(
        count("preflightd_proxy_requests_total{code_class=\"2xx\"}"),
        4.0
    );
    assert_eq!(
        count("preflightd_proxy_requests_total{code_class=\"4xx\"}"),
        1.0
    );
    assert_eq!(count("preflightd_upstream_duration_seconds_count"), 5.0);
    assert_eq!(count("preflightd_rules_loaded"), 1.0);
    assert_eq!(count("preflightd_rules_last_reload_successful"), 1.0);
    assert_eq!(count("preflightd_build_info{version=\"0.1.0\"}"), 1.0);
    assert!(count("preflightd_rules_last_reload_success_timestamp_seconds") > 1.7e9);
    assert!(count("process_resident_memory_bytes") > 0.0);
    // No series for results that never happened at 10 000 rules' scale.
    assert!(
        !text.contains("result=\"forwarded\""),
        "unused series exported"
    );

    let health = send(
        edge.admin,
        "GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    let ready = send(
        edge.admin,
        "GET /readyz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert_eq!((health.status, ready.status), (200, 200));
    let rules = send(
        edge.admin,
        "GET /rules HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    let json: serde_json::Value = serde_json::from_slice(&rules.body).expect("rules json");
    assert_eq!(json["generation"], 1);
    assert_eq!(json["rules"][0]["name"], "web");
    assert_eq!(json["rules"][0]["origins"][0], "https://app.example.com");
    let sha = json["sha256"].as_str().expect("sha256");
    assert_eq!(sha.len(), 64);
    assert_eq!(
        count(&format!("preflightd_rules_info{{sha256=\"{sha}\"}}")),
        1.0
    );
    // The data port does not serve admin paths: they are proxied like anything else.
    assert_eq!(
        send(
            edge.data,
            "GET /metrics HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n"
        )
        .header("x-upstream"),
        Some("yes")
    );
}

#[test]
fn the_hyper_path_times_every_preflight_answer() {
    let upstream = Upstream::start();
    let edge = Preflightd::start(RULES, Some(&upstream.url()), &[]);
    let timed = |edge: &Preflightd| {
        sample(
            &edge.metrics(),
            "preflightd_preflight_duration_seconds_count",
        )
    };
    let before = timed(&edge);
    for _ in 0..3 {
        // A proxied GET first: the connection is hyper's from then on.
        let mut stream = connect(edge.data);
        stream
            .write_all(b"GET /small HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
            .expect("GET");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        assert_eq!(read_response(&mut reader).status, 200);
        stream
            .write_all(
                preflight("/", "api.example.com", "https://app.example.com", "PUT", "").as_bytes(),
            )
            .expect("preflight");
        assert_eq!(read_response(&mut reader).status, 204);
    }
    assert_eq!(timed(&edge) - before, 3.0);
}

#[test]
fn the_fast_path_times_one_answer_in_sixteen() {
    // 32 preflights on fresh connections, answered by the fast path: each of the two
    // workers times one answer in 16 of its own, so 1 or 2 of them are timed (at least one
    // worker answers 16); the hyper path would time all 32.
    let edge = Preflightd::start(RULES, None, &[]);
    for _ in 0..32 {
        let response = send(
            edge.data,
            &preflight("/", "api.example.com", "https://app.example.com", "PUT", ""),
        );
        assert_eq!(response.status, 204);
    }
    let text = edge.metrics();
    assert_eq!(
        sample(
            &text,
            "preflightd_preflight_requests_total{result=\"allowed\",rule=\"web\"}"
        ),
        32.0
    );
    let timed = sample(&text, "preflightd_preflight_duration_seconds_count");
    assert!((1.0..=2.0).contains(&timed), "{timed} of 32 answers timed");
}

/// Private Network Access is legacy (DESIGN 12): every preflight that still carries
/// `Access-Control-Request-Private-Network`, whatever its value and whichever path answers
/// it, is counted, so an operator can see when the key can go.
#[test]
fn legacy_private_network_preflights_are_counted() {
    let upstream = Upstream::start();
    let rules = r#"
[[rule]]
name = "printer"
origins = ["https://app.example.com"]
methods = ["PUT"]
private_network = true
"#;
    let edge = Preflightd::start(rules, Some(&upstream.url()), &[]);
    let series = "preflightd_private_network_preflights_total";
    assert_eq!(edge.metric(series), 0.0);
    let with = |origin: &str, value: Option<&str>| {
        let mut request = preflight("/", "lan.test", origin, "PUT", "");
        if let Some(value) = value {
            request = request.replacen(
                "\r\n\r\n",
                &format!("\r\nAccess-Control-Request-Private-Network: {value}\r\n\r\n"),
                1,
            );
        }
        send(edge.data, &request)
    };
    let granted = with("https://app.example.com", Some("true"));
    assert_eq!(
        granted.header("access-control-allow-private-network"),
        Some("true")
    );
    assert_eq!(with("https://app.example.com", Some("false")).status, 204);
    assert_eq!(with("https://evil.test", Some("true")).status, 403);
    assert_eq!(with("https://app.example.com", None).status, 204);
    // The hyper path (after a proxied GET on the same connection) counts too.
    let mut stream = connect(edge.data);
    stream
        .write_all(b"GET /x HTTP/1.1\r\nHost: lan.test\r\n\r\n")
        .expect("write");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    assert_eq!(read_response(&mut reader).status, 200);
    let request = preflight("/", "lan.test", "https://app.example.com", "PUT", "").replacen(
        "\r\n\r\n",
        "\r\nAccess-Control-Request-Private-Network: true\r\n\r\n",
        1,
    );
    stream.write_all(request.as_bytes()).expect("write");
    assert_eq!(read_response(&mut reader).status, 204);
    assert_eq!(edge.metric(series), 4.0);
}
