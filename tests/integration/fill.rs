//! `actual_responses = "fill"`: CORS headers added to actual responses that lack them.

use crate::support::{Preflightd, Upstream, send};

#[test]
fn fill_adds_cors_headers_to_actual_responses_that_lack_them() {
    let rules = r#"
[settings]
actual_responses = "fill"

[[rule]]
name = "web"
hosts = ["api.example.com"]
origins = ["https://app.example.com"]
expose = ["x-upstream", "x-request-id"]
credentials = true
"#;
    let upstream = Upstream::start();
    let edge = Preflightd::start(rules, Some(&upstream.url()), &[]);
    let filled = send(
        edge.data,
        "GET /v1 HTTP/1.1\r\nHost: api.example.com\r\nOrigin: https://app.example.com\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        filled.all("access-control-allow-origin"),
        ["https://app.example.com"]
    );
    assert_eq!(
        filled.header("access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(
        filled.header("access-control-expose-headers"),
        Some("x-upstream, x-request-id")
    );
    assert_eq!(filled.all("vary"), ["Accept-Encoding, Origin"]);

    let already = send(
        edge.data,
        "GET /v1?cors=1 HTTP/1.1\r\nHost: api.example.com\r\nOrigin: https://app.example.com\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        already.all("access-control-allow-origin"),
        ["https://upstream-chosen.example"]
    );
    assert!(already.header("access-control-allow-credentials").is_none());
    assert_eq!(already.all("vary"), ["Accept-Encoding"]);

    // Fetch, "CORS protocol and HTTP caches": what fill adds depends on Origin, so every
    // response it could have changed varies on Origin, matched or not, with Origin or not.
    let stranger = send(
        edge.data,
        "GET /v1 HTTP/1.1\r\nHost: api.example.com\r\nOrigin: https://evil.example\r\nConnection: close\r\n\r\n",
    );
    assert!(stranger.header("access-control-allow-origin").is_none());
    assert_eq!(stranger.all("vary"), ["Accept-Encoding, Origin"]);

    let no_origin = send(
        edge.data,
        "GET /v1 HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n",
    );
    assert!(no_origin.header("access-control-allow-origin").is_none());
    assert_eq!(no_origin.all("vary"), ["Accept-Encoding, Origin"]);

    // An upstream that sends no Vary gets one.
    let bare = send(
        edge.data,
        "GET /status/200 HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(bare.status, 200);
    assert_eq!(bare.all("vary"), ["Origin"]);

    // Out of every rule's scope, fill could change nothing: the response is untouched.
    let elsewhere = send(
        edge.data,
        "GET /v1 HTTP/1.1\r\nHost: static.example.com\r\nOrigin: https://app.example.com\r\nConnection: close\r\n\r\n",
    );
    assert!(elsewhere.header("access-control-allow-origin").is_none());
    assert_eq!(elsewhere.all("vary"), ["Accept-Encoding"]);
}
