//! `preflightd test RULES CASES...`: operators' own expectations, in CI, the way
//! `promtool test rules` tests Prometheus alerts (README, *Testing your rules*). Exit 0 when
//! every case passes, 1 when one fails, 2 for usage errors and invalid rules or cases files.

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use preflightd::cases::{self, CasesFile};
use preflightd::policy::{self, Policy};
use preflightd::rules::load_path;

use super::TestArgs;

/// The largest cases file read: 100 000 cases are about 10 MB, and `REPEAT` states long
/// values without holding them.
pub const MAX_CASES_FILE_BYTES: u64 = 16 << 20;

const USAGE: u8 = 2;

pub fn run(args: &TestArgs) -> ExitCode {
    let mut errors: Vec<String> = Vec::new();
    let policy = if args.rules.as_os_str() == "-" {
        None
    } else {
        load_rules(&args.rules, &mut errors)
    };
    let mut files: Vec<CasesFile> = Vec::new();
    for path in &args.cases {
        for read in read_cases(path) {
            match read {
                Ok((name, text)) => match cases::parse(name, &text) {
                    Ok(file) => files.push(file),
                    Err(diagnostics) => errors.extend(diagnostics.iter().map(|d| d.to_string())),
                },
                Err(error) => errors.push(error),
            }
        }
    }
    if !errors.is_empty() {
        return usage_failure(&errors);
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let result = cases::run(&files, policy.as_ref(), |case, checked| {
        if !checked.passed() {
            let _ = out.write_all(cases::report(case, checked).as_bytes());
        }
    });
    match result {
        Ok(summary) => {
            let _ = writeln!(out, "{summary}");
            if summary.failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(diagnostics) => {
            drop(out);
            let errors: Vec<String> = diagnostics.iter().map(|d| d.to_string()).collect();
            usage_failure(&errors)
        }
    }
}

fn usage_failure(errors: &[String]) -> ExitCode {
    for error in errors {
        eprintln!("{error}");
    }
    let plural = if errors.len() == 1 { "" } else { "s" };
    eprintln!("{} error{plural}: no case was run", errors.len());
    ExitCode::from(USAGE)
}

/// The rules, compiled; `None` with the errors added when they do not load.
fn load_rules(path: &Path, errors: &mut Vec<String>) -> Option<Policy> {
    let loaded = load_path(path);
    let Some(rules) = loaded.rules else {
        errors.extend(loaded.errors().map(|d| d.to_string()));
        errors.push(format!(
            "{}: the rules have errors (`preflightd check` lists them with the warnings)",
            path.display()
        ));
        return None;
    };
    match policy::compile(rules) {
        Ok(policy) => Some(policy),
        Err(e) => {
            let file = Arc::from(path.display().to_string());
            errors.push(e.diagnostic(Some(file)).to_string());
            None
        }
    }
}

/// The cases files at `path`: the file, or a directory's `*.toml` files in name order
/// (dot-files skipped), each as (the name places are reported against, its text).
fn read_cases(path: &Path) -> Vec<Result<(Arc<str>, String), String>> {
    let shown = path.display();
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(e) => return vec![Err(format!("{shown}: cannot read: {e}"))],
    };
    if !metadata.is_dir() {
        return vec![read_file(path)];
    }
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) => return vec![Err(format!("{shown}: cannot read directory: {e}"))],
    };
    let mut names = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !name.starts_with('.') && name.ends_with(".toml") {
                    names.push(name);
                }
            }
            Err(e) => return vec![Err(format!("{shown}: cannot read directory: {e}"))],
        }
    }
    if names.is_empty() {
        return vec![Err(format!(
            "{shown}: no *.toml cases files in this directory"
        ))];
    }
    names.sort();
    names
        .iter()
        .map(|name| read_file(&path.join(name)))
        .collect()
}

/// One cases file: a regular file (a FIFO or a device would block or never end), UTF-8, at
/// most [`MAX_CASES_FILE_BYTES`].
fn read_file(path: &Path) -> Result<(Arc<str>, String), String> {
    let shown = path.display();
    let cannot = |why: String| format!("{shown}: cannot read: {why}");
    let metadata = std::fs::metadata(path).map_err(|e| cannot(e.to_string()))?;
    if !metadata.is_file() {
        return Err(cannot("not a regular file".to_owned()));
    }
    let file = std::fs::File::open(path).map_err(|e| cannot(e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(MAX_CASES_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| cannot(e.to_string()))?;
    if bytes.len() as u64 > MAX_CASES_FILE_BYTES {
        return Err(cannot(format!(
            "larger than {MAX_CASES_FILE_BYTES} bytes, the most a cases file may hold"
        )));
    }
    let text = String::from_utf8(bytes)
        .map_err(|e| cannot(format!("not UTF-8 (byte {})", e.utf8_error().valid_up_to())))?;
    Ok((Arc::from(shown.to_string()), text))
}
