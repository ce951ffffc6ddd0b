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

// Attacks on the edge limits (DESIGN 10): each bound trips with its exact outcome, and
// preflights keep being answered meanwhile.

use std::net::{Shutdown, TcpStream};

use crate::support::{Upstream, WAIT, read_response};

fn answered(edge: &Preflightd) -> bool {
    send(
        edge.data,
        &preflight(
            "/v1/x",
            "api.example.com",
            "https://app.example.com",
            "PUT",
            "",
        ),
    )
    .status
        == 204
}

/// Reads until the peer closes (or the read times out); whether it closed.
fn closed_by_peer(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).expect("timeout");
    let mut sink = [0u8; 4096];
    loop {
        match stream.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) => return e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

#[test]
fn silent_sockets_and_half_a_preface_are_dropped_at_the_header_timeout() {
    let edge = Preflightd::start(
        RULES,
        None,
        &["--max-connections", "20", "--header-read-timeout", "1s"],
    );
    // Below the cap: sockets that send nothing, or half an HTTP/2 preface, are closed at the
    // header timeout.
    let mut early: Vec<TcpStream> = (0..4).map(|_| connect(edge.data)).collect();
    let mut half = connect(edge.data);
    half.write_all(b"PRI * HTTP/2.0\r\n").expect("half preface");
    early.push(half);
    let started = Instant::now();
    for (i, socket) in early.iter_mut().enumerate() {
        assert!(closed_by_peer(socket, WAIT), "socket {i} still open");
    }
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(
        edge.metric("preflightd_client_errors_total{kind=\"header_timeout\"}"),
        5.0
    );
    // At the cap: 19 silent sockets and one half preface hold every slot. A new client is
    // answered at once: the full listener makes the connections that sent nothing give way.
    let mut held: Vec<TcpStream> = (0..19).map(|_| connect(edge.data)).collect();
    let mut half = connect(edge.data);
    half.write_all(b"PRI * HTTP/2.0\r\n").expect("half preface");
    held.push(half);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(edge.metric("preflightd_connections_open"), 20.0);
    assert!(answered(&edge));
    for (i, socket) in held.iter_mut().enumerate() {
        assert!(closed_by_peer(socket, WAIT), "socket {i} still open");
    }
    assert_eq!(
        edge.metric("preflightd_client_errors_total{kind=\"evicted\"}"),
        20.0
    );
}

#[test]
fn an_idle_http2_connection_is_closed_at_the_idle_timeout_even_while_it_answers_pings() {
    let edge = Preflightd::start(RULES, None, &["--idle-timeout", "1s"]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let address = edge.data;
    let lasted = runtime.block_on(async move {
        let stream = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        let (mut sender, connection) =
            hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .timer(hyper_util::rt::TokioTimer::new())
                // PING every 100 ms while idle: not activity for the edge.
                .keep_alive_interval(Duration::from_millis(100))
                .keep_alive_while_idle(true)
                .handshake::<_, http_body_util::Empty<bytes::Bytes>>(hyper_util::rt::TokioIo::new(
                    stream,
                ))
                .await
                .expect("h2 handshake");
        let driver = tokio::spawn(connection);
        let request = http::Request::builder()
            .method("OPTIONS")
            .uri("http://api.example.com/v1/x")
            .header("origin", "https://app.example.com")
            .header("access-control-request-method", "PUT")
            .body(http_body_util::Empty::new())
            .expect("request");
        let response = sender.send_request(request).await.expect("response");
        assert_eq!(response.status(), 204);
        let idle_from = Instant::now();
        tokio::time::timeout(Duration::from_secs(10), driver)
            .await
            .expect("the edge never closed the idle connection")
            .ok();
        idle_from.elapsed()
    });
    assert!(
        lasted >= Duration::from_millis(900),
        "closed early: {lasted:?}"
    );
}

#[test]
fn http2_streams_on_a_slow_upstream_never_open_more_than_the_upstream_cap() {
    let upstream = Upstream::start();
    let edge = Preflightd::start(
        RULES,
        Some(&upstream.url()),
        &[
            "--upstream-max-connections",
            "4",
            "--upstream-connect-timeout",
            "10s",
        ],
    );
    // Two HTTP/2 clients, ten concurrent streams each, every stream held 500 ms upstream.
    let address = edge.data;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let codes: Vec<u16> = runtime.block_on(async move {
        let mut streams = tokio::task::JoinSet::new();
        for _ in 0..2 {
            let stream = tokio::net::TcpStream::connect(address)
                .await
                .expect("connect");
            let (sender, connection) =
                hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .handshake::<_, http_body_util::Empty<bytes::Bytes>>(
                        hyper_util::rt::TokioIo::new(stream),
                    )
                    .await
                    .expect("h2 handshake");
            tokio::spawn(connection);
            for _ in 0..10 {
                let mut sender = sender.clone();
                streams.spawn(async move {
                    let request = http::Request::builder()
                        .uri("http://api.example.com/slow?ms=500")
                        .body(http_body_util::Empty::new())
                        .expect("request");
                    sender
                        .send_request(request)
                        .await
                        .map_or(0, |r| r.status().as_u16())
                });
            }
        }
        let mut codes = Vec::new();
        while let Some(code) = streams.join_next().await {
            codes.push(code.expect("stream task"));
        }
        codes
    });
    assert_eq!(codes.len(), 20);
    assert!(codes.iter().all(|&c| c == 200), "{codes:?}");
    let peers: std::collections::BTreeSet<String> = upstream
        .log()
        .iter()
        .filter(|entry| {
            entry["uri"]
                .as_str()
                .is_some_and(|u| u.starts_with("/slow"))
        })
        .filter_map(|entry| entry["peer"].as_str().map(str::to_owned))
        .collect();
    assert!(
        !peers.is_empty() && peers.len() <= 4,
        "{} upstream connections: {peers:?}",
        peers.len()
    );
    assert!(edge.metric("preflightd_upstream_connections_open") <= 4.0);
}

#[test]
fn stalled_downloads_hold_a_bounded_amount_of_memory() {
    let upstream = Upstream::start();
    let edge = Preflightd::start(RULES, Some(&upstream.url()), &[]);
    // Warm up the paths once, then take the baseline.
    let warm = send(
        edge.data,
        "GET /stream?bytes=1000000 HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(warm.body.len(), 1_000_000);
    std::thread::sleep(Duration::from_millis(300));
    let before = edge.process.rss_kib();
    // 200 clients ask for 100 MB each and read nothing after the first bytes.
    let mut stalled = Vec::new();
    for _ in 0..200 {
        let mut stream = connect(edge.data);
        stream
            .write_all(b"GET /stream?bytes=100000000 HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
            .expect("write");
        let mut first = [0u8; 1024];
        let _ = stream.read(&mut first).expect("first bytes");
        stalled.push(stream);
    }
    // Let every pipe fill up: kernel buffers, then preflightd's bounded buffers.
    std::thread::sleep(Duration::from_secs(2));
    let during = edge.process.rss_kib();
    let per_connection = during.saturating_sub(before) / 200;
    eprintln!("stalled downloads: {before} -> {during} KiB, {per_connection} KiB each");
    // README (Limits): a stalled download holds at most 512 KiB of preflightd's memory
    // (measured about 330 KiB: the client's 64 KiB write buffer at up to twice its size, the
    // upstream connection's 64 KiB read buffer, and the allocator's pages around them).
    assert!(
        per_connection <= 512,
        "{per_connection} KiB per stalled download ({before} -> {during} KiB)"
    );
    assert!(answered(&edge), "preflights answered meanwhile");
    drop(stalled);
}

#[test]
fn websocket_tunnels_count_as_connections_and_idle_out() {
    let upstream = Upstream::start();
    let edge = Preflightd::start(
        RULES,
        Some(&upstream.url()),
        &["--max-connections", "2", "--idle-timeout", "2s"],
    );
    let open_tunnel = || {
        let mut stream = connect(edge.data);
        stream
            .write_all(
                b"GET /ws HTTP/1.1\r\nHost: api.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            )
            .expect("write");
        let mut reader = std::io::BufReader::new(stream.try_clone().expect("clone"));
        let response = read_response(&mut reader);
        assert_eq!(response.status, 101);
        stream
    };
    let mut first = open_tunnel();
    let _second = open_tunnel();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(edge.metric("preflightd_connections_open"), 2.0);
    // Past --max-connections: a third client is not served while both tunnels live.
    let mut third = connect(edge.data);
    third
        .write_all(
            preflight(
                "/v1/x",
                "api.example.com",
                "https://app.example.com",
                "PUT",
                "",
            )
            .as_bytes(),
        )
        .expect("write");
    third
        .set_read_timeout(Some(Duration::from_millis(700)))
        .expect("timeout");
    let mut byte = [0u8; 1];
    assert!(third.read(&mut byte).is_err(), "served past the cap");
    // The tunnels echo; then, with no byte either way for the idle timeout, they close and
    // the waiting client is answered.
    first.write_all(b"ping").expect("tunnel write");
    let mut echo = [0u8; 4];
    first.read_exact(&mut echo).expect("echo");
    assert_eq!(&echo, b"ping");
    third.set_read_timeout(Some(WAIT)).expect("timeout");
    let answer = read_response(&mut std::io::BufReader::new(third));
    assert_eq!(answer.status, 204);
    assert!(closed_by_peer(&mut first, WAIT));
}

#[test]
fn an_h2c_upgrade_is_proxied_as_plain_http_1_1_not_tunnelled() {
    let upstream = Upstream::start();
    let edge = Preflightd::start(RULES, Some(&upstream.url()), &[]);
    let response = send(
        edge.data,
        "GET /h2c HTTP/1.1\r\nHost: api.example.com\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
    );
    assert_eq!(response.status, 200);
    let seen = upstream.log();
    let request = seen.iter().find(|e| e["uri"] == "/h2c").expect("logged");
    let names: Vec<String> = request["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .filter_map(|h| h[0].as_str().map(str::to_ascii_lowercase))
        .collect();
    assert!(!names.contains(&"upgrade".to_owned()), "{names:?}");
    assert!(!names.contains(&"http2-settings".to_owned()), "{names:?}");
}

#[test]
fn a_client_that_half_closes_after_its_request_gets_the_answer() {
    let upstream = Upstream::start();
    let edge = Preflightd::start(RULES, Some(&upstream.url()), &[]);
    let mut stream = connect(edge.data);
    stream
        .write_all(
            b"POST /upload HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 5\r\n\r\nhello",
        )
        .expect("write");
    stream.shutdown(Shutdown::Write).expect("half-close");
    let response = read_response(&mut std::io::BufReader::new(stream));
    assert_eq!(response.status, 200);
    assert!(
        response.text().contains("\"length\":5"),
        "{}",
        response.text()
    );
}

#[test]
fn one_effective_host_per_request() {
    let upstream = Upstream::start();
    let edge = Preflightd::start(RULES, Some(&upstream.url()), &[]);
    let host_seen = |uri: &str| -> Vec<String> {
        upstream
            .log()
            .iter()
            .filter(|e| e["uri"] == uri)
            .flat_map(|e| e["headers"].as_array().cloned().unwrap_or_default())
            .filter(|h| {
                h[0].as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case("host"))
            })
            .filter_map(|h| h[1].as_str().map(str::to_owned))
            .collect()
    };
    // RFC 9112 3.2.2: the absolute-form target's authority wins over Host, and is what the
    // upstream gets.
    let absolute = send(
        edge.data,
        "GET http://evil.test/abs HTTP/1.1\r\nHost: x.test\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(absolute.status, 200);
    assert_eq!(host_seen("/abs"), ["evil.test"]);
    // ... and the decision uses it too: a preflight scoped to api.example.com in absolute
    // form with another Host is decided for api.example.com.
    let decided = send(
        edge.data,
        "OPTIONS http://api.example.com/v1/x HTTP/1.1\r\nHost: elsewhere.test\r\nOrigin: https://app.example.com\r\nAccess-Control-Request-Method: PUT\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(decided.status, 204);
    // RFC 9112 3.2: two Host lines, an invalid Host, no Host: 400, nothing forwarded.
    for (name, request) in [
        (
            "two Host lines",
            "GET /two HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\nConnection: close\r\n\r\n",
        ),
        (
            "invalid Host",
            "GET /bad HTTP/1.1\r\nHost: a b@c/d\r\nConnection: close\r\n\r\n",
        ),
        ("no Host", "GET /none HTTP/1.1\r\nConnection: close\r\n\r\n"),
    ] {
        let response = send(edge.data, request);
        assert_eq!(response.status, 400, "{name}");
        assert!(response.text().starts_with("bad request: "), "{name}");
    }
    assert!(host_seen("/two").is_empty() && host_seen("/bad").is_empty());
    // Connection never removes Host.
    let nominated = send(
        edge.data,
        "GET /nominated HTTP/1.1\r\nHost: api.example.com\r\nConnection: host, close\r\n\r\n",
    );
    assert_eq!(nominated.status, 200);
    assert_eq!(host_seen("/nominated"), ["api.example.com"]);
    assert_eq!(
        edge.metric("preflightd_client_errors_total{kind=\"bad_host\"}"),
        3.0
    );
}

#[test]
fn an_http2_host_that_disagrees_with_the_authority_is_a_400() {
    let edge = Preflightd::start(RULES, None, &[]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let address = edge.data;
    let (agrees, disagrees) = runtime.block_on(async move {
        let stream = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        let (mut sender, connection) =
            hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .handshake::<_, http_body_util::Empty<bytes::Bytes>>(hyper_util::rt::TokioIo::new(
                    stream,
                ))
                .await
                .expect("h2 handshake");
        tokio::spawn(connection);
        let mut statuses = Vec::new();
        for host in ["api.example.com", "other.example.com"] {
            let request = http::Request::builder()
                .method("OPTIONS")
                .uri("http://api.example.com/v1/x")
                .header("host", host)
                .header("origin", "https://app.example.com")
                .header("access-control-request-method", "PUT")
                .body(http_body_util::Empty::new())
                .expect("request");
            let response = sender.send_request(request).await.expect("response");
            statuses.push(response.status().as_u16());
        }
        (statuses[0], statuses[1])
    });
    assert_eq!((agrees, disagrees), (204, 400));
}

#[test]
fn connect_is_refused_at_the_edge_and_never_forwarded() {
    let upstream = Upstream::start();
    let edge = Preflightd::start(RULES, Some(&upstream.url()), &[]);
    let response = send(
        edge.data,
        "CONNECT evil.test:80 HTTP/1.1\r\nHost: evil.test:80\r\n\r\n",
    );
    assert_eq!(response.status, 405);
    assert!(upstream.log().is_empty());
    assert_eq!(
        edge.metric("preflightd_proxy_requests_total{code_class=\"2xx\"}"),
        0.0
    );
}

#[test]
fn idle_admin_connections_stop_neither_metrics_nor_the_data_listener() {
    raise_own_fd_limit();
    let edge = Preflightd::start(RULES, None, &["--header-read-timeout", "1s"]);
    // 3 000 admin connections that send nothing, opened at once: 64 are served at a time (the
    // cap), the rest wait in the backlog or are not accepted; each is dropped at the header
    // timeout.
    let admin = edge.admin;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let idle: Vec<tokio::net::TcpStream> = runtime.block_on(async move {
        let mut attempts = tokio::task::JoinSet::new();
        for _ in 0..3000 {
            attempts.spawn(async move {
                tokio::time::timeout(
                    Duration::from_secs(2),
                    tokio::net::TcpStream::connect(admin),
                )
                .await
                .ok()
                .and_then(Result::ok)
            });
        }
        let mut open = Vec::new();
        while let Some(attempt) = attempts.join_next().await {
            if let Ok(Some(stream)) = attempt {
                open.push(stream);
            }
        }
        open
    });
    assert!(idle.len() >= 64, "only {} connections", idle.len());
    // The edge holds at most its cap of them.
    let fds = std::fs::read_dir(format!("/proc/{}/fd", edge.process.pid()))
        .expect("fd dir")
        .count();
    assert!(fds < 64 + 64, "{fds} file descriptors open");
    // The data listener does not notice.
    assert!(answered(&edge));
    // /metrics answers once the idle ones before it have timed out.
    let started = Instant::now();
    let metrics = edge.metrics();
    assert!(metrics.contains("preflightd_build_info"));
    assert!(started.elapsed() < WAIT);
    drop(idle);
    drop(runtime);
}

#[test]
fn too_many_header_lines_are_a_431_and_upstream_responses_may_carry_hundreds() {
    let upstream = Upstream::start();
    let edge = Preflightd::start(RULES, Some(&upstream.url()), &["--max-headers", "50"]);
    let lines: String = (0..60).map(|i| format!("X-H{i}: {i}\r\n")).collect();
    let response = send(
        edge.data,
        &format!("GET / HTTP/1.1\r\nHost: api.example.com\r\n{lines}Connection: close\r\n\r\n"),
    );
    assert_eq!(response.status, 431);
    let cookies = send(
        edge.data,
        "GET /cookies?n=100 HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(cookies.status, 200);
    assert_eq!(cookies.all("set-cookie").len(), 100);
    // Past the upstream head bound (512 lines; README, Limits): the edge's 502, counted as a
    // protocol error, and preflights answered meanwhile.
    let flood = send(
        edge.data,
        "GET /cookies?n=600 HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(flood.status, 502);
    assert_eq!(
        edge.metric("preflightd_upstream_errors_total{kind=\"protocol\"}"),
        1.0
    );
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
}

#[test]
fn a_burst_of_upstream_failures_is_logged_rate_limited_and_preflights_are_answered() {
    // A port with nothing listening: every proxied request fails to connect.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let edge = Preflightd::start(RULES, Some(&format!("http://{closed}")), &[]);
    let data = edge.data;
    let burst = std::thread::spawn(move || {
        let mut stream = connect(data);
        let mut reader = std::io::BufReader::new(stream.try_clone().expect("clone"));
        for _ in 0..500 {
            stream
                .write_all(b"GET /x HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
                .expect("write");
            assert_eq!(read_response(&mut reader).status, 502);
        }
    });
    for _ in 0..50 {
        assert!(answered(&edge));
    }
    burst.join().expect("burst");
    assert_eq!(
        edge.metric("preflightd_upstream_errors_total{kind=\"connect\"}"),
        500.0
    );
    // One warning a second, the next one carrying the count of those left out.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        send(
            edge.data,
            "GET /x HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n"
        )
        .status,
        502
    );
    let mut warnings = Vec::new();
    while let Ok(line) = edge.process.lines.recv_timeout(Duration::from_millis(500)) {
        if line.contains("upstream request failed") {
            warnings.push(line);
        }
    }
    assert!(
        (2..=5).contains(&warnings.len()),
        "{} warning lines for 501 failures",
        warnings.len()
    );
    let last: serde_json::Value =
        serde_json::from_str(warnings.last().expect("a warning")).expect("json");
    assert!(
        last["suppressed"].as_u64().is_some_and(|n| n >= 400),
        "{last}"
    );
}

/// Raises this test process's soft file-descriptor limit to the hard one (thousands of
/// sockets).
fn raise_own_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on a stack value.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

#[test]
fn a_stalled_request_body_is_a_408_after_the_client_body_timeout() {
    let upstream = Upstream::start();
    let edge = Preflightd::start(
        RULES,
        Some(&upstream.url()),
        &["--client-body-timeout", "1s"],
    );
    let mut stream = connect(edge.data);
    stream
        .write_all(
            b"POST /upload HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 1000\r\n\r\n0123456789",
        )
        .expect("write");
    let started = Instant::now();
    let response = read_response(&mut std::io::BufReader::new(stream));
    assert_eq!(
        (response.status, response.text().as_str()),
        (408, "request body timed out\n")
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert!(answered(&edge));
    assert_eq!(
        edge.metric("preflightd_client_errors_total{kind=\"body_timeout\"}"),
        1.0
    );
    assert_eq!(
        edge.metric("preflightd_upstream_errors_total{kind=\"timeout\"}"),
        0.0
    );
}

#[test]
fn a_client_that_stops_reading_is_closed_after_the_send_timeout() {
    let upstream = Upstream::start();
    let edge = Preflightd::start(RULES, Some(&upstream.url()), &["--send-timeout", "1s"]);
    let mut stream = connect(edge.data);
    stream
        .write_all(b"GET /stream?bytes=100000000 HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
        .expect("write");
    // Read nothing while the socket buffers fill and the edge's write blocks, then let the
    // send timeout pass.
    std::thread::sleep(Duration::from_secs(3));
    assert!(answered(&edge));
    // Draining what was buffered ends in the edge's close, far short of 100 MB.
    let mut total = 0usize;
    let mut buffer = vec![0u8; 1 << 16];
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
    assert!(total < 50_000_000, "{total} bytes: never cut");
    assert_eq!(
        edge.metric("preflightd_client_errors_total{kind=\"send_timeout\"}"),
        1.0
    );
}

#[test]
fn http2_streams_beyond_the_concurrency_limit_are_refused() {
    // With --http2-max-concurrent-streams 2, a client that opens ten streams at once before
    // it has the server's SETTINGS gets two served and the rest refused (REFUSED_STREAM,
    // safe to retry); the upstream sees at most two connections (a broken limit would run
    // ten streams at once and open ten), and the client connection keeps working.
    let upstream = Upstream::start();
    let edge = Preflightd::start(
        RULES,
        Some(&upstream.url()),
        &["--http2-max-concurrent-streams", "2"],
    );
    let address = edge.data;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let codes: Vec<u16> = runtime.block_on(async move {
        let stream = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        let (sender, connection) =
            hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .handshake::<_, http_body_util::Empty<bytes::Bytes>>(hyper_util::rt::TokioIo::new(
                    stream,
                ))
                .await
                .expect("h2 handshake");
        tokio::spawn(connection);
        let mut streams = tokio::task::JoinSet::new();
        for _ in 0..10 {
            let mut sender = sender.clone();
            streams.spawn(async move {
                let request = http::Request::builder()
                    .uri("http://api.example.com/slow?ms=200")
                    .body(http_body_util::Empty::new())
                    .expect("request");
                sender
                    .send_request(request)
                    .await
                    .map_or(0, |r| r.status().as_u16())
            });
        }
        let mut codes = Vec::new();
        while let Some(code) = streams.join_next().await {
            codes.push(code.expect("stream task"));
        }
        // Afterwards, a stream is served again.
        let mut sender = sender.clone();
        let again = http::Request::builder()
            .uri("http://api.example.com/slow?ms=1")
            .body(http_body_util::Empty::new())
            .expect("request");
        codes.push(
            sender
                .send_request(again)
                .await
                .map_or(0, |r| r.status().as_u16()),
        );
        codes
    });
    // Streams the client sent before it learnt the limit are refused; had it learnt it
    // first, it would have queued them. Either way at most two ran at once, which the
    // upstream's connection count shows below.
    let served = codes[..10].iter().filter(|&&c| c == 200).count();
    let refused = codes[..10].iter().filter(|&&c| c == 0).count();
    assert_eq!(served + refused, 10, "{codes:?}");
    assert!(served >= 2, "{codes:?}");
    assert_eq!(codes[10], 200, "{codes:?}");
    let peers: std::collections::BTreeSet<String> = upstream
        .log()
        .iter()
        .filter_map(|entry| entry["peer"].as_str().map(str::to_owned))
        .collect();
    assert!(
        (1..=2).contains(&peers.len()),
        "{} upstream connections for 2 concurrent streams: {peers:?}",
        peers.len()
    );
}
