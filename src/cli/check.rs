//! `preflightd check PATH...`: every error and warning, then a summary line per path.

use std::process::ExitCode;

use preflightd::policy;
use preflightd::rules::load_path;

use super::CheckArgs;

pub fn run(args: &CheckArgs) -> ExitCode {
    let mut failed = false;
    for path in &args.paths {
        let loaded = load_path(path);
        let mut diagnostics = loaded.diagnostics;
        let mut rule_count = 0;
        if let Some(rules) = loaded.rules {
            rule_count = rules.rules.len();
            // Compiling catches the one thing validation cannot: regexes too large together.
            if let Err(e) = policy::compile(rules) {
                let file = std::sync::Arc::from(path.display().to_string());
                diagnostics.push(e.diagnostic(Some(file)));
            }
        }
        let errors = diagnostics.iter().filter(|d| d.is_error()).count();
        let warnings = diagnostics.len() - errors;
        for diagnostic in &diagnostics {
            println!("{diagnostic}");
        }
        let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
        let summary = if errors > 0 {
            format!(
                "{}, {} (rules not loaded)",
                plural(errors, "error"),
                plural(warnings, "warning")
            )
        } else {
            format!(
                "{}, {}, {}",
                plural(rule_count, "rule"),
                plural(errors, "error"),
                plural(warnings, "warning")
            )
        };
        println!("{}: {summary}", path.display());
        failed |= errors > 0 || (args.deny_warnings && warnings > 0);
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
