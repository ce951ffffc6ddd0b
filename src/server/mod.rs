//! `preflightd serve`: the data listener (HTTP/1.1 and h2c on one port), the admin listener,
//! and graceful shutdown.

mod handler;
pub mod state;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::metrics::Metrics;
use crate::proxy::{Upstream, UpstreamConfig};
use crate::reload;
use state::Shared;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub rules: PathBuf,
    pub upstream: Option<UpstreamConfig>,
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub workers: usize,
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    pub shutdown_grace: Duration,
    pub log_format: LogFormat,
    pub reload_debounce: Duration,
    pub reload_poll: Duration,
    /// Watch the rules directory for changes (off: SIGHUP and the periodic re-check only).
    pub watch: bool,
}

pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Runs the service until SIGTERM or SIGINT; the exit code for the process.
pub fn serve(config: ServeConfig) -> ExitCode {
    init_logging(config.log_format);
    let metrics = match Metrics::new() {
        Ok(metrics) => metrics,
        Err(e) => {
            tracing::error!(error = %e, "cannot set up metrics");
            return ExitCode::FAILURE;
        }
    };
    // DESIGN 6: the first load must succeed, or the process exits non-zero with the errors.
    let generations = AtomicU64::new(0);
    let first = reload::read(&config.rules)
        .and_then(|(sources, sha)| reload::compile_sources(&sources, sha));
    let candidate = match first {
        Ok(candidate) => candidate,
        Err(errors) => {
            for line in &errors.0 {
                eprintln!("{line}");
            }
            eprintln!("{}: rules not loaded; not starting", config.rules.display());
            return ExitCode::FAILURE;
        }
    };
    for warning in &candidate.warnings {
        tracing::warn!("{warning}");
    }
    metrics.count_reload("success", "startup");
    let active = reload::activate(candidate, &metrics, &generations);
    tracing::info!(
        rules = active.policy.rules.len(),
        sha256 = %active.sha256,
        path = %config.rules.display(),
        "rules loaded"
    );
    let upstream = match config.upstream.as_ref().map(Upstream::new).transpose() {
        Ok(upstream) => upstream,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.workers.max(1))
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let shared = Arc::new(Shared {
        active: ArcSwap::new(active),
        metrics,
        upstream,
        rules_path: config.rules.clone(),
        generations,
        ready: AtomicBool::new(false),
    });
    let code = runtime.block_on(run(config, shared));
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}

async fn run(config: ServeConfig, shared: Arc<Shared>) -> ExitCode {
    let listener = match TcpListener::bind(config.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(address = %config.listen, error = %e, "cannot bind --listen");
            return ExitCode::FAILURE;
        }
    };
    let admin = match TcpListener::bind(config.admin_listen).await {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(address = %config.admin_listen, error = %e, "cannot bind --admin-listen");
            return ExitCode::FAILURE;
        }
    };
    let admin_address = local(&admin);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(crate::admin::serve(
        admin,
        Arc::clone(&shared),
        stop_rx.clone(),
    ));
    crate::reload::spawn_watchers(&config, Arc::clone(&shared), stop_rx.clone());
    // Registered before the server says it is ready, so no early SIGTERM is lost.
    use tokio::signal::unix::{SignalKind, signal};
    let terminate = signal(SignalKind::terminate());
    let interrupt = signal(SignalKind::interrupt());
    shared.ready.store(true, Ordering::Release);
    crate::notify::ready();
    tracing::info!(
        listen = %local(&listener),
        admin = %admin_address,
        upstream = config.upstream.as_ref().map_or("(none)", |u| u.url.as_str()),
        "serving"
    );
    let shutdown = shutdown_signal(terminate.ok(), interrupt.ok());
    tokio::pin!(shutdown);
    let graceful = GracefulShutdown::new();
    let limit = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let builder = connection_builder(&config);
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
        let service_shared = Arc::clone(&shared);
        // What the proxy keeps per client connection (its upstream connection, its address
        // as X-Forwarded-For), dropped with it.
        let client = Arc::new(crate::proxy::ClientConnection::new(client));
        let service = service_fn(move |request| {
            handler::handle(Arc::clone(&service_shared), Arc::clone(&client), request)
        });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        let gauge = shared.metrics.connections_open.clone();
        gauge.inc();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            gauge.dec();
            drop(permit);
        });
    }
    // SIGTERM: Kubernetes sends it to start a graceful shutdown. Stop accepting (the listener
    // is dropped), let requests in flight finish within the grace, then exit 0.
    drop(listener);
    shared.ready.store(false, Ordering::Release);
    crate::notify::stopping();
    tracing::info!(grace = ?config.shutdown_grace, "shutting down");
    if tokio::time::timeout(config.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace expired; closing the remaining connections");
    }
    let _ = stop_tx.send(true);
    ExitCode::SUCCESS
}

fn local(listener: &TcpListener) -> String {
    listener
        .local_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.to_string())
}

fn connection_builder(config: &ServeConfig) -> auto::Builder<TokioExecutor> {
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

async fn shutdown_signal(
    terminate: Option<tokio::signal::unix::Signal>,
    interrupt: Option<tokio::signal::unix::Signal>,
) {
    async fn recv(stream: Option<tokio::signal::unix::Signal>) {
        match stream {
            Some(mut stream) => {
                stream.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    }
    tokio::select! {
        () = recv(interrupt) => tracing::info!("SIGINT received"),
        () = recv(terminate) => tracing::info!("SIGTERM received"),
    }
}
