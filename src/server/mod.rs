//! The data listener: the accept loop, each connection under the watchdog of `conn` from
//! accept to close; the HTTP/1.1 fast path every connection starts on (`fast`); hyper
//! (HTTP/1.1 and h2c on one port, through hyper-util's auto builder) for the rest of a
//! connection from its first request the fast path does not answer (`rewind`); and hyper's
//! request handler (`handler`). Everything it serves with comes in through [`Context`]; the composition
//! root (`app`) builds it and decides when to stop.

mod access;
mod fast;
mod handler;
mod rewind;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use crate::conn::{self, Close, Connection, Limits, Phase, Pressure, WatchedIo};
use crate::metrics::{ClientError, Metrics, TlsHandshake};
use crate::proxy::ClientConnection;
use crate::proxy::trusted::{Cidr, keeps_forwarded_fields};
pub use handler::Context;
use rewind::Rewind;

/// How client connections are served (DESIGN 10: every bound a flag).
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Client connections open at once, tunnels included; further clients wait in the listen
    /// backlog.
    pub max_connections: usize,
    /// Time a client has to send a request head: from accept for the first (whatever it
    /// sends, the HTTP/2 preface and first HEADERS included), from its first byte for the
    /// later ones.
    pub header_read_timeout: Duration,
    /// An HTTP/1 keep-alive connection between requests, an HTTP/2 connection with no open
    /// stream, a tunnel with no byte either way: closed after this long.
    pub idle_timeout: Duration,
    /// No byte of a request body for this long while waiting for one: 408.
    pub client_body_timeout: Duration,
    /// The client reads nothing of a response for this long: closed.
    pub send_timeout: Duration,
    /// Largest request head accepted (HTTP/1.1 read buffer, HTTP/2 header list).
    pub max_header_bytes: usize,
    /// Most header lines in an HTTP/1 request head; more is a 431.
    pub max_headers: usize,
    /// Concurrent streams an HTTP/2 client may open on one connection.
    pub http2_max_concurrent_streams: u32,
    /// `--trusted-proxies`: the peers whose `X-Forwarded-*` are kept; `None`: every peer's.
    pub trusted_proxies: Option<Vec<Cidr>>,
    /// `--proxy-protocol`: every connection starts with a PROXY v1 or v2 header.
    pub proxy_protocol: bool,
}

impl ListenerConfig {
    pub fn limits(&self) -> Limits {
        Limits {
            header_read: self.header_read_timeout,
            idle: self.idle_timeout,
            send: self.send_timeout,
        }
    }
}

/// Bytes an HTTP/2 stream may have in flight towards preflightd before it reads them (the
/// receive window), and the connection's total: what a client can make preflightd buffer.
const H2_STREAM_WINDOW: u32 = 256 * 1024;
const H2_CONNECTION_WINDOW: u32 = 1024 * 1024;
/// Bytes of a response queued per HTTP/2 stream for a client that does not read.
const H2_SEND_BUFFER: usize = 64 * 1024;

/// Accepts and serves connections until `shutdown` completes; then stops accepting (the
/// listener is dropped), asks every connection to finish, waits for all of them (tunnels
/// included) within `grace`, and closes what is left.
pub async fn run(
    listener: TcpListener,
    config: &ListenerConfig,
    tls: Option<TlsAcceptor>,
    context: Arc<Context>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    tokio::pin!(shutdown);
    let (phase_tx, phase) = watch::channel(Phase::Serving);
    let max = config.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let limit = Arc::new(Semaphore::new(max));
    let pressure = Pressure::new();
    let shared = Arc::new(PerListener {
        builder: connection_builder(config),
        max_buf: hyper_max_buf(config),
        max_headers: config.max_headers,
        client_body_timeout: config.client_body_timeout,
        tls,
        trusted_proxies: config.trusted_proxies.clone(),
        proxy_protocol: config.proxy_protocol,
    });
    let limits = config.limits();
    loop {
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    if let Some(suppressed) = ACCEPT_LOG.allow() {
                        tracing::warn!(suppressed, error = %e, "accept failed");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // A client is here. Without a free slot, connections that have sent nothing make
        // room (see `conn::Pressure`); the client waits for the first slot that frees, and
        // the clients behind it wait in the listen backlog.
        let Some(permit) = conn::admit(&limit, &pressure, &mut shutdown).await else {
            break;
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection::new(
            permit,
            context.metrics.connections_open.clone(),
            limits,
            phase.clone(),
            pressure.subscribe(),
        );
        // Two tasks: the connection, woken by its socket; its watchdog, woken by its timer
        // and the listener (see `conn`).
        let served = tokio::spawn(serve_connection(
            stream,
            client,
            Arc::clone(&connection),
            Arc::clone(&context),
            Arc::clone(&shared),
        ));
        let metrics = Arc::clone(&context.metrics);
        tokio::spawn(async move {
            let closed = conn::watch(served, &connection).await;
            count_close(&metrics, closed);
        });
    }
    drop(listener);
    let _ = phase_tx.send(Phase::Draining);
    tracing::info!(grace = ?grace, "shutting down");
    // Every connection holds a permit until its socket closes, tunnels included: holding
    // them all means everything has finished.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(grace, limit.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace expired; closing the remaining connections");
        let _ = phase_tx.send(Phase::Expired);
        // Let the connections and tunnels see it and close their sockets.
        let _ = tokio::time::timeout(Duration::from_secs(1), limit.acquire_many(all)).await;
    }
}

/// What every connection of one listener is served with.
struct PerListener {
    builder: auto::Builder<TokioExecutor>,
    /// Hyper's HTTP/1 read buffer limit: a head that does not fit is its 431.
    max_buf: usize,
    max_headers: usize,
    client_body_timeout: Duration,
    /// TLS on this listener (`--tls-cert`).
    tls: Option<TlsAcceptor>,
    trusted_proxies: Option<Vec<Cidr>>,
    proxy_protocol: bool,
}

/// One client connection: its PROXY header when the listener expects one, then the TLS
/// handshake when it serves TLS (both under the watchdog's first-head clock, like everything
/// before the first request), then [`serve_io`].
async fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    connection: Arc<Connection>,
    context: Arc<Context>,
    shared: Arc<PerListener>,
) {
    let (client, rest) = if shared.proxy_protocol {
        match crate::proxy_protocol::read(&mut stream).await {
            Ok((address, rest)) => (address.unwrap_or(peer), rest),
            Err(e) => {
                context
                    .metrics
                    .count_client_error(ClientError::ProxyProtocol);
                if let Some(suppressed) = PROXY_LOG.allow() {
                    tracing::warn!(peer = %peer, suppressed, error = %e, "connection closed");
                }
                return;
            }
        }
    } else {
        (peer, bytes::Bytes::new())
    };
    let stream = Rewind::new(stream, rest);
    match &shared.tls {
        None => serve_io(stream, false, client, connection, context, &shared).await,
        Some(acceptor) => match acceptor.accept(stream).await {
            Ok(stream) => {
                context.metrics.count_tls_handshake(TlsHandshake::Success);
                serve_io(stream, true, client, connection, context, &shared).await;
            }
            Err(e) => {
                context
                    .metrics
                    .count_tls_handshake(crate::tls::handshake_failure(&e));
                tracing::debug!(error = %e, "TLS handshake failed");
            }
        },
    }
}

static PROXY_LOG: crate::throttle::Throttle = crate::throttle::Throttle::new();

/// One client connection's bytes: the fast path first (`fast`), then, from the first request
/// it does not answer, hyper with the bytes read so far. Asked to finish
/// (`Connection::ask_to_finish`), the fast path closes when idle, and hyper shuts down
/// gracefully. `secure`: it came over TLS (`X-Forwarded-Proto: https`).
async fn serve_io<S>(
    stream: S,
    secure: bool,
    client: SocketAddr,
    connection: Arc<Connection>,
    context: Arc<Context>,
    shared: &PerListener,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut io = WatchedIo::new(stream, Arc::clone(&connection));
    let rest = match fast::serve(
        &mut io,
        &connection,
        &context,
        client,
        shared.max_buf,
        shared.max_headers,
    )
    .await
    {
        Ok(fast::Ended::HandOver(rest)) => rest.freeze(),
        Ok(fast::Ended::Closed) | Err(_) => return,
    };
    // What the proxy keeps per client connection (its upstream connection, its address as
    // X-Forwarded-For, the connection a tunnel holds), dropped with it.
    let client = Arc::new(ClientConnection::new(
        client,
        Arc::clone(&connection),
        shared.client_body_timeout,
        secure,
        keeps_forwarded_fields(shared.trusted_proxies.as_deref(), client.ip()),
    ));
    let service_connection = Arc::clone(&connection);
    let access_log = context.access_log.clone();
    let address = client.address();
    let service = service_fn(move |request| {
        let in_flight = service_connection.request_started();
        handler::handle(
            Arc::clone(&context),
            Arc::clone(&client),
            request,
            in_flight,
        )
    });
    let io = TokioIo::new(Rewind::new(io, rest));
    let served = shared.builder.serve_connection_with_upgrades(io, service);
    let served = conn::finishing(served, |served| served.graceful_shutdown(), &connection).await;
    if let (Err(error), Some(log)) = (served, access_log) {
        access::refused_by_hyper(&log, address, error.as_ref());
    }
}

/// Hyper's HTTP/1 read buffer limit for `config` (it takes nothing below 8 KiB).
fn hyper_max_buf(config: &ListenerConfig) -> usize {
    config.max_header_bytes.max(8192)
}

static ACCEPT_LOG: crate::throttle::Throttle = crate::throttle::Throttle::new();

fn count_close(metrics: &Metrics, closed: Option<Close>) {
    let kind = match closed {
        Some(Close::HeaderTimeout) => ClientError::HeaderTimeout,
        Some(Close::SendTimeout) => ClientError::SendTimeout,
        Some(Close::Evicted) => ClientError::Evicted,
        Some(Close::Idle) | None => return,
    };
    metrics.count_client_error(kind);
    tracing::debug!(reason = ?closed, "connection closed by the watchdog");
}

fn connection_builder(config: &ListenerConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // The head timeouts are the watchdog's (`conn`): it covers the bytes before hyper
        // knows the protocol, and tells a keep-alive idle connection from a slow head.
        .header_read_timeout(None)
        .max_buf_size(hyper_max_buf(config))
        .max_headers(config.max_headers)
        // Copy response bytes into one bounded buffer (max_buf_size) instead of queueing the
        // upstream's buffers: a client that stops reading then pins 64 KiB, not every read
        // buffer of the upstream connection that its queued frames point into.
        .writev(false)
        // A client that shuts down its sending side after a complete request still gets the
        // response (RFC 9112 9.6: a half-close is not an abort).
        .half_close(true)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(config.http2_max_concurrent_streams)
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .max_send_buf_size(H2_SEND_BUFFER)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    builder
}
