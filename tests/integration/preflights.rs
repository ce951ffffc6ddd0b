//! Preflights on the real server (DESIGN 4): answered at the edge with exact headers, never
//! reaching the upstream; with `unmatched = "forward"`, out-of-scope ones go to the upstream.

use crate::support::{Preflightd, RULES, Upstream, names, preflight, send};

#[test]
fn preflights_are_answered_at_the_edge_with_exact_headers_and_never_reach_the_upstream() {
    let upstream = Upstream::start();
    let edge = Preflightd::start(RULES, Some(&upstream.url()), &[]);

    let allowed = send(
        edge.data,
        &preflight(
            "/v1/items",
            "api.example.com",
            "https://app.example.com",
            "PUT",
            "content-type",
        ),
    );
    assert_eq!(allowed.status_line, "HTTP/1.1 204 No Content");
    assert_eq!(
        names(&allowed),
        [
            "access-control-allow-origin",
            "access-control-allow-credentials",
            "access-control-allow-methods",
            "access-control-allow-headers",
            "access-control-max-age",
            "vary",
            "cache-control",
            "date"
        ]
    );
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(
        allowed.header("access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(
        allowed.header("access-control-allow-methods"),
        Some("PUT, DELETE")
    );
    assert_eq!(
        allowed.header("access-control-allow-headers"),
        Some("content-type, x-api-key")
    );
    assert_eq!(allowed.header("access-control-max-age"), Some("600"));
    assert_eq!(
        allowed.header("vary"),
        Some("Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
    );
    assert_eq!(allowed.header("cache-control"), Some("no-store"));
    assert!(allowed.body.is_empty());

    let denied = send(
        edge.data,
        &preflight(
            "/v1/items",
            "api.example.com",
            "https://evil.example",
            "PUT",
            "",
        ),
    );
    assert_eq!(denied.status_line, "HTTP/1.1 403 Forbidden");
    assert_eq!(
        names(&denied),
        [
            "vary",
            "cache-control",
            "content-type",
            "content-length",
            "date"
        ]
    );
    assert_eq!(denied.header("cache-control"), Some("no-store"));
    assert_eq!(denied.text(), "CORS preflight denied: origin not allowed\n");

    // Two Origin lines on the wire: malformed, nothing reflected.
    let malformed = send(
        edge.data,
        "OPTIONS /v1/items HTTP/1.1\r\nHost: api.example.com\r\nOrigin: https://app.example.com\r\nOrigin: https://app.example.com\r\nAccess-Control-Request-Method: PUT\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(malformed.status, 403);
    assert_eq!(
        malformed.text(),
        "CORS preflight denied: malformed preflight\n"
    );
    assert!(malformed.header("access-control-allow-origin").is_none());

    assert!(
        upstream.log().is_empty(),
        "the upstream saw a preflight: {:?}",
        upstream.log()
    );
}

#[test]
fn unmatched_forward_sends_preflights_outside_every_scope_to_the_upstream() {
    let rules = r#"
[settings]
unmatched = "forward"

[[rule]]
name = "v1"
paths = ["/v1/"]
origins = ["https://app.example.com"]
methods = ["PUT"]
"#;
    let upstream = Upstream::start();
    let edge = Preflightd::start(rules, Some(&upstream.url()), &[]);
    let outside = send(
        edge.data,
        &preflight(
            "/legacy/x",
            "api.example.com",
            "https://app.example.com",
            "PUT",
            "",
        ),
    );
    // The upstream answers it itself (its own headers, 200).
    assert_eq!(outside.status, 200);
    assert_eq!(outside.header("x-upstream"), Some("yes"));
    let inside = send(
        edge.data,
        &preflight(
            "/v1/x",
            "api.example.com",
            "https://evil.example",
            "PUT",
            "",
        ),
    );
    assert_eq!(inside.status, 403, "in scope is still answered at the edge");
    let log = upstream.log();
    assert_eq!(log.len(), 1, "{log:#?}");
    assert_eq!(
        (log[0]["method"].as_str(), log[0]["uri"].as_str()),
        (Some("OPTIONS"), Some("/legacy/x"))
    );
    assert_eq!(
        edge.metric("preflightd_preflight_requests_total{result=\"forwarded\",rule=\"(none)\"}"),
        1.0
    );
    assert_eq!(
        edge.metric("preflightd_preflight_requests_total{result=\"origin\",rule=\"(none)\"}"),
        1.0
    );
}
