//! A bare hyper 1 server with a constant response: what hyper itself costs, next to the raw
//! floor and to preflightd. Used by benches/load/run.py, not by preflightd.
//!   floor_hyper ADDR RESPONSE_FILE [WORKERS] [--auto]
//! `--auto` serves through hyper-util's auto builder (HTTP/1.1 + h2c) with upgrades, as
//! preflightd does, to show what that connection stack costs over plain HTTP/1.1.
//! RESPONSE_FILE holds a raw HTTP/1.1 response (status line and headers; no body is sent).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::Empty;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

fn parse(raw: &str) -> (StatusCode, Vec<(HeaderName, HeaderValue)>) {
    let mut lines = raw.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(StatusCode::NO_CONTENT);
    let headers = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .filter_map(|(n, v)| {
            Some((
                HeaderName::from_bytes(n.trim().as_bytes()).ok()?,
                HeaderValue::from_str(v.trim()).ok()?,
            ))
        })
        .filter(|(n, _)| n != "content-length" && n != "date" && n != "connection")
        .collect();
    (status, headers)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(address), Some(file)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: floor_hyper ADDR RESPONSE_FILE [WORKERS]");
        std::process::exit(2);
    };
    let workers = args.get(3).and_then(|w| w.parse().ok()).unwrap_or(1);
    let auto = args.iter().any(|a| a == "--auto");
    let raw = std::fs::read_to_string(file).unwrap_or_else(|e| {
        eprintln!("{file}: {e}");
        std::process::exit(1);
    });
    let canned = Arc::new(parse(&raw));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let listener = TcpListener::bind(address).await.expect("bind");
        println!("listening {}", listener.local_addr().expect("addr"));
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let canned = Arc::clone(&canned);
            tokio::spawn(async move {
                let service = service_fn(move |_request| {
                    let (status, headers) = &*canned;
                    let mut response = Response::new(Empty::<Bytes>::new());
                    *response.status_mut() = *status;
                    for (name, value) in headers {
                        response.headers_mut().append(name.clone(), value.clone());
                    }
                    async move { Ok::<_, Infallible>(response) }
                });
                if auto {
                    let builder = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    );
                    let _ = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                }
            });
        }
    });
}
