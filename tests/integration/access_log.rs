//! The access log (`--access-log`): every field of a preflight on both paths, a proxied
//! request, a tunnel, HTTP/2 and the edge's own errors; hostile values escaped in text and
//! JSON; sampling; a stdout nobody reads never slowing a request; the file reopened on
//! SIGHUP; bad flags refused with their place.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::support::{
    FaultUpstream, Preflightd, RULES, Upstream, WAIT, connect, preflight, read_response, send,
};

/// The JSON keys, in order: the text columns.
const FIELDS: [&str; 17] = [
    "time",
    "client",
    "protocol",
    "method",
    "host",
    "path",
    "status",
    "bytes",
    "duration",
    "kind",
    "rule",
    "result",
    "origin",
    "request_method",
    "request_headers",
    "upstream_status",
    "upstream_duration",
];

/// An edge writing its access log as `format` to a file; the file, in a directory that
/// lives as long as the edge.
struct Logging {
    edge: Preflightd,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

fn start(format: &str, upstream: Option<&str>, extra: &[&str]) -> Logging {
    start_with(RULES, format, upstream, extra)
}

fn start_with(rules: &str, format: &str, upstream: Option<&str>, extra: &[&str]) -> Logging {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("access.log");
    let path_text = path.display().to_string();
    let mut flags = vec!["--access-log", format, "--access-log-path", &path_text];
    flags.extend_from_slice(extra);
    Logging {
        edge: Preflightd::start(rules, upstream, &flags),
        path,
        _dir: dir,
    }
}

/// The file's lines once it has at least `n` (bounded by `WAIT`), and no more come within a
/// moment.
fn lines(path: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().count() >= n {
            std::thread::sleep(Duration::from_millis(100));
            let text = std::fs::read_to_string(path).unwrap_or_default();
            return text.lines().map(str::to_owned).collect();
        }
        assert!(
            Instant::now() < deadline,
            "{} access log lines within {WAIT:?}, wanted {n}:\n{text}",
            text.lines().count()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every line parsed as JSON, each checked to hold exactly the documented keys in order.
fn json_lines(path: &Path, n: usize) -> Vec<Value> {
    lines(path, n)
        .iter()
        .map(|line| {
            let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            let keys: Vec<usize> = FIELDS
                .iter()
                .map(|key| {
                    line.find(&format!("\"{key}\":"))
                        .unwrap_or_else(|| panic!("no {key} in {line}"))
                })
                .collect();
            assert!(keys.is_sorted(), "keys out of order: {line}");
            assert_eq!(
                value.as_object().map(|o| o.len()),
                Some(FIELDS.len()),
                "{line}"
            );
            value
        })
        .collect()
}

/// The one line whose `path` is `path`.
fn by_path<'a>(lines: &'a [Value], path: &str) -> &'a Value {
    let found: Vec<&Value> = lines.iter().filter(|l| l["path"] == path).collect();
    assert_eq!(found.len(), 1, "lines for {path}: {lines:#?}");
    found[0]
}

/// Seconds since the epoch of an RFC 3339 `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn epoch_seconds(time: &str) -> f64 {
    let bytes = time.as_bytes();
    assert_eq!(bytes.len(), 24, "{time}");
    assert_eq!(
        (
            bytes[4], bytes[7], bytes[10], bytes[13], bytes[16], bytes[19], bytes[23]
        ),
        (b'-', b'-', b'T', b':', b':', b'.', b'Z'),
        "{time}"
    );
    let number = |range: std::ops::Range<usize>| -> i64 {
        time[range].parse().unwrap_or_else(|_| panic!("{time}"))
    };
    let (y, m, d) = (number(0..4), number(5..7), number(8..10));
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (days * 86_400 + number(11..13) * 3600 + number(14..16) * 60 + number(17..19)) as f64
        + number(20..23) as f64 / 1000.0
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

/// Asserts `line`'s time, duration and client, which cannot be written in a table.
fn assert_measured(line: &Value, client: SocketAddr, window: (f64, f64)) {
    let time = epoch_seconds(line["time"].as_str().expect("time"));
    assert!(
        time >= window.0 - 0.01 && time <= window.1 + 0.01,
        "time {time} outside {window:?}: {line}"
    );
    let duration = line["duration"].as_f64().expect("duration");
    assert!(
        duration > 0.0 && duration < window.1 - window.0 + 0.01,
        "{line}"
    );
    assert_eq!(line["client"], client.to_string(), "{line}");
}

/// `expected`'s keys hold these values in `line` (the rest is checked apart).
fn assert_fields(line: &Value, expected: &[(&str, Value)]) {
    for (key, value) in expected {
        assert_eq!(&line[*key], value, "{key} in {line}");
    }
}

/// One request on `stream` (kept alive), its response read.
fn exchange(stream: &mut TcpStream, request: &str) -> crate::support::RawResponse {
    stream.write_all(request.as_bytes()).expect("write");
    read_response(&mut BufReader::new(stream))
}

const ALLOWED: &str = "https://app.example.com";

#[test]
fn every_field_of_a_preflight_on_the_fast_path_and_on_hyper() {
    let upstream = Upstream::start();
    let Logging { edge, path, _dir } = start("json", Some(&upstream.url()), &[]);
    let before = unix_now();
    // The fast path: allowed (with a query string that must not be logged), then denied.
    let mut fast = connect(edge.data);
    let fast_client = fast.local_addr().expect("addr");
    let allowed = exchange(
        &mut fast,
        &preflight(
            "/v1/fast?token=secret",
            "api.example.com",
            ALLOWED,
            "PUT",
            "content-type, x-api-key",
        ),
    );
    assert_eq!(allowed.status, 204);
    let denied = exchange(
        &mut fast,
        &preflight(
            "/v1/denied",
            "api.example.com",
            "https://evil.example",
            "PUT",
            "",
        ),
    );
    assert_eq!(denied.status, 403);
    // Hyper: the connection's first request is proxied, so hyper answers the preflight.
    let mut hyper = connect(edge.data);
    let hyper_client = hyper.local_addr().expect("addr");
    let first = exchange(
        &mut hyper,
        "GET /v1/first HTTP/1.1\r\nHost: api.example.com\r\n\r\n",
    );
    assert_eq!(first.status, 200);
    let on_hyper = exchange(
        &mut hyper,
        &preflight(
            "/v1/hyper?token=secret",
            "api.example.com",
            ALLOWED,
            "DELETE",
            "",
        ),
    );
    assert_eq!(on_hyper.status, 204);
    let after = unix_now();

    let logged = json_lines(&path, 4);
    assert_eq!(logged.len(), 4, "{logged:#?}");
    let fast_allowed = by_path(&logged, "/v1/fast");
    assert_fields(
        fast_allowed,
        &[
            ("protocol", "HTTP/1.1".into()),
            ("method", "OPTIONS".into()),
            ("host", "api.example.com".into()),
            ("status", 204.into()),
            ("bytes", 0.into()),
            ("kind", "preflight".into()),
            ("rule", "web".into()),
            ("result", "allowed".into()),
            ("origin", ALLOWED.into()),
            ("request_method", "PUT".into()),
            ("request_headers", "content-type, x-api-key".into()),
            ("upstream_status", Value::Null),
            ("upstream_duration", Value::Null),
        ],
    );
    assert_measured(fast_allowed, fast_client, (before, after));
    let fast_denied = by_path(&logged, "/v1/denied");
    assert_fields(
        fast_denied,
        &[
            ("status", 403.into()),
            ("bytes", denied.body.len().into()),
            ("rule", "(none)".into()),
            ("result", "origin".into()),
            ("origin", "https://evil.example".into()),
            ("request_method", "PUT".into()),
            ("request_headers", Value::Null),
        ],
    );
    assert_measured(fast_denied, fast_client, (before, after));
    let hyper_allowed = by_path(&logged, "/v1/hyper");
    assert_fields(
        hyper_allowed,
        &[
            ("protocol", "HTTP/1.1".into()),
            ("method", "OPTIONS".into()),
            ("host", "api.example.com".into()),
            ("status", 204.into()),
            ("bytes", 0.into()),
            ("kind", "preflight".into()),
            ("rule", "web".into()),
            ("result", "allowed".into()),
            ("origin", ALLOWED.into()),
            ("request_method", "DELETE".into()),
            ("request_headers", Value::Null),
            ("upstream_status", Value::Null),
        ],
    );
    assert_measured(hyper_allowed, hyper_client, (before, after));
    let text = std::fs::read_to_string(&path).expect("log");
    assert!(
        !text.contains("secret"),
        "a query string was logged: {text}"
    );

    // The debug line of the denial names the same request facts.
    let debug = edge.process.wait_for_line("\"preflight denied\"");
    let debug: Value = serde_json::from_str(&debug).expect("json log line");
    assert_fields(
        &debug,
        &[
            ("reason", "origin".into()),
            ("host", "api.example.com".into()),
            ("path", "/v1/denied".into()),
            ("origin", "https://evil.example".into()),
            ("request_method", "PUT".into()),
            ("request_headers", "".into()),
        ],
    );
    assert_eq!(edge.metric("preflightd_access_log_dropped_total"), 0.0);
}

#[test]
fn proxied_requests_tunnels_http2_and_forwarded_preflights() {
    let upstream = Upstream::start();
    // `unmatched = "forward"`: a preflight outside every scope goes to the upstream.
    let rules = format!("[settings]\nunmatched = \"forward\"\n{RULES}");
    let Logging { edge, path, _dir } = start_with(&rules, "json", Some(&upstream.url()), &[]);
    let before = unix_now();
    let mut stream = connect(edge.data);
    let client = stream.local_addr().expect("addr");
    let proxied = exchange(
        &mut stream,
        "POST /v1/echo?secret=1 HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 5\r\n\r\nhello",
    );
    assert_eq!(proxied.status, 200);
    let old = send(edge.data, "GET /v1/old HTTP/1.0\r\n\r\n");
    assert_eq!(old.status, 200);
    let forwarded = send(
        edge.data,
        &preflight(
            "/v1/forwarded",
            "other.example.com",
            ALLOWED,
            "PATCH",
            "x-a",
        ),
    );
    assert_eq!(forwarded.status, 200, "the upstream answers it");
    // A WebSocket tunnel, logged when the upstream's 101 opens it.
    let mut tunnel = connect(edge.data);
    let tunnel_client = tunnel.local_addr().expect("addr");
    tunnel
        .write_all(b"GET /ws HTTP/1.1\r\nHost: api.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        .expect("write");
    let mut tunnel_reader = BufReader::new(tunnel.try_clone().expect("clone"));
    assert_eq!(read_response(&mut tunnel_reader).status, 101);
    tunnel.write_all(b"ping").expect("tunnel write");
    let mut echo = [0; 4];
    tunnel_reader.read_exact(&mut echo).expect("echo");
    // HTTP/2 prior knowledge: a preflight and a GET.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let address = edge.data;
    let h2_client = runtime.block_on(async move {
        use http_body_util::Empty;
        let stream = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        let local = stream.local_addr().expect("addr");
        let (mut sender, connection) =
            hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .handshake::<_, Empty<bytes::Bytes>>(hyper_util::rt::TokioIo::new(stream))
                .await
                .expect("h2 handshake");
        tokio::spawn(connection);
        let preflight = http::Request::builder()
            .method("OPTIONS")
            .uri("http://api.example.com/v1/h2-preflight")
            .header("origin", ALLOWED)
            .header("access-control-request-method", "PUT")
            .body(Empty::new())
            .expect("request");
        let response = sender.send_request(preflight).await.expect("h2 preflight");
        assert_eq!(response.status(), 204);
        let get = http::Request::builder()
            .uri("http://api.example.com/v1/h2-get")
            .body(Empty::new())
            .expect("request");
        let response = sender.send_request(get).await.expect("h2 get");
        assert_eq!(response.status(), 200);
        http_body_util::BodyExt::collect(response.into_body())
            .await
            .expect("body");
        local
    });
    let after = unix_now();

    let logged = json_lines(&path, 6);
    let echo_line = by_path(&logged, "/v1/echo");
    assert_fields(
        echo_line,
        &[
            ("protocol", "HTTP/1.1".into()),
            ("method", "POST".into()),
            ("host", "api.example.com".into()),
            ("status", 200.into()),
            ("bytes", proxied.body.len().into()),
            ("kind", "proxied".into()),
            ("rule", Value::Null),
            ("result", Value::Null),
            ("origin", Value::Null),
            ("request_method", Value::Null),
            ("request_headers", Value::Null),
            ("upstream_status", 200.into()),
        ],
    );
    assert_measured(echo_line, client, (before, after));
    let upstream_duration = echo_line["upstream_duration"].as_f64().expect("upstream");
    assert!(
        upstream_duration > 0.0 && upstream_duration <= echo_line["duration"].as_f64().expect("d"),
        "{echo_line}"
    );
    assert_fields(
        by_path(&logged, "/v1/old"),
        &[
            ("protocol", "HTTP/1.0".into()),
            ("host", Value::Null),
            ("status", 200.into()),
            ("bytes", old.body.len().into()),
            ("kind", "proxied".into()),
            ("upstream_status", 200.into()),
        ],
    );
    assert_fields(
        by_path(&logged, "/v1/forwarded"),
        &[
            ("method", "OPTIONS".into()),
            ("host", "other.example.com".into()),
            ("status", 200.into()),
            ("bytes", forwarded.body.len().into()),
            ("kind", "preflight".into()),
            ("rule", "(none)".into()),
            ("result", "forwarded".into()),
            ("origin", ALLOWED.into()),
            ("request_method", "PATCH".into()),
            ("request_headers", "x-a".into()),
            ("upstream_status", 200.into()),
        ],
    );
    let tunnel_line = by_path(&logged, "/ws");
    assert_fields(
        tunnel_line,
        &[
            ("method", "GET".into()),
            ("status", 101.into()),
            ("bytes", 0.into()),
            ("kind", "tunnel".into()),
            ("upstream_status", 101.into()),
        ],
    );
    assert_measured(tunnel_line, tunnel_client, (before, after));
    let h2_preflight = by_path(&logged, "/v1/h2-preflight");
    assert_fields(
        h2_preflight,
        &[
            ("protocol", "HTTP/2".into()),
            ("host", "api.example.com".into()),
            ("status", 204.into()),
            ("kind", "preflight".into()),
            ("result", "allowed".into()),
        ],
    );
    assert_measured(h2_preflight, h2_client, (before, after));
    assert_fields(
        by_path(&logged, "/v1/h2-get"),
        &[
            ("protocol", "HTTP/2".into()),
            ("kind", "proxied".into()),
            ("upstream_status", 200.into()),
        ],
    );
    assert!(
        !std::fs::read_to_string(&path)
            .expect("log")
            .contains("secret")
    );
    drop(tunnel);
}

/// A preflight answered on a fresh connection (the fast path).
fn answered(edge: &Preflightd) -> bool {
    send(
        edge.data,
        &preflight("/v1/meanwhile", "api.example.com", ALLOWED, "PUT", ""),
    )
    .status
        == 204
}

#[test]
fn the_edges_own_errors_are_always_logged_with_their_reason() {
    // Sampling at 0: nothing the upstream answers and no allowed preflight is logged, every
    // error and denial is.
    let upstream = FaultUpstream::start();
    let Logging { edge, path, _dir } = start(
        "json",
        Some(&upstream.url()),
        &[
            "--access-log-sample",
            "0",
            "--upstream-timeout",
            "1s",
            "--client-body-timeout",
            "1s",
            "--max-header-bytes",
            "131072",
            "--max-headers",
            "20",
        ],
    );
    let mut expected = Vec::new();
    let mut check = |request: String, status: u16, line: Vec<(&'static str, Value)>| {
        let response = send(edge.data, &request);
        assert_eq!(response.status, status, "{request:.80}");
        assert!(answered(&edge), "preflights answered meanwhile");
        expected.push((status, line));
    };
    check(
        "GET /close-before-response HTTP/1.1\r\nHost: api.example.com\r\n\r\n".into(),
        502,
        vec![
            ("path", "/close-before-response".into()),
            ("kind", "proxied".into()),
            ("upstream_status", Value::Null),
        ],
    );
    check(
        "GET /silence HTTP/1.1\r\nHost: api.example.com\r\n\r\n".into(),
        504,
        vec![
            ("path", "/silence".into()),
            ("kind", "proxied".into()),
            ("upstream_status", Value::Null),
        ],
    );
    check(
        "POST /ok HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 100\r\n\r\nhalf".into(),
        408,
        vec![
            ("path", "/ok".into()),
            ("method", "POST".into()),
            ("kind", "proxied".into()),
            ("upstream_status", Value::Null),
        ],
    );
    check(
        "GET /two HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n".into(),
        400,
        vec![
            ("path", "/two".into()),
            ("host", "a.test".into()),
            ("kind", "error".into()),
            ("result", "bad_host".into()),
        ],
    );
    check(
        "CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\n\r\n".into(),
        405,
        vec![
            ("method", "CONNECT".into()),
            ("host", "api.example.com:443".into()),
            ("path", Value::Null),
            ("kind", "error".into()),
            ("result", "connect_method".into()),
        ],
    );
    // Hyper's own answers: the request never reached the service, so only the client, the
    // status and the reason are known.
    let unknown = || -> Vec<(&'static str, Value)> {
        [
            "protocol", "method", "host", "path", "duration", "rule", "origin",
        ]
        .map(|k| (k, Value::Null))
        .to_vec()
    };
    check(
        "GET /bare-cr HTTP/1.1\r\nHost: api.example.com\r\nOrigin: https://a\rforged\r\n\r\n"
            .into(),
        400,
        [
            unknown(),
            vec![("kind", "error".into()), ("result", "bad_request".into())],
        ]
        .concat(),
    );
    let lines: String = (0..30).map(|i| format!("X-H{i}: {i}\r\n")).collect();
    check(
        format!("GET /many HTTP/1.1\r\nHost: api.example.com\r\n{lines}\r\n"),
        431,
        [unknown(), vec![("result", "head_too_large".into())]].concat(),
    );
    check(
        format!(
            "GET /{} HTTP/1.1\r\nHost: api.example.com\r\n\r\n",
            "a".repeat(70_000)
        ),
        414,
        [unknown(), vec![("result", "uri_too_long".into())]].concat(),
    );
    // The denials among the preflights: always logged too.
    let denied = send(
        edge.data,
        &preflight("/v1/denied", "api.example.com", ALLOWED, "PATCH", ""),
    );
    assert_eq!(denied.status, 403);
    expected.push((
        403,
        vec![("result", "method".into()), ("rule", "web".into())],
    ));

    let logged = json_lines(&path, expected.len());
    assert_eq!(
        logged.len(),
        expected.len(),
        "only errors and denials: {logged:#?}"
    );
    for (status, fields) in &expected {
        let matching: Vec<&Value> = logged
            .iter()
            .filter(|l| l["status"] == *status && fields.iter().all(|(k, v)| &l[*k] == v))
            .collect();
        assert_eq!(matching.len(), 1, "{status} {fields:?} in {logged:#?}");
    }
    let timed_out = logged.iter().find(|l| l["status"] == 504).expect("504");
    assert!(
        timed_out["upstream_duration"]
            .as_f64()
            .is_some_and(|d| d >= 0.9),
        "{timed_out}"
    );
    assert!(
        !std::fs::read_to_string(&path)
            .expect("log")
            .contains("forged"),
        "a refused head's bytes were logged"
    );
}

/// The hostile origin below, as a text line shows it.
const ESCAPED_ORIGIN: &str =
    "\"https://a.example.com\\x22\\x20forged=\\x221\\x5C\\x20\\x09\\xC3\\xA9\\xFF\"";

#[test]
fn hostile_values_are_escaped_in_text_and_round_trip_in_json() {
    // Bytes an HTTP/1.1 field value may carry: quotes, backslashes, spaces, tabs, DEL and
    // obs-text (RFC 9110 5.5); CR and LF cannot be in a value (hyper refuses the head, see
    // the errors test), so the unit tests of `access_log::line` cover those.
    let origin: &[u8] = b"https://a.example.com\" forged=\"1\\ \t\xc3\xa9\xff";
    let acrh: &[u8] = b"x-a, \"b\"";
    let mut request = Vec::new();
    request.extend_from_slice(
        b"OPTIONS /v1/hostile HTTP/1.1\r\nHost: api.example.com\r\nAccess-Control-Request-Method: PUT\r\nOrigin: ",
    );
    request.extend_from_slice(origin);
    request.extend_from_slice(b"\r\nAccess-Control-Request-Headers: ");
    request.extend_from_slice(acrh);
    request.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    let bad_host = b"GET /bad-host HTTP/1.1\r\nHost: a\"b\xff\r\nConnection: close\r\n\r\n";

    let raw = |edge: &Preflightd, bytes: &[u8]| {
        let mut stream = connect(edge.data);
        stream.write_all(bytes).expect("write");
        read_response(&mut BufReader::new(stream)).status
    };
    let text_logging = start("text", None, &[]);
    let (text_edge, text_path) = (&text_logging.edge, &text_logging.path);
    assert_eq!(raw(text_edge, &request), 403, "malformed: denied");
    assert_eq!(raw(text_edge, bad_host), 400);
    let text = lines(text_path, 2);
    assert_eq!(text.len(), 2, "{text:#?}");
    for line in &text {
        assert!(line.is_ascii(), "{line}");
        assert_eq!(line.split_whitespace().count(), FIELDS.len(), "{line}");
    }
    let hostile = text
        .iter()
        .find(|l| l.contains("/v1/hostile"))
        .expect("hostile line");
    let columns: Vec<&str> = hostile.split(' ').collect();
    assert_eq!(
        &columns[2..],
        [
            "HTTP/1.1",
            "\"OPTIONS\"",
            "\"api.example.com\"",
            "\"/v1/hostile\"",
            "403",
            "43",
            columns[8],
            "preflight",
            "(none)",
            "malformed",
            ESCAPED_ORIGIN,
            "\"PUT\"",
            "\"x-a,\\x20\\x22b\\x22\"",
            "-",
            "-",
        ]
    );
    let host_line = text
        .iter()
        .find(|l| l.contains("/bad-host"))
        .expect("bad host line");
    assert!(
        host_line.contains(" \"a\\x22b\\xFF\" \"/bad-host\" 400 "),
        "{host_line}"
    );
    // The debug line of the denial: the same escaping.
    let debug = text_edge.process.wait_for_line("/v1/hostile");
    let debug: Value = serde_json::from_str(&debug).expect("json log line");
    assert_eq!(
        debug["origin"].as_str().map(|o| format!("\"{o}\"")),
        Some(ESCAPED_ORIGIN.to_owned())
    );

    let Logging {
        edge: json_edge,
        path: json_path,
        _dir,
    } = start("json", None, &[]);
    assert_eq!(raw(&json_edge, &request), 403);
    assert_eq!(raw(&json_edge, bad_host), 400);
    let logged = json_lines(&json_path, 2);
    let latin1 = |value: &Value| -> Vec<u8> {
        value
            .as_str()
            .expect("string")
            .chars()
            .map(|c| u8::try_from(u32::from(c)).expect("one byte per code point"))
            .collect()
    };
    let hostile = by_path(&logged, "/v1/hostile");
    assert_eq!(latin1(&hostile["origin"]), origin);
    assert_eq!(latin1(&hostile["request_headers"]), acrh);
    assert_eq!(latin1(&by_path(&logged, "/bad-host")["host"]), b"a\"b\xff");
    assert!(std::fs::read(&json_path).expect("log").is_ascii());
}

#[test]
fn sampling_keeps_a_fraction_of_allowed_preflights_and_every_denial() {
    let Logging { edge, path, _dir } = start("text", None, &["--access-log-sample", "0.5"]);
    // 400 allowed and 400 denied preflights, pipelined 20 to a write on the fast path.
    let mut stream = connect(edge.data);
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    for round in 0..20 {
        let mut batch = String::new();
        for i in 0..20 {
            let origin = if i % 2 == 0 {
                ALLOWED
            } else {
                "https://evil.example"
            };
            batch.push_str(&preflight(
                &format!("/v1/r{round}-{i}"),
                "api.example.com",
                origin,
                "PUT",
                "",
            ));
        }
        stream.write_all(batch.as_bytes()).expect("write");
        for i in 0..20 {
            let expected = if i % 2 == 0 { 204 } else { 403 };
            assert_eq!(read_response(&mut reader).status, expected);
        }
    }
    // Every line was queued before its answer was written.
    let logged = lines(&path, 200);
    let count = |result: &str| {
        logged
            .iter()
            .filter(|l| l.split(' ').nth(11) == Some(result))
            .count()
    };
    assert_eq!(count("origin"), 200, "every denial");
    // Binomial(200, 0.5): 100 +- 7; 60..=140 is over five standard deviations either way.
    let allowed = count("allowed");
    assert!(
        (60..=140).contains(&allowed),
        "{allowed} of 200 allowed logged"
    );
    assert_eq!(logged.len(), 200 + allowed);
}

/// Reads `stdout` to its end on a thread; the lines, through the channel.
fn drain(stdout: impl Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

#[test]
fn a_stdout_nobody_reads_slows_no_request_and_drops_are_counted() {
    let upstream = Upstream::start();
    let mut edge = Preflightd::start_with_command(
        |dir| std::fs::write(dir.join("rules.toml"), RULES).expect("rules"),
        Some(&upstream.url()),
        &["--access-log", "text", "--access-log-buffer", "65536"],
        |command| {
            command.stdout(Stdio::piped());
        },
    );
    // Held, never read until the burst is over: once the pipe (64 KiB) and the queue
    // (64 KiB) are full, the writer blocks on it for good. A writer that made requests wait
    // would hang every one of them here.
    let stdout = edge.process.child.stdout.take().expect("stdout");
    const CONNECTIONS: usize = 4;
    const BATCHES: usize = 25;
    const DEPTH: usize = 40;
    let data = edge.data;
    let clients: Vec<_> = (0..CONNECTIONS)
        .map(|c| {
            std::thread::spawn(move || {
                let mut stream = connect(data);
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut slowest = Duration::ZERO;
                for b in 0..BATCHES {
                    let batch: String = (0..DEPTH)
                        .map(|i| {
                            preflight(
                                &format!("/v1/c{c}/b{b}/{i}"),
                                "api.example.com",
                                ALLOWED,
                                "PUT",
                                "",
                            )
                        })
                        .collect();
                    let sent = Instant::now();
                    stream.write_all(batch.as_bytes()).expect("write");
                    for _ in 0..DEPTH {
                        assert_eq!(read_response(&mut reader).status, 204);
                    }
                    slowest = slowest.max(sent.elapsed());
                }
                slowest
            })
        })
        .collect();
    // Proxied requests and fresh connections are served meanwhile.
    let mut others = 0;
    for i in 0..10 {
        let response = send(
            edge.data,
            &format!(
                "GET /v1/meanwhile{i} HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n"
            ),
        );
        assert_eq!(response.status, 200);
        assert!(answered(&edge));
        others += 2;
    }
    for client in clients {
        let slowest = client.join().expect("client");
        // Generous for a debug build on a busy machine; a blocked request would take forever.
        assert!(
            slowest < Duration::from_secs(5),
            "a batch of {DEPTH} took {slowest:?}"
        );
    }
    let sent = CONNECTIONS * BATCHES * DEPTH + others;
    let dropped = || edge.metric("preflightd_access_log_dropped_total") as usize;
    assert!(
        dropped() >= sent / 2,
        "{} of {sent} lines dropped with 128 KiB between the requests and a blocked reader",
        dropped()
    );
    // Now read: every line not dropped arrives, and no more.
    let received = drain(stdout);
    let mut lines = 0;
    let deadline = Instant::now() + WAIT;
    while lines + dropped() < sent {
        assert!(
            Instant::now() < deadline,
            "{lines} lines read + {} dropped != {sent} requests",
            dropped()
        );
        if let Ok(line) = received.recv_timeout(Duration::from_millis(100)) {
            assert_eq!(line.split(' ').count(), FIELDS.len(), "{line}");
            lines += 1;
        }
    }
    let dropped_then = dropped();
    assert_eq!(lines + dropped_then, sent);
    assert!(
        received.recv_timeout(Duration::from_millis(300)).is_err(),
        "more lines than requests"
    );
    // The writer recovered: a new request is logged, nothing more is dropped.
    assert!(answered(&edge));
    let line = received.recv_timeout(WAIT).expect("a line after the block");
    assert!(line.contains("\"/v1/meanwhile\""), "{line}");
    assert_eq!(dropped(), dropped_then);
}

#[test]
fn shutdown_is_not_held_up_by_a_blocked_access_log() {
    let mut edge = Preflightd::start_with_command(
        |dir| std::fs::write(dir.join("rules.toml"), RULES).expect("rules"),
        None,
        &["--access-log", "json", "--access-log-buffer", "65536"],
        |command| {
            command.stdout(Stdio::piped());
        },
    );
    let _stdout = edge.process.child.stdout.take().expect("stdout");
    // Enough lines to fill the pipe and the queue.
    let mut stream = connect(edge.data);
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    for b in 0..20 {
        let batch: String = (0..50)
            .map(|i| {
                preflight(
                    &format!("/v1/{b}/{i}"),
                    "api.example.com",
                    ALLOWED,
                    "PUT",
                    "",
                )
            })
            .collect();
        stream.write_all(batch.as_bytes()).expect("write");
        for _ in 0..50 {
            assert_eq!(read_response(&mut reader).status, 204);
        }
    }
    drop((stream, reader));
    assert!(edge.metric("preflightd_access_log_dropped_total") > 0.0);
    let asked = Instant::now();
    edge.process.signal("TERM");
    assert_eq!(edge.process.wait_exit(), Some(0));
    // The writer gets two seconds to write what is queued, then the process exits anyway.
    assert!(
        asked.elapsed() < Duration::from_secs(8),
        "exit took {:?}",
        asked.elapsed()
    );
}

#[test]
fn the_file_is_reopened_on_sighup_and_flags_come_from_the_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("access.log");
    let rotated = dir.path().join("access.log.1");
    let log_env = path.clone();
    let edge = Preflightd::start_with_command(
        |rules| std::fs::write(rules.join("rules.toml"), RULES).expect("rules"),
        None,
        &[],
        move |command| {
            command
                .env("PREFLIGHTD_ACCESS_LOG", "text")
                .env("PREFLIGHTD_ACCESS_LOG_PATH", &log_env)
                .env("PREFLIGHTD_ACCESS_LOG_SAMPLE", "1");
        },
    );
    let ask = |name: &str| {
        assert!(answered_at(&edge, name));
    };
    ask("/v1/before");
    assert_eq!(lines(&path, 1).len(), 1);
    // logrotate: rename, then SIGHUP (its `postrotate`).
    std::fs::rename(&path, &rotated).expect("rename");
    ask("/v1/renamed");
    assert_eq!(lines(&rotated, 2).len(), 2, "still the open file");
    edge.process.signal("HUP");
    let deadline = Instant::now() + WAIT;
    while !path.exists() {
        assert!(Instant::now() < deadline, "no new file after SIGHUP");
        std::thread::sleep(Duration::from_millis(20));
    }
    ask("/v1/after");
    let new = lines(&path, 1);
    assert_eq!(new.len(), 1);
    assert!(new[0].contains("\"/v1/after\""), "{new:?}");
    let old = lines(&rotated, 2);
    assert!(old[0].contains("\"/v1/before\"") && old[1].contains("\"/v1/renamed\""));
}

fn answered_at(edge: &Preflightd, path: &str) -> bool {
    send(
        edge.data,
        &preflight(path, "api.example.com", ALLOWED, "PUT", ""),
    )
    .status
        == 204
}

#[test]
fn bad_access_log_flags_are_refused_with_their_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("rules.toml"), RULES).expect("rules");
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_preflightd"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .arg("--rules")
            .arg(dir.path())
            .args(args)
            .output()
            .expect("run")
    };
    for (args, flag) in [
        (&["--access-log-sample", "1.5"][..], "--access-log-sample"),
        (&["--access-log-sample", "often"], "--access-log-sample"),
        (&["--access-log-buffer", "100"], "--access-log-buffer"),
        (
            &["--access-log-buffer", "1099511627776"],
            "--access-log-buffer",
        ),
        (&["--access-log", "yes"], "--access-log"),
    ] {
        let out = run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("invalid value '{}' for '{flag}", args[1])),
            "{args:?}: {stderr}"
        );
    }
    let missing = dir.path().join("no-such-dir").join("access.log");
    let out = run(&[
        "--access-log",
        "json",
        "--access-log-path",
        &missing.display().to_string(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot open the access log")
            && stderr.contains(&missing.display().to_string()),
        "{stderr}"
    );
}

#[test]
fn an_exhausted_upstream_and_a_cut_download_are_logged_as_they_ended() {
    let upstream = Upstream::start();
    let Logging { edge, path, _dir } = start(
        "json",
        Some(&upstream.url()),
        &[
            "--upstream-max-connections",
            "1",
            "--upstream-connect-timeout",
            "500ms",
            "--send-timeout",
            "1s",
        ],
    );
    // One slow request holds the only upstream connection; the next one gets 503.
    let data = edge.data;
    let slow = std::thread::spawn(move || {
        send(
            data,
            "GET /slow?ms=2000 HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n",
        )
        .status
    });
    let deadline = Instant::now() + WAIT;
    while upstream.log().is_empty() {
        assert!(Instant::now() < deadline, "the slow request never arrived");
        std::thread::sleep(Duration::from_millis(20));
    }
    let exhausted = send(
        edge.data,
        "GET /v1/exhausted HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(exhausted.status, 503);
    assert!(answered(&edge), "preflights answered meanwhile");
    assert_eq!(slow.join().expect("slow"), 200);
    // A client that stops reading a 100 MB download is cut at the send timeout: its line
    // shows what was handed to the connection, far short of the whole body.
    let mut stream = connect(edge.data);
    stream
        .write_all(b"GET /stream?bytes=100000000 HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
        .expect("write");
    std::thread::sleep(Duration::from_secs(3));
    let mut received = 0;
    let mut buffer = vec![0u8; 1 << 16];
    while let Ok(n @ 1..) = stream.read(&mut buffer) {
        received += n;
    }

    let logged = json_lines(&path, 3);
    assert_fields(
        by_path(&logged, "/v1/exhausted"),
        &[
            ("status", 503.into()),
            ("bytes", exhausted.body.len().into()),
            ("kind", "proxied".into()),
            ("upstream_status", Value::Null),
        ],
    );
    let waited = by_path(&logged, "/v1/exhausted")["upstream_duration"]
        .as_f64()
        .expect("upstream_duration");
    assert!((0.45..5.0).contains(&waited), "{waited}");
    assert_fields(
        by_path(&logged, "/slow"),
        &[("status", 200.into()), ("upstream_status", 200.into())],
    );
    let cut = by_path(&logged, "/stream");
    assert_fields(
        cut,
        &[
            ("status", 200.into()),
            ("kind", "proxied".into()),
            ("upstream_status", 200.into()),
        ],
    );
    let bytes = cut["bytes"].as_u64().expect("bytes");
    assert!(
        bytes + 1024 >= received as u64 && bytes < 50_000_000,
        "{bytes} bytes logged, {received} received"
    );
}

#[test]
fn the_client_is_the_proxy_protocol_address() {
    let Logging { edge, path, _dir } = start("json", None, &["--proxy-protocol"]);
    let mut stream = connect(edge.data);
    stream
        .write_all(b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\n")
        .expect("write");
    let response = exchange(
        &mut stream,
        &preflight("/v1/proxied-client", "api.example.com", ALLOWED, "PUT", ""),
    );
    assert_eq!(response.status, 204);
    let proxied = exchange(
        &mut stream,
        "GET /v1/no-upstream HTTP/1.1\r\nHost: api.example.com\r\n\r\n",
    );
    assert_eq!(proxied.status, 502);
    let logged = json_lines(&path, 2);
    for path in ["/v1/proxied-client", "/v1/no-upstream"] {
        assert_eq!(by_path(&logged, path)["client"], "203.0.113.7:5555");
    }
    assert_fields(
        by_path(&logged, "/v1/no-upstream"),
        &[
            ("status", 502.into()),
            ("kind", "proxied".into()),
            ("upstream_status", Value::Null),
            ("upstream_duration", Value::Null),
        ],
    );
}

/// In shadow mode the upstream answers every preflight: the line is the proxied request's,
/// with the preflight's CORS fields, `result` `shadow` and the rule the rules would have
/// used, next to the upstream's status.
#[test]
fn shadowed_preflights_are_logged_with_the_rule_the_rules_would_use() {
    let upstream = Upstream::start_cors(&[ALLOWED]);
    let rules = format!("[settings]\nmode = \"shadow\"\n{RULES}");
    let logging = start_with(&rules, "json", Some(&upstream.url()), &[]);
    let response = send(
        logging.edge.data,
        &preflight(
            "/shadowed",
            "api.example.com",
            ALLOWED,
            "PUT",
            "content-type",
        ),
    );
    assert_eq!(response.status, 204, "the application's own answer");
    let lines = json_lines(&logging.path, 1);
    let line = by_path(&lines, "/shadowed");
    assert_fields(
        line,
        &[
            ("method", Value::from("OPTIONS")),
            ("status", Value::from(204)),
            ("rule", Value::from("web")),
            ("result", Value::from("shadow")),
            ("origin", Value::from(ALLOWED)),
            ("request_method", Value::from("PUT")),
            ("request_headers", Value::from("content-type")),
            ("upstream_status", Value::from(204)),
        ],
    );
    assert!(line["upstream_duration"].is_number(), "{line}");
}

/// `--access-log-buffer` bounds the queue in bytes, not only in lines: with 4 KiB lines, a
/// 64 KiB buffer holds 16 of them (its 512 slots would hold them all). Behind a stdout
/// nobody reads, what arrives once it is read is at most the queue, the writer's batch in
/// flight and the pipe: about 48 lines of 300, the rest dropped and counted.
#[test]
fn the_access_log_buffer_bounds_bytes_behind_a_blocked_reader() {
    let mut edge = Preflightd::start_with_command(
        |dir| std::fs::write(dir.join("rules.toml"), RULES).expect("rules"),
        None,
        &["--access-log", "text", "--access-log-buffer", "65536"],
        |command| {
            command.stdout(Stdio::piped());
        },
    );
    let stdout = edge.process.child.stdout.take().expect("stdout");
    const SENT: usize = 300;
    let long = "a".repeat(4000);
    let mut stream = connect(edge.data);
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    for i in 0..SENT {
        let request = preflight(
            &format!("/v1/{i}/{long}"),
            "api.example.com",
            ALLOWED,
            "PUT",
            "",
        );
        stream.write_all(request.as_bytes()).expect("write");
        assert_eq!(read_response(&mut reader).status, 204);
    }
    let dropped = || edge.metric("preflightd_access_log_dropped_total") as usize;
    let received = drain(stdout);
    let mut lines = 0;
    let deadline = Instant::now() + WAIT;
    while lines + dropped() < SENT {
        assert!(
            Instant::now() < deadline,
            "{lines} read + {} dropped",
            dropped()
        );
        if received.recv_timeout(Duration::from_millis(100)).is_ok() {
            lines += 1;
        }
    }
    assert_eq!(lines + dropped(), SENT);
    // Queue 64 KiB + batch (64 KiB and one line) + pipe (64 KiB), in 4 KiB lines, with room.
    assert!(
        lines <= 64,
        "{lines} lines of 4 KiB came through a 64 KiB buffer"
    );
}
