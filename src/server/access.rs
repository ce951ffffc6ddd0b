//! The access log on the data listener (`--access-log`): what each path writes, and when.
//!
//! - Answers the edge gives at once (a preflight, a refused request) are written when they
//!   are rendered, from the request as it is.
//! - A proxied request (a forwarded preflight, a tunnel) is written when its response body
//!   ends or is dropped ([`Logged`]), with the bytes handed to hyper and the time taken; what
//!   the line needs of the request is kept from before it went upstream (cheap clones of
//!   hyper's shared buffers).
//! - A head hyper refuses itself (400, 414, 431) never reaches the service: it is written
//!   from the connection's error ([`refused_by_hyper`]).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Buf;
use http::header::{ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, HOST, ORIGIN};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri, Version};

use crate::access_log::{self, AccessLog, Entry, Kind};
use crate::cors::{Answer, FORWARDED_LABEL, Fields, Outcome};
use crate::metrics::NO_RULE_LABEL;

/// A request the access log follows: when it began and who sent it.
pub(super) struct Started<'l> {
    log: &'l Arc<AccessLog>,
    at: Instant,
    time: Duration,
    client: SocketAddr,
}

impl<'l> Started<'l> {
    pub(super) fn new(log: &'l Arc<AccessLog>, client: SocketAddr) -> Self {
        Started {
            log,
            at: Instant::now(),
            time: access_log::now(),
            client,
        }
    }

    /// A preflight answered at the edge: always written when denied, sampled when allowed.
    pub(super) fn preflight<F: Fields + ?Sized>(
        &self,
        version: Version,
        view: &crate::cors::Request<'_, F>,
        answer: &Answer<'_>,
    ) {
        if answer.outcome == Outcome::Allowed && !self.log.sampled() {
            return;
        }
        self.log.write(&Entry {
            time: self.time,
            client: self.client,
            protocol: Some(access_log::protocol(version)),
            method: Some(view.method.as_str().as_bytes()),
            host: view.host,
            path: Some(view.path),
            status: answer.status().as_u16(),
            bytes: answer.body().len() as u64,
            duration: Some(self.at.elapsed()),
            kind: Kind::Preflight,
            rule: Some(answer.rule().map_or(NO_RULE_LABEL, |r| r.name.as_str())),
            result: Some(answer.outcome.as_str()),
            request: Some(view.headers),
            upstream_status: None,
            upstream_duration: None,
        });
    }

    /// A request refused before any decision (a bad host, `CONNECT`): always written, with
    /// the host as received (its first `Host` line, or the target's authority).
    pub(super) fn refused<B>(
        &self,
        request: &Request<B>,
        status: StatusCode,
        body: &str,
        reason: &'static str,
    ) {
        let uri = request.uri();
        let host = request
            .headers()
            .get(HOST)
            .map(HeaderValue::as_bytes)
            .or_else(|| uri.authority().map(|a| a.as_str().as_bytes()));
        self.log.write::<HeaderMap>(&Entry {
            time: self.time,
            client: self.client,
            protocol: Some(access_log::protocol(request.version())),
            method: Some(request.method().as_str().as_bytes()),
            host,
            // `CONNECT host:port` has no path.
            path: uri.path_and_query().map(|_| uri.path().as_bytes()),
            status: status.as_u16(),
            bytes: body.len() as u64,
            duration: Some(self.at.elapsed()),
            kind: Kind::Error,
            rule: None,
            result: Some(reason),
            request: None,
            upstream_status: None,
            upstream_duration: None,
        });
    }

    /// What the line of a request on its way upstream needs, kept before the request goes:
    /// for a preflight forwarded by `unmatched = "forward"` or shadowed, its CORS fields too.
    pub(super) fn pending<B>(
        &self,
        request: &Request<B>,
        host: Option<&HeaderValue>,
        forwarded_preflight: Option<Forwarded>,
    ) -> Box<Pending> {
        let preflight = forwarded_preflight.map(|forwarded| {
            let mut fields = HeaderMap::new();
            for name in [
                ORIGIN,
                ACCESS_CONTROL_REQUEST_METHOD,
                ACCESS_CONTROL_REQUEST_HEADERS,
            ] {
                for value in request.headers().get_all(&name) {
                    fields.append(name.clone(), value.clone());
                }
            }
            (forwarded, fields)
        });
        Box::new(Pending {
            log: Arc::clone(self.log),
            at: self.at,
            time: self.time,
            client: self.client,
            version: request.version(),
            method: request.method().clone(),
            host: host.cloned(),
            uri: request.uri().clone(),
            preflight,
            status: 0,
            upstream_status: None,
            upstream_duration: None,
            always: false,
            bytes: 0,
        })
    }
}

/// Why a preflight went to the upstream.
pub(super) enum Forwarded {
    /// No rule's scope covers it and `unmatched = "forward"`.
    Unmatched,
    /// `mode = "shadow"`: the upstream answers; `rule` is the one the rules would have used.
    Shadow { rule: Option<String> },
}

/// The access log's `result` of a preflight proxied in shadow mode.
const SHADOW_LABEL: &str = "shadow";

/// A proxied request's line, written when its response ends.
pub(super) struct Pending {
    log: Arc<AccessLog>,
    at: Instant,
    time: Duration,
    client: SocketAddr,
    version: Version,
    method: Method,
    host: Option<HeaderValue>,
    uri: Uri,
    /// A forwarded or shadowed preflight: why, and its `Origin`, ACRM and ACRH lines.
    preflight: Option<(Forwarded, HeaderMap)>,
    status: u16,
    upstream_status: Option<u16>,
    upstream_duration: Option<Duration>,
    /// The edge answered itself (502, 503, 504, 400, 408): written whatever the sample.
    always: bool,
    bytes: u64,
}

impl Pending {
    /// The response: its status, and how long the upstream took and what it answered
    /// (`None`: the edge answered itself; no duration: no upstream was asked).
    pub(super) fn answered(
        &mut self,
        status: StatusCode,
        upstream_status: Option<StatusCode>,
        upstream_duration: Option<Duration>,
    ) {
        self.status = status.as_u16();
        self.upstream_status = upstream_status.map(|s| s.as_u16());
        self.upstream_duration = upstream_duration;
        self.always = upstream_status.is_none();
    }

    fn write(&self) {
        if !self.always && !self.log.sampled() {
            return;
        }
        let kind = if self.preflight.is_some() {
            Kind::Preflight
        } else if self.status == 101 {
            Kind::Tunnel
        } else {
            Kind::Proxied
        };
        let forwarded = self.preflight.as_ref().map(|(why, _)| why);
        self.log.write(&Entry {
            time: self.time,
            client: self.client,
            protocol: Some(access_log::protocol(self.version)),
            method: Some(self.method.as_str().as_bytes()),
            host: self.host.as_ref().map(HeaderValue::as_bytes),
            path: Some(self.uri.path().as_bytes()),
            status: self.status,
            bytes: self.bytes,
            duration: Some(self.at.elapsed()),
            kind,
            rule: forwarded.map(|why| match why {
                Forwarded::Unmatched => NO_RULE_LABEL,
                Forwarded::Shadow { rule } => rule.as_deref().unwrap_or(NO_RULE_LABEL),
            }),
            result: forwarded.map(|why| match why {
                Forwarded::Unmatched => FORWARDED_LABEL,
                Forwarded::Shadow { .. } => SHADOW_LABEL,
            }),
            request: self.preflight.as_ref().map(|(_, fields)| fields),
            upstream_status: self.upstream_status,
            upstream_duration: self.upstream_duration,
        });
    }
}

/// A response body that counts the bytes it hands to hyper and writes its request's line
/// when it ends or is dropped (the client went away, the connection was closed): the line of
/// a download cut by `--send-timeout` shows the bytes that went out. Without the access log
/// it is the body itself and one branch per frame.
pub struct Logged<B> {
    body: B,
    pending: Option<Box<Pending>>,
}

impl<B> Logged<B> {
    pub(super) fn new(body: B, pending: Option<Box<Pending>>) -> Self {
        Logged { body, pending }
    }
}

impl<B> Drop for Logged<B> {
    fn drop(&mut self) {
        if let Some(pending) = self.pending.take() {
            pending.write();
        }
    }
}

impl<B> hyper::body::Body for Logged<B>
where
    B: hyper::body::Body + Unpin,
    B::Data: Buf,
{
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<B::Data>, B::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        if let (Some(pending), Poll::Ready(Some(Ok(frame)))) = (&mut this.pending, &polled)
            && let Some(data) = frame.data_ref()
        {
            pending.bytes += data.remaining() as u64;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// A connection hyper ended with `error`: if hyper answered a head it could not parse
/// (RFC 9112 and its own limits: 400, 414, 431), that answer's line. The request never
/// reached the service, so nothing of it is known but the client.
pub(super) fn refused_by_hyper(
    log: &AccessLog,
    client: SocketAddr,
    error: &(dyn std::error::Error + 'static),
) {
    let Some(error) = error.downcast_ref::<hyper::Error>() else {
        return;
    };
    let Some((status, reason)) = hyper_answer(error) else {
        return;
    };
    log.write::<HeaderMap>(&Entry {
        time: access_log::now(),
        client,
        protocol: None,
        method: None,
        host: None,
        path: None,
        status,
        // Hyper's error answers have no body.
        bytes: 0,
        duration: None,
        kind: Kind::Error,
        rule: None,
        result: Some(reason),
        request: None,
        upstream_status: None,
        upstream_duration: None,
    });
}

/// The status hyper answered a parse error with (hyper 1.x, `proto::h1::role::Server::
/// on_error`), and the access log's reason; `None` when it answered nothing (an HTTP/2
/// preface on HTTP/1, an error inside hyper, a connection error).
fn hyper_answer(error: &hyper::Error) -> Option<(u16, &'static str)> {
    if !error.is_parse() || error.is_parse_version_h2() || error.is_parse_status() {
        return None;
    }
    if error.is_parse_too_large() {
        // Hyper tells `UriTooLong` from `TooLarge` only by its description.
        return Some(if error.to_string() == "URI too long" {
            (414, "uri_too_long")
        } else {
            (431, "head_too_large")
        });
    }
    if error.to_string().starts_with("internal error") {
        return None;
    }
    Some((400, "bad_request"))
}
