//! The data listener: the accept loop (HTTP/1.1 and h2c on one port, through hyper-util's
//! auto builder) and the request handler. Everything it serves with comes in through
//! [`Context`]; the composition root (`app`) builds it and decides when to stop.

mod handler;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::proxy::ClientConnection;
pub use handler::Context;

/// How client connections are served.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Client connections open at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// Time a client has to send a request's headers (slowloris protection).
    pub header_read_timeout: Duration,
    /// Largest request head accepted (HTTP/1.1 read buffer, HTTP/2 header list).
    pub max_header_bytes: usize,
}

/// Accepts and serves connections until `shutdown` completes; then stops accepting (the
/// listener is dropped), lets requests in flight finish within `grace`, and returns.
pub async fn run(
    listener: TcpListener,
    config: &ListenerConfig,
    context: Arc<Context>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    tokio::pin!(shutdown);
    let graceful = GracefulShutdown::new();
    let limit = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let builder = connection_builder(config);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&limit).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service_context = Arc::clone(&context);
        // What the proxy keeps per client connection (its upstream connection, its address
        // as X-Forwarded-For), dropped with it.
        let client = Arc::new(ClientConnection::new(client));
        let service = service_fn(move |request| {
            handler::handle(Arc::clone(&service_context), Arc::clone(&client), request)
        });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        let gauge = context.metrics.connections_open.clone();
        gauge.inc();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            gauge.dec();
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!(grace = ?grace, "shutting down");
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace expired; closing the remaining connections");
    }
}

fn connection_builder(config: &ListenerConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // Slowloris: a client that does not finish its headers in time is dropped.
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(config.max_header_bytes.max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(Duration::from_secs(30)));
    builder
}
