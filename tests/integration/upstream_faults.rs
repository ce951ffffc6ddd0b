//! Faults from a misbehaving upstream (`examples/fault_upstream.rs`) and from clients
//! (DESIGN 10): nothing lost, nothing truncated, client faults counted as client faults, and
//! preflights answered throughout.

use std::io::{BufReader, Read, Write};
use std::time::Duration;

use crate::support::{
    FaultUpstream, Preflightd, RULES, Upstream, WAIT, connect, preflight, read_response, send,
};

const UPSTREAM_ERRORS: [&str; 4] = ["connect", "timeout", "reset", "protocol"];

fn upstream_errors(edge: &Preflightd) -> Vec<(&'static str, f64)> {
    let metrics = edge.metrics();
    UPSTREAM_ERRORS
        .iter()
        .map(|kind| {
            let series = format!("preflightd_upstream_errors_total{{kind=\"{kind}\"}}");
            (*kind, crate::support::sample(&metrics, &series))
        })
        .collect()
}

fn no_upstream_errors() -> Vec<(&'static str, f64)> {
    UPSTREAM_ERRORS.iter().map(|kind| (*kind, 0.0)).collect()
}

fn preflight_answered(edge: &Preflightd) {
    let answer = send(
        edge.data,
        &preflight(
            "/v1/x",
            "api.example.com",
            "https://app.example.com",
            "PUT",
            "",
        ),
    );
    assert_eq!(answer.status, 204);
}

#[test]
fn content_length_beside_transfer_encoding_reaches_every_client_intact() {
    let upstream = FaultUpstream::start();
    let edge = Preflightd::start(RULES, Some(&upstream.url()), &[]);
    // RFC 9112 6.3: the chunked framing wins; the lying Content-Length: 3 must not truncate.
    let response = send(
        edge.data,
        "GET /cl-te HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "hello");
    assert_ne!(response.header("content-length"), Some("3"));
    // The same through HTTP/2 (curl, prior knowledge): the stream completes with the body.
    let out = std::process::Command::new("curl")
        .args(["-s", "--http2-prior-knowledge", "--max-time", "10"])
        .arg(format!("http://{}/cl-te", edge.data))
        .output()
        .expect("curl");
    assert_eq!(out.status.code(), Some(0), "curl failed");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello");
}

#[test]
fn no_request_is_lost_to_an_upstream_that_closes_idle_connections() {
    // The upstream closes a keep-alive connection 20 ms after each response; the client
    // sends its next request 15 to 25 ms after the last answer, so every few requests race
    // the close. Each must be answered by the upstream, none with a 502.
    let upstream = FaultUpstream::start_idle_close(20);
    let edge = Preflightd::start(RULES, Some(&upstream.url()), &[]);
    let stream = connect(edge.data);
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    let total = 300;
    let mut failed = Vec::new();
    for i in 0..total {
        let request = format!("GET /ok?{i} HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
        writer.write_all(request.as_bytes()).expect("write");
        let response = read_response(&mut reader);
        if response.status != 200 {
            failed.push((i, response.status));
        }
        std::thread::sleep(Duration::from_millis(15 + (i % 11)));
    }
    assert_eq!(failed, [], "requests not answered by the upstream");
    assert!(upstream.idle_closes() > 10, "the race never happened");
    assert_eq!(upstream.requests().len(), total as usize);
    assert_eq!(upstream_errors(&edge), no_upstream_errors());
}

const MALFORMED_CHUNKED: &[(&str, &str)] = &[
    (
        "chunk size overflow",
        "FFFFFFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n",
    ),
    ("negative chunk size", "-5\r\nhello\r\n0\r\n\r\n"),
    ("0x chunk size", "0x5\r\nhello\r\n0\r\n\r\n"),
    ("bare LF", "5\nhello\n0\n\n"),
    ("missing CRLF after data", "5\r\nhelloXY0\r\n\r\n"),
];

#[test]
fn a_malformed_chunked_body_is_a_400_and_no_upstream_error() {
    let upstream = Upstream::start();
    let edge = Preflightd::start(RULES, Some(&upstream.url()), &[]);
    let long_extension = format!("5;{}\r\nhello\r\n0\r\n\r\n", "a".repeat(100_000));
    let mut cases: Vec<(&str, String)> = MALFORMED_CHUNKED
        .iter()
        .map(|(name, body)| (*name, (*body).to_owned()))
        .collect();
    cases.push(("100 KB chunk extension", long_extension));
    for (name, body) in &cases {
        let response = send(
            edge.data,
            &format!(
                "POST /upload HTTP/1.1\r\nHost: api.example.com\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{body}"
            ),
        );
        assert_eq!(
            (response.status, response.text().as_str()),
            (400, "malformed request body\n"),
            "{name}"
        );
    }
    assert_eq!(upstream_errors(&edge), no_upstream_errors());
    assert_eq!(
        edge.metric("preflightd_client_errors_total{kind=\"malformed_body\"}"),
        cases.len() as f64
    );
    preflight_answered(&edge);
}

#[test]
fn a_client_that_abandons_its_upload_is_no_upstream_error() {
    let upstream = Upstream::start();
    let edge = Preflightd::start(RULES, Some(&upstream.url()), &[]);
    let mut stream = connect(edge.data);
    stream
        .write_all(
            b"POST /upload HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 1000\r\n\r\n0123456789",
        )
        .expect("write");
    std::thread::sleep(Duration::from_millis(200));
    drop(stream);
    let series = "preflightd_client_errors_total{kind=\"aborted\"}";
    let deadline = std::time::Instant::now() + WAIT;
    while edge.metric(series) < 1.0 {
        assert!(std::time::Instant::now() < deadline, "abort never counted");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(upstream_errors(&edge), no_upstream_errors());
}

#[test]
fn a_long_upload_that_keeps_progressing_is_never_cut_by_the_upstream_timeout() {
    // 60 KB at 1 KB/s: a minute of upload through a 5 s --upstream-timeout, which measures
    // the upstream's silence after the request's last byte, not the request's age.
    let upstream = Upstream::start();
    let edge = Preflightd::start(RULES, Some(&upstream.url()), &["--upstream-timeout", "5s"]);
    let mut stream = connect(edge.data);
    stream
        .set_read_timeout(Some(Duration::from_secs(90)))
        .expect("timeout");
    stream
        .write_all(
            b"POST /upload HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 60000\r\nConnection: close\r\n\r\n",
        )
        .expect("write head");
    let chunk = [b'u'; 1000];
    for second in 0..60 {
        stream.write_all(&chunk).expect("write chunk");
        if second == 30 {
            preflight_answered(&edge);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let response = read_response(&mut BufReader::new(stream));
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(response.text().contains("60000"), "{}", response.text());
    assert_eq!(upstream_errors(&edge), no_upstream_errors());
}

#[test]
fn a_silent_upstream_is_504_after_the_timeout_while_preflights_are_answered() {
    let upstream = FaultUpstream::start();
    let edge = Preflightd::start(RULES, Some(&upstream.url()), &["--upstream-timeout", "1s"]);
    let data = edge.data;
    let silent = std::thread::spawn(move || {
        send(
            data,
            "GET /silence HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n",
        )
    });
    preflight_answered(&edge);
    let response = silent.join().expect("thread");
    assert_eq!(
        (response.status, response.text().as_str()),
        (504, "upstream timed out\n")
    );
    assert_eq!(
        edge.metric("preflightd_upstream_errors_total{kind=\"timeout\"}"),
        1.0
    );
}

#[test]
fn an_upstream_reset_mid_body_cuts_the_response_and_counts_a_reset() {
    let upstream = FaultUpstream::start();
    let edge = Preflightd::start(RULES, Some(&upstream.url()), &[]);
    let mut stream = connect(edge.data);
    stream
        .write_all(b"GET /reset-mid-body HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
        .expect("write");
    let mut received = Vec::new();
    let _ = stream.read_to_end(&mut received);
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("content-length: 100000\r\n"), "{text}");
    let body = text.split_once("\r\n\r\n").map_or(0, |(_, b)| b.len());
    assert!(
        (1..100_000).contains(&body),
        "the client must see a cut body, got {body} bytes"
    );
    assert_eq!(
        edge.metric("preflightd_upstream_errors_total{kind=\"reset\"}"),
        1.0
    );
    preflight_answered(&edge);
}

#[test]
fn an_upstream_that_closes_before_answering_is_a_502() {
    let upstream = FaultUpstream::start();
    let edge = Preflightd::start(RULES, Some(&upstream.url()), &[]);
    let response = send(
        edge.data,
        "GET /close-before-response HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        (response.status, response.text().as_str()),
        (502, "upstream request failed\n")
    );
    preflight_answered(&edge);
}

#[test]
fn a_kept_upstream_connection_idle_past_the_idle_timeout_is_replaced() {
    // The upstream would keep connections open for a minute; preflightd gives up a kept one
    // after --upstream-idle-timeout instead of racing the upstream's own close.
    let request = "GET /ok HTTP/1.1\r\nHost: api.example.com\r\n\r\n";
    let reused = |idle_timeout: &str, gap: Duration| -> u64 {
        let upstream = FaultUpstream::start_idle_close(60_000);
        let edge = Preflightd::start(
            RULES,
            Some(&upstream.url()),
            &["--upstream-idle-timeout", idle_timeout],
        );
        let stream = connect(edge.data);
        let mut writer = stream.try_clone().expect("clone");
        let mut reader = BufReader::new(stream);
        for _ in 0..2 {
            writer.write_all(request.as_bytes()).expect("write");
            assert_eq!(read_response(&mut reader).status, 200);
            std::thread::sleep(gap);
        }
        upstream.connections()
    };
    // 600 ms between requests: within a 10 s idle timeout the connection is kept...
    assert_eq!(reused("10s", Duration::from_millis(600)), 1);
    // ... past a 200 ms one it is replaced.
    assert_eq!(reused("200ms", Duration::from_millis(600)), 2);
}
