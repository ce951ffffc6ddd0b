//! A real upstream for the integration tests and load benchmarks (not part of preflightd).
//!
//! `test_upstream [ADDR] [--tls CERT.pem KEY.pem]` listens (default 127.0.0.1:0; with `--tls`
//! it speaks HTTPS), prints `listening ADDR`, and serves:
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

#![allow(
    clippy::disallowed_types,
    reason = "a test upstream, not preflightd: its request log behind a Mutex is the plain tool"
)]

use std::convert::Infallible;
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

fn full(text: impl Into<Bytes>) -> Body {
    Full::new(text.into()).boxed()
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

async fn handle(
    log: Log,
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
            let ms = rebuilt
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("ms="))
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(1000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
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
    let log: Log = Arc::default();
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let log = Arc::clone(&log);
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| handle(Arc::clone(&log), peer, request));
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
