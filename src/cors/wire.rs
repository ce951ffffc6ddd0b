//! Every answer a policy can give, as HTTP/1.1 bytes rendered once per policy, for the fast
//! path: the status line, every field of that rule and outcome, `content-length` and the body,
//! in one buffer, with holes only for what is echoed from the request and for the date.
//!
//! The templates are written from [`Answer::for_each_field`], the same list the hyper path
//! builds its `HeaderMap` from, and laid out as hyper encodes a response (RFC 9112 4 and 6):
//! the status line with the canonical reason, the fields in that order with lowercase names,
//! `content-length` for a non-empty body (none on a 204, RFC 9110 8.6), then `date`
//! (RFC 9110 6.6.1). So both paths answer byte for byte alike, apart from the date.

use http::StatusCode;

use super::answer::{Answer, FieldValue, Outcome, Reason, write_header_names};
use super::request::{self, Fields};
use crate::policy::Policy;
use crate::syntax::trim_ows;

/// Length of an IMF-fixdate (RFC 9110 5.6.7): `Sun, 06 Nov 1994 08:49:37 GMT`.
pub const DATE_LEN: usize = 29;

/// A part of a rendered answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// `text[start..end]`.
    Text(u32, u32),
    /// The request's `Origin`, OWS trimmed.
    Origin,
    /// The request's `Access-Control-Request-Method`, OWS trimmed.
    Method,
    /// `text[start..end]` (the field name and `: `), then the requested header names the
    /// rule allows and CRLF; nothing at all when it allows none of them.
    HeaderNames(u32, u32),
    /// The `Date` value.
    Date,
}

/// One answer's bytes with its holes.
#[derive(Debug, Clone)]
pub struct Template {
    text: Box<[u8]>,
    parts: Box<[Part]>,
}

/// The answers of one policy: per rule, the answers that grant (allowed, or a `debug`
/// denial), with and without Private Network Access; and the denials, by reason.
#[derive(Debug)]
pub struct WireAnswers {
    rules: Vec<[Option<Template>; 4]>,
    denials: [Template; 5],
}

/// A rule's granting answer's place in its four: (allowed, private network).
#[inline]
fn variant(allowed: bool, private_network: bool) -> usize {
    usize::from(!allowed) * 2 + usize::from(private_network)
}

impl WireAnswers {
    /// Renders every answer `policy` can give. Linear in the number of rules.
    pub fn compile(policy: &Policy) -> Self {
        let debug = policy.settings().debug;
        let rules = (0..policy.rules.len())
            .map(|index| {
                let rule = &policy.rules[index];
                let mut four: [Option<Template>; 4] = [None, None, None, None];
                let outcomes = [
                    (Outcome::Allowed, true),
                    (Outcome::Denied(Reason::Method), debug),
                ];
                for (outcome, possible) in outcomes {
                    if !possible {
                        continue;
                    }
                    for private_network in [false, true] {
                        if private_network && !rule.private_network {
                            continue;
                        }
                        let answer =
                            Answer::new(policy, outcome, Some(index), (private_network, false));
                        four[variant(outcome == Outcome::Allowed, private_network)] =
                            Some(Template::render(&answer));
                    }
                }
                four
            })
            .collect();
        let denial = |reason| {
            Template::render(&Answer::new(
                policy,
                Outcome::Denied(reason),
                None,
                (false, false),
            ))
        };
        WireAnswers {
            rules,
            denials: [
                denial(Reason::NoRule),
                denial(Reason::Origin),
                denial(Reason::Method),
                denial(Reason::Headers),
                denial(Reason::Malformed),
            ],
        }
    }

    /// The template of `answer` (an answer of the policy this was compiled from).
    #[inline]
    fn template(&self, answer: &Answer<'_>) -> Option<&Template> {
        match (answer.grants(), answer.rule, answer.outcome) {
            (true, Some(rule), outcome) => self.rules.get(rule)?
                [variant(outcome == Outcome::Allowed, answer.private_network())]
            .as_ref(),
            (_, _, Outcome::Denied(reason)) => Some(&self.denials[reason_index(reason)]),
            // An allowed answer always names its rule and grants.
            (_, _, Outcome::Allowed) => None,
        }
    }

    /// Appends `answer` to `out`, its holes filled from `request` (the preflight it answers,
    /// already validated by the decision) and `date`. `false` (and nothing written) when the
    /// answer has no template, which would be a bug: the caller then serves the request the
    /// slow way.
    #[inline]
    pub fn write<H: Fields + ?Sized>(
        &self,
        answer: &Answer<'_>,
        request: &H,
        date: &[u8; DATE_LEN],
        out: &mut Vec<u8>,
    ) -> bool {
        let Some(template) = self.template(answer) else {
            return false;
        };
        let text = &template.text;
        for part in template.parts.iter() {
            match *part {
                Part::Text(start, end) => {
                    out.extend_from_slice(&text[start as usize..end as usize])
                }
                Part::Origin => {
                    if let Ok((_, origin)) = request::origin(request) {
                        out.extend_from_slice(origin);
                    }
                }
                Part::Method => {
                    if let Some(method) = request
                        .lines(&http::header::ACCESS_CONTROL_REQUEST_METHOD)
                        .next()
                    {
                        out.extend_from_slice(trim_ows(method));
                    }
                }
                Part::HeaderNames(start, end) => {
                    let Some(rule) = answer.rule() else { continue };
                    let mark = out.len();
                    out.extend_from_slice(&text[start as usize..end as usize]);
                    let names = out.len();
                    write_header_names(request, rule, out);
                    if out.len() == names {
                        out.truncate(mark);
                    } else {
                        out.extend_from_slice(b"\r\n");
                    }
                }
                Part::Date => out.extend_from_slice(date),
            }
        }
        true
    }
}

fn reason_index(reason: Reason) -> usize {
    Outcome::Denied(reason).index() - 1
}

impl Template {
    fn render(answer: &Answer<'_>) -> Self {
        let mut builder = Builder::default();
        let status: StatusCode = answer.status();
        builder.text(b"HTTP/1.1 ");
        builder.text(status.as_str().as_bytes());
        builder.text(b" ");
        builder.text(status.canonical_reason().unwrap_or("").as_bytes());
        builder.text(b"\r\n");
        answer.for_each_field(|name, value| {
            let name = name.as_str().as_bytes();
            match value {
                FieldValue::Fixed(value) => {
                    builder.field(name, |b| b.text(value.as_bytes()));
                }
                FieldValue::Origin => builder.field(name, |b| b.hole(Part::Origin)),
                FieldValue::Method => builder.field(name, |b| b.hole(Part::Method)),
                FieldValue::HeaderNames => builder.optional_field(name),
            }
        });
        let body = answer.body().as_bytes();
        // RFC 9110 8.6: a 204 carries no Content-Length; any other answer says its length,
        // `0` for an empty 200 (`preflight_status = 200`), as hyper writes it.
        if !body.is_empty() || status != StatusCode::NO_CONTENT {
            builder.text(format!("content-length: {}\r\n", body.len()).as_bytes());
        }
        builder.text(b"date: ");
        builder.hole(Part::Date);
        builder.text(b"\r\n\r\n");
        builder.text(body);
        builder.finish()
    }
}

fn offset(at: usize) -> u32 {
    u32::try_from(at).unwrap_or(u32::MAX)
}

/// Accumulates text (merging neighbouring runs into one part) and holes.
#[derive(Default)]
struct Builder {
    text: Vec<u8>,
    parts: Vec<Part>,
    /// Start of the text run not yet closed into a part.
    open: Option<usize>,
}

impl Builder {
    fn text(&mut self, bytes: &[u8]) {
        if self.open.is_none() {
            self.open = Some(self.text.len());
        }
        self.text.extend_from_slice(bytes);
    }

    fn close(&mut self) {
        if let Some(start) = self.open.take()
            && start < self.text.len()
        {
            self.parts
                .push(Part::Text(offset(start), offset(self.text.len())));
        }
    }

    fn hole(&mut self, part: Part) {
        self.close();
        self.parts.push(part);
    }

    fn field(&mut self, name: &[u8], value: impl FnOnce(&mut Self)) {
        self.text(name);
        self.text(b": ");
        value(self);
        self.text(b"\r\n");
    }

    /// A field whose whole line is left out when it lists no header name.
    fn optional_field(&mut self, name: &[u8]) {
        self.close();
        let start = self.text.len();
        self.text.extend_from_slice(name);
        self.text.extend_from_slice(b": ");
        self.parts
            .push(Part::HeaderNames(offset(start), offset(self.text.len())));
    }

    fn finish(mut self) -> Template {
        self.close();
        Template {
            text: self.text.into_boxed_slice(),
            parts: self.parts.into_boxed_slice(),
        }
    }
}
