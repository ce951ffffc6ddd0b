//! Every origin entry of every rule in two DFAs, so that looking up an origin costs one pass
//! over its bytes whatever the number of rules.
//!
//! Host entries (exact, `*.domain`, `host:*`) go in one DFA keyed by
//! `scheme "://" reversed(host) [":" port]`. Reversing the host turns a subdomain glob into a
//! literal prefix followed by "one or more labels", so the DFA is a trie with short tails: the
//! unreversed form (`(label\.)+domain`) keeps every glob alive at every dot and took 150 s to
//! determinize for 1 000 globs beside 9 000 exact origins; the reversed one takes 0.2 s.
//! `regex:` entries are matched against the origin as written, in a second DFA. `*` and
//! `null` entries are plain lists: globs and regexes never match `null` (DESIGN 3).
//!
//! The DFAs are walked by hand (`next_state` / `next_eoi_state`), which allocates nothing and
//! takes no lock; they are immutable and shared by every worker thread.

use regex_automata::dfa::{Automaton, StartKind, dense};
use regex_automata::nfa::thompson;
use regex_automata::util::primitives::StateID;
use regex_automata::util::start;
use regex_automata::{Anchored, MatchKind};

use crate::rules::origin::{REGEX_DFA_LIMIT, regex_syntax};
use crate::rules::{HostSpec, OriginPattern, PortSpec, Rule};

/// One compiled DFA and the rule each of its patterns belongs to.
#[derive(Debug)]
struct CompiledDfa {
    dfa: dense::DFA<Vec<u32>>,
    start: StateID,
    pattern_rule: Vec<u32>,
}

#[derive(Debug, Default)]
pub struct OriginMatcher {
    hosts: Option<CompiledDfa>,
    regexes: Option<CompiledDfa>,
    any: Vec<u32>,
    null: Vec<u32>,
}

/// Host patterns are literal tries; allow them room (10 000 origins take about 20 MiB).
const HOST_DFA_LIMIT: usize = 1 << 30;

impl OriginMatcher {
    pub fn build(rules: &[Rule]) -> Result<Self, String> {
        let mut matcher = OriginMatcher::default();
        let mut host_patterns = Vec::new();
        let mut host_rules = Vec::new();
        let mut regex_patterns = Vec::new();
        let mut regex_rules = Vec::new();
        for (index, rule) in rules.iter().enumerate() {
            let index = u32::try_from(index).map_err(|_| "too many rules".to_owned())?;
            for entry in &rule.origins {
                match &entry.pattern {
                    OriginPattern::Any => matcher.any.push(index),
                    OriginPattern::Null => matcher.null.push(index),
                    OriginPattern::Host(origin) => {
                        host_patterns.push(host_key_pattern(origin));
                        host_rules.push(index);
                    }
                    OriginPattern::Regex(regex) => {
                        regex_patterns.push(format!("(?:{regex})\\z"));
                        regex_rules.push(index);
                    }
                }
            }
        }
        matcher.any.dedup();
        matcher.null.dedup();
        matcher.hosts = build_automaton(&host_patterns, host_rules, HOST_DFA_LIMIT)
            .map_err(|e| format!("cannot compile the origin matcher: {e}"))?;
        // Regexes are user-written; a combination too large to determinize is refused
        // rather than slowing every reload.
        let regex_limit = REGEX_DFA_LIMIT.saturating_mul(8);
        matcher.regexes =
            build_automaton(&regex_patterns, regex_rules, regex_limit).map_err(|e| {
                format!(
                    "the {} regex origins together need too large an automaton ({e}); use fewer \
                 or simpler regexes, or globs",
                    regex_patterns.len()
                )
            })?;
        Ok(matcher)
    }

    /// Calls `found` with the index of every rule that has an entry matching `origin`
    /// (a rule may be reported more than once, in no particular order).
    #[inline]
    pub fn for_each_match(&self, origin: &[u8], mut found: impl FnMut(usize)) {
        for &rule in &self.any {
            found(rule as usize);
        }
        if origin == b"null" {
            for &rule in &self.null {
                found(rule as usize);
            }
            return;
        }
        if let Some(hosts) = &self.hosts
            && let Some(state) = walk_host_key(hosts, origin)
        {
            hosts.report(state, &mut found);
        }
        if let Some(regexes) = &self.regexes
            && let Some(state) = regexes.feed(regexes.start, origin)
        {
            regexes.report(state, &mut found);
        }
    }

    /// Heap bytes held by the automata.
    pub fn memory_usage(&self) -> usize {
        let size = |a: &Option<CompiledDfa>| {
            a.as_ref()
                .map_or(0, |a| a.dfa.memory_usage() + a.pattern_rule.len() * 4)
        };
        size(&self.hosts) + size(&self.regexes) + (self.any.len() + self.null.len()) * 4
    }
}

fn build_automaton(
    patterns: &[String],
    pattern_rule: Vec<u32>,
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
        pattern_rule,
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

    #[inline]
    fn feed_reversed(&self, mut state: StateID, bytes: &[u8]) -> Option<StateID> {
        for &byte in bytes.iter().rev() {
            state = self.dfa.next_state(state, byte);
            if self.dfa.is_dead_state(state) {
                return None;
            }
        }
        Some(state)
    }

    /// Ends the input and reports the rule of every pattern that matched all of it.
    #[inline]
    fn report(&self, state: StateID, found: &mut impl FnMut(usize)) {
        let end = self.dfa.next_eoi_state(state);
        if !self.dfa.is_match_state(end) {
            return;
        }
        for i in 0..self.dfa.match_len(end) {
            let pattern = self.dfa.match_pattern(end, i);
            if let Some(&rule) = self.pattern_rule.get(pattern.as_usize()) {
                found(rule as usize);
            }
        }
    }
}

/// Feeds `origin` as `scheme "://" reversed(host) rest`, the key host patterns are built on.
#[inline]
fn walk_host_key(automaton: &CompiledDfa, origin: &[u8]) -> Option<StateID> {
    let (scheme_end, host, rest) = split_origin(origin)?;
    let state = automaton.feed(automaton.start, &origin[..scheme_end])?;
    let state = automaton.feed_reversed(state, host)?;
    automaton.feed(state, rest)
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

/// The DFA pattern for a host entry, over the reversed-host key.
fn host_key_pattern(origin: &crate::rules::HostOrigin) -> String {
    let reversed = |host: &str| host.chars().rev().collect::<String>();
    let mut pattern = regex_syntax::escape(&format!("{}://", origin.scheme));
    match &origin.host {
        HostSpec::Exact(host) => pattern.push_str(&regex_syntax::escape(&reversed(host))),
        HostSpec::Subdomains(domain) => {
            pattern.push_str(&regex_syntax::escape(&reversed(domain)));
            // One or more whole labels in front of the domain (reversed: after it). A label
            // holds what a serialized host label can: lowercase letters, digits, `-`, `_`.
            pattern.push_str(r"(?:\.[a-z0-9_-]+)+");
        }
    }
    match origin.port {
        PortSpec::Default => {}
        PortSpec::Fixed(port) => pattern.push_str(&format!(":{port}")),
        // Any port, or none (the scheme's default).
        PortSpec::Any => pattern.push_str("(?::[0-9]{1,5})?"),
    }
    pattern.push_str(r"\z");
    pattern
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
