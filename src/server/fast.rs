//! The HTTP/1.1 fast path: every client connection starts here. It reads request heads
//! itself (with `httparse`, the parser hyper uses) and answers each bodiless preflight from the
//! policy's pre-rendered bytes (`cors::WireAnswers`). The first request that is anything else
//! ends it: the connection goes to hyper with every byte read so far put back in front
//! (`Rewind`), and hyper serves the rest of it as if it had been there from the start.
//!
//! Anything the fast path does not fully understand goes to hyper, which then gives its own
//! answer: a head hyper would refuse (400, 431) is handed over, not answered, so the error
//! answers are hyper's by construction. The client limits are the watchdog's (`conn`), the
//! same for both paths: the fast path reads and writes through `WatchedIo` and holds an
//! `Batch` guard (a request in flight) while it answers, as hyper's service holds `InFlight`.

use std::future::Future;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::{Buf, BufMut, BytesMut};
use http::Method;
use http::header::{
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, HeaderName, ORIGIN,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::access::Started;
use super::handler::{Context, log_denial};
use crate::conn::{Connection, FinishWatch};
use crate::cors::{self, DATE_LEN, Decision, Fields};
use crate::fetch::ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK;
use crate::syntax::{is_pchar, is_valid_authority, trim_ows};

/// Header lines the fast path reads. A head with more goes to hyper (which has its own
/// bound, `--max-headers`, and answers 431 past it); the masks below have one bit per line.
const MAX_LINES: usize = 128;

/// Longest target hyper takes (`u16::MAX - 1`); longer is its 414.
const MAX_TARGET: usize = 65_534;

/// Shortest field name hyper refuses (64 KiB); its 431.
const MAX_NAME: usize = 1 << 16;

/// Read size, and the read buffer's first capacity (as hyper's).
const READ_CHUNK: usize = 8192;

/// Responses queued for one write before writing them anyway.
const MAX_PENDING_OUTPUT: usize = 64 * 1024;

/// How the fast path ended.
pub(super) enum Ended {
    /// The client closed, or the connection was asked to finish while idle.
    Closed,
    /// Hyper serves the rest: these bytes first, then the socket.
    HandOver(BytesMut),
}

/// Serves `io` until the client closes (or the watchdog asks the connection to finish while
/// nothing is in flight), or until a request the fast path does not answer arrives.
/// `max_buf`: the head size past which hyper answers 431 (its read buffer limit). `client`:
/// the address the access log names.
pub(super) async fn serve<T: AsyncRead + AsyncWrite + Unpin>(
    io: &mut T,
    connection: &Arc<Connection>,
    context: &Context,
    client: SocketAddr,
    max_buf: usize,
    max_lines: usize,
) -> std::io::Result<Ended> {
    let log = context.access_log.as_ref();
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut out: Vec<u8> = Vec::new();
    let slots = max_lines.clamp(1, MAX_LINES);
    let mut finish = FinishWatch::default();
    loop {
        // Answer every complete preflight in the buffer (pipelining: in order, in one write).
        let mut handing_over = false;
        if !buf.is_empty() {
            let date = date();
            let mut in_flight = None;
            loop {
                let started = timed().then(Instant::now);
                // With the access log off, one more predictable branch.
                let logging = log.map(|log| Started::new(log, client));
                match answer(&buf, slots, max_buf, context, &date, &mut out, logging) {
                    Step::Answered(len) => {
                        if let Some(started) = started {
                            context
                                .metrics
                                .preflight_duration
                                .observe(started.elapsed().as_secs_f64());
                        }
                        if in_flight.is_none() {
                            in_flight = Some(connection.batch_started());
                        }
                        buf.advance(len);
                        if buf.is_empty() {
                            break;
                        }
                        if out.len() >= MAX_PENDING_OUTPUT {
                            io.write_all(&out).await?;
                            out.clear();
                        }
                    }
                    Step::Partial => break,
                    Step::HandOver => {
                        handing_over = true;
                        break;
                    }
                }
            }
            if !out.is_empty() {
                io.write_all(&out).await?;
                out.clear();
            }
            drop(in_flight);
        }
        if handing_over || buf.len() >= max_buf {
            // A head past hyper's limit also goes to hyper, for its 431.
            return Ok(Ended::HandOver(buf));
        }
        let idle = buf.is_empty();
        if !idle {
            connection.head_pending();
        }
        // Never past hyper's buffer limit: a head that does not fit is never complete here,
        // and goes to hyper, whose answer (431) it is.
        let room = max_buf.saturating_sub(buf.len()).min(READ_CHUNK);
        buf.reserve(room);
        let mut limited = (&mut buf).limit(room);
        let read = io.read_buf(&mut limited);
        tokio::pin!(read);
        // Asked to finish: an idle keep-alive connection closes at once (as hyper's graceful
        // shutdown does); a head already begun is read to its end (bounded by the head
        // timeout) and answered.
        let read = std::future::poll_fn(|cx| {
            if idle && finish.asked(connection, cx) {
                return std::task::Poll::Ready(None);
            }
            read.as_mut().poll(cx).map(Some)
        })
        .await;
        match read {
            None => return Ok(Ended::Closed),
            Some(read) => {
                if read? == 0 {
                    // A half-sent head at EOF: hyper decides what that is.
                    return Ok(if buf.is_empty() {
                        Ended::Closed
                    } else {
                        Ended::HandOver(buf)
                    });
                }
            }
        }
    }
}

enum Step {
    /// A preflight of this many bytes was answered into the output.
    Answered(usize),
    /// The head is not complete yet.
    Partial,
    /// Hyper must serve this request (and the rest of the connection).
    HandOver,
}

/// Parses the head at the start of `buf` and answers it if it is a bodiless preflight the
/// fast path fully understands.
#[inline]
fn answer(
    buf: &[u8],
    slots: usize,
    max_buf: usize,
    context: &Context,
    date: &[u8; DATE_LEN],
    out: &mut Vec<u8>,
    logging: Option<Started<'_>>,
) -> Step {
    // Left uninitialised: httparse writes the lines it parses and hands back only those, so
    // a request pays for its own lines, not for 128 (as hyper does).
    let mut lines = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_LINES];
    let mut request = httparse::Request::new(&mut []);
    let len = match request.parse_with_uninit_headers(buf, &mut lines[..slots]) {
        // A head as large as hyper's buffer is hyper's to judge (431).
        Ok(httparse::Status::Complete(len)) if len < max_buf => len,
        Ok(httparse::Status::Complete(_)) => return Step::HandOver,
        Ok(httparse::Status::Partial) => return Step::Partial,
        // Malformed, too many lines: hyper's answer (400, 431).
        Err(_) => return Step::HandOver,
    };
    // RFC 9112 3: only HTTP/1.1 (an HTTP/1.0 client's keep-alive and status line are
    // hyper's business) and an OPTIONS in origin-form (3.2.1).
    if request.version != Some(1) || request.method != Some("OPTIONS") {
        return Step::HandOver;
    }
    let Some(target) = request.path else {
        return Step::HandOver;
    };
    // Hyper refuses a target over 65 534 bytes (414).
    if target.len() > MAX_TARGET {
        return Step::HandOver;
    }
    let Some(path_len) = plain_origin_form_path(target.as_bytes()) else {
        return Step::HandOver;
    };
    let head = Head::classify(request.headers);
    if head.other {
        return Step::HandOver;
    }
    // RFC 9112 3.2: exactly one valid Host; anything else is hyper's 400 (`effective_host`).
    if head.host.count_ones() != 1 {
        return Step::HandOver;
    }
    let host = head.first(head.host);
    if !is_valid_authority(host) {
        return Step::HandOver;
    }
    let path = target.get(..path_len).unwrap_or(target);
    let view = cors::Request {
        method: &Method::OPTIONS,
        host: Some(host),
        path: path.as_bytes(),
        headers: &head,
    };
    let active = context.live.load();
    // Shadow mode: the upstream answers every preflight, through hyper's proxy (`handler`).
    if context.shadowing(&active).is_some() {
        return Step::HandOver;
    }
    let Decision::Answer(answer) = cors::decide(&active.policy, &view) else {
        // Not a preflight, or forwarded (`unmatched = "forward"`): the proxy's.
        return Step::HandOver;
    };
    if !active.wire.write(&answer, &head, date, out) {
        return Step::HandOver;
    }
    active.counters.count(&answer);
    log_denial(&answer, &view);
    if let Some(logging) = logging {
        logging.preflight(http::Version::HTTP_11, &view, &answer);
    }
    Step::Answered(len)
}

/// The length of the path of an origin-form target (RFC 9112 3.2.1) made of bytes every URI
/// parser takes as they are: `pchar`s, `/` and `?` (RFC 3986 3.3, 3.4); the path ends at the
/// first `?`. `None` for anything else (`#`, spaces, non-ASCII, `*` alone, an absolute
/// form), which is left to hyper.
#[inline]
fn plain_origin_form_path(target: &[u8]) -> Option<usize> {
    if target.first() != Some(&b'/') {
        return None;
    }
    let plain = target
        .iter()
        .all(|&b| is_pchar(b) || b == b'/' || b == b'?');
    plain.then(|| {
        target
            .iter()
            .position(|&b| b == b'?')
            .unwrap_or(target.len())
    })
}

/// A parsed head's lines, with the ones the fast path reads found once: one bit per line.
struct Head<'h, 'b> {
    lines: &'h [httparse::Header<'b>],
    host: u128,
    origin: u128,
    method: u128,
    headers: u128,
    private_network: u128,
    /// A line that makes the request hyper's: a body (`Content-Length`,
    /// `Transfer-Encoding`), `Upgrade`, `Expect`, or `Connection` other than `keep-alive`.
    other: bool,
}

impl<'h, 'b> Head<'h, 'b> {
    #[inline]
    fn classify(lines: &'h [httparse::Header<'b>]) -> Self {
        let mut head = Head {
            lines,
            host: 0,
            origin: 0,
            method: 0,
            headers: 0,
            private_network: 0,
            other: false,
        };
        for (i, line) in lines.iter().enumerate() {
            let bit = 1u128 << i;
            let name = line.name.as_bytes();
            let is = |known: &str| name.eq_ignore_ascii_case(known.as_bytes());
            match name.len() {
                // Hyper refuses a field name of 64 KiB or more (431).
                MAX_NAME.. => head.other = true,
                4 if is("host") => head.host |= bit,
                6 if is("origin") => head.origin |= bit,
                6 if is("expect") => head.other = true,
                7 if is("upgrade") => head.other = true,
                10 if is("connection") => {
                    // RFC 9112 9.3: keep-alive is HTTP/1.1's default; any other option
                    // (`close`, `upgrade`) changes what hyper does with the connection.
                    head.other |= !trim_ows(line.value).eq_ignore_ascii_case(b"keep-alive");
                }
                14 if is("content-length") => head.other = true,
                17 if is("transfer-encoding") => head.other = true,
                29 if is("access-control-request-method") => head.method |= bit,
                30 if is("access-control-request-headers") => head.headers |= bit,
                38 if is("access-control-request-private-network") => {
                    head.private_network |= bit;
                }
                _ => {}
            }
        }
        head
    }

    #[inline]
    fn first(&self, mask: u128) -> &'b [u8] {
        self.lines[mask.trailing_zeros() as usize].value
    }

    #[inline]
    fn mask(&self, name: &HeaderName) -> u128 {
        if name == ORIGIN {
            self.origin
        } else if name == ACCESS_CONTROL_REQUEST_METHOD {
            self.method
        } else if name == ACCESS_CONTROL_REQUEST_HEADERS {
            self.headers
        } else if name == ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK {
            self.private_network
        } else {
            let mut mask = 0;
            for (i, line) in self.lines.iter().enumerate() {
                if line.name.eq_ignore_ascii_case(name.as_str()) {
                    mask |= 1u128 << i;
                }
            }
            mask
        }
    }
}

impl Fields for Head<'_, '_> {
    #[inline]
    fn lines<'a>(&'a self, name: &HeaderName) -> impl Iterator<Item = &'a [u8]> + 'a {
        Lines {
            lines: self.lines,
            mask: self.mask(name),
        }
    }
}

/// The lines of one name, in order.
struct Lines<'h, 'b> {
    lines: &'h [httparse::Header<'b>],
    mask: u128,
}

impl<'h> Iterator for Lines<'h, '_> {
    type Item = &'h [u8];

    #[inline]
    fn next(&mut self) -> Option<&'h [u8]> {
        if self.mask == 0 {
            return None;
        }
        let i = self.mask.trailing_zeros() as usize;
        self.mask &= self.mask - 1;
        self.lines.get(i).map(|line| line.value)
    }
}

/// The current `Date` value (RFC 9110 6.6.1: second resolution), rendered once per second
/// per thread as hyper does, from the coarse real-time clock (a vDSO read of the last tick).
fn date() -> [u8; DATE_LEN] {
    thread_local! {
        static CACHED: std::cell::Cell<(i64, [u8; DATE_LEN])> =
            const { std::cell::Cell::new((i64::MIN, [b' '; DATE_LEN])) };
    }
    let second = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse).tv_sec;
    CACHED.with(|cached| {
        let (at, date) = cached.get();
        if at == second {
            return date;
        }
        let when = UNIX_EPOCH + Duration::from_secs(u64::try_from(second).unwrap_or(0));
        let mut rendered = [b' '; DATE_LEN];
        let text = httpdate::fmt_http_date(when);
        let n = text.len().min(DATE_LEN);
        rendered[..n].copy_from_slice(&text.as_bytes()[..n]);
        cached.set((second, rendered));
        rendered
    })
}

/// Whether to time this answer: one in [`TIMED_ONE_IN`] per thread. Two clock reads and a
/// histogram update per answer would be a tenth of the fast path's own cost; a sample keeps
/// the histogram's shape at a sixteenth of it, while `preflightd_preflight_requests_total`
/// counts every answer.
#[inline]
fn timed() -> bool {
    thread_local! {
        static COUNT: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }
    COUNT.with(|count| {
        let n = count.get().wrapping_add(1);
        count.set(n);
        n % TIMED_ONE_IN == 0
    })
}

/// One fast-path answer in this many is timed for `preflightd_preflight_duration_seconds`.
pub const TIMED_ONE_IN: u32 = 16;
