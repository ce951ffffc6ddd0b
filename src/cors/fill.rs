//! `actual_responses = "fill"` (DESIGN 5): CORS headers for a proxied response whose request
//! `Origin` a rule allows and which the upstream sent without `Access-Control-Allow-Origin`.
//! Responses that already carry it are never changed (CORS-CHECKLIST 2.4: never a second ACAO).
//!
//! Cache safety (Fetch, "CORS protocol and HTTP caches"; CORS-CHECKLIST 4.1): whether a
//! response gets these headers depends on the request's `Origin`, so every response that fill
//! could have changed (the policy fills, a rule's scope covers the URL, and the upstream sent
//! no ACAO) carries `Origin` in `Vary`, whether this request had an `Origin` or not, and
//! whether it matched or not. Otherwise a CDN caches the answer to an origin-less request and
//! serves it to the allowed origin, which then fails.

use http::HeaderValue;
use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_ORIGIN, HeaderMap, ORIGIN,
};

use super::request::{self, Request, host_without_port};
use crate::fetch::TRUE;
use crate::policy::{ExposeHeaders, Policy, vary};

/// What to do to the response, owned so it can outlive the policy snapshot across the
/// upstream round trip.
#[derive(Debug, Clone)]
pub struct Fill {
    /// The CORS headers of the rule that allows the request's origin, if one does.
    grant: Option<Grant>,
}

#[derive(Debug, Clone)]
struct Grant {
    allow_origin: HeaderValue,
    credentials: bool,
    expose: ExposeHeaders,
}

/// The fill for a request: `None` when the policy does not fill or no rule's scope covers the
/// URL (nothing could change); else the headers of the first rule in scope whose origins
/// match the request's single `Origin` line, if any.
pub fn fill_for(policy: &Policy, request: &Request<'_>) -> Option<Fill> {
    if !policy.fills_actual_responses() {
        return None;
    }
    let host = request.host.map(host_without_port);
    if !policy.any_scope_covers(host, request.path) {
        return None;
    }
    Some(Fill {
        grant: grant(policy, request, host),
    })
}

fn grant(policy: &Policy, request: &Request<'_>, host: Option<&[u8]>) -> Option<Grant> {
    let (line, origin) = request::origin(request.headers).ok()?;
    let mut first: Option<usize> = None;
    policy.for_each_candidate(origin, host, request.path, |index| {
        if first.is_none_or(|f| index < f) {
            first = Some(index);
        }
    });
    let rule = &policy.rules[first?];
    // The trimmed origin, reusing the request's value when there was nothing to trim.
    let echoed = match request.headers.get(ORIGIN) {
        Some(value) if origin.len() == line.len() => value.clone(),
        _ => HeaderValue::from_bytes(origin).ok()?,
    };
    Some(Grant {
        allow_origin: rule.allow_origin.value(&echoed),
        credentials: rule.credentials,
        expose: rule.expose.clone(),
    })
}

impl Fill {
    /// Whether the request's origin is allowed (the response gets CORS headers).
    pub fn grants(&self) -> bool {
        self.grant.is_some()
    }

    /// Adds the headers, and `Origin` to `Vary`, unless the upstream answered CORS itself.
    pub fn apply(&self, response: &mut HeaderMap) {
        if response.contains_key(ACCESS_CONTROL_ALLOW_ORIGIN) {
            return;
        }
        if let Some(grant) = &self.grant {
            response.insert(ACCESS_CONTROL_ALLOW_ORIGIN, grant.allow_origin.clone());
            if grant.credentials {
                response.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE.clone());
            }
            grant.expose.insert(response);
        }
        vary::add_origin(response);
    }
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue, Method};

    use super::*;
    use crate::policy::compile;
    use crate::rules::{Source, load_sources};

    fn policy() -> Policy {
        let text = "[settings]\nactual_responses = \"fill\"\n\n[[rule]]\nname = \"web\"\norigins = [\"regex:https://app\\\\.example\\\\.com.*\"]\n";
        let loaded = load_sources(&[Source {
            name: "t.toml".into(),
            text: text.into(),
        }]);
        compile(loaded.rules.expect("rules")).expect("compile")
    }

    fn fills(policy: &Policy, origins: &[&str]) -> bool {
        let mut headers = HeaderMap::new();
        for origin in origins {
            headers.append(ORIGIN, HeaderValue::from_str(origin).expect("value"));
        }
        let request = Request {
            method: &Method::GET,
            host: Some(b"api.example.com"),
            path: b"/",
            headers: &headers,
        };
        fill_for(policy, &request).is_some_and(|fill| fill.grants())
    }

    #[test]
    fn fills_only_an_origin_a_preflight_would_accept() {
        let policy = policy();
        assert!(fills(&policy, &["https://app.example.com"]));
        // Same bounds as a preflight (DESIGN 4.2): one line, at most 1 KiB, never echoed else.
        assert!(!fills(
            &policy,
            &["https://app.example.com", "https://app.example.com"]
        ));
        let long = format!("https://app.example.com{}", "a".repeat(1024));
        assert!(!fills(&policy, &[&long]));
        assert!(!fills(
            &policy,
            &["https://app.example.com, https://evil.com"]
        ));
    }
}
