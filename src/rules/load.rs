//! Reading rules: a file or a directory of `*.toml` files (file-name order, one list), parsed
//! with spans so that every problem names its file, line and column.
//!
//! The TOML tree is walked by hand rather than through `#[serde(deny_unknown_fields)]` because
//! serde stops at the first problem; an operator fixing a rules file wants all of them at once.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use toml::de::{DeTable, DeValue};

use super::diagnostic::{Diagnostic, LineIndex, Location, Subject};
use super::model::{
    ActualResponses, DEFAULT_MAX_AGE, DEFAULT_METHODS, HostScope, MAX_MAX_AGE, Mode, OriginEntry,
    PreflightStatus, Rule, Rules, Settings, TokenList, Unmatched,
};
use super::origin::{OriginPattern, check_regex, parse_origin};
use super::toml_value::{self, Misfit, Value};
use super::validate;
use crate::syntax::is_token;

/// One rules file's text and the name diagnostics call it by.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: Arc<str>,
    pub text: String,
}

/// The outcome of loading: the rules when there was no error, and every diagnostic (errors
/// and warnings) in file and line order.
#[derive(Debug)]
pub struct Loaded {
    pub rules: Option<Rules>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }
}

/// The default bound on the bytes of one rule set (all its files together): far above real
/// rule sets (100 000 rules take about 10 MB), low enough that a runaway generator cannot make
/// a reload hold gigabytes.
pub const DEFAULT_MAX_RULES_BYTES: u64 = 64 << 20;

/// Reads `path`: a file, or a directory whose `*.toml` files are read in file-name order, at
/// most `max_bytes` in all. Dot-files are skipped. Every `*.toml` entry must be readable as
/// a regular file: a directory, a dangling symlink, a symlink loop, a FIFO, a socket or a
/// device under that name is an error (a file that silently went missing would drop its
/// rules). A Kubernetes ConfigMap or Secret volume keeps its files in `..data/`, a symlink the
/// kubelet swaps atomically; it is resolved once, so one read never mixes two generations.
/// Every error is returned, each naming its file.
pub fn read_sources(path: &Path, max_bytes: u64) -> Result<Vec<Source>, Vec<Diagnostic>> {
    let display: Arc<str> = Arc::from(path.display().to_string());
    let error = |name: &Arc<str>, message: String| {
        Diagnostic::error(Location::file(Arc::clone(name)), Subject::File, message)
    };
    let metadata =
        std::fs::metadata(path).map_err(|e| vec![error(&display, format!("cannot read: {e}"))])?;
    // (the name to report, the path to read)
    let mut files: Vec<(Arc<str>, PathBuf)> = Vec::new();
    if metadata.is_dir() {
        // The kubelet's atomic writer makes `..data` a symlink; a plain directory of that
        // name is nobody's volume and is skipped like any other.
        let data = path.join("..data");
        let is_volume = data
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink());
        let listed = match std::fs::canonicalize(&data) {
            Ok(resolved) if is_volume && resolved.is_dir() => resolved,
            _ => path.to_path_buf(),
        };
        let entries = std::fs::read_dir(&listed)
            .map_err(|e| vec![error(&display, format!("cannot read directory: {e}"))])?;
        for entry in entries {
            let entry =
                entry.map_err(|e| vec![error(&display, format!("cannot read directory: {e}"))])?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || !name.ends_with(".toml") {
                continue;
            }
            files.push((
                Arc::from(path.join(name.as_ref()).display().to_string()),
                entry.path(),
            ));
        }
        files.sort();
        if files.is_empty() {
            return Err(vec![error(
                &display,
                "no *.toml files in this directory".to_owned(),
            )]);
        }
    } else {
        files.push((display, path.to_path_buf()));
    }
    let mut sources = Vec::with_capacity(files.len());
    let mut errors = Vec::new();
    let mut budget = max_bytes;
    for (name, file) in files {
        match read_regular_file(&file, budget) {
            Ok(text) => {
                budget -= text.len() as u64;
                sources.push(Source { name, text });
            }
            Err(ReadError::TooLarge) => {
                errors.push(error(
                    &name,
                    format!(
                        "the rules are larger than {max_bytes} bytes in all (--max-rules-bytes)"
                    ),
                ));
                break;
            }
            Err(ReadError::Io(message)) => errors.push(error(&name, message)),
        }
    }
    if errors.is_empty() {
        Ok(sources)
    } else {
        Err(errors)
    }
}

enum ReadError {
    TooLarge,
    Io(String),
}

/// Reads one file that must be a regular file, at most `budget` bytes. Opened without
/// blocking (a FIFO under a rules name must not hang the reload thread), then checked with
/// `fstat` on the open descriptor, so a swap between a check and the open cannot slip a FIFO
/// or a device through.
fn read_regular_file(file: &Path, budget: u64) -> Result<String, ReadError> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(file)
        .map_err(|e| {
            ReadError::Io(match e.raw_os_error() {
                Some(libc::ENOENT) if file.symlink_metadata().is_ok() => {
                    "cannot read: a symlink to nothing (dangling)".to_owned()
                }
                Some(libc::ELOOP) => "cannot read: a symlink loop".to_owned(),
                _ => format!("cannot read: {e}"),
            })
        })?;
    let kind = opened
        .metadata()
        .map_err(|e| ReadError::Io(format!("cannot read: {e}")))?
        .file_type();
    let what = if kind.is_file() {
        None
    } else if kind.is_dir() {
        Some("a directory")
    } else if kind.is_fifo() {
        Some("a FIFO")
    } else if kind.is_socket() {
        Some("a socket")
    } else if kind.is_char_device() || kind.is_block_device() {
        Some("a device")
    } else {
        Some("not a regular file")
    };
    if let Some(what) = what {
        return Err(ReadError::Io(format!(
            "cannot read: {what}, not a rules file"
        )));
    }
    let mut bytes = Vec::new();
    opened
        .take(budget.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| ReadError::Io(format!("cannot read: {e}")))?;
    if bytes.len() as u64 > budget {
        return Err(ReadError::TooLarge);
    }
    String::from_utf8(bytes).map_err(|e| {
        ReadError::Io(format!(
            "cannot read: not UTF-8 (byte {})",
            e.utf8_error().valid_up_to()
        ))
    })
}

/// Reads and loads `path` (see [`read_sources`] and [`load_sources`]).
pub fn load_path(path: &Path) -> Loaded {
    match read_sources(path, DEFAULT_MAX_RULES_BYTES) {
        Ok(sources) => load_sources(&sources),
        Err(diagnostics) => Loaded {
            rules: None,
            diagnostics,
        },
    }
}

/// Parses, validates and lints rules from already-read sources, in order, as one list.
pub fn load_sources(sources: &[Source]) -> Loaded {
    let mut diagnostics = Vec::new();
    let mut settings: Option<(Settings, Location)> = None;
    let mut rules = Vec::new();
    for source in sources {
        let mut walker = FileWalker {
            file: Arc::clone(&source.name),
            lines: LineIndex::new(&source.text),
            diagnostics: &mut diagnostics,
        };
        walker.document(&source.text, &mut settings, &mut rules);
    }
    let rules = Rules {
        settings: settings.map(|(s, _)| s).unwrap_or_default(),
        rules,
    };
    if rules.rules.is_empty() && !diagnostics.iter().any(Diagnostic::is_error) {
        let first = sources
            .first()
            .map_or_else(|| Arc::from("<rules>"), |s| Arc::clone(&s.name));
        diagnostics.push(Diagnostic::error(
            Location::file(first),
            Subject::File,
            "no [[rule]] tables: every preflight would be denied",
        ));
    }
    validate::check(&rules, &mut diagnostics);
    // Stable: within one place, the order the checks found things in.
    diagnostics.sort_by(|a, b| a.location.cmp(&b.location));
    let ok = !diagnostics.iter().any(Diagnostic::is_error);
    Loaded {
        rules: ok.then_some(rules),
        diagnostics,
    }
}

const RULE_KEYS: &[&str] = &[
    "name",
    "hosts",
    "paths",
    "origins",
    "methods",
    "only_listed_methods",
    "headers",
    "expose",
    "credentials",
    "max_age",
    "private_network",
    "dangerously_allow_insecure_origins",
    "dangerously_allow_public_suffix_globs",
    "dangerously_allow_unpinned_regex_origins",
    "dangerously_allow_scheme_wildcard_with_credentials",
];
const SETTINGS_KEYS: &[&str] = &[
    "unmatched",
    "debug",
    "cdn_max_age",
    "actual_responses",
    "preflight_status",
    "mode",
];
const TOP_KEYS: &[&str] = &["settings", "rule"];
/// A year: more than any CDN keeps an object, and enough to catch a typo in units.
const MAX_CDN_MAX_AGE: i64 = 31_536_000;

struct FileWalker<'a> {
    file: Arc<str>,
    lines: LineIndex<'a>,
    diagnostics: &'a mut Vec<Diagnostic>,
}

impl<'a> FileWalker<'a> {
    fn at(&self, span: &Range<usize>) -> Location {
        self.lines.locate(&self.file, span.start)
    }

    fn error(&mut self, span: &Range<usize>, subject: &Subject, message: impl Into<String>) {
        let location = self.at(span);
        self.diagnostics
            .push(Diagnostic::error(location, subject.clone(), message));
    }

    fn misfit(&mut self, subject: &Subject, misfit: Misfit) {
        self.error(&misfit.span, subject, misfit.message);
    }

    fn document(
        &mut self,
        text: &str,
        settings: &mut Option<(Settings, Location)>,
        rules: &mut Vec<Rule>,
    ) {
        let table = match DeTable::parse(text) {
            Ok(table) => table,
            Err(e) => {
                let span = e.span().unwrap_or(0..0);
                let message = format!("invalid TOML: {}", e.message().trim_end());
                self.error(&span, &Subject::File, message);
                return;
            }
        };
        for (key, value) in table.get_ref() {
            match key.get_ref().as_ref() {
                "settings" => {
                    let Some(table) = self.table(&Subject::Settings, "settings", value) else {
                        continue;
                    };
                    let location = self.at(&key.span());
                    if let Some((_, first)) = settings {
                        let message = format!("[settings] appears again; first at {first}");
                        self.error(&key.span(), &Subject::Settings, message);
                        continue;
                    }
                    *settings = Some((self.settings(table), location));
                }
                "rule" => match value.get_ref() {
                    DeValue::Array(items) => {
                        for (index, item) in items.iter().enumerate() {
                            let subject = Subject::UnnamedRule(rules.len() + 1);
                            let Some(table) = self.table(&subject, "rule", item) else {
                                continue;
                            };
                            rules.push(self.rule(index + 1, table, &item.span()));
                        }
                    }
                    _ => self.error(
                        &key.span(),
                        &Subject::File,
                        "\"rule\" must be an array of tables: write [[rule]]",
                    ),
                },
                other => self.unknown_key(&key.span(), &Subject::File, other, TOP_KEYS),
            }
        }
    }

    fn unknown_key(&mut self, span: &Range<usize>, subject: &Subject, key: &str, known: &[&str]) {
        let message = match suggest(key, known) {
            Some(near) => format!("unknown key {key:?} (did you mean {near:?}?)"),
            None => format!("unknown key {key:?}"),
        };
        self.error(span, subject, message);
    }

    fn table<'v, 'i>(
        &mut self,
        subject: &Subject,
        key: &str,
        value: &'v Value<'i>,
    ) -> Option<&'v DeTable<'i>> {
        match value.get_ref() {
            DeValue::Table(table) => Some(table),
            other => {
                let message = format!("{key:?} must be a table, found {}", other.type_str());
                self.error(&value.span(), subject, message);
                None
            }
        }
    }

    fn boolean(&mut self, subject: &Subject, key: &str, value: &Value<'_>) -> Option<bool> {
        toml_value::boolean(key, value)
            .map_err(|misfit| self.misfit(subject, misfit))
            .ok()
    }

    fn string<'v>(
        &mut self,
        subject: &Subject,
        key: &str,
        value: &'v Value<'_>,
    ) -> Option<&'v str> {
        toml_value::string(key, value)
            .map_err(|misfit| self.misfit(subject, misfit))
            .ok()
    }

    fn integer(
        &mut self,
        subject: &Subject,
        key: &str,
        value: &Value<'_>,
        range: (i64, i64),
        hint: &str,
    ) -> Option<i64> {
        let parsed = match toml_value::integer(key, value) {
            Ok(parsed) => parsed,
            Err(misfit) => {
                self.misfit(subject, misfit);
                return None;
            }
        };
        match parsed {
            Some(n) if (range.0..=range.1).contains(&n) => Some(n),
            _ => {
                let written = match value.get_ref() {
                    DeValue::Integer(i) => i.as_str().to_owned(),
                    _ => String::new(),
                };
                let message = format!(
                    "{key} {written} is out of range {}..={}{hint}",
                    range.0, range.1
                );
                self.error(&value.span(), subject, message);
                None
            }
        }
    }

    /// An array of strings; each element that is not a string is reported on its own.
    fn strings<'v>(
        &mut self,
        subject: &Subject,
        key: &str,
        value: &'v Value<'_>,
    ) -> Vec<(&'v str, Range<usize>)> {
        let mut misfits = Vec::new();
        let read = toml_value::strings(key, value, &mut misfits);
        for misfit in misfits {
            self.misfit(subject, misfit);
        }
        read.unwrap_or_else(|misfit| {
            self.misfit(subject, misfit);
            Vec::new()
        })
    }

    fn settings(&mut self, table: &DeTable<'_>) -> Settings {
        let subject = Subject::Settings;
        let mut settings = Settings::default();
        for (key, value) in table {
            let name = key.get_ref().as_ref();
            match name {
                "unmatched" => match self.string(&subject, name, value) {
                    Some("reject") => settings.unmatched = Unmatched::Reject,
                    Some("forward") => settings.unmatched = Unmatched::Forward,
                    Some(other) => self.error(
                        &value.span(),
                        &subject,
                        format!("unmatched must be \"reject\" or \"forward\", found {other:?}"),
                    ),
                    None => {}
                },
                "debug" => {
                    if let Some(b) = self.boolean(&subject, name, value) {
                        settings.debug = b;
                    }
                }
                "cdn_max_age" => {
                    let range = (0, MAX_CDN_MAX_AGE);
                    if let Some(n) = self.integer(&subject, name, value, range, "") {
                        settings.cdn_max_age = u32::try_from(n).unwrap_or(u32::MAX);
                    }
                }
                "actual_responses" => match self.string(&subject, name, value) {
                    Some("untouched") => settings.actual_responses = ActualResponses::Untouched,
                    Some("fill") => settings.actual_responses = ActualResponses::Fill,
                    Some(other) => self.error(
                        &value.span(),
                        &subject,
                        format!(
                            "actual_responses must be \"untouched\" or \"fill\", found {other:?}"
                        ),
                    ),
                    None => {}
                },
                "preflight_status" => {
                    if let Some(n) =
                        self.integer(&subject, name, value, (200, 204), "; write 204 or 200")
                    {
                        match n {
                            200 => settings.preflight_status = PreflightStatus::Ok,
                            204 => settings.preflight_status = PreflightStatus::NoContent,
                            other => self.error(
                                &value.span(),
                                &subject,
                                format!("preflight_status must be 204 or 200, found {other}"),
                            ),
                        }
                    }
                }
                "mode" => match self.string(&subject, name, value) {
                    Some("enforce") => settings.mode = Mode::Enforce,
                    Some("shadow") => settings.mode = Mode::Shadow,
                    Some(other) => self.error(
                        &value.span(),
                        &subject,
                        format!("mode must be \"enforce\" or \"shadow\", found {other:?}"),
                    ),
                    None => {}
                },
                other => self.unknown_key(&key.span(), &subject, other, SETTINGS_KEYS),
            }
        }
        settings
    }

    /// One `[[rule]]` table. Always returns a rule (fields that failed keep their defaults) so
    /// that cross-rule checks still run; the caller refuses the set if anything failed.
    fn rule(&mut self, index_in_file: usize, table: &DeTable<'_>, span: &Range<usize>) -> Rule {
        let mut subject = Subject::UnnamedRule(index_in_file);
        let mut name = None;
        if let Some((_, value)) = table.iter().find(|(k, _)| k.get_ref().as_ref() == "name")
            && let Some(written) = self.string(&subject, "name", value)
        {
            subject = Subject::Rule(written.to_owned());
            if is_rule_name(written) {
                name = Some(written.to_owned());
            } else {
                self.error(
                    &value.span(),
                    &subject,
                    format!("invalid name {written:?}: use 1 to 64 of a-z, 0-9, \"_\" and \"-\""),
                );
            }
        }
        let location = self.at(span);
        if name.is_none() && matches!(subject, Subject::UnnamedRule(_)) {
            self.diagnostics.push(Diagnostic::error(
                location.clone(),
                subject.clone(),
                "missing required key \"name\"",
            ));
        }
        let mut rule = Rule {
            name: name.unwrap_or_default(),
            location: location.clone(),
            hosts: Vec::new(),
            paths: Vec::new(),
            origins: Vec::new(),
            methods: TokenList {
                any: false,
                items: DEFAULT_METHODS.iter().map(|m| (*m).to_owned()).collect(),
                prefixes: Vec::new(),
            },
            only_listed_methods: false,
            headers: TokenList::default(),
            expose: TokenList::default(),
            credentials: false,
            max_age: DEFAULT_MAX_AGE,
            private_network: false,
            dangerously_allow_insecure_origins: false,
            dangerously_allow_public_suffix_globs: false,
            dangerously_allow_unpinned_regex_origins: false,
            dangerously_allow_scheme_wildcard_with_credentials: false,
        };
        let mut saw_origins = false;
        for (key, value) in table {
            let key_name = key.get_ref().as_ref();
            match key_name {
                "name" => {}
                "hosts" => {
                    for (host, span) in self.strings(&subject, key_name, value) {
                        match parse_host_scope(host) {
                            Ok(scope) => rule.hosts.push(scope),
                            Err(why) => self.error(&span, &subject, why),
                        }
                    }
                }
                "paths" => {
                    for (path, span) in self.strings(&subject, key_name, value) {
                        if path.starts_with('/') {
                            rule.paths.push(path.to_owned());
                        } else {
                            let message = format!(
                                "invalid path {path:?}: a path prefix starts with \"/\"; write \"/{}\"",
                                path
                            );
                            self.error(&span, &subject, message);
                        }
                    }
                }
                "origins" => {
                    saw_origins = true;
                    let entries = self.strings(&subject, key_name, value);
                    if entries.is_empty()
                        && matches!(value.get_ref(), DeValue::Array(a) if a.is_empty())
                    {
                        self.error(
                            &value.span(),
                            &subject,
                            "empty origins list: the rule would never match",
                        );
                    }
                    for (entry, span) in entries {
                        let parsed = parse_origin(entry).and_then(|pattern| match &pattern {
                            OriginPattern::Regex(regex) => check_regex(regex)
                                .map(|facts| (pattern.clone(), Some(facts)))
                                .map_err(|why| format!("invalid origin {entry:?}: {why}")),
                            _ => Ok((pattern, None)),
                        });
                        match parsed {
                            Ok((pattern, regex)) => rule.origins.push(OriginEntry {
                                pattern,
                                location: self.at(&span),
                                regex,
                            }),
                            Err(why) => self.error(&span, &subject, why),
                        }
                    }
                }
                "methods" => {
                    rule.methods = self.tokens(&subject, key_name, value, Tokens::Methods);
                }
                "only_listed_methods" => {
                    if let Some(b) = self.boolean(&subject, key_name, value) {
                        rule.only_listed_methods = b;
                    }
                }
                "headers" => {
                    rule.headers = self.tokens(&subject, key_name, value, Tokens::Headers);
                }
                "expose" => {
                    rule.expose = self.tokens(&subject, key_name, value, Tokens::Expose);
                }
                "credentials" => {
                    if let Some(b) = self.boolean(&subject, key_name, value) {
                        rule.credentials = b;
                    }
                }
                "max_age" => {
                    let range = (0, i64::from(MAX_MAX_AGE));
                    let hint = "; 0 means \"do not cache\"";
                    if let Some(n) = self.integer(&subject, key_name, value, range, hint) {
                        rule.max_age = u32::try_from(n).unwrap_or(DEFAULT_MAX_AGE);
                    }
                }
                "private_network" => {
                    if let Some(b) = self.boolean(&subject, key_name, value) {
                        rule.private_network = b;
                    }
                }
                "dangerously_allow_insecure_origins" => {
                    if let Some(b) = self.boolean(&subject, key_name, value) {
                        rule.dangerously_allow_insecure_origins = b;
                    }
                }
                "dangerously_allow_public_suffix_globs" => {
                    if let Some(b) = self.boolean(&subject, key_name, value) {
                        rule.dangerously_allow_public_suffix_globs = b;
                    }
                }
                "dangerously_allow_unpinned_regex_origins" => {
                    if let Some(b) = self.boolean(&subject, key_name, value) {
                        rule.dangerously_allow_unpinned_regex_origins = b;
                    }
                }
                "dangerously_allow_scheme_wildcard_with_credentials" => {
                    if let Some(b) = self.boolean(&subject, key_name, value) {
                        rule.dangerously_allow_scheme_wildcard_with_credentials = b;
                    }
                }
                other => self.unknown_key(&key.span(), &subject, other, RULE_KEYS),
            }
        }
        if !saw_origins {
            self.diagnostics.push(Diagnostic::error(
                location,
                subject,
                "missing required key \"origins\"",
            ));
        }
        rule
    }

    /// A list of tokens where `*` means any. Header names are lowercased (they compare
    /// case-insensitively, CORS-CHECKLIST 2.9); methods are kept as written (2.7). In
    /// `headers`, a token ending in one `*` is a prefix glob (`x-amz-meta-*`, as the bucket
    /// configurations write them); `*` is a token character (RFC 9110 5.6.2), so elsewhere
    /// such an entry is refused rather than kept as a name no one would send.
    fn tokens(
        &mut self,
        subject: &Subject,
        key: &str,
        value: &Value<'_>,
        kind: Tokens,
    ) -> TokenList {
        let (what, lowercase) = match kind {
            Tokens::Methods => ("method", false),
            Tokens::Headers | Tokens::Expose => ("header", true),
        };
        let mut list = TokenList::default();
        for (item, span) in self.strings(subject, key, value) {
            if item == "*" {
                list.any = true;
                continue;
            }
            if !is_token(item.as_bytes()) {
                let message =
                    format!("invalid {what} {item:?}: not an HTTP token (RFC 9110 5.6.2)");
                self.error(&span, subject, message);
                continue;
            }
            let item = if lowercase {
                item.to_ascii_lowercase()
            } else {
                item.to_owned()
            };
            if item.contains('*') {
                let prefix = item.strip_suffix('*').filter(|p| !p.contains('*'));
                let message = match (kind, prefix) {
                    (Tokens::Headers, Some(prefix)) => {
                        if !list.prefixes.iter().any(|p| p == prefix) {
                            list.prefixes.push(prefix.to_owned());
                        }
                        continue;
                    }
                    (Tokens::Headers, None) => format!(
                        "invalid header {item:?}: \"*\" may only end a prefix glob, as in \"x-amz-meta-*\""
                    ),
                    (Tokens::Expose, _) => format!(
                        "invalid header {item:?}: Access-Control-Expose-Headers takes names or \"*\", \
                         never a prefix glob; list the names"
                    ),
                    (Tokens::Methods, _) => format!(
                        "invalid method {item:?}: \"*\" may only stand alone, for any method"
                    ),
                };
                self.error(&span, subject, message);
                continue;
            }
            if !list.items.contains(&item) {
                list.items.push(item);
            }
        }
        list
    }
}

/// Which token list a key holds.
#[derive(Debug, Clone, Copy)]
enum Tokens {
    Methods,
    Headers,
    Expose,
}

fn is_rule_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn parse_host_scope(host: &str) -> Result<HostScope, String> {
    let lower = host.to_ascii_lowercase();
    if let Some((name, _)) = lower.rsplit_once(':')
        && !lower.starts_with('[')
    {
        return Err(format!(
            "invalid host {host:?}: hosts are matched without their port; write {name:?}"
        ));
    }
    let (suffix, name) = match lower.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, lower.as_str()),
    };
    let valid = !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !valid && !name.starts_with('[') {
        return Err(format!(
            "invalid host {host:?}: expected a host name or \"*.domain\""
        ));
    }
    Ok(if suffix {
        HostScope::Subdomains(format!(".{name}"))
    } else {
        HostScope::Exact(name.to_owned())
    })
}

/// The known key nearest to a misspelt one, if it is close enough to be a typo.
pub(crate) fn suggest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_keys_only() {
        assert_eq!(suggest("origin", RULE_KEYS), Some("origins"));
        assert_eq!(suggest("max-age", RULE_KEYS), Some("max_age"));
        assert_eq!(suggest("credential", RULE_KEYS), Some("credentials"));
        assert_eq!(suggest("banana", RULE_KEYS), None);
    }

    #[test]
    fn host_scopes() {
        assert_eq!(
            parse_host_scope("API.example.com"),
            Ok(HostScope::Exact("api.example.com".into()))
        );
        assert_eq!(
            parse_host_scope("*.example.com"),
            Ok(HostScope::Subdomains(".example.com".into()))
        );
        assert!(parse_host_scope("api.example.com:443").is_err());
        assert!(parse_host_scope("a..b").is_err());
        assert!(HostScope::Subdomains(".example.com".into()).covers(b"a.EXAMPLE.com"));
        assert!(!HostScope::Subdomains(".example.com".into()).covers(b"example.com"));
        assert!(!HostScope::Subdomains(".example.com".into()).covers(b"badexample.com"));
    }

    #[test]
    fn mode_is_enforce_unless_shadow_is_written() {
        let mode = |settings: &str| {
            let text = format!("{settings}\n[[rule]]\nname = \"a\"\norigins = [\"*\"]\n");
            let loaded = load_sources(&[Source {
                name: "m.toml".into(),
                text,
            }]);
            loaded.rules.map(|rules| rules.settings.mode)
        };
        assert_eq!(mode(""), Some(Mode::Enforce));
        assert_eq!(mode("[settings]\nmode = \"enforce\""), Some(Mode::Enforce));
        assert_eq!(mode("[settings]\nmode = \"shadow\""), Some(Mode::Shadow));
        assert_eq!(mode("[settings]\nmode = \"Shadow\""), None);
    }
}
