//! A real upstream for the integration tests and load benchmarks (not part of preflightd).
//!
//! `test_upstream [ADDR] [--tls CERT.pem KEY.pem] [--cors [--cors-origin ORIGIN]...]` listens
//! (default 127.0.0.1:0; with `--tls` it speaks HTTPS), prints `listening ADDR`, and serves:
//! - `GET /__log`: JSON of every request seen so far (method, uri, version, raw header lines,
//!   body length and sha256, trailers, the peer address); `/__log` itself is not recorded;
//! - `/stream?bytes=N`: streams N bytes (64 KiB chunks);
//! - `/upload`: reads the whole request body as it streams, answers its length and sha256;
//! - `/slow?ms=N`: waits N ms, then answers;
//! - `/cookies?n=N`: answers with N `Set-Cookie` lines;
//! - `/trailers`: a chunked body followed by trailers;
//! - `/ws`: a WebSocket-style upgrade (101), then echoes every byte it receives;
//! - `/status/N`: answers status N;
//! - `/small`: a fixed 13-byte body, for load tests (not recorded);
//! - `/page`: an HTML page for browser tests (not recorded);
//! - anything else: 200 with the request described as JSON, and headers a CORS-aware
//!   upstream would send (`Vary`, `Access-Control-Allow-Origin`).
//!
//! With `--cors` it is an application that answers CORS itself, the way a CORS middleware
//! does (Express's `cors`: the lists are the same for every request, and only the origin
//! decides whether the CORS headers are sent), so that shadow-mode tests can produce every
//! comparison on purpose. Its policy, different from the tests' rules on purpose:
//! - origins echoed with `Access-Control-Allow-Credentials: true`: `https://app.example.com`,
//!   any `https://<label>.tenant.example`, and each `--cors-origin`; echoed without
//!   credentials: `https://legacy.example.com`; answered `*`: `https://public.example`;
//! - a preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) from one of
//!   those gets 204 with the origin header, `Access-Control-Allow-Methods: GET, POST, PUT,
//!   PATCH`, `Access-Control-Allow-Headers: content-type, x-legacy`,
//!   `Access-Control-Max-Age: 300`, `Vary: Origin`, `X-Upstream: preflight`; from any other
//!   origin, 204 with only `Vary` and `X-Upstream` (no CORS header: the browser refuses it);
//!   a preflight to `/slow?ms=N` waits N ms first; one to `/cors-flood` gets a hostile
//!   answer, 40 KiB of CORS fields (40 `Access-Control-Allow-Origin` lines, 20 KiB of
//!   `Access-Control-Allow-Headers`), whatever the origin;
//! - every preflight is counted (`GET /__preflights` answers the count) and recorded in
//!   `/__log`, but those to paths under `/bulk/` (load tests), which are only counted;
//! - an actual request from one of those origins gets the origin header (and credentials)
//!   on its response, as the CORS protocol needs (CORS-CHECKLIST 5.1).

#![allow(
    clippy::disallowed_types,
    reason = "a test upstream, not preflightd: its request log behind a Mutex is the plain tool"
)]

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

type Body = BoxBody<Bytes, Infallible>;

type Log = Arc<Mutex<Vec<serde_json::Value>>>;

/// `--cors`: the application's own CORS policy (see the module documentation).
#[derive(Clone, Default)]
struct Cors {
    /// `--cors-origin`: more origins echoed with credentials.
    extra_origins: Vec<String>,
    /// Preflights answered.
    preflights: Arc<AtomicU64>,
}

/// How the application allows an origin.
enum Grant {
    WithCredentials,
    WithoutCredentials,
    Star,
}

impl Cors {
    fn grant(&self, origin: &str) -> Option<Grant> {
        let tenant = origin
            .strip_prefix("https://")
            .and_then(|host| host.strip_suffix(".tenant.example"))
            .is_some_and(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if origin == "https://app.example.com"
            || tenant
            || self.extra_origins.iter().any(|o| o == origin)
        {
            Some(Grant::WithCredentials)
        } else if origin == "https://legacy.example.com" {
            Some(Grant::WithoutCredentials)
        } else if origin == "https://public.example" {
            Some(Grant::Star)
        } else {
            None
        }
    }

    /// The origin header (and credentials) for a request from `origin`, if it is allowed.
    fn allow(&self, origin: Option<&HeaderValue>, headers: &mut http::HeaderMap) {
        let Some(origin) = origin else { return };
        let grant = origin.to_str().ok().and_then(|o| self.grant(o));
        match grant {
            Some(Grant::WithCredentials) => {
                headers.insert("access-control-allow-origin", origin.clone());
                headers.insert(
                    "access-control-allow-credentials",
                    HeaderValue::from_static("true"),
                );
            }
            Some(Grant::WithoutCredentials) => {
                headers.insert("access-control-allow-origin", origin.clone());
            }
            Some(Grant::Star) => {
                headers.insert("access-control-allow-origin", HeaderValue::from_static("*"));
            }
            None => {}
        }
    }

    fn preflight(&self, origin: Option<&HeaderValue>) -> Response<Body> {
        let mut response = Response::new(full(Bytes::new()));
        *response.status_mut() = StatusCode::NO_CONTENT;
        let h = response.headers_mut();
        let before = h.len();
        self.allow(origin, h);
        if h.len() > before {
            h.insert(
                "access-control-allow-methods",
                HeaderValue::from_static("GET, POST, PUT, PATCH"),
            );
            h.insert(
                "access-control-allow-headers",
                HeaderValue::from_static("content-type, x-legacy"),
            );
            h.insert("access-control-max-age", HeaderValue::from_static("300"));
        }
        h.insert("vary", HeaderValue::from_static("Origin"));
        h.insert("x-upstream", HeaderValue::from_static("preflight"));
        response
    }
}

impl Cors {
    /// `/cors-flood`: a hostile application's preflight answer, 40 KiB of CORS fields: 40
    /// `Access-Control-Allow-Origin` lines of 420 bytes and a 20 KiB
    /// `Access-Control-Allow-Headers` (under preflightd's 64 KiB upstream head bound).
    fn flood() -> Response<Body> {
        let mut response = Response::new(full(Bytes::new()));
        *response.status_mut() = StatusCode::NO_CONTENT;
        let h = response.headers_mut();
        for i in 0..40 {
            let origin = format!("https://{}{i:02}.flood.example", "a".repeat(400));
            if let Ok(value) = HeaderValue::from_str(&origin) {
                h.append("access-control-allow-origin", value);
            }
        }
        let names: Vec<String> = (0..2500).map(|i| format!("x-h{i}")).collect();
        if let Ok(value) = HeaderValue::from_str(&names.join(",")) {
            h.insert("access-control-allow-headers", value);
        }
        response
    }
}

fn full(text: impl Into<Bytes>) -> Body {
    Full::new(text.into()).boxed()
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

async fn handle(
    log: Log,
    cors: Option<Cors>,
    peer: std::net::SocketAddr,
    mut request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path().to_owned();
    // The load-test path: answered at once, never recorded (the log would grow under wrk).
    if path == "/small" {
        return Ok(Response::new(full("hello, world\n")));
    }
    // A page for browser tests to run fetch() from (its origin is this server's).
    if path == "/page" {
        let mut response = Response::new(full(
            "<!doctype html><title>preflightd browser test</title><p>ready</p>\n",
        ));
        response.headers_mut().insert(
            "content-type",
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        return Ok(response);
    }
    if path == "/__log" {
        let entries = log.lock().map(|l| l.clone()).unwrap_or_default();
        return Ok(Response::new(full(
            serde_json::Value::Array(entries).to_string(),
        )));
    }
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let method = request.method().to_string();
    let uri = request.uri().to_string();
    let version = format!("{:?}", request.version());

    if let Some(cors) = &cors {
        if path == "/__preflights" {
            let count = cors.preflights.load(Ordering::Relaxed);
            return Ok(Response::new(full(count.to_string())));
        }
        let preflight = request.method() == http::Method::OPTIONS
            && request.headers().contains_key("origin")
            && request
                .headers()
                .contains_key("access-control-request-method");
        if preflight {
            cors.preflights.fetch_add(1, Ordering::Relaxed);
            if !path.starts_with("/bulk/") {
                record(&log, peer, &method, &uri, &version, &headers, 0, "", &[]);
            }
            if path == "/slow" {
                tokio::time::sleep(slow(request.uri())).await;
            }
            if path == "/cors-flood" {
                return Ok(Cors::flood());
            }
            return Ok(cors.preflight(request.headers().get("origin")));
        }
    }
    let origin = request.headers().get("origin").cloned();

    if path == "/ws" {
        let key = request
            .headers()
            .get("sec-websocket-key")
            .map(|v| v.as_bytes().to_vec())
            .unwrap_or_default();
        record(&log, peer, &method, &uri, &version, &headers, 0, "", &[]);
        let upgrade = hyper::upgrade::on(&mut request);
        tokio::spawn(async move {
            if let Ok(upgraded) = upgrade.await {
                let (mut reader, mut writer) = tokio::io::split(TokioIo::new(upgraded));
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
            }
        });
        let mut accept = sha1_smol_like(&key);
        accept.truncate(28);
        let mut response = Response::new(full(Bytes::new()));
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = response.headers_mut();
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("connection", HeaderValue::from_static("upgrade"));
        if let Ok(v) = HeaderValue::from_str(&accept) {
            h.insert("sec-websocket-accept", v);
        }
        return Ok(response);
    }

    // Read the body as it streams: constant memory whatever its size.
    let mut body = request.into_body();
    let mut length = 0u64;
    let mut hasher = Sha256::new();
    let mut trailers = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Some(data) = frame.data_ref() {
            length += data.len() as u64;
            hasher.update(data);
        } else if let Some(t) = frame.trailers_ref() {
            trailers = t
                .iter()
                .map(|(n, v)| {
                    (
                        n.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
        }
    }
    let sha = hex(&hasher.finalize());
    record(
        &log, peer, &method, &uri, &version, &headers, length, &sha, &trailers,
    );

    let rebuilt = Request::builder()
        .uri(uri.as_str())
        .body(())
        .unwrap_or_default();
    let response = match path.as_str() {
        "/upload" => Response::new(full(format!(
            "{{\"length\":{length},\"sha256\":\"{sha}\"}}"
        ))),
        "/stream" => {
            let total = rebuilt
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("bytes="))
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            Response::new(BodyExt::boxed(Chunks { left: total, chunk }))
        }
        "/slow" => {
            tokio::time::sleep(slow(rebuilt.uri())).await;
            Response::new(full("slow done\n"))
        }
        "/cookies" => {
            let n = rebuilt
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("n="))
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(100);
            let mut response = Response::new(full(format!("{n} cookies\n")));
            for i in 0..n {
                if let Ok(value) = HeaderValue::from_str(&format!("c{i}={i}; Path=/")) {
                    response.headers_mut().append("set-cookie", value);
                }
            }
            response
        }
        "/trailers" => {
            let mut trailer_map = http::HeaderMap::new();
            trailer_map.insert("x-checksum", HeaderValue::from_static("abc123"));
            let body = WithTrailers {
                data: Some(Bytes::from_static(b"body with trailers\n")),
                trailers: Some(trailer_map),
            };
            let mut response = Response::new(BodyExt::boxed(body));
            response
                .headers_mut()
                .insert("trailer", HeaderValue::from_static("x-checksum"));
            response
        }
        p if p.starts_with("/status/") => {
            let code = p[8..].parse().unwrap_or(500);
            let mut response = Response::new(full(format!("status {code}\n")));
            *response.status_mut() =
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            response
        }
        _ => {
            let description = serde_json::json!({
                "method": method, "uri": uri, "headers": headers, "length": length, "sha256": sha,
            });
            let mut response = Response::new(full(description.to_string()));
            let h = response.headers_mut();
            h.insert("content-type", HeaderValue::from_static("application/json"));
            h.insert("vary", HeaderValue::from_static("Accept-Encoding"));
            h.insert("x-upstream", HeaderValue::from_static("yes"));
            h.append("set-cookie", HeaderValue::from_static("a=1"));
            h.append("set-cookie", HeaderValue::from_static("b=2"));
            if let Some(cors) = &cors {
                cors.allow(origin.as_ref(), h);
            }
            if rebuilt.uri().query() == Some("cors=1") {
                h.insert(
                    "access-control-allow-origin",
                    HeaderValue::from_static("https://upstream-chosen.example"),
                );
            }
            response
        }
    };
    Ok(response)
}

/// `/slow?ms=N`: how long to wait before answering (1 s by default).
fn slow(uri: &http::Uri) -> Duration {
    let ms = uri
        .query()
        .and_then(|q| q.strip_prefix("ms="))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(1000);
    Duration::from_millis(ms)
}

#[allow(clippy::too_many_arguments)]
fn record(
    log: &Log,
    peer: std::net::SocketAddr,
    method: &str,
    uri: &str,
    version: &str,
    headers: &[(String, String)],
    length: u64,
    sha: &str,
    trailers: &[(String, String)],
) {
    if let Ok(mut log) = log.lock() {
        log.push(serde_json::json!({
            "method": method, "uri": uri, "version": version, "headers": headers,
            "length": length, "sha256": sha, "trailers": trailers, "peer": peer.to_string(),
        }));
    }
}

/// A body of `left` bytes in 64 KiB frames, produced as the client reads (constant memory).
struct Chunks {
    left: u64,
    chunk: Bytes,
}

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        let n = self.left.min(self.chunk.len() as u64) as usize;
        self.left -= n as u64;
        std::task::Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n)))))
    }
}

/// Some data, then trailers.
struct WithTrailers {
    data: Option<Bytes>,
    trailers: Option<http::HeaderMap>,
}

impl hyper::body::Body for WithTrailers {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let frame = match self.data.take() {
            Some(data) => Some(Ok(Frame::data(data))),
            None => self.trailers.take().map(|t| Ok(Frame::trailers(t))),
        };
        std::task::Poll::Ready(frame)
    }
}

/// Not a real Sec-WebSocket-Accept (that needs SHA-1); the tests only need a tunnel.
fn sha1_smol_like(key: &[u8]) -> String {
    hex(&Sha256::digest(key))
}

fn tls_acceptor(cert: &str, key: &str) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{cert}: {e}"))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{key}: {e}"))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| e.to_string())?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let address = args
        .first()
        .filter(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let tls = match args.iter().position(|a| a == "--tls") {
        Some(i) => match (args.get(i + 1), args.get(i + 2)) {
            (Some(cert), Some(key)) => match tls_acceptor(cert, key) {
                Ok(acceptor) => Some(acceptor),
                Err(e) => {
                    eprintln!("test_upstream: {e}");
                    std::process::exit(1);
                }
            },
            _ => {
                eprintln!("test_upstream: --tls CERT KEY");
                std::process::exit(2);
            }
        },
        None => None,
    };
    let listener = match TcpListener::bind(&address).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("test_upstream: cannot bind {address}: {e}");
            std::process::exit(1);
        }
    };
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    println!("listening {local}");
    let cors = args.iter().any(|a| a == "--cors").then(|| Cors {
        extra_origins: args
            .windows(2)
            .filter(|w| w[0] == "--cors-origin")
            .map(|w| w[1].clone())
            .collect(),
        ..Cors::default()
    });
    let log: Log = Arc::default();
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let log = Arc::clone(&log);
        let tls = tls.clone();
        let cors = cors.clone();
        tokio::spawn(async move {
            let service =
                service_fn(move |request| handle(Arc::clone(&log), cors.clone(), peer, request));
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            match tls {
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        let _ = builder
                            .serve_connection_with_upgrades(TokioIo::new(stream), service)
                            .await;
                    }
                }
                None => {
                    let _ = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await;
                }
            }
        });
    }
}
