//! The composition root of `preflightd serve`: from one [`ServeConfig`] it builds logging,
//! the metrics, the first policy, the upstream, the runtime, the signals, the listeners and
//! the tasks, wires them together, and runs them until SIGTERM or SIGINT. Nothing else in
//! the crate starts a task or reads a signal on its own.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::access_log::{AccessLog, AccessLogConfig};
use crate::metrics::Metrics;
use crate::proxy::{Upstream, UpstreamConfig};
use crate::reload::{self, ReloadConfig};
use crate::sd_notify;
use crate::server::{self, Context, ListenerConfig};
use crate::tls;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Everything `preflightd serve` is configured with (DESIGN 2).
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub reload: ReloadConfig,
    pub upstream: Option<UpstreamConfig>,
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub listener: ListenerConfig,
    /// `--tls-cert` / `--tls-key`, in the order given: TLS on the data listener when set.
    pub tls_certs: Vec<std::path::PathBuf>,
    pub tls_keys: Vec<std::path::PathBuf>,
    /// Admin connections open at once.
    pub admin_max_connections: usize,
    pub workers: usize,
    /// On SIGTERM/SIGINT, time for requests in flight to finish before exiting.
    pub shutdown_grace: Duration,
    pub log_format: LogFormat,
    /// `--access-log*`.
    pub access_log: AccessLogConfig,
}

/// Log lines the writer buffers before it drops (and counts) new ones rather than wait.
const LOG_BUFFER_LINES: usize = 16 * 1024;

/// Logging on stderr through a bounded, non-blocking writer (DESIGN 10): a request never
/// waits on a slow log reader; lines that do not fit are dropped and counted. The guard
/// flushes what is buffered when dropped, at exit.
pub fn init_logging(
    format: LogFormat,
) -> (
    tracing_appender::non_blocking::WorkerGuard,
    tracing_appender::non_blocking::ErrorCounter,
) {
    use tracing_subscriber::EnvFilter;
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(LOG_BUFFER_LINES)
        .thread_name("preflightd-log")
        .finish(std::io::stderr());
    let drops = writer.error_counter();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    (guard, drops)
}

/// File descriptors beyond the connections: listeners, the rules watcher, log and
/// process files.
const FD_MARGIN: u64 = 64;

/// Raises the soft file-descriptor limit to the hard one (client connections, upstream
/// connections and admin connections each take one), and warns when the caps do not fit.
fn raise_fd_limit(config: &ServeConfig) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if let Some(hard) = limit.maximum
        && limit.current != Some(hard)
    {
        limit.current = Some(hard);
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!(error = %e, "cannot raise the file descriptor limit");
        }
    }
    let soft = getrlimit(Resource::Nofile).current;
    let upstream = config.upstream.as_ref().map_or(0, |u| u.max_connections);
    let needed = (config.listener.max_connections + upstream + config.admin_max_connections) as u64
        + FD_MARGIN;
    if let Some(soft) = soft
        && soft < needed
    {
        tracing::warn!(
            limit = soft,
            needed,
            "the file descriptor limit is below --max-connections + --upstream-max-connections + \
             --admin-max-connections + {FD_MARGIN}: under load, accepts will fail before the caps \
             are reached; raise the limit (ulimit -n, LimitNOFILE=) or lower the caps"
        );
    }
}

/// Runs the service until SIGTERM or SIGINT; the exit code for the process: 0 after a
/// graceful shutdown, 1 when the rules or a listener cannot be set up, 2 for a bad
/// `--upstream`.
pub fn serve(config: ServeConfig) -> ExitCode {
    let (_log_guard, log_drops) = init_logging(config.log_format);
    let metrics = match Metrics::new() {
        Ok(metrics) => Arc::new(metrics),
        Err(e) => {
            tracing::error!(error = %e, "cannot set up metrics");
            return ExitCode::FAILURE;
        }
    };
    metrics.watch_log_drops(log_drops);
    // Declared after the log guard, so dropped before it: its last lines are written while
    // the error log still works.
    let (access_log, _access_log_stopper) = match access_log(&config.access_log, &metrics) {
        Ok(started) => started.unzip(),
        Err(code) => return code,
    };
    raise_fd_limit(&config);
    // DESIGN 6: the first load must succeed, or the process exits non-zero with the errors.
    let Some(live) = reload::first_load(&config.reload, Arc::clone(&metrics)) else {
        return ExitCode::FAILURE;
    };
    let open = metrics.upstream_connections_open.clone();
    let upstream = match config
        .upstream
        .as_ref()
        .map(|u| Upstream::new(u, open.clone()))
        .transpose()
    {
        Ok(upstream) => upstream,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(2);
        }
    };
    let tls = match tls_config(&config, &metrics) {
        Ok(tls) => tls,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.workers.max(1))
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    let context = Arc::new(Context {
        live,
        metrics,
        upstream,
        access_log: access_log.map(Arc::new),
    });
    let code = runtime.block_on(run(config, context, tls));
    runtime.shutdown_timeout(Duration::from_secs(1));
    tracing::info!(code = ?code, "stopped");
    code
}

/// Starts the access log's writer when `--access-log` is on; exits 1 when its file cannot be
/// opened.
fn access_log(
    config: &AccessLogConfig,
    metrics: &Metrics,
) -> Result<Option<(AccessLog, crate::access_log::Stopper)>, ExitCode> {
    if config.format.is_none() && config.path.is_some() {
        tracing::warn!("--access-log-path is set but --access-log is off: no access log");
    }
    AccessLog::start(config, metrics.access_log_dropped.clone()).map_err(|e| {
        let path = config
            .path
            .as_ref()
            .map_or_else(|| "stdout".to_owned(), |p| p.display().to_string());
        tracing::error!(path, error = %e, "cannot open the access log");
        ExitCode::FAILURE
    })
}

async fn bind(address: SocketAddr, flag: &str) -> Option<TcpListener> {
    match TcpListener::bind(address).await {
        Ok(listener) => Some(listener),
        Err(e) => {
            tracing::error!(address = %address, error = %e, "cannot bind {flag}");
            None
        }
    }
}

/// The data listener's certificates and TLS configuration, if any. Every error of every
/// pair is logged with its file, and the process exits as for bad rules (1); unpaired flags
/// are a usage error (2).
fn tls_config(config: &ServeConfig, metrics: &Arc<Metrics>) -> Result<Option<Tls>, ExitCode> {
    if config.tls_certs.is_empty() && config.tls_keys.is_empty() {
        return Ok(None);
    }
    if config.tls_certs.len() != config.tls_keys.len() {
        tracing::error!(
            certificates = config.tls_certs.len(),
            keys = config.tls_keys.len(),
            "--tls-cert and --tls-key come in pairs"
        );
        return Err(ExitCode::from(2));
    }
    let pairs: Vec<tls::PairFiles> = config
        .tls_certs
        .iter()
        .zip(&config.tls_keys)
        .map(|(cert, key)| tls::PairFiles {
            cert: cert.clone(),
            key: key.clone(),
        })
        .collect();
    let fail = |errors: Vec<tls::PairError>| {
        for error in &errors {
            tracing::error!(file = %error.file.display(), "{}", error.reason);
        }
        tracing::error!(errors = errors.len(), "cannot serve TLS: no change made");
        ExitCode::FAILURE
    };
    let certificates = tls::Certificates::load(pairs, Arc::clone(metrics)).map_err(fail)?;
    let server = tls::server_config(Arc::clone(&certificates)).map_err(|e| fail(vec![e]))?;
    Ok(Some(Tls {
        certificates,
        server,
    }))
}

/// TLS on the data listener: what the reload task re-reads, and what handshakes use.
struct Tls {
    certificates: Arc<tls::Certificates>,
    server: Arc<rustls::ServerConfig>,
}

async fn run(config: ServeConfig, context: Arc<Context>, tls: Option<Tls>) -> ExitCode {
    let Some(listener) = bind(config.listen, "--listen").await else {
        return ExitCode::FAILURE;
    };
    let Some(admin) = bind(config.admin_listen, "--admin-listen").await else {
        return ExitCode::FAILURE;
    };
    let live = Arc::clone(&context.live);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let admin_address = local(&admin);
    let admin_config = crate::admin::AdminConfig {
        limits: config.listener.limits(),
        max_connections: config.admin_max_connections,
    };
    tokio::spawn(crate::admin::serve(
        admin,
        Arc::clone(&live),
        admin_config,
        stop_rx.clone(),
    ));
    // Signal handlers are registered before the service says it is ready, so that no early
    // SIGHUP or SIGTERM takes the default action and ends the process.
    reload::spawn(
        &config.reload,
        Arc::clone(&live),
        tls.as_ref().map(|tls| Arc::clone(&tls.certificates)),
        stop_rx,
    );
    reopen_access_log_on_sighup(&config, &context);
    let terminate = signal(SignalKind::terminate()).ok();
    let interrupt = signal(SignalKind::interrupt()).ok();
    live.set_ready(true);
    sd_notify::ready();
    tracing::info!(
        listen = %local(&listener),
        tls = tls.is_some(),
        admin = %admin_address,
        upstream = config.upstream.as_ref().map_or("(none)", |u| u.url.as_str()),
        "serving"
    );
    if context.upstream.is_none() && context.live.load().policy.shadows() {
        tracing::warn!(
            "mode = \"shadow\" without --upstream: there is nothing to compare with, so the rules answer preflights"
        );
    }
    // SIGTERM: Kubernetes sends it to start a graceful shutdown. Not ready from then on, so
    // the load balancer stops sending; requests in flight finish within the grace.
    let shutdown = async {
        shutdown_signal(terminate, interrupt).await;
        live.set_ready(false);
        sd_notify::stopping();
    };
    server::run(
        listener,
        &config.listener,
        tls.map(|tls| tokio_rustls::TlsAcceptor::from(tls.server)),
        context,
        shutdown,
        config.shutdown_grace,
    )
    .await;
    let _ = stop_tx.send(true);
    ExitCode::SUCCESS
}

/// SIGHUP reopens `--access-log-path` (logrotate's `postrotate`: `kill -HUP`), beside the
/// reload it triggers. Installed before the service is ready, as the reload's handler is.
fn reopen_access_log_on_sighup(config: &ServeConfig, context: &Context) {
    let Some(log) = context.access_log.clone() else {
        return;
    };
    if config.access_log.path.is_none() {
        return;
    }
    match signal(SignalKind::hangup()) {
        Ok(mut hangup) => {
            tokio::spawn(async move {
                while hangup.recv().await.is_some() {
                    log.reopen();
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "cannot listen for SIGHUP to reopen the access log"),
    }
}

fn local(listener: &TcpListener) -> String {
    listener
        .local_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.to_string())
}

async fn shutdown_signal(terminate: Option<Signal>, interrupt: Option<Signal>) {
    async fn recv(stream: Option<Signal>) {
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
