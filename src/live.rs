//! The one owner of the live policy: the snapshot every request decides on, how it is
//! published, and whether the service is ready.
//!
//! A leaf of the shell: it knows the core (a compiled [`Policy`]) and the metrics (the
//! per-rule counters built beside each policy), nothing of sockets, files or signals. The
//! reload task publishes; the request path and the admin listener load.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::{ArcSwap, Guard};

use crate::cors::WireAnswers;
use crate::metrics::{Metrics, PreflightCounters};
use crate::policy::Policy;
use crate::shadow::Shadow;

/// Where a policy came from: what `/rules`, the logs and `preflightd_rules_info` report.
#[derive(Debug, Clone)]
pub struct Provenance {
    /// Numbered from 1 in load order, startup included.
    pub generation: u64,
    /// Hash of the file names and contents (`reload::sha256`).
    pub sha256: String,
    pub loaded_at: SystemTime,
    pub files: Vec<String>,
}

/// A compiled policy with what the shell keeps beside it: its metric handles (so the request
/// path counts without a label lookup) and its provenance. Immutable once published.
pub struct Snapshot {
    pub policy: Policy,
    /// Every answer of `policy` as HTTP/1.1 bytes, for the fast path.
    pub wire: WireAnswers,
    pub counters: PreflightCounters,
    /// `mode = "shadow"`: the comparison counters and the table of mismatches, which start
    /// over with each policy. Shared with the shadowed preflights in flight (they hold it
    /// across the upstream's answer; the policy they let go of).
    pub shadow: Option<Arc<Shadow>>,
    pub provenance: Provenance,
    /// The `/rules` document, rendered once per generation by the admin listener (a
    /// reference-counted buffer every response shares).
    pub rendered_rules: std::sync::OnceLock<bytes::Bytes>,
}

/// The live policy (an atomically swapped [`Snapshot`]) and readiness.
pub struct Live {
    /// Loaded once per request (`ArcSwap::load`: no lock, no reference count in the common
    /// case); requests in flight finish on the snapshot they loaded.
    current: ArcSwap<Snapshot>,
    generations: AtomicU64,
    metrics: Arc<Metrics>,
    /// The rules are loaded and the data listener is bound (and not shutting down).
    ready: AtomicBool,
}

/// A policy not yet published: what a reload hands over.
pub struct Candidate {
    pub policy: Policy,
    pub sha256: String,
    pub files: Vec<String>,
}

impl Live {
    /// Starts with `first` as generation 1. Not ready until [`Live::set_ready`].
    pub fn new(first: Candidate, metrics: Arc<Metrics>) -> Self {
        let generations = AtomicU64::new(0);
        let snapshot = snapshot(first, &metrics, &generations);
        Live {
            current: ArcSwap::new(snapshot),
            generations,
            metrics,
            ready: AtomicBool::new(false),
        }
    }

    /// The current snapshot. Hold it only while deciding, never across an await on I/O: a
    /// reload frees the replaced policy once nobody holds it.
    #[inline]
    pub fn load(&self) -> Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// The current snapshot as an owned reference (for the admin listener and tests).
    pub fn load_full(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Numbers `candidate`, records it in the metrics and makes it the live policy with one
    /// atomic store (DESIGN 6); the metric series of rules it no longer has are removed.
    /// Returns the new snapshot and the one it replaced.
    pub fn publish(&self, candidate: Candidate) -> (Arc<Snapshot>, Arc<Snapshot>) {
        let next = snapshot(candidate, &self.metrics, &self.generations);
        let previous = self.current.swap(Arc::clone(&next));
        let kept: std::collections::HashSet<&str> = next.policy.rule_names().collect();
        for name in previous.policy.rule_names() {
            if !kept.contains(name) {
                self.metrics.forget_rule(name);
            }
        }
        (next, previous)
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }
}

fn snapshot(candidate: Candidate, metrics: &Metrics, generations: &AtomicU64) -> Arc<Snapshot> {
    let counters = metrics.preflight_counters(&candidate.policy);
    let now = SystemTime::now();
    metrics.set_rules_info(&candidate.sha256, candidate.policy.rules.len());
    metrics.last_reload_successful.set(1);
    metrics.last_reload_success_timestamp.set(
        now.duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64()),
    );
    let wire = WireAnswers::compile(&candidate.policy);
    let shadow = candidate
        .policy
        .shadows()
        .then(|| Arc::new(Shadow::new(&candidate.policy, metrics)));
    Arc::new(Snapshot {
        wire,
        shadow,
        policy: candidate.policy,
        counters,
        provenance: Provenance {
            generation: generations.fetch_add(1, Ordering::Relaxed) + 1,
            sha256: candidate.sha256,
            loaded_at: now,
            files: candidate.files,
        },
        rendered_rules: std::sync::OnceLock::new(),
    })
}
