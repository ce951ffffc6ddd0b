//! One access-log line: the facts of one request, every value taken from the request
//! escaped, rendered as a fixed-field text line or as one JSON object. Pure: no I/O and no
//! clock (the time comes in with the facts), no allocation beyond the output buffer.
//!
//! Escaping (log injection, CWE-117): a value from the request can hold any byte hyper or the
//! fast path let through, CR, LF, quotes and non-ASCII included. In text, `"`, `\`, space,
//! control bytes, DEL and every byte above 0x7E are written `\xNN` (nginx's
//! `log_format ... escape=default`, plus space so that every field is one whitespace-free
//! token for `awk`); in JSON, `"` and `\` are backslash-escaped and every byte outside
//! 0x20..=0x7E is written `\u00NN` (RFC 8259 7), so a line is pure ASCII, always parses, and
//! its strings' code points are the request's bytes (Latin-1), recoverable exactly.

use std::net::SocketAddr;
use std::time::Duration;

use http::header::{ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN};
use http::{HeaderMap, HeaderName};

use crate::cors::Fields;

/// How lines are written: `--access-log text|json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// What became of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A CORS preflight: answered at the edge, or forwarded (`unmatched = "forward"`).
    Preflight,
    /// Passed to the upstream; or answered by the edge on its way there (502, 503, 504, a
    /// client's broken body).
    Proxied,
    /// A WebSocket upgrade the upstream accepted (101): logged when the tunnel opens.
    Tunnel,
    /// Refused before any decision: a head hyper cannot parse (400, 414, 431), a bad host
    /// (400), `CONNECT` (405).
    Error,
}

impl Kind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Preflight => "preflight",
            Kind::Proxied => "proxied",
            Kind::Tunnel => "tunnel",
            Kind::Error => "error",
        }
    }
}

/// The facts of one request. `None` is written `-` in text and `null` in JSON.
#[derive(Debug)]
pub struct Entry<'a, F: ?Sized = HeaderMap> {
    /// When the request head was received, as time since the Unix epoch.
    pub time: Duration,
    /// The client's address: the peer, or the PROXY header's (as in `X-Forwarded-For`).
    pub client: SocketAddr,
    /// `HTTP/1.0`, `HTTP/1.1`, `HTTP/2`; `None` when the head could not be parsed.
    pub protocol: Option<&'static str>,
    pub method: Option<&'a [u8]>,
    /// The effective host (the one the decision used), port included.
    pub host: Option<&'a [u8]>,
    /// The path, without the query string (which may carry secrets).
    pub path: Option<&'a [u8]>,
    /// The status the client was answered with.
    pub status: u16,
    /// Response body bytes handed to the connection.
    pub bytes: u64,
    /// From the request head received to the response's last byte handed to the connection.
    pub duration: Option<Duration>,
    pub kind: Kind,
    /// A preflight's rule (`(none)` when none applies).
    pub rule: Option<&'a str>,
    /// A preflight's result (`allowed`, `origin`, ..., `forwarded`), or why an `Error` was
    /// refused (`bad_request`, `uri_too_long`, `head_too_large`, `bad_host`,
    /// `connect_method`).
    pub result: Option<&'a str>,
    /// A preflight's request fields: its `Origin`, `Access-Control-Request-Method` and
    /// `Access-Control-Request-Headers` lines are logged; `None` for other requests.
    pub request: Option<&'a F>,
    /// The upstream's status; `None` when it did not answer (or was not asked).
    pub upstream_status: Option<u16>,
    /// From sending the request upstream to its response head, or to its failure.
    pub upstream_duration: Option<Duration>,
}

/// The text columns, in order; also the JSON keys.
pub const FIELDS: [&str; 17] = [
    "time",
    "client",
    "protocol",
    "method",
    "host",
    "path",
    "status",
    "bytes",
    "duration",
    "kind",
    "rule",
    "result",
    "origin",
    "request_method",
    "request_headers",
    "upstream_status",
    "upstream_duration",
];

/// Appends `entry` to `out` as one line, `\n` included.
pub fn render<F: Fields + ?Sized>(entry: &Entry<'_, F>, format: Format, out: &mut Vec<u8>) {
    let mut line = Line { out, format, n: 0 };
    line.open();
    line.time(entry.time);
    line.display(entry.client);
    line.word(entry.protocol);
    line.value(entry.method);
    line.value(entry.host);
    line.value(entry.path);
    line.number(Some(u64::from(entry.status)));
    line.number(Some(entry.bytes));
    line.seconds(entry.duration);
    line.word(Some(entry.kind.as_str()));
    line.word(entry.rule);
    line.word(entry.result);
    let request = entry.request;
    line.lines(request, &ORIGIN);
    line.lines(request, &ACCESS_CONTROL_REQUEST_METHOD);
    line.lines(request, &ACCESS_CONTROL_REQUEST_HEADERS);
    line.number(entry.upstream_status.map(u64::from));
    line.seconds(entry.upstream_duration);
    line.close();
}

/// A line being written: the field separator and the quoting of each format.
struct Line<'o> {
    out: &'o mut Vec<u8>,
    format: Format,
    /// Fields written so far.
    n: usize,
}

impl Line<'_> {
    fn open(&mut self) {
        if self.format == Format::Json {
            self.out.push(b'{');
        }
    }

    fn close(&mut self) {
        if self.format == Format::Json {
            self.out.push(b'}');
        }
        self.out.push(b'\n');
    }

    /// The separator and, in JSON, the key of the next field.
    fn next(&mut self) {
        match self.format {
            Format::Text => {
                if self.n > 0 {
                    self.out.push(b' ');
                }
            }
            Format::Json => {
                if self.n > 0 {
                    self.out.push(b',');
                }
                self.out.push(b'"');
                self.out.extend_from_slice(FIELDS[self.n].as_bytes());
                self.out.extend_from_slice(b"\":");
            }
        }
        self.n += 1;
    }

    fn absent(&mut self) {
        self.out.extend_from_slice(match self.format {
            Format::Text => b"-",
            Format::Json => b"null",
        });
    }

    /// A string of ours (a fixed word, a rule name): unquoted in text, a JSON string.
    fn word(&mut self, word: Option<&str>) {
        self.next();
        match word {
            None => self.absent(),
            Some(word) => self.quoted(self.format == Format::Json, |line| {
                line.escaped(word.as_bytes());
            }),
        }
    }

    /// A value from the request: quoted and escaped, in both formats.
    fn value(&mut self, value: Option<&[u8]>) {
        self.next();
        match value {
            None => self.absent(),
            Some(value) => self.quoted(true, |line| line.escaped(value)),
        }
    }

    /// Every `name` line of a preflight's request, joined by `,`; absent when there is none.
    fn lines<F: Fields + ?Sized>(&mut self, request: Option<&F>, name: &HeaderName) {
        self.next();
        let mut lines = request.into_iter().flat_map(|fields| fields.lines(name));
        let Some(first) = lines.next() else {
            return self.absent();
        };
        self.quoted(true, |line| {
            line.escaped(first);
            for more in lines {
                line.out.push(b',');
                line.escaped(more);
            }
        });
    }

    fn quoted(&mut self, quotes: bool, body: impl FnOnce(&mut Self)) {
        if quotes {
            self.out.push(b'"');
        }
        body(self);
        if quotes {
            self.out.push(b'"');
        }
    }

    /// A client address, as `Display` writes it (`127.0.0.1:4321`, `[::1]:4321`): only
    /// digits, dots, colons and brackets, so it needs no escaping.
    fn display(&mut self, client: SocketAddr) {
        use std::io::Write;
        self.next();
        let json = self.format == Format::Json;
        self.quoted(json, |line| {
            // Writing into a Vec cannot fail.
            let _ = write!(line.out, "{client}");
        });
    }

    fn number(&mut self, number: Option<u64>) {
        self.next();
        match number {
            None => self.absent(),
            Some(n) => decimal(self.out, n, 1),
        }
    }

    /// Seconds with microsecond resolution (`0.000012`): the unit of Prometheus and of
    /// nginx's `$request_time`, fine enough for a preflight answered in microseconds.
    fn seconds(&mut self, duration: Option<Duration>) {
        self.next();
        match duration {
            None => self.absent(),
            Some(d) => {
                decimal(self.out, d.as_secs(), 1);
                self.out.push(b'.');
                decimal(self.out, u64::from(d.subsec_micros()), 6);
            }
        }
    }

    /// RFC 3339 in UTC with milliseconds: `2026-12-04T10:15:30.123Z`.
    fn time(&mut self, since_epoch: Duration) {
        self.next();
        let json = self.format == Format::Json;
        self.quoted(json, |line| rfc3339(line.out, since_epoch));
    }

    fn escaped(&mut self, value: &[u8]) {
        match self.format {
            Format::Text => escape_text(value, self.out),
            Format::Json => escape_json(value, self.out),
        }
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// nginx's `escape=default` (`ngx_http_log_escape`): `"`, `\`, bytes below 0x20 and above
/// 0x7E as `\xNN`; and space, so that a text line splits on whitespace into its fields.
pub fn escape_text(value: &[u8], out: &mut Vec<u8>) {
    let mut plain = 0;
    for (i, &b) in value.iter().enumerate() {
        if plain_in_text(b) {
            continue;
        }
        out.extend_from_slice(&value[plain..i]);
        out.extend_from_slice(&[
            b'\\',
            b'x',
            HEX[usize::from(b >> 4)],
            HEX[usize::from(b & 15)],
        ]);
        plain = i + 1;
    }
    out.extend_from_slice(&value[plain..]);
}

/// Whether a text line shows `b` as it is: visible ASCII but `"` and `\`.
#[inline]
fn plain_in_text(b: u8) -> bool {
    b.is_ascii_graphic() && b != b'"' && b != b'\\'
}

/// [`escape_text`] for a `Display` implementation.
pub fn write_escaped(value: &[u8], f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    let mut plain = 0;
    for (i, &b) in value.iter().enumerate() {
        if plain_in_text(b) {
            continue;
        }
        // The bytes passed over are printable ASCII.
        f.write_str(std::str::from_utf8(&value[plain..i]).unwrap_or_default())?;
        write!(f, "\\x{b:02X}")?;
        plain = i + 1;
    }
    f.write_str(std::str::from_utf8(&value[plain..]).unwrap_or_default())
}

/// A JSON string's contents (RFC 8259 7): `"` and `\` backslash-escaped, every other byte
/// outside 0x20..=0x7E as `\u00NN`. A byte above 0x7F becomes the code point of the same
/// number, so invalid UTF-8 still makes valid JSON and the bytes can be read back.
pub fn escape_json(value: &[u8], out: &mut Vec<u8>) {
    let mut plain = 0;
    for (i, &b) in value.iter().enumerate() {
        if (b' '..0x7F).contains(&b) && b != b'"' && b != b'\\' {
            continue;
        }
        out.extend_from_slice(&value[plain..i]);
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ]),
        }
        plain = i + 1;
    }
    out.extend_from_slice(&value[plain..]);
}

/// `n` in decimal, zero-padded to at least `width` digits.
fn decimal(out: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut start = digits.len();
    while n > 0 || digits.len() - start < width {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend_from_slice(&digits[start..]);
}

/// `since_epoch` as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn rfc3339(out: &mut Vec<u8>, since_epoch: Duration) {
    let seconds = since_epoch.as_secs();
    let days = seconds / 86_400;
    let of_day = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    decimal(out, year, 4);
    out.push(b'-');
    decimal(out, month, 2);
    out.push(b'-');
    decimal(out, day, 2);
    out.push(b'T');
    decimal(out, of_day / 3600, 2);
    out.push(b':');
    decimal(out, of_day / 60 % 60, 2);
    out.push(b':');
    decimal(out, of_day % 60, 2);
    out.push(b'.');
    decimal(out, u64::from(since_epoch.subsec_millis()), 3);
    out.push(b'Z');
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv6Addr};

    use http::HeaderValue;

    use super::*;

    fn text(value: &[u8]) -> String {
        let mut out = Vec::new();
        escape_text(value, &mut out);
        String::from_utf8(out).expect("ASCII")
    }

    fn json(value: &[u8]) -> String {
        let mut out = Vec::new();
        escape_json(value, &mut out);
        String::from_utf8(out).expect("ASCII")
    }

    #[test]
    fn text_escapes_what_could_forge_or_split_a_line() {
        assert_eq!(text(b"https://app.example.com"), "https://app.example.com");
        assert_eq!(text(b"a\r\nb"), "a\\x0D\\x0Ab");
        assert_eq!(text(b"say \"hi\""), "say\\x20\\x22hi\\x22");
        assert_eq!(text(b"back\\slash"), "back\\x5Cslash");
        assert_eq!(text("caf\u{e9}".as_bytes()), "caf\\xC3\\xA9");
        assert_eq!(text(b"\x00\x1f\x7f\xff"), "\\x00\\x1F\\x7F\\xFF");
        assert_eq!(text(b""), "");
    }

    #[test]
    fn json_escapes_keep_every_byte_recoverable() {
        assert_eq!(json(b"a b"), "a b");
        assert_eq!(json(b"a\r\nb"), "a\\u000D\\u000Ab");
        assert_eq!(json(b"\"\\"), "\\\"\\\\");
        assert_eq!(json(b"\xff\x7f"), "\\u00FF\\u007F");
        let raw: Vec<u8> = (0..=255).collect();
        let parsed: String = serde_json::from_str(&format!("\"{}\"", json(&raw))).expect("JSON");
        let back: Vec<u8> = parsed.chars().map(|c| c as u32 as u8).collect();
        assert_eq!(back, raw);
    }

    #[test]
    fn dates_and_durations() {
        let mut out = Vec::new();
        rfc3339(&mut out, Duration::ZERO);
        assert_eq!(out, b"1970-01-01T00:00:00.000Z");
        out.clear();
        // 2024-02-29T23:59:59.999Z: a leap day.
        rfc3339(&mut out, Duration::from_millis(1_709_251_199_999));
        assert_eq!(out, b"2024-02-29T23:59:59.999Z");
        out.clear();
        rfc3339(&mut out, Duration::from_secs(4_102_444_800));
        assert_eq!(out, b"2100-01-01T00:00:00.000Z");
        for days in [0, 59, 365, 10_957, 20_000, 50_000] {
            let (y, m, d) = civil_from_days(days);
            assert!((1..=12).contains(&m) && (1..=31).contains(&d) && y >= 1970);
        }
        out.clear();
        decimal(&mut out, 7, 6);
        assert_eq!(out, b"000007");
    }

    fn entry<'a>(request: Option<&'a HeaderMap>) -> Entry<'a> {
        Entry {
            time: Duration::from_millis(1_764_843_330_123),
            client: SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 4321),
            protocol: Some("HTTP/1.1"),
            method: Some(b"OPTIONS"),
            host: Some(b"api.example.com"),
            path: Some(b"/v1/users"),
            status: 403,
            bytes: 44,
            duration: Some(Duration::from_micros(12)),
            kind: Kind::Preflight,
            rule: Some("(none)"),
            result: Some("origin"),
            request,
            upstream_status: None,
            upstream_duration: None,
        }
    }

    fn hostile() -> HeaderMap {
        let mut request = HeaderMap::new();
        let value = |v: &[u8]| HeaderValue::from_bytes(v).expect("value");
        request.append(ORIGIN, value(b"https://evil\" x=\"1\xc3\xa9"));
        request.append(ACCESS_CONTROL_REQUEST_METHOD, value(b"PUT"));
        request.append(ACCESS_CONTROL_REQUEST_HEADERS, value(b"a, b"));
        request.append(ACCESS_CONTROL_REQUEST_HEADERS, value(b""));
        request
    }

    #[test]
    fn a_text_line_has_one_token_per_field() {
        let request = hostile();
        let mut out = Vec::new();
        render(&entry(Some(&request)), Format::Text, &mut out);
        let line = String::from_utf8(out).expect("ASCII");
        assert_eq!(
            line,
            "2025-12-04T10:15:30.123Z [::1]:4321 HTTP/1.1 \"OPTIONS\" \"api.example.com\" \
             \"/v1/users\" 403 44 0.000012 preflight (none) origin \
             \"https://evil\\x22\\x20x=\\x221\\xC3\\xA9\" \"PUT\" \"a,\\x20b,\" - -\n"
        );
        assert_eq!(line.split_whitespace().count(), FIELDS.len());
    }

    #[test]
    fn a_json_line_parses_with_every_key() {
        let request = hostile();
        let mut out = Vec::new();
        render(&entry(Some(&request)), Format::Json, &mut out);
        assert_eq!(out.last(), Some(&b'\n'));
        let value: serde_json::Value = serde_json::from_slice(&out).expect("JSON");
        let object = value.as_object().expect("object");
        let keys: Vec<&str> = object.keys().map(String::as_str).collect();
        assert_eq!(keys.len(), FIELDS.len());
        assert_eq!(value["time"], "2025-12-04T10:15:30.123Z");
        assert_eq!(value["client"], "[::1]:4321");
        assert_eq!(value["status"], 403);
        assert_eq!(value["duration"], 0.000012);
        assert_eq!(value["origin"], "https://evil\" x=\"1\u{c3}\u{a9}");
        assert_eq!(value["request_headers"], "a, b,");
        assert_eq!(value["upstream_status"], serde_json::Value::Null);
    }

    #[test]
    fn absent_request_fields_are_dashes_and_nulls() {
        let mut proxied = entry(None);
        proxied.kind = Kind::Proxied;
        proxied.rule = None;
        proxied.result = None;
        proxied.upstream_status = Some(200);
        proxied.upstream_duration = Some(Duration::from_millis(1500));
        let mut out = Vec::new();
        render(&proxied, Format::Text, &mut out);
        let line = String::from_utf8(out).expect("ASCII");
        assert!(
            line.ends_with(" proxied - - - - - 200 1.500000\n"),
            "{line}"
        );
    }
}
