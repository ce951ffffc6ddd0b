//! The access log (`--access-log off|text|json`): one line per request, on stdout or appended
//! to `--access-log-path`, with who asked what and what they got (DESIGN 12).
//!
//! - `line`: the facts of one request and their rendering, every request value escaped
//!   (pure);
//! - `writer`: the bounded queue and the thread that writes it out (DESIGN 10: a request
//!   never waits on the log; a line that does not fit is dropped and counted in
//!   `preflightd_access_log_dropped_total`).
//!
//! A request renders its own line (into a per-thread buffer, then one allocation of the
//! line's size) and pushes it; sampling (`--access-log-sample`) is a per-thread random draw,
//! no lock and no allocation. Denials and the edge's own error answers are always logged.

mod line;
mod writer;

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::Version;
use prometheus::IntCounter;

use crate::cors::Fields;
pub use line::{Entry, FIELDS, Format, Kind, escape_text};
pub use writer::Stopper;
use writer::{Queue, Sink};

/// `--access-log*`.
#[derive(Debug, Clone)]
pub struct AccessLogConfig {
    /// `None`: off.
    pub format: Option<Format>,
    /// Appended to instead of stdout.
    pub path: Option<PathBuf>,
    /// The fraction of allowed preflights and proxied requests logged, 0.0..=1.0.
    pub sample: f64,
    /// Bytes of lines queued for the writer at most.
    pub buffer: usize,
}

/// The log requests write to.
#[derive(Debug)]
pub struct AccessLog {
    format: Format,
    /// A sampled request is logged when a draw of 64 random bits is below this;
    /// `u64::MAX` logs every request.
    threshold: u64,
    queue: Arc<Queue>,
    dropped: IntCounter,
}

impl AccessLog {
    /// Opens the output and starts the writer; `None` when the log is off. Lines dropped,
    /// for a full queue or a failed write, count in `dropped`. The writer stops (after
    /// writing what is queued) when the [`Stopper`] is dropped.
    pub fn start(
        config: &AccessLogConfig,
        dropped: IntCounter,
    ) -> std::io::Result<Option<(AccessLog, Stopper)>> {
        let Some(format) = config.format else {
            return Ok(None);
        };
        let sink = Sink::open(config.path.as_deref())?;
        let (queue, stopper) = writer::start(sink, config.buffer, dropped.clone())?;
        let log = AccessLog {
            format,
            threshold: threshold(config.sample),
            queue,
            dropped,
        };
        Ok(Some((log, stopper)))
    }

    /// Whether to log a request that `--access-log-sample` applies to (an allowed preflight,
    /// a request the upstream answered).
    #[inline]
    pub fn sampled(&self) -> bool {
        self.threshold == u64::MAX || random() < self.threshold
    }

    /// Renders `entry` and queues it for the writer, or counts it dropped when the queue is
    /// full. Never waits.
    pub fn write<F: Fields + ?Sized>(&self, entry: &Entry<'_, F>) {
        thread_local! {
            static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        }
        let line = SCRATCH.with_borrow_mut(|scratch| {
            scratch.clear();
            line::render(entry, self.format, scratch);
            let line = scratch.as_slice().to_vec();
            // A hostile head can make one line large; do not keep that much per thread.
            if scratch.capacity() > SCRATCH_KEPT {
                *scratch = Vec::new();
            }
            line
        });
        if !self.queue.push(line) {
            self.dropped.inc();
        }
    }

    /// Reopens `--access-log-path` (SIGHUP, after logrotate moved the file away).
    pub fn reopen(&self) {
        self.queue.reopen();
    }
}

/// Scratch capacity a thread keeps between lines.
const SCRATCH_KEPT: usize = 16 * 1024;

/// `sample` as a threshold on 64 random bits.
fn threshold(sample: f64) -> u64 {
    if sample >= 1.0 || sample.is_nan() {
        u64::MAX
    } else if sample <= 0.0 {
        0
    } else {
        // Exact enough: 2^-53 is the resolution of the fraction itself.
        (sample * 18_446_744_073_709_551_616.0) as u64
    }
}

/// 64 random bits from this thread's xorshift64* generator (Vigna, "An experimental
/// exploration of Marsaglia's xorshift generators"): no lock, no allocation, a few cycles.
/// A counter ("every Nth request") would alias with periodic traffic, logging only one
/// kind of an alternating pair.
#[inline]
fn random() -> u64 {
    thread_local! {
        static STATE: Cell<u64> = const { Cell::new(0) };
    }
    STATE.with(|state| {
        let mut x = state.get();
        if x == 0 {
            x = seed();
        }
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

/// A non-zero seed that differs between threads and runs.
fn seed() -> u64 {
    let now = now().as_nanos() as u64;
    let here = &now as *const u64 as u64;
    // SplitMix64's finalizer, so that close inputs give unrelated seeds.
    let mut z = now ^ here.rotate_left(32);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) | 1
}

/// Wall-clock time since the Unix epoch, for the `time` field.
#[inline]
pub fn now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// The `protocol` field of a request of `version`.
pub fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

/// A request value for a `tracing` field: written escaped as in the text access log, so a
/// debug line can carry request data without letting it forge lines.
pub struct Escaped<'a>(pub &'a [u8]);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        line::write_escaped(self.0, f)
    }
}

/// Every `name` line of a request, escaped, joined by `,`.
pub struct EscapedLines<'a, F: ?Sized>(pub &'a F, pub &'a http::HeaderName);

impl<F: Fields + ?Sized> std::fmt::Display for EscapedLines<'_, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, value) in self.0.lines(self.1).enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            line::write_escaped(value, f)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds() {
        assert_eq!(threshold(1.0), u64::MAX);
        assert_eq!(threshold(0.0), 0);
        assert_eq!(threshold(0.5), 1 << 63);
    }

    #[test]
    fn a_sample_logs_about_its_fraction() {
        let count = |sample| {
            let log = AccessLog {
                format: Format::Text,
                threshold: threshold(sample),
                queue: Arc::new(Queue::new(4096)),
                dropped: IntCounter::new("d", "d").expect("counter"),
            };
            (0..100_000).filter(|_| log.sampled()).count()
        };
        assert_eq!(count(1.0), 100_000);
        assert_eq!(count(0.0), 0);
        let tenth = count(0.1);
        assert!((9_000..11_000).contains(&tenth), "{tenth}");
    }

    #[test]
    fn escaped_display_matches_the_text_log() {
        let hostile = b"a\r\nb \"c\" \xff";
        let mut expected = Vec::new();
        escape_text(hostile, &mut expected);
        assert_eq!(Escaped(hostile).to_string().into_bytes(), expected);
        let mut headers = http::HeaderMap::new();
        headers.append(http::header::ORIGIN, http::HeaderValue::from_static("x y"));
        headers.append(http::header::ORIGIN, http::HeaderValue::from_static("z"));
        assert_eq!(
            EscapedLines(&headers, &http::header::ORIGIN).to_string(),
            "x\\x20y,z"
        );
    }
}
