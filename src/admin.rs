//! The admin listener (never the data port):
//!
//! - `GET /metrics`: Prometheus text exposition of every `preflightd_*` family and the
//!   process collector;
//! - `GET /healthz`: 200 while the process runs;
//! - `GET /readyz`: 200 once the rules are loaded and the data listener is bound, 503 before
//!   and during shutdown;
//! - `GET /rules`: the active policy as JSON (generation, sha256, loaded_at, files, settings,
//!   rules).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::reload::Active;
use crate::rules::{ActualResponses, Unmatched};
use crate::server::state::Shared;

pub async fn serve(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let response = respond(&shared, &request);
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn text(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn respond(shared: &Shared, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, PLAIN, "use GET\n");
    }
    match request.uri().path() {
        "/metrics" => match shared.metrics.render() {
            Ok(body) => text(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                body,
            ),
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, PLAIN, format!("{e}\n")),
        },
        "/healthz" => text(StatusCode::OK, PLAIN, "ok\n"),
        "/readyz" => {
            if shared.ready.load(Ordering::Acquire) {
                text(StatusCode::OK, PLAIN, "ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, PLAIN, "not ready\n")
            }
        }
        "/rules" => {
            let body = rules_json(&shared.active.load());
            text(StatusCode::OK, "application/json", format!("{body:#}\n"))
        }
        _ => text(
            StatusCode::NOT_FOUND,
            PLAIN,
            "not found: try /metrics, /healthz, /readyz or /rules\n",
        ),
    }
}

fn rules_json(active: &Active) -> Value {
    let settings = active.policy.settings();
    let rules: Vec<Value> = active
        .policy
        .source
        .rules
        .iter()
        .map(|rule| {
            json!({
                "name": rule.name,
                "location": rule.location.to_string(),
                "hosts": rule.hosts.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "paths": rule.paths,
                "origins": rule.origins.iter().map(|o| o.pattern.to_string()).collect::<Vec<_>>(),
                "methods": rule.methods.written(),
                "headers": rule.headers.written(),
                "expose": rule.expose.written(),
                "credentials": rule.credentials,
                "max_age": rule.max_age,
                "private_network": rule.private_network,
            })
        })
        .collect();
    json!({
        "generation": active.generation,
        "sha256": active.sha256,
        "loaded_at": humantime::format_rfc3339_seconds(active.loaded_at).to_string(),
        "files": active.files,
        "settings": {
            "unmatched": match settings.unmatched { Unmatched::Reject => "reject", Unmatched::Forward => "forward" },
            "debug": settings.debug,
            "cdn_max_age": settings.cdn_max_age,
            "actual_responses": match settings.actual_responses {
                ActualResponses::Untouched => "untouched",
                ActualResponses::Fill => "fill",
            },
        },
        "rules": rules,
    })
}
