//! The request as the decision sees it, and reading a preflight out of its header lines,
//! bounded, without allocating.

use http::header::{
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, HeaderMap, ORIGIN,
};
use http::{HeaderName, HeaderValue, Method};

use crate::fetch::{ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK, TRUE};
use crate::syntax::{is_token, line_items, trim_ows};

/// The request as the decision needs it: method, host (with or without port, as in the
/// `Host` field or the URI authority), path, and header lines: hyper's `HeaderMap`, or the
/// fast path's parsed head (`H`).
#[derive(Debug)]
pub struct Request<'r, H: ?Sized = HeaderMap> {
    pub method: &'r Method,
    pub host: Option<&'r [u8]>,
    pub path: &'r [u8],
    pub headers: &'r H,
}

impl<H: ?Sized> Clone for Request<'_, H> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<H: ?Sized> Copy for Request<'_, H> {}

/// A request's header section as the decision reads it: every field line of a name, in the
/// order received (RFC 9110 5.3: lines of one name are one list, in order). Implemented by
/// hyper's `HeaderMap` and by the fast path's head, so both paths decide with the same code.
pub trait Fields {
    /// The values of every `name` line, in order.
    fn lines<'a>(&'a self, name: &HeaderName) -> impl Iterator<Item = &'a [u8]> + 'a;

    /// Whether there is a `name` line.
    #[inline]
    fn contains(&self, name: &HeaderName) -> bool {
        self.lines(name).next().is_some()
    }
}

impl Fields for HeaderMap {
    #[inline]
    fn lines<'a>(&'a self, name: &HeaderName) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.get_all(name).into_iter().map(HeaderValue::as_bytes)
    }

    #[inline]
    fn contains(&self, name: &HeaderName) -> bool {
        self.contains_key(name)
    }
}

/// `Host` / authority without its port (hosts scopes ignore the port, DESIGN 3). An IPv6
/// literal keeps its brackets (RFC 3986 3.2.2: `IP-literal = "[" ... "]"`).
#[inline]
pub fn host_without_port(host: &[u8]) -> &[u8] {
    if host.first() == Some(&b'[') {
        return match host.iter().position(|&b| b == b']') {
            Some(close) => &host[..=close],
            None => host,
        };
    }
    match host.iter().rposition(|&b| b == b':') {
        Some(colon) => &host[..colon],
        None => host,
    }
}

/// Project policy (DESIGN 4.2): browsers do not bound ACRH (CORS-CHECKLIST 2.19), we do, so a
/// hostile list costs no more than a normal one.
pub const MAX_ORIGIN_BYTES: usize = 1024;
pub const MAX_REQUEST_HEADERS_BYTES: usize = 4096;
pub const MAX_REQUEST_HEADER_NAMES: usize = 64;

/// Fetch: CORS-preflight fetch, steps 1-5 (CORS-CHECKLIST 1.1-1.4): a preflight is `OPTIONS`
/// (byte-exact, 1.2) with both an `Origin`
/// and an `Access-Control-Request-Method` field. Anything else is proxied untouched.
#[inline]
pub fn is_preflight<H: Fields + ?Sized>(method: &Method, headers: &H) -> bool {
    method == Method::OPTIONS
        && headers.contains(&ORIGIN)
        && headers.contains(&ACCESS_CONTROL_REQUEST_METHOD)
}

/// A preflight's request data, borrowed from its header lines.
#[derive(Debug)]
pub struct Preflight<'r> {
    /// The `Origin` value, OWS trimmed (CORS-CHECKLIST 3.7).
    pub origin: &'r [u8],
    /// The `Access-Control-Request-Method` token.
    pub method: &'r [u8],
    pub headers: RequestedHeaders<'r>,
    /// `Access-Control-Request-Private-Network: true` (other values count as absent, 6.1).
    pub private_network: bool,
    /// An `Access-Control-Request-Private-Network` line was sent, whatever its value: counted,
    /// so an operator sees whether any client still sends the legacy header.
    pub private_network_asked: bool,
}

/// The names of `Access-Control-Request-Headers`, each a token, in the order sent.
#[derive(Debug)]
pub struct RequestedHeaders<'r> {
    names: [&'r [u8]; MAX_REQUEST_HEADER_NAMES],
    len: usize,
}

impl<'r> RequestedHeaders<'r> {
    pub fn iter(&self) -> impl Iterator<Item = &'r [u8]> + '_ {
        self.names[..self.len].iter().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Why a preflight is malformed. Nothing of a malformed preflight is reflected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// CORS-CHECKLIST 1.8 / 3.6: more than one `Origin` line.
    DuplicateOrigin,
    EmptyOrigin,
    OriginTooLong,
    /// A byte outside visible ASCII, or a comma: no browser sends it, and it must not be echoed.
    OriginBytes,
    /// Fetch: "extract header list values", step 2 (CORS-CHECKLIST 1.8): more than one ACRM
    /// line.
    DuplicateMethod,
    /// CORS-CHECKLIST 1.8: ACRM empty or not one token.
    MethodNotToken,
    HeadersTooLong,
    TooManyHeaders,
    /// CORS-CHECKLIST 2.18: every non-empty ACRH item must be a token.
    HeaderNotToken,
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Malformed::DuplicateOrigin => "more than one Origin field",
            Malformed::EmptyOrigin => "empty Origin",
            Malformed::OriginTooLong => "Origin longer than 1024 bytes",
            Malformed::OriginBytes => "Origin holds a byte no browser sends",
            Malformed::DuplicateMethod => "more than one Access-Control-Request-Method field",
            Malformed::MethodNotToken => "Access-Control-Request-Method is not one token",
            Malformed::HeadersTooLong => "Access-Control-Request-Headers longer than 4096 bytes",
            Malformed::TooManyHeaders => "Access-Control-Request-Headers names more than 64 fields",
            Malformed::HeaderNotToken => "Access-Control-Request-Headers holds a non-token",
        })
    }
}

/// Exactly one field line, or an error for none / several.
#[inline]
fn single<'r, H: Fields + ?Sized>(
    headers: &'r H,
    name: &HeaderName,
    duplicate: Malformed,
) -> Result<&'r [u8], Malformed> {
    let mut lines = headers.lines(name);
    let first = lines.next().ok_or(duplicate)?;
    if lines.next().is_some() {
        return Err(duplicate);
    }
    Ok(first)
}

/// The request's `Origin`: its one field line, and the value with OWS trimmed (CORS-CHECKLIST
/// 3.7), at most 1 KiB of visible ASCII without commas (1.8, 3.6). The preflight decision and
/// `fill` both read it here, so an origin is either usable everywhere or nowhere.
#[inline]
pub fn origin<H: Fields + ?Sized>(headers: &H) -> Result<(&[u8], &[u8]), Malformed> {
    let line = single(headers, &ORIGIN, Malformed::DuplicateOrigin)?;
    let origin = trim_ows(line);
    if origin.is_empty() {
        return Err(Malformed::EmptyOrigin);
    }
    if origin.len() > MAX_ORIGIN_BYTES {
        return Err(Malformed::OriginTooLong);
    }
    if !origin.iter().all(|&b| b.is_ascii_graphic() && b != b',') {
        return Err(Malformed::OriginBytes);
    }
    Ok((line, origin))
}

pub fn parse<H: Fields + ?Sized>(headers: &H) -> Result<Preflight<'_>, Malformed> {
    let (_, origin) = origin(headers)?;
    let method = trim_ows(single(
        headers,
        &ACCESS_CONTROL_REQUEST_METHOD,
        Malformed::DuplicateMethod,
    )?);
    if !is_token(method) {
        return Err(Malformed::MethodNotToken);
    }
    let mut requested = RequestedHeaders {
        names: [&[]; MAX_REQUEST_HEADER_NAMES],
        len: 0,
    };
    // Bound the total before splitting anything, so 1 MB of commas costs one length check.
    let total: usize = headers
        .lines(&ACCESS_CONTROL_REQUEST_HEADERS)
        .map(<[u8]>::len)
        .sum();
    if total > MAX_REQUEST_HEADERS_BYTES {
        return Err(Malformed::HeadersTooLong);
    }
    // CORS-CHECKLIST 2.18: all lines, split on commas, OWS trimmed, empty items ignored
    // (RFC 9110 5.6.1); each item a token (Fetch: ACRH is `1#field-name`).
    for item in line_items(headers.lines(&ACCESS_CONTROL_REQUEST_HEADERS)) {
        if !is_token(item) {
            return Err(Malformed::HeaderNotToken);
        }
        if requested.len == MAX_REQUEST_HEADER_NAMES {
            return Err(Malformed::TooManyHeaders);
        }
        requested.names[requested.len] = item;
        requested.len += 1;
    }
    let first = headers
        .lines(&ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK)
        .next();
    let private_network = first.is_some_and(|v| trim_ows(v) == TRUE.as_bytes());
    Ok(Preflight {
        origin,
        method,
        headers: requested,
        private_network,
        private_network_asked: first.is_some(),
    })
}
