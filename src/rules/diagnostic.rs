//! Diagnostics: every problem found in a rules file, with the place it stands.
//!
//! Format (ripgrep / compiler style, so editors can jump to it):
//! `rules/api.toml:7:12: rule "web": invalid origin "https://*.": empty host label`
//! Warnings carry `warning: ` after the location.

use std::fmt;
use std::sync::Arc;

/// A place in a rules file. `line == 0` means the file as a whole.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    pub file: Arc<str>,
    pub line: usize,
    pub column: usize,
}

impl Location {
    pub fn file(file: Arc<str>) -> Self {
        Location {
            file,
            line: 0,
            column: 0,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file)
        } else {
            write!(f, "{}:{}:{}", self.file, self.line, self.column)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

/// What part of the file a diagnostic is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    File,
    Settings,
    /// A rule by its name.
    Rule(String),
    /// A rule without a usable name: its 1-based position in its file.
    UnnamedRule(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub location: Location,
    pub subject: Subject,
    pub message: String,
}

impl Diagnostic {
    pub fn error(location: Location, subject: Subject, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            location,
            subject,
            message: message.into(),
        }
    }

    pub fn warning(location: Location, subject: Subject, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            location,
            subject,
            message: message.into(),
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.location)?;
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        match &self.subject {
            Subject::File => {}
            Subject::Settings => f.write_str("settings: ")?,
            Subject::Rule(name) => write!(f, "rule {name:?}: ")?,
            Subject::UnnamedRule(n) => write!(f, "rule #{n}: ")?,
        }
        f.write_str(&self.message)
    }
}

/// Maps byte offsets of one source text to 1-based line and column (columns count characters).
///
/// Columns are counted from the last place located when it is on the same line and not
/// after the offset (diagnostics come in file order), so that many mistakes on one long line
/// cost time linear in the line, not quadratic.
pub struct LineIndex<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
    /// (line, byte offset, column) of the last place located.
    cursor: std::cell::Cell<(usize, usize, usize)>,
}

impl<'a> LineIndex<'a> {
    pub fn new(text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex {
            text,
            line_starts,
            cursor: std::cell::Cell::new((1, 0, 1)),
        }
    }

    pub fn locate(&self, file: &Arc<str>, offset: usize) -> Location {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let (cursor_line, cursor_offset, cursor_column) = self.cursor.get();
        let (from, base) = if cursor_line == line && cursor_offset <= offset {
            (cursor_offset, cursor_column)
        } else {
            (self.line_starts[line - 1], 1)
        };
        let column = base + self.text.get(from..offset).map_or(0, |s| s.chars().count());
        self.cursor.set((line, offset, column));
        Location {
            file: Arc::clone(file),
            line,
            column,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_lines_and_columns() {
        let file: Arc<str> = Arc::from("r.toml");
        let index = LineIndex::new("ab\ncdé\nx");
        assert_eq!(index.locate(&file, 0).to_string(), "r.toml:1:1");
        assert_eq!(index.locate(&file, 3).to_string(), "r.toml:2:1");
        // 'é' is two bytes but one column.
        assert_eq!(index.locate(&file, 7).to_string(), "r.toml:2:4");
        assert_eq!(index.locate(&file, 8).to_string(), "r.toml:3:1");
    }

    #[test]
    fn renders_like_a_compiler() {
        let location = Location {
            file: Arc::from("rules/api.toml"),
            line: 7,
            column: 12,
        };
        let d = Diagnostic::error(location.clone(), Subject::Rule("web".into()), "bad");
        assert_eq!(d.to_string(), r#"rules/api.toml:7:12: rule "web": bad"#);
        let w = Diagnostic::warning(location, Subject::Settings, "odd");
        assert_eq!(w.to_string(), "rules/api.toml:7:12: warning: settings: odd");
    }
}
