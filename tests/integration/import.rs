//! `preflightd import`, run as the real binary on each vendor's documented examples
//! (`tests/data/import/`), then the imported rules served by the real server in front of a
//! real upstream, answering preflights as the vendor documents: status, origin, credentials,
//! method and header coverage, max-age, and exposed headers on a filled GET.

use std::time::{Duration, Instant};

use crate::support::{Preflightd, RULES, Upstream, WAIT, preflight, preflightd, send, stderr};

/// Imports `file` (under tests/data/import/) and checks the result with `preflightd check`.
fn imported(from: &str, file: &str, extra: &[&str]) -> String {
    let path = format!("tests/data/import/{file}");
    let mut args = vec!["import", "--from", from, path.as_str()];
    args.extend_from_slice(extra);
    let out = preflightd(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let toml = String::from_utf8(out.stdout).expect("UTF-8 rules");
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("imported.toml");
    std::fs::write(&rules, &toml).expect("write rules");
    let check = preflightd(&["check", rules.to_str().expect("path")]);
    let text = String::from_utf8_lossy(&check.stdout).into_owned();
    assert_eq!(check.status.code(), Some(0), "{text}\n{toml}");
    assert!(text.contains(" 0 errors"), "{text}");
    toml
}

/// What the vendor documents for one preflight.
enum Expect {
    /// Allowed: `Access-Control-Allow-Origin`, credentials, `Access-Control-Max-Age`.
    Allowed(&'static str, bool, &'static str),
    Denied,
}
use Expect::{Allowed, Denied};

/// Whether a browser reading this allow list lets `item` through (Fetch, CORS-preflight
/// fetch, steps 7.5-7.7): listed (methods byte for byte, header names in any case), or `*`
/// without credentials, which never covers `authorization`.
fn list_covers(list: &str, item: &str, credentials: bool, header: bool) -> bool {
    list.split(',').map(str::trim).any(|entry| {
        if header {
            entry.eq_ignore_ascii_case(item)
                || (entry == "*" && !credentials && !item.eq_ignore_ascii_case("authorization"))
        } else {
            entry == item || (entry == "*" && !credentials)
        }
    })
}

/// Serves `toml` and sends each preflight to `bucket.example.com/photos/cat.jpg`.
fn answers(edge: &Preflightd, cases: &[(&str, &str, &str, Expect)]) {
    for (origin, method, headers, expect) in cases {
        let what = format!("{method} from {origin} with [{headers}]");
        let response = send(
            edge.data,
            &preflight(
                "/photos/cat.jpg",
                "bucket.example.com",
                origin,
                method,
                headers,
            ),
        );
        match expect {
            Denied => {
                assert_eq!(response.status, 403, "{what}: {response:?}");
                assert!(response.header("access-control-allow-origin").is_none());
            }
            Allowed(acao, credentials, max_age) => {
                assert_eq!(response.status, 200, "{what}: {response:?}");
                assert_eq!(
                    response.all("access-control-allow-origin"),
                    [*acao],
                    "{what}"
                );
                let acac = response.header("access-control-allow-credentials");
                assert_eq!(acac, credentials.then_some("true"), "{what}");
                let methods = response
                    .header("access-control-allow-methods")
                    .unwrap_or_default();
                assert!(
                    list_covers(methods, method, *credentials, false),
                    "{what}: methods {methods:?}"
                );
                let allowed = response
                    .header("access-control-allow-headers")
                    .unwrap_or_default();
                for name in headers.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    assert!(
                        list_covers(allowed, name, *credentials, true),
                        "{what}: headers {allowed:?} miss {name}"
                    );
                }
                assert_eq!(
                    response.header("access-control-max-age"),
                    Some(*max_age),
                    "{what}"
                );
            }
        }
    }
}

/// A GET the upstream answers without CORS headers, filled by the edge.
fn filled_expose(edge: &Preflightd, origin: &str) -> Option<String> {
    let response = send(
        edge.data,
        &format!(
            "GET /photos/cat.jpg HTTP/1.1\r\nHost: bucket.example.com\r\nOrigin: {origin}\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        response.all("access-control-allow-origin").len(),
        1,
        "{response:?}"
    );
    response
        .header("access-control-expose-headers")
        .map(str::to_owned)
}

fn serve(toml: &str) -> (Upstream, Preflightd) {
    let upstream = Upstream::start();
    let edge = Preflightd::start(toml, Some(&upstream.url()), &[]);
    (upstream, edge)
}

#[test]
fn s3_documented_examples_answer_as_s3() {
    // S3 User Guide, "CORS configuration", Example 1 (XML and console JSON alike).
    let xml = imported("s3", "s3-example1.xml", &[]);
    let json = imported("s3", "s3-example1.json", &[]);
    let rules = |toml: &str| toml[toml.find("[settings]").expect("settings")..].to_owned();
    // The same rules from either shape, up to where each was written.
    let strip = |toml: String| {
        toml.lines()
            .filter(|l| !l.starts_with("# S3 rule"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip(rules(&xml)), strip(rules(&json)));
    let (_upstream, edge) = serve(&xml);
    answers(
        &edge,
        &[
            // Rule 1: PUT, POST, DELETE from example1 with any header; S3's `*` header
            // includes authorization; credentials for an echoed origin; no MaxAgeSeconds.
            (
                "http://www.example1.com",
                "PUT",
                "x-custom, authorization",
                Allowed("http://www.example1.com", true, "5"),
            ),
            (
                "http://www.example2.com",
                "DELETE",
                "content-type",
                Allowed("http://www.example2.com", true, "5"),
            ),
            // Rule 3: GET from any origin, answered `*`, without credentials.
            (
                "https://elsewhere.example",
                "GET",
                "",
                Allowed("*", false, "5"),
            ),
            // GET is not in rule 1: example1's GET falls to rule 3.
            (
                "http://www.example1.com",
                "GET",
                "",
                Allowed("*", false, "5"),
            ),
            // Rule 3 allows no header; no rule allows PATCH; POST is refused from an origin
            // whose only rule does not list it, though browsers never preflight a bare POST.
            ("https://elsewhere.example", "GET", "x-custom", Denied),
            ("http://www.example1.com", "PATCH", "", Denied),
            ("https://elsewhere.example", "POST", "", Denied),
            ("https://www.example1.com", "PUT", "", Denied),
        ],
    );

    // Example 2: MaxAgeSeconds and ExposeHeaders (AWS CLI JSON).
    let toml = imported("s3", "s3-example2.json", &[]);
    let (_upstream, edge) = serve(&toml);
    answers(
        &edge,
        &[
            (
                "http://www.example.com",
                "PUT",
                "x-amz-date",
                Allowed("http://www.example.com", true, "3000"),
            ),
            ("http://www.example.com", "GET", "", Denied),
        ],
    );
    assert_eq!(
        filled_expose(&edge, "http://www.example.com").as_deref(),
        Some("x-amz-server-side-encryption, x-amz-request-id, x-amz-id-2")
    );
}

#[test]
fn s3_wildcards_answer_as_s3() {
    // The forms the S3 User Guide documents: one `*` in an origin (`http://*.example.com`),
    // `x-amz-*` headers, `https` for any secure origin.
    let toml = imported("s3", "s3-wildcards.xml", &[]);
    assert!(
        toml.contains("regex:https://a-[!-~]*\\\\.example\\\\.com"),
        "{toml}"
    );
    let (_upstream, edge) = serve(&toml);
    answers(
        &edge,
        &[
            (
                "http://app.example.com",
                "PUT",
                "x-amz-meta-owner, Content-Type",
                Allowed("http://app.example.com", true, "600"),
            ),
            (
                "http://deep.app.example.com",
                "PUT",
                "x-amz-date",
                Allowed("http://deep.app.example.com", true, "600"),
            ),
            (
                "https://a-preview.example.com",
                "PUT",
                "",
                Allowed("https://a-preview.example.com", true, "600"),
            ),
            // `*` needs the `.`: the apex is not matched; `a-*` is not `b-*`; `x-amz-*` does
            // not cover authorization.
            ("http://example.com", "PUT", "", Denied),
            ("https://b-preview.example.com", "PUT", "", Denied),
            ("http://app.example.com", "PUT", "authorization", Denied),
            // `https`: any secure origin, any port; GET and HEAD only.
            (
                "https://anything.test:8443",
                "GET",
                "",
                Allowed("https://anything.test:8443", true, "5"),
            ),
            ("http://anything.test", "GET", "", Denied),
            ("https://anything.test", "PUT", "", Denied),
        ],
    );
    assert_eq!(
        filled_expose(&edge, "http://app.example.com").as_deref(),
        Some("x-amz-version-id")
    );
}

#[test]
fn b2_documented_example_answers_as_b2() {
    let toml = imported("b2", "b2-docs.json", &[]);
    let (_upstream, edge) = serve(&toml);
    answers(
        &edge,
        &[
            // "https": any HTTPS origin on any port; downloads are GET and HEAD.
            (
                "https://www.example.net:8443",
                "GET",
                "range",
                Allowed("https://www.example.net:8443", false, "3600"),
            ),
            (
                "https://www.example.net",
                "HEAD",
                "Range",
                Allowed("https://www.example.net", false, "3600"),
            ),
            ("http://www.example.net", "GET", "range", Denied),
            ("https://www.example.net", "GET", "x-custom", Denied),
            // Uploads: b2_upload_file is POST, s3_put is PUT; x-bz-info-* is a prefix.
            (
                "https://app.example.com",
                "PUT",
                "authorization, x-bz-info-author, x-bz-file-name",
                Allowed("https://app.example.com", false, "86400"),
            ),
            (
                "https://app.example.com",
                "POST",
                "x-bz-content-sha1",
                Allowed("https://app.example.com", false, "86400"),
            ),
            ("https://app.example.com", "PUT", "x-other", Denied),
            ("https://app.example.com", "DELETE", "", Denied),
        ],
    );
    assert_eq!(
        filled_expose(&edge, "https://www.example.net").as_deref(),
        Some("x-bz-content-sha1")
    );
}

#[test]
fn gcs_documented_example_answers_as_gcs() {
    let toml = imported("gcs", "gcs-docs.json", &[]);
    assert!(toml.contains("imported as headers and as expose"), "{toml}");
    let (_upstream, edge) = serve(&toml);
    let appspot = "https://your-example-website.appspot.com";
    answers(
        &edge,
        &[
            (
                appspot,
                "GET",
                "content-type",
                Allowed(appspot, false, "3600"),
            ),
            // GCS picks rule 1 by origin and method, and rule 1 does not allow this header:
            // denied, though rule 2 would allow it.
            (appspot, "GET", "x-goog-resumable", Denied),
            // PUT is rule 2's; the max-age of 100000 is sent as 86400.
            (
                appspot,
                "PUT",
                "x-goog-meta-owner, x-goog-resumable",
                Allowed(appspot, false, "86400"),
            ),
            (
                "https://admin.example.com",
                "GET",
                "x-goog-resumable",
                Allowed("https://admin.example.com", false, "86400"),
            ),
            // Method "*": any method, any header (authorization too); no maxAgeSeconds.
            (
                "https://tools.example.com",
                "PATCH",
                "authorization, x-anything",
                Allowed("https://tools.example.com", false, "5"),
            ),
            ("https://other.example.com", "GET", "", Denied),
            (appspot, "PATCH", "", Denied),
        ],
    );
    assert_eq!(
        filled_expose(&edge, appspot).as_deref(),
        Some("content-type")
    );
}

#[test]
fn gcs_rules_that_preflightd_cannot_order_need_lossy() {
    let out = preflightd(&[
        "import",
        "--from",
        "gcs",
        "tests/data/import/gcs-overlap.json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out).starts_with(
            "tests/data/import/gcs-overlap.json: [1]: rule #2: GCS takes the origins and methods rule #1 shares with this rule first"
        ),
        "{}",
        stderr(&out)
    );
    // With --lossy, the part preflightd cannot say is left out: never more than GCS allows.
    let toml = imported("gcs", "gcs-overlap.json", &["--lossy"]);
    assert!(toml.contains("# LOSSY: GCS takes"), "{toml}");
    let (_upstream, edge) = serve(&toml);
    let appspot = "https://your-example-website.appspot.com";
    answers(
        &edge,
        &[
            (
                appspot,
                "GET",
                "content-type",
                Allowed(appspot, false, "3600"),
            ),
            (appspot, "GET", "x-custom", Denied),
            ("https://other.example.com", "PUT", "", Denied),
        ],
    );
}

#[test]
fn azure_documented_examples_answer_as_azure() {
    // "CORS rule evaluation logic": ExposedHeaders x-ms-* cannot be a fixed list.
    let out = preflightd(&[
        "import",
        "--from",
        "azure",
        "tests/data/import/azure-docs.xml",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    for rule in 1..=3 {
        assert!(
            text.contains(&format!(
                "rule #{rule}: exposed header \"x-ms-*\": Azure exposes"
            )),
            "{text}"
        );
    }
    assert!(
        text.ends_with("azure-docs.xml: 3 errors, nothing imported\n"),
        "{text}"
    );
    let toml = imported("azure", "azure-docs.xml", &["--lossy"]);
    let (_upstream, edge) = serve(&toml);
    let contoso = "http://www.contoso.com";
    answers(
        &edge,
        &[
            // The documented requests: the first rule; the second; and the third, which the
            // second rule takes by origin and method and then fails on its header.
            (
                contoso,
                "PUT",
                "x-ms-blob-content-type",
                Allowed(contoso, true, "5"),
            ),
            (
                contoso,
                "GET",
                "x-ms-blob-content-type",
                Allowed("*", false, "5"),
            ),
            (contoso, "GET", "x-ms-client-request-id", Denied),
            ("https://www.fabrikam.com", "DELETE", "", Denied),
        ],
    );

    // The documented rule with header prefixes (x-ms-meta-data*).
    let toml = imported("azure", "azure-meta.xml", &[]);
    let (_upstream, edge) = serve(&toml);
    let fabrikam = "http://www.fabrikam.com";
    answers(
        &edge,
        &[
            (
                fabrikam,
                "PUT",
                "x-ms-meta-data, x-ms-meta-datasource, x-ms-meta-target-a, x-ms-meta-abc",
                Allowed(fabrikam, true, "200"),
            ),
            (fabrikam, "PUT", "x-ms-meta-other", Denied),
            (fabrikam, "DELETE", "", Denied),
        ],
    );
    assert_eq!(
        filled_expose(&edge, fabrikam).as_deref(),
        Some("x-ms-meta-abc, x-ms-request-id")
    );
}

#[test]
fn r2_documented_examples_answer_as_r2() {
    let toml = imported("r2", "r2-docs.json", &[]);
    let (_upstream, edge) = serve(&toml);
    let local = "http://localhost:3000";
    answers(
        &edge,
        &[
            (
                "http://localhost:3000",
                "GET",
                "x-requested-by",
                Allowed(local, true, "3600"),
            ),
            (local, "PUT", "", Denied),
            ("http://localhost:3001", "GET", "", Denied),
        ],
    );
    assert_eq!(
        filled_expose(&edge, local).as_deref(),
        Some("content-encoding, cf-cache-status, date")
    );

    // The Cloudflare API's shape; `*` among the headers names authorization too.
    let toml = imported("r2", "r2-api.json", &["--name-prefix", "r2-"]);
    assert!(toml.contains("name = \"r2-allow-example\""), "{toml}");
    let (_upstream, edge) = serve(&toml);
    answers(
        &edge,
        &[
            (
                "https://cdn.example.com",
                "PUT",
                "authorization, x-requested-by, x-anything",
                Allowed("https://cdn.example.com", true, "3600"),
            ),
            (
                "https://example.com",
                "GET",
                "",
                Allowed("https://example.com", true, "3600"),
            ),
            ("https://example.org", "GET", "", Denied),
        ],
    );
}

#[test]
fn scoped_import_written_into_a_served_directory_takes_over_while_preflights_are_answered() {
    // A running server with the usual rules; the import lands beside them with -o.
    let upstream = Upstream::start();
    let edge = Preflightd::start(RULES, Some(&upstream.url()), &[]);
    let target = edge.rules_dir().join("zz-bucket.toml");
    let ask = |origin: &str| {
        send(
            edge.data,
            &preflight("/photos/a.jpg", "bucket.example.com", origin, "PUT", ""),
        )
        .status
    };
    assert_eq!(ask("http://www.example.com"), 403);
    let out = preflightd(&[
        "import",
        "--from",
        "s3",
        "tests/data/import/s3-example2.json",
        "--host",
        "bucket.example.com",
        "--path",
        "/photos/",
        "--name-prefix",
        "bucket-",
        "-o",
        target.to_str().expect("path"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    assert!(stderr(&out).contains("1 s3 rule(s) imported as 1 rule(s), 1 warning(s)"));
    let deadline = Instant::now() + WAIT;
    while ask("http://www.example.com") != 200 {
        assert!(Instant::now() < deadline, "the import never took over");
        // Meanwhile the other rules keep answering.
        let other = send(
            edge.data,
            &preflight(
                "/v1",
                "api.example.com",
                "https://app.example.com",
                "PUT",
                "",
            ),
        );
        assert_eq!(other.status, 204);
        std::thread::sleep(Duration::from_millis(50));
    }
    // Scoped: another path or host of the bucket is not the import's.
    let elsewhere = send(
        edge.data,
        &preflight(
            "/videos/a.mp4",
            "bucket.example.com",
            "http://www.example.com",
            "PUT",
            "",
        ),
    );
    assert_eq!(elsewhere.status, 403);
    assert!(edge.metrics().contains("rule=\"bucket-rule-1\""));
}

#[test]
fn bad_input_and_usage_fail_with_their_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path.to_str().expect("path").to_owned()
    };
    let xml = write(
        "bad.xml",
        b"<CORSConfiguration>\n <CORSRule>\n</CORSConfiguration>\n",
    );
    let out = preflightd(&["import", "--from", "s3", &xml]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with(&format!(
            "{xml}:3:1: invalid XML: expected 'CORSRule' tag, not 'CORSConfiguration'"
        )),
        "{}",
        stderr(&out)
    );
    // Hostile XML: an entity expansion bomb and an external entity (XXE) are refused at the
    // DTD, before any entity is expanded or any file read.
    let lol = (2..=9).fold(String::from("<!ENTITY lol1 \"lol\">"), |dtd, n| {
        let refs = format!("&lol{};", n - 1).repeat(10);
        format!("{dtd}<!ENTITY lol{n} \"{refs}\">")
    });
    let bomb = write(
        "bomb.xml",
        format!(
            "<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [{lol}]>\n<CORSConfiguration><CORSRule>\
             <AllowedOrigin>&lol9;</AllowedOrigin><AllowedMethod>GET</AllowedMethod>\
             </CORSRule></CORSConfiguration>"
        )
        .as_bytes(),
    );
    let xxe = write(
        "xxe.xml",
        b"<!DOCTYPE x [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>\n<Cors><CorsRule>\
          <AllowedOrigins>&xxe;</AllowedOrigins></CorsRule></Cors>",
    );
    for (vendor, file) in [("s3", &bomb), ("azure", &xxe)] {
        let out = preflightd(&["import", "--from", vendor, file]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out).starts_with(&format!("{file}:1:1: invalid XML: XML with DTD detected\n")),
            "{}",
            stderr(&out)
        );
        assert!(out.stdout.is_empty(), "nothing imported");
    }
    // A vendor compares origins as text: "regex:..." never matches there, and must not become
    // a live regex here (it would allow every https origin).
    let regex = write(
        "regex.json",
        br#"{"CORSRules":[{"AllowedOrigins":["regex:https://.+","https://a.example.com"],"AllowedMethods":["GET"]}]}"#,
    );
    let out = preflightd(&["import", "--from", "s3", &regex]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let toml = String::from_utf8_lossy(&out.stdout);
    assert!(
        toml.contains("\norigins = [\"https://a.example.com\"]\n"),
        "{toml}"
    );
    assert!(
        stderr(&out).contains(
            "origin \"regex:https://.+\" never matches: S3 compares origins as text, and no \
             browser sends \"regex:...\"; dropped"
        ),
        "{}",
        stderr(&out)
    );
    let huge = write("huge.json", &vec![b' '; 5 << 20]);
    let out = preflightd(&["import", "--from", "gcs", &huge]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("larger than 4194304 bytes"),
        "{}",
        stderr(&out)
    );
    let binary = write("bin.json", b"[\xff]");
    let out = preflightd(&["import", "--from", "gcs", &binary]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).ends_with(": not UTF-8 (byte 1)\n"),
        "{}",
        stderr(&out)
    );
    let good = "tests/data/import/r2-docs.json";
    for usage in [
        vec!["import", "--from", "dropbox", good],
        vec!["import", "--from", "r2"],
        vec!["import", "--from", "r2", good, "--host", "a.com:443"],
        vec!["import", "--from", "r2", good, "--path", "photos"],
        vec![
            "import",
            "--from",
            "r2",
            good,
            "--name-prefix",
            "Bad Prefix",
        ],
    ] {
        let out = preflightd(&usage);
        assert_eq!(out.status.code(), Some(2), "{usage:?}: {}", stderr(&out));
    }
}

/// The property test: generated S3 configurations and generated preflights, decided by the
/// imported rules (in process, `cors::decide` on the compiled policy) and by an evaluator of
/// S3's documented rules written here from the S3 User Guide ("How does Amazon S3 evaluate
/// the CORS configuration on a bucket?"), never from the translation's code.
mod s3_property {
    use http::header::{ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN};
    use http::{HeaderMap, HeaderValue, Method};
    use preflightd::cors::{Decision, Outcome, Request, decide};
    use preflightd::import::{Options, Vendor, check_output, import};
    use proptest::prelude::*;

    /// The imported rules, loaded and compiled as the server would.
    fn policy(text: &str) -> preflightd::policy::Policy {
        let loaded = preflightd::rules::load_sources(&[preflightd::rules::Source {
            name: "imported.toml".into(),
            text: text.to_owned(),
        }]);
        let Some(rules) = loaded.rules else {
            let errors: Vec<String> = loaded.diagnostics.iter().map(|d| d.to_string()).collect();
            panic!("imported rules do not load:\n{}", errors.join("\n"));
        };
        preflightd::policy::compile(rules).unwrap_or_else(|e| panic!("do not compile: {e}"))
    }

    const ORIGINS: &[&str] = &[
        "*",
        "https",
        "https://*",
        "https://app.example.com",
        "http://app.example.com",
        "https://*.example.com",
        "https://a-*.example.com",
        "http://localhost*",
        "http://localhost:*",
    ];
    const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "DELETE"];
    const HEADERS: &[&str] = &[
        "*",
        "x-amz-*",
        "x-amz-meta-*",
        "content-type",
        "authorization",
        "a*",
    ];
    const REQUEST_ORIGINS: &[&str] = &[
        "https://app.example.com",
        "http://app.example.com",
        "https://x.example.com",
        "https://a.b.example.com",
        "https://a-b.example.com",
        "https://a-.example.com",
        "https://example.com",
        "http://localhost",
        "http://localhost:3000",
        "http://localhost.evil.com",
        "https://evil.com:8443",
        "null",
    ];
    const REQUEST_METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"];
    const REQUEST_HEADERS: &[&str] = &[
        "content-type",
        "authorization",
        "x-amz-date",
        "x-amz-meta-a",
        "X-Amz-Meta-B",
        "x-other",
        "accept",
    ];

    #[derive(Debug, Clone)]
    struct S3Rule {
        origins: Vec<&'static str>,
        methods: Vec<&'static str>,
        headers: Vec<&'static str>,
    }

    fn s3_rule() -> impl Strategy<Value = S3Rule> {
        (
            proptest::sample::subsequence(ORIGINS, 1..3),
            proptest::sample::subsequence(METHODS, 1..3),
            proptest::sample::subsequence(HEADERS, 0..3),
        )
            .prop_map(|(origins, methods, headers)| S3Rule {
                origins,
                methods,
                headers,
            })
    }

    /// S3's `*`: one wildcard standing for any run of characters.
    fn glob(pattern: &str, value: &str) -> bool {
        match pattern.split_once('*') {
            Some((before, after)) => {
                value.len() >= before.len() + after.len()
                    && value.starts_with(before)
                    && value.ends_with(after)
            }
            None => pattern == value,
        }
    }

    /// The first rule whose AllowedOrigin matches the Origin, whose AllowedMethod lists the
    /// requested method, and whose AllowedHeaders match every requested header.
    fn s3_answers(rules: &[S3Rule], origin: &str, method: &str, headers: &[&str]) -> Option<usize> {
        rules.iter().position(|rule| {
            let origin_ok = rule.origins.iter().any(|o| {
                // "You can also specify https to enable only secure origins."
                if *o == "https" {
                    origin.starts_with("https://")
                } else {
                    glob(o, origin)
                }
            });
            let method_ok = rule.methods.contains(&method);
            let headers_ok = headers.iter().all(|h| {
                let h = h.to_ascii_lowercase();
                rule.headers.iter().any(|a| glob(a, &h))
            });
            origin_ok && method_ok && headers_ok
        })
    }

    fn as_json(rules: &[S3Rule]) -> String {
        let list = |items: &[&str]| serde_json::to_string(items).expect("json");
        let rules: Vec<String> = rules
            .iter()
            .map(|r| {
                format!(
                    r#"{{"AllowedOrigins": {}, "AllowedMethods": {}, "AllowedHeaders": {}}}"#,
                    list(&r.origins),
                    list(&r.methods),
                    list(&r.headers)
                )
            })
            .collect();
        format!(r#"{{"CORSRules": [{}]}}"#, rules.join(", "))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn imported_rules_decide_as_s3(
            rules in proptest::collection::vec(s3_rule(), 1..5),
            preflights in proptest::collection::vec(
                (
                    proptest::sample::select(REQUEST_ORIGINS),
                    proptest::sample::select(REQUEST_METHODS),
                    proptest::sample::subsequence(REQUEST_HEADERS, 0..3),
                ),
                1..12,
            ),
        ) {
            let options = Options {
                vendor: Vendor::S3,
                file: "generated.json".into(),
                hosts: Vec::new(),
                paths: Vec::new(),
                name_prefix: String::new(),
                lossy: false,
            };
            let imported = import(&as_json(&rules), &options)
                .unwrap_or_else(|e| panic!("{e:#?}"));
            prop_assert!(check_output("imported.toml", &imported.toml).is_empty(), "{}", imported.toml);
            let policy = policy(&imported.toml);
            for (origin, method, headers) in preflights {
                let mut map = HeaderMap::new();
                map.insert(ORIGIN, HeaderValue::from_static(origin));
                map.insert(ACCESS_CONTROL_REQUEST_METHOD, HeaderValue::from_static(method));
                if !headers.is_empty() {
                    let joined = headers.join(", ");
                    map.insert(
                        ACCESS_CONTROL_REQUEST_HEADERS,
                        HeaderValue::from_str(&joined).expect("header value"),
                    );
                }
                let request = Request {
                    method: &Method::OPTIONS,
                    host: Some(b"bucket.example.com"),
                    path: b"/photo.jpg",
                    headers: &map,
                };
                let edge = match decide(&policy, &request) {
                    Decision::Answer(answer) if answer.outcome == Outcome::Allowed => {
                        let name = &policy.rules[answer.rule.expect("allowing rule")].name;
                        // Rules without an ID are named rule-N after their place in S3's list.
                        let index: usize = name
                            .strip_prefix("rule-")
                            .and_then(|n| n.parse().ok())
                            .expect("rule-N");
                        Some(index - 1)
                    }
                    Decision::Answer(_) => None,
                    other => panic!("not answered: {other:?}"),
                };
                let s3 = s3_answers(&rules, origin, method, &headers);
                prop_assert_eq!(
                    edge, s3,
                    "{} {} [{}]\n{}", method, origin, headers.join(", "), imported.toml
                );
            }
        }
    }
}
