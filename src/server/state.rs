//! What every connection shares: the active policy (swapped atomically, read without a lock),
//! the metrics, the upstream client and the readiness flag.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};

use arc_swap::ArcSwap;

use crate::metrics::Metrics;
use crate::proxy::Upstream;
use crate::reload::Active;

pub struct Shared {
    /// Loaded once per request (`ArcSwap::load`: no lock, no reference count in the common
    /// case); requests in flight finish on the policy they loaded.
    pub active: ArcSwap<Active>,
    pub metrics: Metrics,
    /// `None` when no `--upstream` is set: preflights are still answered.
    pub upstream: Option<Upstream>,
    pub rules_path: PathBuf,
    pub generations: AtomicU64,
    /// Rules loaded and the data listener bound.
    pub ready: AtomicBool,
}
