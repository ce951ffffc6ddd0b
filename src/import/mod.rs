//! `preflightd import`: a storage bucket's CORS configuration (S3, B2, GCS, Azure Blob, R2)
//! turned into a rules file that answers preflights as the vendor does. Pure: text in, text
//! and diagnostics out.
//!
//! - `source`: the vendor-neutral [`SourceRule`] and the readers every vendor shares;
//! - `s3`, `b2`, `gcs`, `azure`, `r2`: each vendor's documented formats;
//! - `translate`: each vendor's matching (its [`Profile`]) as preflightd rules, and what
//!   cannot be said exactly;
//! - `render`: the rules file, saying where each rule came from.

mod azure;
mod b2;
mod gcs;
mod r2;
mod render;
mod s3;
pub mod source;
pub mod translate;

pub use source::{Place, Problem, SourceRule};
pub use translate::{Profile, Vendor};

/// How to import.
#[derive(Debug, Clone)]
pub struct Options {
    pub vendor: Vendor,
    /// The input's name in diagnostics and in the output's comments.
    pub file: String,
    /// `--host`: every rule's `hosts`.
    pub hosts: Vec<String>,
    /// `--path`: every rule's `paths`.
    pub paths: Vec<String>,
    /// `--name-prefix`.
    pub name_prefix: String,
    /// `--lossy`: what cannot be expressed exactly is a warning and a comment, not an error.
    pub lossy: bool,
}

/// A successful import.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The rules file.
    pub toml: String,
    /// One line each, `FILE:PLACE: rule #N "ID": message`.
    pub warnings: Vec<String>,
    /// The vendor rules read.
    pub source_rules: usize,
    /// The preflightd rules written.
    pub rules: usize,
}

/// The command-line name of a vendor (`--from`).
pub fn flag(vendor: Vendor) -> &'static str {
    match vendor {
        Vendor::S3 => "s3",
        Vendor::B2 => "b2",
        Vendor::Gcs => "gcs",
        Vendor::Azure => "azure",
        Vendor::R2 => "r2",
    }
}

/// Reads `input` as `options.vendor`'s CORS configuration and writes the rules file. Every
/// problem is reported at once, each with its place and source rule.
pub fn import(input: &str, options: &Options) -> Result<Imported, Vec<Problem>> {
    let rules = match options.vendor {
        Vendor::S3 => s3::parse(input),
        Vendor::B2 => b2::parse(input),
        Vendor::Gcs => gcs::parse(input),
        Vendor::Azure => azure::parse(input),
        Vendor::R2 => r2::parse(input),
    }?;
    if rules.is_empty() {
        return Err(vec![Problem::new(
            Place::File,
            "no CORS rules: the vendor refuses every preflight, and a rules file needs at least \
             one rule",
        )]);
    }
    let profile = options.vendor.profile();
    let names = render::rule_names(&rules, &options.name_prefix);
    let mut report = translate::Report {
        lossy: options.lossy,
        file: &options.file,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let source_rules = rules.len();
    let translated = translate::translate(&profile, rules, &names, &mut report);
    if !report.errors.is_empty() {
        return Err(report.errors);
    }
    let rules: usize = translated.iter().map(|t| t.parts.len()).sum();
    if rules == 0 {
        return Err(vec![Problem::new(
            Place::File,
            "no rule can ever answer a browser's preflight, so there is nothing to import",
        )]);
    }
    let frame = render::Frame {
        file: &options.file,
        flag: flag(options.vendor),
        hosts: &options.hosts,
        paths: &options.paths,
    };
    Ok(Imported {
        toml: render::render(&profile, &frame, &translated),
        warnings: report.warnings,
        source_rules,
        rules,
    })
}

/// Loads and compiles an imported rules file as `serve` and `check` would: the errors it
/// has (none, when the import is right).
pub fn check_output(name: &str, toml: &str) -> Vec<crate::rules::Diagnostic> {
    let loaded = crate::rules::load_sources(&[crate::rules::Source {
        name: name.into(),
        text: toml.to_owned(),
    }]);
    let mut errors: Vec<crate::rules::Diagnostic> = loaded.errors().cloned().collect();
    if let Some(rules) = loaded.rules
        && let Err(e) = crate::policy::compile(rules)
    {
        errors.push(e.diagnostic(Some(name.into())));
    }
    errors
}
