//! One request: a preflight is answered from the policy, everything else is proxied.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::cors::{self, Decision, Outcome};
use crate::live::Live;
use crate::metrics::Metrics;
use crate::proxy::{Body, ClientConnection, Upstream, error_response, fixed};

/// What every request is served with.
pub struct Context {
    pub live: Arc<Live>,
    pub metrics: Arc<Metrics>,
    /// `None` when no `--upstream` is set: preflights are still answered.
    pub upstream: Option<Upstream>,
}

pub async fn handle(
    context: Arc<Context>,
    client: Arc<ClientConnection>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    // Decide on one snapshot, and let go of it before any await: a reload swaps the policy
    // without waiting for anyone.
    let (answer, fill) = {
        let active = context.live.load();
        let host = request
            .uri()
            .authority()
            .map(|a| a.as_str().as_bytes())
            .or_else(|| {
                request
                    .headers()
                    .get(http::header::HOST)
                    .map(|h| h.as_bytes())
            });
        let view = cors::Request {
            method: request.method(),
            host,
            path: request.uri().path().as_bytes(),
            headers: request.headers(),
        };
        match cors::decide(&active.policy, &view) {
            Decision::Answer(answer) => {
                active.counters.count(answer.rule, answer.outcome);
                let mut response = Response::new(fixed(answer.body()));
                *response.status_mut() = answer.status();
                answer.write_headers(request.headers(), response.headers_mut());
                if let Outcome::Denied(reason) = answer.outcome {
                    tracing::debug!(
                        reason = reason.as_str(),
                        rule = answer.rule().map_or("", |r| r.name.as_str()),
                        path = request.uri().path(),
                        "preflight denied"
                    );
                }
                (Some(response), None)
            }
            Decision::Forward => {
                active.counters.count_forwarded();
                (None, None)
            }
            Decision::NotPreflight => (None, cors::fill_for(&active.policy, &view)),
        }
    };
    if let Some(response) = answer {
        context
            .metrics
            .preflight_duration
            .observe(started.elapsed().as_secs_f64());
        return Ok(response);
    }
    let Some(upstream) = &context.upstream else {
        let response = error_response(StatusCode::BAD_GATEWAY, "no upstream configured\n");
        context.metrics.count_proxy_status(response.status());
        return Ok(response);
    };
    let version = request.version();
    let mut response = upstream.forward(request, &context.metrics, &client).await;
    // The client's protocol, not the upstream's (an HTTP/1.0 upstream must not downgrade an
    // HTTP/1.1 client's status line).
    *response.version_mut() = version;
    if let Some(fill) = fill {
        fill.apply(response.headers_mut());
    }
    Ok(response)
}
