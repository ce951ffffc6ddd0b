//! Micro-benchmarks of the core: origin lookup as the rules grow, a whole decision, a hostile
//! ACRH, and compiling a policy. Names are coordinates (`rules=10000/origin=denied`).
//!
//! Before criterion runs, each coordinate's heap allocations per operation are counted with a
//! counting global allocator and printed, so "no allocation per lookup" is measured too.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

mod common;

use common::rules_text;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::header::{ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN};
use http::{HeaderMap, HeaderValue, Method};
use preflightd::cors::{Decision, Request, WireAnswers, decide};
use preflightd::policy::{Policy, compile};
use preflightd::rules::{Source, load_sources};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// Bytes allocated now, and the most at any time since the last reset.
static LIVE_BYTES: AtomicU64 = AtomicU64::new(0);
static PEAK_BYTES: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        let size = layout.size() as u64;
        let live = LIVE_BYTES.fetch_add(size, Ordering::Relaxed) + size;
        PEAK_BYTES.fetch_max(live, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Runs `op` once; its wall time and the peak heap it added above what was live before.
fn time_and_peak<T>(op: impl FnOnce() -> T) -> (T, std::time::Duration, f64) {
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    PEAK_BYTES.store(before, Ordering::Relaxed);
    let started = std::time::Instant::now();
    let out = op();
    let elapsed = started.elapsed();
    let peak = PEAK_BYTES.load(Ordering::Relaxed).saturating_sub(before);
    (out, elapsed, peak as f64 / f64::from(1 << 20))
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_per_op(mut op: impl FnMut()) -> f64 {
    const N: u64 = 1000;
    op();
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..N {
        op();
    }
    (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / N as f64
}

fn policy(n: usize) -> Policy {
    compiled(rules_text(n))
}

fn compiled(text: String) -> Policy {
    let loaded = load_sources(&[Source {
        name: "bench.toml".into(),
        text,
    }]);
    compile(loaded.rules.expect("bench rules load")).expect("bench rules compile")
}

/// `n` rules each scoped to its own host, all allowing the same origin (a multi-tenant
/// set-up: the origin matcher reports one group of `n` rules, which the scope index narrows).
fn scoped_rules_text(n: usize) -> String {
    let mut text = String::new();
    for i in 0..n {
        text.push_str(&format!(
            "[[rule]]\nname = \"t{i}\"\nhosts = [\"t{i:06}.api.example.com\"]\npaths = [\"/v1/\"]\norigins = [\"https://app.example.com\"]\nmethods = [\"PUT\"]\n"
        ));
    }
    text
}

fn scoped_decision(policy: &Policy, host: &[u8], headers: &HeaderMap) -> u16 {
    let request = Request {
        method: &Method::OPTIONS,
        host: Some(host),
        path: b"/v1/items",
        headers,
    };
    match decide(policy, &request) {
        Decision::Answer(answer) => answer.status().as_u16(),
        _ => 0,
    }
}

/// An allowed origin from the middle of the set (exact), one matched by a glob, and one denied.
fn origins(n: usize) -> [(&'static str, String); 3] {
    let exact = n / 2 - usize::from((n / 2) % 10 == 9);
    let glob = (n / 2 / 10) * 10 + 9;
    [
        (
            "allowed",
            format!(
                "https://app{exact:05}.customer{:02}.example.com",
                exact % 97
            ),
        ),
        (
            "glob",
            format!("https://eu.api.tenant{glob:05}.example.net"),
        ),
        (
            "denied",
            "https://app00001.customer01.example.org".to_owned(),
        ),
    ]
}

fn preflight(origin: &str, acrh: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(ORIGIN, HeaderValue::from_str(origin).expect("origin"));
    headers.insert(
        ACCESS_CONTROL_REQUEST_METHOD,
        HeaderValue::from_static("PUT"),
    );
    headers.insert(
        ACCESS_CONTROL_REQUEST_HEADERS,
        HeaderValue::from_str(acrh).expect("acrh"),
    );
    headers
}

/// The benchmarked preflight: OPTIONS for api.example.com/v1/items with `headers`.
fn request(headers: &HeaderMap) -> Request<'_> {
    Request {
        method: &Method::OPTIONS,
        host: Some(b"api.example.com"),
        path: b"/v1/items",
        headers,
    }
}

fn decide_and_render(policy: &Policy, headers: &HeaderMap, out: &mut HeaderMap) -> u16 {
    match decide(policy, &request(headers)) {
        Decision::Answer(answer) => {
            out.clear();
            answer.write_headers(headers, out);
            answer.status().as_u16()
        }
        _ => 0,
    }
}

/// The fast path's render: decide, then write the pre-rendered answer bytes into a reused
/// buffer (here with the request lines in a `HeaderMap`; the server's parsed head implements
/// the same `Fields`).
fn decide_and_write(
    policy: &Policy,
    wire: &WireAnswers,
    headers: &HeaderMap,
    out: &mut Vec<u8>,
) -> usize {
    match decide(policy, &request(headers)) {
        Decision::Answer(answer) => {
            out.clear();
            wire.write(&answer, headers, b"Thu, 03 Dec 2026 12:00:00 GMT", out);
            out.len()
        }
        _ => 0,
    }
}

fn benches(c: &mut Criterion) {
    let sizes = [10, 1_000, 10_000];
    let policies: Vec<(usize, Policy)> = sizes.iter().map(|&n| (n, policy(n))).collect();

    println!("allocations per operation:");
    for (n, policy) in &policies {
        for (name, origin) in origins(*n) {
            let allocs = allocations_per_op(|| {
                policy
                    .origins
                    .for_each_match(black_box(origin.as_bytes()), |r| {
                        black_box(r);
                    })
            });
            println!("  origin_lookup/rules={n}/origin={name}: {allocs}");
        }
    }

    let mut group = c.benchmark_group("origin_lookup");
    for (n, policy) in &policies {
        for (name, origin) in origins(*n) {
            group.bench_function(
                BenchmarkId::new(format!("rules={n}"), format!("origin={name}")),
                |b| {
                    b.iter(|| {
                        let mut found = usize::MAX;
                        policy
                            .origins
                            .for_each_match(black_box(origin.as_bytes()), |r| found = found.min(r));
                        found
                    })
                },
            );
        }
    }
    group.finish();

    let mut group = c.benchmark_group("decision");
    let (_, big) = &policies[2];
    let [(_, allowed), _, (_, denied)] = origins(10_000);
    let cases = [
        (
            "rules=10000/origin=allowed/acrh=normal",
            preflight(&allowed, "content-type,x-api-key"),
        ),
        (
            "rules=10000/origin=denied/acrh=normal",
            preflight(&denied, "content-type,x-api-key"),
        ),
        (
            "rules=10000/origin=allowed/acrh=4k-evil",
            preflight(&allowed, &"x-a,".repeat(1024)),
        ),
        (
            "rules=10000/origin=allowed/acrh=1m-commas",
            preflight(&allowed, &",".repeat(1 << 20)),
        ),
    ];
    println!("allocations per operation (decide + render headers into a reused map):");
    for (name, headers) in &cases {
        let mut out = HeaderMap::with_capacity(16);
        let allocs = allocations_per_op(|| {
            black_box(decide_and_render(big, black_box(headers), &mut out));
        });
        println!("  decision/{name}: {allocs}");
    }
    for (name, headers) in &cases {
        let mut out = HeaderMap::with_capacity(16);
        group.bench_function(*name, |b| {
            b.iter(|| decide_and_render(big, black_box(headers), &mut out))
        });
    }
    // The same decisions rendered as the fast path writes them (bytes, not a HeaderMap).
    let wire = WireAnswers::compile(big);
    println!("allocations per operation (decide + write the wire answer into a reused buffer):");
    for (name, headers) in &cases[..2] {
        let mut out = Vec::with_capacity(1024);
        let allocs = allocations_per_op(|| {
            black_box(decide_and_write(big, &wire, black_box(headers), &mut out));
        });
        println!("  decision/{name}/wire: {allocs}");
    }
    for (name, headers) in &cases[..2] {
        let mut out = Vec::with_capacity(1024);
        group.bench_function(format!("{name}/wire"), |b| {
            b.iter(|| decide_and_write(big, &wire, black_box(headers), &mut out))
        });
    }
    group.finish();

    // Scope lookup flat in the number of scoped rules (DESIGN 8): in scope and allowed, in
    // scope with a denied origin, and out of every scope (no_rule).
    let mut group = c.benchmark_group("scoped");
    for n in [10, 100_000] {
        let policy = compiled(scoped_rules_text(n));
        let inside = format!("t{:06}.api.example.com", n / 2);
        let allowed = preflight("https://app.example.com", "");
        let denied = preflight("https://evil.example.org", "");
        let cases = [
            ("in_scope", inside.as_bytes(), &allowed, 204),
            ("denied", inside.as_bytes(), &denied, 403),
            ("out_of_scope", &b"nobody.example.org"[..], &allowed, 403),
        ];
        for (name, host, headers, status) in cases {
            assert_eq!(scoped_decision(&policy, host, headers), status, "{name}");
            let allocs = allocations_per_op(|| {
                black_box(scoped_decision(&policy, black_box(host), headers));
            });
            println!("  scoped/rules={n}/{name}: {allocs} allocations");
            group.bench_function(
                BenchmarkId::new(format!("rules={n}"), format!("hosts={name}")),
                |b| b.iter(|| scoped_decision(&policy, black_box(host), headers)),
            );
        }
    }
    group.finish();

    println!("compile (load, validate, lint, compile), once each:");
    for n in [10_000, 100_000] {
        for (kind, text) in [("origins", rules_text(n)), ("scoped", scoped_rules_text(n))] {
            let (policy, elapsed, peak) = time_and_peak(|| compiled(text));
            println!(
                "  compile/{kind}/rules={n}: {:.0} ms, peak heap {peak:.0} MiB",
                elapsed.as_secs_f64() * 1000.0
            );
            drop(policy);
        }
    }

    // Many mistakes on one long line: reporting them is linear in the line (10x the errors
    // should take about 10x the time, not 100x).
    for n in [2_000, 20_000] {
        let line = vec!["\"x\""; n].join(", ");
        let text = format!("[[rule]]\nname = \"bad\"\norigins = [{line}]\n");
        let (loaded, elapsed, _) = time_and_peak(|| {
            load_sources(&[Source {
                name: "bench.toml".into(),
                text,
            }])
        });
        assert_eq!(loaded.errors().count(), n);
        println!(
            "  load/errors_on_one_line={n}: {:.1} ms",
            elapsed.as_secs_f64() * 1000.0
        );
    }

    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    for n in sizes {
        let text = rules_text(n);
        group.bench_function(format!("rules={n}"), |b| {
            b.iter(|| {
                let loaded = load_sources(&[Source {
                    name: "bench.toml".into(),
                    text: text.clone(),
                }]);
                compile(loaded.rules.expect("load")).expect("compile")
            })
        });
    }
    group.finish();
}

criterion_group!(core, benches);
criterion_main!(core);
