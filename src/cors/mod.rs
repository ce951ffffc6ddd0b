//! The preflight decision: `decide(&Policy, request) -> Decision`. No I/O, no clock, no lock,
//! no allocation on the allowed path apart from what the answer echoes.
//!
//! Order (DESIGN 3 and 4): the first rule whose scope, origin, method and every requested
//! header all match answers. When none does, the denial names the furthest step any rule in
//! scope reached: `no_rule` < `origin` < `method` < `headers`; `malformed` stands apart.

mod answer;
mod explain;
mod fill;
mod request;

use http::{HeaderMap, Method};

use crate::policy::{CompiledRule, Policy};
pub use answer::{ACCESS_CONTROL_ALLOW_PRIVATE_NETWORK, Answer, Outcome, Reason};
pub use explain::{Explanation, RuleStep, RuleTrace, explain};
pub use fill::{Fill, fill_for};
pub use request::{
    ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK, MAX_ORIGIN_BYTES, MAX_REQUEST_HEADER_NAMES,
    MAX_REQUEST_HEADERS_BYTES, Malformed, Preflight, is_preflight,
};

#[derive(Debug, Clone, Copy)]
pub enum Decision<'p> {
    /// Not a CORS preflight (CORS-CHECKLIST 1.1-1.4): proxy it untouched.
    NotPreflight,
    /// A preflight no rule's scope covers, with `unmatched = "forward"`: proxy it.
    Forward,
    /// The edge answers.
    Answer(Answer<'p>),
}

/// How far one rule got with one preflight, ordered so that "further" compares greater.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Verdict {
    MethodDenied,
    HeadersDenied,
    Allowed,
}

/// The request as the decision needs it: method, host (with or without port, as in the
/// `Host` field or the URI authority), path, and header lines.
#[derive(Debug, Clone, Copy)]
pub struct Request<'r> {
    pub method: &'r Method,
    pub host: Option<&'r [u8]>,
    pub path: &'r [u8],
    pub headers: &'r HeaderMap,
}

pub fn decide<'p>(policy: &'p Policy, request: &Request<'_>) -> Decision<'p> {
    if !is_preflight(request.method, request.headers) {
        return Decision::NotPreflight;
    }
    let host = request.host.map(host_without_port);
    if !policy.any_scope_covers(host, request.path) {
        if policy.forwards_unmatched() {
            return Decision::Forward;
        }
        return deny(policy, Reason::NoRule, None, false);
    }
    let preflight = match request::parse(request.headers) {
        Ok(preflight) => preflight,
        Err(_) => return deny(policy, Reason::Malformed, None, false),
    };
    let mut best: Option<(Verdict, usize)> = None;
    policy.origins.for_each_match(preflight.origin, |index| {
        let rule = &policy.rules[index];
        if !rule.scope_covers(host, request.path) {
            return;
        }
        let verdict = evaluate(rule, &preflight);
        // Further wins; among equals the earlier rule (first match).
        let better = match best {
            None => true,
            Some((v, i)) => verdict > v || (verdict == v && index < i),
        };
        if better {
            best = Some((verdict, index));
        }
    });
    let private_network = preflight.private_network;
    match best {
        None => deny(policy, Reason::Origin, None, false),
        Some((Verdict::MethodDenied, i)) => deny(policy, Reason::Method, Some(i), private_network),
        Some((Verdict::HeadersDenied, i)) => {
            deny(policy, Reason::Headers, Some(i), private_network)
        }
        Some((Verdict::Allowed, i)) => Decision::Answer(Answer::new(
            policy,
            Outcome::Allowed,
            Some(i),
            private_network,
        )),
    }
}

fn deny(
    policy: &Policy,
    reason: Reason,
    rule: Option<usize>,
    private_network: bool,
) -> Decision<'_> {
    Decision::Answer(Answer::new(
        policy,
        Outcome::Denied(reason),
        rule,
        private_network,
    ))
}

fn evaluate(rule: &CompiledRule, preflight: &Preflight<'_>) -> Verdict {
    if !method_allowed(rule, preflight.method) {
        return Verdict::MethodDenied;
    }
    if !preflight
        .headers
        .iter()
        .all(|name| header_allowed(rule, name))
    {
        return Verdict::HeadersDenied;
    }
    Verdict::Allowed
}

/// CORS-CHECKLIST 2.7: methods compare byte-exactly (a rule `PATCH` does not allow `patch`,
/// 2.8); 2.13: the safelisted GET, HEAD and POST are allowed by method whatever the list.
#[inline]
fn method_allowed(rule: &CompiledRule, method: &[u8]) -> bool {
    matches!(method, b"GET" | b"HEAD" | b"POST")
        || rule.methods.any
        || rule.methods.contains_exact(method)
}

/// CORS-CHECKLIST 2.9: names compare ASCII-case-insensitively; `*` never covers
/// `authorization`, which must be listed by name.
#[inline]
fn header_allowed(rule: &CompiledRule, name: &[u8]) -> bool {
    rule.headers.contains_ignore_case(name)
        || (rule.headers.any && !name.eq_ignore_ascii_case(b"authorization"))
}

/// `Host` / authority without its port (hosts scopes ignore the port, DESIGN 3).
#[inline]
fn host_without_port(host: &[u8]) -> &[u8] {
    if host.first() == Some(&b'[') {
        return match host.iter().position(|&b| b == b']') {
            Some(close) => &host[..=close],
            None => host,
        };
    }
    match host.iter().rposition(|&b| b == b':') {
        Some(colon) => &host[..colon],
        None => host,
    }
}
