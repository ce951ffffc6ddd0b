//! `preflightd explain` prescribes (DESIGN 12): the smallest edit that allows a denied
//! preflight, naming rule, file and line, never one `check` refuses; the form browsers send
//! for an origin no browser sends; near misses; `--exit-code`.

use std::process::{Command, Output};

use crate::support::stdout;

fn explain(
    rules: &str,
    origin: &str,
    method: &str,
    headers: &str,
    url: &str,
    more: &[&str],
) -> Output {
    let mut args = vec![
        "explain",
        "--rules",
        rules,
        "--origin",
        origin,
        "--method",
        method,
        "--url",
        url,
        "--exit-code",
    ];
    if !headers.is_empty() {
        args.extend(["--headers", headers]);
    }
    args.extend(more);
    Command::new(env!("CARGO_BIN_EXE_preflightd"))
        .args(&args)
        .output()
        .expect("run preflightd")
}

fn text(output: &Output) -> String {
    stdout(output)
}

/// The `fix:` line (and what follows it), or "" when there is none.
fn fix(output: &Output) -> String {
    let text = text(output);
    text.split_once("\nfix: ")
        .map(|(_, fix)| fix.to_owned())
        .unwrap_or_default()
}

#[test]
fn a_missing_header_names_the_rule_file_and_line() {
    let out = explain(
        "rules/",
        "https://app.example.com",
        "PUT",
        "content-type, X-Api-Key",
        "https://api.example.com/v1/items",
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(
        fix(&out),
        "add \"x-api-key\" to headers of rule \"web-app\" (rules/example.toml:14)\n"
    );
}

#[test]
fn a_missing_method_is_added_to_the_rule_the_denial_names() {
    let out = explain(
        "rules/",
        "https://anyone.test",
        "PUT",
        "",
        "https://api.example.com/status",
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        fix(&out),
        "add \"PUT\" to methods of rule \"public-status\" (rules/example.toml:47)\n"
    );
}

#[test]
fn an_unlisted_origin_is_added_where_nothing_else_changes() {
    let out = explain(
        "rules/",
        "https://partner.test",
        "DELETE",
        "x-request-id",
        "https://api.example.com/v2/orders",
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        fix(&out),
        "add \"https://partner.test\" to origins of rule \"web-app\" (rules/example.toml:14)\n"
    );
}

#[test]
fn credentials_on_a_star_rule_list_the_origin_instead_and_check_accepts_the_fix() {
    let out = explain(
        "rules/",
        "https://status-page.test",
        "GET",
        "",
        "https://api.example.com/status",
        &["--credentials"],
    );
    // The edge allows, but the browser blocks a credentialed request answered with `*`.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let prescribed = fix(&out);
    assert!(
        !prescribed.contains("set credentials = true"),
        "{prescribed}"
    );
    assert!(
        prescribed.starts_with(
            "list the origin instead: rule \"public-status\" allows it through \"*\", which \
             cannot carry credentials; add this rule before rule \"public-status\" \
             (rules/example.toml:47):\n"
        ),
        "{prescribed}"
    );
    let rule = prescribed
        .split_once(":\n")
        .map(|(_, r)| r)
        .unwrap_or_default();
    assert_eq!(
        rule,
        "[[rule]]\nname = \"allow-origin\"\npaths = [\"/status\"]\norigins = \
         [\"https://status-page.test\"]\nmethods = [\"GET\"]\ncredentials = true\n\n"
    );
    // Applied where it says, the rules pass `check` and the request is allowed.
    let example = std::fs::read_to_string("rules/example.toml").expect("example");
    let marker = "# A public, read-only endpoint";
    assert!(example.contains(marker));
    let dir = tempfile::tempdir().expect("tempdir");
    let edited = dir.path().join("rules.toml");
    std::fs::write(
        &edited,
        example.replacen(marker, &format!("{rule}{marker}"), 1),
    )
    .expect("write");
    let edited = edited.to_str().expect("utf-8 path");
    let check = Command::new(env!("CARGO_BIN_EXE_preflightd"))
        .args(["check", edited])
        .output()
        .expect("check");
    assert_eq!(check.status.code(), Some(0), "{}", text(&check));
    let again = explain(
        edited,
        "https://status-page.test",
        "GET",
        "",
        "https://api.example.com/status",
        &["--credentials"],
    );
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert_eq!(fix(&again), "");
}

#[test]
fn an_origin_in_a_form_no_browser_sends_gets_the_form_browsers_send() {
    for (written, why) in [
        ("https://Shop.test", "\"https://shop.test\""),
        ("https://shop.test:443", "\"https://shop.test\""),
        ("https://shop.test/", "\"https://shop.test\""),
    ] {
        let out = explain(
            "rules/",
            written,
            "GET",
            "",
            "https://api.example.com/status",
            &[],
        );
        let text = text(&out);
        assert!(
            text.contains(&format!(
                "note: no browser sends the origin {written:?}; browsers send {why} (with it: \
                 allowed by rule \"public-status\")"
            )),
            "{text}"
        );
    }
}

#[test]
fn near_misses_by_scheme_port_and_one_label_are_named() {
    for (origin, listed, by) in [
        (
            "http://app.example.com",
            "https://app.example.com",
            "scheme",
        ),
        (
            "https://app.example.com:8443",
            "https://app.example.com",
            "port",
        ),
        (
            "https://app.example.co",
            "https://app.example.com",
            "one label",
        ),
    ] {
        let out = explain(
            "rules/",
            origin,
            "PUT",
            "",
            "https://api.example.com/v1/x",
            &[],
        );
        let text = text(&out);
        assert!(
            text.contains(&format!(
                "near miss: {listed:?} in rule \"web-app\" (rules/example.toml:19) differs by {by}"
            )),
            "{text}"
        );
    }
}

#[test]
fn exit_code_is_0_when_allowed_and_1_when_denied() {
    let allowed = explain(
        "rules/",
        "https://app.example.com",
        "PUT",
        "content-type",
        "https://api.example.com/v1/items",
        &["--credentials"],
    );
    assert_eq!(allowed.status.code(), Some(0), "{}", text(&allowed));
    assert_eq!(fix(&allowed), "");
    let denied = explain(
        "rules/",
        "https://evil.test",
        "PUT",
        "",
        "https://api.example.com/v1/x",
        &[],
    );
    assert_eq!(denied.status.code(), Some(1));
    // Without --exit-code, explain reports and exits 0 either way.
    let quiet = Command::new(env!("CARGO_BIN_EXE_preflightd"))
        .args([
            "explain",
            "--rules",
            "rules/",
            "--origin",
            "https://evil.test",
            "--method",
            "PUT",
            "--url",
            "https://api.example.com/v1/x",
        ])
        .output()
        .expect("run");
    assert_eq!(quiet.status.code(), Some(0));
}
