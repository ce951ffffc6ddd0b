//! `preflightd test RULES CASES...`, run as the real binary: the shipped example passes, a
//! wrong expectation fails naming its case, line and both answers, every invalid input exits
//! 2 with its place, the project's own vectors pass through it; and the example's
//! expectations hold against a running server, so what `test` predicts is what is served.

use std::path::Path;
use std::process::Command;

use preflightd::cases::{self, CasesFile, Expect, MAX_VALUE_BYTES};

use crate::support::{Preflightd, Upstream, preflightd, send, stderr, stdout};

const EXAMPLE: &str = "rules/tests/example.toml";

/// A cases file parsed in process, to count its cases independently of the binary.
fn parsed(path: &str) -> CasesFile {
    let text = std::fs::read_to_string(path).expect("read cases");
    cases::parse(path.into(), &text).unwrap_or_else(|e| panic!("{path}: {e:?}"))
}

fn count(file: &CasesFile) -> usize {
    file.cases.len() + file.suites.iter().map(|s| s.cases.len()).sum::<usize>()
}

/// The 1-based line of the `[[case]]` whose `name` line is `name = "<name>"`.
fn case_line(text: &str, name: &str) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| *l == format!("name = {name:?}"))
        .unwrap_or_else(|| panic!("no case {name:?}"));
    lines[..at]
        .iter()
        .rposition(|l| l.starts_with("[[case]]") || l.starts_with("[[suite.case]]"))
        .expect("case header")
        + 1
}

/// The example with `from` replaced by `to` once, inside the case named `name`.
fn edited_example(dir: &Path, name: &str, from: &str, to: &str) -> (String, String) {
    let text = std::fs::read_to_string(EXAMPLE).expect("read example");
    let start = text
        .find(&format!("name = {name:?}"))
        .unwrap_or_else(|| panic!("no case {name:?}"));
    let at = start + text[start..].find(from).expect("text to edit in the case");
    let edited = format!("{}{to}{}", &text[..at], &text[at + from.len()..]);
    let path = dir.join("example.toml").display().to_string();
    std::fs::write(&path, &edited).expect("write edited example");
    (path, edited)
}

#[test]
fn the_shipped_example_passes() {
    let total = count(&parsed(EXAMPLE));
    assert!(
        total >= 15,
        "the example covers every verdict: {total} cases"
    );
    for cases_path in ["rules/tests/", EXAMPLE] {
        let out = preflightd(&["test", "rules/", cases_path]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}{}",
            stdout(&out),
            stderr(&out)
        );
        assert_eq!(stdout(&out), format!("{total} passed, 0 failed\n"));
        assert_eq!(stderr(&out), "");
    }
    // Every verdict is shown in the example.
    let file = parsed(EXAMPLE);
    let shown: Vec<&str> = file
        .cases
        .iter()
        .chain(file.suites.iter().flat_map(|s| &s.cases))
        .map(|c| c.expect.as_str())
        .collect();
    for word in Expect::WORDS {
        assert!(shown.contains(&word), "the example shows no {word:?} case");
    }
}

#[test]
fn a_wrong_expectation_fails_naming_the_case_its_line_and_both_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let name = "the web app may not send x-api-key";
    let (path, text) = edited_example(
        dir.path(),
        name,
        "expect = \"headers\"",
        "expect = \"allowed\"",
    );
    let total = count(&parsed(EXAMPLE));
    let out = preflightd(&["test", "rules/", &path]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let line = case_line(&text, name);
    assert_eq!(
        stdout(&out),
        format!(
            "FAIL {name} ({path}:{line})\n  expected: allowed, rule \"web-app\"\n  actual:   denied: headers, rule \"web-app\", status 403\n{} passed, 1 failed\n",
            total - 1
        )
    );
}

#[test]
fn a_wrong_header_rule_or_status_is_named_with_both_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let name = "a preview deployment may send any method and header but authorization";
    let (path, text) = edited_example(
        dir.path(),
        name,
        "access-control-max-age = \"600\"",
        "access-control-max-age = \"60\"\naccess-control-allow-credentials = \"true\"",
    );
    let line = case_line(&text, name);
    let out = preflightd(&["test", "rules/", &path]);
    assert_eq!(out.status.code(), Some(1));
    // In the order the case lists them.
    assert!(
        stdout(&out).starts_with(&format!(
            "FAIL {name} ({path}:{line})\n  expected: allowed, rule \"previews\"\n  actual:   allowed, rule \"previews\", status 204\n  header access-control-max-age: expected \"60\", actual \"600\"\n  header access-control-allow-credentials: expected \"true\", actual absent\n"
        )),
        "{}",
        stdout(&out)
    );

    let name = "any https page may upload with its metadata headers";
    let (path, _) = edited_example(
        dir.path(),
        name,
        "rule = \"uploads\"",
        "rule = \"upload\"\nstatus = 200",
    );
    let out = preflightd(&["test", "rules/", &path]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("  rule: expected \"upload\", actual \"uploads\" (the rules have no rule of that name)\n  status: expected 200, actual 204\n"),
        "{text}"
    );
}

#[test]
fn a_credentialed_request_the_browser_would_block_is_not_allowed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let name = "previews are allowed without cookies only";
    let (path, text) = edited_example(
        dir.path(),
        name,
        "expect = \"credentials\"",
        "expect = \"allowed\"",
    );
    let line = case_line(&text, name);
    let out = preflightd(&["test", "rules/", &path]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).starts_with(&format!(
            "FAIL {name} ({path}:{line})\n  expected: allowed, rule \"previews\"\n  actual:   credentials (the browser blocks the credentialed request), rule \"previews\", status 204, answered without Access-Control-Allow-Credentials: true\n"
        )),
        "{}",
        stdout(&out)
    );
    let name = "the public status page never takes cookies";
    let (path, _) = edited_example(
        dir.path(),
        name,
        "expect = \"credentials\"",
        "expect = \"allowed\"",
    );
    let out = preflightd(&["test", "rules/", &path]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains(", rule \"public-status\", status 204, answered without Access-Control-Allow-Credentials: true\n"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn an_invalid_cases_file_exits_2_with_every_place_and_runs_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml").display().to_string();
    std::fs::write(
        &path,
        r#"[[case]]
name = "typo"
origin = "https://app.example.com"
method = "PUT"
expet = "allowed"

[[case]]
name = "types"
origin = "https://app.example.com"
method = "PUT"
headers = "content-type"
credentials = "yes"
expect = "allowed"

[[case]]
name = "old keys"
desc = "a vector in the old format"
origin = "https://app.example.com"
acrm = "PUT"
expect = "allowed"
[case.headers]
vary = "Origin"

[[case]]
name = "no expectation"
origin = "https://app.example.com"
method = "PUT"
"#,
    )
    .expect("write");
    let out = preflightd(&["test", "rules/", &path, EXAMPLE]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stdout(&out), "", "no case runs");
    let expected = [
        format!(
            "{path}:1:1: case \"typo\": missing required key \"expect\" (\"allowed\", \"no_rule\", \"origin\", \"method\", \"headers\", \"malformed\", \"credentials\", \"forward\", \"not_preflight\")"
        ),
        format!("{path}:5:1: case \"typo\": unknown key \"expet\" (did you mean \"expect\"?)"),
        format!(
            "{path}:11:11: case \"types\": \"headers\" must be an array of strings, found string"
        ),
        format!(
            "{path}:12:15: case \"types\": \"credentials\" must be true or false, found string"
        ),
        format!(
            "{path}:17:1: case \"old keys\": unknown key \"desc\": the vector format's \"desc\" is now \"name\""
        ),
        format!(
            "{path}:15:1: case \"old keys\": missing required key \"method\" (method_lines = [] sends no access-control-request-method field)"
        ),
        format!(
            "{path}:19:1: case \"old keys\": unknown key \"acrm\": the vector format's \"acrm\" is now \"method\" (\"method_lines\" for exact field lines)"
        ),
        format!(
            "{path}:21:7: case \"old keys\": \"headers\" lists the requested header names; write the expected response headers under [case.response] (in a suite, [suite.case.response])"
        ),
        format!(
            "{path}:24:1: case \"no expectation\": missing required key \"expect\" (\"allowed\", \"no_rule\", \"origin\", \"method\", \"headers\", \"malformed\", \"credentials\", \"forward\", \"not_preflight\")"
        ),
        "9 errors: no case was run".to_owned(),
    ];
    let text = stderr(&out);
    let mut got: Vec<&str> = text.lines().collect();
    let mut want: Vec<&str> = expected.iter().map(String::as_str).collect();
    // Sorted by place: compare as sets of lines, then the summary comes last.
    assert_eq!(got.pop(), want.pop(), "{text}");
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want, "{text}");
}

#[test]
fn missing_unreadable_and_oversized_inputs_exit_2_naming_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.toml").display().to_string();
    let out = preflightd(&["test", "rules/", &missing]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "{missing}: cannot read: No such file or directory (os error 2)\n1 error: no case was run\n"
        )
    );

    // A directory without cases files, and a FIFO (which must not block the read).
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    let fifo = dir.path().join("fifo.toml");
    let status = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(status.success());
    let out = preflightd(&[
        "test",
        "rules/",
        &empty.display().to_string(),
        &fifo.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "{}: no *.toml cases files in this directory\n{}: cannot read: not a regular file\n2 errors: no case was run\n",
            empty.display(),
            fifo.display()
        )
    );

    // One byte over the size bound.
    let big = dir.path().join("big.toml");
    let mut text = std::fs::read(EXAMPLE).expect("example");
    text.resize(16 * 1024 * 1024 + 1, b'\n');
    std::fs::write(&big, text).expect("write");
    let out = preflightd(&["test", "rules/", &big.display().to_string()]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "{}: cannot read: larger than 16777216 bytes, the most a cases file may hold\n1 error: no case was run\n",
            big.display()
        )
    );
    // At the bound, the same file runs.
    let mut text = std::fs::read(EXAMPLE).expect("example");
    text.resize(16 * 1024 * 1024, b'\n');
    std::fs::write(&big, text).expect("write");
    let out = preflightd(&["test", "rules/", &big.display().to_string()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn rules_that_do_not_load_and_usage_errors_exit_2() {
    let out = preflightd(&["test", "tests/data/invalid/several.toml", EXAMPLE]);
    assert_eq!(out.status.code(), Some(2));
    let text = stderr(&out);
    assert!(
        text.contains("tests/data/invalid/several.toml:4:12: rule \"one\": invalid method \"G ET\": not an HTTP token (RFC 9110 5.6.2)\n"),
        "{text}"
    );
    assert!(
        text.contains("tests/data/invalid/several.toml: the rules have errors"),
        "{text}"
    );
    assert_eq!(stdout(&out), "");

    // `-`: no rules, so [[case]] tables have nothing to run against.
    let out = preflightd(&["test", "-", EXAMPLE]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "{EXAMPLE}:11:1: [[case]] tables run against RULES, and RULES is \"-\" (none): give a rules file or directory, or put the cases in a [[suite]] with its own rules\n1 error: no case was run\n"
        )
    );

    // Arguments swapped: the rules file read as cases says so.
    let out = preflightd(&["test", EXAMPLE, "rules/example.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("rules/example.toml:5:2: unknown key \"settings\": this is a rules file; a cases file holds [[case]] and [[suite]] tables (preflightd test RULES CASES...)\n"),
        "{}",
        stderr(&out)
    );

    assert_eq!(preflightd(&["test"]).status.code(), Some(2));
    assert_eq!(preflightd(&["test", "rules/"]).status.code(), Some(2));
}

#[test]
fn a_suite_with_invalid_rules_names_the_place_in_the_cases_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("suite.toml").display().to_string();
    std::fs::write(
        &path,
        "[[suite]]\nname = \"s\"\nrules = '''\n[[rule]]\nname = \"web\"\norigins = [\"https://*.com\"]\nmethods = [\"G ET\"]\n'''\n\n[[suite.case]]\nname = \"c\"\norigin = \"https://a.example.com\"\nmethod = \"GET\"\nexpect = \"origin\"\n",
    )
    .expect("write");
    let out = preflightd(&["test", "-", &path]);
    assert_eq!(out.status.code(), Some(2));
    let text = stderr(&out);
    assert!(
        text.contains(&format!(
            "{path}:6:12: rule \"web\": origin \"https://*.com\" is a glob over the public suffix"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{path}:7:12: rule \"web\": invalid method \"G ET\""
        )),
        "{text}"
    );
    assert!(text.ends_with("2 errors: no case was run\n"), "{text}");
}

#[test]
fn a_repeat_past_its_bound_exits_2_with_its_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("repeat.toml").display().to_string();
    let at_bound = format!("REPEAT(a,{})", MAX_VALUE_BYTES - "https://".len());
    let over = format!("REPEAT(a,{})", MAX_VALUE_BYTES);
    let case = |name: &str, repeat: &str| {
        format!(
            "[[case]]\nname = {name:?}\norigin = \"https://{repeat}\"\nmethod = \"GET\"\nexpect = \"malformed\"\n\n"
        )
    };
    std::fs::write(&path, case("at the bound", &at_bound)).expect("write");
    let out = preflightd(&["test", "rules/", &path]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "1 passed, 0 failed\n");

    std::fs::write(&path, case("one byte over", &over)).expect("write");
    let out = preflightd(&["test", "rules/", &path]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "{path}:3:10: case \"one byte over\": origin: the value expands to more than {MAX_VALUE_BYTES} bytes (REPEAT limit)\n1 error: no case was run\n"
        )
    );

    // An empty text with the largest count passes the size check at 0 bytes: it must add
    // nothing at once, never loop over the count (the run is bounded; a hang fails it).
    std::fs::write(
        &path,
        "[[case]]\nname = \"empty repeat\"\norigin = \"https://REPEAT(,18446744073709551615)a.test\"\nmethod = \"GET\"\nexpect = \"origin\"\n",
    )
    .expect("write");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_preflightd"))
        .args(["test", "rules/", &path])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "REPEAT(,huge) must not hang"
    );

    // 17 values at the bound: past the file's 64 MiB in all.
    let text: String = (0..17).map(|i| case(&format!("n{i}"), &at_bound)).collect();
    std::fs::write(&path, text).expect("write");
    let out = preflightd(&["test", "rules/", &path]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("case \"n16\": origin: the file's REPEAT values expand to more than 67108864 bytes in all\n"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_project_vectors_run_through_the_binary() {
    let total = count(&parsed("tests/data/preflight.toml"));
    let out = preflightd(&["test", "-", "tests/data/preflight.toml"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(stdout(&out), format!("{total} passed, 0 failed\n"));
}

/// What `preflightd test` says of the example is what a running server answers: every case
/// sent on the wire to `serve` with the same rules in front of a real upstream.
#[test]
fn the_example_holds_against_the_running_server() {
    let upstream = Upstream::start();
    let file = parsed(EXAMPLE);
    let rules = std::fs::read_to_string("rules/example.toml").expect("example rules");
    let mut checked = 0;
    let mut failures = Vec::new();
    let mut run = |edge: &Preflightd, cases: &[cases::Case]| {
        for case in cases {
            let request = &case.request;
            let mut raw = format!(
                "{} {} HTTP/1.1\r\nHost: {}\r\n",
                request.method, request.path, request.authority
            );
            for (name, value) in &request.headers {
                let value = value.to_str().expect("ASCII example values");
                raw.push_str(&format!("{name}: {value}\r\n"));
            }
            raw.push_str("Connection: close\r\n\r\n");
            let response = send(edge.data, &raw);
            checked += 1;
            let mut wrong = Vec::new();
            match case.expected_status() {
                // Proxied: the upstream answers.
                None => {
                    if response.status != 200 || !response.text().contains("\"OPTIONS\"") {
                        wrong.push(format!("not proxied: {}", response.status_line));
                    }
                }
                Some(status) => {
                    if response.status != status {
                        wrong.push(format!("status {}, expected {status}", response.status));
                    }
                    for (name, value) in &case.response {
                        if response.header(name.as_str()) != Some(value.as_str()) {
                            wrong.push(format!(
                                "{name}: {:?}, expected {value:?}",
                                response.header(name.as_str())
                            ));
                        }
                    }
                    for name in &case.absent {
                        if let Some(value) = response.header(name.as_str()) {
                            wrong.push(format!("{name}: {value:?}, expected absent"));
                        }
                    }
                    if case.expect == Expect::Credentials
                        && response.header("access-control-allow-credentials") == Some("true")
                        && response.header("access-control-allow-origin") != Some("*")
                    {
                        wrong.push("a credentialed request would pass".into());
                    }
                }
            }
            if !wrong.is_empty() {
                failures.push(format!(
                    "{} ({}): {}",
                    case.name,
                    case.location,
                    wrong.join("; ")
                ));
            }
        }
    };
    let edge = Preflightd::start(&rules, Some(&upstream.url()), &[]);
    run(&edge, &file.cases);
    drop(edge);
    for suite in &file.suites {
        let edge = Preflightd::start(&suite.rules, Some(&upstream.url()), &[]);
        run(&edge, &suite.cases);
    }
    assert_eq!(checked, count(&file));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
