//! From vendor rules to preflightd rules that answer alike: each vendor's documented matching
//! (its [`Profile`]) turned into origin entries, header lists, methods and opt-ins, and what
//! cannot be said exactly reported against the source rule.

use super::source::{Item, Place, Problem, SourceRule};
use crate::rules::RegexFacts;
use crate::rules::origin::{HostSpec, OriginPattern, check_regex, parse_origin};
use crate::syntax::is_token;

/// The storage services `import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    S3,
    B2,
    Gcs,
    Azure,
    R2,
}

/// How a vendor's `*` inside an origin entry matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginWildcard {
    /// S3 (and R2): a glob, `*` is any run of characters (S3 User Guide, "AllowedOrigin
    /// element": "can contain only one * wildcard character, such as http://*.example.com").
    AnyRun,
    /// B2: `*` stands for part of the host only: `https://*` is "limited to the HTTPS scheme's
    /// default port" (B2 docs, "allowedOrigins").
    HostRun,
    /// GCS and Azure compare origins exactly; `*` alone is the only wildcard.
    None,
}

/// What the translation needs to know of a vendor: how it matches and what it answers.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    pub vendor: Vendor,
    pub name: &'static str,
    pub origin_wildcard: OriginWildcard,
    /// `https` alone means any HTTPS origin, any port (B2 docs; the S3 User Guide: "You can
    /// also specify https to enable only secure origins").
    pub https_keyword: bool,
    /// The vendor answers `Access-Control-Allow-Credentials: true` for an origin it echoes
    /// (every origin but `*`).
    pub credentials: bool,
    /// The vendor picks the first rule whose origin and method match and then checks the
    /// requested headers against that rule alone (GCS "Set Bucket CORS": "the first Cors
    /// configuration matching the Origin and Method of the request"; Azure, "CORS rule
    /// evaluation logic"), where preflightd (and S3, B2, R2) go on to the next rule.
    pub selects_by_origin_and_method: bool,
    /// The methods the vendor accepts (uppercase), or `None` for any token (GCS).
    pub methods: Option<&'static [&'static str]>,
    /// The vendor matches `ExposedHeaders` entries ending in `*` (and `*`) against the
    /// response's header names and lists what matched (Azure), so the list it sends is not
    /// the list as written.
    pub expands_expose: bool,
}

const S3_METHODS: &[&str] = &["GET", "PUT", "HEAD", "POST", "DELETE"];
const AZURE_METHODS: &[&str] = &[
    "DELETE", "GET", "HEAD", "MERGE", "POST", "OPTIONS", "PUT", "PATCH",
];

impl Vendor {
    pub fn profile(self) -> Profile {
        match self {
            Vendor::S3 | Vendor::R2 => Profile {
                vendor: self,
                name: if self == Vendor::S3 { "S3" } else { "R2" },
                origin_wildcard: OriginWildcard::AnyRun,
                https_keyword: true,
                credentials: true,
                selects_by_origin_and_method: false,
                methods: Some(S3_METHODS),
                expands_expose: false,
            },
            Vendor::B2 => Profile {
                vendor: self,
                name: "B2",
                origin_wildcard: OriginWildcard::HostRun,
                https_keyword: true,
                credentials: false,
                selects_by_origin_and_method: false,
                methods: None,
                expands_expose: false,
            },
            Vendor::Gcs => Profile {
                vendor: self,
                name: "GCS",
                origin_wildcard: OriginWildcard::None,
                https_keyword: false,
                credentials: false,
                selects_by_origin_and_method: true,
                methods: None,
                expands_expose: false,
            },
            Vendor::Azure => Profile {
                vendor: self,
                name: "Azure",
                origin_wildcard: OriginWildcard::None,
                https_keyword: false,
                credentials: true,
                selects_by_origin_and_method: true,
                methods: Some(AZURE_METHODS),
                expands_expose: true,
            },
        }
    }
}

/// B2 operations and the methods they stand for (B2 docs, "allowedOperations").
pub const B2_OPERATIONS: &[(&str, &[&str])] = &[
    ("b2_download_file_by_name", &["GET", "HEAD"]),
    ("b2_download_file_by_id", &["GET", "HEAD"]),
    ("s3_get", &["GET", "HEAD"]),
    ("s3_head", &["HEAD"]),
    ("b2_upload_file", &["POST"]),
    ("b2_upload_part", &["POST"]),
    ("s3_post", &["POST"]),
    ("s3_put", &["PUT"]),
    ("s3_delete", &["DELETE"]),
];

/// Methods Fetch normalizes to uppercase before sending (Fetch, "Methods": normalize).
const NORMALIZED_METHODS: [&str; 6] = ["DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT"];

/// The highest `max_age` preflightd takes; Firefox caps there too, Chromium at 7200.
pub const MAX_AGE_CAP: i64 = 86_400;
/// Fetch, CORS-preflight fetch: "If max-age is failure or null, then set max-age to 5": a
/// preflight answered without `Access-Control-Max-Age` is cached for 5 seconds.
pub const NO_MAX_AGE: u32 = 5;

/// One origin entry of a translated rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginOut {
    /// As written in the rules file.
    pub text: String,
    /// Plain `http://` and not loopback: with credentials it needs
    /// `dangerously_allow_insecure_origins`.
    pub insecure: bool,
    /// `scheme://*`: with credentials it needs `dangerously_allow_scheme_wildcard_with_credentials`.
    pub scheme_wildcard: bool,
    /// A glob over a public suffix: needs `dangerously_allow_public_suffix_globs`.
    pub public_suffix_glob: bool,
    /// A `regex:` not pinned to a registrable domain: with credentials it needs
    /// `dangerously_allow_unpinned_regex_origins`.
    pub unpinned_regex: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origins {
    /// `*`: every origin, answered with `*` and without credentials.
    Any,
    List(Vec<OriginOut>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Methods {
    Any,
    List(Vec<String>),
}

impl Methods {
    fn intersects(&self, other: &Methods) -> bool {
        match (self, other) {
            (Methods::List(a), Methods::List(b)) => a.iter().any(|m| b.contains(m)),
            (Methods::List(a), Methods::Any) | (Methods::Any, Methods::List(a)) => !a.is_empty(),
            (Methods::Any, Methods::Any) => true,
        }
    }

    fn is_empty(&self) -> bool {
        matches!(self, Methods::List(list) if list.is_empty())
    }
}

/// A header list: names, prefix globs (stored without the `*`) and `*`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Headers {
    pub any: bool,
    pub names: Vec<String>,
    pub prefixes: Vec<String>,
}

impl Headers {
    fn covers_name(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
            || self.prefixes.iter().any(|p| name.starts_with(p.as_str()))
            || (self.any && name != "authorization")
    }

    /// Every name `other` allows, this list allows (preflightd's rules for each form).
    fn covers(&self, other: &Headers) -> bool {
        let prefix_covered = |p: &String| {
            self.prefixes.iter().any(|q| p.starts_with(q.as_str()))
                || (self.any
                    && (!"authorization".starts_with(p.as_str())
                        || self.covers_name("authorization")))
        };
        (!other.any || self.any)
            && other.names.iter().all(|n| self.covers_name(n))
            && other.prefixes.iter().all(prefix_covered)
    }

    /// As written in the rules file: `*`, names, then prefix globs.
    pub fn written(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.any {
            out.push("*".to_owned());
        }
        out.extend(self.names.iter().cloned());
        out.extend(self.prefixes.iter().map(|p| format!("{p}*")));
        out
    }
}

/// An opt-in a translated rule needs, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptIn {
    pub key: &'static str,
    pub why: String,
}

/// One preflightd rule, translated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Index into the source rules.
    pub source: usize,
    pub name: String,
    pub origins: Origins,
    pub methods: Methods,
    pub headers: Headers,
    pub expose: Vec<String>,
    pub credentials: bool,
    pub max_age: u32,
    pub opt_ins: Vec<OptIn>,
    /// Comment lines written above the rule.
    pub comments: Vec<String>,
}

/// What a source rule turned into: its parts (usually one; none when it can never answer)
/// and the comments that say so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translated {
    pub source: SourceRule,
    pub parts: Vec<Target>,
    /// Comment lines about the source rule as a whole.
    pub notes: Vec<String>,
}

/// Collects what goes wrong: errors, warnings (also written as comments), and the `--lossy`
/// switch between them for what cannot be expressed exactly.
pub struct Report<'a> {
    pub lossy: bool,
    pub file: &'a str,
    pub errors: Vec<Problem>,
    pub warnings: Vec<String>,
}

impl Report<'_> {
    fn warn(&mut self, rule: &SourceRule, place: &Place, message: &str) {
        let problem = Problem::new(place.clone(), message).in_rule(rule);
        self.warnings.push(problem.render(self.file));
    }

    /// Not expressible exactly: an error, or with `--lossy` a warning and a `LOSSY:` comment
    /// line (pushed to `comments`) on what was written instead.
    fn inexact(
        &mut self,
        rule: &SourceRule,
        place: &Place,
        message: &str,
        lossy_does: &str,
        comments: &mut Vec<String>,
    ) {
        if self.lossy {
            self.warn(rule, place, &format!("{message}; --lossy: {lossy_does}"));
            comments.push(format!("LOSSY: {message}; {lossy_does}"));
        } else {
            self.errors.push(
                Problem::new(
                    place.clone(),
                    format!("{message} (--lossy imports it anyway: {lossy_does})"),
                )
                .in_rule(rule),
            );
        }
    }
}

/// Translates every rule; `names` are the rule names already chosen.
pub fn translate(
    profile: &Profile,
    rules: Vec<SourceRule>,
    names: &[String],
    report: &mut Report<'_>,
) -> Vec<Translated> {
    let mut out: Vec<Translated> = rules
        .into_iter()
        .zip(names)
        .map(|(rule, name)| translate_rule(profile, rule, name, report))
        .collect();
    if profile.selects_by_origin_and_method {
        select_by_origin_and_method(profile, &mut out, report);
    }
    out
}

fn translate_rule(
    profile: &Profile,
    rule: SourceRule,
    name: &str,
    report: &mut Report<'_>,
) -> Translated {
    let mut comments = Vec::new();
    let mut notes = Vec::new();
    let origins = origins(profile, &rule, report, &mut comments);
    let methods = methods(profile, &rule, report);
    let headers = headers(profile, &rule, report, &mut comments);
    let credentials = profile.credentials && !matches!(origins, Origins::Any);
    let expose = expose(profile, &rule, credentials, report, &mut comments);
    let max_age = max_age(profile, &rule, report, &mut comments);
    if rule.response_header_both && !rule.headers.is_empty() {
        comments.push(
            "GCS's responseHeader is both what a preflight may ask for and what is exposed: \
             imported as headers and as expose"
                .to_owned(),
        );
    }
    if let Origins::List(list) = &origins
        && list.is_empty()
    {
        notes.push(format!(
            "{} {}: no origin a browser can send: never answers; not imported",
            profile.name,
            rule.label()
        ));
        return Translated {
            source: rule,
            parts: Vec::new(),
            notes,
        };
    }
    let mut target = Target {
        source: rule.index - 1,
        name: name.to_owned(),
        origins,
        methods,
        headers,
        expose,
        credentials,
        max_age,
        opt_ins: Vec::new(),
        comments,
    };
    opt_ins(profile, &rule, &mut target, report);
    Translated {
        source: rule,
        parts: vec![target],
        notes,
    }
}

fn origins(
    profile: &Profile,
    rule: &SourceRule,
    report: &mut Report<'_>,
    comments: &mut Vec<String>,
) -> Origins {
    if rule.origins.is_empty() {
        report.errors.push(
            Problem::new(
                rule.place(),
                "no allowed origins: the vendor requires at least one",
            )
            .in_rule(rule),
        );
        return Origins::List(Vec::new());
    }
    let mut list: Vec<OriginOut> = Vec::new();
    let mut any = false;
    for item in &rule.origins {
        match origin(profile, item) {
            Ok(OriginResult::Any) => any = true,
            Ok(OriginResult::Entry(entry, note)) => {
                if let Some(note) = note {
                    report.warn(rule, &item.place, &note);
                }
                if !list.iter().any(|e| e.text == entry.text) {
                    list.push(entry);
                }
            }
            Ok(OriginResult::Never(why)) => {
                let message = format!("origin {:?} never matches: {why}; dropped", item.value);
                report.warn(rule, &item.place, &message);
                comments.push(message);
            }
            Err(message) => report
                .errors
                .push(Problem::new(item.place.clone(), message).in_rule(rule)),
        }
    }
    if any {
        // The vendors answer `*` to every origin of a rule that lists `*` (no credentials),
        // and `*` covers the rule's other entries.
        if !list.is_empty() {
            comments.push(format!(
                "\"*\" covers the other origins ({}); answered with \"*\" and no credentials, \
                 as {} does",
                list.iter()
                    .map(|e| e.text.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                profile.name
            ));
        }
        return Origins::Any;
    }
    Origins::List(list)
}

enum OriginResult {
    Any,
    /// An entry, with a note when it was rewritten.
    Entry(OriginOut, Option<String>),
    /// Nothing a browser sends matches it.
    Never(String),
}

fn host_entry(text: String) -> OriginOut {
    let (insecure, public_suffix_glob) = match parse_origin(&text) {
        Ok(OriginPattern::Host(origin)) => (
            origin.scheme == "http" && !origin.is_loopback(),
            origin.is_public_suffix_glob(),
        ),
        _ => (false, false),
    };
    OriginOut {
        text,
        insecure,
        scheme_wildcard: false,
        public_suffix_glob,
        unpinned_regex: false,
    }
}

fn scheme_wildcard(scheme: &str) -> OriginOut {
    OriginOut {
        text: format!("{scheme}://*"),
        // Any host over plain http, the non-loopback ones included.
        insecure: scheme == "http",
        scheme_wildcard: true,
        public_suffix_glob: false,
        unpinned_regex: false,
    }
}

fn regex_entry(pattern: String) -> Result<OriginOut, String> {
    let facts: RegexFacts = check_regex(&pattern).map_err(|e| format!("{pattern:?}: {e}"))?;
    Ok(OriginOut {
        text: format!("regex:{pattern}"),
        insecure: facts.insecure,
        scheme_wildcard: false,
        public_suffix_glob: false,
        unpinned_regex: facts.pinned.is_none() && !facts.loopback_only,
    })
}

/// Any run of the bytes an `Origin` can hold (preflightd takes visible ASCII only), without a
/// `.` that the regex lint would question.
const ANY_RUN: &str = "[!-~]*";
/// Any run that stays inside the host (B2).
const HOST_RUN: &str = "[^:/]*";

fn origin(profile: &Profile, item: &Item) -> Result<OriginResult, String> {
    use OriginResult::Entry;
    let raw = item.value.trim();
    if raw == "*" {
        return Ok(OriginResult::Any);
    }
    if profile.https_keyword && raw.eq_ignore_ascii_case("https") {
        return Ok(OriginResult::Entry(scheme_wildcard("https"), None));
    }
    let stars = raw.matches('*').count();
    if stars > 1 {
        return Err(format!(
            "origin {raw:?} has {stars} \"*\"; {} allows at most one",
            profile.name
        ));
    }
    if stars == 0 {
        return Ok(match parse_origin(raw) {
            // The vendor compares the text: no browser sends "regex:...", so it never matches
            // there; read as a pattern here it would allow more than the bucket.
            Ok(OriginPattern::Regex(_)) => OriginResult::Never(format!(
                "{} compares origins as text, and no browser sends \"regex:...\"",
                profile.name
            )),
            Ok(pattern) => {
                let text = pattern.to_string();
                let note = (text != raw)
                    .then(|| format!("origin {raw:?} is matched as browsers send it: {text:?}"));
                Entry(host_entry(text), note)
            }
            Err(why) => OriginResult::Never(
                why.strip_prefix(&format!("invalid origin {raw:?}: "))
                    .unwrap_or(why.as_str())
                    .to_owned(),
            ),
        });
    }
    let class = match profile.origin_wildcard {
        OriginWildcard::None => {
            return Ok(OriginResult::Never(format!(
                "{} compares origins exactly (\"*\" alone is its only wildcard)",
                profile.name
            )));
        }
        OriginWildcard::AnyRun => ANY_RUN,
        OriginWildcard::HostRun => HOST_RUN,
    };
    // Browsers send scheme and host in lowercase (CORS-CHECKLIST 3.1).
    let lower = raw.to_ascii_lowercase();
    if let Some((scheme, rest)) = lower.split_once("://")
        && !scheme.contains('*')
    {
        if rest == "*" && profile.origin_wildcard == OriginWildcard::AnyRun {
            return Ok(Entry(scheme_wildcard(scheme), None));
        }
        // `scheme://*.domain[:port]`: one or more leading labels, the apex never (a glob's
        // `*` cannot be empty and stay a valid origin: `https://.a.com` is none).
        if let Some(domain) = rest.strip_prefix("*.")
            && !domain.contains('*')
            && let Ok(pattern) = parse_origin(&lower)
            && matches!(&pattern, OriginPattern::Host(host) if matches!(host.host, HostSpec::Subdomains(_)))
        {
            let text = pattern.to_string();
            let note = (text != raw)
                .then(|| format!("origin {raw:?} is matched as browsers send it: {text:?}"));
            return Ok(Entry(host_entry(text), note));
        }
    }
    let (before, after) = lower.split_once('*').unwrap_or((&lower, ""));
    let pattern = format!("{}{class}{}", escape(before), escape(after));
    let entry = regex_entry(pattern)?;
    let note = format!(
        "origin {raw:?} is a wildcard inside a label: imported as the anchored {:?}",
        entry.text
    );
    Ok(Entry(entry, Some(note)))
}

/// A literal in a regex: the metacharacters escaped (regex-syntax's own `escape` also escapes
/// `-`, `&` and `~`, which need it only inside a class, and reads worse).
fn escape(literal: &str) -> String {
    let mut out = String::with_capacity(literal.len());
    for c in literal.chars() {
        if "\\.+*?()|[]{}^$#".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn methods(profile: &Profile, rule: &SourceRule, report: &mut Report<'_>) -> Methods {
    let mut list: Vec<String> = Vec::new();
    let mut any = false;
    let push = |m: &str, list: &mut Vec<String>| {
        if !list.iter().any(|x| x == m) {
            list.push(m.to_owned());
        }
    };
    for item in &rule.methods {
        let raw = item.value.trim();
        let error = |message: String| Problem::new(item.place.clone(), message).in_rule(rule);
        if profile.vendor == Vendor::B2 {
            match B2_OPERATIONS.iter().find(|(op, _)| *op == raw) {
                Some((_, methods)) => methods.iter().for_each(|m| push(m, &mut list)),
                None => report.errors.push(error(format!(
                    "unknown operation {raw:?}; B2 has {}",
                    B2_OPERATIONS
                        .iter()
                        .map(|(op, _)| *op)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))),
            }
            continue;
        }
        match profile.methods {
            Some(known) => match known.iter().find(|m| m.eq_ignore_ascii_case(raw)) {
                Some(m) => push(m, &mut list),
                None => report.errors.push(error(format!(
                    "unknown method {raw:?}; {} accepts {}",
                    profile.name,
                    known.join(", ")
                ))),
            },
            None if raw == "*" => any = true,
            None if !is_token(raw.as_bytes()) => report.errors.push(error(format!(
                "method {raw:?} is not an HTTP token (RFC 9110 5.6.2)"
            ))),
            None => {
                // Fetch uppercases these before sending, so a vendor that ever matched one
                // written in lowercase compared case-insensitively; others (`patch`) are
                // sent as written and kept as written.
                let upper = raw.to_ascii_uppercase();
                if NORMALIZED_METHODS.contains(&upper.as_str()) {
                    push(&upper, &mut list);
                } else {
                    push(raw, &mut list);
                }
            }
        }
    }
    if rule.methods.is_empty() {
        report.errors.push(
            Problem::new(
                rule.place(),
                "no allowed methods: the vendor requires at least one",
            )
            .in_rule(rule),
        );
    }
    if any {
        Methods::Any
    } else {
        Methods::List(list)
    }
}

fn headers(
    profile: &Profile,
    rule: &SourceRule,
    report: &mut Report<'_>,
    comments: &mut Vec<String>,
) -> Headers {
    let mut out = Headers::default();
    for item in &rule.headers {
        let value = item.value.trim().to_ascii_lowercase();
        if value.is_empty() {
            continue;
        }
        let stars = value.matches('*').count();
        if value == "*" {
            // The vendor checks the requested names itself and answers with them, so its
            // `*` allows `authorization` too; a `*` in preflightd's answer never covers it
            // (Fetch: CORS non-wildcard request-header name), so it is listed by name.
            out.any = true;
            if !out.names.iter().any(|n| n == "authorization") {
                out.names.insert(0, "authorization".to_owned());
            }
        } else if stars == 0 {
            if is_token(value.as_bytes()) {
                if !out.names.contains(&value) {
                    out.names.push(value);
                }
            } else {
                report.errors.push(
                    Problem::new(
                        item.place.clone(),
                        format!(
                            "header {:?} is not an HTTP token (RFC 9110 5.6.2)",
                            item.value
                        ),
                    )
                    .in_rule(rule),
                );
            }
        } else if stars > 1 {
            report.errors.push(
                Problem::new(
                    item.place.clone(),
                    format!(
                        "header {:?} has {stars} \"*\"; {} allows at most one",
                        item.value, profile.name
                    ),
                )
                .in_rule(rule),
            );
        } else if let Some(prefix) = value.strip_suffix('*') {
            if is_token(prefix.as_bytes()) {
                if !out.prefixes.iter().any(|p| p == prefix) {
                    out.prefixes.push(prefix.to_owned());
                }
            } else {
                report.errors.push(
                    Problem::new(
                        item.place.clone(),
                        format!("header prefix {:?} is not an HTTP token", item.value),
                    )
                    .in_rule(rule),
                );
            }
        } else {
            report.inexact(
                rule,
                &item.place,
                &format!(
                    "header {:?} has its \"*\" before the end; preflightd's header globs are \
                     prefixes (\"x-amz-meta-*\")",
                    item.value
                ),
                "left out, so preflights asking for such a header are denied",
                comments,
            );
        }
    }
    out
}

fn expose(
    profile: &Profile,
    rule: &SourceRule,
    credentials: bool,
    report: &mut Report<'_>,
    comments: &mut Vec<String>,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in &rule.expose {
        let value = item.value.trim().to_ascii_lowercase();
        if value.is_empty() {
            continue;
        }
        if value.contains('*') && value != "*" && !profile.expands_expose {
            // Sent as written, it names a header no response has: exposing it exposes
            // nothing, and leaving it out answers alike.
            let message = format!(
                "exposed header {:?}: {} sends it as written, a name no response header has; \
                 left out (preflightd's expose takes names or \"*\" alone)",
                item.value, profile.name
            );
            report.warn(rule, &item.place, &message);
            comments.push(message);
            continue;
        }
        if value.contains('*') && profile.expands_expose {
            report.inexact(
                rule,
                &item.place,
                &format!(
                    "exposed header {:?}: {} exposes every response header it matches, by \
                     name; preflightd's expose is a fixed list",
                    item.value, profile.name
                ),
                "left out of expose",
                comments,
            );
            continue;
        }
        if !is_token(value.as_bytes()) {
            report.errors.push(
                Problem::new(
                    item.place.clone(),
                    format!("exposed header {:?} is not an HTTP token", item.value),
                )
                .in_rule(rule),
            );
            continue;
        }
        if value == "*" && credentials {
            comments.push(
                "expose \"*\" with credentials: browsers read it as a header named \"*\", as \
                 they do the vendor's"
                    .to_owned(),
            );
        }
        if !out.contains(&value) {
            out.push(value);
        }
    }
    out
}

fn max_age(
    profile: &Profile,
    rule: &SourceRule,
    report: &mut Report<'_>,
    comments: &mut Vec<String>,
) -> u32 {
    match &rule.max_age {
        None => {
            comments.push(format!(
                "no max-age: {} sends no Access-Control-Max-Age, so browsers cache the answer \
                 {NO_MAX_AGE} s (Fetch, CORS-preflight fetch)",
                profile.name
            ));
            NO_MAX_AGE
        }
        Some((seconds, place)) if *seconds < 0 => {
            report.errors.push(
                Problem::new(place.clone(), format!("max-age {seconds} is negative")).in_rule(rule),
            );
            0
        }
        Some((seconds, place)) if *seconds > MAX_AGE_CAP => {
            let message = format!(
                "max-age {seconds} is above {MAX_AGE_CAP}, preflightd's bound; written as \
                 {MAX_AGE_CAP}: browsers cap it lower anyway (Firefox 86400, Chromium 7200, \
                 WebKit 600), so they cache alike"
            );
            report.warn(rule, place, &message);
            comments.push(message);
            MAX_AGE_CAP as u32
        }
        Some((seconds, _)) => *seconds as u32,
    }
}

fn opt_ins(profile: &Profile, rule: &SourceRule, target: &mut Target, report: &mut Report<'_>) {
    let Origins::List(list) = &target.origins else {
        return;
    };
    let names = |pick: &dyn Fn(&OriginOut) -> bool| -> Vec<String> {
        list.iter()
            .filter(|e| pick(e))
            .map(|e| format!("{:?}", e.text))
            .collect()
    };
    let mut wanted: Vec<(&'static str, Vec<String>, &'static str)> = Vec::new();
    let glob = names(&|e| e.public_suffix_glob);
    if !glob.is_empty() {
        wanted.push((
            "dangerously_allow_public_suffix_globs",
            glob,
            "a glob over a public suffix, which anyone can register a site under",
        ));
    }
    if target.credentials {
        let insecure = names(&|e| e.insecure);
        if !insecure.is_empty() {
            wanted.push((
                "dangerously_allow_insecure_origins",
                insecure,
                "plain http:// origins with credentials, which anyone on the network path can \
                 act as",
            ));
        }
        let scheme = names(&|e| e.scheme_wildcard);
        if !scheme.is_empty() {
            wanted.push((
                "dangerously_allow_scheme_wildcard_with_credentials",
                scheme,
                "every site of the scheme with credentials",
            ));
        }
        let unpinned = names(&|e| e.unpinned_regex);
        if !unpinned.is_empty() {
            wanted.push((
                "dangerously_allow_unpinned_regex_origins",
                unpinned,
                "a wildcard not pinned to one domain, with credentials",
            ));
        }
    }
    for (key, entries, what) in wanted {
        let credentials = if target.credentials {
            format!(
                "; {} answers these origins with Access-Control-Allow-Credentials: true",
                profile.name
            )
        } else {
            String::new()
        };
        let why = format!(
            "{} allows {} ({what}){credentials}",
            profile.name,
            entries.join(", ")
        );
        report.warn(rule, &rule.place(), &format!("needs {key} = true: {why}"));
        target.opt_ins.push(OptIn { key, why });
    }
}

/// GCS and Azure stop at the first rule whose origin and method match, and deny when that
/// rule does not allow a requested header; preflightd would go on to a later rule. So a later
/// rule keeps only what no earlier rule takes first: for each earlier rule `E` whose methods
/// it shares, and which does not already allow every header it does, the origins both list
/// lose `E`'s methods. Origins of these vendors are exact or `*`, so this is set arithmetic,
/// except `*` less some origins, which preflightd cannot say.
fn select_by_origin_and_method(
    profile: &Profile,
    translated: &mut [Translated],
    report: &mut Report<'_>,
) {
    let originals: Vec<Option<Target>> = translated
        .iter()
        .map(|t| t.parts.first().cloned())
        .collect();
    for later in 0..translated.len() {
        for (earlier_index, earlier) in originals.iter().enumerate().take(later) {
            let Some(earlier) = earlier else { continue };
            let mut parts = Vec::new();
            let current = std::mem::take(&mut translated[later].parts);
            let source = translated[later].source.clone();
            for part in current {
                if !part.methods.intersects(&earlier.methods)
                    || earlier.headers.covers(&part.headers)
                {
                    parts.push(part);
                    continue;
                }
                let earlier_label = translated[earlier_index].source.label();
                let taken = |methods: &Methods| methods_taken(methods, &earlier.methods);
                match (&earlier.origins, &part.origins) {
                    (Origins::Any, _) => match taken(&part.methods) {
                        Some(left) => {
                            let mut part = part;
                            part.comments.push(format!(
                                "{}'s {earlier_label} takes {} from every origin first: not \
                                 imported here",
                                profile.name,
                                written_methods(&earlier.methods)
                            ));
                            part.methods = left;
                            parts.push(part);
                        }
                        None => inexact_any(
                            profile,
                            report,
                            &source,
                            &earlier_label,
                            &mut translated[later].notes,
                        ),
                    },
                    (Origins::List(_), Origins::Any) => {
                        inexact_any(
                            profile,
                            report,
                            &source,
                            &earlier_label,
                            &mut translated[later].notes,
                        );
                    }
                    (Origins::List(earlier_origins), Origins::List(origins)) => {
                        let (shared, rest): (Vec<OriginOut>, Vec<OriginOut>) = origins
                            .iter()
                            .cloned()
                            .partition(|o| earlier_origins.iter().any(|e| e.text == o.text));
                        if shared.is_empty() {
                            parts.push(part);
                            continue;
                        }
                        match taken(&part.methods) {
                            Some(left) => {
                                let mut first = part.clone();
                                first.origins = Origins::List(shared.clone());
                                first.methods = left;
                                first.comments.push(format!(
                                    "{}'s {earlier_label} takes {} from {} first: not imported \
                                     here",
                                    profile.name,
                                    written_methods(&earlier.methods),
                                    shared
                                        .iter()
                                        .map(|o| o.text.as_str())
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ));
                                parts.push(first);
                                if !rest.is_empty() {
                                    let mut second = part;
                                    second.origins = Origins::List(rest);
                                    parts.push(second);
                                }
                            }
                            None => inexact_any(
                                profile,
                                report,
                                &source,
                                &earlier_label,
                                &mut translated[later].notes,
                            ),
                        }
                    }
                }
            }
            translated[later].parts = parts;
        }
        // Parts left with no method never answer.
        let label = translated[later].source.label();
        let before = translated[later].parts.len();
        translated[later].parts.retain(|p| !p.methods.is_empty());
        if translated[later].parts.is_empty() && before > 0 {
            translated[later].notes.push(format!(
                "{} {label}: never answers in {}: earlier rules take every origin and method it \
                 lists first; not imported",
                profile.name, profile.name
            ));
        }
        // Parts of one rule keep its name, numbered.
        let base = originals[later]
            .as_ref()
            .map(|t| t.name.clone())
            .unwrap_or_default();
        let count = translated[later].parts.len();
        for (k, part) in translated[later].parts.iter_mut().enumerate() {
            part.name = if k == 0 || count == 1 {
                base.clone()
            } else {
                let suffix = format!("-{}", k + 1);
                let mut name = base.clone();
                name.truncate(64 - suffix.len());
                name + &suffix
            };
        }
    }
}

/// `methods` less `taken`; `None` when that cannot be written (`*` less some methods).
fn methods_taken(methods: &Methods, taken: &Methods) -> Option<Methods> {
    match (methods, taken) {
        (_, Methods::Any) => Some(Methods::List(Vec::new())),
        (Methods::Any, Methods::List(_)) => None,
        (Methods::List(list), Methods::List(taken)) => Some(Methods::List(
            list.iter()
                .filter(|m| !taken.contains(m))
                .cloned()
                .collect(),
        )),
    }
}

fn written_methods(methods: &Methods) -> String {
    match methods {
        Methods::Any => "every method".to_owned(),
        Methods::List(list) => list.join(", "),
    }
}

fn inexact_any(
    profile: &Profile,
    report: &mut Report<'_>,
    source: &SourceRule,
    earlier_label: &str,
    notes: &mut Vec<String>,
) {
    report.inexact(
        source,
        &source.place(),
        &format!(
            "{} takes the origins and methods {earlier_label} shares with this rule first; \
             with \"*\" on one side and not the other, preflightd cannot say \"every origin but \
             these\"",
            profile.name
        ),
        "this part of the rule is left out, so its preflights are denied",
        notes,
    );
}
