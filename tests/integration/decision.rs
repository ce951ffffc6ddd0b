//! The preflight decision against `tests/data/preflight.toml`: each case is one request and
//! the answer the edge must give, byte for byte where the case says so. Every case is also
//! held to the invariants every answer must keep.

use std::collections::BTreeMap;

use http::header::{
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, HeaderName, ORIGIN,
};
use http::{HeaderMap, HeaderValue, Method, Uri};
use preflightd::cors::{ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK, Decision, Request, decide};
use serde::Deserialize;

use crate::support::{expand, policy};

#[derive(Deserialize)]
pub struct File {
    pub suite: Vec<Suite>,
}

#[derive(Deserialize)]
pub struct Suite {
    pub name: String,
    pub rules: String,
    pub case: Vec<Case>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub desc: String,
    pub method: Option<String>,
    origin: Option<Lines>,
    acrm: Option<Lines>,
    #[serde(default)]
    acrh: Vec<String>,
    acrpn: Option<String>,
    pub url: Option<String>,
    pub expect: String,
    rule: Option<String>,
    pub status: Option<u16>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    absent: Vec<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Lines {
    One(String),
    Many(Vec<String>),
}

impl Lines {
    fn lines(&self) -> Vec<String> {
        match self {
            Lines::One(line) => vec![line.clone()],
            Lines::Many(lines) => lines.clone(),
        }
    }
}

/// The vectors of `tests/data/preflight.toml`.
pub fn vectors() -> File {
    toml::from_str(include_str!("../data/preflight.toml"))
        .expect("tests/data/preflight.toml parses")
}

pub fn header_map(case: &Case) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let mut add = |name: &HeaderName, value: &str| {
        let value = HeaderValue::from_bytes(expand(value).as_bytes())
            .unwrap_or_else(|e| panic!("{}: bad test header {value:?}: {e}", case.desc));
        headers.append(name.clone(), value);
    };
    for line in case.origin.as_ref().map(Lines::lines).unwrap_or_default() {
        add(&ORIGIN, &line);
    }
    for line in case.acrm.as_ref().map(Lines::lines).unwrap_or_default() {
        add(&ACCESS_CONTROL_REQUEST_METHOD, &line);
    }
    for line in &case.acrh {
        add(&ACCESS_CONTROL_REQUEST_HEADERS, line);
    }
    if let Some(value) = &case.acrpn {
        add(&ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK, value);
    }
    headers
}

#[test]
fn preflight_vectors() {
    let file = vectors();
    let mut failures = Vec::new();
    let mut count = 0;
    for suite in &file.suite {
        let policy = policy(&suite.rules);
        for case in &suite.case {
            count += 1;
            if let Err(why) = run_case(&policy, case) {
                failures.push(format!("[{}] {}: {why}", suite.name, case.desc));
            }
        }
    }
    assert!(count > 60, "only {count} cases ran");
    assert!(
        failures.is_empty(),
        "{} of {count} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn run_case(policy: &preflightd::policy::Policy, case: &Case) -> Result<(), String> {
    let method = Method::from_bytes(case.method.as_deref().unwrap_or("OPTIONS").as_bytes())
        .map_err(|e| e.to_string())?;
    let uri: Uri = case
        .url
        .as_deref()
        .unwrap_or("http://api.example.com/")
        .parse()
        .map_err(|e| format!("bad url: {e}"))?;
    let headers = header_map(case);
    let request = Request {
        method: &method,
        host: uri.authority().map(|a| a.as_str().as_bytes()),
        path: uri.path().as_bytes(),
        headers: &headers,
    };
    let answer = match (decide(policy, &request), case.expect.as_str()) {
        (Decision::NotPreflight, "not_preflight") | (Decision::Forward, "forward") => return Ok(()),
        (Decision::Answer(answer), expect) if answer.outcome.as_str() == expect => answer,
        (decision, expect) => return Err(format!("expected {expect}, got {decision:?}")),
    };
    if let Some(want) = &case.rule {
        let got = answer.rule().map_or("", |r| r.name.as_str());
        if got != want {
            return Err(format!("expected rule {want:?}, got {got:?}"));
        }
    }
    let want_status = case
        .status
        .unwrap_or(if case.expect == "allowed" { 204 } else { 403 });
    if answer.status().as_u16() != want_status {
        return Err(format!(
            "expected status {want_status}, got {}",
            answer.status()
        ));
    }
    let mut out = HeaderMap::new();
    answer.write_headers(&headers, &mut out);
    for (name, want) in &case.headers {
        let got = out
            .get(name.as_str())
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        if got.as_deref() != Some(want.as_str()) {
            return Err(format!("header {name}: expected {want:?}, got {got:?}"));
        }
    }
    for name in &case.absent {
        if let Some(value) = out.get(name.as_str()) {
            return Err(format!("header {name} must be absent, got {value:?}"));
        }
    }
    invariants(&answer, &out)
}

/// What every answer keeps, whatever the case says (DESIGN 4.3, 4.4).
fn invariants(answer: &preflightd::cors::Answer<'_>, out: &HeaderMap) -> Result<(), String> {
    if out.get_all("vary").iter().count() != 1 {
        return Err("every answer carries exactly one Vary".into());
    }
    if out.get_all("access-control-allow-origin").iter().count() > 1 {
        return Err("at most one Access-Control-Allow-Origin".into());
    }
    if out.contains_key("access-control-expose-headers") {
        return Err(
            "never Access-Control-Expose-Headers on a preflight (CORS-CHECKLIST 4.3)".into(),
        );
    }
    let grants = answer.status().as_u16() == 204;
    let any_allow = out
        .keys()
        .any(|k| k.as_str().starts_with("access-control-allow-"));
    if !grants && (any_allow || out.contains_key("access-control-max-age")) {
        return Err("a 403 carries no Access-Control-Allow-* or -Max-Age".into());
    }
    if grants != answer.body().is_empty() {
        return Err("a 204 has no body; a 403 names its reason".into());
    }
    Ok(())
}
