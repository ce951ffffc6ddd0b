//! `Vary`, so that a shared cache never serves one origin's answer to another (Fetch, "CORS
//! protocol and HTTP caches"; CORS-CHECKLIST 4.1-4.2): compiled once per policy for preflight
//! answers, and merged into proxied responses that `fill` may change.

use http::HeaderValue;
use http::header::{HeaderMap, VARY};

use super::header_value::{HeaderValueError, header_value};
use crate::syntax::field_items;

/// `Vary` of every preflight answer, allowed or denied (DESIGN 4.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreflightVary(HeaderValue);

impl PreflightVary {
    /// `private_network`: some rule answers Private Network Access, so the answer also
    /// depends on `Access-Control-Request-Private-Network`.
    pub(super) fn compile(private_network: bool) -> Result<Self, HeaderValueError> {
        let mut vary =
            String::from("Origin, Access-Control-Request-Method, Access-Control-Request-Headers");
        if private_network {
            vary.push_str(", Access-Control-Request-Private-Network");
        }
        Ok(PreflightVary(header_value("Vary", vary)?))
    }

    #[inline]
    pub fn value(&self) -> &HeaderValue {
        &self.0
    }
}

static ORIGIN_TOKEN: HeaderValue = HeaderValue::from_static("Origin");

/// Adds `Origin` to a response's `Vary` unless it (or `*`) is there already, keeping the
/// upstream's tokens in one line (RFC 9110 12.5.5: `Vary = #( "*" / field-name )`).
pub fn add_origin(headers: &mut HeaderMap) {
    let present =
        field_items(headers.get_all(VARY)).any(|t| t.eq_ignore_ascii_case(b"origin") || t == b"*");
    if present {
        return;
    }
    let merged = match headers.get(VARY) {
        Some(existing) if !existing.is_empty() && headers.get_all(VARY).iter().count() == 1 => {
            let mut bytes = existing.as_bytes().to_vec();
            bytes.extend_from_slice(b", Origin");
            HeaderValue::from_bytes(&bytes).unwrap_or_else(|_| ORIGIN_TOKEN.clone())
        }
        _ => {
            // Several Vary lines (or an empty one): one more line means the same list.
            headers.append(VARY, ORIGIN_TOKEN.clone());
            return;
        }
    };
    headers.insert(VARY, merged);
}
