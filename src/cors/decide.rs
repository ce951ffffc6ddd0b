//! First match (DESIGN 3 and 4): the first rule whose scope, origin, method and every
//! requested header all match answers. When none does, the denial names the furthest step any
//! rule in scope reached: `no_rule` < `origin` < `method` < `headers`; `malformed` stands
//! apart.

use super::answer::{Answer, Outcome, Reason};
use super::checks::{Verdict, evaluate};
use super::request::{self, Fields, Request, host_without_port, is_preflight};
use crate::policy::Policy;

#[derive(Debug, Clone, Copy)]
pub enum Decision<'p> {
    /// Not a CORS preflight (CORS-CHECKLIST 1.1-1.4): proxy it untouched.
    NotPreflight,
    /// A preflight no rule's scope covers, with `unmatched = "forward"`: proxy it.
    Forward,
    /// The edge answers.
    Answer(Answer<'p>),
}

/// The decision on one request. Deliberate deviation from a browser's view: a browser checks
/// only the answer it gets, while the edge also picks which rule answers (first match, the
/// bucket model), so a denial names the furthest step any rule reached.
pub fn decide<'p, H: Fields + ?Sized>(
    policy: &'p Policy,
    request: &Request<'_, H>,
) -> Decision<'p> {
    if !is_preflight(request.method, request.headers) {
        return Decision::NotPreflight;
    }
    let host = request.host.map(host_without_port);
    if !policy.any_scope_covers(host, request.path) {
        if policy.forwards_unmatched() {
            return Decision::Forward;
        }
        return deny(policy, Reason::NoRule, None, (false, false));
    }
    // Malformed input is judged after scope: a URL no rule covers is `no_rule` whatever its
    // headers say, as the README states.
    let preflight = match request::parse(request.headers) {
        Ok(preflight) => preflight,
        Err(_) => return deny(policy, Reason::Malformed, None, (false, false)),
    };
    let mut best: Option<(Verdict, usize)> = None;
    policy.for_each_candidate(preflight.origin, host, request.path, |index| {
        let verdict = evaluate(&policy.rules[index], &preflight);
        // Further wins; among equals the earlier rule (first match).
        let better = match best {
            None => true,
            Some((v, i)) => verdict > v || (verdict == v && index < i),
        };
        if better {
            best = Some((verdict, index));
        }
    });
    // Asked for, and whether a line was sent at all (counted: PNA is legacy).
    let private_network = (preflight.private_network, preflight.private_network_asked);
    match best {
        None => deny(policy, Reason::Origin, None, private_network),
        Some((Verdict::MethodDenied, i)) => deny(policy, Reason::Method, Some(i), private_network),
        Some((Verdict::HeadersDenied, i)) => {
            deny(policy, Reason::Headers, Some(i), private_network)
        }
        Some((Verdict::Allowed, i)) => Decision::Answer(Answer::new(
            policy,
            Outcome::Allowed,
            Some(i),
            private_network,
        )),
    }
}

fn deny(
    policy: &Policy,
    reason: Reason,
    rule: Option<usize>,
    private_network: (bool, bool),
) -> Decision<'_> {
    Decision::Answer(Answer::new(
        policy,
        Outcome::Denied(reason),
        rule,
        private_network,
    ))
}
