//! A deliberately misbehaving upstream for the integration tests (not part of preflightd).
//!
//! Raw HTTP/1.1 over tokio TCP, not hyper: it must send framing hyper refuses to produce.
//! `fault_upstream [ADDR] [--idle-close-ms N]` listens (default 127.0.0.1:0), prints
//! `listening ADDR`, and serves each connection in its own task, kept alive across requests.
//! A request's body is read to its end (Content-Length, or chunked with the chunk sizes
//! decoded and trailers skipped); `Expect: 100-continue` is answered with a 100 first;
//! `Connection: close` or HTTP/1.0 closes the connection after the response; a request it
//! cannot parse gets a 400 and a close. Routes, by path (the query is ignored):
//! - `/cl-te`: 200 with both `Content-Length: 3` and `Transfer-Encoding: chunked`, the body
//!   chunked `hello` (the Content-Length is a lie);
//! - `/reset-mid-body`: 200 with `Content-Length: 100000` and 1000 bytes of body, a 50 ms
//!   pause (so the peer has read them), then a reset (SO_LINGER 0, close: RST, not FIN);
//! - `/silence`: reads the request and never answers; holds the connection until the peer
//!   closes it;
//! - `/close-before-response`: reads the request, then closes the connection (FIN) unanswered;
//! - `/__log`: 200, one JSON object (not recorded itself):
//!   `{"connections": N, "log_connections": N, "idle_closes": N, "requests": [...]}`:
//!   every connection accepted (the one asking included); how many of those began with a
//!   `/__log` request (so `connections - log_connections` counts everyone else's);
//!   connections closed by `--idle-close-ms`; and every request seen, in arrival order, as
//!   `{"connection": C, "method": M, "target": T, "path": P, "body_length": L}` (connections
//!   are numbered from 1 in accept order);
//! - anything else (`/ok`): 200, `Content-Type: text/plain`, body
//!   `ok METHOD PATH body=LENGTH\n` (LENGTH: the request body's decoded length).
//!
//! `--idle-close-ms N`: after each response, wait at most N ms for the first byte of the next
//! request; if none comes, close the connection (FIN), as Node's `keepAliveTimeout` does, so a
//! client reusing the connection races the close.

#![allow(
    clippy::disallowed_types,
    reason = "a test upstream, not preflightd: its request log behind a Mutex is the plain tool"
)]

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A request head larger than this is refused (400, close).
const MAX_HEAD: usize = 64 * 1024;
/// A chunk-size or trailer line longer than this is refused.
const MAX_LINE: usize = 8 * 1024;

#[derive(Default)]
struct State {
    connections: AtomicU64,
    log_connections: AtomicU64,
    idle_closes: AtomicU64,
    requests: Mutex<Vec<serde_json::Value>>,
}

/// One connection: the socket and what has been read from it but not yet consumed.
struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

struct Head {
    method: String,
    target: String,
    version: String,
    /// Names lowercased, values trimmed, in order.
    headers: Vec<(String, String)>,
}

impl Head {
    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether a comma-separated header (Connection, Transfer-Encoding, Expect) holds `token`.
    fn has_token(&self, name: &str, token: &str) -> bool {
        self.all(name)
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}

enum Framing {
    None,
    Length(u64),
    Chunked,
}

fn bad(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_owned())
}

impl Conn {
    /// Reads more bytes into the buffer; 0 at the end of the stream.
    async fn fill(&mut self) -> io::Result<usize> {
        self.buf.reserve(16 * 1024);
        self.stream.read_buf(&mut self.buf).await
    }

    /// The next request head, or None if the peer closed cleanly between requests.
    async fn read_head(&mut self) -> io::Result<Option<Head>> {
        loop {
            // Empty lines before a request line are to be ignored (RFC 9112, 2.2).
            while self.buf.starts_with(b"\r\n") {
                self.buf.advance(2);
            }
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = self.buf.split_to(end + 4);
                return parse_head(&head[..end]).map(Some);
            }
            if self.buf.len() > MAX_HEAD {
                return Err(bad("request head too large"));
            }
            if self.fill().await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(io::ErrorKind::UnexpectedEof.into())
                };
            }
        }
    }

    /// One CRLF-terminated line (without the CRLF).
    async fn read_line(&mut self) -> io::Result<String> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n") {
                let line = self.buf.split_to(end + 2);
                return Ok(String::from_utf8_lossy(&line[..end]).into_owned());
            }
            if self.buf.len() > MAX_LINE {
                return Err(bad("line too long"));
            }
            if self.fill().await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Reads and drops `n` bytes.
    async fn skip(&mut self, mut n: u64) -> io::Result<()> {
        while n > 0 {
            if self.buf.is_empty() && self.fill().await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let take = n.min(self.buf.len() as u64);
            self.buf.advance(take as usize);
            n -= take;
        }
        Ok(())
    }

    /// Reads the body to its end; its (decoded) length.
    async fn read_body(&mut self, framing: Framing) -> io::Result<u64> {
        match framing {
            Framing::None => Ok(0),
            Framing::Length(n) => self.skip(n).await.map(|()| n),
            Framing::Chunked => {
                let mut total = 0u64;
                loop {
                    let line = self.read_line().await?;
                    let size = line.split(';').next().unwrap_or("").trim();
                    let size = u64::from_str_radix(size, 16).map_err(|_| bad("bad chunk size"))?;
                    if size == 0 {
                        // Trailer fields, up to the empty line.
                        while !self.read_line().await?.is_empty() {}
                        return Ok(total);
                    }
                    self.skip(size).await?;
                    total += size;
                    if !self.read_line().await?.is_empty() {
                        return Err(bad("chunk data longer than its size"));
                    }
                }
            }
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn parse_head(bytes: &[u8]) -> io::Result<Head> {
    let text = String::from_utf8_lossy(bytes);
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("bad request line"));
    };
    if method.is_empty() || target.is_empty() || !version.starts_with("HTTP/1.") {
        return Err(bad("bad request line"));
    }
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line.split_once(':').ok_or_else(|| bad("bad header line"))?;
        if name.is_empty() || name.contains([' ', '\t']) {
            return Err(bad("bad header name"));
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    Ok(Head {
        method: method.to_owned(),
        target: target.to_owned(),
        version: version.to_owned(),
        headers,
    })
}

/// How the request body is framed: chunked wins over Content-Length (RFC 9112, 6.3).
fn framing(head: &Head) -> io::Result<Framing> {
    if head.all("transfer-encoding").next().is_some() {
        return if head.has_token("transfer-encoding", "chunked") {
            Ok(Framing::Chunked)
        } else {
            Err(bad("transfer-encoding without chunked"))
        };
    }
    let mut length = None;
    for value in head.all("content-length").flat_map(|v| v.split(',')) {
        let n: u64 = value
            .trim()
            .parse()
            .map_err(|_| bad("bad content-length"))?;
        if length.is_some_and(|l| l != n) {
            return Err(bad("conflicting content-length"));
        }
        length = Some(n);
    }
    Ok(length.map_or(Framing::None, Framing::Length))
}

/// What to do with the connection after a request.
enum Next {
    KeepAlive,
    Close,
}

async fn serve(stream: TcpStream, number: u64, state: Arc<State>, idle_close: Option<Duration>) {
    let _ = stream.set_nodelay(true);
    let mut conn = Conn {
        stream,
        buf: BytesMut::with_capacity(16 * 1024),
    };
    let mut first = true;
    loop {
        // With --idle-close-ms, the next request's first byte must come in time.
        if !first
            && conn.buf.is_empty()
            && let Some(idle) = idle_close
        {
            match tokio::time::timeout(idle, conn.fill()).await {
                Ok(Ok(0) | Err(_)) => return,
                Ok(Ok(_)) => {}
                Err(_elapsed) => {
                    state.idle_closes.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
        match request(&mut conn, number, first, &state).await {
            Ok(Next::KeepAlive) => first = false,
            Ok(Next::Close) => return,
            Err(e) => {
                if e.kind() == io::ErrorKind::InvalidData {
                    let _ = conn
                        .write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .await;
                }
                return;
            }
        }
    }
}

/// Reads one request and answers it (or, by design, does not).
async fn request(conn: &mut Conn, number: u64, first: bool, state: &State) -> io::Result<Next> {
    let Some(head) = conn.read_head().await? else {
        return Ok(Next::Close);
    };
    let framing = framing(&head)?;
    if !matches!(framing, Framing::None) && head.has_token("expect", "100-continue") {
        conn.write(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
    }
    let body_length = conn.read_body(framing).await?;
    let path = head.path().to_owned();
    let close = head.has_token("connection", "close")
        || (head.version == "HTTP/1.0" && !head.has_token("connection", "keep-alive"));
    let after = if close { Next::Close } else { Next::KeepAlive };

    if path == "/__log" {
        if first {
            state.log_connections.fetch_add(1, Ordering::Relaxed);
        }
        let requests = state.requests.lock().map(|r| r.clone()).unwrap_or_default();
        let body = serde_json::json!({
            "connections": state.connections.load(Ordering::Relaxed),
            "log_connections": state.log_connections.load(Ordering::Relaxed),
            "idle_closes": state.idle_closes.load(Ordering::Relaxed),
            "requests": requests,
        })
        .to_string();
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/json\r\n\r\n{body}",
            body.len()
        );
        conn.write(response.as_bytes()).await?;
        return Ok(after);
    }

    if let Ok(mut requests) = state.requests.lock() {
        requests.push(serde_json::json!({
            "connection": number, "method": head.method, "target": head.target,
            "path": path, "body_length": body_length,
        }));
    }

    match path.as_str() {
        "/cl-te" => {
            conn.write(
                b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            )
            .await?;
            Ok(after)
        }
        "/reset-mid-body" => {
            let mut response = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n".to_vec();
            response.extend_from_slice(&[b'x'; 1000]);
            conn.write(&response).await?;
            tokio::time::sleep(Duration::from_millis(50)).await;
            // SO_LINGER 0: closing sends RST at once (a zero linger never blocks the thread).
            conn.stream.set_zero_linger()?;
            Ok(Next::Close)
        }
        "/silence" => {
            // Never answer; drain whatever else comes until the peer closes (or resets).
            let mut scratch = [0u8; 4096];
            while matches!(conn.stream.read(&mut scratch).await, Ok(n) if n > 0) {}
            Ok(Next::Close)
        }
        "/close-before-response" => Ok(Next::Close),
        _ => {
            let body = format!("ok {} {path} body={body_length}\n", head.method);
            let mut response = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n",
                body.len()
            );
            if head.method != "HEAD" {
                response.push_str(&body);
            }
            conn.write(response.as_bytes()).await?;
            Ok(after)
        }
    }
}

fn usage() -> ! {
    eprintln!("usage: fault_upstream [ADDR] [--idle-close-ms N]");
    std::process::exit(2);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut address = "127.0.0.1:0".to_owned();
    let mut idle_close = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--idle-close-ms" => match args.next().and_then(|n| n.parse().ok()) {
                Some(ms) => idle_close = Some(Duration::from_millis(ms)),
                None => usage(),
            },
            a if a.starts_with("--") => usage(),
            _ => address = arg,
        }
    }
    let listener = match TcpListener::bind(&address).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("fault_upstream: cannot bind {address}: {e}");
            std::process::exit(1);
        }
    };
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    println!("listening {local}");
    let _ = io::Write::flush(&mut io::stdout());
    let state = Arc::new(State::default());
    loop {
        let Ok((stream, _peer)) = listener.accept().await else {
            // Out of descriptors, say: let some close rather than spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let number = state.connections.fetch_add(1, Ordering::Relaxed) + 1;
        tokio::spawn(serve(stream, number, Arc::clone(&state), idle_close));
    }
}
