//! `Cache-Control` of preflight answers (DESIGN 4.3): `no-store`, or `public, max-age=N` on
//! allowed answers with `cdn_max_age = N`, so a CDN may keep them (`Vary` keys them).

use http::HeaderValue;

use super::header_value::{HeaderValueError, header_value};
use crate::fetch::NO_STORE;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheControl {
    allowed: HeaderValue,
}

impl CacheControl {
    pub(super) fn compile(cdn_max_age: u32) -> Result<Self, HeaderValueError> {
        let allowed = match cdn_max_age {
            0 => NO_STORE.clone(),
            seconds => header_value("Cache-Control", format!("public, max-age={seconds}"))?,
        };
        Ok(CacheControl { allowed })
    }

    /// `allowed`: the answer allows the preflight; denials are never stored.
    #[inline]
    pub fn value(&self, allowed: bool) -> &HeaderValue {
        if allowed { &self.allowed } else { &NO_STORE }
    }
}
