//! Helpers shared by the integration tests.

use preflightd::policy::{Policy, compile};
use preflightd::rules::{Source, load_sources};

/// Compiles rules text that must be valid.
pub fn policy(text: &str) -> Policy {
    let loaded = load_sources(&[Source {
        name: "test.toml".into(),
        text: text.to_owned(),
    }]);
    let Some(rules) = loaded.rules else {
        let errors: Vec<String> = loaded.diagnostics.iter().map(|d| d.to_string()).collect();
        panic!("rules do not load:\n{}", errors.join("\n"));
    };
    compile(rules).unwrap_or_else(|e| panic!("rules do not compile: {e}"))
}

/// Expands `REPEAT(text,N)` (text repeated N times) so the data files can state long inputs
/// exactly. The count is the part after the last comma, so the text may hold commas.
pub fn expand(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("REPEAT(") {
        out.push_str(&rest[..start]);
        let after = &rest[start + "REPEAT(".len()..];
        let close = after.find(')').expect("REPEAT( without )");
        let (text, count) = after[..close].rsplit_once(',').expect("REPEAT(text,N)");
        out.push_str(&text.repeat(count.parse().expect("REPEAT count")));
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

#[test]
fn expand_repeats() {
    assert_eq!(expand("a-REPEAT(x,,3)-b"), "a-x,x,x,-b");
    assert_eq!(expand("REPEAT(ab,2)"), "abab");
    assert_eq!(expand("plain"), "plain");
}
