//! What the Fetch standard (and RFC 9110) names, defined once for the whole crate: the
//! predicates that decide which methods and header names a CORS answer covers, the header
//! names the `http` crate lacks, and the fixed header values the edge writes.
//!
//! Sources: <https://fetch.spec.whatwg.org/> ("Methods", "HTTP requests"/"CORS protocol",
//! "CORS-preflight fetch"), and `../shared/CORS-CHECKLIST.md`, whose item numbers the comments
//! cite.

use http::{HeaderName, HeaderValue};

/// Fetch, "CORS-safelisted method": `GET`, `HEAD` or `POST`. Fetch: CORS-preflight fetch,
/// step 7.5: a safelisted method passes the method check whatever
/// `Access-Control-Allow-Methods` says (CORS-CHECKLIST 2.13). Compared byte-exactly: Fetch
/// normalizes these methods to uppercase before sending.
pub const CORS_SAFELISTED_METHODS: [&str; 3] = ["GET", "HEAD", "POST"];

#[inline]
pub fn is_cors_safelisted_method(method: &[u8]) -> bool {
    matches!(method, b"GET" | b"HEAD" | b"POST")
}

/// Fetch, "CORS non-wildcard request-header name": `Authorization`. Fetch: CORS-preflight
/// fetch, step 7.7: a `*` in `Access-Control-Allow-Headers` never covers it; it must be listed
/// by name (CORS-CHECKLIST 2.9).
#[inline]
pub fn is_cors_non_wildcard_request_header_name(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"authorization")
}

/// Whether a `*` in a header list covers `name`: the one place the `authorization` carve-out
/// is decided, for the decision, the validator's shadowing check and `explain`.
#[inline]
pub fn wildcard_covers_header_name(name: &[u8]) -> bool {
    !is_cors_non_wildcard_request_header_name(name)
}

/// Private Network Access (WICG draft): the preflight asks with this request header...
pub static ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-request-private-network");
/// ... and is granted with this response header.
pub static ACCESS_CONTROL_ALLOW_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-allow-private-network");

/// `true`: `Access-Control-Allow-Credentials` must be byte-exactly this (CORS-CHECKLIST
/// 2.2), and so is the private network grant.
pub static TRUE: HeaderValue = HeaderValue::from_static("true");
/// `*`: the wildcard origin (never with credentials, CORS-CHECKLIST 2.3).
pub static STAR: HeaderValue = HeaderValue::from_static("*");
/// The content type of every body the edge writes itself (denials, 502 / 504).
pub static TEXT_PLAIN: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");
/// `Cache-Control` of answers no cache may keep (denials, debug answers).
pub static NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
