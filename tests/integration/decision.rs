//! The preflight decision against `tests/data/preflight.toml`, run in process with the code
//! `preflightd test` runs (`preflightd::cases`): each case is one request and the answer the
//! edge must give, byte for byte where the case says so. Every answer is also held to the
//! invariants every answer must keep, and every case is shown able to fail.

use http::HeaderMap;
use preflightd::cases::{self, Actual, CasesFile, Expect, check};
use preflightd::cors::Reason;

/// The vectors of `tests/data/preflight.toml`.
pub fn vectors() -> CasesFile {
    cases::parse(
        "tests/data/preflight.toml".into(),
        include_str!("../data/preflight.toml"),
    )
    .unwrap_or_else(|errors| {
        let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
        panic!("tests/data/preflight.toml:\n{}", errors.join("\n"))
    })
}

#[test]
fn preflight_vectors() {
    let file = vectors();
    let mut failures = Vec::new();
    let summary = cases::run(std::slice::from_ref(&file), None, |case, checked| {
        if !checked.passed() {
            failures.push(cases::report(case, checked));
        }
        if let Actual::Answer(answer) = &checked.actual
            && let Err(why) = invariants(answer.status, answer.body, &answer.headers)
        {
            failures.push(format!("{} ({}): {why}\n", case.name, case.location));
        }
    })
    .unwrap_or_else(|errors| panic!("the suites' rules load: {errors:?}"));
    assert!(summary.passed > 60, "only {summary} ran");
    assert!(failures.is_empty(), "{summary}:\n{}", failures.concat());
}

/// What every answer keeps, whatever the case says (DESIGN 4.3, 4.4).
fn invariants(status: u16, body: &str, out: &HeaderMap) -> Result<(), String> {
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
    // `preflight_status = 200` grants with 200; a denial is always 403.
    let grants = status == 204 || status == 200;
    let any_allow = out
        .keys()
        .any(|k| k.as_str().starts_with("access-control-allow-"));
    if !grants && (any_allow || out.contains_key("access-control-max-age")) {
        return Err("a 403 carries no Access-Control-Allow-* or -Max-Age".into());
    }
    if grants != body.is_empty() {
        return Err("a 204 or 200 has no body; a 403 names its reason".into());
    }
    Ok(())
}

/// No vector passes vacuously: with any other verdict, or any other rule, status or response
/// value than the one it states, each case fails.
#[test]
fn every_vector_fails_when_its_expectation_is_wrong() {
    let file = vectors();
    let verdicts = [
        Expect::Allowed,
        Expect::Denied(Reason::NoRule),
        Expect::Denied(Reason::Origin),
        Expect::Denied(Reason::Method),
        Expect::Denied(Reason::Headers),
        Expect::Denied(Reason::Malformed),
        Expect::Credentials,
        Expect::Forward,
        Expect::NotPreflight,
    ];
    let mut mutants = 0;
    let mut survivors = Vec::new();
    for suite in &file.suites {
        let policy = suite.compile().expect("suite rules load");
        for case in &suite.cases {
            let mut wrong = Vec::new();
            for verdict in verdicts.iter().filter(|v| **v != case.expect) {
                let mut mutant = case.clone();
                mutant.expect = *verdict;
                wrong.push((format!("expect = {:?}", verdict.as_str()), mutant));
            }
            if let Some(rule) = &case.rule {
                let mut mutant = case.clone();
                mutant.rule = Some(format!("{rule}-not"));
                wrong.push(("another rule".into(), mutant));
            }
            if case.expect.is_answered() {
                let mut mutant = case.clone();
                mutant.status = Some(if case.expected_status() == Some(204) {
                    403
                } else {
                    204
                });
                wrong.push(("another status".into(), mutant));
            }
            for index in 0..case.response.len() {
                let mut mutant = case.clone();
                mutant.response[index].1.push('x');
                wrong.push((format!("another {}", case.response[index].0), mutant));
            }
            for index in 0..case.absent.len() {
                // A header that must be absent, required instead with some value.
                let mut mutant = case.clone();
                let name = mutant.absent.remove(index);
                mutant.response.push((name.clone(), "x".into()));
                wrong.push((format!("{name} present"), mutant));
            }
            for (what, mutant) in wrong {
                mutants += 1;
                if check(&policy, &mutant).passed() {
                    survivors.push(format!("{} with {what}", case.name));
                }
            }
        }
    }
    assert!(mutants > 700, "only {mutants} mutants");
    assert!(
        survivors.is_empty(),
        "these wrong expectations pass:\n{}",
        survivors.join("\n")
    );
}
