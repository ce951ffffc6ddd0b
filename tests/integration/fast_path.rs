//! The HTTP/1.1 fast path (server/fast.rs) on the real server: every connection starts there,
//! bodiless keep-alive preflights are answered from pre-rendered bytes, and the first request
//! that is anything else hands the connection (with the bytes already read) to hyper. Each
//! hand-over test shows hyper served that request and that the preflights before it (fast
//! path) and after it (hyper) get the same answer; the limit tests repeat the attacks of
//! `limits.rs` against connections the fast path holds.

use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::support::{
    Preflightd, RULES, RawResponse, Upstream, WAIT, connect, read_response, send,
};

const HOST: &str = "api.example.com";
const ALLOWED_ORIGIN: &str = "https://app.example.com";
const OTHER_ORIGIN: &str = "https://evil.example";

/// A preflight as a browser sends it: HTTP/1.1, no `Connection` field (keep-alive), no body.
/// Written out here rather than taken from `support::preflight`, so that what reaches the
/// fast path is stated where it is tested.
fn preflight_to(host: &str, origin: &str, method: &str, headers: &str) -> String {
    let mut request = format!(
        "OPTIONS /v1/items HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\nAccess-Control-Request-Method: {method}\r\n"
    );
    if !headers.is_empty() {
        request.push_str(&format!("Access-Control-Request-Headers: {headers}\r\n"));
    }
    request.push_str("\r\n");
    request
}

/// The preflight most tests send: allowed by `RULES`.
fn allowed_preflight() -> String {
    preflight_to(HOST, ALLOWED_ORIGIN, "PUT", "content-type")
}

/// The same preflight from an origin `RULES` does not allow.
fn denied_preflight() -> String {
    preflight_to(HOST, OTHER_ORIGIN, "PUT", "content-type")
}

/// One client connection: writes on `stream`, reads every response through one buffer.
struct Client {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

/// What the server did on a connection within a wait.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// Nothing: the connection is still open.
    Open,
    /// It closed the connection (EOF, or a reset) without sending anything more.
    Closed,
    /// It sent these bytes.
    Sent(String),
}

impl Client {
    fn open(address: SocketAddr) -> Client {
        let stream = connect(address);
        let reader = BufReader::new(stream.try_clone().expect("clone"));
        Client { stream, reader }
    }

    fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write request");
    }

    fn response(&mut self) -> RawResponse {
        read_response(&mut self.reader)
    }

    fn exchange(&mut self, request: &str) -> RawResponse {
        self.write(request.as_bytes());
        self.response()
    }

    /// Waits at most `within` for the server to send or close.
    fn end(&mut self, within: Duration) -> End {
        self.stream.set_read_timeout(Some(within)).expect("timeout");
        let mut buffer = [0u8; 4096];
        let end = match self.reader.read(&mut buffer) {
            Ok(0) => End::Closed,
            Ok(n) => End::Sent(String::from_utf8_lossy(&buffer[..n]).into_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => End::Closed,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                End::Open
            }
            Err(e) => panic!("read: {e}"),
        };
        self.stream.set_read_timeout(Some(WAIT)).expect("timeout");
        end
    }
}

/// Status, header fields in order but `date` (and `connection`, hyper's keep-alive note to
/// an HTTP/1.0 client), and body: what two answers to the same preflight must share.
fn answer(response: &RawResponse) -> (u16, Vec<(String, String)>, String) {
    let fields = response
        .headers
        .iter()
        .filter(|(name, _)| name != "date" && name != "connection")
        .cloned()
        .collect();
    (response.status, fields, response.text())
}

/// The exact answer to `allowed_preflight()` (as `preflights.rs` states it for `RULES`).
fn assert_allowed(response: &RawResponse) {
    let expected: Vec<(String, String)> = [
        ("access-control-allow-origin", ALLOWED_ORIGIN),
        ("access-control-allow-credentials", "true"),
        ("access-control-allow-methods", "PUT, DELETE"),
        ("access-control-allow-headers", "content-type, x-api-key"),
        ("access-control-max-age", "600"),
        (
            "vary",
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        ),
        ("cache-control", "no-store"),
    ]
    .iter()
    .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
    .collect();
    assert_eq!(
        answer(response),
        (204, expected, String::new()),
        "{}",
        response.status_line
    );
    assert_fresh_date(response);
}

/// One `Date` field, an HTTP date within a few seconds of now.
fn assert_fresh_date(response: &RawResponse) {
    assert_eq!(response.all("date").len(), 1, "{:?}", response.headers);
    let date = response.header("date").unwrap_or_default();
    let at = httpdate::parse_http_date(date).unwrap_or_else(|e| panic!("date {date:?}: {e}"));
    let now = std::time::SystemTime::now();
    let apart = now
        .duration_since(at)
        .or_else(|_| at.duration_since(now))
        .unwrap_or_default();
    assert!(
        apart < Duration::from_secs(5),
        "date {date:?} is {apart:?} off"
    );
}

/// The exact answer to a preflight denied for `reason` (its 403 body).
fn assert_denied(response: &RawResponse, reason: &str) {
    let body = format!("CORS preflight denied: {reason}\n");
    let length = body.len().to_string();
    let expected: Vec<(String, String)> = [
        (
            "vary",
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        ),
        ("cache-control", "no-store"),
        ("content-type", "text/plain; charset=utf-8"),
        ("content-length", length.as_str()),
    ]
    .iter()
    .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
    .collect();
    assert_eq!(
        answer(response),
        (403, expected, body),
        "{}",
        response.status_line
    );
}

/// A preflight on a fresh connection is answered 204.
fn answered(edge: &Preflightd) -> bool {
    send(edge.data, &allowed_preflight()).status == 204
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .fold(String::new(), |mut hex, b| {
            hex.push_str(&format!("{b:02x}"));
            hex
        })
}

/// The requests the upstream saw, as (method, uri).
fn seen(upstream: &Upstream) -> Vec<(String, String)> {
    upstream
        .log()
        .iter()
        .map(|entry| {
            (
                entry["method"].as_str().unwrap_or_default().to_owned(),
                entry["uri"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn pair(method: &str, uri: &str) -> (String, String) {
    (method.to_owned(), uri.to_owned())
}

/// Polls a metric until it has `value` (bounded by `WAIT`).
fn wait_for_metric(edge: &Preflightd, series: &str, value: f64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let now = edge.metric(series);
        if now == value {
            return;
        }
        assert!(Instant::now() < deadline, "{series} is {now}, not {value}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// Hand-over: the first request the fast path does not answer goes to hyper with the
// connection, and the preflights after it are hyper's; both answer them alike.

#[test]
fn a_request_body_after_a_fast_path_preflight_is_proxied_and_preflights_go_on() {
    let upstream = Upstream::start();
    let edge = Preflightd::start(RULES, Some(&upstream.url()), &[]);
    let body = "{\"name\":\"widget\",\"size\":7}";
    let post = format!(
        "POST /upload HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut client = Client::open(edge.data);
    let before = client.exchange(&allowed_preflight());
    assert_allowed(&before);
    let posted = client.exchange(&post);
    assert_eq!(posted.status_line, "HTTP/1.1 200 OK");
    let summary: serde_json::Value = serde_json::from_slice(&posted.body).expect("json");
    assert_eq!(summary["length"], body.len());
    assert_eq!(summary["sha256"], sha256_hex(body.as_bytes()));
    let after = client.exchange(&allowed_preflight());
    assert_eq!(answer(&after), answer(&before));
    let denied = client.exchange(&denied_preflight());
    assert_denied(&denied, "origin not allowed");

    // The same in one write: the body arrives with the head the fast path read, and hyper
    // gets it from the bytes handed over.
    let mut pipelined = Client::open(edge.data);
    pipelined.write(format!("{}{post}{}", allowed_preflight(), allowed_preflight()).as_bytes());
    let first = pipelined.response();
    let posted = pipelined.response();
    let last = pipelined.response();
    assert_allowed(&first);
    assert_eq!(posted.status, 200);
    let summary: serde_json::Value = serde_json::from_slice(&posted.body).expect("json");
    assert_eq!(summary["length"], body.len());
    assert_eq!(answer(&last), answer(&first));

    let log = upstream.log();
    assert_eq!(log.len(), 2, "only the bodies reach the upstream: {log:#?}");
    for entry in &log {
        assert_eq!(
            (&entry["method"], &entry["uri"], &entry["length"]),
            (
                &serde_json::json!("POST"),
                &serde_json::json!("/upload"),
                &serde_json::json!(body.len())
            )
        );
        assert_eq!(entry["sha256"], sha256_hex(body.as_bytes()));
    }
}

#[test]
fn a_chunked_body_after_a_fast_path_preflight_is_proxied_with_its_trailers() {
    let upstream = Upstream::start();
    let edge = Preflightd::start(RULES, Some(&upstream.url()), &[]);
    let mut client = Client::open(edge.data);
    let before = client.exchange(&allowed_preflight());
    assert_allowed(&before);
    let put = client.exchange(&format!(
        "PUT /v1/items/7 HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\nTrailer: x-sum\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nx-sum: 42\r\n\r\n"
    ));
    assert_eq!(put.status, 200);
    let described: serde_json::Value = serde_json::from_slice(&put.body).expect("json");
    assert_eq!(
        (
            &described["method"],
            &described["uri"],
            &described["length"]
        ),
        (
            &serde_json::json!("PUT"),
            &serde_json::json!("/v1/items/7"),
            &serde_json::json!(11)
        )
    );
    let after = client.exchange(&allowed_preflight());
    assert_eq!(answer(&after), answer(&before));

    let log = upstream.log();
    assert_eq!(log.len(), 1, "{log:#?}");
    assert_eq!(log[0]["length"], 11);
    assert_eq!(log[0]["sha256"], sha256_hex(b"hello world"));
    assert_eq!(log[0]["trailers"], serde_json::json!([["x-sum", "42"]]));
}

#[test]
fn a_websocket_upgrade_after_a_fast_path_preflight_becomes_a_tunnel() {
    let upstream = Upstream::start();
    let edge = Preflightd::start(RULES, Some(&upstream.url()), &[]);
    let upgrade = |path: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
    };

    // The upstream's /ws switches protocols and echoes: after the 101 the connection is a
    // tunnel, so even a preflight's bytes go through it untouched.
    let mut tunnel = Client::open(edge.data);
    let before = tunnel.exchange(&allowed_preflight());
    assert_allowed(&before);
    let switched = tunnel.exchange(&upgrade("/ws"));
    assert_eq!(switched.status, 101, "{}", switched.status_line);
    assert_eq!(switched.header("upgrade"), Some("websocket"));
    let bytes = allowed_preflight();
    tunnel.write(bytes.as_bytes());
    let mut echoed = vec![0u8; bytes.len()];
    tunnel.reader.read_exact(&mut echoed).expect("echo");
    assert_eq!(String::from_utf8_lossy(&echoed), bytes);

    // An upgrade the upstream declines (a plain 200): hyper keeps serving HTTP/1.1 on the
    // connection, and the next preflight is answered as the first was.
    let mut declined = Client::open(edge.data);
    assert_allowed(&declined.exchange(&allowed_preflight()));
    let plain = declined.exchange(&upgrade("/v1/plain"));
    assert_eq!(plain.status, 200, "{}", plain.status_line);
    let after = declined.exchange(&allowed_preflight());
    assert_eq!(answer(&after), answer(&before));

    let log = upstream.log();
    let uris: Vec<&str> = log.iter().filter_map(|e| e["uri"].as_str()).collect();
    assert_eq!(uris, ["/ws", "/v1/plain"], "{log:#?}");
    let upgrade_seen = |entry: &serde_json::Value| {
        entry["headers"].as_array().is_some_and(|headers| {
            headers.iter().any(|h| {
                h[0].as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case("upgrade"))
                    && h[1] == "websocket"
            })
        })
    };
    assert!(upgrade_seen(&log[0]), "{:?}", log[0]);
    assert!(upgrade_seen(&log[1]), "{:?}", log[1]);
}

#[test]
fn expect_100_continue_after_a_fast_path_preflight_gets_100_then_the_answer() {
    let upstream = Upstream::start();
    let edge = Preflightd::start(RULES, Some(&upstream.url()), &[]);
    let mut client = Client::open(edge.data);
    let before = client.exchange(&allowed_preflight());
    assert_allowed(&before);
    client.write(
        format!(
            "POST /upload HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        .as_bytes(),
    );
    let interim = client.response();
    assert_eq!(interim.status_line, "HTTP/1.1 100 Continue");
    client.write(b"hello");
    let posted = client.response();
    assert_eq!(posted.status, 200);
    let summary: serde_json::Value = serde_json::from_slice(&posted.body).expect("json");
    assert_eq!(summary["length"], 5);
    assert_eq!(summary["sha256"], sha256_hex(b"hello"));
    let after = client.exchange(&allowed_preflight());
    assert_eq!(answer(&after), answer(&before));
    assert_eq!(seen(&upstream), [pair("POST", "/upload")]);
}

#[test]
fn http2_prior_knowledge_on_a_fresh_connection_is_handed_to_hyper() {
    let upstream = Upstream::start();
    let edge = Preflightd::start(RULES, Some(&upstream.url()), &[]);
    // The HTTP/1.1 fast path's answer, to compare the HTTP/2 ones with.
    let reference = send(edge.data, &allowed_preflight());
    assert_allowed(&reference);
    let (_, expected, _) = answer(&reference);

    let address = edge.data;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (statuses, fields, described) = runtime.block_on(async move {
        use http_body_util::{BodyExt, Empty};
        let stream = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        let (mut sender, connection) =
            hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .handshake::<_, Empty<bytes::Bytes>>(hyper_util::rt::TokioIo::new(stream))
                .await
                .expect("h2 handshake");
        tokio::spawn(connection);
        let preflight = || {
            http::Request::builder()
                .method("OPTIONS")
                .uri("http://api.example.com/v1/items")
                .header("origin", ALLOWED_ORIGIN)
                .header("access-control-request-method", "PUT")
                .header("access-control-request-headers", "content-type")
                .body(Empty::new())
                .expect("request")
        };
        let fields = |response: &http::Response<hyper::body::Incoming>| -> Vec<(String, String)> {
            response
                .headers()
                .iter()
                .filter(|(name, _)| name.as_str() != "date")
                .map(|(name, value)| {
                    (
                        name.as_str().to_owned(),
                        value.to_str().expect("ascii").to_owned(),
                    )
                })
                .collect()
        };
        let mut statuses = Vec::new();
        let mut all_fields = Vec::new();
        let first = tokio::time::timeout(WAIT, sender.send_request(preflight()))
            .await
            .expect("in time")
            .expect("h2 preflight");
        statuses.push((first.version(), first.status().as_u16()));
        all_fields.push(fields(&first));
        let get = http::Request::builder()
            .uri("http://api.example.com/v1/h2?q=1")
            .body(Empty::new())
            .expect("request");
        let proxied = tokio::time::timeout(WAIT, sender.send_request(get))
            .await
            .expect("in time")
            .expect("h2 get");
        statuses.push((proxied.version(), proxied.status().as_u16()));
        let body = proxied
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let described: serde_json::Value = serde_json::from_slice(&body).expect("json");
        let second = tokio::time::timeout(WAIT, sender.send_request(preflight()))
            .await
            .expect("in time")
            .expect("h2 preflight");
        statuses.push((second.version(), second.status().as_u16()));
        all_fields.push(fields(&second));
        (statuses, all_fields, described)
    });
    let h2 = http::Version::HTTP_2;
    assert_eq!(statuses, [(h2, 204), (h2, 200), (h2, 204)]);
    assert_eq!(fields, [expected.clone(), expected]);
    assert_eq!(described["uri"], "/v1/h2?q=1");
    assert_eq!(seen(&upstream), [pair("GET", "/v1/h2?q=1")]);
}

#[test]
fn http_1_0_preflights_are_answered_by_hyper_with_an_http_1_0_status_line() {
    let edge = Preflightd::start(RULES, None, &[]);
    let reference = send(edge.data, &allowed_preflight());
    assert_allowed(&reference);
    assert_eq!(reference.status_line, "HTTP/1.1 204 No Content");
    let http_1_0 = allowed_preflight().replacen("HTTP/1.1", "HTTP/1.0", 1);
    let http_1_0_keep_alive =
        allowed_preflight().replacen("HTTP/1.1\r\n", "HTTP/1.0\r\nConnection: keep-alive\r\n", 1);

    // HTTP/1.0 without keep-alive: one answer, then the server closes.
    let mut plain = Client::open(edge.data);
    let answered = plain.exchange(&http_1_0);
    assert_eq!(answered.status_line, "HTTP/1.0 204 No Content");
    assert_eq!(answer(&answered), answer(&reference));
    assert_eq!(plain.end(WAIT), End::Closed);

    // After a fast-path answer on the same connection: the same.
    let mut after_fast = Client::open(edge.data);
    assert_eq!(
        answer(&after_fast.exchange(&allowed_preflight())),
        answer(&reference)
    );
    let answered = after_fast.exchange(&http_1_0);
    assert_eq!(answered.status_line, "HTTP/1.0 204 No Content");
    assert_eq!(answer(&answered), answer(&reference));
    assert_eq!(after_fast.end(WAIT), End::Closed);

    // HTTP/1.0 with keep-alive: hyper keeps the connection open and says so; HTTP/1.1 after
    // it is answered with an HTTP/1.1 status line.
    let mut kept = Client::open(edge.data);
    let first = kept.exchange(&allowed_preflight());
    assert_eq!(first.status_line, "HTTP/1.1 204 No Content");
    for _ in 0..2 {
        let answered = kept.exchange(&http_1_0_keep_alive);
        assert_eq!(answered.status_line, "HTTP/1.0 204 No Content");
        assert_eq!(answered.header("connection"), Some("keep-alive"));
        assert_eq!(answer(&answered), answer(&reference));
    }
    let last = kept.exchange(&allowed_preflight());
    assert_eq!(last.status_line, "HTTP/1.1 204 No Content");
    assert_eq!(answer(&last), answer(&reference));
    assert_eq!(kept.end(Duration::from_millis(300)), End::Open);
    assert_eq!(
        edge.metric("preflightd_preflight_requests_total{result=\"allowed\",rule=\"web\"}"),
        8.0
    );
}

#[test]
fn a_preflight_head_sent_one_byte_per_write_is_answered_by_the_fast_path() {
    let edge = Preflightd::start(RULES, None, &[]);
    let mut client = Client::open(edge.data);
    client.stream.set_nodelay(true).expect("nodelay");
    let head = allowed_preflight();
    let bytes = head.as_bytes();
    for (i, byte) in bytes.iter().enumerate() {
        client.write(std::slice::from_ref(byte));
        client.stream.flush().expect("flush");
        if i + 1 < bytes.len() {
            // Before the head is complete: no answer, and the connection stays open.
            assert_eq!(
                client.end(Duration::from_millis(3)),
                End::Open,
                "after {} of {} bytes",
                i + 1,
                bytes.len()
            );
        }
    }
    let first = client.response();
    assert_allowed(&first);
    // The connection is still the fast path's: the next preflights are answered alike.
    let second = client.exchange(&allowed_preflight());
    assert_eq!(answer(&second), answer(&first));
    // And a second head split the same way, on a kept-alive connection.
    for byte in allowed_preflight().as_bytes() {
        client.write(std::slice::from_ref(byte));
        client.stream.flush().expect("flush");
    }
    assert_eq!(answer(&client.response()), answer(&first));
    assert_eq!(client.end(Duration::from_millis(100)), End::Open);
}

#[test]
fn preflight_get_preflight_on_one_connection_are_answered_in_order() {
    let upstream = Upstream::start();
    let edge = Preflightd::start(RULES, Some(&upstream.url()), &[]);
    let mut client = Client::open(edge.data);
    let before = client.exchange(&allowed_preflight());
    let denied_before = client.exchange(&denied_preflight());
    let get = client.exchange(&format!(
        "GET /v1/items?page=2 HTTP/1.1\r\nHost: {HOST}\r\n\r\n"
    ));
    let after = client.exchange(&allowed_preflight());
    let denied_after = client.exchange(&denied_preflight());
    assert_allowed(&before);
    assert_denied(&denied_before, "origin not allowed");
    assert_eq!(get.status, 200);
    assert_eq!(get.header("x-upstream"), Some("yes"));
    let described: serde_json::Value = serde_json::from_slice(&get.body).expect("json");
    assert_eq!(described["uri"], "/v1/items?page=2");
    assert_eq!(answer(&after), answer(&before));
    assert_eq!(answer(&denied_after), answer(&denied_before));
    assert_eq!(seen(&upstream), [pair("GET", "/v1/items?page=2")]);
}

/// The pipelined preflights' mix: allowed, then one of four denials, in turn; with the
/// expected status and 403 body.
fn mixed(i: usize) -> (String, u16, &'static str) {
    if i.is_multiple_of(2) {
        return (allowed_preflight(), 204, "");
    }
    match (i / 2) % 4 {
        0 => (denied_preflight(), 403, "origin not allowed"),
        1 => (
            preflight_to(HOST, ALLOWED_ORIGIN, "PATCH", ""),
            403,
            "method not allowed",
        ),
        2 => (
            preflight_to(HOST, ALLOWED_ORIGIN, "PUT", "x-not-allowed"),
            403,
            "headers not allowed",
        ),
        _ => (
            preflight_to("other.example.com", ALLOWED_ORIGIN, "PUT", ""),
            403,
            "no rule covers this URL",
        ),
    }
}

fn assert_mixed(i: usize, response: &RawResponse) {
    let (_, status, reason) = mixed(i);
    if status == 204 {
        assert_allowed(response);
    } else {
        assert_denied(response, reason);
    }
}

#[test]
fn pipelined_preflights_in_one_write_are_answered_in_order() {
    let edge = Preflightd::start(RULES, None, &[]);
    for count in [20, 400] {
        // 400 preflights (about 45 KB) cross the fast path's 8 KiB reads mid-head.
        let batch: String = (0..count).map(|i| mixed(i).0).collect();
        let mut client = Client::open(edge.data);
        client.write(batch.as_bytes());
        for i in 0..count {
            assert_mixed(i, &client.response());
        }
        assert_eq!(client.end(Duration::from_millis(100)), End::Open, "{count}");
        // And the connection goes on.
        assert_allowed(&client.exchange(&allowed_preflight()));
    }
    assert_eq!(
        edge.metric("preflightd_preflight_requests_total{result=\"allowed\",rule=\"web\"}"),
        212.0
    );
}

#[test]
fn a_pipelined_batch_with_a_get_in_the_middle_is_answered_in_order() {
    let upstream = Upstream::start();
    let edge = Preflightd::start(RULES, Some(&upstream.url()), &[]);
    let get = format!("GET /v1/pipelined HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    let mut batch: String = (0..6).map(|i| mixed(i).0).collect();
    batch.push_str(&get);
    batch.extend((0..6).map(|i| mixed(i).0));
    let mut client = Client::open(edge.data);
    client.write(batch.as_bytes());
    let before: Vec<RawResponse> = (0..6).map(|_| client.response()).collect();
    let proxied = client.response();
    let after: Vec<RawResponse> = (0..6).map(|_| client.response()).collect();
    for (i, response) in before.iter().enumerate() {
        assert_mixed(i, response);
    }
    assert_eq!(proxied.status, 200, "{}", proxied.status_line);
    let described: serde_json::Value = serde_json::from_slice(&proxied.body).expect("json");
    assert_eq!(described["uri"], "/v1/pipelined");
    for (i, response) in after.iter().enumerate() {
        assert_mixed(i, response);
        assert_eq!(answer(response), answer(&before[i]));
    }
    assert_eq!(client.end(Duration::from_millis(100)), End::Open);
    assert_eq!(seen(&upstream), [pair("GET", "/v1/pipelined")]);
}

#[test]
fn connection_close_on_a_preflight_is_answered_then_the_connection_is_closed() {
    let edge = Preflightd::start(RULES, None, &[]);
    let closing = allowed_preflight().replacen("\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1);

    // On a fresh connection.
    let mut client = Client::open(edge.data);
    let answered = client.exchange(&closing);
    assert_allowed(&answered);
    assert_eq!(answered.header("connection"), Some("close"));
    assert_eq!(client.end(WAIT), End::Closed);

    // After a fast-path answer.
    let mut client = Client::open(edge.data);
    let first = client.exchange(&allowed_preflight());
    assert_allowed(&first);
    assert_eq!(first.header("connection"), None);
    let answered = client.exchange(&closing);
    assert_eq!(answer(&answered), answer(&first));
    assert_eq!(answered.header("connection"), Some("close"));
    assert_eq!(client.end(WAIT), End::Closed);

    // Pipelined: what follows the closing request is not answered.
    let mut client = Client::open(edge.data);
    client.write(format!("{}{closing}{}", allowed_preflight(), allowed_preflight()).as_bytes());
    assert_allowed(&client.response());
    let answered = client.response();
    assert_allowed(&answered);
    assert_eq!(answered.header("connection"), Some("close"));
    assert_eq!(client.end(WAIT), End::Closed);
}

#[test]
fn a_preflight_followed_by_a_half_close_is_answered() {
    let edge = Preflightd::start(RULES, None, &[]);
    let mut client = Client::open(edge.data);
    client.write(format!("{}{}", allowed_preflight(), denied_preflight()).as_bytes());
    client.stream.shutdown(Shutdown::Write).expect("half-close");
    assert_allowed(&client.response());
    assert_denied(&client.response(), "origin not allowed");
    assert_eq!(client.end(WAIT), End::Closed);
}

// Limits on connections the fast path holds: the watchdog's bounds trip with their exact
// outcome, and other clients' preflights are answered meanwhile.

#[test]
fn silent_sockets_are_closed_at_the_header_timeout_but_not_a_kept_alive_connection() {
    let edge = Preflightd::start(RULES, None, &["--header-read-timeout", "1s"]);
    let started = Instant::now();
    let mut silent: Vec<Client> = (0..3).map(|_| Client::open(edge.data)).collect();
    // A connection that had a preflight answered is idle between requests, not late with a
    // head: the header timeout does not apply to it.
    let mut kept = Client::open(edge.data);
    let answered_at = Instant::now();
    assert_allowed(&kept.exchange(&allowed_preflight()));
    for _ in 0..3 {
        assert!(answered(&edge));
    }
    for (i, socket) in silent.iter_mut().enumerate() {
        assert_eq!(socket.end(WAIT), End::Closed, "silent socket {i}");
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "closed too early: {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "closed late: {waited:?}");
    assert_eq!(
        edge.metric("preflightd_client_errors_total{kind=\"header_timeout\"}"),
        3.0
    );
    // Well past the header timeout since its answer, the kept-alive connection is open and
    // answers.
    let past =
        (answered_at + Duration::from_millis(1800)).saturating_duration_since(Instant::now());
    assert_eq!(kept.end(past.max(Duration::from_millis(1))), End::Open);
    assert_allowed(&kept.exchange(&allowed_preflight()));
    assert_eq!(
        edge.metric("preflightd_client_errors_total{kind=\"header_timeout\"}"),
        3.0
    );
}

/// Writes `head` (never complete), then one more header-value byte every `step`, until the
/// server closes the connection; the time from the first write to the close. `meanwhile`
/// runs between bytes.
fn trickle_until_closed(
    client: &mut Client,
    head: &str,
    step: Duration,
    mut meanwhile: impl FnMut(),
) -> Duration {
    let started = Instant::now();
    client.write(head.as_bytes());
    for _ in 0..200 {
        match client.end(step) {
            End::Open => {}
            End::Closed => return started.elapsed(),
            End::Sent(text) => panic!("a partial head was answered: {text:?}"),
        }
        meanwhile();
        // A write may fail once the server has closed; the next read says so.
        let _ = client.stream.write_all(b"a");
    }
    panic!("a trickled head was never cut off");
}

#[test]
fn a_trickled_preflight_head_is_closed_at_the_header_timeout() {
    let edge = Preflightd::start(RULES, None, &["--header-read-timeout", "700ms"]);
    let partial = format!(
        "OPTIONS /v1/items HTTP/1.1\r\nHost: {HOST}\r\nOrigin: {ALLOWED_ORIGIN}\r\nAccess-Control-Request-Method: PUT\r\nX-Trickle: a"
    );
    let step = Duration::from_millis(100);
    let mut served = 0;
    let mut others = || {
        assert!(answered(&edge));
        served += 1;
    };

    // As the first request of a connection.
    let mut first = Client::open(edge.data);
    let lasted = trickle_until_closed(&mut first, &partial, step, &mut others);
    assert!(
        lasted >= Duration::from_millis(600),
        "closed early: {lasted:?}"
    );
    assert!(lasted < Duration::from_secs(5), "closed late: {lasted:?}");

    // As the next request after a fast-path answer, once the connection has idled for longer
    // than the header timeout: the head's clock starts at its first byte.
    let mut next = Client::open(edge.data);
    assert_allowed(&next.exchange(&allowed_preflight()));
    assert_eq!(next.end(Duration::from_secs(1)), End::Open);
    let lasted = trickle_until_closed(&mut next, &partial, step, &mut others);
    assert!(
        lasted >= Duration::from_millis(600),
        "closed early: {lasted:?}"
    );
    assert!(lasted < Duration::from_secs(5), "closed late: {lasted:?}");

    // A partial head pipelined behind a preflight, in the same write, and then nothing: its
    // clock starts when the answer before it is written, not at the next byte.
    let mut behind = Client::open(edge.data);
    let written = Instant::now();
    behind.write(format!("{}{partial}", allowed_preflight()).as_bytes());
    assert_allowed(&behind.response());
    assert_eq!(behind.end(WAIT), End::Closed);
    let lasted = written.elapsed();
    assert!(
        lasted >= Duration::from_millis(600),
        "closed early: {lasted:?}"
    );
    assert!(lasted < Duration::from_secs(5), "closed late: {lasted:?}");

    assert!(served >= 10, "{served} preflights answered meanwhile");
    assert_eq!(
        edge.metric("preflightd_client_errors_total{kind=\"header_timeout\"}"),
        3.0
    );
}

#[test]
fn a_kept_alive_connection_is_closed_at_the_idle_timeout_and_not_before() {
    let edge = Preflightd::start(RULES, None, &["--idle-timeout", "500ms"]);
    // Fast path only; then a connection hyper serves (a GET, 502 without an upstream) for
    // comparison.
    let get = format!("GET /v1/x HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    for handed_over in [false, true] {
        let mut client = Client::open(edge.data);
        assert_allowed(&client.exchange(&allowed_preflight()));
        if handed_over {
            let proxied = client.exchange(&get);
            assert_eq!(
                (proxied.status, proxied.text().as_str()),
                (502, "no upstream configured\n")
            );
        }
        // Open 300 ms into the idle time; a request then starts the clock again.
        assert_eq!(client.end(Duration::from_millis(300)), End::Open);
        assert!(answered(&edge), "others are served meanwhile");
        assert_allowed(&client.exchange(&allowed_preflight()));
        let idle_from = Instant::now();
        assert_eq!(client.end(WAIT), End::Closed, "handed over: {handed_over}");
        let lasted = idle_from.elapsed();
        assert!(
            lasted >= Duration::from_millis(450),
            "closed early ({handed_over}): {lasted:?}"
        );
        // Within 1.5x the bound (the watchdog's tick), by the connection's own graceful
        // finish: not by the watchdog's fallback a second after asking.
        assert!(
            lasted < Duration::from_millis(1400),
            "closed late ({handed_over}): {lasted:?}"
        );
    }
    // An idle close is not a client error.
    for kind in ["header_timeout", "send_timeout", "evicted"] {
        assert_eq!(
            edge.metric(&format!(
                "preflightd_client_errors_total{{kind=\"{kind}\"}}"
            )),
            0.0,
            "{kind}"
        );
    }
}

/// `allowed_preflight()` with `extra` more header lines (`X-Pad-N: N`) and an `X-Big` of
/// `big` bytes when `big > 0`.
fn padded_preflight(extra: usize, big: usize) -> String {
    let mut lines: String = (0..extra).map(|i| format!("X-Pad-{i}: {i}\r\n")).collect();
    if big > 0 {
        lines.push_str(&format!("X-Big: {}\r\n", "b".repeat(big)));
    }
    allowed_preflight().replacen("\r\n\r\n", &format!("\r\n{lines}\r\n"), 1)
}

#[test]
fn oversized_preflight_heads_and_too_many_lines_are_431() {
    let edge = Preflightd::start(
        RULES,
        None,
        &["--max-header-bytes", "16384", "--max-headers", "50"],
    );
    let too_big = padded_preflight(0, 32 * 1024);
    let fits = padded_preflight(0, 15_000);
    assert!(fits.len() < 16_384, "{}", fits.len());
    // allowed_preflight() has 4 lines: Host, Origin, ACRM, ACRH.
    let fifty_lines = padded_preflight(46, 0);
    let fifty_one_lines = padded_preflight(47, 0);

    let refused = |request: &str, after_a_preflight: bool| {
        let mut client = Client::open(edge.data);
        if after_a_preflight {
            assert_allowed(&client.exchange(&allowed_preflight()));
        }
        let response = client.exchange(request);
        assert_eq!(response.status, 431, "{}", response.status_line);
        assert_eq!(client.end(WAIT), End::Closed);
    };
    for after_a_preflight in [false, true] {
        refused(&too_big, after_a_preflight);
        refused(&fifty_one_lines, after_a_preflight);
    }
    // Within both limits, on other connections and after a 431: answered.
    for request in [&fits, &fifty_lines] {
        let mut client = Client::open(edge.data);
        assert_allowed(&client.exchange(request));
        assert_allowed(&client.exchange(request));
    }
}

#[test]
fn a_preflight_with_more_lines_than_the_fast_path_parses_is_still_answered() {
    // The fast path parses at most 128 lines; with --max-headers 200, a 150-line preflight
    // is within the limit and must be answered as any other (by hyper), and 201 lines is a 431.
    let edge = Preflightd::start(RULES, None, &["--max-headers", "200"]);
    let mut client = Client::open(edge.data);
    let first = client.exchange(&allowed_preflight());
    assert_allowed(&first);
    let long = client.exchange(&padded_preflight(146, 0));
    assert_eq!(answer(&long), answer(&first));
    assert_allowed(&client.exchange(&allowed_preflight()));
    let too_many = send(edge.data, &padded_preflight(197, 0));
    assert_eq!(too_many.status, 431, "{}", too_many.status_line);
}

#[test]
fn a_preflight_head_over_max_header_bytes_is_431_even_when_it_arrives_in_pieces() {
    let edge = Preflightd::start(RULES, None, &["--max-header-bytes", "16384"]);
    // About 20 000 bytes: over the limit, under twice it.
    let big = padded_preflight(0, 19_800);
    assert!((16_384..24_000).contains(&big.len()), "{}", big.len());
    let closing = big.replacen("\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1);
    let get = big.replacen("OPTIONS", "GET", 1);
    let in_pieces = |request: &str| {
        let mut client = Client::open(edge.data);
        let (first, rest) = request.split_at(12_000);
        client.write(first.as_bytes());
        // The edge reads the first piece (and answers nothing to a partial head) ...
        assert_eq!(client.end(Duration::from_millis(200)), End::Open);
        // ... then the rest, which completes the head.
        client.write(rest.as_bytes());
        let response = client.response();
        (response.status, response.status_line)
    };
    let refused = (
        431,
        "HTTP/1.1 431 Request Header Fields Too Large".to_owned(),
    );
    // In one write, it is refused.
    let whole = send(edge.data, &big);
    assert_eq!((whole.status, whole.status_line), refused);
    // In two, hyper refuses the same head: a GET, or the preflight with Connection: close,
    // both handed over by the fast path with the bytes it read ...
    assert_eq!(in_pieces(&get), refused, "GET");
    assert_eq!(in_pieces(&closing), refused, "Connection: close");
    // ... and the fast path must too.
    assert_eq!(in_pieces(&big), refused, "a keep-alive preflight");
}

#[test]
fn preflight_heads_hyper_refuses_for_their_size_are_refused_by_the_fast_path_too() {
    // With a head limit above 64 KiB, a head can hold what hyper refuses on its own: a target
    // over 65 534 bytes (414, the longest URI the http crate holds), a field name of 64 KiB or
    // more (431).
    let edge = Preflightd::start(RULES, None, &["--max-header-bytes", "262144"]);
    let long_target =
        allowed_preflight().replacen("/v1/items", &format!("/v1/{}", "t".repeat(70_000)), 1);
    let long_name = allowed_preflight().replacen(
        "\r\n\r\n",
        &format!("\r\nX-{}: 1\r\n\r\n", "n".repeat(70_000)),
        1,
    );
    let mut answers = Vec::new();
    for (what, request) in [
        ("a 70 000-byte target", long_target),
        ("a 70 000-byte field name", long_name),
    ] {
        // Hyper's answer: the same preflight with Connection: close is handed over.
        let closing = request.replacen("\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1);
        let hyper = send(edge.data, &closing).status;
        let fast = send(edge.data, &request).status;
        answers.push((what, hyper, fast));
    }
    // (what, hyper's answer, the keep-alive preflight's answer)
    assert_eq!(
        answers,
        [
            ("a 70 000-byte target", 414, 414),
            ("a 70 000-byte field name", 431, 431)
        ]
    );
}

#[test]
fn a_pipelining_client_that_never_reads_is_closed_after_the_send_timeout() {
    let edge = Preflightd::start(RULES, None, &["--send-timeout", "1s"]);
    let stream = connect(edge.data);
    let batch = allowed_preflight().repeat(1000);
    let started = Instant::now();
    // Thousands of preflights, never a read: the answers fill the socket buffers and the
    // edge's write blocks. At most two million preflights, and each write is bounded by the
    // socket's write timeout (`WAIT`).
    let writer = std::thread::spawn(move || {
        let mut stream = stream;
        let mut sent = 0usize;
        for _ in 0..2000 {
            if let Err(e) = stream.write_all(batch.as_bytes()) {
                return (sent, Some(e.kind()));
            }
            sent += 1000;
        }
        (sent, None)
    });
    // Meanwhile another client is served, on one kept-alive connection.
    let mut other = Client::open(edge.data);
    let mut served = 0;
    let deadline = Instant::now() + WAIT;
    while !writer.is_finished() && Instant::now() < deadline {
        assert_allowed(&other.exchange(&allowed_preflight()));
        served += 1;
        assert_eq!(other.end(Duration::from_millis(50)), End::Open);
    }
    let (sent, error) = writer.join().expect("writer");
    let lasted = started.elapsed();
    assert!(
        matches!(
            error,
            Some(std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe)
        ),
        "after {sent} preflights in {lasted:?}: {error:?}"
    );
    assert!(lasted >= Duration::from_secs(1), "closed early: {lasted:?}");
    assert!(served >= 5, "{served} answered meanwhile");
    assert_eq!(
        edge.metric("preflightd_client_errors_total{kind=\"send_timeout\"}"),
        1.0
    );
    assert_allowed(&other.exchange(&allowed_preflight()));
}

#[test]
fn sigterm_closes_idle_fast_path_connections_promptly_and_exits_0() {
    let mut edge = Preflightd::start(RULES, None, &["--shutdown-grace", "30s"]);
    let mut idle = Client::open(edge.data);
    assert_allowed(&idle.exchange(&allowed_preflight()));
    let mut silent = Client::open(edge.data);
    // A head begun before the signal is read to its end and answered.
    let head = allowed_preflight();
    let (begun, rest) = head.split_at(40);
    let mut midway = Client::open(edge.data);
    midway.write(begun.as_bytes());
    wait_for_metric(&edge, "preflightd_connections_open", 3.0);
    let signalled = Instant::now();
    edge.process.signal("TERM");

    assert_eq!(idle.end(WAIT), End::Closed);
    let closed = signalled.elapsed();
    assert!(
        closed < Duration::from_secs(2),
        "idle closed after {closed:?}"
    );
    assert_eq!(silent.end(WAIT), End::Closed);
    midway.write(rest.as_bytes());
    assert_allowed(&midway.response());
    assert_eq!(midway.end(WAIT), End::Closed);
    assert_eq!(edge.process.wait_exit(), Some(0));
    let exited = signalled.elapsed();
    assert!(exited < Duration::from_secs(5), "exited after {exited:?}");
}

#[test]
fn a_full_listener_evicts_connections_without_a_request_but_not_fast_path_ones() {
    let edge = Preflightd::start(RULES, None, &["--max-connections", "2"]);
    // Two silent sockets hold both slots; a third client is answered at once: they give way.
    let mut silent: Vec<Client> = (0..2).map(|_| Client::open(edge.data)).collect();
    wait_for_metric(&edge, "preflightd_connections_open", 2.0);
    let mut third = Client::open(edge.data);
    assert_allowed(&third.exchange(&allowed_preflight()));
    for (i, socket) in silent.iter_mut().enumerate() {
        assert_eq!(socket.end(WAIT), End::Closed, "silent socket {i}");
    }
    assert_eq!(
        edge.metric("preflightd_client_errors_total{kind=\"evicted\"}"),
        2.0
    );
    // The third (a fast-path preflight answered, kept alive) and a silent socket hold the
    // slots: a fourth client makes only the silent one give way.
    wait_for_metric(&edge, "preflightd_connections_open", 1.0);
    let mut quiet = Client::open(edge.data);
    wait_for_metric(&edge, "preflightd_connections_open", 2.0);
    let mut fourth = Client::open(edge.data);
    assert_allowed(&fourth.exchange(&allowed_preflight()));
    assert_eq!(quiet.end(WAIT), End::Closed);
    assert_allowed(&third.exchange(&allowed_preflight()));
    assert_eq!(
        edge.metric("preflightd_client_errors_total{kind=\"evicted\"}"),
        3.0
    );
}
