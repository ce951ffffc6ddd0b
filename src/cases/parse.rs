//! Reading a cases file. The TOML tree is walked by hand, as `rules::load` walks a rules file,
//! so that every mistake is reported at once with its `file:line:column`, and an unknown key
//! is an error (a misspelt `expect` must not make a case pass vacuously).

use std::ops::Range;
use std::sync::Arc;

use http::header::{ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use toml::de::{DeTable, DeValue};

use super::model::{Case, CaseRequest, CasesFile, DEFAULT_URL, Expect, Suite};
use super::repeat::{self, MAX_EXPANDED_BYTES};
use crate::fetch::{ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK, TRUE};
use crate::rules::diagnostic::{Diagnostic, LineIndex, Location, Subject};
use crate::rules::load::suggest;
use crate::rules::toml_value::{self, Misfit, Value};
use crate::syntax::is_token;

const TOP_KEYS: &[&str] = &["case", "suite"];
const SUITE_KEYS: &[&str] = &["name", "rules", "case"];
const CASE_KEYS: &[&str] = &[
    "name",
    "origin",
    "method",
    "headers",
    "url",
    "credentials",
    "private_network",
    "expect",
    "rule",
    "status",
    "response",
    "absent",
    "request_method",
    "origin_lines",
    "method_lines",
    "headers_lines",
    "private_network_lines",
];
/// The keys of the vector format this one replaced, and what to write instead: a vector
/// written for the old format gets a pointer rather than a bare "unknown key".
const RENAMED: &[(&str, &str)] = &[
    ("desc", "\"name\""),
    (
        "acrm",
        "\"method\" (\"method_lines\" for exact field lines)",
    ),
    (
        "acrh",
        "\"headers\" (\"headers_lines\" for exact field lines)",
    ),
    (
        "acrpn",
        "\"private_network\" (\"private_network_lines\" for exact field lines)",
    ),
];

/// Response fields hyper (or the fast path) writes around the answer's own fields: the
/// answer `preflightd test` renders has none of them to compare.
const HTTP_LAYER: &[&str] = &["date", "content-length", "connection", "transfer-encoding"];

/// A string value and its place.
type Spot<'v> = (&'v str, Range<usize>);
/// A list's items with their places, and the list's own place.
type Spots<'v> = (Vec<Spot<'v>>, Range<usize>);
/// `[case.response]`: header names and exact values.
type ResponseHeaders = Vec<(HeaderName, String)>;

/// Parses one cases file. `name` is what places are reported against (the path as given).
pub fn parse(name: Arc<str>, text: &str) -> Result<CasesFile, Vec<Diagnostic>> {
    let mut walker = Walker {
        file: Arc::clone(&name),
        text,
        lines: LineIndex::new(text),
        errors: Vec::new(),
        budget: MAX_EXPANDED_BYTES,
    };
    let (cases, suites) = walker.document();
    if walker.errors.is_empty() {
        return Ok(CasesFile {
            name,
            cases,
            suites,
        });
    }
    // Stable: within one place, the order the checks found things in.
    walker.errors.sort_by(|a, b| a.location.cmp(&b.location));
    Err(walker.errors)
}

struct Walker<'a> {
    file: Arc<str>,
    text: &'a str,
    lines: LineIndex<'a>,
    errors: Vec<Diagnostic>,
    /// What `REPEAT` may still expand to in this file.
    budget: usize,
}

/// What one case wrote, before it is checked as a whole.
#[derive(Default)]
struct Written<'v> {
    /// Every key written, valid or not: a key that is there but wrong is reported as wrong,
    /// never also as missing.
    present: Vec<&'v str>,
    origin: Option<Spot<'v>>,
    origin_lines: Option<Spots<'v>>,
    method: Option<Spot<'v>>,
    method_lines: Option<Spots<'v>>,
    headers: Option<Vec<Spot<'v>>>,
    headers_lines: Option<Spots<'v>>,
    private_network: Option<(bool, Range<usize>)>,
    private_network_lines: Option<Spots<'v>>,
    request_method: Option<Spot<'v>>,
    url: Option<Spot<'v>>,
    credentials: bool,
    expect: Option<(Expect, Range<usize>)>,
    rule: Option<Spot<'v>>,
    status: Option<(u16, Range<usize>)>,
    response: Option<(ResponseHeaders, Range<usize>)>,
    absent: Option<(Vec<HeaderName>, Range<usize>)>,
}

impl<'a> Walker<'a> {
    fn at(&self, span: &Range<usize>) -> Location {
        self.lines.locate(&self.file, span.start)
    }

    fn error(&mut self, span: &Range<usize>, subject: &str, message: impl std::fmt::Display) {
        let location = self.at(span);
        let message = if subject.is_empty() {
            message.to_string()
        } else {
            format!("{subject}: {message}")
        };
        self.errors
            .push(Diagnostic::error(location, Subject::File, message));
    }

    fn document(&mut self) -> (Vec<Case>, Vec<Suite>) {
        let mut cases = Vec::new();
        let mut suites = Vec::new();
        let table = match DeTable::parse(self.text) {
            Ok(table) => table,
            Err(e) => {
                let span = e.span().unwrap_or(0..0);
                let message = format!("invalid TOML: {}", e.message().trim_end());
                self.error(&span, "", message);
                return (cases, suites);
            }
        };
        for (key, value) in table.get_ref() {
            match key.get_ref().as_ref() {
                "case" => {
                    for (index, item, span) in self.tables(&key.span(), "case", "[[case]]", value) {
                        if let Some(case) = self.case(index, item, &span) {
                            cases.push(case);
                        }
                    }
                }
                "suite" => {
                    for (index, item, span) in self.tables(&key.span(), "suite", "[[suite]]", value)
                    {
                        if let Some(suite) = self.suite(index, item, &span) {
                            suites.push(suite);
                        }
                    }
                }
                name @ ("rule" | "settings") => {
                    let message = format!(
                        "unknown key {name:?}: this is a rules file; a cases file holds [[case]] and [[suite]] tables (preflightd test RULES CASES...)"
                    );
                    self.error(&key.span(), "", message);
                }
                other => self.unknown_key(&key.span(), "", other, TOP_KEYS),
            }
        }
        if self.errors.is_empty() && cases.is_empty() && suites.is_empty() {
            self.errors.push(Diagnostic::error(
                Location::file(Arc::clone(&self.file)),
                Subject::File,
                "no [[case]] or [[suite]] tables: nothing to test",
            ));
        }
        (cases, suites)
    }

    fn unknown_key(&mut self, span: &Range<usize>, subject: &str, key: &str, known: &[&str]) {
        let message = if let Some((_, now)) = RENAMED.iter().find(|(old, _)| *old == key) {
            format!("unknown key {key:?}: the vector format's {key:?} is now {now}")
        } else if let Some(near) = suggest(key, known) {
            format!("unknown key {key:?} (did you mean {near:?}?)")
        } else {
            format!("unknown key {key:?}")
        };
        self.error(span, subject, message);
    }

    /// An array of tables (`[[key]]`), each with its 1-based index and span.
    fn tables<'v, 'i>(
        &mut self,
        key_span: &Range<usize>,
        key: &str,
        header: &str,
        value: &'v Value<'i>,
    ) -> Vec<(usize, &'v DeTable<'i>, Range<usize>)> {
        let DeValue::Array(items) = value.get_ref() else {
            let message = format!("{key:?} must be an array of tables: write {header}");
            self.error(key_span, "", message);
            return Vec::new();
        };
        let mut out = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            match item.get_ref() {
                DeValue::Table(table) => out.push((index + 1, table, item.span())),
                other => {
                    let message = format!(
                        "{key:?} must hold only tables, found {}: write {header}",
                        other.type_str()
                    );
                    self.error(&item.span(), "", message);
                }
            }
        }
        out
    }

    fn misfit(&mut self, subject: &str, misfit: Misfit) {
        self.error(&misfit.span, subject, misfit.message);
    }

    fn string<'v>(&mut self, subject: &str, key: &str, value: &'v Value<'_>) -> Option<Spot<'v>> {
        match toml_value::string(key, value) {
            Ok(s) => Some((s, value.span())),
            Err(misfit) => {
                self.misfit(subject, misfit);
                None
            }
        }
    }

    fn boolean(&mut self, subject: &str, key: &str, value: &Value<'_>) -> Option<bool> {
        toml_value::boolean(key, value)
            .map_err(|misfit| self.misfit(subject, misfit))
            .ok()
    }

    /// An array of strings; each element that is not a string is reported on its own.
    fn strings<'v>(&mut self, subject: &str, key: &str, value: &'v Value<'_>) -> Option<Spots<'v>> {
        let mut misfits = Vec::new();
        let read = toml_value::strings(key, value, &mut misfits);
        for misfit in misfits {
            self.misfit(subject, misfit);
        }
        match read {
            Ok(items) => Some((items, value.span())),
            Err(misfit) => {
                self.misfit(subject, misfit);
                None
            }
        }
    }

    fn suite(&mut self, index: usize, table: &DeTable<'_>, span: &Range<usize>) -> Option<Suite> {
        let errors_before = self.errors.len();
        let location = self.at(span);
        let mut subject = format!("suite #{index}");
        let mut name = None;
        let mut rules = None;
        let mut cases = Vec::new();
        let mut saw_cases = false;
        if let Some((_, value)) = table.iter().find(|(k, _)| k.get_ref().as_ref() == "name")
            && let Some((written, _)) = self.string(&subject, "name", value)
        {
            subject = format!("suite {written:?}");
            name = Some(written.to_owned());
        }
        for (key, value) in table {
            match key.get_ref().as_ref() {
                "name" => {}
                "rules" => {
                    if let Some((text, span)) = self.string(&subject, "rules", value) {
                        rules = Some((text.to_owned(), self.string_start(&span)));
                    }
                }
                "case" => {
                    saw_cases = true;
                    for (index, item, span) in
                        self.tables(&key.span(), "case", "[[suite.case]]", value)
                    {
                        if let Some(case) = self.case(index, item, &span) {
                            cases.push(case);
                        }
                    }
                }
                other => self.unknown_key(&key.span(), &subject, other, SUITE_KEYS),
            }
        }
        // A key that is there but wrong is reported as wrong already, not also as missing.
        let has = |key: &str| table.iter().any(|(k, _)| k.get_ref().as_ref() == key);
        for (missing, what) in [
            (!has("name"), "missing required key \"name\""),
            (
                !has("rules"),
                "missing required key \"rules\" (the suite's rules, inline: rules = '''...''')",
            ),
            (
                // `case = []`, or no `case` at all; cases that failed are reported already.
                cases.is_empty() && (!saw_cases || self.errors.len() == errors_before),
                "no [[suite.case]] tables: a suite holds the cases run against its rules",
            ),
        ] {
            if missing {
                self.errors.push(Diagnostic::error(
                    location.clone(),
                    Subject::File,
                    format!("{subject}: {what}"),
                ));
            }
        }
        if self.errors.len() != errors_before {
            return None;
        }
        let (rules, rules_start) = rules?;
        Some(Suite {
            name: name?,
            location,
            rules,
            rules_start,
            file: Arc::clone(&self.file),
            cases,
        })
    }

    /// Where the content of the string value at `span` starts (line, column): after its
    /// opening quotes and, for a multi-line string, the newline TOML trims right after them
    /// (TOML 1.0, "String").
    fn string_start(&self, span: &Range<usize>) -> (usize, usize) {
        let raw = self.text.get(span.clone()).unwrap_or_default();
        let mut offset = span.start;
        if raw.starts_with("'''") || raw.starts_with("\"\"\"") {
            offset += 3;
            let after = &self.text[offset.min(self.text.len())..];
            if after.starts_with('\n') {
                offset += 1;
            } else if after.starts_with("\r\n") {
                offset += 2;
            }
        } else if raw.starts_with('\'') || raw.starts_with('"') {
            offset += 1;
        }
        let location = self.lines.locate(&self.file, offset);
        (location.line, location.column)
    }

    fn case(&mut self, index: usize, table: &DeTable<'_>, span: &Range<usize>) -> Option<Case> {
        let errors_before = self.errors.len();
        let location = self.at(span);
        let mut subject = format!("case #{index}");
        let mut name = None;
        if let Some((_, value)) = table.iter().find(|(k, _)| k.get_ref().as_ref() == "name")
            && let Some((written, span)) = self.string(&subject, "name", value)
        {
            if written.trim().is_empty() || written.chars().any(char::is_control) {
                self.error(
                    &span,
                    &subject,
                    "name must be one non-empty line: it names the case in every failure",
                );
            } else {
                subject = format!("case {written:?}");
                name = Some(written.to_owned());
            }
        }
        let written = self.case_keys(&subject, table);
        if name.is_none() && !table.iter().any(|(k, _)| k.get_ref().as_ref() == "name") {
            self.errors.push(Diagnostic::error(
                location.clone(),
                Subject::File,
                format!("{subject}: missing required key \"name\""),
            ));
        }
        let request = self.request(&subject, &location, &written);
        let expect = match &written.expect {
            Some((expect, _)) => Some(*expect),
            None if written.present.contains(&"expect") => None,
            None => {
                self.errors.push(Diagnostic::error(
                    location.clone(),
                    Subject::File,
                    format!(
                        "{subject}: missing required key \"expect\" ({})",
                        quoted_list(&Expect::WORDS)
                    ),
                ));
                None
            }
        };
        if let Some((expect, expect_span)) = &written.expect {
            self.check_expectation(&subject, *expect, expect_span, &written);
        }
        if self.errors.len() != errors_before {
            return None;
        }
        Some(Case {
            name: name?,
            location,
            request: request?,
            credentials: written.credentials,
            expect: expect?,
            rule: written.rule.map(|(rule, _)| rule.to_owned()),
            status: written.status.map(|(status, _)| status),
            response: written.response.map(|(r, _)| r).unwrap_or_default(),
            absent: written.absent.map(|(a, _)| a).unwrap_or_default(),
        })
    }

    /// Every key of a case, type-checked one by one.
    fn case_keys<'v>(&mut self, subject: &str, table: &'v DeTable<'_>) -> Written<'v> {
        let mut w = Written::default();
        for (key, value) in table {
            let k = key.get_ref().as_ref();
            w.present.push(k);
            match k {
                "name" => {}
                "origin" => w.origin = self.string(subject, k, value),
                "origin_lines" => w.origin_lines = self.strings(subject, k, value),
                "method" => w.method = self.string(subject, k, value),
                "method_lines" => w.method_lines = self.strings(subject, k, value),
                "headers" => {
                    if let DeValue::Table(_) = value.get_ref() {
                        self.error(
                            &key.span(),
                            subject,
                            "\"headers\" lists the requested header names; write the expected response headers under [case.response] (in a suite, [suite.case.response])",
                        );
                    } else {
                        w.headers = self.strings(subject, k, value).map(|(list, _)| list);
                    }
                }
                "headers_lines" => w.headers_lines = self.strings(subject, k, value),
                "private_network" => {
                    w.private_network = self.boolean(subject, k, value).map(|b| (b, value.span()))
                }
                "private_network_lines" => {
                    w.private_network_lines = self.strings(subject, k, value)
                }
                "request_method" => w.request_method = self.string(subject, k, value),
                "url" => w.url = self.string(subject, k, value),
                "credentials" => w.credentials = self.boolean(subject, k, value).unwrap_or(false),
                "expect" => {
                    if let Some((word, span)) = self.string(subject, k, value) {
                        match Expect::from_word(word) {
                            Some(expect) => w.expect = Some((expect, span)),
                            None => {
                                let near = suggest(word, &Expect::WORDS)
                                    .map(|near| format!(" (did you mean {near:?}?)"))
                                    .unwrap_or_default();
                                let message = format!(
                                    "expect must be one of {}, found {word:?}{near}",
                                    quoted_list(&Expect::WORDS)
                                );
                                self.error(&span, subject, message);
                            }
                        }
                    }
                }
                "rule" => w.rule = self.string(subject, k, value),
                "status" => w.status = self.status(subject, value),
                "response" => w.response = self.response(subject, value),
                "absent" => {
                    w.absent = self.strings(subject, k, value).map(|(names, span)| {
                        let names = names
                            .into_iter()
                            .filter_map(|(name, span)| {
                                self.header_name(subject, "absent", name, &span)
                            })
                            .collect();
                        (names, span)
                    })
                }
                other => self.unknown_key(&key.span(), subject, other, CASE_KEYS),
            }
        }
        w
    }

    fn status(&mut self, subject: &str, value: &Value<'_>) -> Option<(u16, Range<usize>)> {
        let parsed = match toml_value::integer("status", value) {
            Ok(parsed) => parsed,
            Err(misfit) => {
                self.misfit(subject, misfit);
                return None;
            }
        };
        match parsed.and_then(|n| u16::try_from(n).ok()) {
            Some(n) if (100..=599).contains(&n) => Some((n, value.span())),
            _ => {
                self.error(
                    &value.span(),
                    subject,
                    "status must be an HTTP status, 100..=599",
                );
                None
            }
        }
    }

    /// `[case.response]`: header name to its exact value.
    fn response(
        &mut self,
        subject: &str,
        value: &Value<'_>,
    ) -> Option<(ResponseHeaders, Range<usize>)> {
        let DeValue::Table(table) = value.get_ref() else {
            let message = format!(
                "\"response\" must be a table of header names and values, found {}",
                value.get_ref().type_str()
            );
            self.error(&value.span(), subject, message);
            return None;
        };
        let mut out = Vec::with_capacity(table.len());
        for (key, item) in table {
            let Some(name) = self.header_name(subject, "response", key.get_ref(), &key.span())
            else {
                continue;
            };
            if HTTP_LAYER.contains(&name.as_str()) {
                let message = format!(
                    "response: {name} is written by the HTTP layer for each connection, not by the rules: preflightd test does not see it"
                );
                self.error(&key.span(), subject, message);
                continue;
            }
            if let Some((text, _)) = self.string(subject, &format!("response.{name}"), item) {
                out.push((name, text.to_owned()));
            }
        }
        Some((out, value.span()))
    }

    fn header_name(
        &mut self,
        subject: &str,
        key: &str,
        name: &str,
        span: &Range<usize>,
    ) -> Option<HeaderName> {
        match HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) {
            Ok(name) => Some(name),
            Err(_) => {
                let message = format!("{key}: {name:?} is not a header name (RFC 9110 5.1)");
                self.error(span, subject, message);
                None
            }
        }
    }

    /// The request: the URL, the request line's method, and the CORS fields, each field line
    /// as the case states it.
    fn request(
        &mut self,
        subject: &str,
        location: &Location,
        w: &Written<'_>,
    ) -> Option<CaseRequest> {
        let errors_before = self.errors.len();
        let mut headers = HeaderMap::new();
        self.required_field(subject, location, w, &mut headers, &ORIGIN);
        if let Some((method, span)) = &w.method
            && !is_token(method.as_bytes())
        {
            let message = format!(
                "method {} is not a method token (RFC 9110 5.6.2); method_lines sends field lines as written",
                shown(method)
            );
            self.error(span, subject, message);
        }
        self.required_field(
            subject,
            location,
            w,
            &mut headers,
            &ACCESS_CONTROL_REQUEST_METHOD,
        );
        match (&w.headers, &w.headers_lines) {
            (Some(_), Some((_, span))) => {
                self.error(span, subject, "set headers or headers_lines, not both")
            }
            (Some(names), None) => {
                if let Some(line) = self.requested_names(subject, names) {
                    headers.append(ACCESS_CONTROL_REQUEST_HEADERS, line);
                }
            }
            (None, Some((lines, _))) => self.lines(
                subject,
                &mut headers,
                &ACCESS_CONTROL_REQUEST_HEADERS,
                lines,
            ),
            (None, None) => {}
        }
        match (&w.private_network, &w.private_network_lines) {
            (Some(_), Some((_, span))) => self.error(
                span,
                subject,
                "set private_network or private_network_lines, not both",
            ),
            (Some((true, _)), None) => {
                headers.append(ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK.clone(), TRUE.clone());
            }
            (None, Some((lines, _))) => self.lines(
                subject,
                &mut headers,
                &ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK,
                lines,
            ),
            _ => {}
        }
        let method = match &w.request_method {
            None => Method::OPTIONS,
            Some((written, span)) => match Method::from_bytes(written.as_bytes()) {
                Ok(method) if is_token(written.as_bytes()) => method,
                _ => {
                    let message = format!(
                        "request_method {} is not a method token (RFC 9110 5.6.2)",
                        shown(written)
                    );
                    self.error(span, subject, message);
                    Method::OPTIONS
                }
            },
        };
        let url = w.url.as_ref().map_or(DEFAULT_URL, |(url, _)| url);
        let target = match url.parse::<Uri>() {
            Ok(uri)
                if matches!(uri.scheme_str(), Some("http" | "https"))
                    && uri
                        .authority()
                        .is_some_and(|a| !a.as_str().contains('@') && !a.host().is_empty()) =>
            {
                uri.authority().map(|authority| {
                    let path = if uri.path().is_empty() {
                        "/"
                    } else {
                        uri.path()
                    };
                    (authority.as_str().to_owned(), path.to_owned())
                })
            }
            _ => {
                let span = w.url.as_ref().map_or(0..0, |(_, span)| span.clone());
                let message = format!(
                    "url {} must be an absolute http:// or https:// URL without userinfo, such as \"https://api.example.com/v1/users\"",
                    shown(url)
                );
                self.error(&span, subject, message);
                None
            }
        };
        if self.errors.len() != errors_before {
            return None;
        }
        let (authority, path) = target?;
        Some(CaseRequest {
            method,
            url: url.to_owned(),
            authority,
            path,
            headers,
        })
    }

    /// `Origin` or `Access-Control-Request-Method`, given either simply (one line) or as
    /// exact lines, never both; one of them is required (`[]` sends no such field).
    fn required_field(
        &mut self,
        subject: &str,
        location: &Location,
        w: &Written<'_>,
        headers: &mut HeaderMap,
        name: &HeaderName,
    ) {
        let (simple_key, simple, lines_key, lines) = if name == ORIGIN {
            ("origin", &w.origin, "origin_lines", &w.origin_lines)
        } else {
            ("method", &w.method, "method_lines", &w.method_lines)
        };
        match (simple.clone(), lines.clone()) {
            (Some(_), Some((_, span))) => {
                let message = format!("set {simple_key} or {lines_key}, not both");
                self.error(&span, subject, message);
            }
            (Some(one), None) => self.lines(subject, headers, name, &[one]),
            (None, Some((lines, _))) => self.lines(subject, headers, name, &lines),
            (None, None) if w.present.contains(&simple_key) || w.present.contains(&lines_key) => {}
            (None, None) => self.errors.push(Diagnostic::error(
                location.clone(),
                Subject::File,
                format!(
                    "{subject}: missing required key \"{simple_key}\" ({lines_key} = [] sends no {name} field)"
                ),
            )),
        }
    }

    /// Appends one field line per value, `REPEAT` expanded; each must be a valid field value.
    fn lines(
        &mut self,
        subject: &str,
        headers: &mut HeaderMap,
        name: &HeaderName,
        values: &[Spot<'_>],
    ) {
        for (value, span) in values {
            let expanded = match repeat::expand(value, &mut self.budget) {
                Ok(expanded) => expanded,
                Err(why) => {
                    self.error(span, subject, format!("{name}: {why}"));
                    continue;
                }
            };
            match HeaderValue::from_bytes(expanded.as_bytes()) {
                Ok(line) => {
                    headers.append(name.clone(), line);
                }
                Err(_) => {
                    let message = format!(
                        "{name}: {} is not a field value (it holds a control character, RFC 9110 5.5)",
                        shown(&expanded)
                    );
                    self.error(span, subject, message);
                }
            }
        }
    }

    /// `headers = [...]` as a browser sends them (CORS-CHECKLIST 2.18): lowercased,
    /// de-duplicated, sorted, joined with `,`; none at all sends no field.
    fn requested_names(&mut self, subject: &str, names: &[Spot<'_>]) -> Option<HeaderValue> {
        let mut lowered = Vec::with_capacity(names.len());
        for (name, span) in names {
            if is_token(name.as_bytes()) {
                lowered.push(name.to_ascii_lowercase());
            } else {
                let message = format!(
                    "headers: {} is not a header name (RFC 9110 5.6.2); headers_lines sends field lines as written",
                    shown(name)
                );
                self.error(span, subject, message);
            }
        }
        lowered.sort_unstable();
        lowered.dedup();
        if lowered.is_empty() {
            return None;
        }
        // Tokens joined with commas are visible ASCII: always a valid field value.
        HeaderValue::from_str(&lowered.join(",")).ok()
    }

    /// What only makes sense together: an answer's details need an answer, `credentials`
    /// needs a credentialed case.
    fn check_expectation(
        &mut self,
        subject: &str,
        expect: Expect,
        expect_span: &Range<usize>,
        w: &Written<'_>,
    ) {
        if !expect.is_answered() {
            let passed = if expect == Expect::Forward {
                "passed to the upstream"
            } else {
                "proxied untouched"
            };
            let details = [
                ("status", w.status.as_ref().map(|(_, s)| s)),
                ("response", w.response.as_ref().map(|(_, s)| s)),
                ("absent", w.absent.as_ref().map(|(_, s)| s)),
                (
                    "rule",
                    w.rule
                        .as_ref()
                        .filter(|(rule, _)| !rule.is_empty())
                        .map(|(_, s)| s),
                ),
            ];
            for (key, span) in details {
                if let Some(span) = span {
                    let message = format!(
                        "{key}: with expect = {:?} the request is {passed}; the edge gives no answer to check",
                        expect.as_str()
                    );
                    self.error(span, subject, message);
                }
            }
        }
        if expect == Expect::Credentials && !w.credentials {
            self.error(
                expect_span,
                subject,
                "expect = \"credentials\" is for a case with credentials = true",
            );
        }
    }
}

/// A value for a message: quoted, and cut short when long (a `REPEAT` can be megabytes).
fn shown(value: &str) -> String {
    const LIMIT: usize = 60;
    if value.len() <= LIMIT {
        return format!("{value:?}");
    }
    let mut end = LIMIT;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}... ({} bytes)", &value[..end], value.len())
}

fn quoted_list(words: &[&str]) -> String {
    words
        .iter()
        .map(|w| format!("{w:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> CasesFile {
        parse("c.toml".into(), text).unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn errors(text: &str) -> Vec<String> {
        match parse("c.toml".into(), text) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn a_case_is_the_request_a_browser_sends() {
        let file = parsed(
            "[[case]]\nname = \"n\"\norigin = \"https://a.example\"\nmethod = \"PUT\"\nheaders = [\"X-B\", \"x-a\", \"x-b\"]\nexpect = \"allowed\"\n",
        );
        let case = &file.cases[0];
        assert_eq!(case.location.to_string(), "c.toml:1:1");
        assert_eq!(case.request.method, Method::OPTIONS);
        assert_eq!(
            (case.request.authority.as_str(), case.request.path.as_str()),
            ("localhost", "/")
        );
        let headers = &case.request.headers;
        assert_eq!(headers[ORIGIN], "https://a.example");
        assert_eq!(headers[ACCESS_CONTROL_REQUEST_METHOD], "PUT");
        // CORS-CHECKLIST 2.18: lowercased, de-duplicated, sorted, joined with ",".
        assert_eq!(headers[ACCESS_CONTROL_REQUEST_HEADERS], "x-a,x-b");
        assert_eq!(case.expected_status(), Some(204));
    }

    #[test]
    fn a_suites_rules_start_where_their_text_starts() {
        for (rules, start) in [
            ("'''\n[[rule]]'''", (3, 1)),
            ("'''\r\n[[rule]]'''", (3, 1)),
            ("'''[[rule]]'''", (2, 12)),
            ("\"[[rule]]\"", (2, 10)),
            ("\"\"\"\n[[rule]]\"\"\"", (3, 1)),
        ] {
            let text = format!(
                "[[suite]]\nrules = {rules}\nname = \"s\"\n[[suite.case]]\nname = \"c\"\norigin = \"o\"\nmethod = \"GET\"\nexpect = \"origin\"\n"
            );
            let file = parsed(&text);
            assert_eq!(file.suites[0].rules_start, start, "{rules}");
            assert_eq!(file.suites[0].rules, "[[rule]]");
        }
    }

    #[test]
    fn what_does_not_fit_together_is_an_error_at_its_place() {
        let text = "[[case]]\nname = \"n\"\norigin = \"o\"\norigin_lines = []\nmethod = \"GET\"\nexpect = \"forward\"\nstatus = 204\nrule = \"r\"\n\n[[case]]\nname = \"m\"\norigin = \"o\"\nmethod = \"GET\"\nexpect = \"credentials\"\n";
        assert_eq!(
            errors(text),
            [
                "c.toml:4:16: case \"n\": set origin or origin_lines, not both",
                "c.toml:7:10: case \"n\": status: with expect = \"forward\" the request is passed to the upstream; the edge gives no answer to check",
                "c.toml:8:8: case \"n\": rule: with expect = \"forward\" the request is passed to the upstream; the edge gives no answer to check",
                "c.toml:14:10: case \"m\": expect = \"credentials\" is for a case with credentials = true",
            ]
        );
        assert_eq!(
            errors(
                "[[case]]\nname = \"n\"\norigin = \"o\"\nmethod = \"GET\"\nexpect = \"origin\"\n[case.response]\nContent-Length = \"0\"\n"
            ),
            [
                "c.toml:7:1: case \"n\": response: content-length is written by the HTTP layer for each connection, not by the rules: preflightd test does not see it"
            ]
        );
        assert_eq!(
            errors(""),
            ["c.toml: no [[case]] or [[suite]] tables: nothing to test"]
        );
        assert_eq!(
            errors("[[suite]]\nname = \"s\"\nrules = \"\"\ncase = []\n"),
            [
                "c.toml:1:1: suite \"s\": no [[suite.case]] tables: a suite holds the cases run against its rules"
            ]
        );
        assert_eq!(
            errors(
                "[[suite]]\nname = 1\nrules = 2\n[[suite.case]]\nname = \"c\"\norigin = \"o\"\nmethod = \"GET\"\nexpect = \"origin\"\n"
            ),
            [
                "c.toml:2:8: suite #1: \"name\" must be a string, found integer",
                "c.toml:3:9: suite #1: \"rules\" must be a string, found integer",
            ]
        );
        assert_eq!(
            errors("case = 3"),
            ["c.toml:1:1: \"case\" must be an array of tables: write [[case]]"]
        );
    }
}
