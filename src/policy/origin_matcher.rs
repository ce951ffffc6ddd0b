//! Every origin entry of every rule in two automata, so that looking up an origin costs one
//! pass over its bytes whatever the number of rules.
//!
//! Host entries (exact, `*.domain`, `host:*`) are keyed by `scheme "://" reversed(host)
//! [":" port]`. Reversing the host turns every entry into a literal prefix of the key: an
//! exact origin is the whole key, a subdomain glob is the prefix `scheme://` + reversed domain
//! followed by one or more labels (`.b.a` for `a.b.domain`). All the prefixes go into one
//! anchored Aho-Corasick automaton; a search reports each entry whose prefix starts the key,
//! and a check of the rest (labels, port) decides. Literal tries build in milliseconds: the
//! same set as a regex DFA spent 60% of a 10 000-rule compile in determinization, and the
//! unreversed glob form (`(label\.)+domain`) took 150 s for 1 000 globs beside 9 000 origins.
//! `regex:` entries are matched against the origin as written, in a regex-automata DFA. `*`
//! and `null` entries are plain lists: globs and regexes never match `null` (DESIGN 3).
//!
//! Lookups walk the automata without allocating (the key is built in a stack buffer; origins
//! are at most 1 KiB) and take no lock; the automata are immutable and shared by every worker.

use aho_corasick::{
    AhoCorasick, AhoCorasickKind, Anchored as PrefixAnchored, Input, MatchKind as PrefixMatchKind,
    StartKind as PrefixStartKind, automaton::OverlappingState,
};
use regex_automata::dfa::{Automaton, StartKind, dense};
use regex_automata::nfa::thompson;
use regex_automata::util::primitives::StateID;
use regex_automata::util::start;
use regex_automata::{Anchored, MatchKind};

use super::groups::{Grouping, Groups};
use crate::rules::origin::{REGEX_DFA_LIMIT, regex_syntax};
use crate::rules::{HostSpec, Location, OriginPattern, PortSpec, Rule};

/// Why the origin automata could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatcherError {
    /// More rules than a `u32` numbers.
    TooManyRules,
    /// The host-entry automaton could not be built (aho-corasick's own limits).
    HostEntries { reason: String },
    /// The `regex:` entries together need too large an automaton. `first` is where the first
    /// of them is written.
    Regexes {
        count: usize,
        first: Location,
        reason: String,
    },
}

impl MatcherError {
    /// Where the error is best reported, when one entry stands for it.
    pub fn location(&self) -> Option<&Location> {
        match self {
            MatcherError::Regexes { first, .. } => Some(first),
            MatcherError::TooManyRules | MatcherError::HostEntries { .. } => None,
        }
    }
}

impl std::fmt::Display for MatcherError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MatcherError::TooManyRules => f.write_str("too many rules (at most 4294967295)"),
            MatcherError::HostEntries { reason } => {
                write!(f, "cannot compile the origin matcher: {reason}")
            }
            MatcherError::Regexes { count, reason, .. } => write!(
                f,
                "the {count} regex origins together need too large an automaton ({reason}); use \
                 fewer or simpler regexes, or globs"
            ),
        }
    }
}

/// The regex entries' DFA and the rule each of its patterns belongs to.
#[derive(Debug)]
struct CompiledDfa {
    dfa: dense::DFA<Vec<u32>>,
    start: StateID,
    /// The rules of each distinct regex, by pattern id.
    pattern_rules: Groups,
}

/// What must follow an entry's literal prefix in the key for the entry to match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Tail {
    /// Subdomain glob: one or more whole labels must follow; exact: none.
    labels: bool,
    port: PortTail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum PortTail {
    /// No port in the origin.
    Default,
    /// Exactly these bytes (`:8443`), stored inline.
    Fixed([u8; 6], u8),
    /// No port, or `:` and 1 to 5 digits.
    Any,
}

#[derive(Debug)]
struct HostEntries {
    prefixes: AhoCorasick,
    /// By pattern id: what must follow the prefix, and the rules of that entry.
    tails: Vec<Tail>,
    rules: Groups,
}

/// Longest key: an origin is at most 1 KiB (`cors::MAX_ORIGIN_BYTES`).
const KEY_CAPACITY: usize = 1024;

#[derive(Debug, Default)]
pub struct OriginMatcher {
    hosts: Option<HostEntries>,
    regexes: Option<CompiledDfa>,
    any: Vec<u32>,
    null: Vec<u32>,
    /// `scheme://*` entries: `scheme://` and the rules that list it, one per distinct scheme
    /// (a handful at most, so a lookup is flat in the number of rules).
    schemes: Vec<(Vec<u8>, Vec<u32>)>,
}

impl OriginMatcher {
    pub fn build(rules: &[Rule]) -> Result<Self, MatcherError> {
        let mut matcher = OriginMatcher::default();
        // Entries written the same way in several rules share one pattern and report their
        // rules as one sorted group: a lookup costs the same whether one rule or 100 000 list
        // an origin, and the caller intersects a large group with the rules in scope.
        let mut host_entries: Grouping<(Vec<u8>, Tail)> = Grouping::new();
        let mut regexes: Grouping<String> = Grouping::new();
        let mut first_regex: Option<&Location> = None;
        for (index, rule) in rules.iter().enumerate() {
            let index = u32::try_from(index).map_err(|_| MatcherError::TooManyRules)?;
            for entry in &rule.origins {
                match &entry.pattern {
                    OriginPattern::Any => matcher.any.push(index),
                    OriginPattern::Null => matcher.null.push(index),
                    OriginPattern::Host(origin) => {
                        host_entries.add((host_key_prefix(origin), host_tail(origin)), index);
                    }
                    OriginPattern::AnyOfScheme(scheme) => {
                        let prefix = format!("{scheme}://").into_bytes();
                        match matcher.schemes.iter_mut().find(|(p, _)| *p == prefix) {
                            Some((_, rules)) => rules.push(index),
                            None => matcher.schemes.push((prefix, vec![index])),
                        }
                    }
                    OriginPattern::Regex(regex) => {
                        first_regex.get_or_insert(&entry.location);
                        regexes.add(format!("(?:{regex})\\z"), index);
                    }
                }
            }
        }
        matcher.any.dedup();
        matcher.null.dedup();
        for (_, rules) in &mut matcher.schemes {
            rules.dedup();
        }
        let (host_keys, host_rules) = host_entries.finish();
        matcher.hosts = build_host_entries(host_keys, host_rules)
            .map_err(|reason| MatcherError::HostEntries { reason })?;
        // Regexes are user-written; a combination too large to determinize is refused
        // rather than slowing every reload.
        let regex_limit = REGEX_DFA_LIMIT.saturating_mul(8);
        let (regex_patterns, regex_rules) = regexes.finish();
        matcher.regexes =
            build_automaton(&regex_patterns, regex_rules, regex_limit).map_err(|reason| {
                MatcherError::Regexes {
                    count: regex_patterns.len(),
                    first: first_regex
                        .cloned()
                        .unwrap_or_else(|| Location::file("(rules)".into())),
                    reason,
                }
            })?;
        Ok(matcher)
    }

    /// Calls `found` with the index of every rule that has an entry matching `origin`
    /// (a rule may be reported more than once, in no particular order).
    #[inline]
    pub fn for_each_match(&self, origin: &[u8], mut found: impl FnMut(usize)) {
        self.for_each_group(origin, |rules| {
            for &rule in rules {
                found(rule as usize);
            }
        });
    }

    /// Calls `found` with the rules of each entry that matches `origin`, each group sorted
    /// ascending (a rule may be in several groups).
    #[inline]
    pub fn for_each_group(&self, origin: &[u8], mut found: impl FnMut(&[u32])) {
        if !self.any.is_empty() {
            found(&self.any);
        }
        if origin == b"null" {
            if !self.null.is_empty() {
                found(&self.null);
            }
            return;
        }
        for (prefix, rules) in &self.schemes {
            // Schemes compare byte-exactly: a browser serializes them in lowercase
            // (CORS-CHECKLIST 3.1), as the entries are normalized.
            if origin.len() > prefix.len() && origin.starts_with(prefix) {
                found(rules);
            }
        }
        if let Some(hosts) = &self.hosts {
            hosts.report(origin, &mut found);
        }
        if let Some(regexes) = &self.regexes
            && let Some(state) = regexes.feed(regexes.start, origin)
        {
            regexes.report(state, &mut found);
        }
    }
}

fn build_automaton(
    patterns: &[String],
    pattern_rules: Groups,
    limit: usize,
) -> Result<Option<CompiledDfa>, String> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let dfa = dense::Builder::new()
        .configure(
            dense::Config::new()
                // Every pattern that matches the whole origin, not only the leftmost-first:
                // the decision needs each rule whose origins match.
                .match_kind(MatchKind::All)
                .start_kind(StartKind::Anchored)
                .dfa_size_limit(Some(limit))
                .determinize_size_limit(Some(limit))
                // The DFA is walked by hand, never through regex-automata's search
                // routines, so their accelerated states would only cost build time.
                .accelerate(false),
        )
        .syntax(regex_syntax())
        // Only which patterns matched matters, never where a group was: an NFA without
        // capture states is smaller and determinizes faster.
        .thompson(
            thompson::Config::new()
                .utf8(false)
                .which_captures(thompson::WhichCaptures::None),
        )
        .build_many(patterns)
        .map_err(|e| e.to_string())?;
    let start = dfa
        .start_state(&start::Config::new().anchored(Anchored::Yes))
        .map_err(|e| e.to_string())?;
    Ok(Some(CompiledDfa {
        dfa,
        start,
        pattern_rules,
    }))
}

impl CompiledDfa {
    /// Feeds `bytes` from `state`; `None` once the DFA is dead (no pattern can match).
    #[inline]
    fn feed(&self, mut state: StateID, bytes: &[u8]) -> Option<StateID> {
        for &byte in bytes {
            state = self.dfa.next_state(state, byte);
            if self.dfa.is_dead_state(state) {
                return None;
            }
        }
        Some(state)
    }

    /// Ends the input and reports the rules of every pattern that matched all of it.
    #[inline]
    fn report(&self, state: StateID, found: &mut impl FnMut(&[u32])) {
        let end = self.dfa.next_eoi_state(state);
        if !self.dfa.is_match_state(end) {
            return;
        }
        for i in 0..self.dfa.match_len(end) {
            let pattern = self.dfa.match_pattern(end, i);
            found(self.pattern_rules.get(pattern.as_usize()));
        }
    }
}

/// Splits `scheme://host[:port]` into (length of `scheme://`, host, `[:port]`). IPv6 hosts
/// keep their brackets. `None` when there is no `://`.
#[inline]
fn split_origin(origin: &[u8]) -> Option<(usize, &[u8], &[u8])> {
    let colon = origin.iter().position(|&b| b == b':')?;
    let after = origin.get(colon..colon + 3)?;
    if after != b"://" {
        return None;
    }
    let authority_start = colon + 3;
    let authority = &origin[authority_start..];
    let host_len = if authority.first() == Some(&b'[') {
        authority.iter().position(|&b| b == b']')? + 1
    } else {
        authority
            .iter()
            .position(|&b| b == b':')
            .unwrap_or(authority.len())
    };
    Some((
        authority_start,
        &authority[..host_len],
        &authority[host_len..],
    ))
}

fn build_host_entries(
    keys: Vec<(Vec<u8>, Tail)>,
    rules: Groups,
) -> Result<Option<HostEntries>, String> {
    if keys.is_empty() {
        return Ok(None);
    }
    let (prefixes, tails): (Vec<Vec<u8>>, Vec<Tail>) = keys.into_iter().unzip();
    let automaton = AhoCorasick::builder()
        // Every entry whose prefix starts the key, not only the leftmost-first.
        .match_kind(PrefixMatchKind::Standard)
        .start_kind(PrefixStartKind::Anchored)
        .kind(Some(AhoCorasickKind::DFA))
        .build(&prefixes)
        .map_err(|e| e.to_string())?;
    Ok(Some(HostEntries {
        prefixes: automaton,
        tails,
        rules,
    }))
}

impl HostEntries {
    /// Reports the rules of every host entry that matches `origin` entirely.
    #[inline]
    fn report(&self, origin: &[u8], found: &mut impl FnMut(&[u32])) {
        let mut buffer = [0u8; KEY_CAPACITY];
        let Some(key) = host_key(origin, &mut buffer) else {
            return;
        };
        let input = Input::new(key).anchored(PrefixAnchored::Yes);
        let mut state = OverlappingState::start();
        loop {
            self.prefixes.find_overlapping(input.clone(), &mut state);
            let Some(hit) = state.get_match() else {
                return;
            };
            let pattern = hit.pattern().as_usize();
            if let Some(tail) = self.tails.get(pattern)
                && tail.accepts(&key[hit.end()..])
            {
                found(self.rules.get(pattern));
            }
        }
    }
}

impl Tail {
    /// Whether `rest`, the key after the entry's prefix, completes a match.
    #[inline]
    fn accepts(&self, rest: &[u8]) -> bool {
        // Labels never hold ':', so the first ':' starts the port.
        let (labels, port) = match rest.iter().position(|&b| b == b':') {
            Some(colon) => rest.split_at(colon),
            None => (rest, &[][..]),
        };
        let labels_ok = if self.labels {
            // One or more whole labels: `.label` repeated (reversed, so after the domain).
            labels.first() == Some(&b'.')
                && labels[1..].split(|&b| b == b'.').all(|label| {
                    !label.is_empty()
                        && label.iter().all(|&b| {
                            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                        })
                })
        } else {
            labels.is_empty()
        };
        let port_ok = match self.port {
            PortTail::Default => port.is_empty(),
            PortTail::Fixed(bytes, len) => port == &bytes[..usize::from(len)],
            PortTail::Any => {
                port.is_empty()
                    || ((2..=6).contains(&port.len()) && port[1..].iter().all(u8::is_ascii_digit))
            }
        };
        labels_ok && port_ok
    }
}

/// Writes `scheme "://" reversed(host) [":" port]` into `buffer`; `None` when `origin` is no
/// `scheme://host` or does not fit.
#[inline]
fn host_key<'b>(origin: &[u8], buffer: &'b mut [u8; KEY_CAPACITY]) -> Option<&'b [u8]> {
    let (scheme_end, host, rest) = split_origin(origin)?;
    let len = origin.len();
    if len > buffer.len() {
        return None;
    }
    buffer[..scheme_end].copy_from_slice(&origin[..scheme_end]);
    let host_end = scheme_end + host.len();
    for (slot, &byte) in buffer[scheme_end..host_end]
        .iter_mut()
        .zip(host.iter().rev())
    {
        *slot = byte;
    }
    buffer[host_end..len].copy_from_slice(rest);
    Some(&buffer[..len])
}

/// The literal prefix of a host entry's key: `scheme://` + reversed host (or domain).
fn host_key_prefix(origin: &crate::rules::HostOrigin) -> Vec<u8> {
    let host = match &origin.host {
        HostSpec::Exact(host) | HostSpec::Subdomains(host) => host,
    };
    let mut prefix = format!("{}://", origin.scheme).into_bytes();
    prefix.extend(host.bytes().rev());
    prefix
}

fn host_tail(origin: &crate::rules::HostOrigin) -> Tail {
    let port = match origin.port {
        PortSpec::Default => PortTail::Default,
        PortSpec::Any => PortTail::Any,
        PortSpec::Fixed(port) => {
            let text = format!(":{port}");
            let mut bytes = [0u8; 6];
            bytes[..text.len()].copy_from_slice(text.as_bytes());
            // ":" and at most five digits: always fits.
            PortTail::Fixed(bytes, u8::try_from(text.len()).unwrap_or(6))
        }
    };
    Tail {
        labels: matches!(origin.host, HostSpec::Subdomains(_)),
        port,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{Source, load_sources};

    fn matcher(origins: &[&[&str]]) -> OriginMatcher {
        let mut text = String::new();
        for (i, list) in origins.iter().enumerate() {
            let quoted: Vec<String> = list.iter().map(|o| format!("{o:?}")).collect();
            text.push_str(&format!(
                "[[rule]]\nname = \"r{i}\"\norigins = [{}]\n",
                quoted.join(", ")
            ));
        }
        let loaded = load_sources(&[Source {
            name: "t.toml".into(),
            text,
        }]);
        let rules = loaded
            .rules
            .unwrap_or_else(|| panic!("{:?}", loaded.diagnostics));
        OriginMatcher::build(&rules.rules).unwrap_or_else(|e| panic!("{e}"))
    }

    fn matches(m: &OriginMatcher, origin: &str) -> Vec<usize> {
        let mut found = Vec::new();
        m.for_each_match(origin.as_bytes(), |r| found.push(r));
        found.sort_unstable();
        found.dedup();
        found
    }

    #[test]
    fn every_rule_whose_entry_matches_is_reported() {
        let m = matcher(&[
            &["https://a.example.com"],
            &["https://*.example.com"],
            &["regex:https://[a-z]\\.example\\.com"],
            &["*"],
            &["http://localhost:*"],
            &["null"],
        ]);
        assert_eq!(matches(&m, "https://a.example.com"), [0, 1, 2, 3]);
        assert_eq!(matches(&m, "https://b.example.com"), [1, 2, 3]);
        assert_eq!(matches(&m, "https://x.y.example.com"), [1, 3]);
        assert_eq!(matches(&m, "https://example.com"), [3]);
        assert_eq!(matches(&m, "http://localhost"), [3, 4]);
        assert_eq!(matches(&m, "http://localhost:5173"), [3, 4]);
        assert_eq!(matches(&m, "http://localhost:"), [3]);
        assert_eq!(matches(&m, "null"), [3, 5]);
    }

    #[test]
    fn globs_and_regexes_never_match_null() {
        let m = matcher(&[&["regex:.*"], &["https://*.example.com"]]);
        assert_eq!(matches(&m, "null"), Vec::<usize>::new());
        assert_eq!(matches(&m, "anything"), [0]);
    }

    #[test]
    fn matching_is_byte_exact() {
        let m = matcher(&[&["https://app.example.com", "http://[::1]:8080"]]);
        for origin in [
            "https://APP.example.com",
            "https://app.example.com/",
            "https://app.example.com:443",
            "https://app.example.com.",
            " https://app.example.com",
            "https://app.example.co",
            "http://app.example.com",
            "https://xapp.example.com",
        ] {
            assert_eq!(matches(&m, origin), Vec::<usize>::new(), "{origin}");
        }
        assert_eq!(matches(&m, "https://app.example.com"), [0]);
        assert_eq!(matches(&m, "http://[::1]:8080"), [0]);
    }

    #[test]
    fn subdomain_globs_need_whole_labels_and_never_the_apex() {
        let m = matcher(&[&["https://*.example.com:8443"]]);
        assert_eq!(matches(&m, "https://a.example.com:8443"), [0]);
        assert_eq!(matches(&m, "https://a.b-c.example.com:8443"), [0]);
        for origin in [
            "https://example.com:8443",
            "https://.example.com:8443",
            "https://a..example.com:8443",
            "https://aexample.com:8443",
            "https://a.example.com",
            "https://a.example.com:844",
            "http://a.example.com:8443",
        ] {
            assert_eq!(matches(&m, origin), Vec::<usize>::new(), "{origin}");
        }
    }

    #[test]
    fn the_same_origin_in_several_rules_reports_each_rule() {
        let m = matcher(&[
            &["https://x.example.com"],
            &["https://x.example.com", "https://y.example.com"],
            &["https://*.example.com:*"],
        ]);
        assert_eq!(matches(&m, "https://x.example.com"), [0, 1, 2]);
        assert_eq!(matches(&m, "https://x.example.com:8443"), [2]);
    }

    #[test]
    fn ports_compare_byte_for_byte() {
        let m = matcher(&[&["https://a.example.com:8443"], &["http://localhost:*"]]);
        assert_eq!(matches(&m, "https://a.example.com:8443"), [0]);
        for origin in [
            "https://a.example.com:08443",
            "https://a.example.com:84430",
            "http://localhost:123456",
            "http://localhost:12a",
            "http://localhost::1",
        ] {
            assert_eq!(matches(&m, origin), Vec::<usize>::new(), "{origin}");
        }
    }

    #[test]
    fn regexes_match_the_whole_origin() {
        let m = matcher(&[&["regex:https://pr-[0-9]+\\.preview\\.example\\.com"]]);
        assert_eq!(matches(&m, "https://pr-12.preview.example.com"), [0]);
        assert_eq!(
            matches(&m, "https://pr-12.preview.example.com.evil.com"),
            Vec::<usize>::new()
        );
        assert_eq!(
            matches(&m, "xhttps://pr-12.preview.example.com"),
            Vec::<usize>::new()
        );
    }
}
