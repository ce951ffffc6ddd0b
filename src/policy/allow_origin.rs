//! `Access-Control-Allow-Origin`, compiled per rule and rendered per answer (Fetch: CORS
//! check, steps 2-4; CORS-CHECKLIST 2.2-2.4): exactly one value, `*` or the request's origin.

use http::HeaderValue;

use crate::fetch::STAR;
use crate::rules::{OriginPattern, Rule};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllowOrigin {
    /// `*`: an `origins = ["*"]` rule without credentials.
    Star,
    /// The request's origin, echoed byte for byte (CORS-CHECKLIST 2.2).
    Echo,
}

impl AllowOrigin {
    pub(super) fn compile(rule: &Rule) -> Self {
        let has_star = rule.origins.iter().any(|o| o.pattern == OriginPattern::Any);
        // CORS-CHECKLIST 2.3: never `*` with credentials (validation refuses that pairing, and
        // a rule that lists `*` beside other origins echoes).
        if has_star && !rule.credentials {
            AllowOrigin::Star
        } else {
            AllowOrigin::Echo
        }
    }

    /// The value for a request whose validated, OWS-trimmed `Origin` is `origin`.
    #[inline]
    pub fn value(self, origin: &HeaderValue) -> HeaderValue {
        match self {
            AllowOrigin::Star => STAR.clone(),
            AllowOrigin::Echo => origin.clone(),
        }
    }
}
