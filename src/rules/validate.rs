//! Checks that span fields or rules (errors), and lints (warnings) for rules that load but
//! probably do not do what their author meant.

use std::collections::HashMap;

use super::diagnostic::{Diagnostic, Location, Subject};
use super::model::{CHROMIUM_MAX_AGE_CAP, HostScope, Rule, Rules, TokenList};
use super::origin::{HostSpec, OriginPattern, PortSpec, RegexFacts};
use crate::fetch::CORS_SAFELISTED_METHODS;

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
            // CORS-CHECKLIST 3.5: a reflected origin with credentials lets that site act as
            // the user; `scheme://*` reflects every site of the scheme.
            OriginPattern::AnyOfScheme(scheme) if rule.credentials => {
                if !rule.dangerously_allow_scheme_wildcard_with_credentials {
                    diagnostics.push(error(format!(
                        "origin {written:?} with credentials: every {scheme} site could act as \
                         the user; list the origins, or set \
                         dangerously_allow_scheme_wildcard_with_credentials = true"
                    )));
                }
                if scheme == "http" && !rule.dangerously_allow_insecure_origins {
                    diagnostics.push(error(format!(
                        "origin {written:?} with credentials over plain http: anyone on the \
                         network path can act as it; use https, or set \
                         dangerously_allow_insecure_origins = true"
                    )));
                }
            }
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
    for prefix in &rule.headers.prefixes {
        // Fetch keeps `authorization` out of `*` (CORS-CHECKLIST 2.9); a glob that reaches it
        // is allowed (the bucket configurations do), but rarely meant.
        if "authorization".starts_with(prefix.as_str()) {
            diagnostics.push(Diagnostic::warning(
                rule.location.clone(),
                subject(rule),
                format!(
                    "header glob \"{prefix}*\" also allows \"authorization\" (which \"*\" never \
                     does); list the names if that is not meant"
                ),
            ));
        }
    }
    if rule.private_network {
        check_private_network(rule, diagnostics);
    }
    if rule.only_listed_methods && !rule.methods.any && rule.methods.items.is_empty() {
        diagnostics.push(Diagnostic::error(
            rule.location.clone(),
            subject(rule),
            "only_listed_methods with an empty methods list: the rule would never answer",
        ));
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

/// Private Network Access is legacy: Chrome put its preflights on hold in 2024 and shipped
/// the Local Network Access permission prompt instead in Chrome 142 (October 2025); Firefox
/// and Safari never enforced it. The key still works; `check` says so, and refuses it where
/// it would let every site reach the private network.
fn check_private_network(rule: &Rule, diagnostics: &mut Vec<Diagnostic>) {
    diagnostics.push(Diagnostic::warning(
        rule.location.clone(),
        subject(rule),
        "private_network is legacy: Chrome replaced Private Network Access preflights with the \
         Local Network Access permission prompt (Chrome 142), and Firefox and Safari never \
         enforced them; remove the key once preflightd_private_network_preflights_total stays 0",
    ));
    for entry in &rule.origins {
        if matches!(
            entry.pattern,
            OriginPattern::Any | OriginPattern::AnyOfScheme(_)
        ) {
            diagnostics.push(Diagnostic::error(
                entry.location.clone(),
                subject(rule),
                format!(
                    "private_network with origin \"{}\": every site could reach devices on the \
                     private network; list the origins",
                    entry.pattern
                ),
            ));
        }
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

/// Earlier rules checked for each rule, at most: the lint stays linear even when thousands of
/// rules share an origin and a host (they differ in paths, say); past this many candidates a
/// shadowing rule may go unreported.
const SHADOW_CANDIDATES: usize = 256;

/// Warns about each rule that an earlier rule makes unreachable: the earlier one covers its
/// whole scope, every origin, method and header, so under first-match it never answers.
/// Candidates come from an index of (origin entry, host entry) pairs, so that rules scoped to
/// different hosts are never compared, and at most [`SHADOW_CANDIDATES`] are checked per rule:
/// near-linear for 100 000 rules.
fn shadowed_rules(rules: &Rules, diagnostics: &mut Vec<Diagnostic>) {
    let mut by_entry: HashMap<(String, String), Vec<usize>> = HashMap::new();
    for (index, rule) in rules.rules.iter().enumerate() {
        let hosts: Vec<String> = if rule.hosts.is_empty() {
            vec![String::new()]
        } else {
            rule.hosts.iter().map(ToString::to_string).collect()
        };
        for entry in &rule.origins {
            for host in &hosts {
                let list = by_entry
                    .entry((entry.pattern.to_string(), host.clone()))
                    .or_default();
                // A rule lists an entry once per pair (several origins may share a key).
                if list.last() != Some(&index) {
                    list.push(index);
                }
            }
        }
    }
    for (later_index, later) in rules.rules.iter().enumerate() {
        let Some(first) = later.origins.first() else {
            continue;
        };
        let mut origin_keys = covering_keys(&first.pattern);
        origin_keys.push(OriginPattern::Any.to_string());
        let mut host_keys = vec![String::new()];
        if let Some(host) = later.hosts.first() {
            host_keys.extend(covering_host_keys(host));
        }
        let mut candidates: Vec<usize> = Vec::new();
        for origin in &origin_keys {
            for host in &host_keys {
                if let Some(found) = by_entry.get(&(origin.clone(), host.clone())) {
                    candidates.extend(
                        found
                            .iter()
                            .copied()
                            .take_while(|&i| i < later_index)
                            .take(SHADOW_CANDIDATES),
                    );
                }
            }
        }
        candidates.sort_unstable();
        candidates.dedup();
        let shadow = candidates
            .into_iter()
            .take(SHADOW_CANDIDATES)
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

/// The written forms of host entries that could cover `host`: itself, and `*.` over each of
/// its parent domains.
fn covering_host_keys(host: &HostScope) -> Vec<String> {
    let mut keys = vec![host.to_string()];
    let mut domain = match host {
        HostScope::Exact(name) => name.as_str(),
        HostScope::Subdomains(suffix) => suffix.trim_start_matches('.'),
    };
    while let Some((_, parent)) = domain.split_once('.') {
        keys.push(format!("*.{parent}"));
        domain = parent;
    }
    keys
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
        keys.push(format!("{scheme}://*"));
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
    let earlier_allows = |m: &[u8]| {
        earlier
            .methods
            .allows_method(earlier.only_listed_methods, m)
    };
    // Every method the later rule allows: its list, and the safelisted ones unless it lists
    // only its own.
    let methods = earlier.methods.any
        || (!later.methods.any
            && later
                .methods
                .items
                .iter()
                .all(|m| earlier_allows(m.as_bytes()))
            && (later.only_listed_methods
                || CORS_SAFELISTED_METHODS
                    .iter()
                    .all(|m| earlier_allows(m.as_bytes()))));
    hosts && paths && origins && methods && headers_cover(&earlier.headers, &later.headers)
}

fn headers_cover(earlier: &TokenList, later: &TokenList) -> bool {
    // A later prefix glob is covered by an earlier glob that is a prefix of it, or by `*`
    // when the glob cannot reach `authorization` (which `*` leaves out).
    let prefix_covered = |prefix: &str| {
        earlier
            .prefixes
            .iter()
            .any(|p| prefix.starts_with(p.as_str()))
            || (earlier.any && !"authorization".starts_with(prefix))
    };
    (earlier.any || !later.any)
        && later
            .items
            .iter()
            .all(|name| earlier.allows_header_name(name.as_bytes()))
        && later.prefixes.iter().all(|p| prefix_covered(p))
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

    fn shadow_warnings(text: &str) -> Vec<String> {
        let loaded = crate::rules::load_sources(&[crate::rules::Source {
            name: "t.toml".into(),
            text: text.into(),
        }]);
        loaded
            .diagnostics
            .iter()
            .filter(|d| d.message.starts_with("never answers"))
            .map(|d| d.to_string())
            .collect()
    }

    #[test]
    fn shadowing_is_found_across_host_scopes_that_cover() {
        let rule = |name: &str, host: &str| {
            format!(
                "[[rule]]\nname = \"{name}\"\nhosts = [\"{host}\"]\norigins = [\"https://app.example.com\"]\n"
            )
        };
        let covered = format!(
            "{}{}",
            rule("wide", "*.example.com"),
            rule("narrow", "api.example.com")
        );
        assert_eq!(shadow_warnings(&covered).len(), 1, "{covered}");
        let apart = format!(
            "{}{}",
            rule("a", "a.example.com"),
            rule("b", "b.example.com")
        );
        assert_eq!(shadow_warnings(&apart), Vec::<String>::new());
        let unscoped = "[[rule]]\nname = \"all\"\norigins = [\"https://app.example.com\"]\n";
        let under = format!("{unscoped}{}", rule("api", "api.example.com"));
        assert_eq!(shadow_warnings(&under).len(), 1, "{under}");
    }

    #[test]
    fn unescaped_dots() {
        assert!(has_unescaped_dot(r"https://a.example\.com"));
        assert!(!has_unescaped_dot(r"https://a\.example\.com"));
        assert!(!has_unescaped_dot(r"https://[a-z.]+\.com"));
        assert!(!has_unescaped_dot(r"https://a\\\.com"));
    }
}
