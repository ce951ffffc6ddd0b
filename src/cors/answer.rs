//! The answer to a preflight: status, headers and body, rendered from the policy's
//! pre-rendered values plus what has to be echoed from the request.

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS,
    ACCESS_CONTROL_REQUEST_METHOD, CACHE_CONTROL, CONTENT_TYPE, HeaderMap, ORIGIN, VARY,
};
use http::{HeaderName, HeaderValue, StatusCode};

use crate::policy::{AllowList, AllowOrigin, CompiledRule, Policy};
use crate::syntax::trim_ows;

pub static ACCESS_CONTROL_ALLOW_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-allow-private-network");

/// Why a preflight was denied, most general first (DESIGN 4.4). Also the `result` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// No rule's scope (hosts, paths) covers the request.
    NoRule,
    /// No rule in scope lists the origin.
    Origin,
    /// A rule allows the origin, none the method.
    Method,
    /// A rule allows origin and method, none every requested header.
    Headers,
    /// The preflight breaks the syntax (CORS-CHECKLIST 1.8, 2.18, 2.19, 3.6).
    Malformed,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NoRule => "no_rule",
            Reason::Origin => "origin",
            Reason::Method => "method",
            Reason::Headers => "headers",
            Reason::Malformed => "malformed",
        }
    }

    /// The fixed body of a 403: names the reason, reflects nothing of the request.
    pub fn body(self) -> &'static str {
        match self {
            Reason::NoRule => "CORS preflight denied: no rule covers this URL\n",
            Reason::Origin => "CORS preflight denied: origin not allowed\n",
            Reason::Method => "CORS preflight denied: method not allowed\n",
            Reason::Headers => "CORS preflight denied: headers not allowed\n",
            Reason::Malformed => "CORS preflight denied: malformed preflight\n",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    Denied(Reason),
}

impl Outcome {
    /// The `result` label of `preflightd_preflight_requests_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied(reason) => reason.as_str(),
        }
    }
}

/// An answer the edge gives itself.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'p> {
    pub outcome: Outcome,
    /// The rule that allowed, or that got furthest before a method or headers denial.
    pub rule: Option<usize>,
    policy: &'p Policy,
    /// Whether the answer carries `Access-Control-Allow-*` (allowed, or a `debug` denial).
    grants: bool,
    /// The request asked for private network access and the rule grants it.
    private_network: bool,
}

static NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
static TRUE: HeaderValue = HeaderValue::from_static("true");
static STAR: HeaderValue = HeaderValue::from_static("*");
static ZERO: HeaderValue = HeaderValue::from_static("0");
static TEXT_PLAIN: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");

impl<'p> Answer<'p> {
    pub(crate) fn new(
        policy: &'p Policy,
        outcome: Outcome,
        rule: Option<usize>,
        private_network: bool,
    ) -> Self {
        // DESIGN 4.4: with `debug`, a method or headers denial for an allowed origin answers
        // 204 with the allowed lists, so the browser's own console names the culprit.
        let grants = match outcome {
            Outcome::Allowed => true,
            Outcome::Denied(Reason::Method | Reason::Headers) => policy.settings().debug,
            Outcome::Denied(_) => false,
        };
        let private_network =
            grants && private_network && rule.is_some_and(|i| policy.rules[i].private_network);
        Answer {
            outcome,
            rule,
            policy,
            grants,
            private_network,
        }
    }

    pub fn status(&self) -> StatusCode {
        // CORS-CHECKLIST 2.1: 204 passes the browser's ok-status check; a denial must not.
        if self.grants {
            StatusCode::NO_CONTENT
        } else {
            StatusCode::FORBIDDEN
        }
    }

    pub fn body(&self) -> &'static str {
        match self.outcome {
            Outcome::Denied(reason) if !self.grants => reason.body(),
            _ => "",
        }
    }

    pub fn rule(&self) -> Option<&'p CompiledRule> {
        self.rule.map(|i| &self.policy.rules[i])
    }

    /// Writes the answer's headers. `request` is the preflight's header map, for the values
    /// echoed from it (already validated by the decision).
    pub fn write_headers(&self, request: &HeaderMap, out: &mut HeaderMap) {
        let rule = match self.rule() {
            Some(rule) if self.grants => rule,
            _ => {
                // 4.4: no Access-Control-Allow-* or -Max-Age on a denial.
                out.insert(VARY, self.policy.vary.clone());
                out.insert(CACHE_CONTROL, NO_STORE.clone());
                out.insert(CONTENT_TYPE, TEXT_PLAIN.clone());
                return;
            }
        };
        let allowed = self.outcome == Outcome::Allowed;
        match rule.allow_origin {
            AllowOrigin::Star => {
                out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, STAR.clone());
            }
            AllowOrigin::Echo => {
                if let Some(origin) = echo(request, &ORIGIN) {
                    out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
                }
            }
        }
        if rule.credentials {
            // CORS-CHECKLIST 2.2: byte-exactly `true`.
            out.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE.clone());
        }
        match &rule.allow_methods {
            AllowList::Omit => {}
            AllowList::Value(value) => {
                out.insert(ACCESS_CONTROL_ALLOW_METHODS, value.clone());
            }
            AllowList::Echo => {
                // CORS-CHECKLIST 2.7: the exact ACRM bytes.
                if let Some(method) = echo(request, &ACCESS_CONTROL_REQUEST_METHOD) {
                    out.insert(ACCESS_CONTROL_ALLOW_METHODS, method);
                }
            }
        }
        match &rule.allow_headers {
            AllowList::Omit => {}
            AllowList::Value(value) => {
                out.insert(ACCESS_CONTROL_ALLOW_HEADERS, value.clone());
            }
            AllowList::Echo => {
                if let Some(names) = echo_header_names(request, rule) {
                    out.insert(ACCESS_CONTROL_ALLOW_HEADERS, names);
                }
            }
        }
        // A debug denial must not be cached: the browser would keep failing from its cache
        // after the rules are fixed.
        let max_age = if allowed { &rule.max_age } else { &ZERO };
        out.insert(ACCESS_CONTROL_MAX_AGE, max_age.clone());
        if self.private_network {
            out.insert(ACCESS_CONTROL_ALLOW_PRIVATE_NETWORK.clone(), TRUE.clone());
        }
        out.insert(VARY, self.policy.vary.clone());
        let cache = if allowed {
            &self.policy.cache_control_allowed
        } else {
            &NO_STORE
        };
        out.insert(CACHE_CONTROL, cache.clone());
    }
}

/// The single line of `name`, OWS trimmed. The original value is reused (a reference count,
/// not a copy) when there was nothing to trim.
fn echo(request: &HeaderMap, name: &HeaderName) -> Option<HeaderValue> {
    let value = request.get(name)?;
    let trimmed = trim_ows(value.as_bytes());
    if trimmed.len() == value.len() {
        Some(value.clone())
    } else {
        HeaderValue::from_bytes(trimmed).ok()
    }
}

/// A `*` headers rule with credentials echoes the requested names it allows (never
/// `authorization` unless listed by name, CORS-CHECKLIST 2.9), lowercased, comma-joined as
/// browsers send them (2.18). `None` when there is nothing to list.
fn echo_header_names(request: &HeaderMap, rule: &CompiledRule) -> Option<HeaderValue> {
    let mut joined = Vec::new();
    for line in request.get_all(ACCESS_CONTROL_REQUEST_HEADERS) {
        for item in line.as_bytes().split(|&b| b == b',') {
            let name = trim_ows(item);
            if name.is_empty() || !super::header_allowed(rule, name) {
                continue;
            }
            if !joined.is_empty() {
                joined.push(b',');
            }
            joined.extend(name.iter().map(u8::to_ascii_lowercase));
        }
    }
    if joined.is_empty() {
        return None;
    }
    HeaderValue::from_bytes(&joined).ok()
}
