//! Origin entries as written in a rules file, parsed and normalized.
//!
//! A browser sends `Origin` as a serialized origin (CORS-CHECKLIST 3.1): lowercase scheme and
//! host, punycode, no default port (3.2), no path, no trailing slash, no userinfo. Entries are
//! brought to that form when loaded so that matching can be byte-exact; an entry that no
//! normalization can turn into such a form is an error that says how to write it.

use std::fmt;
use std::net::Ipv4Addr;

/// One entry of a rule's `origins` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPattern {
    /// `*`: any origin, `null` included (CORS-CHECKLIST 3.4).
    Any,
    /// The literal `null` (opaque origins, CORS-CHECKLIST 3.3).
    Null,
    /// `scheme://host[:port]`, `scheme://*.domain[:port]` or `scheme://host:*`.
    Host(HostOrigin),
    /// `regex:<pattern>`, matched against the whole origin.
    Regex(String),
    /// `scheme://*`: any origin of this scheme, any host and port (B2's `"https"`, S3's
    /// `https://*`).
    AnyOfScheme(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostOrigin {
    pub scheme: String,
    pub host: HostSpec,
    pub port: PortSpec,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostSpec {
    /// A host exactly (lowercase, punycode; IPv6 in brackets).
    Exact(String),
    /// `*.domain`: one or more labels in front of `domain`, never `domain` itself.
    Subdomains(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortSpec {
    /// No port in the serialized origin (the scheme's default port, or a scheme without one).
    Default,
    Fixed(u16),
    /// `:*`: any port, the default one (no port written) included.
    Any,
}

impl fmt::Display for OriginPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OriginPattern::Any => f.write_str("*"),
            OriginPattern::Null => f.write_str("null"),
            OriginPattern::Regex(pattern) => write!(f, "regex:{pattern}"),
            OriginPattern::AnyOfScheme(scheme) => write!(f, "{scheme}://*"),
            OriginPattern::Host(origin) => origin.fmt(f),
        }
    }
}

impl fmt::Display for HostOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme)?;
        match &self.host {
            HostSpec::Exact(host) => f.write_str(host)?,
            HostSpec::Subdomains(domain) => write!(f, "*.{domain}")?,
        }
        match self.port {
            PortSpec::Default => Ok(()),
            PortSpec::Fixed(port) => write!(f, ":{port}"),
            PortSpec::Any => f.write_str(":*"),
        }
    }
}

impl HostOrigin {
    /// True when every origin this entry matches is on the loopback interface, where `http://`
    /// is as safe as it gets (`localhost`, `*.localhost`, 127.0.0.0/8, `[::1]`).
    pub fn is_loopback(&self) -> bool {
        let host = match &self.host {
            HostSpec::Exact(host) | HostSpec::Subdomains(host) => host.as_str(),
        };
        host == "localhost"
            || host.ends_with(".localhost")
            || host == "[::1]"
            || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// For a subdomain glob: true when `domain` is itself a public suffix (`co.uk`, `com`,
    /// `github.io`), so the glob would admit every site registered under it.
    pub fn is_public_suffix_glob(&self) -> bool {
        let HostSpec::Subdomains(domain) = &self.host else {
            return false;
        };
        match psl::suffix(domain.as_bytes()) {
            // Unknown TLDs (`*.internal`, `*.localhost`) fall under the list's default `*`
            // rule; they are private names, not public suffixes.
            Some(suffix) => suffix.is_known() && suffix.as_bytes() == domain.as_bytes(),
            None => false,
        }
    }
}

impl OriginPattern {
    /// True when every origin `other` matches is also matched by `self` (used to find rules
    /// that an earlier rule shadows). Conservative: `false` when unsure.
    pub fn covers(&self, other: &OriginPattern) -> bool {
        match (self, other) {
            (OriginPattern::Any, _) => true,
            (OriginPattern::Null, OriginPattern::Null) => true,
            (OriginPattern::Regex(a), OriginPattern::Regex(b)) => a == b,
            (OriginPattern::Host(a), OriginPattern::Host(b)) => a.covers(b),
            (OriginPattern::AnyOfScheme(a), OriginPattern::AnyOfScheme(b)) => a == b,
            (OriginPattern::AnyOfScheme(a), OriginPattern::Host(b)) => *a == b.scheme,
            _ => false,
        }
    }
}

impl HostOrigin {
    fn covers(&self, other: &HostOrigin) -> bool {
        let ports = match (self.port, other.port) {
            (PortSpec::Any, _) => true,
            (a, b) => a == b,
        };
        let hosts = match (&self.host, &other.host) {
            (HostSpec::Exact(a), HostSpec::Exact(b)) => a == b,
            (HostSpec::Subdomains(domain), HostSpec::Exact(h) | HostSpec::Subdomains(h)) => {
                h.len() > domain.len()
                    && h.ends_with(domain.as_str())
                    && h.as_bytes()[h.len() - domain.len() - 1] == b'.'
                    || matches!(other.host, HostSpec::Subdomains(_)) && h == domain
            }
            (HostSpec::Exact(_), HostSpec::Subdomains(_)) => false,
        };
        self.scheme == other.scheme && ports && hosts
    }
}

/// Regex syntax for `regex:` origins: bytes, not Unicode (origins are ASCII), so that
/// `[^.]` means one byte and the DFA stays small.
pub fn regex_syntax() -> regex_automata::util::syntax::Config {
    regex_automata::util::syntax::Config::new()
        .unicode(false)
        .utf8(false)
}

/// Upper bound on the DFA one regex entry may need; a pattern past it is refused at load
/// rather than slowing every reload.
pub const REGEX_DFA_LIMIT: usize = 8 << 20;

/// Upper bound on the Thompson NFA one regex entry may need. The NFA is built before the DFA
/// and grows with nested repetition (`((a{10}){10}){10}` is 1 000 copies of `a`): without this
/// bound a 72-byte entry needs gigabytes before the DFA limit is ever consulted.
pub const REGEX_NFA_LIMIT: usize = 2 << 20;

/// Checks that a `regex:` entry parses and compiles, NFA and DFA, within bounded size; the
/// compiled DFA (anchored at the start, matching the whole origin) for further analysis.
pub fn check_regex(pattern: &str) -> Result<RegexFacts, String> {
    use regex_automata::dfa::{StartKind, dense};
    use regex_automata::nfa::thompson;
    let hir = match regex_automata::util::syntax::parse_with(pattern, &regex_syntax()) {
        Ok(hir) => hir,
        Err(e) => {
            // regex-syntax renders a multi-line picture; its last line is the reason.
            let message = e.to_string();
            let reason = message.lines().last().unwrap_or("").trim();
            return Err(format!(
                "regex does not parse: {}",
                reason.trim_start_matches("error: ")
            ));
        }
    };
    let dfa = dense::Builder::new()
        .configure(
            dense::Config::new()
                .start_kind(StartKind::Anchored)
                .dfa_size_limit(Some(REGEX_DFA_LIMIT))
                .determinize_size_limit(Some(REGEX_DFA_LIMIT)),
        )
        .syntax(regex_syntax())
        .thompson(
            thompson::Config::new()
                .utf8(false)
                .nfa_size_limit(Some(REGEX_NFA_LIMIT))
                .which_captures(thompson::WhichCaptures::None),
        )
        .build(&format!("(?:{pattern})\\z"))
        .map_err(|e| {
            format!("regex needs too large an automaton ({e}); simplify it or use a glob")
        })?;
    let hosts = strip_port(&hir);
    Ok(RegexFacts {
        insecure: can_match_insecure(&dfa, &hir),
        pinned: pinned_domains(&hosts),
        loopback_only: loopback_only(&hir),
    })
}

/// What validation needs to know of a `regex:` entry to hold it to the rules that bind globs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegexFacts {
    /// It can match an `http://` origin that is not a loopback one.
    pub insecure: bool,
    /// The fixed registrable domains the origins it matches end in (`example.com` for
    /// `https://[a-z]+\.example\.com`), or `None` when it is not pinned to such a set.
    pub pinned: Option<Vec<String>>,
    /// Every origin it matches is a loopback one (`localhost`, `127.0.0.1`, `[::1]`).
    pub loopback_only: bool,
}

/// The loopback hosts a regex may spell out, with their scheme.
const LOOPBACK_PREFIXES: [&str; 6] = [
    "http://localhost",
    "http://127.0.0.1",
    "http://[::1]",
    "https://localhost",
    "https://127.0.0.1",
    "https://[::1]",
];

/// A literal prefix that fixes a loopback host: exactly one of [`LOOPBACK_PREFIXES`], or one
/// followed by `:` (a port). `http://localhost.evil.com` is not one.
fn is_loopback_prefix(literal: &regex_syntax::hir::literal::Literal) -> bool {
    let bytes = literal.as_bytes();
    LOOPBACK_PREFIXES.iter().any(|host| {
        let host = host.as_bytes();
        (literal.is_exact() && bytes == host)
            || (bytes.starts_with(host) && bytes.get(host.len()) == Some(&b':'))
    })
}

fn loopback_only(hir: &regex_syntax::hir::Hir) -> bool {
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    let prefixes = Extractor::new().kind(ExtractKind::Prefix).extract(hir);
    prefixes
        .literals()
        .is_some_and(|literals| !literals.is_empty() && literals.iter().all(is_loopback_prefix))
}

/// The regex without a trailing port part (`:[0-9]+`, `(:[0-9]+)?`, `:8443`), so that its
/// literal suffix is the end of the host.
fn strip_port(hir: &regex_syntax::hir::Hir) -> regex_syntax::hir::Hir {
    use regex_syntax::hir::{Hir, HirKind};
    fn port_like(hir: &Hir) -> bool {
        match hir.kind() {
            HirKind::Literal(literal) => literal.0.iter().all(|&b| b == b':' || b.is_ascii_digit()),
            HirKind::Class(class) => match class {
                regex_syntax::hir::Class::Bytes(bytes) => bytes
                    .ranges()
                    .iter()
                    .all(|r| r.start().is_ascii_digit() && r.end().is_ascii_digit()),
                regex_syntax::hir::Class::Unicode(unicode) => unicode
                    .ranges()
                    .iter()
                    .all(|r| r.start().is_ascii_digit() && r.end().is_ascii_digit()),
            },
            HirKind::Repetition(repetition) => port_like(&repetition.sub),
            HirKind::Capture(capture) => port_like(&capture.sub),
            HirKind::Concat(items) => items.iter().all(port_like),
            _ => false,
        }
    }
    match hir.kind() {
        HirKind::Concat(items) => {
            let mut keep = items.len();
            while keep > 0 && port_like(&items[keep - 1]) {
                keep -= 1;
            }
            Hir::concat(items[..keep].to_vec())
        }
        _ => hir.clone(),
    }
}

/// Whether the regex can match an origin starting `http://` other than a loopback one.
/// Conservative: a loopback regex must spell its host out (`http://localhost:`, `http://127.0.0.1:`,
/// `http://[::1]:`, or one of those hosts exactly), else any regex that can match `http://`
/// counts as insecure.
fn can_match_insecure(
    dfa: &regex_automata::dfa::dense::DFA<Vec<u32>>,
    hir: &regex_syntax::hir::Hir,
) -> bool {
    use regex_automata::dfa::Automaton;
    use regex_automata::util::start;
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    let Ok(mut state) =
        dfa.start_state(&start::Config::new().anchored(regex_automata::Anchored::Yes))
    else {
        return true;
    };
    for &byte in b"http://" {
        state = dfa.next_state(state, byte);
        if dfa.is_dead_state(state) {
            return false;
        }
    }
    let prefixes = Extractor::new().kind(ExtractKind::Prefix).extract(hir);
    let Some(literals) = prefixes.literals() else {
        return true;
    };
    !literals
        .iter()
        .all(|literal| literal.as_bytes().starts_with(b"https://") || is_loopback_prefix(literal))
}

/// The registrable domains the matches of the regex end in, from its literal suffixes (the
/// port already stripped): each must be `.<domain>` (a label boundary) or `://<host>` (the
/// whole host), with an optional `:port`, where `<domain>` holds a registrable domain and is
/// not itself a public suffix. `https://[a-z]+example\.com` is not pinned (`evilexample.com`
/// matches), nor is `https://.*\.com`.
fn pinned_domains(hir: &regex_syntax::hir::Hir) -> Option<Vec<String>> {
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    let suffixes = Extractor::new().kind(ExtractKind::Suffix).extract(hir);
    let literals = suffixes.literals()?;
    let mut domains: Vec<String> = Vec::new();
    for literal in literals {
        let bytes = literal.as_bytes();
        // After `://` the whole host is fixed. Otherwise the literal starts inside a label
        // whose beginning varies (`0.preview.example.com` from `[0-9]+\.preview...`): only
        // what follows its first dot is a whole-label suffix.
        let fixed = match bytes.windows(3).rposition(|w| w == b"://") {
            Some(at) => &bytes[at + 3..],
            None => &bytes[bytes.iter().position(|&b| b == b'.')? + 1..],
        };
        let text = std::str::from_utf8(fixed).ok()?;
        let domain = match text.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => text,
        };
        let domain = domain.to_ascii_lowercase();
        // The registrable domain must sit inside what is fixed: a public suffix alone
        // (`.com`, `.co.uk`) pins nothing.
        let registrable = psl::domain_str(&domain)?.to_owned();
        if !domains.contains(&registrable) {
            domains.push(registrable);
        }
    }
    (!domains.is_empty()).then_some(domains)
}

/// Default port of the URL Standard's special schemes, dropped when serializing an origin.
fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        "ftp" => Some(21),
        _ => None,
    }
}

/// Parses and normalizes one origin entry. The error says what is wrong and, where it can,
/// how to write the entry instead.
pub fn parse_origin(entry: &str) -> Result<OriginPattern, String> {
    match entry {
        "*" => return Ok(OriginPattern::Any),
        "null" => return Ok(OriginPattern::Null),
        _ => {}
    }
    if let Some(pattern) = entry.strip_prefix("regex:") {
        if pattern.is_empty() {
            return Err(format!("invalid origin {entry:?}: empty regex"));
        }
        return Ok(OriginPattern::Regex(pattern.to_owned()));
    }
    if entry.eq_ignore_ascii_case("null") {
        return Err(format!(
            "invalid origin {entry:?}: the opaque origin is written \"null\", in lowercase"
        ));
    }
    let invalid = |why: &str| format!("invalid origin {entry:?}: {why}");
    let Some((scheme, rest)) = entry.split_once("://") else {
        let hint = if entry.contains(':') {
            String::new()
        } else {
            format!("; write \"https://{entry}\"")
        };
        return Err(invalid(&format!("expected scheme://host[:port]{hint}")));
    };
    let scheme = scheme.to_ascii_lowercase();
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_lowercase())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b));
    if !scheme_ok {
        return Err(invalid(&format!("invalid scheme {scheme:?}")));
    }
    if rest == "*" {
        return Ok(OriginPattern::AnyOfScheme(scheme));
    }
    // Browsers serialize origins without path, query, fragment or userinfo (CORS-CHECKLIST 3.1).
    if let Some(cut) = rest.find(['/', '?', '#']) {
        let what = match rest.as_bytes()[cut] {
            b'/' if cut + 1 == rest.len() => "a trailing slash",
            b'/' => "a path",
            b'?' => "a query",
            _ => "a fragment",
        };
        return Err(invalid(&format!(
            "an origin has no {}; write \"{scheme}://{}\"",
            what.trim_start_matches("a "),
            &rest[..cut]
        )));
    }
    if let Some((_, after)) = rest.rsplit_once('@') {
        return Err(invalid(&format!(
            "an origin has no userinfo; write \"{scheme}://{after}\""
        )));
    }
    let (host, port) = split_host_port(rest).map_err(|why| invalid(&why))?;
    let port = match port {
        None => PortSpec::Default,
        Some("*") => PortSpec::Any,
        Some("") => return Err(invalid("empty port")),
        Some(digits) => {
            let port: u16 = digits
                .parse()
                .ok()
                .filter(|_| digits.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| invalid(&format!("invalid port {digits:?}")))?;
            if default_port(&scheme) == Some(port) {
                // Browsers never send the default port (CORS-CHECKLIST 3.2): drop it.
                PortSpec::Default
            } else {
                PortSpec::Fixed(port)
            }
        }
    };
    let host = parse_host(host, &scheme, port).map_err(|why| invalid(&why))?;
    Ok(OriginPattern::Host(HostOrigin { scheme, host, port }))
}

fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), String> {
    if authority.starts_with('[') {
        let Some(close) = authority.find(']') else {
            return Err("unclosed \"[\" in IPv6 host".into());
        };
        let (host, after) = authority.split_at(close + 1);
        return match after.strip_prefix(':') {
            Some(port) => Ok((host, Some(port))),
            None if after.is_empty() => Ok((host, None)),
            None => Err(format!("unexpected {after:?} after the host")),
        };
    }
    match authority.split_once(':') {
        Some((_, port)) if port.contains(':') => {
            Err("IPv6 hosts are written in brackets, e.g. \"http://[::1]:8080\"".into())
        }
        Some((host, port)) => Ok((host, Some(port))),
        None => Ok((authority, None)),
    }
}

fn parse_host(host: &str, scheme: &str, port: PortSpec) -> Result<HostSpec, String> {
    if host.is_empty() {
        return Err("empty host".into());
    }
    if host.starts_with('[') {
        let inner = &host[1..host.len() - 1];
        let ok = !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':');
        if !ok || inner.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("invalid IPv6 host {host:?}"));
        }
        // The URL Standard serializes IPv6 compressed and lowercase.
        let canonical = inner
            .parse::<std::net::Ipv6Addr>()
            .map(|ip| format!("[{ip}]"))
            .unwrap_or_else(|_| host.to_ascii_lowercase());
        return Ok(HostSpec::Exact(canonical));
    }
    if !host.is_ascii() {
        let written = |h: &str| {
            let mut s = format!("{scheme}://{h}");
            match port {
                PortSpec::Default => {}
                PortSpec::Fixed(p) => s.push_str(&format!(":{p}")),
                PortSpec::Any => s.push_str(":*"),
            }
            s
        };
        return Err(match idna::domain_to_ascii(host) {
            Ok(ascii) => format!(
                "browsers send internationalized hosts in punycode; write {:?}",
                written(&ascii)
            ),
            Err(_) => "non-ASCII host that is not a valid internationalized domain name".into(),
        });
    }
    let host = host.to_ascii_lowercase();
    let (is_glob, name) = match host.strip_prefix("*.") {
        Some(domain) => (true, domain),
        None => (false, host.as_str()),
    };
    if name.contains('*') || (host.contains('*') && !is_glob) {
        return Err(
            "\"*\" may only stand for the leading labels, as in \"https://*.example.com\", or \
             for the whole host and port, as in \"https://*\"; for a \"*\" inside a label, \
             write a regex: entry"
                .into(),
        );
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("empty host label".into());
        }
        if let Some(bad) = label
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        {
            return Err(format!("invalid character {bad:?} in host"));
        }
    }
    Ok(if is_glob {
        HostSpec::Subdomains(name.to_owned())
    } else {
        HostSpec::Exact(name.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalized(entry: &str) -> String {
        match parse_origin(entry) {
            Ok(pattern) => pattern.to_string(),
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn normalizes_what_a_browser_would_send() {
        let cases = [
            ("https://App.Example.COM", "https://app.example.com"),
            ("HTTPS://example.com:443", "https://example.com"),
            ("http://example.com:80", "http://example.com"),
            ("http://example.com:8080", "http://example.com:8080"),
            ("https://*.Example.com", "https://*.example.com"),
            ("http://localhost:*", "http://localhost:*"),
            ("http://[::1]:3000", "http://[::1]:3000"),
            ("http://[0:0:0:0:0:0:0:1]", "http://[::1]"),
            ("chrome-extension://abcdef", "chrome-extension://abcdef"),
            ("tauri://localhost", "tauri://localhost"),
            ("null", "null"),
            ("*", "*"),
            (
                "regex:https://pr-[0-9]+\\.x\\.com",
                "regex:https://pr-[0-9]+\\.x\\.com",
            ),
        ];
        for (entry, want) in cases {
            assert_eq!(normalized(entry), want, "entry {entry:?}");
        }
    }

    #[test]
    fn refuses_forms_a_browser_never_sends_and_says_how_to_write_them() {
        let cases = [
            (
                "https://a.com/",
                r#"invalid origin "https://a.com/": an origin has no trailing slash; write "https://a.com""#,
            ),
            (
                "https://a.com/app",
                r#"invalid origin "https://a.com/app": an origin has no path; write "https://a.com""#,
            ),
            (
                "https://a.com?x",
                r#"invalid origin "https://a.com?x": an origin has no query; write "https://a.com""#,
            ),
            (
                "https://u:p@a.com",
                r#"invalid origin "https://u:p@a.com": an origin has no userinfo; write "https://a.com""#,
            ),
            (
                "example.com",
                r#"invalid origin "example.com": expected scheme://host[:port]; write "https://example.com""#,
            ),
            (
                "https://*.",
                r#"invalid origin "https://*.": empty host label"#,
            ),
            (
                "https://a..com",
                r#"invalid origin "https://a..com": empty host label"#,
            ),
            (
                "https://a*.com",
                r#"invalid origin "https://a*.com": "*" may only stand for the leading labels, as in "https://*.example.com", or for the whole host and port, as in "https://*"; for a "*" inside a label, write a regex: entry"#,
            ),
            (
                "https://x.*.com",
                r#"invalid origin "https://x.*.com": "*" may only stand for the leading labels, as in "https://*.example.com", or for the whole host and port, as in "https://*"; for a "*" inside a label, write a regex: entry"#,
            ),
            (
                "https://a.com:99999",
                r#"invalid origin "https://a.com:99999": invalid port "99999""#,
            ),
            (
                "https://a.com:",
                r#"invalid origin "https://a.com:": empty port"#,
            ),
            (
                "https://bücher.de",
                r#"invalid origin "https://bücher.de": browsers send internationalized hosts in punycode; write "https://xn--bcher-kva.de""#,
            ),
            (
                "NULL",
                r#"invalid origin "NULL": the opaque origin is written "null", in lowercase"#,
            ),
            ("regex:", r#"invalid origin "regex:": empty regex"#),
            (
                "http://::1",
                r#"invalid origin "http://::1": IPv6 hosts are written in brackets, e.g. "http://[::1]:8080""#,
            ),
        ];
        for (entry, want) in cases {
            assert_eq!(
                normalized(entry),
                format!("error: {want}"),
                "entry {entry:?}"
            );
        }
    }

    #[test]
    fn public_suffix_globs_are_recognised() {
        let glob = |entry: &str| match parse_origin(entry) {
            Ok(OriginPattern::Host(h)) => h.is_public_suffix_glob(),
            other => panic!("{entry}: {other:?}"),
        };
        assert!(glob("https://*.co.uk"));
        assert!(glob("https://*.com"));
        assert!(glob("https://*.github.io"));
        assert!(!glob("https://*.example.co.uk"));
        assert!(!glob("https://*.example.com"));
        assert!(!glob("http://*.localhost"));
        assert!(!glob("https://*.corp.internal"));
        assert!(!glob("https://example.com"));
    }

    #[test]
    fn loopback_hosts() {
        let loopback = |entry: &str| match parse_origin(entry) {
            Ok(OriginPattern::Host(h)) => h.is_loopback(),
            other => panic!("{entry}: {other:?}"),
        };
        assert!(loopback("http://localhost:3000"));
        assert!(loopback("http://app.localhost"));
        assert!(loopback("http://127.0.0.1:8080"));
        assert!(loopback("http://127.9.9.9"));
        assert!(loopback("http://[::1]"));
        assert!(!loopback("http://example.com"));
        assert!(!loopback("http://10.0.0.1"));
        assert!(!loopback("http://localhost.example.com"));
    }
}
