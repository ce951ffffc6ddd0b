//! `actual_responses = "fill"` (DESIGN 5): CORS headers for a proxied response whose request
//! `Origin` a rule allows and which the upstream sent without `Access-Control-Allow-Origin`.
//! Responses that already carry it are never changed (CORS-CHECKLIST 2.4: never a second ACAO).

use http::HeaderValue;
use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS,
    HeaderMap, ORIGIN, VARY,
};

use super::{Request, host_without_port};
use crate::policy::{AllowOrigin, Policy};
use crate::syntax::trim_ows;

/// What to add to the response, owned so it can outlive the policy snapshot across the
/// upstream round trip.
#[derive(Debug, Clone)]
pub struct Fill {
    allow_origin: HeaderValue,
    credentials: bool,
    expose: Option<HeaderValue>,
    /// `Origin` joins `Vary` when the answer depends on it (an echoed origin).
    vary_origin: bool,
}

static STAR: HeaderValue = HeaderValue::from_static("*");
static TRUE: HeaderValue = HeaderValue::from_static("true");
static ORIGIN_TOKEN: HeaderValue = HeaderValue::from_static("Origin");

/// The fill for a request, when the policy fills and the first rule in scope whose origins
/// match the request's single `Origin` line exists.
pub fn fill_for(policy: &Policy, request: &Request<'_>) -> Option<Fill> {
    if !policy.fills_actual_responses() {
        return None;
    }
    let mut lines = request.headers.get_all(ORIGIN).iter();
    let value = lines.next()?;
    if lines.next().is_some() {
        return None;
    }
    let origin = trim_ows(value.as_bytes());
    if origin.is_empty() || !origin.iter().all(|&b| b.is_ascii_graphic() && b != b',') {
        return None;
    }
    let host = request.host.map(host_without_port);
    let mut first: Option<usize> = None;
    policy.origins.for_each_match(origin, |index| {
        if first.is_none_or(|f| index < f) && policy.rules[index].scope_covers(host, request.path) {
            first = Some(index);
        }
    });
    let rule = &policy.rules[first?];
    let (allow_origin, vary_origin) = match rule.allow_origin {
        AllowOrigin::Star => (STAR.clone(), false),
        AllowOrigin::Echo if origin.len() == value.len() => (value.clone(), true),
        AllowOrigin::Echo => (HeaderValue::from_bytes(origin).ok()?, true),
    };
    Some(Fill {
        allow_origin,
        credentials: rule.credentials,
        expose: rule.expose.clone(),
        vary_origin,
    })
}

impl Fill {
    /// Adds the headers unless the upstream already answered CORS itself.
    pub fn apply(&self, response: &mut HeaderMap) {
        if response.contains_key(ACCESS_CONTROL_ALLOW_ORIGIN) {
            return;
        }
        response.insert(ACCESS_CONTROL_ALLOW_ORIGIN, self.allow_origin.clone());
        if self.credentials {
            response.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE.clone());
        }
        if let Some(expose) = &self.expose {
            response.insert(ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
        }
        if self.vary_origin {
            merge_vary_origin(response);
        }
    }
}

/// Adds `Origin` to `Vary` unless it (or `*`) is there already; keeps the upstream's tokens.
fn merge_vary_origin(headers: &mut HeaderMap) {
    let present = headers.get_all(VARY).iter().any(|line| {
        line.as_bytes()
            .split(|&b| b == b',')
            .map(trim_ows)
            .any(|t| t.eq_ignore_ascii_case(b"origin") || t == b"*")
    });
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
