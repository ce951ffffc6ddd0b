//! Typed readers of one TOML value, shared by the two files read with places: rules files
//! (`load`) and cases files (`cases::parse`). A reader returns the value, or a [`Misfit`]
//! saying what is wrong and where; each walker reports it under its own subject, so both
//! files word a wrong type alike.

use std::ops::Range;

use toml::Spanned;
use toml::de::DeValue;

/// A TOML value with its span in the file.
pub type Value<'i> = Spanned<DeValue<'i>>;

/// A value that is not what its key wants: its span and the message.
#[derive(Debug)]
pub struct Misfit {
    pub span: Range<usize>,
    pub message: String,
}

impl Misfit {
    fn new(span: Range<usize>, message: String) -> Self {
        Misfit { span, message }
    }
}

pub fn boolean(key: &str, value: &Value<'_>) -> Result<bool, Misfit> {
    match value.get_ref() {
        DeValue::Boolean(b) => Ok(*b),
        other => Err(Misfit::new(
            value.span(),
            format!("{key:?} must be true or false, found {}", other.type_str()),
        )),
    }
}

pub fn string<'v>(key: &str, value: &'v Value<'_>) -> Result<&'v str, Misfit> {
    match value.get_ref() {
        DeValue::String(s) => Ok(s.as_ref()),
        other => Err(Misfit::new(
            value.span(),
            format!("{key:?} must be a string, found {}", other.type_str()),
        )),
    }
}

/// An integer as written (any radix, `_` separators allowed); `Ok(None)` when it does not
/// fit an `i64`, which the caller reports with the range it wants.
pub fn integer(key: &str, value: &Value<'_>) -> Result<Option<i64>, Misfit> {
    match value.get_ref() {
        DeValue::Integer(i) => {
            Ok(i64::from_str_radix(&i.as_str().replace('_', ""), i.radix()).ok())
        }
        other => Err(Misfit::new(
            value.span(),
            format!("{key:?} must be an integer, found {}", other.type_str()),
        )),
    }
}

/// An array of strings, each with its span. An element that is not a string is a misfit of
/// its own, pushed to `misfits`, and the rest are still read (every error at once); a value
/// that is not an array is the one misfit.
pub fn strings<'v>(
    key: &str,
    value: &'v Value<'_>,
    misfits: &mut Vec<Misfit>,
) -> Result<Vec<(&'v str, Range<usize>)>, Misfit> {
    let DeValue::Array(items) = value.get_ref() else {
        return Err(Misfit::new(
            value.span(),
            format!(
                "{key:?} must be an array of strings, found {}",
                value.get_ref().type_str()
            ),
        ));
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item.get_ref() {
            DeValue::String(s) => out.push((s.as_ref(), item.span())),
            other => misfits.push(Misfit::new(
                item.span(),
                format!("{key:?} must hold only strings, found {}", other.type_str()),
            )),
        }
    }
    Ok(out)
}

/// A TOML basic string.
pub fn toml_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04X}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML array of basic strings.
pub fn toml_list(items: &[String]) -> String {
    let inner: Vec<String> = items.iter().map(|s| toml_string(s)).collect();
    format!("[{}]", inner.join(", "))
}
