//! Loading rules into the running server: read -> hash -> parse, validate, compile -> swap.
//! A load that fails keeps the active policy. The first load at startup must succeed.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::metrics::{Metrics, PreflightCounters};
use crate::policy::{Policy, compile};
use crate::rules::{Diagnostic, Source, load_sources, read_sources};

/// A compiled policy together with what the shell keeps beside it: its metric handles (so the
/// request path counts without a label lookup) and where it came from.
pub struct Active {
    pub policy: Policy,
    pub counters: PreflightCounters,
    pub generation: u64,
    pub sha256: String,
    pub loaded_at: SystemTime,
    pub files: Vec<String>,
}

/// A rule set read, hashed and compiled, not yet active.
pub struct Candidate {
    pub policy: Policy,
    pub sha256: String,
    pub files: Vec<String>,
    pub warnings: Vec<Diagnostic>,
}

/// Why a load failed: every error, each with its place.
#[derive(Debug)]
pub struct LoadError(pub Vec<String>);

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("\n"))
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
pub fn read(path: &Path) -> Result<(Vec<Source>, String), LoadError> {
    let sources = read_sources(path).map_err(|d| LoadError(vec![d.to_string()]))?;
    let hash = sha256(&sources);
    Ok((sources, hash))
}

/// Parses, validates and compiles already-read sources.
pub fn compile_sources(sources: &[Source], sha256: String) -> Result<Candidate, LoadError> {
    let loaded = load_sources(sources);
    let Some(rules) = loaded.rules else {
        return Err(LoadError(
            loaded.errors().map(ToString::to_string).collect(),
        ));
    };
    let policy = compile(rules).map_err(|e| LoadError(vec![e.0]))?;
    Ok(Candidate {
        policy,
        sha256,
        files: sources.iter().map(|s| s.name.to_string()).collect(),
        warnings: loaded.diagnostics,
    })
}

/// Turns a candidate into the active snapshot, numbering it and recording it in the metrics.
pub fn activate(candidate: Candidate, metrics: &Metrics, generations: &AtomicU64) -> Arc<Active> {
    let counters = metrics.preflight_counters(&candidate.policy);
    let now = SystemTime::now();
    metrics.set_rules_info(&candidate.sha256, candidate.policy.rules.len());
    metrics.last_reload_successful.set(1);
    metrics.last_reload_success_timestamp.set(
        now.duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64()),
    );
    Arc::new(Active {
        generation: generations.fetch_add(1, Ordering::Relaxed) + 1,
        policy: candidate.policy,
        counters,
        sha256: candidate.sha256,
        loaded_at: now,
        files: candidate.files,
    })
}

/// Frees a replaced policy here, on the reload thread, once no request holds it any more.
/// Freeing 10 000 rules and their automata takes milliseconds; if the last request holding
/// the old snapshot dropped it, a request worker would pay that on the request path.
fn retire(previous: Arc<Active>) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    // Requests hold a snapshot only while deciding (never across the upstream round trip),
    // so this wait is microseconds; the deadline only bounds the pathological case.
    while Arc::strong_count(&previous) > 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    drop(previous);
}

/// What set a reload off (the `trigger` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Watch,
    Signal,
    Poll,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Watch => "watch",
            Trigger::Signal => "signal",
            Trigger::Poll => "poll",
        }
    }
}

/// One reload attempt: read and hash; if the content changed, parse, validate and compile;
/// then swap. Blocking (file reads, compiling): run it off the request path.
pub fn reload_now(shared: &crate::server::state::Shared, trigger: Trigger) {
    let metrics = &shared.metrics;
    let fail = |error: &LoadError| {
        for line in &error.0 {
            tracing::error!(trigger = trigger.as_str(), "{line}");
        }
        tracing::error!(
            trigger = trigger.as_str(),
            path = %shared.rules_path.display(),
            "rules reload failed; keeping the active policy"
        );
        metrics.count_reload("failure", trigger.as_str());
        metrics.last_reload_successful.set(0);
    };
    let (sources, sha) = match read(&shared.rules_path) {
        Ok(read) => read,
        Err(error) => return fail(&error),
    };
    if sha == shared.active.load().sha256 {
        metrics.count_reload("unchanged", trigger.as_str());
        metrics.last_reload_successful.set(1);
        return;
    }
    match compile_sources(&sources, sha) {
        Ok(candidate) => {
            for warning in &candidate.warnings {
                tracing::warn!("{warning}");
            }
            let active = activate(candidate, metrics, &shared.generations);
            tracing::info!(
                trigger = trigger.as_str(),
                generation = active.generation,
                rules = active.policy.rules.len(),
                sha256 = %active.sha256,
                "rules reloaded"
            );
            let previous = shared.active.swap(active);
            metrics.count_reload("success", trigger.as_str());
            retire(previous);
        }
        Err(error) => fail(&error),
    }
}

/// Starts what triggers reloads (DESIGN 6): the directory watcher (debounced), SIGHUP and the
/// periodic re-check. They all feed one reload task, so reloads never overlap: a slow compile
/// of an older version can never be swapped in after a newer one.
pub fn spawn_watchers(
    config: &crate::server::ServeConfig,
    shared: Arc<crate::server::state::Shared>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let (triggers, pending) = tokio::sync::mpsc::channel(1);
    tokio::spawn(reloader(shared, pending, stop.clone()));
    // Installed here, before the server reports ready: a SIGHUP that arrived before its
    // handler would take the default action and end the process.
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
        config.reload_poll,
        stop.clone(),
    ));
    if config.watch {
        watch_directory(&config.rules, config.reload_debounce, triggers, stop);
    } else {
        tracing::info!(
            "file watching disabled; reloading on SIGHUP and every {:?}",
            config.reload_poll
        );
    }
}

async fn reloader(
    shared: Arc<crate::server::state::Shared>,
    mut pending: tokio::sync::mpsc::Receiver<Trigger>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let Some(worker) = ReloadThread::start(Arc::clone(&shared)) else {
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
            crate::notify::reloading();
        }
        worker.run(trigger).await;
        if signalled {
            crate::notify::ready();
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
    fn start(shared: Arc<crate::server::state::Shared>) -> Option<Self> {
        let (jobs, queue) =
            std::sync::mpsc::channel::<(Trigger, tokio::sync::oneshot::Sender<()>)>();
        let spawned = std::thread::Builder::new()
            .name("preflightd-reload".into())
            .spawn(move || {
                lower_priority();
                while let Ok((trigger, done)) = queue.recv() {
                    reload_now(&shared, trigger);
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
    poll: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(poll.max(std::time::Duration::from_millis(100)));
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

/// Watches the directory that holds the rules, never the file alone: editors save by writing
/// a temporary file and renaming it over, and a Kubernetes ConfigMap volume swaps a `..data`
/// symlink, so the file's own inode is replaced rather than written. Any event there (reads
/// aside) re-arms the debounce; when the directory has been quiet for `debounce`, one reload
/// runs, and its hash check makes unrelated events cost one read.
fn watch_directory(
    rules: &Path,
    debounce: std::time::Duration,
    triggers: tokio::sync::mpsc::Sender<Trigger>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use notify::{EventKind, RecursiveMode, Watcher};
    let directory = if rules.is_dir() {
        rules.to_path_buf()
    } else {
        match rules.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        }
    };
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
            error = %e,
            "cannot watch the rules directory; relying on SIGHUP and the periodic re-check"
        );
        return;
    }
    tracing::info!(directory = %directory.display(), debounce = ?debounce, "watching the rules directory");
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
