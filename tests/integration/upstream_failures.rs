//! A failing upstream (down, stalled, or none configured) costs only proxied requests
//! (502 / 504): preflights are still answered at the edge.

use std::time::{Duration, Instant};

use crate::support::{Preflightd, RULES, Upstream, preflight, send};

#[test]
fn upstream_down_is_502_and_preflights_are_still_answered() {
    // A port with nothing listening: bind, note, close.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let edge = Preflightd::start(
        RULES,
        Some(&format!("http://{closed}")),
        &["--upstream-connect-timeout", "2s"],
    );
    let get = send(
        edge.data,
        "GET /v1/x HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(get.status_line, "HTTP/1.1 502 Bad Gateway");
    assert_eq!(get.text(), "upstream request failed\n");
    let answered = send(
        edge.data,
        &preflight(
            "/v1/x",
            "api.example.com",
            "https://app.example.com",
            "PUT",
            "",
        ),
    );
    assert_eq!(answered.status, 204);
    assert_eq!(
        edge.metric("preflightd_upstream_errors_total{kind=\"connect\"}"),
        1.0
    );
    assert_eq!(
        edge.metric("preflightd_proxy_requests_total{code_class=\"5xx\"}"),
        1.0
    );
}

#[test]
fn no_upstream_configured_still_answers_preflights() {
    let edge = Preflightd::start(RULES, None, &[]);
    assert_eq!(
        send(
            edge.data,
            &preflight("/", "api.example.com", "https://app.example.com", "PUT", "")
        )
        .status,
        204
    );
    let get = send(
        edge.data,
        "GET / HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        (get.status, get.text().as_str()),
        (502, "no upstream configured\n")
    );
}

#[test]
fn a_stalled_upstream_is_504_while_preflights_are_answered_meanwhile() {
    let upstream = Upstream::start();
    let edge = Preflightd::start(
        RULES,
        Some(&upstream.url()),
        &["--upstream-timeout", "1500ms"],
    );
    let data = edge.data;
    let slow = std::thread::spawn(move || {
        let started = Instant::now();
        let response = send(
            data,
            "GET /slow?ms=10000 HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n",
        );
        (response, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let answered = send(
        edge.data,
        &preflight("/", "api.example.com", "https://app.example.com", "PUT", ""),
    );
    assert_eq!(answered.status, 204);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "preflight waited on the stalled upstream"
    );
    let (response, took) = slow.join().expect("slow thread");
    assert_eq!(response.status_line, "HTTP/1.1 504 Gateway Timeout");
    assert_eq!(response.text(), "upstream timed out\n");
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(5),
        "took {took:?}"
    );
    assert_eq!(
        edge.metric("preflightd_upstream_errors_total{kind=\"timeout\"}"),
        1.0
    );
}
