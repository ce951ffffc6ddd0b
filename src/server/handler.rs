//! One request: its effective host settled, then a preflight is answered from the policy and
//! everything else is proxied.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use http::header::{ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, HOST, ORIGIN};
use http::{HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body_util::Either;
use hyper::body::Incoming;

use super::access::{Forwarded, Logged, Pending, Started};
use crate::access_log::{AccessLog, Escaped, EscapedLines};
use crate::conn::{InFlight, Tracked};
use crate::cors::{self, Answer, Decision, Fields, Outcome};
use crate::live::{Live, Snapshot};
use crate::metrics::{ClientError, Metrics};
use crate::proxy::{Body, ClientConnection, Upstream, error_response, fixed};
use crate::shadow::{self, Shadow};
use crate::syntax::is_valid_authority;

/// What every request is served with.
pub struct Context {
    pub live: Arc<Live>,
    pub metrics: Arc<Metrics>,
    /// `None` when no `--upstream` is set: preflights are still answered.
    pub upstream: Option<Upstream>,
    /// `--access-log`; `None` when off.
    pub access_log: Option<Arc<AccessLog>>,
}

impl Context {
    /// The snapshot's shadow state when its preflights go to the upstream: `mode = "shadow"`
    /// and an upstream to send them to (without one, the rules answer: there is nothing to
    /// compare with). Decided per snapshot, on both paths.
    #[inline]
    pub(super) fn shadowing<'s>(&self, active: &'s Snapshot) -> Option<&'s Arc<Shadow>> {
        active.shadow.as_ref().filter(|_| self.upstream.is_some())
    }
}

pub async fn handle(
    context: Arc<Context>,
    client: Arc<ClientConnection>,
    request: Request<Incoming>,
    in_flight: InFlight,
) -> Result<Response<Tracked<Logged<Body>>>, Infallible> {
    let log = context
        .access_log
        .as_ref()
        .map(|log| Started::new(log, client.address()));
    let (response, pending) = respond(&context, &client, request, log.as_ref()).await;
    Ok(response.map(|body| Tracked::new(Logged::new(body, pending), in_flight)))
}

/// Why a request has no usable host (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BadHost {
    Missing,
    Several,
    Invalid,
    Disagrees,
}

impl BadHost {
    fn body(self) -> &'static str {
        match self {
            BadHost::Missing => "bad request: no Host field\n",
            BadHost::Several => "bad request: more than one Host field\n",
            BadHost::Invalid => "bad request: invalid Host\n",
            BadHost::Disagrees => "bad request: Host disagrees with :authority\n",
        }
    }
}

/// The request's one effective host (DESIGN 10), used alike by the scope decision, `fill`,
/// logs and the forwarded `Host`:
///
/// - RFC 9112 3.2: an HTTP/1.1 request without `Host`, with more than one `Host` line, or
///   with an invalid one, is a 400; HTTP/1.0 may omit it (`None`).
/// - RFC 9112 3.2.2: an absolute-form target's authority wins over `Host`.
/// - RFC 9113 8.3.1: an HTTP/2 request's `:authority` wins; a `host` field that disagrees
///   with it is a 400.
fn effective_host(request: &Request<Incoming>) -> Result<Option<HeaderValue>, BadHost> {
    let mut lines = request.headers().get_all(HOST).iter();
    let host = lines.next();
    if lines.next().is_some() {
        return Err(BadHost::Several);
    }
    if let Some(host) = host
        && !is_valid_authority(host.as_bytes())
    {
        return Err(BadHost::Invalid);
    }
    let authority = request.uri().authority().map(|a| a.as_str());
    if let Some(authority) = authority {
        if !is_valid_authority(authority.as_bytes()) {
            return Err(BadHost::Invalid);
        }
        if request.version() == Version::HTTP_2
            && host.is_some_and(|h| !h.as_bytes().eq_ignore_ascii_case(authority.as_bytes()))
        {
            return Err(BadHost::Disagrees);
        }
        return HeaderValue::from_str(authority)
            .map(Some)
            .map_err(|_| BadHost::Invalid);
    }
    match host {
        Some(host) => Ok(Some(host.clone())),
        None if request.version() == Version::HTTP_11 => Err(BadHost::Missing),
        None => Ok(None),
    }
}

/// The debug line of a denied preflight, on either path: who asked for what (the request's
/// values escaped as in the text access log, so none can forge a line).
#[inline]
pub(super) fn log_denial<H: Fields + ?Sized>(answer: &Answer<'_>, view: &cors::Request<'_, H>) {
    if let Outcome::Denied(reason) = answer.outcome {
        tracing::debug!(
            reason = reason.as_str(),
            rule = answer.rule().map_or("", |r| r.name.as_str()),
            host = %Escaped(view.host.unwrap_or_default()),
            path = %Escaped(view.path),
            origin = %EscapedLines(view.headers, &ORIGIN),
            request_method = %EscapedLines(view.headers, &ACCESS_CONTROL_REQUEST_METHOD),
            request_headers = %EscapedLines(view.headers, &ACCESS_CONTROL_REQUEST_HEADERS),
            "preflight denied"
        );
    }
}

async fn respond(
    context: &Context,
    client: &ClientConnection,
    request: Request<Incoming>,
    log: Option<&Started<'_>>,
) -> (Response<Body>, Option<Box<Pending>>) {
    let started = Instant::now();
    // DESIGN 10: CONNECT is refused at the edge, never forwarded: preflightd is a reverse
    // proxy, and a tunnel to any host:port is nothing its upstream asked for (RFC 9110 9.3.6).
    if request.method() == Method::CONNECT {
        context
            .metrics
            .count_client_error(ClientError::ConnectMethod);
        const TEXT: &str = "CONNECT is not supported: this is not a forward proxy\n";
        let mut response = error_response(StatusCode::METHOD_NOT_ALLOWED, TEXT);
        context.metrics.count_proxy_status(response.status());
        response
            .headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        if let Some(log) = log {
            log.refused(&request, response.status(), TEXT, "connect_method");
        }
        return (response, None);
    }
    let host = match effective_host(&request) {
        Ok(host) => host,
        Err(bad) => {
            context.metrics.count_client_error(ClientError::BadHost);
            tracing::debug!(reason = ?bad, "request without a usable host");
            let mut response = error_response(StatusCode::BAD_REQUEST, bad.body());
            context.metrics.count_proxy_status(response.status());
            response
                .headers_mut()
                .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
            if let Some(log) = log {
                log.refused(&request, response.status(), bad.body(), "bad_host");
            }
            return (response, None);
        }
    };
    let mut forwarded_preflight = None;
    // Decide on one snapshot, and let go of it before any await: a reload swaps the policy
    // without waiting for anyone.
    let (answer, fill, shadowed) = {
        let active = context.live.load();
        let view = cors::Request {
            method: request.method(),
            host: host.as_ref().map(HeaderValue::as_bytes),
            path: request.uri().path().as_bytes(),
            headers: request.headers(),
        };
        match cors::decide(&active.policy, &view) {
            // Shadow mode: the rules' answer is only captured; the upstream answers (and the
            // access log has it as a forwarded preflight, with its CORS fields).
            Decision::Answer(answer) => match context.shadowing(&active) {
                Some(shadow) => {
                    let headers = request.headers();
                    let uri = request.uri();
                    let case = shadow::Case::new(shadow, &answer, headers, host.as_ref(), uri);
                    if log.is_some() {
                        let rule = answer.rule().map(|r| r.name.clone());
                        forwarded_preflight = Some(Forwarded::Shadow { rule });
                    }
                    (None, None, case)
                }
                None => {
                    active.counters.count(&answer);
                    let mut response = Response::new(fixed(answer.body()));
                    *response.status_mut() = answer.status();
                    answer.write_headers(request.headers(), response.headers_mut());
                    log_denial(&answer, &view);
                    if let Some(log) = log {
                        log.preflight(request.version(), &view, &answer);
                    }
                    (Some(response), None, None)
                }
            },
            Decision::Forward => {
                active.counters.count_forwarded();
                forwarded_preflight = Some(Forwarded::Unmatched);
                (None, None, None)
            }
            Decision::NotPreflight => (None, cors::fill_for(&active.policy, &view), None),
        }
    };
    if let Some(response) = answer {
        context
            .metrics
            .preflight_duration
            .observe(started.elapsed().as_secs_f64());
        return (response, None);
    }
    let mut pending = log.map(|log| log.pending(&request, host.as_ref(), forwarded_preflight));
    let Some(upstream) = &context.upstream else {
        let response = error_response(StatusCode::BAD_GATEWAY, "no upstream configured\n");
        context.metrics.count_proxy_status(response.status());
        if let Some(pending) = &mut pending {
            pending.answered(response.status(), None, None);
        }
        return (response, pending);
    };
    let version = request.version();
    let upstream_started = Instant::now();
    let mut response = upstream
        .forward(request, host, &context.metrics, client)
        .await;
    if let Some(pending) = &mut pending {
        // A body of the edge's own (`fixed`) is an answer the upstream never gave.
        let upstream_status =
            matches!(response.body(), Either::Right(_)).then_some(response.status());
        pending.answered(
            response.status(),
            upstream_status,
            Some(upstream_started.elapsed()),
        );
    }
    // The client's protocol, not the upstream's (an HTTP/1.0 upstream must not downgrade an
    // HTTP/1.1 client's status line).
    *response.version_mut() = version;
    if let Some(fill) = fill {
        fill.apply(response.headers_mut());
    }
    if let Some(case) = shadowed {
        // The upstream's own answer streams its body; the edge's 502 / 504 is a fixed one.
        let from_upstream = matches!(response.body(), Either::Right(_));
        case.observe(
            response.status(),
            response.headers(),
            from_upstream,
            &context.metrics,
        );
    }
    (response, pending)
}
