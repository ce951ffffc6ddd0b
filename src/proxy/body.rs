//! The bodies the proxy streams, each a thin wrapper that watches for what the plain
//! `Incoming` body cannot tell the proxy:
//!
//! - [`ClientBody`], a client's request body on its way upstream: when it last made progress
//!   (the upstream's silence is measured from there, not from the request's start), and
//!   whether it failed because the client sent malformed framing or went away (a client
//!   fault, never an upstream error);
//! - [`UpstreamBody`], an upstream's response body on its way to the client: it fails when
//!   the upstream sends nothing for `--upstream-timeout` (nginx's `proxy_read_timeout`).
//!
//! A bodiless request needs no watching and allocates nothing.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};

use crate::metrics::{Metrics, UpstreamError};

/// What went wrong with a client's request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFault {
    /// Malformed framing: a bad chunk size or extension, a bare LF, a missing CRLF
    /// (RFC 9112 7.1).
    Malformed,
    /// The client closed or reset its connection before the body was complete.
    Aborted,
    /// The client sent no byte of the body for `--client-body-timeout` while the proxy was
    /// waiting for one.
    Timeout,
}

/// Progress and fault of one upload, shared by the body and the proxy waiting on it.
#[derive(Debug)]
pub struct Upload {
    started: Instant,
    /// Milliseconds from `started` to the last frame the client sent.
    progress_ms: AtomicU64,
    /// 0: none; else a [`ClientFault`] + 1.
    fault: AtomicU8,
    /// 1 + milliseconds from `started` since the proxy has been waiting on the client for
    /// the next frame; 0: not waiting (a frame came, or the upstream is not reading).
    waiting: AtomicU64,
}

impl Upload {
    fn new() -> Self {
        Upload {
            started: Instant::now(),
            progress_ms: AtomicU64::new(0),
            fault: AtomicU8::new(0),
            waiting: AtomicU64::new(0),
        }
    }

    fn ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    /// Since when the proxy has waited on the client for body bytes, if it is waiting.
    pub fn waiting_since(&self) -> Option<Instant> {
        match self.waiting.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(self.started + Duration::from_millis(ms - 1)),
        }
    }

    pub fn set_fault(&self, fault: ClientFault) {
        self.fault.store(fault as u8 + 1, Ordering::Relaxed);
    }

    fn progressed(&self) {
        self.progress_ms.store(self.ms(), Ordering::Relaxed);
        self.waiting.store(0, Ordering::Relaxed);
    }

    /// When the client last sent a byte of the body (its start, before the first).
    pub fn last_progress(&self) -> Instant {
        self.started + Duration::from_millis(self.progress_ms.load(Ordering::Relaxed))
    }

    pub fn fault(&self) -> Option<ClientFault> {
        match self.fault.load(Ordering::Relaxed) {
            1 => Some(ClientFault::Malformed),
            2 => Some(ClientFault::Aborted),
            3 => Some(ClientFault::Timeout),
            _ => None,
        }
    }
}

/// A client's request body as sent upstream.
#[derive(Debug)]
pub enum ClientBody {
    /// No body (or a retried bodiless request).
    Empty,
    Streaming {
        inner: Incoming,
        upload: Arc<Upload>,
    },
}

impl ClientBody {
    /// Wraps `body`; `None` for the upload when there is no body to watch.
    pub fn new(body: Incoming) -> (Self, Option<Arc<Upload>>) {
        if body.is_end_stream() {
            return (ClientBody::Empty, None);
        }
        let upload = Arc::new(Upload::new());
        let watched = ClientBody::Streaming {
            inner: body,
            upload: Arc::clone(&upload),
        };
        (watched, Some(upload))
    }
}

/// How a client body error reads: an early end or a reset is the client going away;
/// anything else is framing the client got wrong.
fn client_fault(error: &hyper::Error) -> ClientFault {
    if error.is_incomplete_message() {
        return ClientFault::Aborted;
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::{
                BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof,
            };
            if matches!(
                io.kind(),
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
            ) {
                return ClientFault::Aborted;
            }
        }
        source = cause.source();
    }
    ClientFault::Malformed
}

impl HttpBody for ClientBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ClientBody::Empty => Poll::Ready(None),
            ClientBody::Streaming { inner, upload } => {
                let polled = Pin::new(inner).poll_frame(cx);
                match &polled {
                    Poll::Ready(Some(Ok(_))) | Poll::Ready(None) => upload.progressed(),
                    Poll::Ready(Some(Err(e))) => upload.set_fault(client_fault(e)),
                    Poll::Pending => {
                        let now = upload.ms() + 1;
                        let _ = upload.waiting.compare_exchange(
                            0,
                            now,
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        );
                    }
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Empty => true,
            ClientBody::Streaming { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::Empty => SizeHint::with_exact(0),
            ClientBody::Streaming { inner, .. } => inner.size_hint(),
        }
    }
}

/// The upstream went silent mid-body for longer than `--upstream-timeout`.
#[derive(Debug)]
pub struct UpstreamSilent(pub Duration);

impl std::fmt::Display for UpstreamSilent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "upstream sent nothing for {:?}", self.0)
    }
}

impl std::error::Error for UpstreamSilent {}

/// An upstream response body with a silence timeout between frames.
pub struct UpstreamBody {
    inner: Incoming,
    timeout: Duration,
    last_frame: Instant,
    /// Armed on the first wait; reset lazily (only when it fires early), so a fast body costs
    /// one clock read per frame and no timer updates.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Where a timeout is counted (`upstream_errors_total{kind="timeout"}`).
    metrics: Arc<Metrics>,
}

impl UpstreamBody {
    pub fn new(inner: Incoming, timeout: Duration, metrics: Arc<Metrics>) -> Self {
        UpstreamBody {
            inner,
            timeout,
            last_frame: Instant::now(),
            timer: None,
            metrics,
        }
    }
}

impl HttpBody for UpstreamBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Err(e))) => {
                // The upstream broke off mid-body (reset, early close, bad framing): the
                // client's response is cut, and the upstream is at fault.
                let kind = if e.is_parse() {
                    UpstreamError::Protocol
                } else {
                    UpstreamError::Reset
                };
                this.metrics.count_upstream_error(kind);
                tracing::warn!(error = %e, "upstream response body failed");
                return Poll::Ready(Some(Err(e.into())));
            }
            Poll::Ready(frame) => {
                this.last_frame = Instant::now();
                return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
            }
            Poll::Pending => {}
        }
        loop {
            let deadline = this.last_frame + this.timeout;
            let timer = this
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())));
            match timer.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) if Instant::now() < deadline => {
                    // Frames came since it was armed: wait for the rest of the new deadline.
                    timer.as_mut().reset(deadline.into());
                }
                Poll::Ready(()) => {
                    this.metrics.count_upstream_error(UpstreamError::Timeout);
                    tracing::warn!(timeout = ?this.timeout, "upstream went silent mid-body");
                    return Poll::Ready(Some(Err(Box::new(UpstreamSilent(this.timeout)))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
