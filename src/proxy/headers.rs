//! Header hygiene between client and upstream (DESIGN 5): hop-by-hop fields removed
//! (RFC 9110 §7.6.1), `Via` and `X-Forwarded-For` / `-Proto` appended. Everything else passes
//! byte for byte, `Origin`, `Cookie`, `Authorization` and the upstream's own `Vary` and
//! `Access-Control-*` included (CORS-CHECKLIST 4.1, 5.4).

use http::header::{
    CONNECTION, CONTENT_LENGTH, HOST, HeaderMap, HeaderName, HeaderValue, TE, TRANSFER_ENCODING,
    UPGRADE, VIA,
};

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
use crate::syntax::field_items;

static UPGRADE_TOKEN: HeaderValue = HeaderValue::from_static("upgrade");
static TRAILERS: HeaderValue = HeaderValue::from_static("trailers");

/// True for an HTTP/1.1 WebSocket upgrade request (RFC 9110 7.8: `Upgrade`, nominated by
/// `Connection: upgrade`; RFC 6455 4.1: `Upgrade: websocket`). Only these are tunnelled:
/// after any other 101 (`h2c`, say) the client would talk to the upstream past every header
/// rule, metric and limit of the edge.
pub fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    connection_has(headers, b"upgrade")
        && field_items(headers.get_all(UPGRADE)).any(|protocol| {
            // `protocol-name ["/" protocol-version]`
            let name = protocol.split(|&b| b == b'/').next().unwrap_or(protocol);
            name.eq_ignore_ascii_case(b"websocket")
        })
}

fn connection_has(headers: &HeaderMap, token: &[u8]) -> bool {
    connection_tokens(headers).any(|t| t.eq_ignore_ascii_case(token))
}

/// RFC 9110 7.6.1: `Connection = #connection-option`.
fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    field_items(headers.get_all(CONNECTION))
}

/// Removes the hop-by-hop fields: those `Connection` names, and the fixed set. For an upgrade
/// the `Upgrade` field and `Connection: upgrade` are kept, since the upstream must see them.
/// `TE: trailers` from a client is renewed for the next hop: trailers are streamed through,
/// and an upstream only sends them to a peer that says it accepts them.
pub fn remove_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // RFC 9112 6.3 (item 3): with both, Transfer-Encoding frames the message and Content-Length
    // is wrong; a proxy must remove the received Content-Length before forwarding, or the
    // next hop truncates the body to it. The framing of the next hop is hyper's to choose.
    if headers.contains_key(TRANSFER_ENCODING) {
        headers.remove(CONTENT_LENGTH);
    }
    // RFC 9110 10.1.4: `TE = #t-codings`, where `trailers` may carry no parameters but the
    // other codings' weights may follow it in the list.
    let accepts_trailers = field_items(headers.get_all(TE))
        .any(|t| t.len() >= 8 && t[..8].eq_ignore_ascii_case(b"trailers"));
    if headers.contains_key(CONNECTION) {
        // A nomination never removes Host or Content-Length (DESIGN 10): a request without
        // Host, or a body without its framing, is not the client's to make of a proxy.
        let named: Vec<HeaderName> = connection_tokens(headers)
            .filter_map(|t| HeaderName::from_bytes(t).ok())
            .filter(|name| *name != HOST && *name != CONTENT_LENGTH)
            .collect();
        for name in named {
            if !(upgrade && name == UPGRADE) {
                headers.remove(name);
            }
        }
        headers.remove(CONNECTION);
    }
    for name in [&KEEP_ALIVE, &PROXY_CONNECTION, &TE, &TRANSFER_ENCODING] {
        headers.remove(name);
    }
    if accepts_trailers {
        headers.insert(TE, TRAILERS.clone());
    }
    if upgrade {
        headers.insert(CONNECTION, UPGRADE_TOKEN.clone());
    } else {
        headers.remove(UPGRADE);
    }
}

/// Appends one item to a list-valued field, keeping a single field line. Without an existing
/// value the item itself is inserted (a reference count, no copy).
pub fn append_item(headers: &mut HeaderMap, name: &HeaderName, item: &HeaderValue) {
    let joined = match headers.get(name) {
        Some(existing) if !existing.is_empty() => {
            let mut bytes = Vec::with_capacity(existing.len() + 2 + item.len());
            bytes.extend_from_slice(existing.as_bytes());
            bytes.extend_from_slice(b", ");
            bytes.extend_from_slice(item.as_bytes());
            HeaderValue::from_bytes(&bytes).ok()
        }
        _ => Some(item.clone()),
    };
    if let Some(value) = joined {
        headers.insert(name.clone(), value);
    }
}

static VIA_2: HeaderValue = HeaderValue::from_static("2 preflightd");
static VIA_1_0: HeaderValue = HeaderValue::from_static("1.0 preflightd");
static VIA_1_1: HeaderValue = HeaderValue::from_static("1.1 preflightd");
pub static PROTO_HTTP: HeaderValue = HeaderValue::from_static("http");
pub static PROTO_HTTPS: HeaderValue = HeaderValue::from_static("https");

/// `Via: <received-protocol> preflightd` (RFC 9110 §7.6.3), e.g. `1.1 preflightd`.
pub fn append_via(headers: &mut HeaderMap, version: http::Version) {
    let item = match version {
        http::Version::HTTP_2 => &VIA_2,
        http::Version::HTTP_10 => &VIA_1_0,
        _ => &VIA_1_1,
    };
    append_item(headers, &VIA, item);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        headers
    }

    #[test]
    fn removes_hop_by_hop_and_fields_named_in_connection() {
        let mut headers = map(&[
            ("connection", "keep-alive, X-Secret-Hop"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("te", "gzip"),
            ("upgrade", "websocket"),
            ("proxy-connection", "keep-alive"),
            ("origin", "https://a.example.com"),
            ("trailer", "x-checksum"),
        ]);
        remove_hop_by_hop(&mut headers, false);
        let left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["origin", "trailer"]);
    }

    #[test]
    fn connection_never_removes_host_or_content_length() {
        let mut headers = map(&[
            ("connection", "host, content-length, x-drop"),
            ("host", "a.example"),
            ("content-length", "5"),
            ("x-drop", "1"),
        ]);
        remove_hop_by_hop(&mut headers, false);
        let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-length", "host"]);
    }

    #[test]
    fn transfer_encoding_wins_over_content_length() {
        let mut headers = map(&[("content-length", "3"), ("transfer-encoding", "chunked")]);
        remove_hop_by_hop(&mut headers, false);
        assert!(headers.is_empty(), "{headers:?}");
        let mut headers = map(&[("content-length", "3")]);
        remove_hop_by_hop(&mut headers, false);
        assert_eq!(headers["content-length"], "3");
    }

    #[test]
    fn renews_te_trailers_for_the_next_hop_only() {
        let mut headers = map(&[("te", "trailers, deflate;q=0.5")]);
        remove_hop_by_hop(&mut headers, false);
        assert_eq!(headers["te"], "trailers");
    }

    #[test]
    fn keeps_upgrade_for_websockets() {
        let mut headers = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(is_websocket_upgrade(&headers));
        assert!(!is_websocket_upgrade(&map(&[
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c")
        ])));
        assert!(is_websocket_upgrade(&map(&[
            ("connection", "keep-alive, upgrade"),
            ("upgrade", "WebSocket/13")
        ])));
        remove_hop_by_hop(&mut headers, true);
        assert_eq!(headers["upgrade"], "websocket");
        assert_eq!(headers["connection"], "upgrade");
    }

    #[test]
    fn appends_to_lists() {
        let mut headers = map(&[("x-forwarded-for", "203.0.113.9")]);
        append_item(
            &mut headers,
            &X_FORWARDED_FOR,
            &HeaderValue::from_static("127.0.0.1"),
        );
        append_via(&mut headers, http::Version::HTTP_11);
        assert_eq!(headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
        assert_eq!(headers["via"], "1.1 preflightd");
    }
}
