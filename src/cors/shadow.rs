//! Shadow mode's comparison (`mode = "shadow"`): an answer to a preflight judged the way a
//! browser judges it, so that the upstream's answer and the one the rules would have given
//! compare on what a page would see, not on their bytes.
//!
//! The judgement follows Fetch's CORS-preflight fetch, step 7
//! (<https://fetch.spec.whatwg.org/#cors-preflight-fetch-0>), with the CORS check it runs
//! (<https://fetch.spec.whatwg.org/#cors-check>), then the Private Network Access check
//! (CORS-CHECKLIST 6.1). A preflight never says whether the actual request will carry
//! credentials (it is always sent without them, CORS-CHECKLIST 1.5), so every answer is judged
//! for both credentials modes.

use http::StatusCode;
use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE, HeaderName,
};

use super::answer::{Outcome, Reason};
use super::request::{Fields, Preflight};
use crate::fetch::{
    ACCESS_CONTROL_ALLOW_PRIVATE_NETWORK, is_cors_safelisted_method, wildcard_covers_header_name,
};
use crate::syntax::{is_token, line_items, trim_ows};

/// The check at which a browser fails a preflight's answer, in the order it runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// CORS check, steps 1-4: no `Access-Control-Allow-Origin`, several, or not this origin.
    Origin,
    /// CORS check, steps 3-7, credentials mode "include": `*` as the origin, or no
    /// `Access-Control-Allow-Credentials: true` (CORS-CHECKLIST 2.2, 2.3).
    Credentials,
    /// CORS-preflight fetch, step 7: not an ok status (200-299; CORS-CHECKLIST 2.1).
    Status,
    /// Steps 7.1-7.3: `Access-Control-Allow-Methods` or `-Headers` is not a list of tokens
    /// (CORS-CHECKLIST 2.6).
    Lists,
    /// Step 7.5: the requested method is not covered.
    Method,
    /// Steps 7.6-7.7: a requested header is not covered.
    Headers,
    /// Private Network Access: asked for, and no `Access-Control-Allow-Private-Network: true`.
    PrivateNetwork,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Origin => "origin",
            Step::Credentials => "credentials",
            Step::Status => "status",
            Step::Lists => "lists",
            Step::Method => "method",
            Step::Headers => "headers",
            Step::PrivateNetwork => "private_network",
        }
    }
}

/// What a browser makes of one answer to one preflight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Judgement {
    /// The actual request sent without credentials (`fetch()`'s default across origins).
    pub without_credentials: Result<(), Step>,
    /// The actual request sent with `credentials: "include"`.
    pub with_credentials: Result<(), Step>,
    /// Seconds the browser may cache the answer, before its own cap (CORS-CHECKLIST 2.21).
    pub max_age: u64,
}

/// How much of what a page may ask an answer lets through. A credentialed pass implies an
/// uncredentialed one (the same origin echoed passes the CORS check either way, and the lists
/// cover no less without credentials), so the three levels are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Allows {
    Nothing,
    WithoutCredentials,
    WithCredentials,
}

impl Allows {
    pub fn as_str(self) -> &'static str {
        match self {
            Allows::Nothing => "nothing",
            Allows::WithoutCredentials => "without_credentials",
            Allows::WithCredentials => "with_credentials",
        }
    }
}

impl Judgement {
    pub fn allows(&self) -> Allows {
        match (self.with_credentials, self.without_credentials) {
            (Ok(()), _) => Allows::WithCredentials,
            (Err(_), Ok(())) => Allows::WithoutCredentials,
            (Err(_), Err(_)) => Allows::Nothing,
        }
    }

    /// The max-age, when the answer allows anything (a denial caches nothing).
    pub fn effective_max_age(&self) -> Option<u64> {
        (self.allows() != Allows::Nothing).then_some(self.max_age)
    }
}

/// Fetch: CORS-preflight fetch, step 7.9: the max-age when `Access-Control-Max-Age` is absent
/// or fails to parse.
pub const DEFAULT_MAX_AGE: u64 = 5;

/// Judges `answer` (its status and header fields) to `preflight` as a browser would.
pub fn judge<A: Fields + ?Sized>(
    preflight: &Preflight<'_>,
    status: StatusCode,
    answer: &A,
) -> Judgement {
    // Each field is read once; both credentials modes are judged from what was read.
    let read = Read::from(preflight, answer);
    Judgement {
        without_credentials: read.check(preflight, status, false),
        with_credentials: read.check(preflight, status, true),
        max_age: read.max_age,
    }
}

/// What `Access-Control-Allow-Origin` says of the request's origin.
#[derive(Clone, Copy, PartialEq, Eq)]
enum AllowOrigin {
    /// Absent, on several lines, or another origin.
    Other,
    Star,
    /// Byte for byte the request's serialized origin.
    Same,
}

/// An answer's CORS fields, read against one preflight.
struct Read {
    origin: AllowOrigin,
    /// `Access-Control-Allow-Credentials` is byte-exactly `true`.
    credentials: bool,
    /// Both lists parse as tokens.
    lists: bool,
    method_listed: bool,
    methods_star: bool,
    /// Every requested name listed.
    headers_listed: bool,
    /// Every requested name listed, or covered by a `*` (never `authorization`).
    headers_listed_or_star: bool,
    /// Not asked for, or granted with exactly `true`.
    private_network: bool,
    max_age: u64,
}

impl Read {
    fn from<A: Fields + ?Sized>(preflight: &Preflight<'_>, answer: &A) -> Self {
        // Fetch: CORS check, steps 1-2: "get" `Access-Control-Allow-Origin`, every line
        // combined with `, `: two lines equal no serialized origin and are not `*`
        // (CORS-CHECKLIST 2.4); null is failure.
        let origin = match single_line(answer, &ACCESS_CONTROL_ALLOW_ORIGIN) {
            Some(b"*") => AllowOrigin::Star,
            Some(value) if value == preflight.origin => AllowOrigin::Same,
            _ => AllowOrigin::Other,
        };
        // CORS-preflight fetch, steps 7.1-7.3: both lists extracted; either failing to parse
        // is a network error (CORS-CHECKLIST 2.6). Empty items are skipped (RFC 9110 5.6.1).
        let (mut lists, mut method_listed, mut methods_star) = (true, false, false);
        for item in line_items(answer.lines(&ACCESS_CONTROL_ALLOW_METHODS)) {
            lists &= is_token(item);
            method_listed |= item == preflight.method;
            methods_star |= item == b"*";
        }
        let mut headers_star = false;
        for item in line_items(answer.lines(&ACCESS_CONTROL_ALLOW_HEADERS)) {
            lists &= is_token(item);
            headers_star |= item == b"*";
        }
        let (mut headers_listed, mut headers_listed_or_star) = (true, true);
        for name in preflight.headers.iter() {
            let listed = line_items(answer.lines(&ACCESS_CONTROL_ALLOW_HEADERS))
                .any(|item| item.eq_ignore_ascii_case(name));
            headers_listed &= listed;
            headers_listed_or_star &= listed || (headers_star && wildcard_covers_header_name(name));
        }
        Read {
            origin,
            credentials: single_line(answer, &ACCESS_CONTROL_ALLOW_CREDENTIALS) == Some(b"true"),
            lists,
            method_listed,
            methods_star,
            headers_listed,
            headers_listed_or_star,
            // Private Network Access, "CORS preflight": asked for, the answer must grant it
            // with exactly `true` (CORS-CHECKLIST 6.1; Chromium's
            // CheckAllowPrivateNetworkHeader).
            private_network: !preflight.private_network
                || single_line(answer, &ACCESS_CONTROL_ALLOW_PRIVATE_NETWORK) == Some(b"true"),
            max_age: max_age(answer),
        }
    }

    fn check(
        &self,
        preflight: &Preflight<'_>,
        status: StatusCode,
        credentialed: bool,
    ) -> Result<(), Step> {
        match self.origin {
            AllowOrigin::Other => return Err(Step::Origin),
            // CORS check, step 3: `*` passes without credentials; with them it fails step 4
            // (CORS-CHECKLIST 2.3).
            AllowOrigin::Star if credentialed => return Err(Step::Credentials),
            AllowOrigin::Star => {}
            // Steps 5-7: with credentials, `Access-Control-Allow-Credentials: true` (2.2).
            AllowOrigin::Same if credentialed && !self.credentials => {
                return Err(Step::Credentials);
            }
            AllowOrigin::Same => {}
        }
        // CORS-preflight fetch, step 7: "If a CORS check for request and response returns
        // success and response's status is an ok status" (2.1). Chromium reports the CORS
        // check first; so does this.
        if !status.is_success() {
            return Err(Step::Status);
        }
        if !self.lists {
            return Err(Step::Lists);
        }
        // Step 7.4 (methods null and the use-CORS-preflight flag set) cannot be told from the
        // preflight: without `Access-Control-Allow-Methods` only the safelisted methods pass,
        // as for every other request.
        // Step 7.5: byte-exact, or safelisted, or `*` without credentials (2.7, 2.11).
        let star = !credentialed;
        if !(is_cors_safelisted_method(preflight.method)
            || self.method_listed
            || (star && self.methods_star))
        {
            return Err(Step::Method);
        }
        // Steps 7.6-7.7: each name listed ASCII-case-insensitively, or `*` without
        // credentials, which never covers `authorization` (2.9).
        if !(self.headers_listed || (star && self.headers_listed_or_star)) {
            return Err(Step::Headers);
        }
        if !self.private_network {
            return Err(Step::PrivateNetwork);
        }
        Ok(())
    }
}

/// The value of `name` when it has exactly one line, OWS trimmed (RFC 9110 5.5); several lines
/// combine into a list that no single-valued check accepts.
fn single_line<'a, A: Fields + ?Sized>(answer: &'a A, name: &HeaderName) -> Option<&'a [u8]> {
    let mut lines = answer.lines(name);
    let first = lines.next()?;
    lines.next().is_none().then(|| trim_ows(first))
}

/// Fetch: CORS-preflight fetch, steps 7.8-7.9: `delta-seconds`; absent, several lines
/// ("extract header list values", step 2) or not digits (`-1` included) is 5 (CORS-CHECKLIST
/// 2.20, 2.22).
fn max_age<A: Fields + ?Sized>(answer: &A) -> u64 {
    match single_line(answer, &ACCESS_CONTROL_MAX_AGE) {
        Some(digits) if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) => {
            digits.iter().fold(0u64, |n, d| {
                n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
            })
        }
        _ => DEFAULT_MAX_AGE,
    }
}

/// Every value of the `result` label of `preflightd_shadow_comparisons_total`, in
/// [`Comparison`] order.
pub const COMPARISON_LABELS: [&str; 4] = [
    "match",
    "only_upstream_allows",
    "only_rules_allow",
    "both_allow_differently",
];

/// The upstream's answer against the rules', as a page sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Comparison {
    /// Both deny, or both allow as much with the same max-age.
    Match,
    /// The upstream lets through something the rules would block: denied outright, or allowed
    /// only without credentials where the upstream allows them. Enforcing would break it.
    OnlyUpstreamAllows,
    /// The rules would let through something the upstream blocks: enforcing widens access.
    OnlyRulesAllow,
    /// Both allow as much, with different max-ages: browsers would preflight more or less
    /// often, and nothing breaks.
    BothAllowDifferently,
}

impl Comparison {
    pub const fn index(self) -> usize {
        self as usize
    }

    pub const fn as_str(self) -> &'static str {
        COMPARISON_LABELS[self.index()]
    }
}

pub fn compare(upstream: &Judgement, rules: &Judgement) -> Comparison {
    use std::cmp::Ordering;
    match upstream.allows().cmp(&rules.allows()) {
        Ordering::Greater => Comparison::OnlyUpstreamAllows,
        Ordering::Less => Comparison::OnlyRulesAllow,
        Ordering::Equal if upstream.effective_max_age() != rules.effective_max_age() => {
            Comparison::BothAllowDifferently
        }
        Ordering::Equal => Comparison::Match,
    }
}

/// What [`suggest_fix`] is told about one mismatch.
#[derive(Debug, Clone, Copy)]
pub struct Mismatch<'a> {
    pub upstream: Judgement,
    pub rules: Judgement,
    /// The rules' decision, and the rule that answered or got furthest.
    pub outcome: Outcome,
    pub rule: Option<&'a str>,
    pub host: &'a str,
    pub path: &'a str,
    pub origin: &'a str,
    pub method: &'a str,
    /// The requested header names the rule does not allow (for a `headers` denial).
    pub headers_not_allowed: &'a [String],
}

/// The edit to the rules that would make them let through what the upstream does, when only
/// the upstream allows; `None` otherwise. For now the step the rules deny at, with the rule
/// and the value at fault (`explain`'s prescription is meant to replace this; it is the one
/// place to change).
pub fn suggest_fix(mismatch: &Mismatch<'_>) -> Option<String> {
    let upstream = mismatch.upstream.allows();
    if upstream <= mismatch.rules.allows() {
        return None;
    }
    let rule = mismatch.rule.unwrap_or("(none)");
    let text = match mismatch.outcome {
        Outcome::Denied(Reason::NoRule) => format!(
            "denied at scope: no rule's hosts and paths cover host {:?} path {:?}; add a rule whose hosts and paths do",
            mismatch.host, mismatch.path
        ),
        Outcome::Denied(Reason::Origin) => format!(
            "denied at origin: no rule in scope lists origin {:?}; add it to the origins of the rule for this URL",
            mismatch.origin
        ),
        Outcome::Denied(Reason::Method) => format!(
            "denied at method: rule {rule:?} does not allow method {:?} (methods are case-sensitive); add it to its methods",
            mismatch.method
        ),
        Outcome::Denied(Reason::Headers) => format!(
            "denied at headers: rule {rule:?} does not allow headers {:?}; add them to its headers",
            mismatch.headers_not_allowed
        ),
        Outcome::Denied(Reason::Malformed) => {
            "denied: malformed preflight (no browser sends one)".to_owned()
        }
        // Allowed, but less than the upstream allows: where the rules' own answer fails the
        // browser's check in the mode the upstream passes.
        Outcome::Allowed => {
            let failed = match upstream {
                Allows::WithCredentials => mismatch.rules.with_credentials,
                _ => mismatch.rules.without_credentials,
            };
            match failed {
                Err(Step::Credentials) => format!(
                    "rule {rule:?} answers without credentials; set credentials = true on it"
                ),
                Err(Step::PrivateNetwork) => format!(
                    "rule {rule:?} does not grant private network access; set private_network = true on it"
                ),
                Err(step) => format!(
                    "rule {rule:?} allows, but its answer fails the browser's {} check",
                    step.as_str()
                ),
                Ok(()) => return None,
            }
        }
    };
    Some(text)
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;
    use http::header::{
        ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, HeaderValue, ORIGIN,
    };

    use super::*;
    use crate::cors::request::parse;
    use crate::fetch::ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK;

    const ORIGIN_VALUE: &str = "https://app.example.com";

    fn request(method: &str, headers: &str, private_network: bool) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(ORIGIN, HeaderValue::from_static(ORIGIN_VALUE));
        map.insert(
            ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_str(method).expect("method"),
        );
        if !headers.is_empty() {
            map.insert(
                ACCESS_CONTROL_REQUEST_HEADERS,
                HeaderValue::from_str(headers).expect("headers"),
            );
        }
        if private_network {
            map.insert(
                ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK.clone(),
                HeaderValue::from_static("true"),
            );
        }
        map
    }

    /// An answer from `name: value` lines.
    fn answer(lines: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in lines {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        map
    }

    fn judged(request: &HeaderMap, status: u16, lines: &[(&str, &str)]) -> Judgement {
        let preflight = parse(request).expect("a well-formed preflight");
        judge(
            &preflight,
            StatusCode::from_u16(status).expect("status"),
            &answer(lines),
        )
    }

    const ECHO: (&str, &str) = ("access-control-allow-origin", ORIGIN_VALUE);
    const CREDENTIALS: (&str, &str) = ("access-control-allow-credentials", "true");

    /// (description, request method, request headers, status, answer lines, without
    /// credentials, with credentials).
    type Case = (
        &'static str,
        &'static str,
        &'static str,
        u16,
        &'static [(&'static str, &'static str)],
        Result<(), Step>,
        Result<(), Step>,
    );

    const CASES: &[Case] = &[
        (
            "origin echoed with credentials, method and header listed",
            "PUT",
            "x-a",
            204,
            &[
                ECHO,
                CREDENTIALS,
                ("access-control-allow-methods", "PUT"),
                ("access-control-allow-headers", "X-A"),
            ],
            Ok(()),
            Ok(()),
        ),
        (
            "no Access-Control-Allow-Origin",
            "GET",
            "",
            204,
            &[],
            Err(Step::Origin),
            Err(Step::Origin),
        ),
        (
            "another origin",
            "GET",
            "",
            200,
            &[("access-control-allow-origin", "https://other.example.com")],
            Err(Step::Origin),
            Err(Step::Origin),
        ),
        (
            "the origin with a trailing slash (byte for byte, 2.5)",
            "GET",
            "",
            200,
            &[("access-control-allow-origin", "https://app.example.com/")],
            Err(Step::Origin),
            Err(Step::Origin),
        ),
        (
            "two Access-Control-Allow-Origin lines (2.4)",
            "GET",
            "",
            204,
            &[ECHO, ECHO],
            Err(Step::Origin),
            Err(Step::Origin),
        ),
        (
            "`*` origin: only without credentials (2.3)",
            "GET",
            "",
            204,
            &[("access-control-allow-origin", "*"), CREDENTIALS],
            Ok(()),
            Err(Step::Credentials),
        ),
        (
            "origin echoed without Allow-Credentials",
            "GET",
            "",
            204,
            &[ECHO],
            Ok(()),
            Err(Step::Credentials),
        ),
        (
            "Allow-Credentials `True` is not `true` (2.3)",
            "GET",
            "",
            204,
            &[ECHO, ("access-control-allow-credentials", "True")],
            Ok(()),
            Err(Step::Credentials),
        ),
        (
            "a 403 with every header (2.1)",
            "GET",
            "",
            403,
            &[ECHO, CREDENTIALS],
            Err(Step::Status),
            Err(Step::Status),
        ),
        (
            "a redirect, credentials checked first (2.1)",
            "GET",
            "",
            302,
            &[ECHO],
            Err(Step::Status),
            Err(Step::Credentials),
        ),
        (
            "a non-token method list (2.6)",
            "GET",
            "",
            204,
            &[
                ECHO,
                CREDENTIALS,
                ("access-control-allow-methods", "Bad method"),
            ],
            Err(Step::Lists),
            Err(Step::Lists),
        ),
        (
            "safelisted method without Allow-Methods (2.13)",
            "POST",
            "",
            204,
            &[ECHO, CREDENTIALS],
            Ok(()),
            Ok(()),
        ),
        (
            "PATCH not covered by `patch` (case-sensitive, 2.7)",
            "PATCH",
            "",
            204,
            &[ECHO, CREDENTIALS, ("access-control-allow-methods", "patch")],
            Err(Step::Method),
            Err(Step::Method),
        ),
        (
            "`*` methods only without credentials (2.11)",
            "DELETE",
            "",
            204,
            &[ECHO, CREDENTIALS, ("access-control-allow-methods", "*")],
            Ok(()),
            Err(Step::Method),
        ),
        (
            "a header not listed",
            "GET",
            "x-a, x-b",
            204,
            &[ECHO, CREDENTIALS, ("access-control-allow-headers", "x-a")],
            Err(Step::Headers),
            Err(Step::Headers),
        ),
        (
            "headers listed over two lines with empty items (RFC 9110 5.6.1)",
            "GET",
            "x-a, x-b",
            204,
            &[
                ECHO,
                ("access-control-allow-headers", ",x-B"),
                ("access-control-allow-headers", " X-a ,"),
            ],
            Ok(()),
            Err(Step::Credentials),
        ),
        (
            "`*` headers never cover authorization (2.9)",
            "GET",
            "authorization",
            204,
            &[ECHO, CREDENTIALS, ("access-control-allow-headers", "*")],
            Err(Step::Headers),
            Err(Step::Headers),
        ),
        (
            "`*` headers only without credentials (2.11)",
            "GET",
            "x-a",
            204,
            &[ECHO, CREDENTIALS, ("access-control-allow-headers", "*")],
            Ok(()),
            Err(Step::Headers),
        ),
    ];

    #[test]
    fn answers_are_judged_as_fetch_judges_them() {
        for (description, method, headers, status, lines, without, with) in CASES {
            let judgement = judged(&request(method, headers, false), *status, lines);
            assert_eq!(
                (judgement.without_credentials, judgement.with_credentials),
                (*without, *with),
                "{description}"
            );
        }
    }

    #[test]
    fn private_network_needs_exactly_true_when_asked() {
        let asked = request("GET", "", true);
        let granted = [ECHO, ("access-control-allow-private-network", "true")];
        assert_eq!(judged(&asked, 204, &granted).without_credentials, Ok(()));
        let wrong = [ECHO, ("access-control-allow-private-network", "yes")];
        assert_eq!(
            judged(&asked, 204, &wrong).without_credentials,
            Err(Step::PrivateNetwork)
        );
        assert_eq!(
            judged(&asked, 204, &[ECHO]).without_credentials,
            Err(Step::PrivateNetwork)
        );
        // Not asked: the grant does not matter.
        let plain = request("GET", "", false);
        assert_eq!(judged(&plain, 204, &[ECHO]).without_credentials, Ok(()));
    }

    #[test]
    fn max_age_parses_like_fetch() {
        let plain = request("GET", "", false);
        let age = |value: &[&'static str]| {
            let lines: Vec<(&str, &str)> = value
                .iter()
                .map(|v| ("access-control-max-age", *v))
                .collect();
            judged(&plain, 204, &lines).max_age
        };
        assert_eq!(age(&[]), DEFAULT_MAX_AGE);
        assert_eq!(age(&["600"]), 600);
        assert_eq!(age(&[" 0 "]), 0);
        assert_eq!(age(&["-1"]), DEFAULT_MAX_AGE);
        assert_eq!(age(&["1.5"]), DEFAULT_MAX_AGE);
        assert_eq!(age(&["600", "600"]), DEFAULT_MAX_AGE);
        assert_eq!(age(&["99999999999999999999999"]), u64::MAX);
    }

    fn verdict(without: Result<(), Step>, with: Result<(), Step>, max_age: u64) -> Judgement {
        Judgement {
            without_credentials: without,
            with_credentials: with,
            max_age,
        }
    }

    #[test]
    fn comparisons_rank_what_a_page_may_ask() {
        let both = verdict(Ok(()), Ok(()), 600);
        let anonymous = verdict(Ok(()), Err(Step::Credentials), 600);
        let denied = verdict(Err(Step::Origin), Err(Step::Origin), 5);
        let denied_otherwise = verdict(Err(Step::Status), Err(Step::Status), 99);
        assert_eq!(compare(&both, &both), Comparison::Match);
        assert_eq!(compare(&denied, &denied_otherwise), Comparison::Match);
        assert_eq!(compare(&both, &denied), Comparison::OnlyUpstreamAllows);
        assert_eq!(compare(&both, &anonymous), Comparison::OnlyUpstreamAllows);
        assert_eq!(compare(&denied, &anonymous), Comparison::OnlyRulesAllow);
        assert_eq!(compare(&anonymous, &both), Comparison::OnlyRulesAllow);
        let longer = verdict(Ok(()), Ok(()), 7200);
        assert_eq!(compare(&both, &longer), Comparison::BothAllowDifferently);
        assert_eq!(
            COMPARISON_LABELS[Comparison::OnlyRulesAllow.index()],
            "only_rules_allow"
        );
    }

    #[test]
    fn a_fix_is_suggested_only_where_the_upstream_allows_more() {
        let both = verdict(Ok(()), Ok(()), 600);
        let anonymous = verdict(Ok(()), Err(Step::Credentials), 600);
        let denied = verdict(Err(Step::Origin), Err(Step::Origin), 5);
        let names = ["x-legacy".to_owned()];
        let mismatch = |upstream, rules, outcome| Mismatch {
            upstream,
            rules,
            outcome,
            rule: Some("web"),
            host: "api.example.com",
            path: "/v1/x",
            origin: "https://app.example.com",
            method: "PATCH",
            headers_not_allowed: &names,
        };
        let fix = |upstream, rules, outcome| suggest_fix(&mismatch(upstream, rules, outcome));
        assert_eq!(
            fix(both, denied, Outcome::Denied(Reason::Method)).as_deref(),
            Some(
                "denied at method: rule \"web\" does not allow method \"PATCH\" (methods are case-sensitive); add it to its methods"
            )
        );
        assert_eq!(
            fix(both, denied, Outcome::Denied(Reason::Headers)).as_deref(),
            Some(
                "denied at headers: rule \"web\" does not allow headers [\"x-legacy\"]; add them to its headers"
            )
        );
        assert!(
            fix(both, denied, Outcome::Denied(Reason::Origin))
                .is_some_and(|f| f.contains("\"https://app.example.com\""))
        );
        assert!(
            fix(both, denied, Outcome::Denied(Reason::NoRule))
                .is_some_and(|f| f.contains("\"/v1/x\""))
        );
        assert_eq!(
            fix(both, anonymous, Outcome::Allowed).as_deref(),
            Some("rule \"web\" answers without credentials; set credentials = true on it")
        );
        assert_eq!(fix(denied, both, Outcome::Allowed), None);
        assert_eq!(fix(both, both, Outcome::Allowed), None);
    }
}
