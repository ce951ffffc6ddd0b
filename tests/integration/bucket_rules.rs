//! The rules features that express a bucket's CORS configuration (DESIGN 12), on the real
//! server: header prefix globs, `scheme://*` origins, `only_listed_methods` and
//! `preflight_status = 200`.

use crate::support::{Preflightd, Upstream, preflight, send};

const RULES: &str = r#"
[settings]
preflight_status = 200

[[rule]]
name = "uploads"
paths = ["/uploads/"]
origins = ["https://*"]
methods = ["PUT", "GET"]
only_listed_methods = true
headers = ["x-amz-meta-*", "content-type"]
max_age = 3000

[[rule]]
name = "auth-glob"
paths = ["/auth/"]
origins = ["https://app.example.com"]
methods = ["PUT"]
headers = ["auth*"]
"#;

#[test]
fn bucket_features_answer_as_the_bucket_model_says() {
    let upstream = Upstream::start();
    let edge = Preflightd::start(RULES, Some(&upstream.url()), &[]);
    let ask = |path: &str, origin: &str, method: &str, headers: &str| {
        send(
            edge.data,
            &preflight(path, "bucket.example.com", origin, method, headers),
        )
    };

    // A prefix glob covers any name it starts, case-insensitively; the answer echoes the
    // requested names (a header value cannot say "x-amz-meta-*"). `https://*` takes any
    // https host and port. The allowed status is 200 with an explicit empty length.
    let allowed = ask(
        "/uploads/a.png",
        "https://any.site.test:8443",
        "PUT",
        "X-Amz-Meta-Color, content-type, x-amz-meta-",
    );
    assert_eq!(allowed.status_line, "HTTP/1.1 200 OK");
    assert_eq!(allowed.header("content-length"), Some("0"));
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://any.site.test:8443")
    );
    assert_eq!(
        allowed.header("access-control-allow-headers"),
        Some("x-amz-meta-color,content-type,x-amz-meta-")
    );
    assert_eq!(
        allowed.header("access-control-allow-methods"),
        Some("PUT, GET")
    );
    assert_eq!(allowed.header("access-control-max-age"), Some("3000"));

    // A name the prefix does not start: the headers step denies.
    let other_header = ask("/uploads/a", "https://a.test", "PUT", "x-amz-metadata");
    assert_eq!(other_header.status, 403);
    assert_eq!(
        other_header.text(),
        "CORS preflight denied: headers not allowed\n"
    );

    // `https://*` is only https.
    let http = ask("/uploads/a", "http://a.test", "PUT", "");
    assert_eq!(http.status, 403);
    assert_eq!(http.text(), "CORS preflight denied: origin not allowed\n");
    let null = ask("/uploads/a", "null", "PUT", "");
    assert_eq!(null.text(), "CORS preflight denied: origin not allowed\n");

    // `only_listed_methods`: POST is safelisted yet not listed, so the rule refuses it, as a
    // bucket does; GET is listed.
    let post = ask("/uploads/a", "https://a.test", "POST", "");
    assert_eq!(post.status, 403);
    assert_eq!(post.text(), "CORS preflight denied: method not allowed\n");
    let get = ask("/uploads/a", "https://a.test", "GET", "x-amz-meta-a");
    assert_eq!(get.status, 200);

    // A glob that reaches `authorization` covers it (unlike `*`), and is echoed by name.
    let auth = ask("/auth/x", "https://app.example.com", "PUT", "Authorization");
    assert_eq!(auth.status, 200);
    assert_eq!(
        auth.header("access-control-allow-headers"),
        Some("authorization")
    );
    // Without `only_listed_methods`, POST passes as the browser would let it.
    let auth_post = ask("/auth/x", "https://app.example.com", "POST", "");
    assert_eq!(auth_post.status, 200);

    assert!(
        upstream.log().is_empty(),
        "no preflight reaches the upstream"
    );
}
