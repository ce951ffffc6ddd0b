//! Checks that span fields or rules (errors), and lints (warnings) for rules that load but
//! probably do not do what their author meant.

use std::collections::HashMap;

use super::diagnostic::{Diagnostic, Location, Subject};
use super::model::{CHROMIUM_MAX_AGE_CAP, HostScope, Rule, Rules, TokenList};
use super::origin::{HostSpec, OriginPattern, PortSpec, RegexFacts};
use crate::fetch::is_cors_safelisted_method;

/// Methods the Fetch standard uppercases before sending (FETCH §"Methods", normalize); a rule
/// listing one of them in lowercase never matches a browser.
const NORMALIZED_METHODS: [&str; 6] = ["DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT"];

pub fn check(rules: &Rules, diagnostics: &mut Vec<Diagnostic>) {
    duplicate_names(rules, diagnostics);
    for rule in &rules.rules {
        check_rule(rule, diagnostics);
    }
    shadowed_rules(rules, diagnostics);
}

fn subject(rule: &Rule) -> Subject {
    Subject::Rule(rule.name.clone())
}

fn duplicate_names(rules: &Rules, diagnostics: &mut Vec<Diagnostic>) {
    let mut seen: HashMap<&str, &Location> = HashMap::new();
    for rule in &rules.rules {
        if rule.name.is_empty() {
            continue;
        }
        if let Some(first) = seen.get(rule.name.as_str()) {
            diagnostics.push(Diagnostic::error(
                rule.location.clone(),
                subject(rule),
                format!("duplicate rule name; first used at {first}"),
            ));
        } else {
            seen.insert(&rule.name, &rule.location);
        }
    }
}

fn check_rule(rule: &Rule, diagnostics: &mut Vec<Diagnostic>) {
    let mut seen: HashMap<String, &Location> = HashMap::new();
    for entry in &rule.origins {
        let written = entry.pattern.to_string();
        let error =
            |message: String| Diagnostic::error(entry.location.clone(), subject(rule), message);
        let warning =
            |message: String| Diagnostic::warning(entry.location.clone(), subject(rule), message);
        match &entry.pattern {
            // CORS-CHECKLIST 2.3: browsers refuse `ACAO: *` on credentialed requests.
            OriginPattern::Any if rule.credentials => diagnostics.push(error(
                "origin \"*\" with credentials: browsers refuse a wildcard origin on \
                 credentialed requests; list the origins"
                    .into(),
            )),
            // CORS-CHECKLIST 3.3: sandboxed iframes and data: documents all send `null`.
            OriginPattern::Null if rule.credentials => diagnostics.push(warning(
                "origin \"null\" with credentials: every sandboxed iframe, data: URL and \
                 file: page sends \"null\", so any of them may act with the user's credentials"
                    .into(),
            )),
            OriginPattern::Host(origin)
                if rule.credentials
                    && origin.scheme == "http"
                    && !origin.is_loopback()
                    && !rule.dangerously_allow_insecure_origins =>
            {
                diagnostics.push(error(format!(
                    "origin {written:?} with credentials over plain http: anyone on the \
                     network path can act as it; use https, or set \
                     dangerously_allow_insecure_origins = true"
                )));
            }
            OriginPattern::Host(origin)
                if origin.is_public_suffix_glob()
                    && !rule.dangerously_allow_public_suffix_globs =>
            {
                let HostSpec::Subdomains(domain) = &origin.host else {
                    continue;
                };
                diagnostics.push(error(format!(
                    "origin {written:?} is a glob over the public suffix {domain:?}: anyone can \
                     register a site under it; list the sites, or set \
                     dangerously_allow_public_suffix_globs = true"
                )));
            }
            OriginPattern::Regex(regex) => {
                if has_unescaped_dot(regex) {
                    diagnostics.push(warning(format!(
                        "regex {regex:?} has an unescaped \".\", which matches any character; \
                         write \"\\\\.\" in a TOML string for a literal dot"
                    )));
                }
                if let Some(facts) = &entry.regex {
                    check_regex_reach(rule, regex, facts, &error, &warning, diagnostics);
                }
            }
            _ => {}
        }
        if let Some(first) = seen.get(&written) {
            diagnostics.push(warning(format!(
                "origin {written:?} listed twice; first at line {}",
                first.line
            )));
        } else {
            seen.insert(written, &entry.location);
        }
    }
    if rule.max_age > CHROMIUM_MAX_AGE_CAP {
        diagnostics.push(Diagnostic::warning(
            rule.location.clone(),
            subject(rule),
            format!(
                "max_age {} is above Chromium's cap of {CHROMIUM_MAX_AGE_CAP}; Chromium caches \
                 for {CHROMIUM_MAX_AGE_CAP} seconds at most",
                rule.max_age
            ),
        ));
    }
    for method in &rule.methods.items {
        let upper = method.to_ascii_uppercase();
        if *method != upper && NORMALIZED_METHODS.contains(&upper.as_str()) {
            diagnostics.push(Diagnostic::warning(
                rule.location.clone(),
                subject(rule),
                format!("method {method:?} never matches a browser: fetch() sends it as {upper:?}"),
            ));
        }
    }
    if rule.expose.any && rule.credentials {
        diagnostics.push(Diagnostic::warning(
            rule.location.clone(),
            subject(rule),
            "expose \"*\" with credentials is a literal header name \"*\" to browsers; list the \
             header names",
        ));
    }
}

/// A `regex:` entry is held to what binds globs (CORS-CHECKLIST 3.5: a reflected origin
/// with credentials lets that site act as the user). On a credentialed rule, one that can
/// match a non-loopback `http://` origin needs `dangerously_allow_insecure_origins`, and one
/// not pinned to fixed registrable domains needs `dangerously_allow_unpinned_regex_origins`;
/// without credentials, each is a warning.
fn check_regex_reach(
    rule: &Rule,
    regex: &str,
    facts: &RegexFacts,
    error: &dyn Fn(String) -> Diagnostic,
    warning: &dyn Fn(String) -> Diagnostic,
    diagnostics: &mut Vec<Diagnostic>,
) {
    if facts.insecure && !rule.dangerously_allow_insecure_origins {
        let message = format!(
            "regex {regex:?} can match a plain http:// origin that is not loopback: anyone on \
             the network path can act as it; anchor it to https://"
        );
        diagnostics.push(if rule.credentials {
            error(format!(
                "{message}, or set dangerously_allow_insecure_origins = true"
            ))
        } else {
            warning(message)
        });
    }
    if facts.pinned.is_none()
        && !facts.loopback_only
        && !rule.dangerously_allow_unpinned_regex_origins
    {
        let message = format!(
            "regex {regex:?} is not pinned to a fixed domain: it can match a site anyone can \
             register; end it with a literal \"\\\\.example\\\\.com\" (a label boundary and a \
             registrable domain)"
        );
        diagnostics.push(if rule.credentials {
            error(format!(
                "{message}, or set dangerously_allow_unpinned_regex_origins = true"
            ))
        } else {
            warning(message)
        });
    }
}

/// A `.` outside a character class and not escaped.
fn has_unescaped_dot(regex: &str) -> bool {
    let mut escaped = false;
    let mut in_class = false;
    for c in regex.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '[' => in_class = true,
            ']' => in_class = false,
            '.' if !in_class => return true,
            _ => {}
        }
    }
    false
}

/// Warns about each rule that an earlier rule makes unreachable: the earlier one covers its
/// whole scope, every origin, method and header, so under first-match it never answers.
/// Candidates come from an index of origin entries, so this stays near-linear for large sets.
fn shadowed_rules(rules: &Rules, diagnostics: &mut Vec<Diagnostic>) {
    let mut by_entry: HashMap<String, Vec<usize>> = HashMap::new();
    let mut any_origin = Vec::new();
    for (index, rule) in rules.rules.iter().enumerate() {
        for entry in &rule.origins {
            if entry.pattern == OriginPattern::Any {
                any_origin.push(index);
            } else {
                by_entry
                    .entry(entry.pattern.to_string())
                    .or_default()
                    .push(index);
            }
        }
    }
    for (later_index, later) in rules.rules.iter().enumerate() {
        let Some(first) = later.origins.first() else {
            continue;
        };
        let mut candidates: Vec<usize> = any_origin.clone();
        for key in covering_keys(&first.pattern) {
            if let Some(found) = by_entry.get(&key) {
                candidates.extend(found);
            }
        }
        candidates.sort_unstable();
        candidates.dedup();
        let shadow = candidates
            .into_iter()
            .take_while(|&i| i < later_index)
            .find(|&i| shadows(&rules.rules[i], later));
        if let Some(earlier) = shadow.map(|i| &rules.rules[i]) {
            diagnostics.push(Diagnostic::warning(
                later.location.clone(),
                subject(later),
                format!(
                    "never answers: rule {:?} ({}) comes first and allows everything this rule does",
                    earlier.name, earlier.location
                ),
            ));
        }
    }
}

/// The written forms of entries that could cover `pattern`.
fn covering_keys(pattern: &OriginPattern) -> Vec<String> {
    let mut keys = vec![pattern.to_string()];
    if let OriginPattern::Host(origin) = pattern {
        let (host, is_glob) = match &origin.host {
            HostSpec::Exact(h) => (h.as_str(), false),
            HostSpec::Subdomains(d) => (d.as_str(), true),
        };
        let port = match origin.port {
            PortSpec::Default => String::new(),
            PortSpec::Fixed(p) => format!(":{p}"),
            PortSpec::Any => ":*".into(),
        };
        let scheme = &origin.scheme;
        keys.push(format!("{scheme}://{host}:*"));
        let mut domain = host;
        if is_glob {
            keys.push(format!("{scheme}://*.{domain}:*"));
        }
        while let Some((_, parent)) = domain.split_once('.') {
            domain = parent;
            keys.push(format!("{scheme}://*.{domain}{port}"));
            keys.push(format!("{scheme}://*.{domain}:*"));
        }
    }
    keys
}

fn shadows(earlier: &Rule, later: &Rule) -> bool {
    let hosts = earlier.hosts.is_empty()
        || (!later.hosts.is_empty()
            && later
                .hosts
                .iter()
                .all(|h| earlier.hosts.iter().any(|e| host_scope_covers(e, h))));
    let paths = earlier.paths.is_empty()
        || (!later.paths.is_empty()
            && later
                .paths
                .iter()
                .all(|p| earlier.paths.iter().any(|e| p.starts_with(e.as_str()))));
    let origins = later
        .origins
        .iter()
        .all(|l| earlier.origins.iter().any(|e| e.pattern.covers(&l.pattern)));
    let methods = earlier.methods.any
        || (!later.methods.any
            && later.methods.items.iter().all(|m| {
                is_cors_safelisted_method(m.as_bytes())
                    || earlier.methods.contains_exact(m.as_bytes())
            }));
    hosts && paths && origins && methods && headers_cover(&earlier.headers, &later.headers)
}

fn headers_cover(earlier: &TokenList, later: &TokenList) -> bool {
    (earlier.any || !later.any)
        && later
            .items
            .iter()
            .all(|name| earlier.allows_header_name(name.as_bytes()))
}

fn host_scope_covers(earlier: &HostScope, later: &HostScope) -> bool {
    match (earlier, later) {
        (HostScope::Exact(a), HostScope::Exact(b)) => a == b,
        (HostScope::Subdomains(suffix), HostScope::Exact(host)) => {
            host.len() > suffix.len() && host.ends_with(suffix.as_str())
        }
        (HostScope::Subdomains(a), HostScope::Subdomains(b)) => b.ends_with(a.as_str()),
        (HostScope::Exact(_), HostScope::Subdomains(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescaped_dots() {
        assert!(has_unescaped_dot(r"https://a.example\.com"));
        assert!(!has_unescaped_dot(r"https://a\.example\.com"));
        assert!(!has_unescaped_dot(r"https://[a-z.]+\.com"));
        assert!(!has_unescaped_dot(r"https://a\\\.com"));
    }
}
