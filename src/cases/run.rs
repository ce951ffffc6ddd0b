//! Running cases: each request decided by `cors::decide` on the compiled policy, its answer's
//! headers rendered by `Answer::write_headers` (the server's own rendering, which the fast
//! path's bytes are proven equal to by `tests/integration/differential.rs`), and compared
//! with what the case expects.

use std::fmt::Write;

use http::HeaderMap;
use http::header::{ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_ORIGIN};

use super::model::{Case, CasesFile, Expect};
use crate::cors::{Decision, Outcome, decide};
use crate::policy::Policy;
use crate::rules::{Diagnostic, Subject};

/// What the edge made of a case's request.
#[derive(Debug)]
pub enum Actual {
    NotPreflight,
    Forward,
    Answer(ActualAnswer),
}

/// An answer the edge gives itself, as the server would send it.
#[derive(Debug)]
pub struct ActualAnswer {
    pub outcome: Outcome,
    /// The rule the answer names: the one that allowed, or that got furthest.
    pub rule: Option<String>,
    pub status: u16,
    pub headers: HeaderMap,
    pub body: &'static str,
    /// Set when the case sends credentials and this allowed answer would not let a browser
    /// make the credentialed request, with why.
    pub credentials_blocked: Option<&'static str>,
}

impl Actual {
    /// The verdict, in the words of `expect`.
    pub fn verdict(&self) -> Expect {
        match self {
            Actual::NotPreflight => Expect::NotPreflight,
            Actual::Forward => Expect::Forward,
            Actual::Answer(answer) => match answer.outcome {
                Outcome::Allowed if answer.credentials_blocked.is_some() => Expect::Credentials,
                Outcome::Allowed => Expect::Allowed,
                Outcome::Denied(reason) => Expect::Denied(reason),
            },
        }
    }
}

/// One way an answer differs from its case. When the verdict differs nothing else is
/// compared: the two summaries say it all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    Verdict,
    Rule {
        expected: String,
        actual: Option<String>,
        /// Whether the rules have a rule of the expected name at all.
        known: bool,
    },
    Status {
        expected: u16,
        actual: u16,
    },
    Header {
        name: String,
        expected: Option<String>,
        actual: Option<String>,
    },
}

/// A case run: what the edge made of it and every difference from the case.
#[derive(Debug)]
pub struct Checked {
    pub actual: Actual,
    pub mismatches: Vec<Mismatch>,
}

impl Checked {
    pub fn passed(&self) -> bool {
        self.mismatches.is_empty()
    }
}

/// Runs one case against `policy`.
pub fn check(policy: &Policy, case: &Case) -> Checked {
    let actual = match decide(policy, &case.request.as_request()) {
        Decision::NotPreflight => Actual::NotPreflight,
        Decision::Forward => Actual::Forward,
        Decision::Answer(answer) => {
            let mut headers = HeaderMap::new();
            answer.write_headers(&case.request.headers, &mut headers);
            let credentials_blocked = if case.credentials && answer.outcome == Outcome::Allowed {
                credentialed_block(&headers)
            } else {
                None
            };
            Actual::Answer(ActualAnswer {
                outcome: answer.outcome,
                rule: answer.rule().map(|rule| rule.name.clone()),
                status: answer.status().as_u16(),
                headers,
                body: answer.body(),
                credentials_blocked,
            })
        }
    };
    let mut mismatches = Vec::new();
    if actual.verdict() != case.expect {
        mismatches.push(Mismatch::Verdict);
    } else if let Actual::Answer(answer) = &actual {
        compare(policy, case, answer, &mut mismatches);
    }
    Checked { actual, mismatches }
}

/// Fetch, "CORS check" (CORS-CHECKLIST 2.2, 2.3): a credentialed request needs
/// `Access-Control-Allow-Credentials` byte-exactly `true`, and an origin echoed, never `*`.
/// The edge only ever echoes the request's origin or sends `*`, so these two are what a
/// browser would hold an allowed answer to.
fn credentialed_block(headers: &HeaderMap) -> Option<&'static str> {
    if headers
        .get(ACCESS_CONTROL_ALLOW_CREDENTIALS)
        .is_none_or(|v| v.as_bytes() != b"true")
    {
        Some("answered without Access-Control-Allow-Credentials: true")
    } else if headers
        .get(ACCESS_CONTROL_ALLOW_ORIGIN)
        .is_some_and(|v| v.as_bytes() == b"*")
    {
        Some("answered with Access-Control-Allow-Origin: *")
    } else {
        None
    }
}

fn compare(policy: &Policy, case: &Case, answer: &ActualAnswer, out: &mut Vec<Mismatch>) {
    if let Some(expected) = &case.rule
        && answer.rule.as_deref().unwrap_or("") != expected
    {
        out.push(Mismatch::Rule {
            expected: expected.clone(),
            actual: answer.rule.clone(),
            known: expected.is_empty() || policy.rules.iter().any(|r| &r.name == expected),
        });
    }
    if let Some(expected) = case.expected_status()
        && answer.status != expected
    {
        out.push(Mismatch::Status {
            expected,
            actual: answer.status,
        });
    }
    let value = |name: &http::HeaderName| {
        answer
            .headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    for (name, expected) in &case.response {
        let actual = value(name);
        if actual.as_deref() != Some(expected.as_str()) {
            out.push(Mismatch::Header {
                name: name.to_string(),
                expected: Some(expected.clone()),
                actual,
            });
        }
    }
    for name in &case.absent {
        if let Some(actual) = value(name) {
            out.push(Mismatch::Header {
                name: name.to_string(),
                expected: None,
                actual: Some(actual),
            });
        }
    }
}

/// A failing case as `preflightd test` prints it: `FAIL name (file:line)`, what was expected
/// and what the edge answers, then each other difference on its own line.
pub fn report(case: &Case, checked: &Checked) -> String {
    let mut out = format!(
        "FAIL {} ({}:{})\n",
        case.name, case.location.file, case.location.line
    );
    let _ = writeln!(out, "  expected: {}", expected_summary(case));
    let _ = writeln!(out, "  actual:   {}", actual_summary(&checked.actual));
    for mismatch in &checked.mismatches {
        match mismatch {
            Mismatch::Verdict => {}
            Mismatch::Rule {
                expected,
                actual,
                known,
            } => {
                let _ = writeln!(
                    out,
                    "  rule: expected {}, actual {}{}",
                    rule_shown(expected),
                    rule_shown(actual.as_deref().unwrap_or("")),
                    if *known {
                        ""
                    } else {
                        " (the rules have no rule of that name)"
                    }
                );
            }
            Mismatch::Status { expected, actual } => {
                let _ = writeln!(out, "  status: expected {expected}, actual {actual}");
            }
            Mismatch::Header {
                name,
                expected,
                actual,
            } => {
                let shown =
                    |v: &Option<String>| v.as_ref().map_or("absent".into(), |v| format!("{v:?}"));
                let _ = writeln!(
                    out,
                    "  header {name}: expected {}, actual {}",
                    shown(expected),
                    shown(actual)
                );
            }
        }
    }
    out
}

fn rule_shown(rule: &str) -> String {
    if rule.is_empty() {
        "none".to_owned()
    } else {
        format!("{rule:?}")
    }
}

fn verdict_words(verdict: Expect) -> String {
    match verdict {
        Expect::Allowed => "allowed".to_owned(),
        Expect::Denied(reason) => format!("denied: {}", reason.as_str()),
        Expect::Credentials => "credentials (the browser blocks the credentialed request)".into(),
        Expect::Forward => "forward (passed to the upstream)".to_owned(),
        Expect::NotPreflight => "not_preflight (proxied untouched)".to_owned(),
    }
}

fn expected_summary(case: &Case) -> String {
    let mut out = verdict_words(case.expect);
    if let Some(rule) = &case.rule {
        let _ = write!(out, ", rule {}", rule_shown(rule));
    }
    if let Some(status) = case.status {
        let _ = write!(out, ", status {status}");
    }
    out
}

fn actual_summary(actual: &Actual) -> String {
    let mut out = verdict_words(actual.verdict());
    if let Actual::Answer(answer) = actual {
        let _ = write!(
            out,
            ", rule {}, status {}",
            rule_shown(answer.rule.as_deref().unwrap_or("")),
            answer.status
        );
        if let Some(why) = answer.credentials_blocked {
            let _ = write!(out, ", {why}");
        }
    }
    out
}

/// How many cases passed and failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} passed, {} failed", self.passed, self.failed)
    }
}

/// Runs every case of `files`: `[[case]]` tables against `rules` (required when a file has
/// any), each suite against its own rules. Every suite is compiled before any case runs, so
/// a mistake anywhere is reported (all of them, with places) and nothing is half run.
/// `each` sees every case with its result, in file order.
pub fn run(
    files: &[CasesFile],
    rules: Option<&Policy>,
    mut each: impl FnMut(&Case, &Checked),
) -> Result<Summary, Vec<Diagnostic>> {
    let mut errors = Vec::new();
    let mut policies = Vec::new();
    for file in files {
        if rules.is_none()
            && let Some(first) = file.cases.first()
        {
            errors.push(Diagnostic::error(
                first.location.clone(),
                Subject::File,
                "[[case]] tables run against RULES, and RULES is \"-\" (none): give a rules file or directory, or put the cases in a [[suite]] with its own rules",
            ));
        }
        for suite in &file.suites {
            match suite.compile() {
                Ok(policy) => policies.push(policy),
                Err(diagnostics) => errors.extend(diagnostics),
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut summary = Summary::default();
    let mut count = |policy: &Policy, case: &Case| {
        let checked = check(policy, case);
        if checked.passed() {
            summary.passed += 1;
        } else {
            summary.failed += 1;
        }
        each(case, &checked);
    };
    let mut policies = policies.iter();
    for file in files {
        if let Some(rules) = rules {
            for case in &file.cases {
                count(rules, case);
            }
        }
        for (suite, policy) in file.suites.iter().zip(policies.by_ref()) {
            for case in &suite.cases {
                count(policy, case);
            }
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn answer(origin: &'static str, credentials: Option<&'static str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static(origin),
        );
        if let Some(value) = credentials {
            headers.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static(value),
            );
        }
        headers
    }

    /// Valid rules never pair `*` with credentials (a load-time error), so only a header map
    /// built by hand reaches the second branch: a browser refuses it all the same.
    #[test]
    fn a_credentialed_request_needs_acac_true_and_an_echoed_origin() {
        let echoed = "https://app.example.com";
        assert_eq!(credentialed_block(&answer(echoed, Some("true"))), None);
        assert_eq!(
            credentialed_block(&answer(echoed, None)),
            Some("answered without Access-Control-Allow-Credentials: true")
        );
        // CORS-CHECKLIST 2.3: `True` is not `true`.
        assert_eq!(
            credentialed_block(&answer(echoed, Some("True"))),
            Some("answered without Access-Control-Allow-Credentials: true")
        );
        assert_eq!(
            credentialed_block(&answer("*", Some("true"))),
            Some("answered with Access-Control-Allow-Origin: *")
        );
    }
}
