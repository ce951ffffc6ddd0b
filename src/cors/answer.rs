//! The answer to a preflight: status, headers and body, rendered from the policy's
//! pre-rendered values plus what has to be echoed from the request.

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS,
    ACCESS_CONTROL_REQUEST_METHOD, CACHE_CONTROL, CONTENT_TYPE, HeaderMap, ORIGIN, VARY,
};
use http::{HeaderName, HeaderValue, StatusCode};

use super::checks::header_allowed;
use super::request::Fields;
use crate::fetch::{ACCESS_CONTROL_ALLOW_PRIVATE_NETWORK, NO_STORE, STAR, TEXT_PLAIN, TRUE};
use crate::policy::{AllowList, AllowOrigin, CompiledRule, Policy};
use crate::rules::PreflightStatus;
use crate::syntax::{line_items, trim_ows};

/// Every value of the `result` label of `preflightd_preflight_requests_total`, each written
/// once: the outcomes in [`Outcome::index`] order, then [`FORWARDED_LABEL`].
pub const RESULT_LABELS: [&str; 7] = [
    "allowed",
    "no_rule",
    "origin",
    "method",
    "headers",
    "malformed",
    FORWARDED_LABEL,
];

/// The `result` of a preflight passed to the upstream (`unmatched = "forward"`).
pub const FORWARDED_LABEL: &str = "forwarded";

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
        Outcome::Denied(self).as_str()
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
    /// This outcome's place in [`RESULT_LABELS`].
    #[inline]
    pub const fn index(self) -> usize {
        match self {
            Outcome::Allowed => 0,
            Outcome::Denied(Reason::NoRule) => 1,
            Outcome::Denied(Reason::Origin) => 2,
            Outcome::Denied(Reason::Method) => 3,
            Outcome::Denied(Reason::Headers) => 4,
            Outcome::Denied(Reason::Malformed) => 5,
        }
    }

    /// The `result` label of `preflightd_preflight_requests_total`.
    pub const fn as_str(self) -> &'static str {
        RESULT_LABELS[self.index()]
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
    /// The request carried `Access-Control-Request-Private-Network` (any value); known once
    /// the preflight is parsed (not for `no_rule` or `malformed`).
    private_network_asked: bool,
}

impl<'p> Answer<'p> {
    /// `private_network`: (the preflight asks for private network access, it carried the
    /// `Access-Control-Request-Private-Network` line at all).
    pub(crate) fn new(
        policy: &'p Policy,
        outcome: Outcome,
        rule: Option<usize>,
        (private_network, private_network_asked): (bool, bool),
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
            private_network_asked,
        }
    }

    pub fn status(&self) -> StatusCode {
        // Fetch: CORS-preflight fetch, step 7 (CORS-CHECKLIST 2.1): only an ok status (2xx)
        // passes; 204 and 200 do, and a denial's 403 must not.
        if self.grants {
            match self.policy.settings().preflight_status {
                PreflightStatus::NoContent => StatusCode::NO_CONTENT,
                PreflightStatus::Ok => StatusCode::OK,
            }
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

    /// Whether a browser goes on to the actual request with this answer: allowed, and for a
    /// credentialed request (`credentials: "include"`) by a rule that grants credentials
    /// (Fetch: CORS check, steps 5-7; CORS-CHECKLIST 2.2-2.3).
    pub fn lets_through(&self, credentials: bool) -> bool {
        self.outcome == Outcome::Allowed
            && (!credentials || self.rule().is_some_and(|r| r.credentials))
    }

    /// Whether the answer carries `Access-Control-Allow-*`.
    pub fn grants(&self) -> bool {
        self.grants
    }

    /// Whether the answer grants Private Network Access.
    pub fn private_network(&self) -> bool {
        self.private_network
    }

    /// Whether the preflight carried `Access-Control-Request-Private-Network`.
    pub fn private_network_asked(&self) -> bool {
        self.private_network_asked
    }

    /// Every header field of this answer, in order, with where its value comes from. The one
    /// list both renderings are written from: the `HeaderMap` of the hyper path
    /// ([`Answer::write_headers`]) and the pre-rendered bytes of the fast path (`wire`).
    pub fn for_each_field(&self, mut field: impl FnMut(HeaderName, FieldValue<'p>)) {
        let policy = self.policy;
        let rule = match self.rule() {
            Some(rule) if self.grants => rule,
            _ => {
                // DESIGN 4.4: no Access-Control-Allow-* or -Max-Age on a denial.
                field(VARY, FieldValue::Fixed(policy.vary.value()));
                field(CACHE_CONTROL, FieldValue::Fixed(&NO_STORE));
                field(CONTENT_TYPE, FieldValue::Fixed(&TEXT_PLAIN));
                return;
            }
        };
        let allowed = self.outcome == Outcome::Allowed;
        field(
            ACCESS_CONTROL_ALLOW_ORIGIN,
            match rule.allow_origin {
                AllowOrigin::Star => FieldValue::Fixed(&STAR),
                AllowOrigin::Echo => FieldValue::Origin,
            },
        );
        if rule.credentials {
            // Fetch: CORS check, steps 5-6 (CORS-CHECKLIST 2.2): byte-exactly `true`.
            field(ACCESS_CONTROL_ALLOW_CREDENTIALS, FieldValue::Fixed(&TRUE));
        }
        // Fetch: CORS-preflight fetch, step 7.5 (CORS-CHECKLIST 2.7): an echoed method is the
        // exact ACRM bytes; methods compare case-sensitively.
        match &rule.allow_methods {
            AllowList::Omit => {}
            AllowList::Value(value) => {
                field(ACCESS_CONTROL_ALLOW_METHODS, FieldValue::Fixed(value))
            }
            AllowList::Echo => field(ACCESS_CONTROL_ALLOW_METHODS, FieldValue::Method),
        }
        match &rule.allow_headers {
            AllowList::Omit => {}
            AllowList::Value(value) => {
                field(ACCESS_CONTROL_ALLOW_HEADERS, FieldValue::Fixed(value))
            }
            AllowList::Echo => field(ACCESS_CONTROL_ALLOW_HEADERS, FieldValue::HeaderNames),
        }
        field(
            ACCESS_CONTROL_MAX_AGE,
            FieldValue::Fixed(rule.max_age.value(allowed)),
        );
        if self.private_network {
            field(
                ACCESS_CONTROL_ALLOW_PRIVATE_NETWORK.clone(),
                FieldValue::Fixed(&TRUE),
            );
        }
        field(VARY, FieldValue::Fixed(policy.vary.value()));
        field(
            CACHE_CONTROL,
            FieldValue::Fixed(policy.cache_control.value(allowed)),
        );
    }

    /// Writes the answer's headers. `request` is the preflight's header map, for the values
    /// echoed from it (already validated by the decision).
    pub fn write_headers(&self, request: &HeaderMap, out: &mut HeaderMap) {
        let rule = self.rule();
        self.for_each_field(|name, value| {
            let value = match value {
                FieldValue::Fixed(value) => Some(value.clone()),
                FieldValue::Origin => echo(request, &ORIGIN),
                FieldValue::Method => echo(request, &ACCESS_CONTROL_REQUEST_METHOD),
                FieldValue::HeaderNames => rule.and_then(|rule| {
                    let mut joined = Vec::new();
                    write_header_names(request, rule, &mut joined);
                    if joined.is_empty() {
                        return None;
                    }
                    HeaderValue::from_bytes(&joined).ok()
                }),
            };
            if let Some(value) = value {
                out.insert(name, value);
            }
        });
    }
}

/// Where the value of an answer's field comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValue<'p> {
    /// Compiled with the policy.
    Fixed(&'p HeaderValue),
    /// The request's `Origin`, OWS trimmed (CORS-CHECKLIST 2.2: echoed byte for byte).
    Origin,
    /// The request's `Access-Control-Request-Method`, OWS trimmed.
    Method,
    /// The requested header names the rule allows ([`write_header_names`]); the field is
    /// left out when there are none.
    HeaderNames,
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
/// browsers send them (2.18), appended to `out`; nothing when none is allowed.
pub fn write_header_names<H: Fields + ?Sized>(request: &H, rule: &CompiledRule, out: &mut Vec<u8>) {
    let start = out.len();
    for name in line_items(request.lines(&ACCESS_CONTROL_REQUEST_HEADERS)) {
        if !header_allowed(rule, name) {
            continue;
        }
        if out.len() > start {
            out.push(b',');
        }
        out.extend(name.iter().map(u8::to_ascii_lowercase));
    }
}
