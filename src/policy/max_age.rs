//! `Access-Control-Max-Age`, compiled per rule and rendered per answer (Fetch: CORS-preflight
//! fetch, steps 7.8-7.10; CORS-CHECKLIST 2.20-2.22): a non-negative decimal, `0` for "do not
//! cache".

use http::HeaderValue;

static ZERO: HeaderValue = HeaderValue::from_static("0");

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaxAge(HeaderValue);

impl MaxAge {
    pub(super) fn compile(seconds: u32) -> Self {
        MaxAge(HeaderValue::from(seconds))
    }

    /// The rule's value when the answer may be cached, else `0`: a debug denial must not be
    /// cached, or the browser would keep failing from its cache after the rules are fixed.
    #[inline]
    pub fn value(&self, cacheable: bool) -> &HeaderValue {
        if cacheable { &self.0 } else { &ZERO }
    }
}
