//! `actual_responses = "fill"` (DESIGN 5): CORS headers for a proxied response whose request
//! `Origin` a rule allows and which the upstream sent without `Access-Control-Allow-Origin`.
//! Responses that already carry it are never changed (CORS-CHECKLIST 2.4: never a second ACAO).

use http::HeaderValue;
use http::header::{ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_ORIGIN, HeaderMap};

use super::request::{self, Request, host_without_port};
use crate::fetch::TRUE;
use crate::policy::{ExposeHeaders, Policy, vary};

/// What to add to the response, owned so it can outlive the policy snapshot across the
/// upstream round trip.
#[derive(Debug, Clone)]
pub struct Fill {
    allow_origin: HeaderValue,
    credentials: bool,
    expose: ExposeHeaders,
    /// `Origin` joins `Vary` when the answer depends on it (an echoed origin).
    vary_origin: bool,
}

/// The fill for a request, when the policy fills and the first rule in scope whose origins
/// match the request's single `Origin` line exists.
pub fn fill_for(policy: &Policy, request: &Request<'_>) -> Option<Fill> {
    if !policy.fills_actual_responses() {
        return None;
    }
    let (value, origin) = request::origin(request.headers).ok()?;
    let host = request.host.map(host_without_port);
    let mut first: Option<usize> = None;
    policy.for_each_candidate(origin, host, request.path, |index| {
        if first.is_none_or(|f| index < f) {
            first = Some(index);
        }
    });
    let rule = &policy.rules[first?];
    // The trimmed origin, reusing the request's value when there was nothing to trim.
    let echoed = if origin.len() == value.len() {
        value.clone()
    } else {
        HeaderValue::from_bytes(origin).ok()?
    };
    Some(Fill {
        allow_origin: rule.allow_origin.value(&echoed),
        credentials: rule.credentials,
        expose: rule.expose.clone(),
        vary_origin: rule.allow_origin.varies(),
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
        self.expose.insert(response);
        if self.vary_origin {
            vary::add_origin(response);
        }
    }
}

#[cfg(test)]
mod tests {
    use http::header::ORIGIN;
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
        fill_for(policy, &request).is_some()
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
