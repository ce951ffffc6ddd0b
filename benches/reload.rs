//! Reload cost: parse, validate, lint and compile a rule set, then swap it in with one atomic
//! store, at `rules=10`, `1000` and `10000` (one origin per rule, every tenth a glob, as in
//! `benches/decision.rs`). This is what runs on the blocking pool when the rules change; the
//! request path only ever sees the store.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use arc_swap::ArcSwap;
mod common;

use common::rules_text;
use criterion::{Criterion, criterion_group, criterion_main};
use preflightd::metrics::Metrics;
use preflightd::reload::{activate, compile_sources, sha256};
use preflightd::rules::Source;

fn benches(c: &mut Criterion) {
    let metrics = Metrics::new().expect("metrics");
    let generations = AtomicU64::new(0);
    let sources = |n: usize| {
        vec![Source {
            name: "bench.toml".into(),
            text: rules_text(n),
        }]
    };
    let first = compile_sources(&sources(10), "0".into()).expect("compile");
    let live = ArcSwap::new(activate(first, &metrics, &generations));
    let mut group = c.benchmark_group("reload");
    group.sample_size(10);
    for n in [10, 1_000, 10_000] {
        let input = sources(n);
        group.bench_function(format!("rules={n}/compile+swap"), |b| {
            b.iter(|| {
                let hash = sha256(&input);
                let candidate = compile_sources(&input, hash).expect("compile");
                live.store(activate(candidate, &metrics, &generations));
            })
        });
    }
    group.finish();
    let swapped = Arc::clone(&live.load());
    std::hint::black_box(swapped);
}

criterion_group!(reload, benches);
criterion_main!(reload);
