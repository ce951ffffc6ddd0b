//! Loading rules into the running service (DESIGN 6): read -> hash -> parse, validate,
//! compile -> publish. The first load at startup and every reload run the same attempt; a load
//! that fails keeps the live policy, and at startup ends the process.
//!
//! Triggers (the directory watcher, SIGHUP, the periodic re-check) all feed one task, which
//! runs the attempts one at a time on a dedicated low-priority thread.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::live::{Candidate, Live, Snapshot};
use crate::metrics::Metrics;
use crate::policy::compile;
use crate::rules::{Diagnostic, Source, load_sources, read_sources};
use crate::sd_notify;
use crate::tls::Certificates;

/// What `reload` needs to know, and nothing else.
#[derive(Debug, Clone)]
pub struct ReloadConfig {
    /// A rules file, or a directory of `*.toml` files.
    pub rules: PathBuf,
    /// Quiet time after a change in the rules directory before reloading.
    pub debounce: Duration,
    /// Interval of the periodic re-check that catches missed file events.
    pub poll: Duration,
    /// Watch the rules directory (off: SIGHUP and the periodic re-check only).
    pub watch: bool,
    /// Bound on the bytes of the rule set, all files together (`--max-rules-bytes`).
    pub max_bytes: u64,
}

/// Why a load failed: every diagnostic, each with its place (file, line, rule).
#[derive(Debug, Clone)]
pub struct LoadError {
    pub diagnostics: Vec<Diagnostic>,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, diagnostic) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{diagnostic}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadError {}

/// What set a load off (the `trigger` label of `preflightd_rules_reloads_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Startup,
    Watch,
    Signal,
    Poll,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Startup => "startup",
            Trigger::Watch => "watch",
            Trigger::Signal => "signal",
            Trigger::Poll => "poll",
        }
    }
}

/// The sha256 of a rule set: every file's name (not its directory, so replicas mounting the
/// same ConfigMap at different paths agree) and content, in load order.
pub fn sha256(sources: &[Source]) -> String {
    let mut hasher = Sha256::new();
    for source in sources {
        let name = Path::new(source.name.as_ref())
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(source.text.as_bytes());
        hasher.update([0]);
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Reads `path` and returns its sources and their hash (the cheap half of a reload: an
/// unchanged hash needs no compile).
///
/// A file written in place (`echo > rules.toml`, most scripts) is truncated, then filled: a
/// read meanwhile can return the start of one version and the end of the next, which may
/// parse, and would be a policy nobody wrote. So the rules are read twice, and again while
/// the two reads differ (a few times at most; the change that is still being written
/// triggers its own reload). Renames and ConfigMap swaps are atomic and always agree.
pub fn read(path: &Path, max_bytes: u64) -> Result<(Vec<Source>, String), LoadError> {
    let once = || -> Result<(Vec<Source>, String), LoadError> {
        let sources =
            read_sources(path, max_bytes).map_err(|diagnostics| LoadError { diagnostics })?;
        let hash = sha256(&sources);
        Ok((sources, hash))
    };
    let mut last = once()?;
    for _ in 0..STABLE_READS {
        let again = once()?;
        if again.1 == last.1 {
            return Ok(again);
        }
        last = again;
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(last)
}

/// Further reads of the rules while consecutive reads differ (see [`read`]).
const STABLE_READS: usize = 5;

/// Parses, validates and compiles already-read sources: the candidate and its warnings.
pub fn compile_sources(
    sources: &[Source],
    sha256: String,
) -> Result<(Candidate, Vec<Diagnostic>), LoadError> {
    let loaded = load_sources(sources);
    let Some(rules) = loaded.rules else {
        return Err(LoadError {
            diagnostics: loaded.errors().cloned().collect(),
        });
    };
    let fallback = sources.first().map(|s| Arc::clone(&s.name));
    let policy = compile(rules).map_err(|e| LoadError {
        diagnostics: vec![e.diagnostic(fallback)],
    })?;
    let candidate = Candidate {
        policy,
        sha256,
        files: sources.iter().map(|s| s.name.to_string()).collect(),
    };
    Ok((candidate, loaded.diagnostics))
}

/// How one attempt ended.
enum Attempt {
    /// The files hash to the live policy's sha256: nothing to compile.
    Unchanged,
    Loaded(Box<Candidate>),
    Failed,
}

/// One load attempt, the same at startup and on every reload: read and hash; unless the hash
/// is the live one's, parse, validate and compile. Logs every error and warning with its
/// place, and counts the result. Blocking (file reads, compiling): run it off the request
/// path.
fn attempt(
    config: &ReloadConfig,
    live_sha256: Option<&str>,
    trigger: Trigger,
    metrics: &Metrics,
) -> Attempt {
    let path = config.rules.as_path();
    let result = read(path, config.max_bytes).and_then(|(sources, sha)| {
        if live_sha256 == Some(sha.as_str()) {
            return Ok(None);
        }
        compile_sources(&sources, sha).map(Some)
    });
    match result {
        Ok(None) => {
            metrics.count_reload("unchanged", trigger.as_str());
            metrics.last_reload_successful.set(1);
            Attempt::Unchanged
        }
        Ok(Some((candidate, warnings))) => {
            for warning in &warnings {
                log_diagnostic(warning, trigger);
            }
            // Counted as a success by the caller once it is live: a scrape that sees the
            // count must see the new policy's series too.
            Attempt::Loaded(Box::new(candidate))
        }
        Err(error) => {
            for diagnostic in &error.diagnostics {
                log_diagnostic(diagnostic, trigger);
            }
            if trigger == Trigger::Startup {
                tracing::error!(path = %path.display(), "rules not loaded; not starting");
            } else {
                tracing::error!(
                    trigger = trigger.as_str(),
                    path = %path.display(),
                    "rules reload failed; keeping the active policy"
                );
            }
            metrics.count_reload("failure", trigger.as_str());
            metrics.last_reload_successful.set(0);
            Attempt::Failed
        }
    }
}

/// One log line per diagnostic: the whole diagnostic as the message (as `check` prints it),
/// and its place as fields for log queries.
fn log_diagnostic(diagnostic: &Diagnostic, trigger: Trigger) {
    let location = &diagnostic.location;
    let rule = match &diagnostic.subject {
        crate::rules::Subject::Rule(name) => name.as_str(),
        _ => "",
    };
    if diagnostic.is_error() {
        tracing::error!(
            trigger = trigger.as_str(),
            file = %location.file,
            line = location.line,
            rule,
            "{diagnostic}"
        );
    } else {
        tracing::warn!(
            trigger = trigger.as_str(),
            file = %location.file,
            line = location.line,
            rule,
            "{diagnostic}"
        );
    }
}

/// The first load (DESIGN 6): it must succeed, or the process exits non-zero with every
/// error logged. The same attempt as every reload.
pub fn first_load(config: &ReloadConfig, metrics: Arc<Metrics>) -> Option<Arc<Live>> {
    match attempt(config, None, Trigger::Startup, &metrics) {
        Attempt::Loaded(candidate) => {
            let live = Arc::new(Live::new(*candidate, Arc::clone(&metrics)));
            metrics.count_reload("success", Trigger::Startup.as_str());
            let snapshot = live.load_full();
            tracing::info!(
                rules = snapshot.policy.rules.len(),
                mode = snapshot.policy.settings().mode.as_str(),
                sha256 = %snapshot.provenance.sha256,
                path = %config.rules.display(),
                "rules loaded"
            );
            Some(live)
        }
        Attempt::Unchanged | Attempt::Failed => None,
    }
}

/// Reloads into a live policy; remembers whether the last attempt failed, so that a recovery
/// is logged even when it restores the very content that is live.
struct Reloader {
    config: ReloadConfig,
    live: Arc<Live>,
    failing: AtomicBool,
    /// The data listener's certificates, re-read on the same triggers (DESIGN 11).
    certificates: Option<Arc<Certificates>>,
}

impl Reloader {
    /// One reload of the rules, then of the certificates. Runs on the reload thread.
    fn reload(&self, trigger: Trigger) {
        self.reload_rules(trigger);
        if let Some(certificates) = &self.certificates {
            certificates.reload(trigger.as_str());
        }
    }

    /// One rules reload: an attempt, then the swap.
    fn reload_rules(&self, trigger: Trigger) {
        let live_sha256 = self.live.load().provenance.sha256.clone();
        let metrics = self.live.metrics();
        match attempt(&self.config, Some(&live_sha256), trigger, metrics) {
            Attempt::Unchanged => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(
                        trigger = trigger.as_str(),
                        sha256 = %live_sha256,
                        "rules are back to the active policy; the last reload error is cleared"
                    );
                } else if trigger == Trigger::Signal {
                    tracing::info!(sha256 = %live_sha256, "SIGHUP: rules unchanged");
                }
            }
            Attempt::Loaded(candidate) => {
                self.failing.store(false, Ordering::Relaxed);
                let (active, previous) = self.live.publish(*candidate);
                self.live
                    .metrics()
                    .count_reload("success", trigger.as_str());
                tracing::info!(
                    trigger = trigger.as_str(),
                    generation = active.provenance.generation,
                    rules = active.policy.rules.len(),
                    mode = active.policy.settings().mode.as_str(),
                    sha256 = %active.provenance.sha256,
                    "rules reloaded"
                );
                drop(active);
                retire(previous);
            }
            Attempt::Failed => self.failing.store(true, Ordering::Relaxed),
        }
    }
}

/// Frees a replaced policy here, on the reload thread, once no request holds it any more.
/// Freeing 10 000 rules and their automata takes milliseconds; if the last request holding
/// the old snapshot dropped it, a request worker would pay that on the request path.
fn retire(previous: Arc<Snapshot>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    // Requests hold a snapshot only while deciding (never across the upstream round trip),
    // so this wait is microseconds; the deadline only bounds the pathological case.
    while Arc::strong_count(&previous) > 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(previous);
}

/// Starts what triggers reloads (DESIGN 6): the directory watcher (debounced), SIGHUP and the
/// periodic re-check. They all feed one reload task, so reloads never overlap: a slow compile
/// of an older version can never be published after a newer one. Call it inside the runtime,
/// before the service reports ready: SIGHUP's handler is installed here, and a SIGHUP that
/// arrived before it would take the default action and end the process.
pub fn spawn(
    config: &ReloadConfig,
    live: Arc<Live>,
    certificates: Option<Arc<Certificates>>,
    stop: watch::Receiver<bool>,
) {
    let (triggers, pending) = tokio::sync::mpsc::channel(1);
    let directories: Vec<PathBuf> = certificates
        .as_ref()
        .map(|c| c.directories())
        .unwrap_or_default();
    let reloader = Reloader {
        config: config.clone(),
        live,
        failing: AtomicBool::new(false),
        certificates,
    };
    tokio::spawn(run(reloader, pending, stop.clone()));
    let hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(stream) => Some(stream),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP");
            None
        }
    };
    tokio::spawn(signal_and_poll(
        triggers.clone(),
        hangup,
        config.poll,
        stop.clone(),
    ));
    if config.watch {
        watch_directory(
            &config.rules,
            "rules",
            config.debounce,
            triggers.clone(),
            stop.clone(),
        );
        // A certificate directory (a Kubernetes Secret volume swaps its `..data` symlink,
        // cert-manager renews in place) is watched the same way.
        for directory in directories {
            if directory != rules_directory(&config.rules) {
                watch_directory(
                    &directory,
                    "certificates",
                    config.debounce,
                    triggers.clone(),
                    stop.clone(),
                );
            }
        }
    } else {
        tracing::info!(
            "file watching disabled; reloading on SIGHUP and every {:?}",
            config.poll
        );
    }
}

async fn run(
    reloader: Reloader,
    mut pending: tokio::sync::mpsc::Receiver<Trigger>,
    mut stop: watch::Receiver<bool>,
) {
    let Some(worker) = ReloadThread::start(reloader) else {
        return;
    };
    loop {
        let trigger = tokio::select! {
            Some(trigger) = pending.recv() => trigger,
            _ = stop.changed() => return,
        };
        // systemd (ExecReload sends SIGHUP) waits for READY=1 to end a reload it asked for.
        let signalled = trigger == Trigger::Signal;
        if signalled {
            sd_notify::reloading();
        }
        worker.run(trigger).await;
        if signalled {
            sd_notify::ready();
        }
    }
}

/// The thread that reads and compiles rules: one, long-lived, at a lower scheduling priority
/// (nice 10) than the request workers, so that on a busy core compiling (about 70 ms of CPU for
/// 10 000 rules) yields to requests instead of sharing the core equally. Not `SCHED_IDLE`:
/// on a saturated core that would starve reloads indefinitely. Not tokio's blocking pool,
/// whose threads also resolve the upstream's name and must not be slowed.
struct ReloadThread {
    jobs: std::sync::mpsc::Sender<(Trigger, tokio::sync::oneshot::Sender<()>)>,
}

/// Niceness of the reload thread: about a tenth of a request worker's share when both run.
const RELOAD_NICE: i32 = 10;

fn lower_priority() {
    // Linux: a thread id names one thread, so this lowers only the calling thread.
    let me = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(me), RELOAD_NICE) {
        tracing::debug!(error = %e, "cannot lower the reload thread's priority");
    }
}

impl ReloadThread {
    fn start(reloader: Reloader) -> Option<Self> {
        let (jobs, queue) =
            std::sync::mpsc::channel::<(Trigger, tokio::sync::oneshot::Sender<()>)>();
        let spawned = std::thread::Builder::new()
            .name("preflightd-reload".into())
            .spawn(move || {
                lower_priority();
                while let Ok((trigger, done)) = queue.recv() {
                    reloader.reload(trigger);
                    let _ = done.send(());
                }
            });
        match spawned {
            Ok(_) => Some(ReloadThread { jobs }),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the reload thread; rules will not reload");
                None
            }
        }
    }

    async fn run(&self, trigger: Trigger) {
        let (done, finished) = tokio::sync::oneshot::channel();
        if self.jobs.send((trigger, done)).is_ok() {
            let _ = finished.await;
        }
    }
}

async fn signal_and_poll(
    triggers: tokio::sync::mpsc::Sender<Trigger>,
    mut hangup: Option<tokio::signal::unix::Signal>,
    poll: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(poll.max(Duration::from_millis(100)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        let trigger = tokio::select! {
            _ = ticker.tick() => Trigger::Poll,
            Some(()) = async {
                match hangup.as_mut() {
                    Some(stream) => stream.recv().await,
                    None => std::future::pending().await,
                }
            } => Trigger::Signal,
            _ = stop.changed() => return,
        };
        if triggers.send(trigger).await.is_err() {
            return;
        }
    }
}

/// The directory to watch for `path`: itself if it is one, else its parent.
fn rules_directory(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.to_path_buf()
    } else {
        match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }
}

/// Watches the directory that holds the rules, never the file alone: editors save by writing
/// a temporary file and renaming it over, and a Kubernetes ConfigMap volume swaps a `..data`
/// symlink, so the file's own inode is replaced rather than written. Any event there (reads
/// aside) re-arms the debounce; when the directory has been quiet for `debounce`, one reload
/// runs, and its hash check makes unrelated events cost one read.
fn watch_directory(
    rules: &Path,
    what: &'static str,
    debounce: Duration,
    triggers: tokio::sync::mpsc::Sender<Trigger>,
    mut stop: watch::Receiver<bool>,
) {
    use notify::{EventKind, RecursiveMode, Watcher};
    let directory = rules_directory(rules);
    let changed = Arc::new(tokio::sync::Notify::new());
    let signal = Arc::clone(&changed);
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Our own reads show up as access events; only changes count.
        if event.is_ok_and(|e| !matches!(e.kind, EventKind::Access(_))) {
            signal.notify_one();
        }
    });
    let mut watcher = match watcher {
        Ok(watcher) => watcher,
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the file watcher; relying on SIGHUP and the periodic re-check");
            return;
        }
    };
    if let Err(e) = watcher.watch(&directory, RecursiveMode::NonRecursive) {
        tracing::warn!(
            directory = %directory.display(),
            what,
            error = %e,
            "cannot watch the directory; relying on SIGHUP and the periodic re-check"
        );
        return;
    }
    tracing::info!(directory = %directory.display(), what, debounce = ?debounce, "watching the directory");
    tokio::spawn(async move {
        let _watcher = watcher;
        loop {
            tokio::select! {
                () = changed.notified() => {}
                _ = stop.changed() => return,
            }
            // Debounce: wait until the directory has been quiet for `debounce`.
            loop {
                tokio::select! {
                    () = changed.notified() => {}
                    () = tokio::time::sleep(debounce) => break,
                    _ = stop.changed() => return,
                }
            }
            if triggers.send(Trigger::Watch).await.is_err() {
                return;
            }
        }
    });
}
