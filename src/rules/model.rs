//! The rules as validated: what the loader produces and the policy compiler consumes.
//!
//! Nothing here has been compiled for matching yet; every value is normalized and every
//! entry keeps the place it was written, for diagnostics, `explain` and `/rules`.

use super::diagnostic::Location;
use super::origin::{OriginPattern, RegexFacts};
use crate::fetch::{
    CORS_SAFELISTED_METHODS, is_cors_safelisted_method, wildcard_covers_header_name,
};

/// The whole rule set: one file, or a directory of files read as one list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub settings: Settings,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub unmatched: Unmatched,
    pub debug: bool,
    pub cdn_max_age: u32,
    pub actual_responses: ActualResponses,
    /// The status of a preflight answer that grants: 204 (the default) or 200, for user agents
    /// and S3 clients that expect 200 (Fetch accepts any ok status, CORS-CHECKLIST 2.1).
    pub preflight_status: PreflightStatus,
    pub mode: Mode,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            unmatched: Unmatched::Reject,
            debug: false,
            cdn_max_age: 0,
            actual_responses: ActualResponses::Untouched,
            preflight_status: PreflightStatus::NoContent,
            mode: Mode::Enforce,
        }
    }
}

/// Who answers preflights (a setting, so switching is a rules reload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The edge answers from the rules.
    Enforce,
    /// The upstream answers every preflight, proxied like any other request; the edge only
    /// compares what the rules would have answered (migrating an application's CORS).
    Shadow,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Shadow => "shadow",
        }
    }
}

/// What to do with a preflight that no rule's scope covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmatched {
    /// Deny it at the edge (403, reason `no_rule`).
    Reject,
    /// Pass it to the upstream, which answers it itself.
    Forward,
}

/// Whether proxied responses get CORS headers filled in (DESIGN 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActualResponses {
    Untouched,
    Fill,
}

/// `[settings] preflight_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreflightStatus {
    /// 204 No Content.
    NoContent,
    /// 200 OK (with `content-length: 0`).
    Ok,
}

pub const DEFAULT_MAX_AGE: u32 = 7200;
pub const MAX_MAX_AGE: u32 = 86_400;
/// Chromium caps Access-Control-Max-Age at two hours (CORS-CHECKLIST 2.21).
pub const CHROMIUM_MAX_AGE_CAP: u32 = 7200;
/// A rule without `methods` lists the CORS-safelisted ones (which pass anyway, CORS-CHECKLIST
/// 2.13), so its `Access-Control-Allow-Methods` says what a browser may send.
pub const DEFAULT_METHODS: [&str; 3] = CORS_SAFELISTED_METHODS;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    /// Where the `[[rule]]` table starts.
    pub location: Location,
    /// Empty: any host.
    pub hosts: Vec<HostScope>,
    /// Empty: any path.
    pub paths: Vec<String>,
    pub origins: Vec<OriginEntry>,
    /// Methods as written (case-sensitive tokens).
    pub methods: TokenList,
    /// Only the listed methods pass: GET, HEAD and POST too must be listed (the bucket model;
    /// a browser would pass them whatever the list says, CORS-CHECKLIST 2.13).
    pub only_listed_methods: bool,
    /// Header names, lowercased.
    pub headers: TokenList,
    /// Exposed response header names, lowercased.
    pub expose: TokenList,
    pub credentials: bool,
    pub max_age: u32,
    pub private_network: bool,
    pub dangerously_allow_insecure_origins: bool,
    pub dangerously_allow_public_suffix_globs: bool,
    /// Lets a credentialed rule keep a `scheme://*` origin (any site of that scheme may then
    /// act as the user).
    pub dangerously_allow_scheme_wildcard_with_credentials: bool,
    /// Lets a credentialed rule keep a `regex:` origin that is not pinned to a fixed
    /// registrable domain (it could match a site anyone can register).
    pub dangerously_allow_unpinned_regex_origins: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginEntry {
    pub pattern: OriginPattern,
    pub location: Location,
    /// For a `regex:` entry: what validation holds it to (its reach over schemes and domains).
    pub regex: Option<RegexFacts>,
}

/// A host scope entry; matched ASCII-case-insensitively, port ignored.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostScope {
    Exact(String),
    /// `*.example.com`: stored as the suffix `.example.com`.
    Subdomains(String),
}

impl HostScope {
    pub fn covers(&self, host: &[u8]) -> bool {
        match self {
            HostScope::Exact(name) => host.eq_ignore_ascii_case(name.as_bytes()),
            HostScope::Subdomains(suffix) => {
                host.len() > suffix.len()
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
            }
        }
    }
}

impl std::fmt::Display for HostScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostScope::Exact(name) => f.write_str(name),
            HostScope::Subdomains(suffix) => write!(f, "*{suffix}"),
        }
    }
}

/// A list of tokens where `*` stands for "any".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenList {
    /// `*` was listed.
    pub any: bool,
    /// The other items, in the order written, without duplicates.
    pub items: Vec<String>,
    /// Prefix globs (`x-amz-meta-*`), stored without the `*`, lowercased; header lists only.
    pub prefixes: Vec<String>,
}

impl TokenList {
    pub fn contains_exact(&self, token: &[u8]) -> bool {
        self.items.iter().any(|item| item.as_bytes() == token)
    }

    pub fn contains_ignore_case(&self, token: &[u8]) -> bool {
        self.items
            .iter()
            .any(|item| item.as_bytes().eq_ignore_ascii_case(token))
    }

    /// Whether this header-name list covers `name` (Fetch: CORS-preflight fetch, steps
    /// 7.6-7.7; CORS-CHECKLIST 2.9): listed, compared ASCII-case-insensitively, or covered by
    /// `*`, which never covers `authorization`.
    #[inline]
    pub fn allows_header_name(&self, name: &[u8]) -> bool {
        self.contains_ignore_case(name)
            || self.prefix_covers(name)
            || (self.any && wildcard_covers_header_name(name))
    }

    /// Whether this method list allows `method` (Fetch: CORS-preflight fetch, step 7.5;
    /// CORS-CHECKLIST 2.7, 2.13): listed byte-exactly, or `*`; a CORS-safelisted method passes
    /// whatever the list says unless `only_listed` (the bucket model). The one place the rule
    /// is written: the decision, `explain`'s prescriptions and the shadowing lint call it.
    #[inline]
    pub fn allows_method(&self, only_listed: bool, method: &[u8]) -> bool {
        (!only_listed && is_cors_safelisted_method(method))
            || self.any
            || self.contains_exact(method)
    }

    /// Whether a prefix glob covers `name`: it starts with the prefix, ASCII-case-insensitively
    /// (the glob's `*` stands for zero or more characters, as in the bucket configurations).
    #[inline]
    pub fn prefix_covers(&self, name: &[u8]) -> bool {
        self.prefixes.iter().any(|prefix| {
            name.len() >= prefix.len()
                && name[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
        })
    }

    /// The literal entries as written: `*` first when present, then the items (prefix globs
    /// are in [`TokenList::written_all`]).
    pub fn written(&self) -> Vec<&str> {
        let star = self.any.then_some("*");
        star.into_iter()
            .chain(self.items.iter().map(String::as_str))
            .collect()
    }

    /// Every entry as written, prefix globs included with their `*`.
    pub fn written_all(&self) -> Vec<String> {
        let mut all: Vec<String> = self.written().into_iter().map(str::to_owned).collect();
        all.extend(self.prefixes.iter().map(|p| format!("{p}*")));
        all
    }
}
