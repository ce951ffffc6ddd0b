//! Shadow mode (`[settings] mode = "shadow"`): the upstream answers every preflight, proxied
//! like any other request, and preflightd compares what its rules would have answered,
//! sending nothing of its own.
//!
//! Each policy in shadow mode gets a [`Shadow`], built beside it (`live`) and replaced with
//! it, so everything here starts over with each rules change: the comparison counters by rule
//! (`preflightd_shadow_comparisons_total`) and a fixed-size [`Tally`] of the distinct
//! mismatches that `GET /shadow` shows. The request path (`server::handler`) captures the
//! rules' answer while it holds the policy snapshot ([`Case::new`]), lets the snapshot go,
//! proxies the preflight, and judges the upstream's answer against the captured one when it
//! arrives ([`Case::observe`]); a reload never waits for an upstream.

use std::sync::{Arc, OnceLock};

use http::header::{
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, HeaderMap, HeaderName,
    HeaderValue, ORIGIN,
};
use http::{Method, StatusCode, Uri};
use serde_json::{Value, json};

use crate::cors::shadow::{Allows, Comparison, Judgement, Mismatch, compare, judge, suggest_fix};
use crate::cors::{
    self, ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK, Answer, Outcome, Preflight, Reason,
    header_allowed, parse_preflight,
};
use crate::metrics::{Metrics, ShadowCounters, ShadowUpstreamFailure};
use crate::policy::Policy;
use crate::tally::{Recorded, Tally};
use crate::throttle::Throttle;

/// Above this many rules, `/shadow` suggests the denial step instead of `explain`'s
/// prescription, which recompiles the rules once per candidate edit.
const PRESCRIBE_MAX_RULES: usize = 500;

/// Distinct mismatches `/shadow` keeps per rules generation; more are counted, not kept.
pub const TABLE_CAPACITY: usize = 256;
/// Longest value kept for one field of a mismatch (host, path, origin, method, a header
/// value); longer values are cut there. With [`MAX_ANSWER_LINES`] it bounds an entry.
pub const MAX_VALUE_BYTES: usize = 1024;
/// Most `Access-Control-*` lines kept for each of a mismatch's two answers.
pub const MAX_ANSWER_LINES: usize = 8;

/// One policy's shadow state.
pub struct Shadow {
    counters: ShadowCounters,
    table: Tally<Key, Details>,
}

/// What makes two mismatches the same: everything but the path (paths carry ids, and the
/// rule that would answer already stands for the scope). Compared with [`Probe::is`].
struct Key {
    comparison: Comparison,
    rule: Option<usize>,
    /// The rules' decision (`Outcome::index`).
    outcome: usize,
    host: String,
    origin: String,
    method: String,
    request_headers: Vec<String>,
    upstream_status: u16,
    upstream_fields: Vec<(String, String)>,
}

/// What a mismatch's first occurrence adds to its key.
struct Details {
    path: String,
    outcome: Outcome,
    rules_status: u16,
    rules_fields: Vec<(String, String)>,
    rules: Judgement,
    upstream: Judgement,
    /// The denial step and what to add (`suggest_fix`): cheap, made with the entry.
    suggestion: Option<String>,
    /// What `explain`'s prescription needs, kept with the entry: the preflight's CORS lines
    /// and host (shared buffers, no copy of the bytes).
    request: HeaderMap,
    host: Option<HeaderValue>,
    /// `explain`'s prescription, made the first time `/shadow` shows the entry: it recompiles
    /// the rules once per candidate edit, which never belongs on a client's request.
    prescription: OnceLock<Option<String>>,
}

/// A mismatch as observed, borrowed: what the table is probed with, so that counting a
/// mismatch seen before allocates nothing. Hashes and compares as the [`Key`] it makes.
struct Probe<'a> {
    comparison: Comparison,
    rule: Option<usize>,
    outcome: usize,
    host: &'a [u8],
    preflight: &'a Preflight<'a>,
    upstream_status: u16,
    upstream: &'a HeaderMap,
}

impl Probe<'_> {
    fn to_key(&self) -> Key {
        Key {
            comparison: self.comparison,
            rule: self.rule,
            outcome: self.outcome,
            host: text(self.host).to_ascii_lowercase(),
            origin: text(self.preflight.origin),
            method: text(self.preflight.method),
            request_headers: self
                .preflight
                .headers
                .iter()
                .map(|name| text(name).to_ascii_lowercase())
                .collect(),
            upstream_status: self.upstream_status,
            upstream_fields: cors_response_fields(self.upstream),
        }
    }

    /// Whether `key` is the one this probe makes (host and header names compare
    /// ASCII-case-insensitively; each is ASCII, checked by the parse).
    fn is(&self, key: &Key) -> bool {
        key.comparison == self.comparison
            && key.rule == self.rule
            && key.outcome == self.outcome
            && key.upstream_status == self.upstream_status
            && key.host.as_bytes().eq_ignore_ascii_case(clip(self.host))
            && key.origin.as_bytes() == clip(self.preflight.origin)
            && key.method.as_bytes() == clip(self.preflight.method)
            && same_items(
                key.request_headers.iter(),
                self.preflight.headers.iter(),
                |stored, name| stored.as_bytes().eq_ignore_ascii_case(clip(name)),
            )
            && same_items(
                key.upstream_fields.iter(),
                cors_lines(self.upstream),
                |(n, v), (name, value)| {
                    n == name.as_str() && *v == String::from_utf8_lossy(clip(value.as_bytes()))
                },
            )
    }
}

/// Whether two sequences have the same length and `same` holds pairwise.
fn same_items<A, B>(
    mut a: impl Iterator<Item = A>,
    mut b: impl Iterator<Item = B>,
    same: impl Fn(A, B) -> bool,
) -> bool {
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) => {
                if !same(x, y) {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

impl std::hash::Hash for Probe<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.comparison.hash(state);
        self.rule.hash(state);
        self.outcome.hash(state);
        self.upstream_status.hash(state);
        let lowercase = |bytes: &[u8], state: &mut H| {
            state.write_usize(clip(bytes).len());
            for byte in clip(bytes) {
                state.write_u8(byte.to_ascii_lowercase());
            }
        };
        lowercase(self.host, state);
        clip(self.preflight.origin).hash(state);
        clip(self.preflight.method).hash(state);
        for name in self.preflight.headers.iter() {
            lowercase(name, state);
        }
        for (name, value) in cors_lines(self.upstream) {
            name.as_str().hash(state);
            String::from_utf8_lossy(clip(value.as_bytes())).hash(state);
        }
    }
}

impl Shadow {
    pub fn new(policy: &Policy, metrics: &Metrics) -> Self {
        Shadow {
            counters: metrics.shadow_counters(policy),
            table: Tally::new(TABLE_CAPACITY),
        }
    }
}

/// One shadowed preflight: the request's CORS fields and the rules' answer, captured before
/// the preflight goes upstream.
pub struct Case {
    shadow: Arc<Shadow>,
    /// The preflight's `Origin` and `Access-Control-Request-*` lines.
    request: HeaderMap,
    host: Option<HeaderValue>,
    uri: Uri,
    rule: Option<usize>,
    outcome: Outcome,
    status: StatusCode,
    /// The rules' answer, as the edge would have sent it.
    answer: HeaderMap,
    judgement: Judgement,
    /// For a `headers` denial: bit `i` set when the `i`th requested name is not allowed by
    /// the rule (at most 64 names, `cors::MAX_REQUEST_HEADER_NAMES`).
    headers_not_allowed: u64,
}

impl Case {
    /// The rules' side of the comparison, or `None` for a malformed preflight, which is proxied
    /// without one (no browser sends it, CORS-CHECKLIST 1.8: nothing a page sees can differ).
    pub fn new(
        shadow: &Arc<Shadow>,
        answer: &Answer<'_>,
        headers: &HeaderMap,
        host: Option<&HeaderValue>,
        uri: &Uri,
    ) -> Option<Case> {
        if answer.outcome == Outcome::Denied(Reason::Malformed) {
            return None;
        }
        let preflight = parse_preflight(headers).ok()?;
        let mut rendered = HeaderMap::new();
        answer.write_headers(headers, &mut rendered);
        let status = answer.status();
        let judgement = judge(&preflight, status, &rendered);
        let headers_not_allowed = match (answer.outcome, answer.rule()) {
            (Outcome::Denied(Reason::Headers), Some(rule)) => preflight
                .headers
                .iter()
                .enumerate()
                .filter(|(_, name)| !header_allowed(rule, name))
                .fold(0u64, |mask, (i, _)| {
                    mask | 1u64.checked_shl(i as u32).unwrap_or(0)
                }),
            _ => 0,
        };
        Some(Case {
            shadow: Arc::clone(shadow),
            request: cors_request_fields(headers),
            host: host.cloned(),
            uri: uri.clone(),
            rule: answer.rule,
            outcome: answer.outcome,
            status,
            answer: rendered,
            judgement,
            headers_not_allowed,
        })
    }

    /// Judges the answer the client got. `from_upstream`: the upstream's own answer; else the
    /// edge's 502 / 503 / 504 (or a client fault's 400 / 408), which is not compared.
    pub fn observe(
        self,
        status: StatusCode,
        headers: &HeaderMap,
        from_upstream: bool,
        metrics: &Metrics,
    ) {
        if !from_upstream {
            let failure = match status {
                StatusCode::GATEWAY_TIMEOUT => Some(ShadowUpstreamFailure::Timeout),
                StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE => {
                    Some(ShadowUpstreamFailure::Error)
                }
                // The client's own fault (a broken body): `preflightd_client_errors_total`.
                _ => None,
            };
            if let Some(failure) = failure {
                metrics.count_shadow_upstream_failure(failure);
            }
            return;
        }
        // Parsed when the case was made; the copy holds the same lines.
        let Ok(preflight) = parse_preflight(&self.request) else {
            return;
        };
        let upstream = judge(&preflight, status, headers);
        let comparison = compare(&upstream, &self.judgement);
        self.shadow.counters.count(self.rule, comparison);
        if comparison == Comparison::Match {
            return;
        }
        let probe = Probe {
            comparison,
            rule: self.rule,
            outcome: self.outcome.index(),
            host: self.host.as_ref().map_or(&[][..], HeaderValue::as_bytes),
            preflight: &preflight,
            upstream_status: status.as_u16(),
            upstream: headers,
        };
        // Built only for a log line (one a second at most) or a new entry: a mismatch seen
        // before is counted from the borrowed probe.
        let details = |key: &Key| {
            let path = text(self.uri.path().as_bytes());
            let not_allowed = self.headers_not_allowed(&preflight);
            let suggestion = suggest_fix(&Mismatch {
                upstream,
                rules: self.judgement,
                outcome: self.outcome,
                rule: self
                    .rule
                    .map(|_| self.shadow.counters.rule_label(self.rule)),
                host: &key.host,
                path: &path,
                origin: &key.origin,
                method: &key.method,
                headers_not_allowed: &not_allowed,
            });
            Details {
                path,
                outcome: self.outcome,
                rules_status: self.status.as_u16(),
                rules_fields: cors_response_fields(&self.answer),
                rules: self.judgement,
                upstream,
                suggestion,
                request: self.request.clone(),
                host: self.host.clone(),
                prescription: OnceLock::new(),
            }
        };
        if let Some(suppressed) = MISMATCH_LOG.allow() {
            let key = probe.to_key();
            let details = details(&key);
            tracing::warn!(
                suppressed,
                result = comparison.as_str(),
                rule = self.shadow.counters.rule_label(self.rule),
                origin = ?key.origin,
                method = ?key.method,
                request_headers = ?key.request_headers,
                host = ?key.host,
                path = ?details.path,
                upstream = %answer_line(key.upstream_status, &key.upstream_fields),
                rules = %answer_line(details.rules_status, &details.rules_fields),
                suggestion = details.suggestion.as_deref().unwrap_or(""),
                "shadow mismatch: the upstream's answer and the rules' differ"
            );
        }
        let recorded = self.shadow.table.record(
            &probe,
            |key| probe.is(key),
            || {
                let key = probe.to_key();
                let details = details(&key);
                (key, details)
            },
        );
        if recorded == Recorded::Overflow {
            metrics.shadow_overflow.inc();
        }
    }

    fn headers_not_allowed(&self, preflight: &Preflight<'_>) -> Vec<String> {
        preflight
            .headers
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                self.headers_not_allowed & 1u64.checked_shl(*i as u32).unwrap_or(0) != 0
            })
            .map(|(_, name)| text(name).to_ascii_lowercase())
            .collect()
    }
}

static MISMATCH_LOG: Throttle = Throttle::new();

/// The request fields a preflight's judgement reads, copied (the values are shared buffers).
fn cors_request_fields(headers: &HeaderMap) -> HeaderMap {
    let mut fields = HeaderMap::new();
    for name in [
        &ORIGIN,
        &ACCESS_CONTROL_REQUEST_METHOD,
        &ACCESS_CONTROL_REQUEST_HEADERS,
        &ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK,
    ] {
        for value in headers.get_all(name) {
            fields.append(name.clone(), value.clone());
        }
    }
    fields
}

/// An answer's `Access-Control-*` lines, in order, at most [`MAX_ANSWER_LINES`].
fn cors_lines(headers: &HeaderMap) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
    headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("access-control-"))
        .take(MAX_ANSWER_LINES)
}

/// [`cors_lines`], kept.
fn cors_response_fields(headers: &HeaderMap) -> Vec<(String, String)> {
    cors_lines(headers)
        .map(|(name, value)| (name.as_str().to_owned(), text(value.as_bytes())))
        .collect()
}

/// At most [`MAX_VALUE_BYTES`] of `bytes`.
fn clip(bytes: &[u8]) -> &[u8] {
    &bytes[..bytes.len().min(MAX_VALUE_BYTES)]
}

/// [`clip`], as text.
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(clip(bytes)).into_owned()
}

fn answer_line(status: u16, fields: &[(String, String)]) -> String {
    let lines: Vec<String> = fields.iter().map(|(n, v)| format!("{n}: {v}")).collect();
    format!("{status} {lines:?}")
}

/// The `/shadow` document: the mode, the table's bounds, and the distinct mismatches since
/// the last rules change, most frequent first (`generation` and `since` are the caller's).
/// `explain`'s prescription (`cors::prescribe`) for an entry: the smallest edit `check`
/// accepts that lets through what the upstream does, with credentials when the upstream
/// grants them. Made once per entry, when `/shadow` first shows it; above
/// [`PRESCRIBE_MAX_RULES`] rules (each candidate edit recompiles them) the denial step stands
/// in, as it does where no edit is found.
fn prescription<'d>(policy: &Policy, details: &'d Details) -> Option<&'d str> {
    details
        .prescription
        .get_or_init(|| {
            if policy.rules.len() > PRESCRIBE_MAX_RULES {
                return None;
            }
            let request = cors::Request {
                method: &Method::OPTIONS,
                host: details.host.as_ref().map(HeaderValue::as_bytes),
                path: details.path.as_bytes(),
                headers: &details.request,
            };
            let credentials = details.upstream.allows() == Allows::WithCredentials;
            cors::prescribe(policy, &request, credentials).map(|p| p.to_string())
        })
        .as_deref()
        .or(details.suggestion.as_deref())
}

/// `GET /shadow`: the table of `shadow` (the snapshot's, decided on `policy`).
pub fn report(shadow: Option<&Shadow>, policy: &Policy) -> Value {
    let Some(shadow) = shadow else {
        return json!({
            "mode": "enforce",
            "capacity": TABLE_CAPACITY,
            "distinct": 0,
            "overflow": 0,
            "mismatches": [],
        });
    };
    let table = &shadow.table;
    let mismatches: Vec<Value> = table
        .ranked()
        .into_iter()
        .map(|entry| {
            let (key, details) = (entry.key, entry.details);
            json!({
                "count": entry.count,
                "result": key.comparison.as_str(),
                "rule": shadow.counters.rule_label(key.rule),
                "request": {
                    "host": key.host,
                    "path": details.path,
                    "origin": key.origin,
                    "method": key.method,
                    "headers": key.request_headers,
                },
                "upstream": answer_json(key.upstream_status, &key.upstream_fields, &details.upstream, None),
                "rules": answer_json(details.rules_status, &details.rules_fields, &details.rules, Some(details.outcome)),
                "suggestion": match key.comparison {
                    Comparison::OnlyUpstreamAllows => prescription(policy, details),
                    _ => details.suggestion.as_deref(),
                },
            })
        })
        .collect();
    json!({
        "mode": "shadow",
        "capacity": table.capacity(),
        "distinct": mismatches.len(),
        "overflow": table.overflow(),
        "mismatches": mismatches,
    })
}

fn answer_json(
    status: u16,
    fields: &[(String, String)],
    judgement: &Judgement,
    decision: Option<Outcome>,
) -> Value {
    let fails_at = |result: Result<(), crate::cors::shadow::Step>| match result {
        Ok(()) => Value::Null,
        Err(step) => Value::from(step.as_str()),
    };
    let mut answer = json!({
        "status": status,
        "allows": judgement.allows().as_str(),
        "fails_at": {
            "without_credentials": fails_at(judgement.without_credentials),
            "with_credentials": fails_at(judgement.with_credentials),
        },
        "max_age": judgement.effective_max_age(),
        "headers": fields,
    });
    if let (Some(decision), Some(object)) = (decision, answer.as_object_mut()) {
        object.insert("decision".to_owned(), Value::from(decision.as_str()));
    }
    answer
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    fn request(headers: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(ORIGIN, HeaderValue::from_static("https://app.example.com"));
        map.insert(
            ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("PATCH"),
        );
        map.insert(
            ACCESS_CONTROL_REQUEST_HEADERS,
            HeaderValue::from_str(headers).expect("headers"),
        );
        map
    }

    fn upstream(origin: &'static str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(
            "access-control-allow-origin",
            HeaderValue::from_static(origin),
        );
        map.insert("vary", HeaderValue::from_static("Origin"));
        map.insert("access-control-max-age", HeaderValue::from_static("300"));
        map
    }

    fn probe<'a>(
        host: &'a [u8],
        preflight: &'a Preflight<'a>,
        upstream: &'a HeaderMap,
    ) -> Probe<'a> {
        Probe {
            comparison: Comparison::OnlyUpstreamAllows,
            rule: Some(0),
            outcome: Outcome::Denied(Reason::Method).index(),
            host,
            preflight,
            upstream_status: 204,
            upstream,
        }
    }

    #[test]
    fn a_probe_is_the_key_it_makes_and_hashes_alike_for_the_same_mismatch() {
        let seed = std::collections::hash_map::RandomState::new();
        let (lower, upper) = (request("x-a, x-b"), request("X-A,X-B"));
        let (lower, upper) = (
            parse_preflight(&lower).expect("preflight"),
            parse_preflight(&upper).expect("preflight"),
        );
        let answer = upstream("https://app.example.com");
        let first = probe(b"api.example.com", &lower, &answer);
        let key = first.to_key();
        assert_eq!(key.request_headers, ["x-a", "x-b"]);
        assert_eq!(
            key.upstream_fields,
            [
                (
                    "access-control-allow-origin".to_owned(),
                    "https://app.example.com".to_owned()
                ),
                ("access-control-max-age".to_owned(), "300".to_owned()),
            ]
        );
        assert!(first.is(&key));
        // Host and header names in another case: the same mismatch, in the same slot.
        let again = probe(b"API.example.com", &upper, &answer);
        assert!(again.is(&key));
        assert_eq!(seed.hash_one(&first), seed.hash_one(&again));
        // Another upstream answer, or another host: another mismatch.
        let other_answer = upstream("*");
        assert!(!probe(b"api.example.com", &lower, &other_answer).is(&key));
        assert!(!probe(b"www.example.com", &lower, &answer).is(&key));
        let fewer = request("x-a");
        let fewer = parse_preflight(&fewer).expect("preflight");
        assert!(!probe(b"api.example.com", &fewer, &answer).is(&key));
    }

    #[test]
    fn values_are_kept_to_a_bound() {
        let long = "a".repeat(5000);
        assert_eq!(text(long.as_bytes()).len(), MAX_VALUE_BYTES);
        let mut many = HeaderMap::new();
        for i in 0..20 {
            many.append(
                "access-control-allow-headers",
                HeaderValue::from_str(&format!("x-{i}")).expect("value"),
            );
        }
        assert_eq!(cors_response_fields(&many).len(), MAX_ANSWER_LINES);
    }
}
