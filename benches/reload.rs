//! Reload cost: parse, validate, lint and compile a rule set, then swap it in with one atomic
//! store, at `rules=10`, `1000` and `10000` (one origin per rule, every tenth a glob, as in
//! `benches/decision.rs`). This is what runs on the blocking pool when the rules change; the
//! request path only ever sees the store.

use std::sync::Arc;

mod common;

use common::rules_text;
use criterion::{Criterion, criterion_group, criterion_main};
use preflightd::live::Live;
use preflightd::metrics::Metrics;
use preflightd::reload::{compile_sources, sha256};
use preflightd::rules::Source;

fn benches(c: &mut Criterion) {
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let sources = |n: usize| {
        vec![Source {
            name: "bench.toml".into(),
            text: rules_text(n),
        }]
    };
    let (first, _) = compile_sources(&sources(10), "0".into()).expect("compile");
    let live = Live::new(first, metrics);
    let mut group = c.benchmark_group("reload");
    group.sample_size(10);
    for n in [10, 1_000, 10_000] {
        let input = sources(n);
        group.bench_function(format!("rules={n}/compile+swap"), |b| {
            b.iter(|| {
                let hash = sha256(&input);
                let (candidate, _) = compile_sources(&input, hash).expect("compile");
                std::hint::black_box(live.publish(candidate));
            })
        });
    }
    group.finish();
    std::hint::black_box(live.load_full());
}

criterion_group!(reload, benches);
criterion_main!(reload);
