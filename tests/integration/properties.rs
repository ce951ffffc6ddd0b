//! Properties every answer keeps, over generated rule sets and hostile requests:
//! - no answer carries `Access-Control-Allow-Origin: *` together with credentials (2.3);
//! - no answer reflects a byte that is not part of a token (or, for the origin, of a
//!   serialized origin) (2.6, 1.8);
//! - every answer carries exactly one `Vary` (4.2).

use http::header::{ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN};
use http::{HeaderMap, HeaderValue, Method};
use preflightd::cors::{Decision, Request, decide};
use preflightd::policy::{Policy, compile};
use preflightd::rules::{Source, load_sources};
use preflightd::syntax::is_token;
use proptest::prelude::*;

const ORIGINS: &[&str] = &[
    "*",
    "null",
    "https://app.example.com",
    "https://*.example.com",
    "http://localhost:*",
    "regex:https://pr-[0-9]+\\.example\\.org",
];
const METHODS: &[&str] = &["*", "GET", "PUT", "PATCH", "delete"];
const HEADERS: &[&str] = &["*", "content-type", "authorization", "x-api-key"];

fn rule_text() -> impl Strategy<Value = String> {
    (
        proptest::sample::subsequence(ORIGINS, 1..4),
        proptest::sample::subsequence(METHODS, 0..3),
        proptest::sample::subsequence(HEADERS, 0..3),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(origins, methods, headers, credentials, private_network)| {
            let list = |items: &[&str]| {
                items.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ")
            };
            format!(
                "origins = [{}]\nmethods = [{}]\nheaders = [{}]\ncredentials = {credentials}\nprivate_network = {private_network}\n",
                list(&origins),
                list(&methods),
                list(&headers)
            )
        })
}

fn policy_strategy() -> impl Strategy<Value = Option<Policy>> {
    (proptest::collection::vec(rule_text(), 1..5), any::<bool>()).prop_map(|(rules, debug)| {
        let mut text = format!("[settings]\ndebug = {debug}\n");
        for (i, rule) in rules.iter().enumerate() {
            text.push_str(&format!("[[rule]]\nname = \"r{i}\"\n{rule}"));
        }
        let loaded = load_sources(&[Source {
            name: "prop.toml".into(),
            text,
        }]);
        // Some combinations are refused by validation (`*` with credentials): skipped.
        loaded
            .rules
            .map(|rules| compile(rules).expect("valid rules compile"))
    })
}

/// Header values as a hostile client might send them: known-good values, and arbitrary
/// visible bytes with spaces, commas and obs-text.
fn value_strategy(known: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::sample::select(known).prop_map(|s| s.as_bytes().to_vec()),
        proptest::collection::vec(
            prop_oneof![
                Just(b' '),
                Just(b','),
                Just(b'\t'),
                0x21u8..0x7f,
                0x80u8..=0xff
            ],
            0..40
        ),
    ]
}

const REQUEST_ORIGINS: &[&str] = &[
    "https://app.example.com",
    "https://a.example.com",
    "null",
    "http://localhost:3000",
    "https://pr-1.example.org",
    "https://evil.com",
];
const REQUEST_METHODS: &[&str] = &["GET", "PUT", "PATCH", "delete", "POST"];
const REQUEST_HEADERS: &[&str] = &[
    "content-type",
    "authorization, x-api-key",
    "X-Api-Key,,",
    "",
];

fn check_answer(policy: &Policy, headers: &HeaderMap) -> Result<(), TestCaseError> {
    let request = Request {
        method: &Method::OPTIONS,
        host: Some(b"api.example.com"),
        path: b"/",
        headers,
    };
    let Decision::Answer(answer) = decide(policy, &request) else {
        return Ok(());
    };
    let mut out = HeaderMap::new();
    answer.write_headers(headers, &mut out);
    prop_assert_eq!(out.get_all("vary").iter().count(), 1);
    let acao = out
        .get("access-control-allow-origin")
        .map(HeaderValue::as_bytes);
    let acac = out.contains_key("access-control-allow-credentials");
    prop_assert!(!(acac && acao == Some(b"*")), "ACAO * with credentials");
    if let Some(origin) = acao {
        prop_assert!(origin.iter().all(|b| b.is_ascii_graphic() && *b != b','));
    }
    for name in [
        "access-control-allow-methods",
        "access-control-allow-headers",
    ] {
        if let Some(value) = out.get(name) {
            for item in value.as_bytes().split(|&b| b == b',') {
                let item = preflightd::syntax::trim_ows(item);
                prop_assert!(is_token(item), "{} holds a non-token {:?}", name, item);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn answers_keep_their_invariants(
        policy in policy_strategy(),
        origin in value_strategy(REQUEST_ORIGINS),
        method in value_strategy(REQUEST_METHODS),
        requested in value_strategy(REQUEST_HEADERS),
    ) {
        let Some(policy) = policy else { return Ok(()) };
        let mut headers = HeaderMap::new();
        // A value hyper would refuse (control bytes) never reaches the decision.
        let (Ok(origin), Ok(method), Ok(requested)) = (
            HeaderValue::from_bytes(&origin),
            HeaderValue::from_bytes(&method),
            HeaderValue::from_bytes(&requested),
        ) else {
            return Ok(());
        };
        headers.insert(ORIGIN, origin);
        headers.insert(ACCESS_CONTROL_REQUEST_METHOD, method);
        headers.insert(ACCESS_CONTROL_REQUEST_HEADERS, requested);
        check_answer(&policy, &headers)?;
    }
}

// The scope index and the grouped origin matcher (policy::for_each_candidate) must find
// exactly the rules that a walk over every rule finds: origin entry matches and scope covers.
// Rule counts up to 60 over few origins make groups larger than the matcher's walk threshold,
// so both the walked and the probed path are exercised.

const SCOPED_ORIGINS: &[&str] = &[
    "https://app.example.com",
    "https://*.example.com",
    "*",
    "regex:https://pr-[0-9]+\\.example\\.org",
];
const HOSTS: &[&str] = &[
    "api.example.com",
    "*.example.com",
    "API.other.test",
    "*.b.example.com",
];
const PATHS: &[&str] = &["/v1/", "/v1/admin", "/", "/x"];

fn scoped_rule() -> impl Strategy<Value = String> {
    (
        proptest::sample::subsequence(SCOPED_ORIGINS, 1..3),
        proptest::sample::subsequence(HOSTS, 0..3),
        proptest::sample::subsequence(PATHS, 0..3),
    )
        .prop_map(|(origins, hosts, paths)| {
            let list = |items: &[&str]| {
                items
                    .iter()
                    .map(|s| format!("{s:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let mut text = format!("origins = [{}]\n", list(&origins));
            if !hosts.is_empty() {
                text.push_str(&format!("hosts = [{}]\n", list(&hosts)));
            }
            if !paths.is_empty() {
                text.push_str(&format!("paths = [{}]\n", list(&paths)));
            }
            text
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn indexed_candidates_are_exactly_the_walked_ones(
        rules in proptest::collection::vec(scoped_rule(), 1..60),
        origin in proptest::sample::select(vec![
            "https://app.example.com", "https://x.example.com", "https://pr-12.example.org",
            "https://evil.test", "null",
        ]),
        host in proptest::option::of(proptest::sample::select(vec![
            "api.example.com", "API.EXAMPLE.COM", "a.b.example.com", "example.com",
            "api.other.test", "b.example.com", "x.api.example.com",
        ])),
        path in proptest::sample::select(vec!["/", "/v1/", "/v1/admin/x", "/x", "/y", ""]),
    ) {
        let mut text = String::new();
        for (i, rule) in rules.iter().enumerate() {
            text.push_str(&format!("[[rule]]\nname = \"r{i}\"\n{rule}"));
        }
        let loaded = load_sources(&[Source { name: "scopes.toml".into(), text }]);
        let policy = compile(loaded.rules.expect("rules load")).expect("compile");
        let host = host.map(str::as_bytes);
        let path = path.as_bytes();
        let mut indexed = Vec::new();
        policy.for_each_candidate(origin.as_bytes(), host, path, |i| indexed.push(i));
        indexed.sort_unstable();
        indexed.dedup();
        let mut walked = Vec::new();
        policy.origins.for_each_match(origin.as_bytes(), |i| {
            if policy.rules[i].scope_covers(host, path) {
                walked.push(i);
            }
        });
        walked.sort_unstable();
        walked.dedup();
        prop_assert_eq!(indexed, walked);
        let any = policy.rules.iter().any(|r| r.scope_covers(host, path));
        prop_assert_eq!(policy.any_scope_covers(host, path), any);
    }
}
