//! The real server on loopback in front of a real upstream process (DESIGN 4, 5, 7).

use std::io::{BufReader, Read, Write};
use std::time::{Duration, Instant};

use crate::harness::{Preflightd, Upstream, WAIT, connect, preflight, read_response, sample, send};

const RULES: &str = r#"
[[rule]]
name = "web"
hosts = ["api.example.com"]
origins = ["https://app.example.com"]
methods = ["PUT", "DELETE"]
headers = ["content-type", "x-api-key"]
credentials = true
max_age = 600
"#;

/// Header names in order, without `connection` (hyper's answer to our `Connection: close`).
fn names(response: &crate::harness::RawResponse) -> Vec<&str> {
    response
        .headers
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| *n != "connection")
        .collect()
}

#[test]
fn preflights_are_answered_at_the_edge_with_exact_headers_and_never_reach_the_upstream() {
    let upstream = Upstream::start();
    let edge = Preflightd::start(RULES, Some(&upstream.url()), &[]);

    let allowed = send(
        edge.data,
        &preflight(
            "/v1/items",
            "api.example.com",
            "https://app.example.com",
            "PUT",
            "content-type",
        ),
    );
    assert_eq!(allowed.status_line, "HTTP/1.1 204 No Content");
    assert_eq!(
        names(&allowed),
        [
            "access-control-allow-origin",
            "access-control-allow-credentials",
            "access-control-allow-methods",
            "access-control-allow-headers",
            "access-control-max-age",
            "vary",
            "cache-control",
            "date"
        ]
    );
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(
        allowed.header("access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(
        allowed.header("access-control-allow-methods"),
        Some("PUT, DELETE")
    );
    assert_eq!(
        allowed.header("access-control-allow-headers"),
        Some("content-type, x-api-key")
    );
    assert_eq!(allowed.header("access-control-max-age"), Some("600"));
    assert_eq!(
        allowed.header("vary"),
        Some("Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
    );
    assert_eq!(allowed.header("cache-control"), Some("no-store"));
    assert!(allowed.body.is_empty());

    let denied = send(
        edge.data,
        &preflight(
            "/v1/items",
            "api.example.com",
            "https://evil.example",
            "PUT",
            "",
        ),
    );
    assert_eq!(denied.status_line, "HTTP/1.1 403 Forbidden");
    assert_eq!(
        names(&denied),
        [
            "vary",
            "cache-control",
            "content-type",
            "content-length",
            "date"
        ]
    );
    assert_eq!(denied.header("cache-control"), Some("no-store"));
    assert_eq!(denied.text(), "CORS preflight denied: origin not allowed\n");

    // Two Origin lines on the wire: malformed, nothing reflected.
    let malformed = send(
        edge.data,
        "OPTIONS /v1/items HTTP/1.1\r\nHost: api.example.com\r\nOrigin: https://app.example.com\r\nOrigin: https://app.example.com\r\nAccess-Control-Request-Method: PUT\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(malformed.status, 403);
    assert_eq!(
        malformed.text(),
        "CORS preflight denied: malformed preflight\n"
    );
    assert!(malformed.header("access-control-allow-origin").is_none());

    assert!(
        upstream.log().is_empty(),
        "the upstream saw a preflight: {:?}",
        upstream.log()
    );
}

#[test]
fn everything_else_is_proxied_byte_for_byte_minus_hop_by_hop_plus_via_and_forwarded() {
    let upstream = Upstream::start();
    let edge = Preflightd::start(RULES, Some(&upstream.url()), &[]);

    // OPTIONS without ACRM (a CORS request, CORS-CHECKLIST 1.3) and without Origin (1.4).
    let no_acrm = send(
        edge.data,
        "OPTIONS /v1/a?x=1 HTTP/1.1\r\nHost: api.example.com\r\nOrigin: https://app.example.com\r\nConnection: close\r\n\r\n",
    );
    let no_origin = send(
        edge.data,
        "OPTIONS /v1/b HTTP/1.1\r\nHost: api.example.com\r\nAccess-Control-Request-Method: PUT\r\nConnection: close\r\n\r\n",
    );
    assert_eq!((no_acrm.status, no_origin.status), (200, 200));

    let body = "{\"name\":\"widget\"}";
    let post = send(
        edge.data,
        &format!(
            "POST /v1/items?b=2&a=1 HTTP/1.1\r\nHost: api.example.com\r\nOrigin: https://app.example.com\r\nCookie: session=abc\r\nAuthorization: Bearer t0k3n\r\nX-Custom: one\r\nX-Custom: two\r\nConnection: keep-alive, X-Hop\r\nX-Hop: secret\r\nKeep-Alive: timeout=5\r\nTE: trailers, deflate\r\nX-Forwarded-For: 203.0.113.7\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(post.status_line, "HTTP/1.1 200 OK");
    // The upstream's own headers come back unchanged: Vary, both Set-Cookie lines.
    assert_eq!(post.header("vary"), Some("Accept-Encoding"));
    assert_eq!(post.all("set-cookie"), ["a=1", "b=2"]);
    assert_eq!(post.header("x-upstream"), Some("yes"));

    let chunked = send(
        edge.data,
        "PUT /v1/items/7 HTTP/1.1\r\nHost: api.example.com\r\nTransfer-Encoding: chunked\r\nTrailer: x-sum\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nx-sum: 42\r\n\r\n",
    );
    assert_eq!(chunked.status, 200);

    let log = upstream.log();
    assert_eq!(log.len(), 4, "{log:#?}");
    let headers = |entry: &serde_json::Value| -> Vec<(String, String)> {
        serde_json::from_value(entry["headers"].clone()).expect("headers")
    };
    assert_eq!(log[0]["method"], "OPTIONS");
    assert_eq!(log[0]["uri"], "/v1/a?x=1");
    assert_eq!(log[1]["method"], "OPTIONS");

    let seen = headers(&log[2]);
    assert_eq!(log[2]["method"], "POST");
    assert_eq!(log[2]["uri"], "/v1/items?b=2&a=1");
    assert_eq!(log[2]["length"], body.len());
    let expect: Vec<(String, String)> = [
        ("host", "api.example.com"),
        ("origin", "https://app.example.com"),
        ("cookie", "session=abc"),
        ("authorization", "Bearer t0k3n"),
        ("x-custom", "one"),
        ("x-custom", "two"),
        ("x-forwarded-for", "203.0.113.7, 127.0.0.1"),
        ("content-type", "application/json"),
        ("content-length", "17"),
        ("via", "1.1 preflightd"),
        ("x-forwarded-proto", "http"),
        // TE is hop-by-hop: only `trailers` is renewed for the next hop.
        ("te", "trailers"),
    ]
    .iter()
    .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
    .collect();
    let mut seen_sorted = seen.clone();
    let mut expect_sorted = expect.clone();
    seen_sorted.sort();
    expect_sorted.sort();
    assert_eq!(seen_sorted, expect_sorted, "headers the upstream saw");
    // Repeated fields keep their order.
    let customs: Vec<_> = seen
        .iter()
        .filter(|(n, _)| n == "x-custom")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(customs, ["one", "two"]);

    assert_eq!(log[3]["method"], "PUT");
    assert_eq!(log[3]["length"], 11);
    assert_eq!(log[3]["trailers"], serde_json::json!([["x-sum", "42"]]));
}

#[test]
fn upstream_cors_headers_and_trailers_pass_through_untouched() {
    let upstream = Upstream::start();
    let edge = Preflightd::start(RULES, Some(&upstream.url()), &[]);
    let cors = send(
        edge.data,
        "GET /v1/x?cors=1 HTTP/1.1\r\nHost: api.example.com\r\nOrigin: https://app.example.com\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        cors.all("access-control-allow-origin"),
        ["https://upstream-chosen.example"]
    );
    assert!(cors.header("access-control-allow-credentials").is_none());

    let trailers = send(
        edge.data,
        "GET /trailers HTTP/1.1\r\nHost: api.example.com\r\nTE: trailers\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(trailers.text(), "body with trailers\n");
    assert_eq!(
        trailers.trailers,
        [("x-checksum".to_owned(), "abc123".to_owned())]
    );

    let not_found = send(
        edge.data,
        "GET /status/404 HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(not_found.status_line, "HTTP/1.1 404 Not Found");
    assert_eq!(not_found.text(), "status 404\n");
}

#[test]
fn large_bodies_stream_both_ways_in_constant_memory() {
    const MIB: usize = 1 << 20;
    const SIZE: usize = 256 * MIB;
    let upstream = Upstream::start();
    let edge = Preflightd::start(RULES, Some(&upstream.url()), &[]);
    let before = edge.process.rss_kib();

    // Download: read as it arrives, never holding it.
    let mut stream = connect(edge.data);
    write!(
        stream,
        "GET /stream?bytes={SIZE} HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut received = 0usize;
    let mut buffer = vec![0; MIB];
    loop {
        let n = stream.read(&mut buffer).expect("read");
        if n == 0 {
            break;
        }
        received += n;
    }
    // The body is chunked (the upstream streams it): about 10 bytes of framing per 64 KiB.
    assert!(
        received > SIZE && received < SIZE + 128 * 1024,
        "received {received}"
    );
    let after_download = edge.process.rss_kib();

    // Upload with Content-Length, written in 1 MiB pieces.
    let mut stream = connect(edge.data);
    write!(stream, "POST /upload HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: {SIZE}\r\nConnection: close\r\n\r\n").expect("write");
    let piece = vec![b'u'; MIB];
    for _ in 0..SIZE / MIB {
        stream.write_all(&piece).expect("upload");
    }
    let response = read_response(&mut BufReader::new(stream));
    let summary: serde_json::Value = serde_json::from_slice(&response.body).expect("json");
    assert_eq!(summary["length"], SIZE);
    let after_upload = edge.process.rss_kib();

    // Constant memory: 256 MiB each way moved through a process that grew by far less.
    let grown = after_download.max(after_upload).saturating_sub(before);
    assert!(
        grown < 48 * 1024,
        "RSS grew by {grown} KiB ({before} -> {after_download} -> {after_upload})"
    );
}

#[test]
fn http2_prior_knowledge_is_served_on_the_same_port() {
    let upstream = Upstream::start();
    let edge = Preflightd::start(RULES, Some(&upstream.url()), &[]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        use http_body_util::{BodyExt, Empty};
        // The virtual host travels as :authority (RFC 9113 8.3.1: no differing Host field);
        // the connector sends every request to the edge.
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .http2_only(true)
                .build(StaticConnector(edge.data));
        let preflight = http::Request::builder()
            .method("OPTIONS")
            .uri("http://api.example.com/v1/items")
            .header("origin", "https://app.example.com")
            .header("access-control-request-method", "DELETE")
            .body(Empty::<bytes::Bytes>::new())
            .expect("request");
        let response = tokio::time::timeout(WAIT, client.request(preflight))
            .await
            .expect("in time")
            .expect("h2 preflight");
        assert_eq!(response.version(), http::Version::HTTP_2);
        assert_eq!(response.status(), 204);
        assert_eq!(
            response.headers()["access-control-allow-origin"],
            "https://app.example.com"
        );

        let get = http::Request::builder()
            .uri("http://api.example.com/v1/h2?q=1")
            .body(Empty::<bytes::Bytes>::new())
            .expect("request");
        let response = tokio::time::timeout(WAIT, client.request(get))
            .await
            .expect("in time")
            .expect("h2 get");
        assert_eq!(response.status(), 200);
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let described: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(described["uri"], "/v1/h2?q=1");
        let headers: Vec<(String, String)> =
            serde_json::from_value(described["headers"].clone()).expect("headers");
        assert!(
            headers.contains(&("host".into(), "api.example.com".into())),
            "{headers:?}"
        );
        assert!(
            headers.contains(&("via".into(), "2 preflightd".into())),
            "{headers:?}"
        );
    });
}

/// Connects every request to one address, whatever its URI says.
#[derive(Clone)]
struct StaticConnector(std::net::SocketAddr);

impl tower_service::Service<http::Uri> for StaticConnector {
    type Response = hyper_util::rt::TokioIo<tokio::net::TcpStream>;
    type Error = std::io::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let address = self.0;
        Box::pin(async move {
            Ok(hyper_util::rt::TokioIo::new(
                tokio::net::TcpStream::connect(address).await?,
            ))
        })
    }
}

#[test]
fn websocket_upgrades_are_tunnelled() {
    let upstream = Upstream::start();
    let edge = Preflightd::start(RULES, Some(&upstream.url()), &[]);
    let stream = connect(edge.data);
    let mut writer = stream.try_clone().expect("clone");
    writer
        .write_all(b"GET /ws HTTP/1.1\r\nHost: api.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        .expect("write");
    let mut reader = BufReader::new(stream);
    let head = read_response(&mut reader);
    assert_eq!(head.status, 101, "{head:?}");
    assert_eq!(head.header("upgrade"), Some("websocket"));
    for message in ["ping", "a longer message through the tunnel"] {
        writer.write_all(message.as_bytes()).expect("send");
        let mut echo = vec![0; message.len()];
        reader.read_exact(&mut echo).expect("echo");
        assert_eq!(echo, message.as_bytes());
    }
}

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
fn sigterm_lets_the_request_in_flight_finish_then_exits_0() {
    let upstream = Upstream::start();
    let mut edge = Preflightd::start(RULES, Some(&upstream.url()), &["--shutdown-grace", "10s"]);
    let data = edge.data;
    let slow = std::thread::spawn(move || {
        send(
            data,
            "GET /slow?ms=1500 HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n",
        )
    });
    // Wait until the upstream holds the request, then ask the edge to stop.
    let deadline = Instant::now() + WAIT;
    while upstream.log().is_empty() {
        assert!(
            Instant::now() < deadline,
            "slow request never reached the upstream"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    edge.process.signal("TERM");
    let response = slow.join().expect("slow thread");
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "slow done\n")
    );
    assert_eq!(edge.process.wait_exit(), Some(0));
}

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
    assert_eq!(count("preflightd_preflight_duration_seconds_count"), 9.0);
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
fn fill_adds_cors_headers_to_actual_responses_that_lack_them() {
    let rules = r#"
[settings]
actual_responses = "fill"

[[rule]]
name = "web"
origins = ["https://app.example.com"]
expose = ["x-upstream", "x-request-id"]
credentials = true
"#;
    let upstream = Upstream::start();
    let edge = Preflightd::start(rules, Some(&upstream.url()), &[]);
    let filled = send(
        edge.data,
        "GET /v1 HTTP/1.1\r\nHost: api.example.com\r\nOrigin: https://app.example.com\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        filled.all("access-control-allow-origin"),
        ["https://app.example.com"]
    );
    assert_eq!(
        filled.header("access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(
        filled.header("access-control-expose-headers"),
        Some("x-upstream, x-request-id")
    );
    assert_eq!(filled.all("vary"), ["Accept-Encoding, Origin"]);

    let already = send(
        edge.data,
        "GET /v1?cors=1 HTTP/1.1\r\nHost: api.example.com\r\nOrigin: https://app.example.com\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        already.all("access-control-allow-origin"),
        ["https://upstream-chosen.example"]
    );
    assert!(already.header("access-control-allow-credentials").is_none());
    assert_eq!(already.all("vary"), ["Accept-Encoding"]);

    let stranger = send(
        edge.data,
        "GET /v1 HTTP/1.1\r\nHost: api.example.com\r\nOrigin: https://evil.example\r\nConnection: close\r\n\r\n",
    );
    assert!(stranger.header("access-control-allow-origin").is_none());
    assert_eq!(stranger.all("vary"), ["Accept-Encoding"]);
}

#[test]
fn the_first_load_must_succeed_or_the_process_exits_non_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("bad.toml");
    std::fs::write(
        &rules,
        "[[rule]]\nname = \"x\"\norigins = [\"https://a.example.com/\"]\n",
    )
    .expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_preflightd"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--rules",
        ])
        .arg(&rules)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.toml:3:12: rule \"x\": invalid origin \"https://a.example.com/\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("rules not loaded; not starting"),
        "{stderr}"
    );
}

#[test]
fn an_https_upstream_is_verified_against_the_given_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).expect("write cert");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write key");
    let upstream = Upstream::start_tls(&cert, &key);
    let url = format!("https://localhost:{}", upstream.address.port());
    let request = "GET /v1/tls?x=1 HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n";

    let trusting = Preflightd::start(
        RULES,
        Some(&url),
        &["--upstream-ca", &cert.display().to_string()],
    );
    let response = send(trusting.data, request);
    assert_eq!(response.status, 200, "{}", response.text());
    let described: serde_json::Value = serde_json::from_slice(&response.body).expect("json");
    assert_eq!(described["uri"], "/v1/tls?x=1");

    // Without the CA, the self-signed upstream is refused: verification is real.
    let untrusting = Preflightd::start(RULES, Some(&url), &[]);
    assert_eq!(send(untrusting.data, request).status, 502);
    assert_eq!(
        untrusting.metric("preflightd_upstream_errors_total{kind=\"connect\"}"),
        1.0
    );
}

#[test]
fn systemd_is_notified_of_ready_reloading_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().expect("tempdir");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind notify socket");
    socket.set_read_timeout(Some(WAIT)).expect("timeout");
    let rules_dir = dir.path().join("rules");
    std::fs::create_dir(&rules_dir).expect("mkdir");
    std::fs::write(rules_dir.join("rules.toml"), RULES).expect("write");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_preflightd"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--no-watch",
            "--rules",
        ])
        .arg(&rules_dir)
        .env("NOTIFY_SOCKET", &socket_path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let receive = || {
        let mut buffer = [0u8; 256];
        let n = socket.recv(&mut buffer).expect("notification");
        String::from_utf8_lossy(&buffer[..n]).into_owned()
    };
    assert_eq!(receive(), "READY=1");
    let signal = |name: &str| {
        std::process::Command::new("kill")
            .args([format!("-{name}"), child.id().to_string()])
            .status()
            .expect("kill");
    };
    signal("HUP");
    let reloading = receive();
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading}"
    );
    assert!(
        reloading["RELOADING=1\nMONOTONIC_USEC=".len()..]
            .parse::<u64>()
            .is_ok_and(|us| us > 0)
    );
    assert_eq!(receive(), "READY=1");
    signal("TERM");
    assert_eq!(receive(), "STOPPING=1");
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_client_connection_keeps_one_upstream_connection_alive() {
    let upstream = Upstream::start();
    let edge = Preflightd::start(RULES, Some(&upstream.url()), &[]);
    let request = "GET /v1/keep HTTP/1.1\r\nHost: api.example.com\r\n\r\n";
    let mut peers = Vec::new();
    for _ in 0..2 {
        // Three requests on one keep-alive client connection.
        let stream = connect(edge.data);
        let mut writer = stream.try_clone().expect("clone");
        let mut reader = BufReader::new(stream);
        for _ in 0..3 {
            writer.write_all(request.as_bytes()).expect("write");
            assert_eq!(read_response(&mut reader).status, 200);
        }
        let log = upstream.log();
        let last: Vec<String> = log[log.len() - 3..]
            .iter()
            .map(|e| e["peer"].as_str().expect("peer").to_owned())
            .collect();
        assert!(
            last.iter().all(|p| *p == last[0]),
            "one upstream connection per client connection: {last:?}"
        );
        peers.push(last[0].clone());
    }
    assert_ne!(
        peers[0], peers[1],
        "each client connection has its own upstream connection"
    );
}

#[test]
fn an_http_1_0_request_without_host_gets_the_upstreams_host() {
    let upstream = Upstream::start();
    let edge = Preflightd::start(RULES, Some(&upstream.url()), &[]);
    let response = send(edge.data, "GET /v1/old HTTP/1.0\r\n\r\n");
    assert_eq!(response.status, 200);
    let log = upstream.log();
    let headers: Vec<(String, String)> =
        serde_json::from_value(log[0]["headers"].clone()).expect("headers");
    assert!(
        headers.contains(&("host".to_owned(), upstream.address.to_string())),
        "{headers:?}"
    );
    assert_eq!(log[0]["uri"], "/v1/old");
}

#[test]
fn forwarded_headers_can_be_switched_off_and_host_rewritten() {
    let upstream = Upstream::start();
    let edge = Preflightd::start(
        RULES,
        Some(&upstream.url()),
        &["--no-forwarded-headers", "--rewrite-host"],
    );
    let response = send(
        edge.data,
        "GET /v1/plain HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(response.status, 200);
    let log = upstream.log();
    let headers: Vec<(String, String)> =
        serde_json::from_value(log[0]["headers"].clone()).expect("headers");
    let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        !names
            .iter()
            .any(|n| ["via", "x-forwarded-for", "x-forwarded-proto"].contains(n)),
        "{headers:?}"
    );
    assert!(
        headers.contains(&("host".to_owned(), upstream.address.to_string())),
        "{headers:?}"
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

#[test]
fn unmatched_forward_sends_preflights_outside_every_scope_to_the_upstream() {
    let rules = r#"
[settings]
unmatched = "forward"

[[rule]]
name = "v1"
paths = ["/v1/"]
origins = ["https://app.example.com"]
methods = ["PUT"]
"#;
    let upstream = Upstream::start();
    let edge = Preflightd::start(rules, Some(&upstream.url()), &[]);
    let outside = send(
        edge.data,
        &preflight(
            "/legacy/x",
            "api.example.com",
            "https://app.example.com",
            "PUT",
            "",
        ),
    );
    // The upstream answers it itself (its own headers, 200).
    assert_eq!(outside.status, 200);
    assert_eq!(outside.header("x-upstream"), Some("yes"));
    let inside = send(
        edge.data,
        &preflight(
            "/v1/x",
            "api.example.com",
            "https://evil.example",
            "PUT",
            "",
        ),
    );
    assert_eq!(inside.status, 403, "in scope is still answered at the edge");
    let log = upstream.log();
    assert_eq!(log.len(), 1, "{log:#?}");
    assert_eq!(
        (log[0]["method"].as_str(), log[0]["uri"].as_str()),
        (Some("OPTIONS"), Some("/legacy/x"))
    );
    assert_eq!(
        edge.metric("preflightd_preflight_requests_total{result=\"forwarded\",rule=\"(none)\"}"),
        1.0
    );
    assert_eq!(
        edge.metric("preflightd_preflight_requests_total{result=\"origin\",rule=\"(none)\"}"),
        1.0
    );
}
