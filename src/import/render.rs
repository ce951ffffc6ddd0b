//! The translated rules as a rules file: TOML text with a header saying where it came from
//! and why each setting is chosen, and above each rule the vendor rule it came from.

use super::source::{Place, SourceRule};
use super::translate::{Methods, Origins, Profile, Translated};
use crate::rules::toml_value::{toml_list, toml_string};

/// What scopes every imported rule, and where the input came from.
pub struct Frame<'a> {
    pub file: &'a str,
    pub flag: &'a str,
    pub hosts: &'a [String],
    pub paths: &'a [String],
}

/// A comment line; vendor text never breaks out of it.
fn comment(out: &mut String, text: &str) {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    out.push_str("# ");
    out.push_str(&clean);
    out.push('\n');
}

fn where_written(file: &str, rule: &SourceRule) -> String {
    match rule.place() {
        Place::File => file.to_owned(),
        Place::Line(line, _) => format!("{file} line {line}"),
        Place::Path(path) => format!("{file} {path}"),
    }
}

/// Rule names from the vendors' IDs (`[a-z0-9_-]`, at most 64, unique), `rule-N` without one.
pub fn rule_names(rules: &[SourceRule], prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for rule in rules {
        let mut slug = String::new();
        for c in rule.id.as_deref().unwrap_or("").chars() {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                slug.push(c);
            } else if !slug.ends_with('-') {
                slug.push('-');
            }
        }
        let slug = slug.trim_matches('-');
        let base = if slug.is_empty() {
            format!("rule-{}", rule.index)
        } else {
            slug.to_owned()
        };
        let mut name = format!("{prefix}{base}");
        name.truncate(64);
        if names.contains(&name) {
            let suffix = format!("-{}", rule.index);
            name.truncate(64 - suffix.len());
            name.push_str(&suffix);
        }
        names.push(name);
    }
    names
}

pub fn render(profile: &Profile, frame: &Frame<'_>, translated: &[Translated]) -> String {
    let vendor = profile.name;
    let mut out = String::new();
    let count = translated.iter().map(|t| t.parts.len()).sum::<usize>();
    comment(
        &mut out,
        &format!(
            "preflightd rules imported from {vendor}'s CORS configuration in {} (`preflightd \
             import --from {}`):",
            frame.file, frame.flag
        ),
    );
    comment(
        &mut out,
        &format!(
            "{} {vendor} rule(s) became {count} rule(s), in the same order (first match wins).",
            translated.len()
        ),
    );
    comment(&mut out, "");
    comment(&mut out, &format!("Chosen to answer as {vendor} does:"));
    for line in [
        format!("- preflight_status = 200: {vendor} answers an allowed preflight 200 OK."),
        format!("- unmatched = \"reject\": {vendor} refuses (403) a preflight no rule allows."),
        format!(
            "- actual_responses = \"fill\": {vendor} adds Access-Control-Allow-Origin and \
             -Expose-Headers to actual responses; fill adds the rule's to proxied responses \
             that lack them."
        ),
        format!(
            "- only_listed_methods = true on every rule: {vendor} refuses a preflight for a \
             method the rule does not list, GET, HEAD and POST included."
        ),
        if profile.credentials {
            format!(
                "- credentials = true on every rule without \"*\": {vendor} answers an origin it \
                 echoes with Access-Control-Allow-Credentials: true."
            )
        } else {
            format!("- no credentials: {vendor} sends no Access-Control-Allow-Credentials.")
        },
        format!(
            "- a \"*\" header list also names authorization: {vendor} answers with the \
             requested names, and browsers never let \"*\" alone cover authorization."
        ),
    ] {
        comment(&mut out, &line);
    }
    if profile.selects_by_origin_and_method {
        comment(
            &mut out,
            &format!(
                "- {vendor} picks the first rule whose origin and method match and denies when \
                 its headers do not: later rules keep only what no earlier rule takes first."
            ),
        );
    }
    out.push_str("\n[settings]\npreflight_status = 200\nunmatched = \"reject\"\nactual_responses = \"fill\"\n");
    for t in translated {
        out.push('\n');
        let header = match &t.source.id {
            Some(id) => format!(
                "{vendor} rule #{} ID {:?} ({})",
                t.source.index,
                id,
                where_written(frame.file, &t.source)
            ),
            None => format!(
                "{vendor} rule #{} ({})",
                t.source.index,
                where_written(frame.file, &t.source)
            ),
        };
        comment(&mut out, &header);
        for note in &t.notes {
            comment(&mut out, note);
        }
        for (k, part) in t.parts.iter().enumerate() {
            if k > 0 {
                out.push('\n');
                comment(&mut out, &format!("{header}, continued"));
            }
            for line in &part.comments {
                comment(&mut out, line);
            }
            out.push_str("[[rule]]\n");
            out.push_str(&format!("name = {}\n", toml_string(&part.name)));
            if !frame.hosts.is_empty() {
                out.push_str(&format!("hosts = {}\n", toml_list(frame.hosts)));
            }
            if !frame.paths.is_empty() {
                out.push_str(&format!("paths = {}\n", toml_list(frame.paths)));
            }
            let origins: Vec<String> = match &part.origins {
                Origins::Any => vec!["*".to_owned()],
                Origins::List(list) => list.iter().map(|o| o.text.clone()).collect(),
            };
            out.push_str(&format!("origins = {}\n", toml_list(&origins)));
            let methods: Vec<String> = match &part.methods {
                Methods::Any => vec!["*".to_owned()],
                Methods::List(list) => list.clone(),
            };
            out.push_str(&format!("methods = {}\n", toml_list(&methods)));
            out.push_str("only_listed_methods = true\n");
            let headers = part.headers.written();
            if !headers.is_empty() {
                out.push_str(&format!("headers = {}\n", toml_list(&headers)));
            }
            if !part.expose.is_empty() {
                out.push_str(&format!("expose = {}\n", toml_list(&part.expose)));
            }
            if part.credentials {
                out.push_str("credentials = true\n");
            }
            out.push_str(&format!("max_age = {}\n", part.max_age));
            for opt_in in &part.opt_ins {
                comment(&mut out, &opt_in.why);
                out.push_str(&format!("{} = true\n", opt_in.key));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_comments_cannot_break_out() {
        assert_eq!(toml_string("a\"b\\c\nd"), "\"a\\\"b\\\\c\\u000Ad\"");
        let mut out = String::new();
        comment(&mut out, "x\n[[rule]]");
        assert_eq!(out, "# x [[rule]]\n");
    }

    #[test]
    fn names_come_from_ids_and_stay_unique() {
        let rule = |index: usize, id: Option<&str>| SourceRule {
            index,
            id: id.map(str::to_owned),
            ..SourceRule::default()
        };
        let rules = [
            rule(1, Some("Allow Localhost")),
            rule(2, None),
            rule(3, Some("allow--localhost!")),
            rule(4, Some("***")),
            rule(5, Some(&"x".repeat(80))),
        ];
        assert_eq!(
            rule_names(&rules, "s3-"),
            [
                "s3-allow-localhost",
                "s3-rule-2",
                "s3-allow-localhost-3",
                "s3-rule-4",
                &format!("s3-{}", "x".repeat(61)),
            ]
        );
    }
}
