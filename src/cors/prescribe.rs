//! The smallest edit to the rules that would let a denied preflight through (DESIGN 12:
//! `explain` prescribes), and the near misses that usually explain a denial.
//!
//! Every candidate edit is applied to a copy of the rules, which must pass the same
//! validation as `preflightd check` (so an edit `check` would refuse is never offered, such
//! as `credentials = true` on a `*` rule) and, compiled, must allow the request as a browser
//! would judge it (with credentials, the answering rule must carry them). Slow on purpose: it
//! runs off the request path, in `explain` and for the shadow report.

use super::answer::Outcome;
use super::decide::{Decision, decide};
use super::request::{self, Request, host_without_port};
use crate::policy::{self, Policy};
use crate::rules::toml_value::{toml_list, toml_string};
use crate::rules::{
    self, HostOrigin, HostScope, HostSpec, Location, OriginEntry, OriginPattern, PortSpec, Rule,
    Rules,
};

/// At most this many candidate edits are compiled and decided, cheapest first.
const MAX_TRIALS: usize = 64;

/// One change to one field of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    AddOrigin(String),
    AddMethod(String),
    AddHeaders(Vec<String>),
    SetCredentials,
    AddHost(String),
    AddPath(String),
}

impl Edit {
    /// How big the edit is: widening a scope reaches more than listing one more value.
    fn weight(&self) -> usize {
        match self {
            Edit::AddHost(_) | Edit::AddPath(_) => 3,
            Edit::SetCredentials => 2,
            Edit::AddOrigin(_) | Edit::AddMethod(_) | Edit::AddHeaders(_) => 1,
        }
    }
}

impl std::fmt::Display for Edit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let quoted = |items: &[String]| {
            items
                .iter()
                .map(|i| format!("{i:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Edit::AddOrigin(origin) => write!(f, "add {origin:?} to origins"),
            Edit::AddMethod(method) => write!(f, "add {method:?} to methods"),
            Edit::AddHeaders(names) => write!(f, "add {} to headers", quoted(names)),
            Edit::SetCredentials => f.write_str("set credentials = true"),
            Edit::AddHost(host) => write!(f, "add {host:?} to hosts"),
            Edit::AddPath(path) => write!(f, "add {path:?} to paths"),
        }
    }
}

/// What to change so that the request is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prescription {
    /// Edit an existing rule.
    Edit {
        rule: String,
        location: Location,
        edits: Vec<Edit>,
    },
    /// No edit of an existing rule passes `check`: add this rule (TOML) before `before`, or
    /// at the end. `why` says what stood in the way.
    NewRule {
        before: Option<(String, Location)>,
        toml: String,
        why: Option<String>,
    },
}

impl std::fmt::Display for Prescription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Prescription::Edit {
                rule,
                location,
                edits,
            } => {
                let edits: Vec<String> = edits.iter().map(ToString::to_string).collect();
                write!(
                    f,
                    "{} of rule {rule:?} ({}:{})",
                    edits.join(" and "),
                    location.file,
                    location.line
                )
            }
            Prescription::NewRule { before, toml, why } => {
                if let Some(why) = why {
                    write!(f, "{why}; ")?;
                }
                match before {
                    Some((rule, location)) => write!(
                        f,
                        "add this rule before rule {rule:?} ({}:{}):\n{toml}",
                        location.file, location.line
                    ),
                    None => write!(f, "add this rule at the end:\n{toml}"),
                }
            }
        }
    }
}

/// An origin entry close to the request's origin: the usual cause of an `origin` denial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NearMiss {
    pub listed: String,
    pub rule: String,
    pub location: Location,
    /// `scheme`, `port` or `one label`.
    pub differs_by: &'static str,
}

impl std::fmt::Display for NearMiss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?} in rule {:?} ({}:{}) differs by {}",
            self.listed, self.rule, self.location.file, self.location.line, self.differs_by
        )
    }
}

/// The smallest valid edit that makes `request` allowed (with credentials when `credentials`),
/// or `None` when it already is, is not a preflight, is forwarded, or is malformed (no browser
/// sends it, and no rule can allow it).
pub fn prescribe(
    policy: &Policy,
    request: &Request<'_>,
    credentials: bool,
) -> Option<Prescription> {
    if allowed(policy, request, credentials) {
        return None;
    }
    let Decision::Answer(answer) = decide(policy, request) else {
        return None;
    };
    let preflight = request::parse(request.headers).ok()?;
    let origin = std::str::from_utf8(preflight.origin).ok()?;
    let method = std::str::from_utf8(preflight.method).ok()?;
    let names: Vec<String> = preflight
        .headers
        .iter()
        .map(|n| String::from_utf8_lossy(n).to_ascii_lowercase())
        .collect();
    let host = request
        .host
        .map(host_without_port)
        .map(|h| String::from_utf8_lossy(h).to_ascii_lowercase());
    let path = String::from_utf8_lossy(request.path).into_owned();
    let pattern = rules::origin::parse_origin(origin).ok()?;
    let fallback = |before: Option<usize>, why: Option<String>| {
        new_rule(
            policy,
            request,
            credentials,
            (&pattern, method, &names, host.clone()),
            before,
            why,
        )
    };
    // Allowed by a rule that lists every origin, but the request needs credentials, which
    // `*` can never carry (CORS-CHECKLIST 2.3; `check` refuses the pair): list the origin in
    // a credentialed rule of its own, ahead of the wildcard one.
    if let (Outcome::Allowed, Some(index)) = (answer.outcome, answer.rule) {
        let rule = &policy.source.rules[index];
        let wildcard = rule.origins.iter().find(|o| {
            matches!(
                o.pattern,
                OriginPattern::Any | OriginPattern::AnyOfScheme(_)
            )
        });
        if let Some(wildcard) = wildcard
            && !rule.credentials
        {
            let why = format!(
                "list the origin instead: rule {:?} allows it through {:?}, which cannot carry \
                 credentials",
                rule.name,
                wildcard.pattern.to_string()
            );
            return fallback(Some(index), Some(why));
        }
    }
    let closest = answer.rule;

    let mut origin_matched = vec![false; policy.rules.len()];
    policy
        .origins
        .for_each_match(preflight.origin, |i| origin_matched[i] = true);
    let mut candidates: Vec<(usize, usize, Vec<Edit>)> = Vec::new();
    for (index, rule) in policy.source.rules.iter().enumerate() {
        let mut edits = Vec::new();
        if let Some(host) = &host
            && !rule.hosts.is_empty()
            && !rule.hosts.iter().any(|s| s.covers(host.as_bytes()))
        {
            edits.push(Edit::AddHost(host.clone()));
        }
        if !rule.paths.is_empty() && !rule.paths.iter().any(|p| path.starts_with(p.as_str())) {
            edits.push(Edit::AddPath(path_prefix(&path)));
        }
        if !origin_matched[index] {
            edits.push(Edit::AddOrigin(pattern.to_string()));
        }
        if !rule
            .methods
            .allows_method(rule.only_listed_methods, preflight.method)
        {
            edits.push(Edit::AddMethod(method.to_owned()));
        }
        let missing: Vec<String> = names
            .iter()
            .filter(|n| !rule.headers.allows_header_name(n.as_bytes()))
            .cloned()
            .collect();
        if !missing.is_empty() {
            edits.push(Edit::AddHeaders(missing));
        }
        if credentials && !rule.credentials {
            edits.push(Edit::SetCredentials);
        }
        if edits.is_empty() {
            // Already allows, so an earlier rule answers without what the request needs:
            // editing that one is the candidate that counts.
            continue;
        }
        let weight = edits.iter().map(Edit::weight).sum();
        candidates.push((weight, index, edits));
    }
    // Cheapest first; among equals the rule the denial names (the one that got furthest),
    // then rule order.
    candidates.sort_by_key(|(weight, index, _)| (*weight, closest != Some(*index), *index));
    for (_, index, edits) in candidates.into_iter().take(MAX_TRIALS) {
        let mut edited = policy.source.clone();
        apply(&mut edited.rules[index], &edits);
        if passes(edited, request, credentials) {
            let rule = &policy.source.rules[index];
            return Some(Prescription::Edit {
                rule: rule.name.clone(),
                location: rule.location.clone(),
                edits,
            });
        }
    }
    fallback(None, None)
}

/// Whether `request` is allowed, as a browser would judge the answer (credentials included).
fn allowed(policy: &Policy, request: &Request<'_>, credentials: bool) -> bool {
    match decide(policy, request) {
        Decision::Answer(answer) => answer.lets_through(credentials),
        _ => false,
    }
}

/// Whether the edited rules pass validation and, compiled, allow the request.
fn passes(edited: Rules, request: &Request<'_>, credentials: bool) -> bool {
    let mut diagnostics = Vec::new();
    rules::validate_rules(&edited, &mut diagnostics);
    if diagnostics.iter().any(rules::Diagnostic::is_error) {
        return false;
    }
    policy::compile(edited).is_ok_and(|policy| allowed(&policy, request, credentials))
}

fn apply(rule: &mut Rule, edits: &[Edit]) {
    for edit in edits {
        match edit {
            Edit::AddOrigin(origin) => {
                if let Ok(pattern) = rules::origin::parse_origin(origin) {
                    rule.origins.push(OriginEntry {
                        pattern,
                        location: rule.location.clone(),
                        regex: None,
                    });
                }
            }
            Edit::AddMethod(method) => rule.methods.items.push(method.clone()),
            Edit::AddHeaders(names) => rule.headers.items.extend(names.iter().cloned()),
            Edit::SetCredentials => rule.credentials = true,
            Edit::AddHost(host) => rule.hosts.push(HostScope::Exact(host.clone())),
            Edit::AddPath(path) => rule.paths.push(path.clone()),
        }
    }
}

/// The directory of the path's first segment (`/v3/` for `/v3/items`), or the path.
fn path_prefix(path: &str) -> String {
    match path.get(1..).and_then(|rest| rest.find('/')) {
        Some(slash) => path[..slash + 2].to_owned(),
        None => path.to_owned(),
    }
}

/// What the new rule lists: the origin, the method, the header names, the request's host.
type Wanted<'a> = (&'a OriginPattern, &'a str, &'a [String], Option<String>);

/// The fallback: a rule of its own for exactly this origin, placed before `before`, else
/// before the first rule whose scope covers the request (so it answers first), else at the
/// end, with that rule's scope.
fn new_rule(
    policy: &Policy,
    request: &Request<'_>,
    credentials: bool,
    (origin, method, names, host): Wanted<'_>,
    before: Option<usize>,
    why: Option<String>,
) -> Option<Prescription> {
    let in_scope = before.or_else(|| {
        policy
            .rules
            .iter()
            .position(|r| r.scope_covers(request.host.map(host_without_port), request.path))
    });
    let taken = |name: &str| policy.source.rules.iter().any(|r| r.name == name);
    let name = (1..)
        .map(|n| {
            if n == 1 {
                "allow-origin".to_owned()
            } else {
                format!("allow-origin-{n}")
            }
        })
        .find(|n| !taken(n))?;
    let location = policy
        .source
        .rules
        .first()
        .map(|r| r.location.clone())
        .unwrap_or_else(|| Location::file("(rules)".into()));
    let scope_hosts: Vec<HostScope> = match in_scope {
        Some(i) => policy.source.rules[i].hosts.clone(),
        None => host.iter().map(|h| HostScope::Exact(h.clone())).collect(),
    };
    let scope_paths: Vec<String> = match in_scope {
        Some(i) => policy.source.rules[i].paths.clone(),
        None => Vec::new(),
    };
    let mut rule = Rule {
        name: name.clone(),
        location,
        hosts: scope_hosts,
        paths: scope_paths,
        origins: vec![OriginEntry {
            pattern: origin.clone(),
            location: Location::file("(new)".into()),
            regex: None,
        }],
        methods: Default::default(),
        only_listed_methods: false,
        headers: Default::default(),
        expose: Default::default(),
        credentials,
        max_age: rules::model::DEFAULT_MAX_AGE,
        private_network: false,
        dangerously_allow_insecure_origins: false,
        dangerously_allow_public_suffix_globs: false,
        dangerously_allow_unpinned_regex_origins: false,
        dangerously_allow_scheme_wildcard_with_credentials: false,
    };
    rule.methods.items.push(method.to_owned());
    rule.headers.items.extend(names.iter().cloned());
    let mut edited = policy.source.clone();
    edited
        .rules
        .insert(in_scope.unwrap_or(edited.rules.len()), rule.clone());
    if !passes(edited, request, credentials) {
        return None;
    }
    let before = in_scope.map(|i| {
        let r = &policy.source.rules[i];
        (r.name.clone(), r.location.clone())
    });
    Some(Prescription::NewRule {
        before,
        toml: rule_toml(&rule),
        why,
    })
}

fn rule_toml(rule: &Rule) -> String {
    let mut out = format!("[[rule]]\nname = {}\n", toml_string(&rule.name));
    let mut list = |key: &str, items: &[String]| {
        out.push_str(&format!("{key} = {}\n", toml_list(items)));
    };
    let hosts: Vec<String> = rule.hosts.iter().map(ToString::to_string).collect();
    if !hosts.is_empty() {
        list("hosts", &hosts);
    }
    if !rule.paths.is_empty() {
        list("paths", &rule.paths);
    }
    let origins: Vec<String> = rule.origins.iter().map(|o| o.pattern.to_string()).collect();
    list("origins", &origins);
    list("methods", &rule.methods.items);
    if !rule.headers.items.is_empty() {
        list("headers", &rule.headers.items);
    }
    if rule.credentials {
        out.push_str("credentials = true\n");
    }
    out
}

/// Listed origins (exact or glob) that differ from `origin` only by scheme, port or one host
/// label: a typo, a forgotten `www.`, or `http` for `https`.
pub fn near_misses(policy: &Policy, origin: &str) -> Vec<NearMiss> {
    let Ok(OriginPattern::Host(asked)) = rules::origin::parse_origin(origin) else {
        return Vec::new();
    };
    let HostSpec::Exact(asked_host) = &asked.host else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for rule in &policy.source.rules {
        for entry in &rule.origins {
            let OriginPattern::Host(listed) = &entry.pattern else {
                continue;
            };
            if let Some(differs_by) = differs_by(&asked, asked_host, listed) {
                found.push(NearMiss {
                    listed: entry.pattern.to_string(),
                    rule: rule.name.clone(),
                    location: entry.location.clone(),
                    differs_by,
                });
            }
        }
    }
    found
}

fn differs_by(asked: &HostOrigin, asked_host: &str, listed: &HostOrigin) -> Option<&'static str> {
    let HostSpec::Exact(listed_host) = &listed.host else {
        return None;
    };
    let same_port = listed.port == asked.port || listed.port == PortSpec::Any;
    let same_scheme = listed.scheme == asked.scheme;
    let same_host = listed_host == asked_host;
    match (same_scheme, same_host, same_port) {
        (false, true, _) => Some("scheme"),
        (true, true, false) => Some("port"),
        (true, false, true) if one_label_apart(asked_host, listed_host) => Some("one label"),
        _ => None,
    }
}

/// Same labels but one changed, or one label more or fewer at the front (`www.`).
fn one_label_apart(a: &str, b: &str) -> bool {
    let a: Vec<&str> = a.split('.').collect();
    let b: Vec<&str> = b.split('.').collect();
    if a.len() == b.len() {
        return a.iter().zip(&b).filter(|(x, y)| x != y).count() == 1;
    }
    let (short, long) = if a.len() < b.len() { (a, b) } else { (b, a) };
    long.len() == short.len() + 1 && long[1..] == short[..]
}
