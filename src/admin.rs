//! The admin listener (never the data port):
//!
//! - `GET /metrics`: Prometheus text exposition of every `preflightd_*` family and the
//!   process collector;
//! - `GET /healthz`: 200 while the process runs;
//! - `GET /readyz`: 200 once the rules are loaded and the data listener is bound, 503 before
//!   and during shutdown;
//! - `GET /rules`: the active policy as JSON (generation, sha256, loaded_at, files, settings,
//!   rules);
//! - `GET /shadow`: in shadow mode, the distinct mismatches between the upstream's answers and
//!   the rules' since the last rules change, most frequent first (`shadow`).

use std::sync::Arc;

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

use tokio::sync::Semaphore;

use crate::conn::{self, Connection, Limits, Phase, Pressure, Tracked, WatchedIo};
use crate::fetch::TEXT_PLAIN;
use crate::live::{Live, Snapshot};
use crate::metrics::ClientError;
use crate::rules::{ActualResponses, PreflightStatus, Unmatched};

/// How the admin listener's connections are bounded (DESIGN 10): the data listener's head and
/// idle timeouts, and a small cap of its own, so that idle admin connections can neither hold
/// file descriptors the data listener needs nor stop `/metrics` answering for long.
#[derive(Debug, Clone, Copy)]
pub struct AdminConfig {
    pub limits: Limits,
    pub max_connections: usize,
}

/// Serves the admin endpoints from the live policy (its snapshot, metrics and readiness)
/// until `stop` changes. Every connection runs under the same watchdog as the data
/// listener's.
pub async fn serve(
    listener: TcpListener,
    live: Arc<Live>,
    config: AdminConfig,
    mut stop: watch::Receiver<bool>,
) {
    let (_phase_tx, phase) = watch::channel(Phase::Serving);
    let limit = Arc::new(Semaphore::new(
        config.max_connections.clamp(1, Semaphore::MAX_PERMITS),
    ));
    // Admin connections are not data connections: counted in a gauge nobody exports.
    let gauge = prometheus::IntGauge::new("admin_connections", "unexported").ok();
    let pressure = Pressure::new();
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
        // Full: connections that have sent nothing make room, so a scrape is never stuck
        // behind idle sockets.
        let stopped = async {
            let _ = stop.changed().await;
        };
        let Some(permit) = conn::admit(&limit, &pressure, stopped).await else {
            return;
        };
        let Some(gauge) = gauge.clone() else {
            return;
        };
        let connection = Connection::new(
            permit,
            gauge,
            config.limits,
            phase.clone(),
            pressure.subscribe(),
        );
        let service_live = Arc::clone(&live);
        let service_connection = Arc::clone(&connection);
        let service = service_fn(move |request| {
            let in_flight = service_connection.request_started();
            let response =
                respond(&service_live, &request).map(|body| Tracked::new(body, in_flight));
            async move { Ok::<_, std::convert::Infallible>(response) }
        });
        let io = TokioIo::new(WatchedIo::new(stream, Arc::clone(&connection)));
        let metrics = Arc::clone(&live);
        let served_connection = Arc::clone(&connection);
        let served = tokio::spawn(async move {
            let served = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(None)
                .half_close(true)
                .serve_connection(io, service);
            let _ = conn::finishing(
                served,
                |served| served.graceful_shutdown(),
                &served_connection,
            )
            .await;
        });
        tokio::spawn(async move {
            let closed = conn::watch(served, &connection).await;
            if closed == Some(conn::Close::HeaderTimeout) {
                metrics
                    .metrics()
                    .count_client_error(ClientError::AdminHeaderTimeout);
            }
        });
    }
}

fn text(
    status: StatusCode,
    content_type: &HeaderValue,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, content_type.clone());
    response
}

/// The Prometheus text exposition format, version 0.0.4.
static PROMETHEUS_TEXT: HeaderValue =
    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");
static JSON: HeaderValue = HeaderValue::from_static("application/json");

fn respond(live: &Live, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    const PLAIN: &HeaderValue = &TEXT_PLAIN;
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, PLAIN, "use GET\n");
    }
    match request.uri().path() {
        "/metrics" => match live.metrics().render() {
            Ok(body) => text(StatusCode::OK, &PROMETHEUS_TEXT, body),
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, PLAIN, format!("{e}\n")),
        },
        "/healthz" => text(StatusCode::OK, PLAIN, "ok\n"),
        "/readyz" => {
            if live.is_ready() {
                text(StatusCode::OK, PLAIN, "ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, PLAIN, "not ready\n")
            }
        }
        "/rules" => {
            // Rendered once per loaded generation and shared by every request: 100 000 rules
            // are tens of megabytes of JSON, which slow readers must not multiply.
            let snapshot = live.load();
            let body = snapshot
                .rendered_rules
                .get_or_init(|| Bytes::from(format!("{:#}\n", rules_json(&snapshot))))
                .clone();
            text(StatusCode::OK, &JSON, body)
        }
        "/shadow" => {
            // Read afresh each time: the counts move with every shadowed preflight.
            let snapshot = live.load();
            // A new entry's prescription recompiles the rules (once per entry): off the
            // runtime's worker, so the data connections it serves are not held up.
            let mut report = tokio::task::block_in_place(|| {
                crate::shadow::report(snapshot.shadow.as_deref(), &snapshot.policy)
            });
            if let Some(object) = report.as_object_mut() {
                let provenance = &snapshot.provenance;
                object.insert("generation".to_owned(), provenance.generation.into());
                let since = humantime::format_rfc3339_seconds(provenance.loaded_at);
                object.insert("since".to_owned(), since.to_string().into());
            }
            text(StatusCode::OK, &JSON, format!("{report:#}\n"))
        }
        _ => text(
            StatusCode::NOT_FOUND,
            PLAIN,
            "not found: try /metrics, /healthz, /readyz, /rules or /shadow\n",
        ),
    }
}

fn rules_json(active: &Snapshot) -> Value {
    let settings = active.policy.settings();
    let provenance = &active.provenance;
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
                "only_listed_methods": rule.only_listed_methods,
                "headers": rule.headers.written_all(),
                "expose": rule.expose.written(),
                "credentials": rule.credentials,
                "max_age": rule.max_age,
                "private_network": rule.private_network,
            })
        })
        .collect();
    json!({
        "generation": provenance.generation,
        "sha256": provenance.sha256,
        "loaded_at": humantime::format_rfc3339_seconds(provenance.loaded_at).to_string(),
        "files": provenance.files,
        "settings": {
            "unmatched": match settings.unmatched { Unmatched::Reject => "reject", Unmatched::Forward => "forward" },
            "debug": settings.debug,
            "cdn_max_age": settings.cdn_max_age,
            "actual_responses": match settings.actual_responses {
                ActualResponses::Untouched => "untouched",
                ActualResponses::Fill => "fill",
            },
            "preflight_status": match settings.preflight_status {
                PreflightStatus::NoContent => 204,
                PreflightStatus::Ok => 200,
            },
            "mode": settings.mode.as_str(),
        },
        "rules": rules,
    })
}
