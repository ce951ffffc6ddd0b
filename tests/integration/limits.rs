//! Limits on client requests: the header read timeout (slowloris) and the request head size.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use crate::support::{Preflightd, RULES, connect, preflight, send};

#[test]
fn a_slowloris_client_is_dropped_after_the_header_timeout_while_others_are_served() {
    let edge = Preflightd::start(RULES, None, &["--header-read-timeout", "700ms"]);
    let mut slow = connect(edge.data);
    slow.write_all(b"GET / HTTP/1.1\r\nHost: api.example.com\r\nX-Trickle: a")
        .expect("partial head");
    let started = Instant::now();
    // Meanwhile, other clients are served.
    for _ in 0..3 {
        let ok = send(
            edge.data,
            &preflight("/", "api.example.com", "https://app.example.com", "PUT", ""),
        );
        assert_eq!(ok.status, 204);
    }
    // The trickling client is cut off: its read ends (EOF or a 408) once the timeout passes.
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(600),
        "closed too early: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(5),
        "not closed in time: {waited:?}"
    );
    let text = String::from_utf8_lossy(&rest);
    assert!(
        rest.is_empty() || text.starts_with("HTTP/1.1 408"),
        "unexpected: {text}"
    );
}

#[test]
fn a_request_head_over_the_limit_is_refused_with_431() {
    let edge = Preflightd::start(RULES, None, &["--max-header-bytes", "16384"]);
    let big = "a".repeat(32 * 1024);
    let response = send(
        edge.data,
        &format!(
            "GET / HTTP/1.1\r\nHost: api.example.com\r\nX-Big: {big}\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(response.status, 431, "{}", response.status_line);
    // Within the limit, the same request is served (here: no upstream, so 502).
    let small = send(
        edge.data,
        "GET / HTTP/1.1\r\nHost: api.example.com\r\nX-Small: a\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(small.status, 502);
}
