//! `preflightd check` and `explain`, run as the real binary.

use crate::support::{preflightd, stdout};

#[test]
fn check_passes_the_shipped_rules() {
    let out = preflightd(&["check", "rules/"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert_eq!(stdout(&out), "rules/: 5 rules, 0 errors, 0 warnings\n");
}

#[test]
fn check_prints_every_error_and_exits_1() {
    let out = preflightd(&["check", "tests/data/invalid/several.toml", "rules/"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 7, "{text}");
    assert!(text.contains(
        "tests/data/invalid/several.toml:4:12: rule \"one\": invalid method \"G ET\": not an HTTP token (RFC 9110 5.6.2)\n"
    ));
    assert!(
        text.contains("tests/data/invalid/several.toml: 5 errors, 0 warnings (rules not loaded)\n")
    );
    assert!(text.ends_with("rules/: 5 rules, 0 errors, 0 warnings\n"));
}

#[test]
fn warnings_fail_only_with_deny_warnings() {
    let out = preflightd(&["check", "tests/data/lints.toml"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).ends_with("9 rules, 0 errors, 9 warnings\n"));
    let out = preflightd(&["check", "--deny-warnings", "tests/data/lints.toml"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(preflightd(&["check"]).status.code(), Some(2));
    assert_eq!(preflightd(&["frobnicate"]).status.code(), Some(2));
    let out = preflightd(&[
        "explain",
        "--rules",
        "rules",
        "--origin",
        "https://a.example.com",
        "--method",
        "PUT",
        "--url",
        "http://[bad",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn explain_names_the_answering_rule_and_why_the_others_do_not() {
    let out = preflightd(&[
        "explain",
        "--rules",
        "rules/",
        "--origin",
        "https://app.example.com",
        "--method",
        "PUT",
        "--headers",
        "content-type",
        "--url",
        "https://api.example.com/v1/users",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(
        text.contains("rule \"web-app\" (rules/example.toml:14:1): ANSWERS"),
        "{text}"
    );
    assert!(text.contains("rule \"uploads\" (rules/example.toml:55:1): scope: host \"api.example.com\" is not in hosts [\"uploads.example.com\"]"), "{text}");
    assert!(text.contains("answer: 204 No Content (allowed by rule \"web-app\")\n  access-control-allow-origin: https://app.example.com\n  access-control-allow-credentials: true\n"), "{text}");
}

#[test]
fn explain_names_the_header_at_fault_and_the_authorization_carve_out() {
    let out = preflightd(&[
        "explain",
        "--rules",
        "rules/",
        "--origin",
        "https://pr-7.preview.example.com",
        "--method",
        "PATCH",
        "--headers",
        "Authorization, x-trace",
        "--url",
        "https://api.example.com/v3/x",
    ]);
    let text = stdout(&out);
    assert!(
        text.contains("rule \"previews\" (rules/example.toml:29:1): headers: [\"authorization\"] not in headers [\"*\"] (\"*\" never covers authorization: list it by name)"),
        "{text}"
    );
    assert!(
        text.contains("answer: 403 Forbidden (denied: headers (closest rule \"previews\"))"),
        "{text}"
    );
    assert!(
        text.contains("  body: CORS preflight denied: headers not allowed\n"),
        "{text}"
    );
}

#[test]
fn explain_warns_when_credentials_are_used_but_not_allowed() {
    let out = preflightd(&[
        "explain",
        "--rules",
        "rules/",
        "--origin",
        "https://pr-7.preview.example.com",
        "--method",
        "GET",
        "--url",
        "https://api.example.com/v3/x",
        "--credentials",
    ]);
    let text = stdout(&out);
    assert!(
        text.contains(
            "note: the request uses credentials but rule \"previews\" has credentials = false"
        ),
        "{text}"
    );
}
