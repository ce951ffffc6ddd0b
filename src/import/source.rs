//! A bucket's CORS rules as read from the vendor's file, before any translation: one
//! vendor-neutral [`SourceRule`] per vendor rule, every value with the place it was written,
//! and the readers the vendor parsers share (JSON by path, XML by line and column).

use std::fmt;

use serde_json::{Map, Value};

/// Where something stands in the input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// The file as a whole.
    File,
    /// A line and column (XML, and JSON syntax errors).
    Line(usize, usize),
    /// A JSON path, e.g. `CORSRules[1].AllowedMethods[0]` (serde_json keeps no positions for
    /// values, so a JSON value is named by its path).
    Path(String),
}

/// One problem with the input: invalid input, or a rule that cannot be expressed exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub place: Place,
    /// `rule #2 "AllowPuts"` when the problem belongs to one source rule.
    pub rule: Option<String>,
    pub message: String,
}

impl Problem {
    pub fn new(place: Place, message: impl Into<String>) -> Self {
        Problem {
            place,
            rule: None,
            message: message.into(),
        }
    }

    pub fn in_rule(mut self, rule: &SourceRule) -> Self {
        self.rule = Some(rule.label());
        self
    }

    /// `FILE:LINE:COL: rule #2 "x": message` or `FILE: Path[0]: message`, the way
    /// `preflightd check` prints its diagnostics.
    pub fn render(&self, file: &str) -> String {
        let mut out = match &self.place {
            Place::File => format!("{file}: "),
            Place::Line(line, column) => format!("{file}:{line}:{column}: "),
            Place::Path(path) => format!("{file}: {path}: "),
        };
        if let Some(rule) = &self.rule {
            out.push_str(rule);
            out.push_str(": ");
        }
        out.push_str(&self.message);
        out
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render("input"))
    }
}

/// One written value and its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub value: String,
    pub place: Place,
}

/// One vendor rule, as written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SourceRule {
    /// 1-based position in the vendor's list (the vendor evaluates rules in this order).
    pub index: usize,
    /// The vendor's own name for the rule (`ID`, `corsRuleName`, `id`), when it has one.
    pub id: Option<String>,
    pub place: Option<Place>,
    pub origins: Vec<Item>,
    /// Methods, or for B2 the operations (mapped to methods by the translation).
    pub methods: Vec<Item>,
    /// Request headers a preflight may ask for.
    pub headers: Vec<Item>,
    /// Response headers exposed to the page.
    pub expose: Vec<Item>,
    pub max_age: Option<(i64, Place)>,
    /// GCS: `responseHeader` stands for both `headers` and `expose`.
    pub response_header_both: bool,
}

impl SourceRule {
    /// `rule #2 "AllowPuts"`, or `rule #2` without an ID.
    pub fn label(&self) -> String {
        match &self.id {
            Some(id) => format!("rule #{} {id:?}", self.index),
            None => format!("rule #{}", self.index),
        }
    }

    pub fn place(&self) -> Place {
        self.place.clone().unwrap_or(Place::File)
    }
}

/// The largest input read: vendors cap a CORS configuration far below this (S3 64 KB,
/// B2 100 rules of under 1 000 bytes, Azure 2 KB), so anything larger is not one.
pub const MAX_INPUT_BYTES: usize = 4 << 20;

// --- JSON ------------------------------------------------------------------------------------

/// Parses JSON, reporting a syntax error at its line and column.
pub fn parse_json(text: &str) -> Result<Value, Problem> {
    serde_json::from_str(text).map_err(|e| {
        // serde_json's message ends with " at line L column C"; the place says it already.
        let message = e.to_string();
        let message = match message.rfind(" at line ") {
            Some(cut) => message[..cut].to_owned(),
            None => message,
        };
        Problem::new(
            Place::Line(e.line(), e.column()),
            format!("invalid JSON: {message}"),
        )
    })
}

pub fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A JSON object read by key, each value named by its path.
pub struct JsonObject<'a> {
    pub map: &'a Map<String, Value>,
    pub path: String,
}

impl<'a> JsonObject<'a> {
    pub fn new(value: &'a Value, path: String) -> Result<Self, Problem> {
        match value {
            Value::Object(map) => Ok(JsonObject { map, path }),
            other => Err(Problem::new(
                Place::Path(path),
                format!("expected an object, found {}", json_type(other)),
            )),
        }
    }

    pub fn child_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// Every key must be one of `known` (vendors refuse unknown fields; a misspelt one here
    /// would silently drop a list).
    pub fn check_keys(&self, known: &[&str], problems: &mut Vec<Problem>) {
        for key in self.map.keys() {
            if !known.contains(&key.as_str()) {
                // A near miss: the same name in another case, or one a prefix of the other.
                let lower = key.to_ascii_lowercase();
                let near = known.iter().find(|k| {
                    let k = k.to_ascii_lowercase();
                    k.starts_with(&lower) || lower.starts_with(&k)
                });
                let hint = match near {
                    Some(k) => format!("; did you mean {k:?}?"),
                    None => format!("; expected one of {}", known.join(", ")),
                };
                problems.push(Problem::new(
                    Place::Path(self.child_path(key)),
                    format!("unknown field {key:?}{hint}"),
                ));
            }
        }
    }

    /// A list of strings; absent or `null` is empty.
    pub fn strings(&self, key: &str) -> Result<Vec<Item>, Problem> {
        let path = self.child_path(key);
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(values)) => values
                .iter()
                .enumerate()
                .map(|(i, value)| {
                    let place = Place::Path(format!("{path}[{i}]"));
                    match value {
                        Value::String(s) => Ok(Item {
                            value: s.clone(),
                            place,
                        }),
                        other => Err(Problem::new(
                            place,
                            format!("expected a string, found {}", json_type(other)),
                        )),
                    }
                })
                .collect(),
            Some(other) => Err(Problem::new(
                Place::Path(path),
                format!("expected an array of strings, found {}", json_type(other)),
            )),
        }
    }

    pub fn string(&self, key: &str) -> Result<Option<String>, Problem> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(Problem::new(
                Place::Path(self.child_path(key)),
                format!("expected a string, found {}", json_type(other)),
            )),
        }
    }

    /// An integer number of seconds; absent or `null` is `None`.
    pub fn integer(&self, key: &str) -> Result<Option<(i64, Place)>, Problem> {
        let place = Place::Path(self.child_path(key));
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(v) => Ok(Some((v, place))),
                None => Err(Problem::new(
                    place,
                    format!("expected a whole number of seconds, found {n}"),
                )),
            },
            Some(other) => Err(Problem::new(
                place,
                format!("expected a number, found {}", json_type(other)),
            )),
        }
    }
}

/// The keys a vendor gives the parts of one JSON rule (GCS aside: it has one list for two).
pub struct RuleKeys {
    pub id: &'static str,
    pub origins: &'static str,
    pub methods: &'static str,
    pub headers: &'static str,
    pub expose: &'static str,
    pub max_age: &'static str,
}

impl RuleKeys {
    /// Every key, in the order the vendor documents them (the order unknown-key hints list).
    pub const fn all(&self) -> [&'static str; 6] {
        [
            self.id,
            self.origins,
            self.methods,
            self.headers,
            self.expose,
            self.max_age,
        ]
    }

    /// One rule whose keys all stand in `object`.
    pub fn read(&self, object: &JsonObject<'_>) -> Result<SourceRule, Problem> {
        self.read_with_lists(object, object)
    }

    /// One rule whose origins, methods and headers stand in `lists` (R2 nests them in
    /// `allowed`), the rest in `object`. The first wrong value is the problem.
    pub fn read_with_lists(
        &self,
        object: &JsonObject<'_>,
        lists: &JsonObject<'_>,
    ) -> Result<SourceRule, Problem> {
        Ok(SourceRule {
            id: object.string(self.id)?,
            origins: lists.strings(self.origins)?,
            methods: lists.strings(self.methods)?,
            headers: lists.strings(self.headers)?,
            expose: object.strings(self.expose)?,
            max_age: object.integer(self.max_age)?,
            ..SourceRule::default()
        })
    }
}

/// The elements of a JSON array at `path`.
pub fn json_array<'a>(value: &'a Value, path: &str) -> Result<&'a [Value], Problem> {
    match value {
        Value::Array(items) => Ok(items),
        other => Err(Problem::new(
            Place::Path(path.to_owned()),
            format!("expected an array of rules, found {}", json_type(other)),
        )),
    }
}

/// Where a vendor keeps its rules when its JSON is the bare array or an object holding it
/// under `key` (B2's and GCS's bucket resources): the array and its path (empty for the
/// document itself), or `None` when the document is neither.
pub fn bare_or_under<'a>(value: &'a Value, key: &str) -> Option<(&'a Value, String)> {
    match value {
        Value::Array(_) => Some((value, String::new())),
        Value::Object(map) => map.get(key).map(|rules| (rules, key.to_owned())),
        _ => None,
    }
}

/// Reads the array of rule objects at `path` (empty for the document itself): each object's
/// keys checked against `fields`, then `read` fills the fields the vendor names. The rule's
/// index and place are set here, so every vendor numbers and places its rules alike. Every
/// rule, or every problem in any of them (all at once, so one edit fixes the file).
pub fn json_rules(
    rules: &Value,
    path: &str,
    fields: &[&str],
    mut read: impl FnMut(&JsonObject<'_>, &mut Vec<Problem>) -> Result<SourceRule, Problem>,
) -> Result<Vec<SourceRule>, Vec<Problem>> {
    let items =
        json_array(rules, if path.is_empty() { "(top)" } else { path }).map_err(|p| vec![p])?;
    let mut problems = Vec::new();
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let rule_path = format!("{path}[{i}]");
        let rule = JsonObject::new(item, rule_path.clone()).and_then(|object| {
            object.check_keys(fields, &mut problems);
            read(&object, &mut problems)
        });
        match rule {
            Ok(rule) => out.push(SourceRule {
                index: i + 1,
                place: Some(Place::Path(rule_path)),
                ..rule
            }),
            Err(p) => problems.push(p),
        }
    }
    all_or_problems(out, problems)
}

// --- XML -------------------------------------------------------------------------------------

/// Parses XML (roxmltree: read-only, no DTD, so no entity expansion), reporting an error at
/// its line and column.
pub fn parse_xml(text: &str) -> Result<roxmltree::Document<'_>, Problem> {
    roxmltree::Document::parse(text).map_err(|e| {
        let pos = e.pos();
        let message = e.to_string();
        // roxmltree's message ends with " at L:C"; the place says it already.
        let message = match message.rfind(" at ") {
            Some(cut) => message[..cut].to_owned(),
            None => message,
        };
        Problem::new(
            Place::Line(pos.row as usize, pos.col as usize),
            format!("invalid XML: {message}"),
        )
    })
}

pub fn xml_place(document: &roxmltree::Document<'_>, node: roxmltree::Node<'_, '_>) -> Place {
    let pos = document.text_pos_at(node.range().start);
    Place::Line(pos.row as usize, pos.col as usize)
}

/// The child elements of `node` (comments, whitespace and processing instructions skipped).
pub fn xml_elements<'a, 'input>(
    node: roxmltree::Node<'a, 'input>,
) -> impl Iterator<Item = roxmltree::Node<'a, 'input>> {
    node.children().filter(roxmltree::Node::is_element)
}

/// The text of an element with no child elements.
pub fn xml_text(
    document: &roxmltree::Document<'_>,
    node: roxmltree::Node<'_, '_>,
) -> Result<String, Problem> {
    if let Some(child) = xml_elements(node).next() {
        return Err(Problem::new(
            xml_place(document, child),
            format!(
                "unexpected element <{}> inside <{}>: it holds text only",
                child.tag_name().name(),
                node.tag_name().name()
            ),
        ));
    }
    Ok(node.children().filter_map(|c| c.text()).collect::<String>())
}

/// An integer in an element's text.
pub fn xml_integer(
    document: &roxmltree::Document<'_>,
    node: roxmltree::Node<'_, '_>,
) -> Result<(i64, Place), Problem> {
    let text = xml_text(document, node)?;
    let place = xml_place(document, node);
    match text.trim().parse::<i64>() {
        Ok(v) => Ok((v, place)),
        Err(_) => Err(Problem::new(
            place,
            format!(
                "<{}> {:?} is not a whole number of seconds",
                node.tag_name().name(),
                text.trim()
            ),
        )),
    }
}

/// Reads each `<rule_tag>` element of `container`, one field element at a time: `read` takes
/// a field and its place into the rule (or says what is wrong with it). The rule's index and
/// place are set here; any other element in `container` is a problem. Every rule, or every
/// problem in any of them.
pub fn xml_rules(
    document: &roxmltree::Document<'_>,
    container: roxmltree::Node<'_, '_>,
    rule_tag: &str,
    mut read: impl FnMut(&mut SourceRule, roxmltree::Node<'_, '_>, Place) -> Result<(), Problem>,
) -> Result<Vec<SourceRule>, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut out = Vec::new();
    for node in xml_elements(container) {
        if node.tag_name().name() != rule_tag {
            problems.push(Problem::new(
                xml_place(document, node),
                format!(
                    "unexpected <{}> in <{}>: expected <{rule_tag}>",
                    node.tag_name().name(),
                    container.tag_name().name()
                ),
            ));
            continue;
        }
        let mut rule = SourceRule {
            index: out.len() + 1,
            place: Some(xml_place(document, node)),
            ..SourceRule::default()
        };
        for field in xml_elements(node) {
            if let Err(p) = read(&mut rule, field, xml_place(document, field)) {
                problems.push(p);
            }
        }
        out.push(rule);
    }
    all_or_problems(out, problems)
}

/// The rules read, or, when anything was wrong, every problem instead: a partial import
/// would answer preflights differently from the vendor.
fn all_or_problems(
    rules: Vec<SourceRule>,
    problems: Vec<Problem>,
) -> Result<Vec<SourceRule>, Vec<Problem>> {
    if problems.is_empty() {
        Ok(rules)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_render_like_check_diagnostics() {
        let rule = SourceRule {
            index: 2,
            id: Some("AllowPuts".into()),
            ..SourceRule::default()
        };
        let at_line = Problem::new(Place::Line(7, 3), "bad").in_rule(&rule);
        assert_eq!(
            at_line.render("cors.xml"),
            "cors.xml:7:3: rule #2 \"AllowPuts\": bad"
        );
        let at_path = Problem::new(Place::Path("CORSRules[1]".into()), "bad");
        assert_eq!(at_path.render("cors.json"), "cors.json: CORSRules[1]: bad");
    }

    #[test]
    fn json_errors_have_their_place() {
        let err = parse_json("[\n  {\"a\": }\n]").unwrap_err();
        assert_eq!(err.place, Place::Line(2, 9));
        assert!(
            err.message.starts_with("invalid JSON: expected value"),
            "{err}"
        );
        let value = parse_json(r#"{"AllowedOrigins": ["a", 3]}"#).unwrap();
        let object = JsonObject::new(&value, "CORSRules[0]".into()).unwrap();
        let err = object.strings("AllowedOrigins").unwrap_err();
        assert_eq!(
            err.render("f"),
            "f: CORSRules[0].AllowedOrigins[1]: expected a string, found a number"
        );
    }

    #[test]
    fn xml_errors_have_their_place() {
        let err = parse_xml("<a>\n  <b></c>\n</a>").err().unwrap();
        assert_eq!(err.place, Place::Line(2, 6));
        assert!(err.message.starts_with("invalid XML"), "{err}");
    }
}
