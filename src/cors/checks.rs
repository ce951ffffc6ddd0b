//! One rule against one preflight: the method and header checks of Fetch's CORS-preflight
//! fetch, as the browser will run them on the answer this rule would give.

use super::request::Preflight;
use crate::policy::CompiledRule;

/// How far one rule got with one preflight, ordered so that "further" compares greater.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Verdict {
    MethodDenied,
    HeadersDenied,
    Allowed,
}

/// The rule's verdict on a preflight whose origin and scope it already matched.
pub(super) fn evaluate(rule: &CompiledRule, preflight: &Preflight<'_>) -> Verdict {
    if !method_allowed(rule, preflight.method) {
        return Verdict::MethodDenied;
    }
    if !preflight
        .headers
        .iter()
        .all(|name| header_allowed(rule, name))
    {
        return Verdict::HeadersDenied;
    }
    Verdict::Allowed
}

/// Fetch: CORS-preflight fetch, step 7.5 (CORS-CHECKLIST 2.7): methods compare byte-exactly
/// (a rule `PATCH` does not allow `patch`; Chromium's old uppercasing, 2.8, is not copied);
/// a CORS-safelisted method passes whatever the list says (2.13), unless the rule sets
/// `only_listed_methods` (the bucket model: S3 and its peers refuse a preflight whose method
/// no rule lists, GET included).
#[inline]
fn method_allowed(rule: &CompiledRule, method: &[u8]) -> bool {
    rule.methods.allows_method(rule.only_listed_methods, method)
}

/// Fetch: CORS-preflight fetch, steps 7.6-7.7 (CORS-CHECKLIST 2.9): names compare
/// ASCII-case-insensitively; `*` never covers `authorization`, which must be listed by name.
#[inline]
pub fn header_allowed(rule: &CompiledRule, name: &[u8]) -> bool {
    rule.headers.allows_header_name(name)
}
