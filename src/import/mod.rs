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

#[cfg(test)]
mod tests {
    use super::*;

    fn options(vendor: Vendor, lossy: bool) -> Options {
        Options {
            vendor,
            file: "in".into(),
            hosts: Vec::new(),
            paths: Vec::new(),
            name_prefix: String::new(),
            lossy,
        }
    }

    /// Imports `input`, checks the output loads as `check` would, and returns its `[[rule]]`
    /// part (the header comment left out).
    fn rules(vendor: Vendor, input: &str) -> String {
        let imported =
            import(input, &options(vendor, false)).unwrap_or_else(|e| panic!("{e:#?}\n{input}"));
        let errors = check_output("out.toml", &imported.toml);
        assert!(errors.is_empty(), "{errors:#?}\n{}", imported.toml);
        let start = imported.toml.find("\n# ").unwrap_or(0);
        let rules = imported.toml[imported.toml.find("[settings]").unwrap()..].to_owned();
        assert!(start > 0);
        rules
    }

    fn errors(vendor: Vendor, input: &str) -> Vec<String> {
        import(input, &options(vendor, false))
            .expect_err("an error")
            .iter()
            .map(|p| p.render("in"))
            .collect()
    }

    #[test]
    fn s3_star_header_names_authorization_and_no_max_age_is_five_seconds() {
        let out = rules(
            Vendor::S3,
            r#"[{"ID": "Up", "AllowedOrigins": ["https://app.example.com"],
                "AllowedMethods": ["put", "GET"], "AllowedHeaders": ["*", "x-amz-meta-*"],
                "ExposeHeaders": ["ETag"]}]"#,
        );
        assert!(
            out.contains(
                "[[rule]]\nname = \"up\"\norigins = [\"https://app.example.com\"]\n\
             methods = [\"PUT\", \"GET\"]\nonly_listed_methods = true\n\
             headers = [\"*\", \"authorization\", \"x-amz-meta-*\"]\nexpose = [\"etag\"]\n\
             credentials = true\nmax_age = 5\n"
            ),
            "{out}"
        );
        assert!(out.starts_with(
            "[settings]\npreflight_status = 200\nunmatched = \"reject\"\nactual_responses = \"fill\"\n"
        ));
    }

    #[test]
    fn s3_origin_wildcards_become_globs_regexes_and_opt_ins() {
        let out = rules(
            Vendor::S3,
            r#"[{"AllowedOrigins": ["https://*.example.com", "https://a-*.example.com",
                  "http://localhost*", "https://*", "https://A.example.com:443"],
                 "AllowedMethods": ["GET"]}]"#,
        );
        assert!(out.contains(
            "origins = [\"https://*.example.com\", \"regex:https://a-[!-~]*\\\\.example\\\\.com\", \
             \"regex:http://localhost[!-~]*\", \"https://*\", \"https://a.example.com\"]\n"
        ), "{out}");
        for key in [
            "dangerously_allow_insecure_origins = true",
            "dangerously_allow_scheme_wildcard_with_credentials = true",
            "dangerously_allow_unpinned_regex_origins = true",
        ] {
            assert!(out.contains(key), "{key}\n{out}");
        }
        // A rule listing `*` answers `*`, without credentials and without opt-ins.
        let out = rules(
            Vendor::S3,
            r#"[{"AllowedOrigins": ["http://a.example.com", "*"], "AllowedMethods": ["GET"]}]"#,
        );
        assert!(out.contains("origins = [\"*\"]\n"), "{out}");
        assert!(
            !out.contains("credentials = true") && !out.contains("dangerously"),
            "{out}"
        );
    }

    #[test]
    fn b2_operations_become_methods_and_https_any_secure_origin() {
        let out = rules(
            Vendor::B2,
            r#"[{"corsRuleName": "dl", "allowedOrigins": ["https", "https://*:8443", "https://*"],
                 "allowedOperations": ["s3_get", "b2_upload_part", "s3_delete"],
                 "maxAgeSeconds": 0}]"#,
        );
        assert!(out.contains(
            "origins = [\"https://*\", \"regex:https://[^:/]*:8443\", \"regex:https://[^:/]*\"]\n\
             methods = [\"GET\", \"HEAD\", \"POST\", \"DELETE\"]\n"
        ), "{out}");
        assert!(
            out.contains("max_age = 0\n") && !out.contains("credentials"),
            "{out}"
        );
        assert_eq!(
            errors(
                Vendor::B2,
                r#"[{"allowedOrigins": ["*"], "allowedOperations": ["s3_patch"]}]"#
            ),
            [
                "in: [0].allowedOperations[0]: rule #1: unknown operation \"s3_patch\"; B2 has \
              b2_download_file_by_name, b2_download_file_by_id, s3_get, s3_head, b2_upload_file, \
              b2_upload_part, s3_post, s3_put, s3_delete"
            ]
        );
    }

    #[test]
    fn azure_picks_the_rule_by_origin_and_method() {
        // Azure's documented example (CORS rule evaluation logic), expose lists left out: the
        // third rule never answers, the second rule's GET takes every origin first.
        let out = rules(
            Vendor::Azure,
            "<Cors><CorsRule><AllowedOrigins>http://www.contoso.com</AllowedOrigins>\
             <AllowedMethods>PUT,HEAD</AllowedMethods><MaxAgeInSeconds>5</MaxAgeInSeconds>\
             <AllowedHeaders>x-ms-blob-content-type</AllowedHeaders></CorsRule>\
             <CorsRule><AllowedOrigins>*</AllowedOrigins><AllowedMethods>PUT,GET</AllowedMethods>\
             <MaxAgeInSeconds>5</MaxAgeInSeconds><AllowedHeaders>x-ms-blob-content-type</AllowedHeaders></CorsRule>\
             <CorsRule><AllowedOrigins>http://www.contoso.com</AllowedOrigins>\
             <AllowedMethods>GET</AllowedMethods><MaxAgeInSeconds>5</MaxAgeInSeconds>\
             <AllowedHeaders>x-ms-client-request-id</AllowedHeaders></CorsRule></Cors>",
        );
        assert_eq!(out.matches("[[rule]]").count(), 2, "{out}");
        assert!(
            out.contains("# Azure rule #3: never answers in Azure"),
            "{out}"
        );
    }

    #[test]
    fn what_cannot_be_said_is_an_error_or_with_lossy_a_warning() {
        let input = r#"[{"AllowedOrigins": ["https://a.com"], "AllowedMethods": ["GET"],
                         "AllowedHeaders": ["x-*-id", "ok"]}]"#;
        assert_eq!(
            errors(Vendor::S3, input),
            [
                "in: [0].AllowedHeaders[0]: rule #1: header \"x-*-id\" has its \"*\" before the \
              end; preflightd's header globs are prefixes (\"x-amz-meta-*\") (--lossy imports it \
              anyway: left out, so preflights asking for such a header are denied)"
            ]
        );
        let imported = import(input, &options(Vendor::S3, true)).unwrap();
        assert!(imported.toml.contains("# LOSSY: header \"x-*-id\""));
        assert!(imported.toml.contains("headers = [\"ok\"]\n"));
        assert_eq!(imported.warnings.len(), 1);
        assert!(check_output("o", &imported.toml).is_empty());
    }

    #[test]
    fn invalid_input_is_an_error_with_its_place() {
        assert_eq!(
            errors(
                Vendor::S3,
                r#"[{"AllowedOrigins": ["https://*.*.com"], "AllowedMethods": ["PATCH"], "MaxAgeSeconds": -1}]"#
            ),
            [
                "in: [0].AllowedOrigins[0]: rule #1: origin \"https://*.*.com\" has 2 \"*\"; S3 allows at most one",
                "in: [0].AllowedMethods[0]: rule #1: unknown method \"PATCH\"; S3 accepts GET, PUT, HEAD, POST, DELETE",
                "in: [0].MaxAgeSeconds: rule #1: max-age -1 is negative",
            ]
        );
        assert_eq!(
            errors(Vendor::Gcs, "[]"),
            [
                "in: no CORS rules: the vendor refuses every preflight, and a rules file needs at least one rule"
            ]
        );
    }

    #[test]
    fn scope_and_names_go_into_every_rule() {
        let mut options = options(Vendor::R2, false);
        options.hosts = vec!["files.example.com".into()];
        options.paths = vec!["/public/".into()];
        options.name_prefix = "r2-".into();
        let imported = import(
            r#"{"rules": [{"allowed": {"origins": ["https://a.com"], "methods": ["GET"]}, "id": "Read"}]}"#,
            &options,
        )
        .unwrap();
        let toml = &imported.toml;
        assert!(
            toml.contains("# R2 rule #1 ID \"Read\" (in rules[0])\n"),
            "{toml}"
        );
        assert!(
            toml.contains(
                "[[rule]]\nname = \"r2-read\"\nhosts = [\"files.example.com\"]\npaths = [\"/public/\"]\n"
            ),
            "{toml}"
        );
        assert!(check_output("o", &imported.toml).is_empty());
    }
}
