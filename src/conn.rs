//! One client connection from accept to close (DESIGN 10): its place under a connection cap
//! (released only when the socket closes, upgraded tunnels included), the requests in flight,
//! and the clocks a watchdog reads to close it when it sends nothing, idles, or stops reading.
//!
//! The same mechanism serves every listener, path and protocol: the data listener's fast path,
//! its HTTP/1 and HTTP/2 connections served by hyper, the tunnels they become, and the admin
//! listener. It observes the socket through [`WatchedIo`] and the requests through
//! [`InFlight`] guards, and decides in [`Connection::check`]; it asks a connection to finish
//! gracefully with a flag its task checks ([`FinishWatch`], [`finishing`]) and
//! closes one by aborting its task.
//!
//! Clocks are milliseconds since accept in atomics, read from the coarse monotonic clock
//! (`CLOCK_MONOTONIC_COARSE`: a vDSO read of the last tick, no TSC read; a few milliseconds of
//! resolution for bounds of seconds): the request path pays that and an atomic store per
//! socket operation, no lock and no timer update. The watchdog runs in a task of its own, so
//! a request wakes only the connection's task, never the watchdog's timers and channels.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use atomic_waker::AtomicWaker;
use prometheus::IntGauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, watch};

/// The bounds of one listener's connections.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// From accept to the end of the first request head (HTTP/1), or of the preface and first
    /// HEADERS (HTTP/2), whatever the client sends or does not send; and, on an HTTP/1
    /// keep-alive connection, from the first byte of each later head to its end.
    pub header_read: Duration,
    /// No request in flight (HTTP/1 between requests, HTTP/2 with no open stream; PINGs do
    /// not count), or no byte either way on a tunnel, for this long: the connection is closed.
    pub idle: Duration,
    /// The client reads nothing of what is written to it for this long: closed.
    pub send: Duration,
}

/// Where the listener is in its life: serving, draining (finish what is in flight, take
/// nothing new), or past the shutdown grace (close everything, tunnels included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Serving,
    Draining,
    Expired,
}

/// Why the watchdog closes a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// The first head (or the next one, once started) did not complete in time.
    HeaderTimeout,
    /// Nothing in flight for the idle timeout.
    Idle,
    /// A write has been blocked on the client for the send timeout.
    SendTimeout,
    /// The listener was full and this connection had not sent a complete request: it gave
    /// its place to a new client (see [`Pressure`]).
    Evicted,
}

/// A full listener's call for room. When a listener has no free slot for a connection it
/// accepted from its backlog, it signals pressure, and every connection that has not yet
/// sent a complete request (a silent socket, a slow head) closes: a flood of idle sockets
/// cannot keep a real client (a scraper on the admin port, a browser on the data port)
/// waiting behind it in the backlog for backlog / cap x the header timeout. Lock-free: one
/// watch channel per listener.
#[derive(Debug)]
pub struct Pressure {
    tx: watch::Sender<u64>,
}

impl Pressure {
    pub fn new() -> Self {
        Pressure {
            tx: watch::channel(0).0,
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }

    /// The listener is full: idle newcomers, make room.
    pub fn raise(&self) {
        self.tx.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// A slot for a client just accepted: at once when one is free; otherwise after pressure
/// made the connections that sent nothing give way and one closed. `None` when `cancel`
/// completes first (shutdown), or the cap's semaphore is closed.
pub async fn admit(
    limit: &Arc<tokio::sync::Semaphore>,
    pressure: &Pressure,
    cancel: impl std::future::Future<Output = ()>,
) -> Option<OwnedSemaphorePermit> {
    if let Ok(permit) = Arc::clone(limit).try_acquire_owned() {
        return Some(permit);
    }
    pressure.raise();
    tokio::select! {
        permit = Arc::clone(limit).acquire_owned() => permit.ok(),
        () = cancel => None,
    }
}

impl Default for Pressure {
    fn default() -> Self {
        Self::new()
    }
}

/// What the parts of one client connection share. Dropped when the last part lets go: the
/// connection task, the requests in flight, a tunnel.
#[derive(Debug)]
pub struct Connection {
    _permit: OwnedSemaphorePermit,
    gauge: IntGauge,
    limits: Limits,
    phase: watch::Receiver<Phase>,
    pressure: watch::Receiver<u64>,
    accepted: Instant,
    /// `accepted` on the coarse clock, in milliseconds.
    accepted_ms: u64,
    /// Requests started: HTTP/1 heads or HTTP/2 streams.
    requests: AtomicU64,
    in_flight: AtomicU32,
    /// When `in_flight` last fell to 0.
    idle_since: AtomicU64,
    /// 1 + when the first byte arrived while idle (a next head begins); 0: none yet.
    head_started: AtomicU64,
    /// 1 + since when a write has been blocked on the client; 0: not blocked.
    write_blocked: AtomicU64,
    /// The last byte either way (tunnels).
    last_activity: AtomicU64,
    /// The client spoke the HTTP/2 preface: no head timeout after the first request.
    h2: AtomicBool,
    /// The watchdog asked the connection to finish gracefully (see [`FinishWatch`]).
    finish: AtomicBool,
    /// The served task, to wake when it is asked to finish.
    finish_waker: AtomicWaker,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// The watchdog's shortest interval between looks.
const MIN_TICK_MS: u64 = 50;

impl Connection {
    /// A connection just accepted: takes its `permit` and counts itself in `gauge` until
    /// dropped.
    pub fn new(
        permit: OwnedSemaphorePermit,
        gauge: IntGauge,
        limits: Limits,
        phase: watch::Receiver<Phase>,
        pressure: watch::Receiver<u64>,
    ) -> Arc<Self> {
        gauge.inc();
        Arc::new(Connection {
            _permit: permit,
            gauge,
            limits,
            phase,
            pressure,
            accepted: Instant::now(),
            accepted_ms: coarse_ms(),
            requests: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(0),
            write_blocked: AtomicU64::new(0),
            last_activity: AtomicU64::new(0),
            h2: AtomicBool::new(false),
            finish: AtomicBool::new(false),
            finish_waker: AtomicWaker::new(),
        })
    }

    #[inline]
    fn now(&self) -> u64 {
        coarse_ms().saturating_sub(self.accepted_ms)
    }

    fn at(&self, ms: u64) -> Instant {
        self.accepted + Duration::from_millis(ms)
    }

    /// The listener's phase, to follow (tunnels close when it expires).
    pub fn phase(&self) -> watch::Receiver<Phase> {
        self.phase.clone()
    }

    /// A request begins; it is in flight until the guard drops (with its response body).
    pub fn request_started(self: &Arc<Self>) -> InFlight {
        self.start_request();
        InFlight(Arc::clone(self))
    }

    /// A batch of requests begins, answered before the caller next waits for the client.
    pub fn batch_started(&self) -> Batch<'_> {
        self.start_request();
        Batch(self)
    }

    #[inline]
    fn start_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    #[inline]
    fn request_ended(&self) {
        if self.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.idle_since.store(self.now(), Ordering::Relaxed);
            self.head_started.store(0, Ordering::Relaxed);
        }
    }

    /// Bytes of a next head are already buffered when a request ends (pipelining): its head
    /// clock starts now, as if they had just arrived.
    pub fn head_pending(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0 {
            let _ = self.head_started.compare_exchange(
                0,
                self.now() + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    /// Asks the connection to finish gracefully: finish what is in flight, take nothing new.
    /// Wakes the served task if it waits in [`FinishWatch::asked`].
    pub fn ask_to_finish(&self) {
        self.finish.store(true, Ordering::Release);
        self.finish_waker.wake();
    }

    fn finish_flag(&self) -> bool {
        self.finish.load(Ordering::Acquire)
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    #[inline]
    fn on_read(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let now = self.now();
        self.last_activity.store(now, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Relaxed) == 0 {
            if self.requests.load(Ordering::Relaxed) == 0 && bytes.starts_with(H2_PREFACE) {
                self.h2.store(true, Ordering::Relaxed);
            }
            let _ = self.head_started.compare_exchange(
                0,
                now + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    #[inline]
    fn on_write(&self, ready: bool) {
        if ready {
            self.last_activity.store(self.now(), Ordering::Relaxed);
            self.write_blocked.store(0, Ordering::Relaxed);
        } else {
            let now = self.now();
            let _ = self.write_blocked.compare_exchange(
                0,
                now + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    /// The watchdog's verdict at this moment: close for a reason, or check again at the
    /// returned instant (the earliest moment a bound can trip).
    pub fn check(&self) -> Result<Instant, Close> {
        let now = self.now();
        let limit = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 4);
        // The clocks move without waking the watchdog (a write blocks, a head begins), so it
        // looks again at least every half of the shortest bound: a bound trips within 1.5x
        // its value, at the cost of one timer wake-up per connection that often.
        let shortest = self
            .limits
            .send
            .min(self.limits.header_read)
            .min(self.limits.idle);
        let mut next = now + (limit(shortest) / 2).max(MIN_TICK_MS);
        let blocked = self.write_blocked.load(Ordering::Relaxed);
        if blocked > 0 {
            let deadline = blocked - 1 + limit(self.limits.send);
            if now >= deadline {
                return Err(Close::SendTimeout);
            }
            next = next.min(deadline);
        }
        if self.in_flight.load(Ordering::Relaxed) == 0 {
            let requests = self.requests.load(Ordering::Relaxed);
            let head = self.head_started.load(Ordering::Relaxed);
            let (deadline, reason) = if requests == 0 {
                (limit(self.limits.header_read), Close::HeaderTimeout)
            } else if head > 0 && !self.h2.load(Ordering::Relaxed) {
                (
                    head - 1 + limit(self.limits.header_read),
                    Close::HeaderTimeout,
                )
            } else {
                let idle = self.idle_since.load(Ordering::Relaxed);
                (idle + limit(self.limits.idle), Close::Idle)
            };
            if now >= deadline {
                return Err(reason);
            }
            next = next.min(deadline);
        }
        Ok(self.at(next))
    }

    /// For a tunnel: the instant it idles out, or `None` if it has.
    pub fn tunnel_deadline(&self) -> Option<Instant> {
        let idle = u64::try_from(self.limits.idle.as_millis()).unwrap_or(u64::MAX / 4);
        let deadline = self.last_activity.load(Ordering::Relaxed) + idle;
        (self.now() < deadline).then(|| self.at(deadline))
    }
}

/// A request in flight on a [`Connection`]; dropping it (with the response body) ends it.
#[derive(Debug)]
pub struct InFlight(Arc<Connection>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

/// Requests in flight on a [`Connection`] that the task holding it answers before it next
/// waits (the fast path's batch of answers): an [`InFlight`] without the reference count.
#[derive(Debug)]
pub struct Batch<'c>(&'c Connection);

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

/// A client socket that tells its [`Connection`] what happens on it: bytes read (a head
/// starting, the HTTP/2 preface), writes blocked on a client that does not read.
#[derive(Debug)]
pub struct WatchedIo<T> {
    inner: T,
    connection: Arc<Connection>,
}

impl<T> WatchedIo<T> {
    pub fn new(inner: T, connection: Arc<Connection>) -> Self {
        WatchedIo { inner, connection }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WatchedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            this.connection.on_read(&buf.filled()[before..]);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WatchedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.connection.on_write(polled.is_ready());
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.connection.on_write(polled.is_ready());
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.connection.on_write(polled.is_ready());
        polled
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// How long an idle connection asked to finish gracefully may take before it is dropped.
const IDLE_FINISH: Duration = Duration::from_secs(1);

/// A served task's view of [`Connection::ask_to_finish`]: whether it was asked, and if not, a
/// wake-up when it is. The task's waker is registered once, not on every poll: registering is
/// a locked compare-and-swap, and the fast path polls its socket once per request.
#[derive(Debug, Default)]
pub struct FinishWatch {
    registered: Option<std::task::Waker>,
}

impl FinishWatch {
    #[inline]
    pub fn asked(&mut self, connection: &Connection, cx: &mut Context<'_>) -> bool {
        if connection.finish_flag() {
            return true;
        }
        if !self
            .registered
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()))
        {
            connection.finish_waker.register(cx.waker());
            self.registered = Some(cx.waker().clone());
        }
        // Asked between the first look and the registration: its wake-up may have gone to
        // no one.
        connection.finish_flag()
    }
}

/// Runs `served`, and calls `finish` on it once (HTTP/1: end after the response in flight;
/// HTTP/2: GOAWAY) when the connection is asked to finish.
pub async fn finishing<S: std::future::Future>(
    served: S,
    finish: impl FnOnce(Pin<&mut S>),
    connection: &Connection,
) -> S::Output {
    tokio::pin!(served);
    let mut finish = Some(finish);
    let mut watch = FinishWatch::default();
    std::future::poll_fn(|cx| {
        if finish.is_some()
            && watch.asked(connection, cx)
            && let Some(finish) = finish.take()
        {
            finish(served.as_mut());
        }
        served.as_mut().poll(cx)
    })
    .await
}

/// The watchdog of the connection served by the task `served`: waits until the task ends, or
/// closes the connection (aborts the task, which drops its socket) when a bound trips or the
/// shutdown grace expires. Asks the connection to finish gracefully when the listener drains
/// or the connection idles out. Returns why it was closed, if a bound tripped.
pub async fn watch(
    mut served: tokio::task::JoinHandle<()>,
    connection: &Connection,
) -> Option<Close> {
    let mut phase = connection.phase();
    let mut pressure = connection.pressure.clone();
    let mut finished = false;
    let mut idle_deadline: Option<Instant> = None;
    let closed = loop {
        if !finished && *phase.borrow() == Phase::Draining {
            connection.ask_to_finish();
            finished = true;
        }
        if *phase.borrow() == Phase::Expired {
            break None;
        }
        let next = match connection.check() {
            Ok(next) => next,
            // Idle: nothing is lost by a graceful end (HTTP/2 sends GOAWAY); give it a moment.
            Err(Close::Idle) => match idle_deadline {
                None => {
                    if !finished {
                        connection.ask_to_finish();
                        finished = true;
                    }
                    let deadline = Instant::now() + IDLE_FINISH;
                    idle_deadline = Some(deadline);
                    deadline
                }
                Some(deadline) if Instant::now() < deadline => deadline,
                Some(_) => break Some(Close::Idle),
            },
            Err(reason) => break Some(reason),
        };
        tokio::select! {
            _ = &mut served => return None,
            () = tokio::time::sleep_until(next.into()) => {}
            changed = phase.changed() => {
                if changed.is_err() {
                    // The listener is gone: nothing will ever say the grace is over.
                    return None;
                }
            }
            Ok(()) = pressure.changed() => {
                if connection.requests() == 0 && connection.in_flight.load(Ordering::Relaxed) == 0 {
                    break Some(Close::Evicted);
                }
            }
        }
    };
    served.abort();
    closed
}

/// Milliseconds on the coarse monotonic clock.
#[inline]
fn coarse_ms() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    u64::try_from(now.tv_sec).unwrap_or(0) * 1000
        + u64::try_from(now.tv_nsec).unwrap_or(0) / 1_000_000
}

/// A response body that keeps its request [`InFlight`] until it is finished or dropped, so a
/// long download is not mistaken for an idle connection.
pub struct Tracked<B> {
    body: B,
    _in_flight: InFlight,
}

impl<B> Tracked<B> {
    pub fn new(body: B, in_flight: InFlight) -> Self {
        Tracked {
            body,
            _in_flight: in_flight,
        }
    }
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}
