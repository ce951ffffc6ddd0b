//! The command line (DESIGN 2). Every flag also reads `PREFLIGHTD_<FLAG>`.

pub mod check;
pub mod explain;
pub mod import;
pub mod test;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "preflightd",
    version,
    about = "Answers CORS preflights at the edge from a rules file; proxies everything else"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Answer preflights from the rules and proxy everything else to the upstream
    Serve(Box<ServeArgs>),
    /// Validate and lint rules files or directories; exit 0 ok, 1 errors (or warnings with --deny-warnings)
    Check(CheckArgs),
    /// Show which rule answers a preflight, why each other rule does not, and the exact answer
    Explain(ExplainArgs),
    /// Turn a storage bucket's CORS configuration (S3, B2, GCS, Azure Blob, R2) into a rules
    /// file that answers preflights as the bucket does; exit 0 ok, 1 invalid or inexpressible
    /// input (2 usage)
    Import(ImportArgs),
    /// Run expectations (cases files) against rules; exit 0 all pass, 1 a case fails, 2 usage
    /// or invalid files
    Test(TestArgs),
}

/// The storage services `import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FromArg {
    /// Amazon S3: CORSConfiguration XML, AWS CLI JSON {"CORSRules": [...]}, or the console's array
    S3,
    /// Backblaze B2: the corsRules array, alone or in a bucket object
    B2,
    /// Google Cloud Storage: the JSON array of {origin, method, responseHeader, maxAgeSeconds}
    Gcs,
    /// Azure Blob Storage: <Cors><CorsRule> XML
    Azure,
    /// Cloudflare R2: the S3 shapes, or the Cloudflare API's {"rules": [...]}
    R2,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The vendor whose CORS configuration FILE holds
    #[arg(long, value_enum, env = "PREFLIGHTD_FROM")]
    pub from: FromArg,
    /// The vendor's CORS configuration; "-" reads stdin
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Write the rules file here (atomically) instead of stdout
    #[arg(
        short = 'o',
        long = "output",
        value_name = "PATH",
        env = "PREFLIGHTD_OUTPUT"
    )]
    pub output: Option<PathBuf>,
    /// Import what cannot be expressed exactly anyway, never allowing more than the vendor:
    /// a warning and a comment instead of an error
    #[arg(long, env = "PREFLIGHTD_LOSSY")]
    pub lossy: bool,
    /// Scope every imported rule to this host (exact or "*.domain"); repeatable
    #[arg(
        long,
        value_name = "HOST",
        env = "PREFLIGHTD_HOST",
        value_delimiter = ','
    )]
    pub host: Vec<String>,
    /// Scope every imported rule to this path prefix; repeatable
    #[arg(
        long,
        value_name = "PREFIX",
        env = "PREFLIGHTD_PATH",
        value_delimiter = ','
    )]
    pub path: Vec<String>,
    /// Put this in front of every rule name (e.g. "bucket-")
    #[arg(
        long,
        value_name = "PREFIX",
        default_value = "",
        env = "PREFLIGHTD_NAME_PREFIX"
    )]
    pub name_prefix: String,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Rules file or directory the [[case]] tables run against; "-" for none (every case is
    /// in a [[suite]] with its own rules)
    #[arg(value_name = "RULES", env = "PREFLIGHTD_RULES")]
    pub rules: PathBuf,
    /// Cases files, or directories of *.toml cases files
    #[arg(required = true, value_name = "CASES")]
    pub cases: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Rules files or directories of *.toml files
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Treat warnings as errors
    #[arg(long, env = "PREFLIGHTD_DENY_WARNINGS")]
    pub deny_warnings: bool,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Rules file or directory
    #[arg(long, env = "PREFLIGHTD_RULES", default_value = "rules/")]
    pub rules: PathBuf,
    /// The page's origin, as the browser sends it in `Origin`
    #[arg(long, env = "PREFLIGHTD_ORIGIN")]
    pub origin: String,
    /// The actual request's method (`Access-Control-Request-Method`)
    #[arg(long, env = "PREFLIGHTD_METHOD")]
    pub method: String,
    /// The actual request's non-safelisted header names, comma-separated
    /// (`Access-Control-Request-Headers`)
    #[arg(long, default_value = "", env = "PREFLIGHTD_HEADERS")]
    pub headers: String,
    /// The URL the page fetches (scheme and host set the Host; path the path)
    #[arg(long, default_value = "/", env = "PREFLIGHTD_URL")]
    pub url: String,
    /// The page fetches with `credentials: "include"`
    #[arg(long, env = "PREFLIGHTD_CREDENTIALS")]
    pub credentials: bool,
    /// The preflight asks for private network access
    #[arg(long, env = "PREFLIGHTD_PRIVATE_NETWORK")]
    pub private_network: bool,
    /// Exit 1 when the browser would block the request (denied, or credentials not granted);
    /// 0 when it goes on
    #[arg(long, env = "PREFLIGHTD_EXIT_CODE")]
    pub exit_code: bool,
}

fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{e} (write e.g. \"250ms\", \"10s\", \"1m\")"))
}

fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AccessLogArg {
    Off,
    Text,
    Json,
}

/// A fraction of requests, `0` to `1`.
fn fraction(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err("expected a fraction from 0 to 1 (0.01 logs one request in a hundred)".into()),
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Rules file, or directory of *.toml files
    #[arg(long, env = "PREFLIGHTD_RULES", default_value = "rules/")]
    pub rules: PathBuf,
    /// Where everything that is not a preflight goes: http://host[:port] or https://host[:port].
    /// Unset: preflights are answered, everything else gets 502
    #[arg(long, env = "PREFLIGHTD_UPSTREAM")]
    pub upstream: Option<String>,
    /// Data listener address (HTTP/1.1 and h2c; TLS with --tls-cert)
    #[arg(long, env = "PREFLIGHTD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Serve TLS on --listen with this PEM certificate chain (leaf first); repeatable, each
    /// with its --tls-key in the same order; chosen per connection by SNI, the first for a
    /// client without SNI or with an unknown name
    #[arg(
        long = "tls-cert",
        env = "PREFLIGHTD_TLS_CERT",
        value_delimiter = ',',
        requires = "tls_key"
    )]
    pub tls_cert: Vec<PathBuf>,
    /// Peers (load balancers) whose X-Forwarded-For and X-Forwarded-Proto are kept and
    /// appended to, as CIDR blocks or addresses, comma-separated; from any other peer they
    /// are replaced. Unset: every peer's are appended to
    #[arg(long, env = "PREFLIGHTD_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Option<Vec<preflightd::proxy::trusted::Cidr>>,
    /// Every connection on --listen starts with a PROXY protocol v1 or v2 header (AWS NLB,
    /// HAProxy); its client address is the one used in X-Forwarded-For and the logs. A
    /// connection without a valid one is closed
    #[arg(long, env = "PREFLIGHTD_PROXY_PROTOCOL")]
    pub proxy_protocol: bool,
    /// The PEM private key (PKCS#8, PKCS#1 or SEC1) of the --tls-cert at the same position
    #[arg(
        long = "tls-key",
        env = "PREFLIGHTD_TLS_KEY",
        value_delimiter = ',',
        requires = "tls_cert"
    )]
    pub tls_key: Vec<PathBuf>,
    /// Admin listener address (/metrics, /healthz, /readyz, /rules)
    #[arg(
        long,
        env = "PREFLIGHTD_ADMIN_LISTEN",
        default_value = "127.0.0.1:9090"
    )]
    pub admin_listen: SocketAddr,
    /// Worker threads [default: number of CPUs]
    #[arg(long, env = "PREFLIGHTD_WORKERS")]
    pub workers: Option<usize>,
    /// Client connections open at once, WebSocket tunnels included; further clients wait in
    /// the listen backlog
    #[arg(long, env = "PREFLIGHTD_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Time a client has to send a request head: from accept for the first (HTTP/2: the
    /// preface and first HEADERS), from its first byte for later ones; then the connection
    /// is closed (slowloris, silent sockets)
    #[arg(long, env = "PREFLIGHTD_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub header_read_timeout: Duration,
    /// An idle connection (HTTP/1 between requests, HTTP/2 with no open stream, a tunnel with
    /// no byte either way) is closed after this long; above load balancers' idle timeouts
    /// (AWS ALB: 60s), as nginx's keepalive_timeout (75s)
    #[arg(long, env = "PREFLIGHTD_IDLE_TIMEOUT", default_value = "75s", value_parser = duration)]
    pub idle_timeout: Duration,
    /// No byte of a request body for this long while waiting for one: 408 (nginx's
    /// client_body_timeout)
    #[arg(long, env = "PREFLIGHTD_CLIENT_BODY_TIMEOUT", default_value = "60s", value_parser = duration)]
    pub client_body_timeout: Duration,
    /// The client reads nothing of a response for this long: the connection is closed
    /// (nginx's send_timeout)
    #[arg(long, env = "PREFLIGHTD_SEND_TIMEOUT", default_value = "60s", value_parser = duration)]
    pub send_timeout: Duration,
    /// Largest request head accepted (HTTP/1.1 read buffer, HTTP/2 header list); larger gets 431
    #[arg(long, env = "PREFLIGHTD_MAX_HEADER_BYTES", default_value_t = 65_536)]
    pub max_header_bytes: usize,
    /// Most header lines in an HTTP/1 request head; more gets 431
    #[arg(long, env = "PREFLIGHTD_MAX_HEADERS", default_value_t = 100)]
    pub max_headers: usize,
    /// Concurrent streams an HTTP/2 client may open on one connection
    #[arg(
        long,
        env = "PREFLIGHTD_HTTP2_MAX_CONCURRENT_STREAMS",
        default_value_t = 100
    )]
    pub http2_max_concurrent_streams: u32,
    /// Admin listener connections open at once
    #[arg(long, env = "PREFLIGHTD_ADMIN_MAX_CONNECTIONS", default_value_t = 64)]
    pub admin_max_connections: usize,
    /// Connections open to the upstream at once, across all clients and protocols; a request
    /// that finds none free within --upstream-connect-timeout gets 503
    #[arg(
        long,
        env = "PREFLIGHTD_UPSTREAM_MAX_CONNECTIONS",
        default_value_t = 1024
    )]
    pub upstream_max_connections: usize,
    /// Time to connect to the upstream before answering 502
    #[arg(long, env = "PREFLIGHTD_UPSTREAM_CONNECT_TIMEOUT", default_value = "5s", value_parser = duration)]
    pub upstream_connect_timeout: Duration,
    /// The upstream's silence that ends an exchange: no response byte for this long after the
    /// request's last byte (504), or between reads of the response body (the response is cut)
    #[arg(long, env = "PREFLIGHTD_UPSTREAM_TIMEOUT", default_value = "60s", value_parser = duration)]
    pub upstream_timeout: Duration,
    /// Idle upstream connections are closed after this long, before the upstream closes them
    /// (Node's default keep-alive timeout is 5s)
    #[arg(long, env = "PREFLIGHTD_UPSTREAM_IDLE_TIMEOUT", default_value = "4s", value_parser = duration)]
    pub upstream_idle_timeout: Duration,
    /// Extra CA certificates (PEM) trusted for an https:// upstream, beside the system roots
    #[arg(long, env = "PREFLIGHTD_UPSTREAM_CA")]
    pub upstream_ca: Option<PathBuf>,
    /// Do not add Via, X-Forwarded-For and X-Forwarded-Proto to proxied requests
    #[arg(long, env = "PREFLIGHTD_NO_FORWARDED_HEADERS")]
    pub no_forwarded_headers: bool,
    /// Send the upstream's host in Host instead of the client's
    #[arg(long, env = "PREFLIGHTD_REWRITE_HOST")]
    pub rewrite_host: bool,
    /// On SIGTERM/SIGINT, time for requests in flight to finish before exiting
    #[arg(long, env = "PREFLIGHTD_SHUTDOWN_GRACE", default_value = "30s", value_parser = duration)]
    pub shutdown_grace: Duration,
    /// Log format on stderr; levels via RUST_LOG (default info)
    #[arg(
        long,
        env = "PREFLIGHTD_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormatArg,
    /// Access log: one line per request on stdout (or --access-log-path), as text or JSON
    #[arg(long, env = "PREFLIGHTD_ACCESS_LOG", value_enum, default_value = "off")]
    pub access_log: AccessLogArg,
    /// Append the access log to this file instead of stdout (created if missing; reopened
    /// on SIGHUP, for logrotate)
    #[arg(long, env = "PREFLIGHTD_ACCESS_LOG_PATH")]
    pub access_log_path: Option<PathBuf>,
    /// Fraction of allowed preflights and upstream answers logged, 0 to 1; denials and the
    /// edge's own errors are always logged
    #[arg(long, env = "PREFLIGHTD_ACCESS_LOG_SAMPLE", default_value = "1", value_parser = fraction)]
    pub access_log_sample: f64,
    /// Bytes of access log lines queued for the writer, 4096 to 1 GiB; past it, new lines are
    /// dropped (and counted) rather than wait
    #[arg(
        long,
        env = "PREFLIGHTD_ACCESS_LOG_BUFFER",
        default_value_t = 8 << 20,
        value_parser = clap::value_parser!(u64).range(4096..=1 << 30)
    )]
    pub access_log_buffer: u64,
    /// Quiet time after a change in the rules directory before reloading
    #[arg(long, env = "PREFLIGHTD_RELOAD_DEBOUNCE", default_value = "250ms", value_parser = duration)]
    pub reload_debounce: Duration,
    /// Interval of the periodic re-check that catches missed file events
    #[arg(long, env = "PREFLIGHTD_RELOAD_POLL", default_value = "30s", value_parser = duration)]
    pub reload_poll: Duration,
    /// Do not watch the rules directory; reload only on SIGHUP and the periodic re-check
    #[arg(long, env = "PREFLIGHTD_NO_WATCH")]
    pub no_watch: bool,
    /// Largest rule set accepted, all files together, in bytes; a larger one fails the load
    #[arg(long, env = "PREFLIGHTD_MAX_RULES_BYTES", default_value_t = preflightd::rules::DEFAULT_MAX_RULES_BYTES)]
    pub max_rules_bytes: u64,
}

impl ServeArgs {
    pub fn into_config(self) -> preflightd::app::ServeConfig {
        use preflightd::access_log::{AccessLogConfig, Format};
        use preflightd::app::{LogFormat, ServeConfig};
        use preflightd::proxy::UpstreamConfig;
        use preflightd::reload::ReloadConfig;
        use preflightd::server::ListenerConfig;
        let upstream = self
            .upstream
            .filter(|u| !u.is_empty())
            .map(|url| UpstreamConfig {
                url,
                connect_timeout: self.upstream_connect_timeout,
                response_timeout: self.upstream_timeout,
                idle_timeout: self.upstream_idle_timeout,
                max_connections: self.upstream_max_connections,
                forwarded_headers: !self.no_forwarded_headers,
                rewrite_host: self.rewrite_host,
                extra_ca: self.upstream_ca,
            });
        ServeConfig {
            reload: ReloadConfig {
                rules: self.rules,
                debounce: self.reload_debounce,
                poll: self.reload_poll,
                watch: !self.no_watch,
                max_bytes: self.max_rules_bytes,
            },
            upstream,
            listen: self.listen,
            tls_certs: self.tls_cert,
            tls_keys: self.tls_key,
            admin_listen: self.admin_listen,
            listener: ListenerConfig {
                max_connections: self.max_connections,
                header_read_timeout: self.header_read_timeout,
                idle_timeout: self.idle_timeout,
                client_body_timeout: self.client_body_timeout,
                send_timeout: self.send_timeout,
                max_header_bytes: self.max_header_bytes,
                max_headers: self.max_headers,
                http2_max_concurrent_streams: self.http2_max_concurrent_streams,
                trusted_proxies: self.trusted_proxies,
                proxy_protocol: self.proxy_protocol,
            },
            admin_max_connections: self.admin_max_connections,
            workers: self.workers.unwrap_or_else(default_workers),
            shutdown_grace: self.shutdown_grace,
            log_format: match self.log_format {
                LogFormatArg::Text => LogFormat::Text,
                LogFormatArg::Json => LogFormat::Json,
            },
            access_log: AccessLogConfig {
                format: match self.access_log {
                    AccessLogArg::Off => None,
                    AccessLogArg::Text => Some(Format::Text),
                    AccessLogArg::Json => Some(Format::Json),
                },
                path: self.access_log_path,
                sample: self.access_log_sample,
                buffer: usize::try_from(self.access_log_buffer).unwrap_or(usize::MAX),
            },
        }
    }
}
