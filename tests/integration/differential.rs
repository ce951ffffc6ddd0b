//! The fast path against hyper (issue: "same answers"): every vector of
//! `tests/data/preflight.toml`, and generated preflights, sent to the real server twice: as
//! the first request of a fresh connection (answered by the fast path) and after a proxied
//! GET on one connection (which hands the connection to hyper). Both answers must be the same
//! bytes (status line, every header name, value and place, body), apart from the `Date`
//! value, and hold what the vector states of the answer (status, exact and absent headers).

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;

use proptest::prelude::*;

use crate::decision::vectors;
use crate::support::{Preflightd, Upstream, connect};

/// One response's raw bytes with the `date` value blanked, read by its own framing.
fn read_raw(reader: &mut impl BufRead) -> Vec<u8> {
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        reader.read_until(b'\n', &mut line).expect("response line");
        assert!(!line.is_empty(), "connection closed mid-head: {head:?}");
        let done = line == b"\r\n";
        if line.len() > 6 && line[..6].eq_ignore_ascii_case(b"date: ") {
            line = b"date: <blank>\r\n".to_vec();
        }
        head.extend_from_slice(&line);
        if done {
            break;
        }
    }
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let length = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |n| n.trim().parse::<usize>().expect("content-length"));
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("body");
    head.extend_from_slice(&body);
    head
}

/// `request` on a fresh connection (the fast path), then on a connection whose first request
/// was a proxied GET (hyper): both raw answers.
fn both_paths(edge: SocketAddr, request: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut fresh = connect(edge);
    fresh.write_all(request).expect("write");
    let fast = read_raw(&mut BufReader::new(&mut fresh));

    let mut after_get = connect(edge);
    after_get
        .write_all(b"GET /small HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
        .expect("write GET");
    let mut reader = BufReader::new(after_get.try_clone().expect("clone"));
    let proxied = read_raw(&mut reader);
    assert!(
        proxied.starts_with(b"HTTP/1.1 200 "),
        "the GET is proxied: {}",
        String::from_utf8_lossy(&proxied)
    );
    after_get.write_all(request).expect("write");
    let slow = read_raw(&mut reader);
    (fast, slow)
}

/// A request's raw bytes: `lines` as given (any bytes), no `Connection` field.
fn raw_request(method: &str, path: &str, host: &str, lines: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n").into_bytes();
    for (name, value) in lines {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[test]
fn every_vector_gets_the_same_answer_from_both_paths() {
    let upstream = Upstream::start();
    let file = vectors();
    let mut compared = 0;
    let mut failures = Vec::new();
    for suite in &file.suites {
        let edge = Preflightd::start(&suite.rules, Some(&upstream.url()), &[]);
        for case in &suite.cases {
            let Some(expected_status) = case.expected_status() else {
                // Proxied either way: hyper serves both, nothing of the fast path to compare.
                continue;
            };
            let request = &case.request;
            let lines: Vec<(&str, Vec<u8>)> = request
                .headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_bytes().to_vec()))
                .collect();
            let raw = raw_request(
                request.method.as_str(),
                &request.path,
                &request.authority,
                &lines,
            );
            let (fast, slow) = both_paths(edge.data, &raw);
            compared += 1;
            // A head past `--max-header-bytes` (64 KiB by default) never reaches the
            // decision: it is hyper's 431 on both paths.
            let oversized = raw.len() > 65_536;
            let status = if oversized { 431 } else { expected_status };
            let want = format!("HTTP/1.1 {status} ");
            let mut wrong = Vec::new();
            if fast != slow || !fast.starts_with(want.as_bytes()) {
                wrong.push(format!("status or paths differ, expected {status}"));
            }
            // What the case says of the answer holds on the wire too, not only in process.
            for (name, value) in &case.response {
                let got = wire_header(&fast, name.as_str());
                if !oversized && got.as_deref() != Some(value.as_str()) {
                    wrong.push(format!("{name}: expected {value:?}, got {got:?}"));
                }
            }
            for name in &case.absent {
                if let Some(got) = wire_header(&fast, name.as_str()) {
                    wrong.push(format!("{name} must be absent, got {got:?}"));
                }
            }
            if !wrong.is_empty() {
                failures.push(format!(
                    "[{}] {} ({}): {}\nfast path:\n{}\nhyper:\n{}",
                    suite.name,
                    case.name,
                    case.location,
                    wrong.join("; "),
                    String::from_utf8_lossy(&fast),
                    String::from_utf8_lossy(&slow)
                ));
            }
        }
    }
    assert!(compared > 50, "only {compared} vectors compared");
    assert!(
        failures.is_empty(),
        "{} of {compared} differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The value of `name` in a raw response's head (names compare case-insensitively).
fn wire_header(raw: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    head.split("\r\n").skip(1).find_map(|line| {
        let (field, value) = line.split_once(':')?;
        field
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_owned())
    })
}

/// Rules that reach every kind of answer: echoed and `*` origins, echoed methods and header
/// names (credentials with `*`), Private Network Access, debug denials, a CDN max-age.
const RULES: &str = r#"
[settings]
debug = true
cdn_max_age = 60

[[rule]]
name = "echo-everything"
paths = ["/creds/"]
origins = ["https://app.example.com", "https://*.example.org"]
methods = ["*"]
headers = ["*"]
credentials = true
private_network = true

[[rule]]
name = "public"
paths = ["/public/"]
origins = ["*"]
methods = ["PUT"]
headers = ["content-type", "authorization"]

[[rule]]
name = "listed"
hosts = ["api.example.com"]
origins = ["https://app.example.com", "null"]
methods = ["PUT", "DELETE"]
headers = ["content-type", "x-api-key"]
max_age = 600
"#;

/// Values as a hostile client sends them: known ones, and visible bytes with spaces, commas,
/// tabs and obs-text.
fn value(known: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => proptest::sample::select(known).prop_map(|s| s.as_bytes().to_vec()),
        1 => proptest::collection::vec(
            prop_oneof![Just(b' '), Just(b','), Just(b'\t'), 0x21u8..0x7f, 0x80u8..=0xff],
            1..30
        )
        .prop_map(|mut v| {
            // A field value neither starts nor ends with whitespace on the wire (httparse
            // trims it); keep the bytes a parser sees.
            while v.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
                v.remove(0);
            }
            v
        }),
    ]
}

fn preflight_lines() -> impl Strategy<Value = Vec<(&'static str, Vec<u8>)>> {
    let origin = value(&[
        "https://app.example.com",
        "https://a.example.org",
        "null",
        "https://evil.com",
    ]);
    let method = value(&["PUT", "DELETE", "PATCH", "GET", "put"]);
    let headers = value(&[
        "content-type",
        "Content-Type, X-Api-Key",
        "authorization",
        "x-other,,x-api-key",
    ]);
    (
        proptest::collection::vec(origin, 1..3),
        proptest::collection::vec(method, 1..3),
        proptest::collection::vec(headers, 0..3),
        proptest::option::of(proptest::sample::select(vec!["true", "false", " true"])),
    )
        .prop_map(|(origins, methods, headers, pna)| {
            let mut lines = Vec::new();
            lines.extend(origins.into_iter().map(|v| ("Origin", v)));
            lines.extend(
                methods
                    .into_iter()
                    .map(|v| ("Access-Control-Request-Method", v)),
            );
            lines.extend(
                headers
                    .into_iter()
                    .map(|v| ("access-control-request-headers", v)),
            );
            if let Some(pna) = pna {
                lines.push((
                    "Access-Control-Request-Private-Network",
                    pna.as_bytes().to_vec(),
                ));
            }
            lines
        })
}

#[test]
fn generated_preflights_get_the_same_answer_from_both_paths() {
    generated_preflights_against(RULES, 300, None, |_| {});
}

/// The bucket-model features: a 200 answer (with `content-length: 0`, as hyper writes it),
/// header prefix globs (echoed names), `https://*` and only-listed methods.
const BUCKET_RULES: &str = r#"
[settings]
preflight_status = 200

[[rule]]
name = "globs"
paths = ["/creds/"]
origins = ["https://*"]
methods = ["PUT", "GET"]
only_listed_methods = true
headers = ["x-api-*", "content-type"]

[[rule]]
name = "public"
paths = ["/public/"]
origins = ["*"]
methods = ["PUT"]
headers = ["*", "authorization", "x-*"]
"#;

#[test]
fn generated_preflights_under_bucket_rules_get_the_same_answer_from_both_paths() {
    // A fixed seed: whether a random run of 150 reaches an allowed answer is chance (it
    // missed once in CI); this one does, and the fixed requests above cover each feature.
    let seed = Some(proptest::test_runner::TestRng::deterministic_rng(
        proptest::test_runner::RngAlgorithm::ChaCha,
    ));
    let allowed = generated_preflights_against(BUCKET_RULES, 150, seed, |edge| {
        // Each feature answering, so the comparison covers them whatever is generated.
        let fixed: [(&str, Lines); 3] = [
            (
                "/creds/a",
                &[
                    ("Origin", b"https://any.test:8443"),
                    ("Access-Control-Request-Method", b"GET"),
                    ("Access-Control-Request-Headers", b"X-Api-Key,content-type"),
                ],
            ),
            (
                "/creds/b",
                &[
                    ("Origin", b"https://any.test"),
                    ("Access-Control-Request-Method", b"POST"),
                ],
            ),
            (
                "/public/c",
                &[
                    ("Origin", b"http://x.test"),
                    ("Access-Control-Request-Method", b"PUT"),
                    ("Access-Control-Request-Headers", b"authorization,x-y"),
                ],
            ),
        ];
        let mut statuses = Vec::new();
        for (path, lines) in fixed {
            let lines: Vec<(&str, Vec<u8>)> = lines.iter().map(|(n, v)| (*n, v.to_vec())).collect();
            let request = raw_request("OPTIONS", path, "api.example.com", &lines);
            let (fast, slow) = both_paths(edge, &request);
            assert_eq!(
                String::from_utf8_lossy(&fast),
                String::from_utf8_lossy(&slow)
            );
            statuses.push(String::from_utf8_lossy(&fast[..12]).into_owned());
        }
        // POST is not listed and `only_listed_methods` holds: denied.
        assert_eq!(statuses, ["HTTP/1.1 200", "HTTP/1.1 403", "HTTP/1.1 200"]);
    });
    assert!(allowed > 0, "some generated preflights are allowed");
}

/// Field lines of a request, as written.
type Lines<'a> = &'a [(&'a str, &'a [u8])];

/// Runs `cases` generated preflights against `rules` (after `first`), both ways; returns how
/// many were allowed.
fn generated_preflights_against(
    rules: &str,
    cases: u32,
    rng: Option<proptest::test_runner::TestRng>,
    first: impl FnOnce(SocketAddr),
) -> usize {
    let upstream = Upstream::start();
    let edge = Preflightd::start(rules, Some(&upstream.url()), &[]);
    first(edge.data);
    let allowed = std::cell::Cell::new(0);
    let config = ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = match rng {
        Some(rng) => proptest::test_runner::TestRunner::new_with_rng(config, rng),
        None => proptest::test_runner::TestRunner::new(config),
    };
    let paths = proptest::sample::select(vec!["/creds/x", "/public/y?q=1", "/other", "/"]);
    let hosts = proptest::sample::select(vec!["api.example.com", "api.example.com:8443", "x.test"]);
    runner
        .run(&(preflight_lines(), paths, hosts), |(lines, path, host)| {
            let request = raw_request("OPTIONS", path, host, &lines);
            let (fast, slow) = both_paths(edge.data, &request);
            if fast.starts_with(b"HTTP/1.1 20") {
                allowed.set(allowed.get() + 1);
            }
            prop_assert_eq!(
                String::from_utf8_lossy(&fast),
                String::from_utf8_lossy(&slow),
                "request:\n{}",
                String::from_utf8_lossy(&request)
            );
            Ok(())
        })
        .expect("both paths answer alike");
    allowed.get()
}
