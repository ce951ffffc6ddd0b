//! Proxy hygiene on the real server in front of a real upstream process (DESIGN 5):
//! byte-for-byte pass-through, hop-by-hop fields, `Via` / `X-Forwarded-*`, trailers, large
//! bodies, WebSocket, HTTP/2 prior knowledge, an HTTPS upstream, upstream connection reuse.

use std::io::{BufReader, Read, Write};

use crate::support::{Preflightd, RULES, Upstream, WAIT, connect, read_response, send};

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
    let headers = crate::support::logged_headers;
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
    let headers = crate::support::logged_headers(&log[0]);
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
    let headers = crate::support::logged_headers(&log[0]);
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
