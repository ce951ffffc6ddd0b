//! Helpers shared by the integration tests.
//!
//! Real processes on loopback: the `preflightd` binary and the `test_upstream` example, each
//! on an ephemeral port, stopped when dropped. A small raw HTTP/1.1 client shows exact bytes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

/// Every wait in these tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(20);

pub struct Process {
    pub child: Child,
    pub lines: Receiver<String>,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for an output line containing `needle`; the line.
    pub fn wait_for_line(&self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("no output line with {needle:?} within {WAIT:?}");
    }

    /// Sends a signal by name (TERM, HUP) with kill(1).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit; its exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("process {} did not exit within {WAIT:?}", self.pid());
    }

    /// Resident memory in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }
}

/// Starts `command` with its output lines (stdout or stderr) read into the `Process`;
/// `last` has the last word on the command (it may set the other stream).
fn spawn(mut command: Command, read_stdout: bool, last: impl FnOnce(&mut Command)) -> Process {
    command.stdin(Stdio::null());
    if read_stdout {
        command.stdout(Stdio::piped()).stderr(Stdio::null());
    } else {
        command.stdout(Stdio::null()).stderr(Stdio::piped());
    }
    last(&mut command);
    let mut child = command.spawn().expect("spawn");
    let (tx, rx) = channel();
    let stream: Box<dyn Read + Send> = if read_stdout {
        Box::new(child.stdout.take().expect("stdout"))
    } else {
        Box::new(child.stderr.take().expect("stderr"))
    };
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Process { child, lines: rx }
}

fn target_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_preflightd"))
        .parent()
        .expect("target dir")
        .to_path_buf()
}

pub struct Upstream {
    /// Held so that dropping the `Upstream` stops the process.
    pub _process: Process,
    pub address: SocketAddr,
}

impl Upstream {
    pub fn start() -> Upstream {
        Self::start_with(&[])
    }

    /// An HTTPS upstream with this certificate and key (PEM files).
    pub fn start_tls(cert: &std::path::Path, key: &std::path::Path) -> Upstream {
        let (cert, key) = (cert.display().to_string(), key.display().to_string());
        Self::start_with(&["127.0.0.1:0", "--tls", &cert, &key])
    }

    /// An application that answers CORS itself (`test_upstream --cors`: its policy is in the
    /// example's documentation), also allowing `origins` with credentials.
    pub fn start_cors(origins: &[&str]) -> Upstream {
        let mut args = vec!["127.0.0.1:0", "--cors"];
        for origin in origins {
            args.extend(["--cors-origin", origin]);
        }
        Self::start_with(&args)
    }

    /// Preflights a `--cors` upstream has answered (`/bulk/` ones included).
    pub fn preflights(&self) -> u64 {
        let response = send(
            self.address,
            "GET /__preflights HTTP/1.1\r\nHost: upstream\r\nConnection: close\r\n\r\n",
        );
        response.text().parse().expect("a preflight count")
    }

    fn start_with(args: &[&str]) -> Upstream {
        let (process, address) = start_example("test_upstream", args);
        Upstream {
            _process: process,
            address,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Every request the upstream has seen (but `/__log` itself).
    pub fn log(&self) -> Vec<serde_json::Value> {
        let response = send(
            self.address,
            "GET /__log HTTP/1.1\r\nHost: upstream\r\nConnection: close\r\n\r\n",
        );
        serde_json::from_slice(&response.body).expect("upstream log is JSON")
    }

    /// For each logged request in order, the value of its first `name` line ("" if none).
    pub fn seen(&self, name: &str) -> Vec<String> {
        self.log()
            .iter()
            .map(|entry| {
                logged_headers(entry)
                    .into_iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v)
                    .unwrap_or_default()
            })
            .collect()
    }
}

/// The header lines (names lowercased, in order) of one entry of [`Upstream::log`].
pub fn logged_headers(entry: &serde_json::Value) -> Vec<(String, String)> {
    serde_json::from_value(entry["headers"].clone()).expect("logged headers")
}

/// Starts an example upstream binary with `args`; it prints `listening ADDR`.
fn start_example(name: &str, args: &[&str]) -> (Process, SocketAddr) {
    let binary = target_dir().join("examples").join(name);
    assert!(
        binary.exists(),
        "{} missing: `cargo test` builds it (or `cargo build --examples`)",
        binary.display()
    );
    let mut command = Command::new(binary);
    command.args(args);
    let process = spawn(command, true, |_| {});
    let line = process.wait_for_line("listening ");
    let address = line["listening ".len()..]
        .parse()
        .unwrap_or_else(|e| panic!("{name} address {line:?}: {e}"));
    (process, address)
}

/// The `fault_upstream` example: an HTTP/1.1 upstream that misbehaves on purpose (its doc
/// comment lists the routes: `/cl-te`, `/reset-mid-body`, `/silence`, `/close-before-response`;
/// anything else answers `ok METHOD PATH body=LENGTH`).
pub struct FaultUpstream {
    /// Held so that dropping the `FaultUpstream` stops the process.
    pub _process: Process,
    pub address: SocketAddr,
}

impl FaultUpstream {
    pub fn start() -> FaultUpstream {
        Self::start_with(&[])
    }

    /// One that closes a kept-alive connection when no next request has begun within `ms` of
    /// a response (as Node's `keepAliveTimeout` does), so reusing the connection races the close.
    pub fn start_idle_close(ms: u64) -> FaultUpstream {
        Self::start_with(&["127.0.0.1:0", "--idle-close-ms", &ms.to_string()])
    }

    fn start_with(args: &[&str]) -> FaultUpstream {
        let (process, address) = start_example("fault_upstream", args);
        FaultUpstream {
            _process: process,
            address,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The whole `/__log` answer: `{"connections", "log_connections", "idle_closes",
    /// "requests": [{"connection", "method", "target", "path", "body_length"}]}`.
    pub fn log(&self) -> serde_json::Value {
        let response = send(
            self.address,
            "GET /__log HTTP/1.1\r\nHost: upstream\r\nConnection: close\r\n\r\n",
        );
        serde_json::from_slice(&response.body).expect("fault upstream log is JSON")
    }

    /// Every request seen, in arrival order (but `/__log` itself).
    pub fn requests(&self) -> Vec<serde_json::Value> {
        match self.log()["requests"].take() {
            serde_json::Value::Array(requests) => requests,
            other => panic!("fault upstream requests: {other}"),
        }
    }

    /// Connections accepted, but those that asked for the log (as [`FaultUpstream::log`] does).
    pub fn connections(&self) -> u64 {
        let log = self.log();
        let count = |key: &str| log[key].as_u64().unwrap_or_else(|| panic!("no {key}"));
        count("connections") - count("log_connections")
    }

    /// Connections closed for idling past `--idle-close-ms`.
    pub fn idle_closes(&self) -> u64 {
        self.log()["idle_closes"].as_u64().expect("idle_closes")
    }
}

#[test]
fn fault_upstream_misbehaves() {
    let upstream = FaultUpstream::start();
    let ok = send(
        upstream.address,
        "POST /ok?x=1 HTTP/1.1\r\nHost: u\r\nContent-Length: 3\r\n\r\nabc",
    );
    assert_eq!(
        (ok.status, ok.text().as_str()),
        (200, "ok POST /ok body=3\n")
    );

    // Both framings; a client that (rightly) lets chunked win reads `hello`.
    let cl_te = send(upstream.address, "GET /cl-te HTTP/1.1\r\nHost: u\r\n\r\n");
    assert_eq!(cl_te.header("content-length"), Some("3"));
    assert_eq!(cl_te.header("transfer-encoding"), Some("chunked"));
    assert_eq!(cl_te.text(), "hello");

    let read_all = |request: &str| {
        let mut stream = connect(upstream.address);
        stream.write_all(request.as_bytes()).expect("write request");
        let mut received = Vec::new();
        let mut buffer = [0; 4096];
        let end = loop {
            match stream.read(&mut buffer) {
                Ok(0) => break None,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
                Err(e) => break Some(e.kind()),
            }
        };
        (received, end)
    };
    let (received, end) = read_all("GET /reset-mid-body HTTP/1.1\r\nHost: u\r\n\r\n");
    assert!(received.starts_with(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"));
    assert!(received.len() < 100_000);
    assert_eq!(end, Some(std::io::ErrorKind::ConnectionReset));
    let (received, end) = read_all("GET /close-before-response HTTP/1.1\r\nHost: u\r\n\r\n");
    assert_eq!((received.len(), end), (0, None));

    let mut silent = connect(upstream.address);
    silent
        .write_all(b"GET /silence HTTP/1.1\r\nHost: u\r\n\r\n")
        .expect("write request");
    silent
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let error = silent
        .read(&mut [0; 64])
        .expect_err("silence answers nothing");
    assert!(matches!(
        error.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ));

    let paths: Vec<_> = upstream
        .requests()
        .iter()
        .map(|r| r["path"].as_str().unwrap_or_default().to_owned())
        .collect();
    let expected = [
        "/ok",
        "/cl-te",
        "/reset-mid-body",
        "/close-before-response",
        "/silence",
    ];
    assert_eq!(paths, expected);
    assert_eq!(upstream.connections(), 5);

    // Idle past --idle-close-ms after a response: the upstream closes the connection.
    let idle = FaultUpstream::start_idle_close(100);
    let mut stream = BufReader::new(connect(idle.address));
    stream
        .get_mut()
        .write_all(b"GET /ok HTTP/1.1\r\nHost: u\r\n\r\n")
        .expect("write request");
    assert_eq!(read_response(&mut stream).text(), "ok GET /ok body=0\n");
    assert_eq!(stream.read(&mut [0; 64]).expect("read"), 0, "closed");
    assert_eq!(idle.idle_closes(), 1);
    assert_eq!(idle.url(), format!("http://{}", idle.address));
}

pub struct Preflightd {
    pub process: Process,
    pub data: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl Preflightd {
    /// Starts `preflightd serve` with `rules` (a rules file's text) and extra flags.
    pub fn start(rules: &str, upstream: Option<&str>, extra: &[&str]) -> Preflightd {
        Self::start_with_setup(
            |dir| std::fs::write(dir.join("rules.toml"), rules).expect("write rules"),
            upstream,
            extra,
        )
    }

    /// Starts `preflightd serve --rules <dir>` after `setup` has filled the rules directory.
    pub fn start_with_setup(
        setup: impl FnOnce(&std::path::Path),
        upstream: Option<&str>,
        extra: &[&str],
    ) -> Preflightd {
        Self::start_with_command(setup, upstream, extra, |_| {})
    }

    /// As [`Preflightd::start_with_setup`], with a last word on the command (limits, env,
    /// a piped stdout).
    pub fn start_with_command(
        setup: impl FnOnce(&std::path::Path),
        upstream: Option<&str>,
        extra: &[&str],
        tweak: impl FnOnce(&mut Command),
    ) -> Preflightd {
        let dir = tempfile::tempdir().expect("tempdir");
        let rules_dir = dir.path().join("rules");
        std::fs::create_dir(&rules_dir).expect("mkdir rules");
        setup(&rules_dir);
        let mut command = Command::new(env!("CARGO_BIN_EXE_preflightd"));
        command
            .arg("serve")
            .arg("--rules")
            .arg(&rules_dir)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--log-format",
                "json",
                "--workers",
                "2",
            ])
            .args(extra)
            .env("RUST_LOG", "debug");
        if let Some(upstream) = upstream {
            command.args(["--upstream", upstream]);
        }
        let process = spawn(command, false, tweak);
        let line = process.wait_for_line("\"serving\"");
        let log: serde_json::Value = serde_json::from_str(&line).expect("json log line");
        let address = |key: &str| {
            log[key]
                .as_str()
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("no {key} in {line}"))
        };
        Preflightd {
            data: address("listen"),
            admin: address("admin"),
            process,
            dir,
        }
    }

    pub fn rules_dir(&self) -> PathBuf {
        self.dir.path().join("rules")
    }

    pub fn metrics(&self) -> String {
        let response = send(
            self.admin,
            "GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(response.status, 200);
        String::from_utf8(response.body).expect("metrics are UTF-8")
    }

    /// The value of one sample, e.g. `preflightd_proxy_requests_total{code_class="2xx"}`;
    /// 0 when the series is not exported (yet).
    pub fn metric(&self, series: &str) -> f64 {
        sample(&self.metrics(), series)
    }
}

pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[derive(Debug)]
pub struct RawResponse {
    pub status_line: String,
    pub status: u16,
    /// Header lines as received, names lowercased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub trailers: Vec<(String, String)>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub fn connect(address: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(address).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    stream.set_write_timeout(Some(WAIT)).expect("timeout");
    stream
}

/// Sends raw request bytes on a new connection and reads one response.
pub fn send(address: SocketAddr, request: &str) -> RawResponse {
    let mut stream = connect(address);
    stream.write_all(request.as_bytes()).expect("write request");
    read_response(&mut BufReader::new(stream))
}

/// Reads one HTTP/1.1 response: head, then a body framed by Content-Length, chunked encoding
/// (trailers kept) or the end of the connection.
pub fn read_response(reader: &mut impl BufRead) -> RawResponse {
    let mut status_line = String::new();
    reader.read_line(&mut status_line).expect("status line");
    let status_line = status_line.trim_end().to_owned();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = read_fields(reader);
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    let mut trailers = Vec::new();
    let bodiless = status == 204 || status == 304 || (100..200).contains(&status);
    if bodiless {
    } else if find("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).expect("chunk size");
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .expect("chunk size");
            if size == 0 {
                trailers = read_fields(reader);
                break;
            }
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).expect("chunk");
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(length) = find("content-length") {
        body = vec![0; length.parse().expect("content-length")];
        reader.read_exact(&mut body).expect("body");
    } else {
        reader.read_to_end(&mut body).expect("body");
    }
    RawResponse {
        status_line,
        status,
        headers,
        body,
        trailers,
    }
}

fn read_fields(reader: &mut impl BufRead) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("field line");
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            return fields;
        }
        let (name, value) = line.split_once(':').expect("field");
        fields.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
}

/// A preflight request's raw bytes, as a browser sends it (keep-alive, no `Connection`
/// field): the fast path answers it on a fresh connection.
pub fn preflight(path: &str, host: &str, origin: &str, method: &str, headers: &str) -> String {
    let mut request = format!(
        "OPTIONS {path} HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\nAccess-Control-Request-Method: {method}\r\n"
    );
    if !headers.is_empty() {
        request.push_str(&format!("Access-Control-Request-Headers: {headers}\r\n"));
    }
    request.push_str("\r\n");
    request
}

/// The rules most server tests run with: one rule for `api.example.com`.
pub const RULES: &str = r#"
[[rule]]
name = "web"
hosts = ["api.example.com"]
origins = ["https://app.example.com"]
methods = ["PUT", "DELETE"]
headers = ["content-type", "x-api-key"]
credentials = true
max_age = 600
"#;

/// Header names in order, without `connection` (hyper's answer to our `Connection: close`).
pub fn names(response: &RawResponse) -> Vec<&str> {
    response
        .headers
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| *n != "connection")
        .collect()
}

/// Runs the real binary with `args` (a CLI command: check, explain, test, import) to its end.
pub fn preflightd(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_preflightd"))
        .args(args)
        .output()
        .expect("run preflightd")
}

/// A finished command's standard output, as text.
pub fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A finished command's standard error, as text.
pub fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
