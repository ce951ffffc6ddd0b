//! Which scopes (`hosts`, `paths`) cover a request, found without walking the rules: the
//! distinct scopes are deduplicated by hashing when the policy is compiled, their hosts and
//! path prefixes put into anchored automata, so a lookup costs the same at 10 and at 100 000
//! scoped rules (DESIGN 8). The request path hashes nothing: it walks the automata over the
//! host (reversed, lowercased, in a stack buffer) and the path.

use aho_corasick::{
    AhoCorasick, AhoCorasickKind, Anchored, Input, MatchKind, StartKind,
    automaton::OverlappingState,
};

use super::groups::{Grouping, Groups};
use crate::rules::HostScope;

/// One distinct scope. Empty `hosts`: any host; empty `paths`: any path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Scope {
    hosts: Vec<HostScope>,
    paths: Vec<String>,
}

impl Scope {
    #[inline]
    fn paths_cover(&self, path: &[u8]) -> bool {
        self.paths.is_empty() || self.paths.iter().any(|p| path.starts_with(p.as_bytes()))
    }
}

/// How a key must relate to a pattern for the pattern to match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Fit {
    /// The key is the pattern (an exact host).
    Whole,
    /// The key starts with the pattern and goes on (`*.domain`: at least one more label).
    Longer,
    /// The key starts with the pattern (a path prefix).
    Prefix,
}

/// An automaton whose patterns each name a group of scopes.
#[derive(Debug)]
struct Prefixes {
    automaton: AhoCorasick,
    /// By pattern id.
    fits: Vec<Fit>,
    scopes: Groups,
}

impl Prefixes {
    fn build(grouping: Grouping<(Vec<u8>, Fit)>) -> Result<Option<Self>, String> {
        let (keys, scopes) = grouping.finish();
        if keys.is_empty() {
            return Ok(None);
        }
        let (patterns, fits): (Vec<Vec<u8>>, Vec<Fit>) = keys.into_iter().unzip();
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .start_kind(StartKind::Anchored)
            .kind(Some(AhoCorasickKind::DFA))
            .build(&patterns)
            .map_err(|e| e.to_string())?;
        Ok(Some(Prefixes {
            automaton,
            fits,
            scopes,
        }))
    }

    /// Calls `found` with the scopes of every pattern that fits `key`; stops early when
    /// `found` returns true, and says whether it did.
    #[inline]
    fn report(&self, key: &[u8], found: &mut impl FnMut(&[u32]) -> bool) -> bool {
        let input = Input::new(key).anchored(Anchored::Yes);
        let mut state = OverlappingState::start();
        loop {
            self.automaton.find_overlapping(input.clone(), &mut state);
            let Some(hit) = state.get_match() else {
                return false;
            };
            let pattern = hit.pattern().as_usize();
            let complete = match self.fits.get(pattern) {
                Some(Fit::Whole) => hit.end() == key.len(),
                Some(Fit::Longer) => hit.end() < key.len(),
                Some(Fit::Prefix) => true,
                None => false,
            };
            if complete && found(self.scopes.get(pattern)) {
                return true;
            }
        }
    }
}

/// Longest host the index looks up: DNS names are at most 253 bytes; a longer `Host` can
/// only be in scope of a rule without `hosts`.
const HOST_CAPACITY: usize = 256;

#[derive(Debug)]
pub struct ScopeIndex {
    scopes: Vec<Scope>,
    /// By scope id: its rules, ascending.
    rules: Groups,
    /// Scopes without hosts and paths: they cover every request.
    everywhere: Vec<u32>,
    /// Scopes with paths and no hosts, by path prefix.
    paths: Option<Prefixes>,
    /// Scopes with hosts, by reversed lowercase host: an exact host is the whole key, a
    /// `*.domain` entry the prefix `niamod.` followed by at least one more byte.
    hosts: Option<Prefixes>,
}

impl ScopeIndex {
    /// Indexes the scope of each rule, in rule order.
    pub fn build<'r>(
        rule_scopes: impl Iterator<Item = (&'r [HostScope], &'r [String])>,
    ) -> Result<Self, String> {
        let mut distinct: Grouping<Scope> = Grouping::new();
        for (index, (hosts, paths)) in rule_scopes.enumerate() {
            let index = u32::try_from(index).map_err(|_| "too many rules".to_owned())?;
            distinct.add(
                Scope {
                    hosts: hosts.to_vec(),
                    paths: paths.to_vec(),
                },
                index,
            );
        }
        let (scopes, rules) = distinct.finish();
        let mut everywhere = Vec::new();
        let mut by_path: Grouping<(Vec<u8>, Fit)> = Grouping::new();
        let mut by_host: Grouping<(Vec<u8>, Fit)> = Grouping::new();
        for (id, scope) in scopes.iter().enumerate() {
            let id = u32::try_from(id).map_err(|_| "too many scopes".to_owned())?;
            if scope.hosts.is_empty() {
                if scope.paths.is_empty() {
                    everywhere.push(id);
                }
                for path in &scope.paths {
                    by_path.add((path.as_bytes().to_vec(), Fit::Prefix), id);
                }
                continue;
            }
            for host in &scope.hosts {
                let (name, fit) = match host {
                    HostScope::Exact(name) => (name, Fit::Whole),
                    HostScope::Subdomains(suffix) => (suffix, Fit::Longer),
                };
                let key = name.bytes().rev().map(|b| b.to_ascii_lowercase()).collect();
                by_host.add((key, fit), id);
            }
        }
        Ok(ScopeIndex {
            scopes,
            rules,
            everywhere,
            paths: Prefixes::build(by_path)?,
            hosts: Prefixes::build(by_host)?,
        })
    }

    /// Calls `found` with the rules (ascending) of every scope covering `host` (port
    /// removed) and `path`; a scope may be reported more than once. Stops early when
    /// `found` returns true; the return value says whether it did.
    #[inline]
    pub fn for_each_covering(
        &self,
        host: Option<&[u8]>,
        path: &[u8],
        mut found: impl FnMut(&[u32]) -> bool,
    ) -> bool {
        for &scope in &self.everywhere {
            if found(self.rules.get(scope as usize)) {
                return true;
            }
        }
        if let Some(paths) = &self.paths {
            let stopped = paths.report(path, &mut |scopes| {
                scopes
                    .iter()
                    .any(|&scope| found(self.rules.get(scope as usize)))
            });
            if stopped {
                return true;
            }
        }
        let (Some(hosts), Some(host)) = (&self.hosts, host) else {
            return false;
        };
        if host.len() > HOST_CAPACITY {
            return false;
        }
        let mut buffer = [0u8; HOST_CAPACITY];
        for (slot, &byte) in buffer.iter_mut().zip(host.iter().rev()) {
            *slot = byte.to_ascii_lowercase();
        }
        hosts.report(&buffer[..host.len()], &mut |scopes| {
            scopes.iter().any(|&scope| {
                self.scopes
                    .get(scope as usize)
                    .is_some_and(|s| s.paths_cover(path))
                    && found(self.rules.get(scope as usize))
            })
        })
    }

    /// Whether any scope covers the request.
    #[inline]
    pub fn any_covers(&self, host: Option<&[u8]>, path: &[u8]) -> bool {
        self.for_each_covering(host, path, |_| true)
    }
}
