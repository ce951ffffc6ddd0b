//! `preflightd import --from VENDOR FILE`: a bucket's CORS configuration as a rules file, on
//! stdout or `-o PATH`. Exit 0 (warnings on stderr), 1 invalid input or a rule that cannot be
//! expressed without `--lossy`, 2 usage.

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

use preflightd::import::{self, Options, Vendor, source::MAX_INPUT_BYTES};

use super::{FromArg, ImportArgs};

pub fn run(args: &ImportArgs) -> ExitCode {
    if let Err(message) = check_usage(args) {
        eprintln!("error: {message}");
        return ExitCode::from(2);
    }
    let file = args.file.display().to_string();
    let input = match read_input(&args.file) {
        Ok(text) => text,
        Err(message) => {
            eprintln!("{file}: {message}");
            return ExitCode::FAILURE;
        }
    };
    let options = Options {
        vendor: match args.from {
            FromArg::S3 => Vendor::S3,
            FromArg::B2 => Vendor::B2,
            FromArg::Gcs => Vendor::Gcs,
            FromArg::Azure => Vendor::Azure,
            FromArg::R2 => Vendor::R2,
        },
        file: file.clone(),
        hosts: args.host.clone(),
        paths: args.path.clone(),
        name_prefix: args.name_prefix.clone(),
        lossy: args.lossy,
    };
    let imported = match import::import(&input, &options) {
        Ok(imported) => imported,
        Err(problems) => {
            for problem in &problems {
                eprintln!("{}", problem.render(&file));
            }
            let plural = if problems.len() == 1 { "" } else { "s" };
            eprintln!("{file}: {} error{plural}, nothing imported", problems.len());
            return ExitCode::FAILURE;
        }
    };
    for warning in &imported.warnings {
        eprintln!("warning: {warning}");
    }
    // The output must load as `serve` and `check` load it; anything else is a bug here.
    let output_name = args
        .output
        .as_ref()
        .map_or_else(|| "(stdout)".to_owned(), |p| p.display().to_string());
    let errors = import::check_output(&output_name, &imported.toml);
    if !errors.is_empty() {
        for error in &errors {
            eprintln!("{error}");
        }
        eprintln!("{file}: the imported rules do not load (a bug in `preflightd import`)");
        return ExitCode::FAILURE;
    }
    let written = match &args.output {
        Some(path) => write_atomically(path, &imported.toml),
        None => std::io::stdout()
            .write_all(imported.toml.as_bytes())
            .map_err(|e| format!("cannot write to stdout: {e}")),
    };
    if let Err(message) = written {
        eprintln!("{output_name}: {message}");
        return ExitCode::FAILURE;
    }
    eprintln!(
        "{file}: {} {} rule(s) imported as {} rule(s), {} warning(s)",
        imported.source_rules,
        import::flag(options.vendor),
        imported.rules,
        imported.warnings.len()
    );
    ExitCode::SUCCESS
}

/// Flags checked before anything is read: each is written into every rule.
fn check_usage(args: &ImportArgs) -> Result<(), String> {
    let prefix = &args.name_prefix;
    if prefix.len() > 32
        || !prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "invalid --name-prefix {prefix:?}: at most 32 of [a-z0-9_-] (rule names are \
             [a-z0-9_-]{{1,64}})"
        ));
    }
    for host in &args.host {
        let name = host.strip_prefix("*.").unwrap_or(host);
        let ok = !name.is_empty()
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !ok {
            return Err(format!(
                "invalid --host {host:?}: a host name or \"*.domain\", without a port"
            ));
        }
    }
    for path in &args.path {
        if !path.starts_with('/') || path.chars().any(|c| c.is_control() || c == ' ') {
            return Err(format!(
                "invalid --path {path:?}: a path prefix starting with \"/\""
            ));
        }
    }
    Ok(())
}

/// The input file (`-` is stdin), at most [`MAX_INPUT_BYTES`], as UTF-8.
fn read_input(path: &Path) -> Result<String, String> {
    let mut bytes = Vec::new();
    let limit = MAX_INPUT_BYTES as u64 + 1;
    let read = if path.as_os_str() == "-" {
        std::io::stdin().take(limit).read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(limit).read_to_end(&mut bytes))
    };
    read.map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() > MAX_INPUT_BYTES {
        return Err(format!(
            "larger than {MAX_INPUT_BYTES} bytes: not a bucket's CORS configuration"
        ));
    }
    String::from_utf8(bytes)
        .map_err(|e| format!("not UTF-8 (byte {})", e.utf8_error().valid_up_to()))
}

/// Writes beside `path` and renames over it, so a running `serve` watching the directory
/// never reads half a file (the temporary name starts with a dot: the loader skips it).
fn write_atomically(path: &Path, text: &str) -> Result<(), String> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| "not a file name".to_owned())?
        .to_string_lossy();
    let temporary = dir.join(format!(".{name}.import-{}", std::process::id()));
    std::fs::write(&temporary, text).map_err(|e| format!("cannot write: {e}"))?;
    std::fs::rename(&temporary, path).map_err(|e| {
        let _ = std::fs::remove_file(&temporary);
        format!("cannot write: {e}")
    })
}
