//! The upstream side (DESIGN 5): a pooled keep-alive client (`http://` or `https://` with
//! rustls), requests and responses streamed both ways without buffering, trailers kept,
//! upgrades tunnelled, failures answered 502 / 504 and counted.
//!
//! Faults are told apart (DESIGN 10): a client's malformed body is a 400 and a client that
//! goes away is no upstream error (both `preflightd_client_errors_total`); the upstream's
//! silence, not the request's age, is what `--upstream-timeout` measures; and a request lost
//! to a keep-alive race (the upstream closed an idle connection as the request went out) is
//! sent again, never reported as a 502.

pub mod body;
pub mod connector;
pub mod headers;
pub mod trusted;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::conn::{Connection, Phase};
use crate::fetch::TEXT_PLAIN;
use crate::metrics::{ClientError, Metrics, UpstreamError};
use body::{ClientBody, ClientFault, Upload, UpstreamBody};
use connector::{LimitedConnector, is_exhausted};
use headers::{X_FORWARDED_FOR, X_FORWARDED_PROTO};

/// The response body type of the data listener: a fixed body the edge writes itself, or the
/// upstream's body streamed through (no buffering), watched for silence.
pub type Body = Either<Full<Bytes>, UpstreamBody>;

pub fn fixed(text: &'static str) -> Body {
    Either::Left(Full::new(Bytes::from_static(text.as_bytes())))
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub url: String,
    pub connect_timeout: Duration,
    /// The upstream's silence that ends an exchange: no response byte for this long after the
    /// request's last byte, or between reads of the response body (nginx's
    /// `proxy_read_timeout`).
    pub response_timeout: Duration,
    /// An idle upstream connection is closed after this long, before the upstream is likely
    /// to close it itself (Node's default keep-alive timeout is 5 s).
    pub idle_timeout: Duration,
    /// Upstream connections open at once, across every client and protocol.
    pub max_connections: usize,
    pub forwarded_headers: bool,
    pub rewrite_host: bool,
    /// Extra PEM CA certificates trusted for an `https://` upstream, beside the system roots.
    pub extra_ca: Option<std::path::PathBuf>,
}

pub struct Upstream {
    client: Client<LimitedConnector, ClientBody>,
    connector: LimitedConnector,
    scheme: Scheme,
    authority: Authority,
    host_value: HeaderValue,
    response_timeout: Duration,
    idle_timeout: Duration,
    forwarded_headers: bool,
    rewrite_host: bool,
}

/// What the proxy keeps per client connection, so that per request it need not redo it.
///
/// - One upstream HTTP/1 connection. An HTTP/1.1 client sends its requests one after another,
///   so the connection it arrived on can keep one upstream connection for all of them: no pool
///   lookup (a mutex and a hash of the pool key per request), no sharing. The slot is a
///   lock-free single cell: a request takes the connection out and puts it back once the
///   upstream answered. HTTP/2 clients (concurrent streams) and upgrades use the shared pool.
/// - The client's address as an `X-Forwarded-For` item, rendered once.
pub struct ClientConnection {
    upstream: crossbeam_utils::atomic::AtomicCell<Option<Box<Kept>>>,
    forwarded_for: HeaderValue,
    /// The client connection itself: a tunnel holds it, so it stays counted (and capped)
    /// until the socket closes.
    connection: Arc<Connection>,
    /// `--client-body-timeout`.
    body_timeout: Duration,
    /// `X-Forwarded-Proto`: `https` when the client came over TLS.
    proto: &'static HeaderValue,
    /// Whether the client's own `X-Forwarded-For` / `-Proto` are kept (`--trusted-proxies`).
    keeps_forwarded: bool,
    /// The client's address (the PROXY header's with `--proxy-protocol`), for the logs.
    address: SocketAddr,
}

/// An upstream connection kept between requests, and since when it has been idle.
struct Kept {
    sender: UpstreamConnection,
    idle_since: Instant,
}

impl ClientConnection {
    pub fn new(
        client: SocketAddr,
        connection: Arc<Connection>,
        body_timeout: Duration,
        secure: bool,
        keeps_forwarded: bool,
    ) -> Self {
        let ip = client.ip().to_string();
        ClientConnection {
            upstream: crossbeam_utils::atomic::AtomicCell::new(None),
            // An IP address is always a valid header value.
            forwarded_for: HeaderValue::from_str(&ip)
                .unwrap_or(HeaderValue::from_static("unknown")),
            connection,
            body_timeout,
            proto: if secure {
                &headers::PROTO_HTTPS
            } else {
                &headers::PROTO_HTTP
            },
            keeps_forwarded,
            address: client,
        }
    }

    /// The client's address, as in `X-Forwarded-For` (with its port).
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

/// Bounds on what an upstream may send per connection: a few hundred header lines (100
/// `Set-Cookie` lines pass), and 64 KiB buffered, so that a client that stops reading holds
/// little of the upstream's response in preflightd's memory.
const UPSTREAM_MAX_HEADERS: usize = 512;
pub const UPSTREAM_MAX_BUFFER: usize = 64 * 1024;

type UpstreamConnection = hyper::client::conn::http1::SendRequest<ClientBody>;

/// Why `--upstream` (or `--upstream-ca`) cannot be used.
#[derive(Debug)]
pub enum UpstreamConfigError {
    /// Not a URI at all.
    Unparsable {
        url: String,
        reason: String,
    },
    /// A scheme other than `http` or `https`, or none.
    Scheme {
        url: String,
    },
    NoHost {
        url: String,
    },
    /// A path or query: requests keep their own.
    PathOrQuery {
        url: String,
    },
    /// The `--upstream-ca` file cannot be read or holds a certificate that cannot be used.
    Ca {
        path: std::path::PathBuf,
        reason: String,
    },
    /// rustls refused the client configuration.
    Tls {
        reason: String,
    },
}

impl std::fmt::Display for UpstreamConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamConfigError::Unparsable { url, reason } => {
                write!(f, "invalid --upstream {url:?}: {reason}")
            }
            UpstreamConfigError::Scheme { url } => write!(
                f,
                "invalid --upstream {url:?}: use http://host[:port] or https://host[:port]"
            ),
            UpstreamConfigError::NoHost { url } => write!(f, "invalid --upstream {url:?}: no host"),
            UpstreamConfigError::PathOrQuery { url } => write!(
                f,
                "invalid --upstream {url:?}: paths are passed through as requested; give only scheme://host[:port]"
            ),
            UpstreamConfigError::Ca { path, reason } => {
                write!(f, "--upstream-ca {}: {reason}", path.display())
            }
            UpstreamConfigError::Tls { reason } => write!(f, "TLS setup: {reason}"),
        }
    }
}

impl std::error::Error for UpstreamConfigError {}

impl Upstream {
    pub fn new(
        config: &UpstreamConfig,
        open: prometheus::IntGauge,
    ) -> Result<Self, UpstreamConfigError> {
        let url = || config.url.clone();
        let uri: Uri = config.url.parse().map_err(|e: http::uri::InvalidUri| {
            UpstreamConfigError::Unparsable {
                url: url(),
                reason: e.to_string(),
            }
        })?;
        let scheme = match uri.scheme_str() {
            Some("http") => Scheme::HTTP,
            Some("https") => Scheme::HTTPS,
            _ => return Err(UpstreamConfigError::Scheme { url: url() }),
        };
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| UpstreamConfigError::NoHost { url: url() })?;
        if uri.path() != "/" && !uri.path().is_empty() || uri.query().is_some() {
            return Err(UpstreamConfigError::PathOrQuery { url: url() });
        }
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.connect_timeout));
        let tls = tls_config(config.extra_ca.as_deref())?;
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let connector =
            LimitedConnector::new(https, config.max_connections, config.connect_timeout, open);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(config.idle_timeout)
            .pool_max_idle_per_host(config.max_connections)
            .http1_max_buf_size(UPSTREAM_MAX_BUFFER)
            .http1_max_headers(UPSTREAM_MAX_HEADERS)
            .build(connector.clone());
        let host_value = HeaderValue::from_str(authority.as_str()).map_err(|e| {
            UpstreamConfigError::Unparsable {
                url: url(),
                reason: e.to_string(),
            }
        })?;
        Ok(Upstream {
            client,
            connector,
            scheme,
            authority,
            host_value,
            response_timeout: config.response_timeout,
            idle_timeout: config.idle_timeout,
            forwarded_headers: config.forwarded_headers,
            rewrite_host: config.rewrite_host,
        })
    }

    /// Sends `request` upstream and returns its response, or the 400 / 502 / 504 that
    /// replaces it.
    pub async fn forward(
        &self,
        mut request: Request<Incoming>,
        host: Option<HeaderValue>,
        metrics: &Arc<Metrics>,
        client: &ClientConnection,
    ) -> Response<Body> {
        // Only WebSocket is tunnelled (DESIGN 10): any other Upgrade (h2c included) is
        // removed with its Connection token and the request proxied as plain HTTP/1.1.
        let upgrade = headers::is_websocket_upgrade(request.headers());
        let version = request.version();
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
        let (mut parts, body) = request.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        // RFC 9112 3.2: an HTTP/1.1 request carries one Host. The upstream gets the
        // request's effective host (the one the decision used: an absolute-form target's
        // authority, an HTTP/2 client's :authority, or Host), unless --rewrite-host; an
        // HTTP/1.0 request without one gets the upstream's own.
        let forwarded_host = match host {
            Some(host) if !self.rewrite_host => host,
            _ => self.host_value.clone(),
        };
        parts.headers.insert(http::header::HOST, forwarded_host);
        let pooled = upgrade || version == http::Version::HTTP_2;
        parts.uri = if pooled {
            // The pooled client picks its pool by the absolute URI.
            let mut uri = http::uri::Parts::default();
            uri.scheme = Some(self.scheme.clone());
            uri.authority = Some(self.authority.clone());
            uri.path_and_query = Some(path);
            match Uri::from_parts(uri) {
                Ok(uri) => uri,
                Err(_) => return error_response(StatusCode::BAD_REQUEST, "bad request target\n"),
            }
        } else {
            // A connection of our own speaks origin form: `GET /path?query`.
            Uri::from(path)
        };
        headers::remove_hop_by_hop(&mut parts.headers, upgrade);
        if self.forwarded_headers {
            headers::append_via(&mut parts.headers, version);
            if !client.keeps_forwarded {
                // Not a trusted proxy: what it claims is replaced by what preflightd saw.
                parts.headers.remove(&X_FORWARDED_FOR);
                parts.headers.remove(&X_FORWARDED_PROTO);
            }
            headers::append_item(&mut parts.headers, &X_FORWARDED_FOR, &client.forwarded_for);
            headers::append_item(&mut parts.headers, &X_FORWARDED_PROTO, client.proto);
        }
        parts.version = http::Version::HTTP_11;
        let (body, upload) = ClientBody::new(body);
        let upstream_request = Request::from_parts(parts, body);

        let started = Instant::now();
        let exchange = async {
            if pooled {
                // hyper-util's pool resends a request whose pooled connection closed before
                // it was written (`retry_canceled_requests`, on by default).
                return self.client.request(upstream_request).await.map_err(|e| {
                    let kind = if is_exhausted(&e) {
                        Failure::Exhausted
                    } else {
                        Failure::Upstream(classify(&e))
                    };
                    (kind, error_chain(&e))
                });
            }
            self.send_affine(upstream_request, client).await
        };
        let result = self
            .until_silent(exchange, upload.as_deref(), client.body_timeout, started)
            .await;
        metrics
            .upstream_duration
            .observe(started.elapsed().as_secs_f64());
        // A failed upload is the client's doing, whatever the upstream side saw of it.
        if let Some(fault) = upload.as_ref().and_then(|u| u.fault())
            && !matches!(result, Some(Ok(_)))
        {
            let response = client_fault_response(fault, metrics);
            metrics.count_proxy_status(response.status());
            return response;
        }
        let mut response = match result {
            Some(Ok(response)) => response,
            Some(Err((Failure::Exhausted, e))) => {
                metrics.upstream_exhausted.inc();
                if let Some(suppressed) = EXHAUSTED_LOG.allow() {
                    tracing::warn!(suppressed, error = %e, "upstream connections exhausted");
                }
                let response = error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "upstream connections exhausted\n",
                );
                metrics.count_proxy_status(response.status());
                return response;
            }
            Some(Err((Failure::Upstream(kind), e))) => {
                metrics.count_upstream_error(kind);
                if let Some(suppressed) = FAILED_LOG.allow() {
                    tracing::warn!(suppressed, error = %e, kind = ?kind, "upstream request failed");
                }
                let response = error_response(StatusCode::BAD_GATEWAY, "upstream request failed\n");
                metrics.count_proxy_status(response.status());
                return response;
            }
            None => {
                metrics.count_upstream_error(UpstreamError::Timeout);
                if let Some(suppressed) = TIMEOUT_LOG.allow() {
                    tracing::warn!(suppressed, timeout = ?self.response_timeout, "upstream timed out");
                }
                let response = error_response(StatusCode::GATEWAY_TIMEOUT, "upstream timed out\n");
                metrics.count_proxy_status(response.status());
                return response;
            }
        };
        metrics.count_proxy_status(response.status());
        let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
        if let (Some(client_upgrade), true) = (client_upgrade, switching) {
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            tokio::spawn(tunnel(
                client_upgrade,
                upstream_upgrade,
                Arc::clone(&client.connection),
            ));
        }
        headers::remove_hop_by_hop(response.headers_mut(), switching);
        let timeout = self.response_timeout;
        response.map(|body| Either::Right(UpstreamBody::new(body, timeout, Arc::clone(metrics))))
    }

    /// Runs `exchange` until it completes, or until the upstream has been silent for
    /// `--upstream-timeout` (`None`): silence counts from the request's last byte, so an
    /// upload that keeps progressing is never cut (nginx's `proxy_read_timeout`). A client
    /// that sends no body byte for `body_timeout` while the proxy waits for one ends it too,
    /// as a client fault (nginx's `client_body_timeout`).
    async fn until_silent<T>(
        &self,
        exchange: impl std::future::Future<Output = T>,
        upload: Option<&Upload>,
        body_timeout: Duration,
        started: Instant,
    ) -> Option<T> {
        tokio::pin!(exchange);
        loop {
            let since = upload.map_or(started, Upload::last_progress);
            let mut deadline = since + self.response_timeout;
            if upload.is_some() {
                // The wait on the client starts when the body is polled, unseen from here:
                // look again every quarter of the body timeout while a body is in flight.
                let tick = (body_timeout / 4).max(Duration::from_millis(50));
                deadline = deadline.min(Instant::now() + tick);
                if let Some(waiting) = upload.and_then(Upload::waiting_since) {
                    deadline = deadline.min(waiting + body_timeout);
                }
            }
            tokio::select! {
                done = &mut exchange => return Some(done),
                () = tokio::time::sleep_until(deadline.into()) => {
                    let now = Instant::now();
                    if let Some(upload) = upload
                        && upload.waiting_since().is_some_and(|w| now >= w + body_timeout)
                    {
                        upload.set_fault(ClientFault::Timeout);
                        return None;
                    }
                    let progressed = upload.is_some_and(|u| u.last_progress() > since);
                    if !progressed && now >= since + self.response_timeout {
                        return None;
                    }
                }
            }
        }
    }
}

/// The answer to a request whose body the client broke: a 400 for malformed framing (RFC
/// 9112 7.1); for a client that went away, the same (nobody reads it). Counted as a client
/// error, never an upstream one.
fn client_fault_response(fault: ClientFault, metrics: &Metrics) -> Response<Body> {
    let (kind, status, text) = match fault {
        ClientFault::Malformed => (
            ClientError::MalformedBody,
            StatusCode::BAD_REQUEST,
            "malformed request body\n",
        ),
        ClientFault::Aborted => (
            ClientError::Aborted,
            StatusCode::BAD_REQUEST,
            "request body incomplete\n",
        ),
        // RFC 9110 15.5.9: 408, the server would not wait any longer.
        ClientFault::Timeout => (
            ClientError::BodyTimeout,
            StatusCode::REQUEST_TIMEOUT,
            "request body timed out\n",
        ),
    };
    metrics.count_client_error(kind);
    tracing::debug!(kind = ?kind, "client fault on the request body");
    let mut response = error_response(status, text);
    // The rest of the connection's bytes cannot be trusted to frame a next request.
    response
        .headers_mut()
        .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Methods whose request may be sent twice (RFC 9110 9.2.2), when it has no body.
fn replayable(parts: &http::request::Parts, body: &ClientBody) -> bool {
    use http::Method;
    matches!(body, ClientBody::Empty)
        && [
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::PUT,
            Method::DELETE,
        ]
        .contains(&parts.method)
}

/// Whether an error on a reused connection means the upstream closed it before answering
/// (no response byte): the keep-alive race.
fn closed_before_answer(error: &hyper::Error) -> bool {
    if error.is_incomplete_message() || error.is_canceled() || error.is_closed() {
        return true;
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
            return matches!(io.kind(), ConnectionReset | ConnectionAborted | BrokenPipe);
        }
        source = cause.source();
    }
    false
}

/// How an upstream exchange failed: an upstream error, or no connection to be had under the
/// cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Upstream(UpstreamError),
    Exhausted,
}

/// Repeated warnings of one kind: one line a second, with the count of those suppressed.
static FAILED_LOG: crate::throttle::Throttle = crate::throttle::Throttle::new();
static TIMEOUT_LOG: crate::throttle::Throttle = crate::throttle::Throttle::new();
static EXHAUSTED_LOG: crate::throttle::Throttle = crate::throttle::Throttle::new();

fn send_error(error: &hyper::Error) -> (Failure, String) {
    let kind = if error.is_parse() || error.is_parse_status() || error.is_user() {
        UpstreamError::Protocol
    } else {
        UpstreamError::Reset
    };
    (Failure::Upstream(kind), error_chain(error))
}

impl Upstream {
    /// Sends through the client connection's own upstream connection, opening it when there
    /// is none, it idled past `--upstream-idle-timeout`, or it closed. On a reused connection
    /// the keep-alive race is absorbed: a request the connection never wrote is sent again
    /// on a new one, and so is a bodiless idempotent request that got no response byte.
    async fn send_affine(
        &self,
        request: Request<ClientBody>,
        client: &ClientConnection,
    ) -> Result<Response<Incoming>, (Failure, String)> {
        let reused = match client.upstream.take() {
            Some(mut kept) if kept.idle_since.elapsed() < self.idle_timeout => {
                match kept.sender.ready().await {
                    Ok(()) => Some(kept.sender),
                    // The upstream closed it (idle timeout, restart): open another.
                    Err(_) => None,
                }
            }
            // Idle for too long: the upstream may be closing it right now.
            Some(_) | None => None,
        };
        let Some(mut connection) = reused else {
            let mut connection = self.connect().await?;
            let response = connection
                .send_request(request)
                .await
                .map_err(|e| send_error(&e))?;
            keep(client, connection);
            return Ok(response);
        };
        let (parts, body) = request.into_parts();
        let replay = replayable(&parts, &body).then(|| {
            let mut copy = Request::new(ClientBody::Empty);
            *copy.method_mut() = parts.method.clone();
            *copy.uri_mut() = parts.uri.clone();
            *copy.version_mut() = parts.version;
            *copy.headers_mut() = parts.headers.clone();
            copy
        });
        let request = Request::from_parts(parts, body);
        let retry = match connection.try_send_request(request).await {
            Ok(response) => {
                keep(client, connection);
                return Ok(response);
            }
            Err(mut failed) => match failed.take_message() {
                // Never written: safe to send again, whatever the method and body.
                Some(unsent) => unsent,
                None if closed_before_answer(failed.error()) => match replay {
                    Some(again) => again,
                    None => return Err(send_error(failed.error())),
                },
                None => return Err(send_error(failed.error())),
            },
        };
        tracing::debug!("upstream closed a kept connection; sending the request again");
        let mut fresh = self.connect().await?;
        let response = fresh
            .send_request(retry)
            .await
            .map_err(|e| send_error(&e))?;
        keep(client, fresh);
        Ok(response)
    }

    async fn connect(&self) -> Result<UpstreamConnection, (Failure, String)> {
        let connect_failed = Failure::Upstream(UpstreamError::Connect);
        let target = Uri::from_parts({
            let mut parts = http::uri::Parts::default();
            parts.scheme = Some(self.scheme.clone());
            parts.authority = Some(self.authority.clone());
            parts.path_and_query = Some(PathAndQuery::from_static("/"));
            parts
        })
        .map_err(|e| (connect_failed, e.to_string()))?;
        let io = self.connector.connect(target).await.map_err(|e| {
            let kind = if is_exhausted(e.as_ref()) {
                Failure::Exhausted
            } else {
                connect_failed
            };
            (kind, error_chain(e.as_ref()))
        })?;
        let (sender, connection) = hyper::client::conn::http1::Builder::new()
            .max_buf_size(UPSTREAM_MAX_BUFFER)
            .max_headers(UPSTREAM_MAX_HEADERS)
            .handshake(io)
            .await
            .map_err(|e| (connect_failed, error_chain(&e)))?;
        tokio::spawn(async move {
            if let Err(e) = connection.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        });
        Ok(sender)
    }
}

/// Keeps `connection` for the client connection's next request. Ready again once this
/// response's body has been read; the next request waits for that.
fn keep(client: &ClientConnection, sender: UpstreamConnection) {
    client.upstream.store(Some(Box::new(Kept {
        sender,
        idle_since: Instant::now(),
    })));
}

/// RFC 9110 7.8: after a 101 the connection speaks the upgraded protocol; copies its bytes
/// both ways between client and upstream until either side closes, no byte has gone either
/// way for `--idle-timeout`, or the shutdown grace ends. It holds the client connection all
/// along, so the tunnel stays counted under `--max-connections` and in
/// `preflightd_connections_open` until its socket closes.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    connection: Arc<Connection>,
) {
    let copy = async {
        match tokio::try_join!(client, upstream) {
            Ok((client, upstream)) => {
                let mut client = TokioIo::new(client);
                let mut upstream = TokioIo::new(upstream);
                if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                    tracing::debug!(error = %e, "upgraded connection ended");
                }
            }
            Err(e) => tracing::debug!(error = %e, "upgrade did not complete"),
        }
    };
    let idle = async {
        while let Some(deadline) = connection.tunnel_deadline() {
            tokio::time::sleep_until(deadline.into()).await;
        }
        tracing::debug!("tunnel idle; closing it");
    };
    let mut phase = connection.phase();
    let expired = async {
        while *phase.borrow_and_update() != Phase::Expired {
            if phase.changed().await.is_err() {
                break;
            }
        }
    };
    tokio::select! {
        () = copy => {}
        () = idle => {}
        () = expired => tracing::debug!("shutdown grace over; closing a tunnel"),
    }
}

pub fn error_response(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(fixed(text));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, TEXT_PLAIN.clone());
    response
}

fn classify(error: &hyper_util::client::legacy::Error) -> UpstreamError {
    if error.is_connect() {
        return UpstreamError::Connect;
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(hyper_error) = cause.downcast_ref::<hyper::Error>() {
            if hyper_error.is_parse() || hyper_error.is_parse_status() || hyper_error.is_user() {
                return UpstreamError::Protocol;
            }
            return UpstreamError::Reset;
        }
        source = cause.source();
    }
    UpstreamError::Reset
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn tls_config(extra_ca: Option<&Path>) -> Result<rustls::ClientConfig, UpstreamConfigError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    // System roots: missing ones only matter for an https upstream signed by a public CA.
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = extra_ca {
        use rustls::pki_types::pem::PemObject;
        let ca = |e: &dyn std::fmt::Display| UpstreamConfigError::Ca {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(path).map_err(|e| ca(&e))?;
        for cert in certs {
            let cert = cert.map_err(|e| ca(&e))?;
            roots.add(cert).map_err(|e| ca(&e))?;
        }
    }
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| UpstreamConfigError::Tls {
            reason: e.to_string(),
        })
        .map(|builder| builder.with_root_certificates(roots).with_no_client_auth())
}
