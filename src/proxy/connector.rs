//! Upstream connections under one cap (`--upstream-max-connections`), across every client
//! and protocol: a connection holds a permit from connect until it closes, and a request that
//! finds none free waits for one within `--upstream-connect-timeout`, then gets 503. Without
//! the cap an HTTP/2 client's concurrent streams each open a connection (5 clients opened
//! 1 000), and the file descriptor table fills.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use prometheus::IntGauge;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

type Inner = HttpsConnector<HttpConnector>;
type Stream = MaybeHttpsStream<TokioIo<TcpStream>>;

/// Every upstream connection was in use for the whole wait.
#[derive(Debug)]
pub struct Exhausted(pub Duration);

impl std::fmt::Display for Exhausted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no upstream connection free within {:?} (--upstream-max-connections)",
            self.0
        )
    }
}

impl std::error::Error for Exhausted {}

/// Whether an error chain says the cap was reached.
pub fn is_exhausted(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if cause.is::<Exhausted>() {
            return true;
        }
        source = cause.source();
    }
    false
}

#[derive(Clone)]
pub struct LimitedConnector {
    inner: Inner,
    permits: Arc<Semaphore>,
    wait: Duration,
    open: IntGauge,
}

impl LimitedConnector {
    pub fn new(inner: Inner, max: usize, wait: Duration, open: IntGauge) -> Self {
        LimitedConnector {
            inner,
            permits: Arc::new(Semaphore::new(max.max(1))),
            wait,
            open,
        }
    }

    /// Connects to `uri` once a permit is free (waiting at most the connect timeout).
    pub async fn connect(
        &self,
        uri: Uri,
    ) -> Result<Limited<Stream>, Box<dyn std::error::Error + Send + Sync>> {
        use tower_service::Service;
        let permit = match tokio::time::timeout(
            self.wait,
            Arc::clone(&self.permits).acquire_owned(),
        )
        .await
        {
            Ok(Ok(permit)) => permit,
            _ => return Err(Box::new(Exhausted(self.wait))),
        };
        let io = self.inner.clone().call(uri).await?;
        self.open.inc();
        Ok(Limited {
            io,
            _permit: permit,
            open: self.open.clone(),
        })
    }
}

impl tower_service::Service<Uri> for LimitedConnector {
    type Response = Limited<Stream>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The wait for a permit happens in `call`, bounded by the connect timeout.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.connect(uri).await })
    }
}

/// An upstream connection and its permit: both go when the connection is dropped.
pub struct Limited<T> {
    io: T,
    _permit: OwnedSemaphorePermit,
    open: IntGauge,
}

impl<T> Drop for Limited<T> {
    fn drop(&mut self) {
        self.open.dec();
    }
}

impl<T: Read + Unpin> Read for Limited<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for Limited<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
}

impl<T: Connection> Connection for Limited<T> {
    fn connected(&self) -> Connected {
        self.io.connected()
    }
}
