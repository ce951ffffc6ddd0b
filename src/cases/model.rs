//! The cases format as read: a file's `[[case]]` and `[[suite]]` tables, each case's request
//! as a server receives it, and what it expects.

use std::sync::Arc;

use http::{HeaderMap, HeaderName, Method};

use crate::cors::{Reason, Request};
use crate::policy::{self, Policy};
use crate::rules::{Diagnostic, Location, Source, load_sources};

/// The URL a case requests when it names none: no host scope of a rule covers it unless the
/// rule's `hosts` lists `localhost`.
pub const DEFAULT_URL: &str = "http://localhost/";

/// One cases file: `[[case]]` tables, run against the rules given on the command line, and
/// `[[suite]]` tables, each with its own inline rules.
#[derive(Debug)]
pub struct CasesFile {
    pub name: Arc<str>,
    pub cases: Vec<Case>,
    pub suites: Vec<Suite>,
}

/// A `[[suite]]`: rules written inline and the cases run against them.
#[derive(Debug)]
pub struct Suite {
    pub name: String,
    pub location: Location,
    /// The `rules` text as written.
    pub rules: String,
    /// Where that text starts in the cases file (line, column), so that a mistake in it is
    /// reported at its place in the cases file.
    pub(super) rules_start: (usize, usize),
    pub(super) file: Arc<str>,
    pub cases: Vec<Case>,
}

impl Suite {
    /// The suite's rules as a rules source named after the cases file, padded so that every
    /// line and column the rules loader reports is the one in the cases file.
    pub fn source(&self) -> Source {
        let (line, column) = self.rules_start;
        let mut text = String::with_capacity(line + column + self.rules.len());
        text.extend(std::iter::repeat_n('\n', line.saturating_sub(1)));
        text.extend(std::iter::repeat_n(' ', column.saturating_sub(1)));
        text.push_str(&self.rules);
        Source {
            name: Arc::clone(&self.file),
            text,
        }
    }

    /// Loads, validates and compiles the suite's rules; every error with its place.
    pub fn compile(&self) -> Result<Policy, Vec<Diagnostic>> {
        let loaded = load_sources(&[self.source()]);
        let Some(rules) = loaded.rules else {
            return Err(loaded
                .diagnostics
                .into_iter()
                .filter(Diagnostic::is_error)
                .collect());
        };
        policy::compile(rules).map_err(|e| vec![e.diagnostic(Some(Arc::clone(&self.file)))])
    }
}

/// What a case expects, in the words of its `expect` key; the denial reasons are the `result`
/// labels of `preflightd_preflight_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Not a preflight (CORS-CHECKLIST 1.1-1.4): proxied untouched.
    NotPreflight,
    /// Outside every scope with `unmatched = "forward"`: passed to the upstream.
    Forward,
    Allowed,
    Denied(Reason),
    /// The case sends credentials, and the edge allows without what a credentialed request
    /// needs (CORS-CHECKLIST 2.2, 2.3: `Access-Control-Allow-Credentials: true` and an
    /// echoed origin, never `*`), so the browser blocks it.
    Credentials,
}

impl Expect {
    /// Every word `expect` takes, in the order the README lists them.
    pub const WORDS: [&'static str; 9] = [
        "allowed",
        "no_rule",
        "origin",
        "method",
        "headers",
        "malformed",
        "credentials",
        "forward",
        "not_preflight",
    ];

    pub fn from_word(word: &str) -> Option<Self> {
        Some(match word {
            "allowed" => Expect::Allowed,
            "no_rule" => Expect::Denied(Reason::NoRule),
            "origin" => Expect::Denied(Reason::Origin),
            "method" => Expect::Denied(Reason::Method),
            "headers" => Expect::Denied(Reason::Headers),
            "malformed" => Expect::Denied(Reason::Malformed),
            "credentials" => Expect::Credentials,
            "forward" => Expect::Forward,
            "not_preflight" => Expect::NotPreflight,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Expect::Allowed => "allowed",
            Expect::Denied(reason) => reason.as_str(),
            Expect::Credentials => "credentials",
            Expect::Forward => "forward",
            Expect::NotPreflight => "not_preflight",
        }
    }

    /// Whether the edge answers the request itself (status and headers can be compared).
    pub fn is_answered(self) -> bool {
        !matches!(self, Expect::Forward | Expect::NotPreflight)
    }
}

/// One `[[case]]`.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    /// The `[[case]]` header's place.
    pub location: Location,
    pub request: CaseRequest,
    /// The page fetches with credentials (`credentials: "include"`).
    pub credentials: bool,
    pub expect: Expect,
    /// The rule the answer names (`Some("")`: none); unchecked when `None`.
    pub rule: Option<String>,
    pub status: Option<u16>,
    /// Exact response values, header names lowercase.
    pub response: Vec<(HeaderName, String)>,
    /// Response headers that must not be there.
    pub absent: Vec<HeaderName>,
}

impl Case {
    /// The status the case holds the answer to: as written, else 204 for `allowed` and
    /// `credentials` (the edge allowed), 403 for a denial.
    pub fn expected_status(&self) -> Option<u16> {
        match self.expect {
            Expect::NotPreflight | Expect::Forward => None,
            Expect::Allowed | Expect::Credentials => Some(self.status.unwrap_or(204)),
            Expect::Denied(_) => Some(self.status.unwrap_or(403)),
        }
    }
}

/// The request a case makes, as a server would receive it.
#[derive(Debug, Clone)]
pub struct CaseRequest {
    /// The request line's method (`OPTIONS` unless `request_method` says otherwise).
    pub method: Method,
    /// The URL as written (or [`DEFAULT_URL`]).
    pub url: String,
    /// The URL's authority, sent as `Host`.
    pub authority: String,
    pub path: String,
    /// The CORS request fields, each field line as sent.
    pub headers: HeaderMap,
}

impl CaseRequest {
    /// The request as the decision sees it.
    pub fn as_request(&self) -> Request<'_> {
        Request {
            method: &self.method,
            host: Some(self.authority.as_bytes()),
            path: self.path.as_bytes(),
            headers: &self.headers,
        }
    }
}
