//! `explain`: why each rule did or did not answer a preflight, step by step in the order of
//! the Fetch checks (scope, then origin as in the CORS check, then method, then headers), and
//! the decision the server would make. Slow on purpose: it visits every rule.

use super::checks::{Verdict, evaluate, header_allowed};
use super::decide::{Decision, decide};
use super::request::{self, Malformed, Preflight, Request, host_without_port};
use crate::policy::Policy;

/// Where one rule stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleStep {
    HostOutOfScope,
    PathOutOfScope,
    OriginNotAllowed,
    MethodNotAllowed,
    /// The requested names the rule does not allow.
    HeadersNotAllowed(Vec<String>),
    /// This rule answers.
    Answers,
    /// It would allow, but an earlier rule answers first.
    Shadowed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleTrace {
    pub rule: usize,
    pub step: RuleStep,
}

#[derive(Debug)]
pub struct Explanation<'p> {
    pub decision: Decision<'p>,
    /// Set when the request is a preflight that breaks the syntax.
    pub malformed: Option<Malformed>,
    /// One trace per rule, in rule order (empty when not a preflight or malformed).
    pub rules: Vec<RuleTrace>,
}

pub fn explain<'p>(policy: &'p Policy, request: &Request<'_>) -> Explanation<'p> {
    let decision = decide(policy, request);
    if matches!(decision, Decision::NotPreflight) {
        return Explanation {
            decision,
            malformed: None,
            rules: Vec::new(),
        };
    }
    let preflight: Preflight<'_> = match request::parse(request.headers) {
        Ok(p) => p,
        Err(malformed) => {
            return Explanation {
                decision,
                malformed: Some(malformed),
                rules: Vec::new(),
            };
        }
    };
    let mut origin_matched = vec![false; policy.rules.len()];
    policy
        .origins
        .for_each_match(preflight.origin, |i| origin_matched[i] = true);
    let host = request.host.map(host_without_port);
    let mut answered = false;
    let rules = policy
        .rules
        .iter()
        .enumerate()
        .map(|(index, rule)| {
            let host_ok = rule.hosts.is_empty()
                || host.is_some_and(|h| rule.hosts.iter().any(|s| s.covers(h)));
            let step = if !host_ok {
                RuleStep::HostOutOfScope
            } else if !rule.scope_covers(host, request.path) {
                RuleStep::PathOutOfScope
            } else if !origin_matched[index] {
                RuleStep::OriginNotAllowed
            } else {
                match evaluate(rule, &preflight) {
                    Verdict::MethodDenied => RuleStep::MethodNotAllowed,
                    Verdict::HeadersDenied => RuleStep::HeadersNotAllowed(
                        preflight
                            .headers
                            .iter()
                            .filter(|name| !header_allowed(rule, name))
                            .map(|name| String::from_utf8_lossy(name).to_ascii_lowercase())
                            .collect(),
                    ),
                    Verdict::Allowed if answered => RuleStep::Shadowed,
                    Verdict::Allowed => {
                        answered = true;
                        RuleStep::Answers
                    }
                }
            };
            RuleTrace { rule: index, step }
        })
        .collect();
    Explanation {
        decision,
        malformed: None,
        rules,
    }
}
