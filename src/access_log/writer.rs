//! The access log's writer (DESIGN 10: logging never blocks a request): a bounded lock-free
//! queue that requests push finished lines to without waiting, and one thread of its own that
//! writes them out in batches. When the queue is full (a slow disk, a stdout nobody reads),
//! a new line is dropped and counted instead; the writer may block on its output, requests
//! never do.
//!
//! The thread polls the queue every millisecond while lines come (so a write carries every
//! line of that millisecond), and parks after a tenth of a second without one; the first
//! line after that wakes it. A request thus pays a push (two atomic operations), a fence and
//! a load, and one `unpark` only when the writer was asleep.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use prometheus::IntCounter;

/// Lines the writer takes from the queue for one write, at most about this many bytes (a
/// Linux pipe's default capacity).
const BATCH_BYTES: usize = 64 * 1024;

/// The queue's slots per byte of budget: a line is well over 100 bytes, so the byte budget,
/// not the slot count, is what binds.
const BYTES_PER_SLOT: usize = 128;

/// Most slots, whatever the budget: they are allocated up front (32 bytes each).
const MAX_SLOTS: usize = 1 << 20;

/// Sleep between looks at the queue while lines come.
const POLL: Duration = Duration::from_millis(1);

/// Empty looks before the writer parks until woken (a tenth of a second).
const POLLS_BEFORE_PARKING: u32 = 100;

/// On shutdown, time the writer gets to write what is queued before the process exits
/// without it (its output may be blocked for good).
const FLUSH_WAIT: Duration = Duration::from_secs(2);

/// What requests push lines to.
#[derive(Debug)]
pub struct Queue {
    lines: ArrayQueue<Vec<u8>>,
    /// Bytes of the lines in `lines`.
    bytes: AtomicUsize,
    budget: usize,
    /// The writer is parked (or about to be): the next push wakes it.
    asleep: AtomicBool,
    stop: AtomicBool,
    reopen: AtomicBool,
    thread: OnceLock<Thread>,
}

impl Queue {
    pub(super) fn new(budget: usize) -> Self {
        Queue {
            lines: ArrayQueue::new((budget / BYTES_PER_SLOT).clamp(64, MAX_SLOTS)),
            bytes: AtomicUsize::new(0),
            budget,
            asleep: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            reopen: AtomicBool::new(false),
            thread: OnceLock::new(),
        }
    }

    /// Queues `line` for the writer; `false` (the line dropped) when the queue is full.
    /// Never waits.
    #[inline]
    pub fn push(&self, line: Vec<u8>) -> bool {
        let len = line.len();
        if self.bytes.fetch_add(len, Ordering::Relaxed) + len > self.budget {
            self.bytes.fetch_sub(len, Ordering::Relaxed);
            return false;
        }
        if self.lines.push(line).is_err() {
            self.bytes.fetch_sub(len, Ordering::Relaxed);
            return false;
        }
        // Pairs with the writer's fence between `asleep = true` and its last look at the
        // queue: either it sees this line, or this sees it asleep and wakes it.
        fence(Ordering::SeqCst);
        if self.asleep.load(Ordering::Relaxed) && self.asleep.swap(false, Ordering::AcqRel) {
            self.wake();
        }
        true
    }

    fn wake(&self) {
        if let Some(thread) = self.thread.get() {
            thread.unpark();
        }
    }

    /// Asks the writer to reopen its file (`--access-log-path`) before its next write: after
    /// logrotate moved it away, lines go to a new file at the path.
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Release);
        self.wake();
    }
}

/// Where lines go.
#[derive(Debug)]
pub enum Sink {
    Stdout,
    /// Appended to (`O_APPEND`), created when missing.
    File {
        path: PathBuf,
        file: File,
    },
}

impl Sink {
    /// Standard output, or the file at `path` opened for appending.
    pub fn open(path: Option<&Path>) -> std::io::Result<Sink> {
        match path {
            None => Ok(Sink::Stdout),
            Some(path) => Ok(Sink::File {
                path: path.to_path_buf(),
                file: append(path)?,
            }),
        }
    }

    fn write(&mut self, batch: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(batch)?;
                out.flush()
            }
            Sink::File { file, .. } => file.write_all(batch),
        }
    }

    fn reopen(&mut self) {
        if let Sink::File { path, file } = self {
            match append(path) {
                Ok(new) => *file = new,
                Err(e) => tracing::warn!(
                    path = %path.display(),
                    error = %e,
                    "cannot reopen the access log; writing on to the file already open"
                ),
            }
        }
    }
}

fn append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().append(true).create(true).open(path)
}

/// Starts the writer thread on `sink`, with a queue of at most `budget` bytes; lines it
/// fails to write count in `dropped`. The [`Stopper`] ends it.
pub fn start(
    sink: Sink,
    budget: usize,
    dropped: IntCounter,
) -> std::io::Result<(Arc<Queue>, Stopper)> {
    let queue = Arc::new(Queue::new(budget));
    let (done_tx, done) = std::sync::mpsc::channel();
    let for_thread = Arc::clone(&queue);
    let thread = std::thread::Builder::new()
        .name("preflightd-access-log".into())
        .spawn(move || {
            run(&for_thread, sink, &dropped);
            let _ = done_tx.send(());
        })?;
    let _ = queue.thread.set(thread.thread().clone());
    Ok((
        Arc::clone(&queue),
        Stopper {
            queue,
            done,
            _thread: thread,
        },
    ))
}

/// Ends the writer when dropped: what is queued is written (for up to two seconds), then the
/// thread exits.
#[derive(Debug)]
pub struct Stopper {
    queue: Arc<Queue>,
    done: std::sync::mpsc::Receiver<()>,
    _thread: std::thread::JoinHandle<()>,
}

impl Drop for Stopper {
    fn drop(&mut self) {
        self.queue.stop.store(true, Ordering::Release);
        self.queue.wake();
        // Not joined: a writer blocked on a pipe nobody reads must not hold up the exit.
        let _ = self.done.recv_timeout(FLUSH_WAIT);
    }
}

static WRITE_FAILED: crate::throttle::Throttle = crate::throttle::Throttle::new();

fn run(queue: &Queue, mut sink: Sink, dropped: &IntCounter) {
    let mut batch = Vec::with_capacity(BATCH_BYTES + 4096);
    let mut empty_looks = 0;
    loop {
        let mut lines = 0;
        while batch.len() < BATCH_BYTES
            && let Some(line) = queue.lines.pop()
        {
            queue.bytes.fetch_sub(line.len(), Ordering::Relaxed);
            batch.extend_from_slice(&line);
            lines += 1;
        }
        if lines > 0 {
            if let Err(e) = sink.write(&batch) {
                dropped.inc_by(lines);
                if let Some(suppressed) = WRITE_FAILED.allow() {
                    tracing::warn!(suppressed, error = %e, lines, "access log lines lost: write failed");
                }
            }
            batch.clear();
            empty_looks = 0;
            continue;
        }
        if queue.reopen.swap(false, Ordering::AcqRel) {
            sink.reopen();
        }
        // Only with the queue empty: what was queued before the stop is written.
        if queue.stop.load(Ordering::Acquire) {
            return;
        }
        empty_looks += 1;
        if empty_looks < POLLS_BEFORE_PARKING {
            std::thread::sleep(POLL);
            continue;
        }
        queue.asleep.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        let wanted = !queue.lines.is_empty()
            || queue.stop.load(Ordering::Acquire)
            || queue.reopen.load(Ordering::Acquire);
        if !wanted {
            std::thread::park();
        }
        queue.asleep.store(false, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_refuses_lines_by_bytes_and_gives_them_back_when_drained() {
        let queue = Queue::new(1000);
        assert!(queue.push(vec![b'a'; 600]));
        assert!(!queue.push(vec![b'b'; 600]), "over the byte budget");
        assert!(queue.push(vec![b'c'; 400]));
        assert_eq!(queue.bytes.load(Ordering::Relaxed), 1000);
        assert_eq!(queue.lines.pop().map(|l| l.len()), Some(600));
        queue.bytes.fetch_sub(600, Ordering::Relaxed);
        assert!(queue.push(vec![b'd'; 600]));
    }

    #[test]
    fn a_full_queue_refuses_lines_by_count() {
        let queue = Queue::new(64 * BYTES_PER_SLOT);
        for _ in 0..64 {
            assert!(queue.push(vec![b'x']));
        }
        assert!(!queue.push(vec![b'x']));
        assert_eq!(queue.bytes.load(Ordering::Relaxed), 64);
    }

    #[test]
    fn the_writer_writes_every_line_then_stops() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("access.log");
        let sink = Sink::open(Some(&path)).expect("open");
        let dropped = IntCounter::new("dropped", "dropped").expect("counter");
        let (queue, stopper) = start(sink, 1 << 20, dropped.clone()).expect("start");
        for i in 0..1000 {
            assert!(queue.push(format!("line {i}\n").into_bytes()));
            if i % 100 == 0 {
                // Let it park, so that a push has to wake it.
                std::thread::sleep(Duration::from_millis(150));
            }
        }
        drop(stopper);
        let written = std::fs::read_to_string(&path).expect("read");
        let expected: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(written, expected);
        assert_eq!(dropped.get(), 0);
    }
}
