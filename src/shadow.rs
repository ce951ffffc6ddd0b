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

use std::sync::Arc;

use http::header::{
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, HeaderMap, HeaderName,
    HeaderValue, ORIGIN,
};
use http::{StatusCode, Uri};
use serde_json::{Value, json};

use crate::cors::shadow::{Comparison, Judgement, Mismatch, compare, judge, suggest_fix};
use crate::cors::{
    ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK, Answer, Outcome, Preflight, Reason, header_allowed,
    parse_preflight,
};
use crate::metrics::{Metrics, ShadowCounters, ShadowUpstreamFailure};
use crate::policy::Policy;
use crate::tally::{Recorded, Tally};
use crate::throttle::Throttle;

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
/// rule that would answer already stands for the scope).
#[derive(Hash, PartialEq, Eq)]
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
    suggestion: Option<String>,
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
        let key = Key {
            comparison,
            rule: self.rule,
            outcome: self.outcome.index(),
            host: self
                .host
                .as_ref()
                .map(|h| text(h.as_bytes()).to_ascii_lowercase())
                .unwrap_or_default(),
            origin: text(preflight.origin),
            method: text(preflight.method),
            request_headers: preflight
                .headers
                .iter()
                .map(|name| text(name).to_ascii_lowercase())
                .collect(),
            upstream_status: status.as_u16(),
            upstream_fields: cors_response_fields(headers),
        };
        let path = text(self.uri.path().as_bytes());
        let not_allowed = self.headers_not_allowed(&preflight);
        let suggestion = |key: &Key| {
            suggest_fix(&Mismatch {
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
            })
        };
        let rules_fields = cors_response_fields(&self.answer);
        if let Some(suppressed) = MISMATCH_LOG.allow() {
            tracing::warn!(
                suppressed,
                result = comparison.as_str(),
                rule = self.shadow.counters.rule_label(self.rule),
                origin = ?key.origin,
                method = ?key.method,
                request_headers = ?key.request_headers,
                host = ?key.host,
                path = ?path,
                upstream = %answer_line(key.upstream_status, &key.upstream_fields),
                rules = %answer_line(self.status.as_u16(), &rules_fields),
                suggestion = suggestion(&key).as_deref().unwrap_or(""),
                "shadow mismatch: the upstream's answer and the rules' differ"
            );
        }
        let details = |key: &Key| Details {
            suggestion: suggestion(key),
            path: path.clone(),
            outcome: self.outcome,
            rules_status: self.status.as_u16(),
            rules_fields,
            rules: self.judgement,
            upstream,
        };
        let recorded = self.shadow.table.record(key, details);
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

/// An answer's `Access-Control-*` lines, in order, bounded.
fn cors_response_fields(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| is_cors_response_field(name))
        .take(MAX_ANSWER_LINES)
        .map(|(name, value)| (name.as_str().to_owned(), text(value.as_bytes())))
        .collect()
}

fn is_cors_response_field(name: &HeaderName) -> bool {
    name.as_str().starts_with("access-control-")
}

/// At most [`MAX_VALUE_BYTES`] of `bytes`, as text.
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_VALUE_BYTES)]).into_owned()
}

fn answer_line(status: u16, fields: &[(String, String)]) -> String {
    let lines: Vec<String> = fields.iter().map(|(n, v)| format!("{n}: {v}")).collect();
    format!("{status} {lines:?}")
}

/// The `/shadow` document: the mode, the table's bounds, and the distinct mismatches since
/// the last rules change, most frequent first (`generation` and `since` are the caller's).
pub fn report(shadow: Option<&Shadow>) -> Value {
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
                "suggestion": details.suggestion,
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
