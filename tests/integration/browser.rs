//! End-to-end in Debian's Chromium (headless), driven by playwright-core
//! (`tests/browser/driver.mjs`): the browser's own CORS check is the oracle, not our reading
//! of the spec. A page served from `http://localhost:P1` fetches from preflightd at
//! `http://127.0.0.1:P3`, which fronts an upstream that records every request it gets.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Preflightd, Upstream, WAIT, send};

fn chromium() -> String {
    std::env::var("PREFLIGHTD_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned())
}

/// Runs the steps in one browser; each step's result (`outcomes`, `console`), by name.
fn run_browser(steps: &[Value]) -> serde_json::Map<String, Value> {
    run_browser_with(steps, &[])
}

/// [`run_browser`] with extra Chromium flags.
fn run_browser_with(steps: &[Value], args: &[String]) -> serde_json::Map<String, Value> {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = dir.path().join("plan.json");
    std::fs::write(
        &plan,
        json!({ "chromium": chromium(), "args": args, "steps": steps }).to_string(),
    )
    .expect("plan");
    let browser_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");
    assert!(
        std::path::Path::new(browser_dir)
            .join("node_modules/playwright-core")
            .exists(),
        "playwright-core missing: run `npm ci --prefix tests/browser` (scripts/test.sh does)"
    );
    let mut child = Command::new("node")
        .arg("driver.mjs")
        .arg(&plan)
        .current_dir(browser_dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("node: install nodejs (scripts/test.sh does)");
    // Bounded: the driver's own waits are bounded; this bounds the whole browser.
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the browser driver did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().expect("driver output");
    assert!(
        output.status.success(),
        "driver failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let results: Vec<Value> = serde_json::from_slice(&output.stdout).expect("driver prints JSON");
    results
        .into_iter()
        .map(|r| (r["name"].as_str().expect("name").to_owned(), r))
        .collect()
}

fn step(name: &str, page: &str, url: &str, method: &str, headers: Value) -> Value {
    json!({ "name": name, "page": page, "url": url, "method": method, "headers": headers })
}

fn rules(page: &str, page_port: u16, extra_header: &str) -> String {
    format!(
        r#"
[settings]
actual_responses = "fill"

[[rule]]
name = "public"
paths = ["/public/"]
origins = ["*"]
methods = ["GET", "PUT"]
headers = ["content-type"]

[[rule]]
name = "cached"
paths = ["/cached/"]
origins = ["{page}"]
methods = ["PUT"]
max_age = 600

[[rule]]
name = "uncached"
paths = ["/uncached/"]
origins = ["{page}"]
methods = ["PUT"]
max_age = 0

[[rule]]
name = "app"
paths = ["/v1/"]
origins = ["{page}", "http://*.localhost:{page_port}"]
methods = ["GET", "POST", "PUT", "DELETE", "PATCH"]
headers = ["content-type", "x-api-key"{extra_header}]
expose = ["x-upstream"]
credentials = true
max_age = 0
"#
    )
}

struct Outcome<'a>(&'a Value);

impl Outcome<'_> {
    fn allowed(&self, i: usize) -> bool {
        self.0["outcomes"][i]["allowed"] == true
    }
    fn console(&self) -> String {
        self.0["console"].to_string()
    }
}

#[test]
fn chromium_agrees_with_the_edge() {
    let pages = Upstream::start();
    let upstream = Upstream::start();
    let port = pages.address.port();
    let page = format!("http://localhost:{port}");
    let edge = Preflightd::start(
        &rules(&page, port, ""),
        Some(&upstream.url()),
        &["--reload-debounce", "50ms"],
    );
    let api = format!("http://127.0.0.1:{}", edge.data.port());
    let debug_rules = rules(&page, port, "").replace(
        "actual_responses = \"fill\"",
        "actual_responses = \"fill\"\ndebug = true",
    );
    let debug_edge = Preflightd::start(&debug_rules, Some(&upstream.url()), &[]);
    let debug_api = format!("http://127.0.0.1:{}", debug_edge.data.port());

    let json_body = |mut s: Value| {
        s["headers"] = json!({ "content-type": "application/json" });
        s["body"] = json!("{\"a\":1}");
        s
    };
    let home = format!("{page}/page");
    let stranger = format!("http://127.0.0.1:{port}/page");
    let subdomain = format!("http://app.localhost:{port}/page");
    let mut steps = vec![
        step(
            "simple-get",
            &home,
            &format!("{api}/v1/simple"),
            "GET",
            json!({}),
        ),
        json_body(step(
            "put-json",
            &home,
            &format!("{api}/v1/items"),
            "PUT",
            json!({}),
        )),
        json_body(step(
            "post-json",
            &home,
            &format!("{api}/v1/items"),
            "POST",
            json!({}),
        )),
        step(
            "custom-header",
            &home,
            &format!("{api}/v1/custom"),
            "GET",
            json!({ "x-api-key": "k" }),
        ),
        step(
            "delete",
            &home,
            &format!("{api}/v1/items/1"),
            "DELETE",
            json!({}),
        ),
        step(
            "header-not-allowed",
            &home,
            &format!("{api}/v1/secret"),
            "GET",
            json!({ "x-secret": "s" }),
        ),
        step(
            "method-not-allowed",
            &home,
            &format!("{api}/v1/purge"),
            "PURGE",
            json!({}),
        ),
        step(
            "lowercase-method",
            &home,
            &format!("{api}/v1/lower"),
            "patch",
            json!({}),
        ),
        json_body(step(
            "origin-not-allowed",
            &stranger,
            &format!("{api}/v1/items"),
            "PUT",
            json!({}),
        )),
        json_body(step(
            "subdomain-glob",
            &subdomain,
            &format!("{api}/v1/glob"),
            "PUT",
            json!({}),
        )),
        json_body(step(
            "star-origin",
            &stranger,
            &format!("{api}/public/x"),
            "PUT",
            json!({}),
        )),
        step(
            "debug-header",
            &home,
            &format!("{debug_api}/v1/secret"),
            "GET",
            json!({ "x-secret": "s" }),
        ),
        step(
            "reload-header-before",
            &home,
            &format!("{api}/v1/new"),
            "GET",
            json!({ "x-new": "1" }),
        ),
    ];
    let mut credentialed = step(
        "credentials-include",
        &home,
        &format!("{api}/v1/me"),
        "GET",
        json!({ "x-api-key": "k" }),
    );
    credentialed["credentials"] = json!("include");
    steps.push(credentialed);
    let mut exposed = step(
        "expose",
        &home,
        &format!("{api}/v1/expose"),
        "GET",
        json!({}),
    );
    exposed["read"] = json!(["x-upstream", "vary"]);
    steps.push(exposed);
    for (name, path) in [("max-age-600", "cached"), ("max-age-0", "uncached")] {
        let mut repeated = step(name, &home, &format!("{api}/{path}/item"), "PUT", json!({}));
        repeated["repeat"] = json!(3);
        steps.push(repeated);
    }

    let started = Instant::now();
    let results = run_browser(&steps);
    let get = |name: &str| {
        Outcome(
            results
                .get(name)
                .unwrap_or_else(|| panic!("no result for {name}")),
        )
    };

    for name in [
        "simple-get",
        "put-json",
        "post-json",
        "custom-header",
        "delete",
        "subdomain-glob",
        "star-origin",
        "credentials-include",
        "expose",
    ] {
        assert!(
            get(name).allowed(0),
            "{name} should be allowed: {}",
            get(name).0
        );
    }
    for name in [
        "header-not-allowed",
        "method-not-allowed",
        "lowercase-method",
        "origin-not-allowed",
        "reload-header-before",
    ] {
        let outcome = get(name);
        assert!(
            !outcome.allowed(0),
            "{name} should be blocked: {}",
            outcome.0
        );
        // A 403 without Access-Control-Allow-Origin: Chromium reports the missing header (it
        // runs the CORS check before the ok-status check).
        assert!(
            outcome.console().contains("has been blocked by CORS policy: Response to preflight request doesn't pass access control check: No 'Access-Control-Allow-Origin' header is present on the requested resource."),
            "{name}: {}",
            outcome.console()
        );
    }
    // debug = true: the 204 with the allowed lists makes Chromium name the header at fault.
    let debug = get("debug-header");
    assert!(!debug.allowed(0));
    assert!(
        debug.console().contains("Request header field x-secret is not allowed by Access-Control-Allow-Headers in preflight response."),
        "{}",
        debug.console()
    );
    // actual_responses = "fill": an exposed header is readable, a non-exposed one is not.
    let read = &get("expose").0["outcomes"][0]["read"];
    assert_eq!(read["x-upstream"], "yes");
    assert_eq!(read["vary"], Value::Null);
    // Max-Age: three identical preflighted requests cost one preflight with 600, three with 0.
    for name in ["max-age-600", "max-age-0"] {
        for i in 0..3 {
            assert!(get(name).allowed(i), "{name} #{i}: {}", get(name).0);
        }
    }
    assert_eq!(
        edge.metric("preflightd_preflight_requests_total{result=\"allowed\",rule=\"cached\"}"),
        1.0
    );
    assert_eq!(
        edge.metric("preflightd_preflight_requests_total{result=\"allowed\",rule=\"uncached\"}"),
        3.0
    );

    // The upstream saw no preflight, every allowed actual request, and no blocked one.
    let log = upstream.log();
    let methods: Vec<(String, String)> = log
        .iter()
        .map(|e| {
            (
                e["method"].as_str().unwrap_or("").to_owned(),
                e["uri"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert!(
        !methods.iter().any(|(m, _)| m == "OPTIONS"),
        "a preflight reached the upstream: {methods:?}"
    );
    for expected in [
        ("PUT", "/v1/items"),
        ("POST", "/v1/items"),
        ("GET", "/v1/custom"),
        ("DELETE", "/v1/items/1"),
        ("PUT", "/v1/glob"),
        ("PUT", "/public/x"),
        ("GET", "/v1/me"),
        ("GET", "/v1/simple"),
    ] {
        assert!(
            methods
                .iter()
                .any(|(m, u)| m == expected.0 && u == expected.1),
            "{expected:?} never reached the upstream: {methods:?}"
        );
    }
    assert_eq!(
        methods.iter().filter(|(_, u)| u == "/cached/item").count(),
        3
    );
    assert_eq!(
        methods
            .iter()
            .filter(|(m, u)| m == "PUT" && u == "/v1/items")
            .count(),
        1,
        "the blocked origin's PUT arrived"
    );
    for blocked in ["/v1/secret", "/v1/purge", "/v1/lower", "/v1/new"] {
        assert!(
            !methods.iter().any(|(_, u)| u == blocked),
            "blocked {blocked} reached the upstream"
        );
    }

    // Hot reload: allow x-new, wait for the new generation, and a new browser honours it.
    std::fs::write(
        edge.rules_dir().join("rules.toml"),
        rules(&page, port, ", \"x-new\""),
    )
    .expect("rewrite rules");
    let deadline = Instant::now() + WAIT;
    loop {
        let rules = send(
            edge.admin,
            "GET /rules HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        );
        let json: Value = serde_json::from_slice(&rules.body).expect("rules json");
        if json["generation"] == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rules change was never applied"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = run_browser(&[step(
        "reload-header-after",
        &home,
        &format!("{api}/v1/new"),
        "GET",
        json!({ "x-new": "1" }),
    )]);
    assert!(
        Outcome(&after["reload-header-after"]).allowed(0),
        "{}",
        after["reload-header-after"]
    );
    let took = started.elapsed();
    eprintln!("browser suite took {took:?}");
    assert!(
        took < Duration::from_secs(180),
        "browser suite took {took:?}"
    );
}

/// Standard base64 (RFC 4648 4), for Chromium's SPKI hash flag.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn chromium_agrees_with_the_edge_over_https() {
    use sha2::Digest;
    let pages = Upstream::start();
    let upstream = Upstream::start();
    let port = pages.address.port();
    let page = format!("http://localhost:{port}");
    // A certificate for 127.0.0.1 that Chromium trusts by its key's hash (what
    // --ignore-certificate-errors-spki-list is for), not by any CA.
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.der()).expect("parse");
    let spki = base64(&sha2::Sha256::digest(
        parsed.tbs_certificate.subject_pki.raw,
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    let cert_path = dir.path().join("tls.crt");
    let key_path = dir.path().join("tls.key");
    std::fs::write(&cert_path, cert.pem()).expect("cert");
    std::fs::write(&key_path, key.serialize_pem()).expect("key");
    let edge = Preflightd::start(
        &rules(&page, port, ""),
        Some(&upstream.url()),
        &[
            "--tls-cert",
            cert_path.to_str().expect("path"),
            "--tls-key",
            key_path.to_str().expect("path"),
        ],
    );
    let api = format!("https://127.0.0.1:{}", edge.data.port());
    let home = format!("{page}/page");
    let mut put = step(
        "https-credentialed-put",
        &home,
        &format!("{api}/v1/items"),
        "PUT",
        json!({ "content-type": "application/json", "x-api-key": "k" }),
    );
    put["body"] = json!("{\"a\":1}");
    put["credentials"] = json!("include");
    let denied = step(
        "https-header-not-allowed",
        &home,
        &format!("{api}/v1/secret"),
        "GET",
        json!({ "x-secret": "s" }),
    );
    let results = run_browser_with(
        &[put, denied],
        &[format!("--ignore-certificate-errors-spki-list={spki}")],
    );
    let put = Outcome(&results["https-credentialed-put"]);
    assert!(put.allowed(0), "{}", put.0);
    let denied = Outcome(&results["https-header-not-allowed"]);
    assert!(!denied.allowed(0), "{}", denied.0);
    assert!(
        denied.console().contains("has been blocked by CORS policy"),
        "{}",
        denied.console()
    );
    // Both preflights were answered over TLS by the edge; only the PUT went upstream, marked
    // as https.
    assert_eq!(
        edge.metric("preflightd_preflight_requests_total{result=\"allowed\",rule=\"app\"}"),
        1.0
    );
    assert_eq!(
        edge.metric("preflightd_preflight_requests_total{result=\"headers\",rule=\"app\"}"),
        1.0
    );
    let log = upstream.log();
    assert_eq!(log.len(), 1, "{log:#?}");
    assert_eq!(log[0]["method"], "PUT");
    let headers = crate::support::logged_headers(&log[0]);
    assert!(
        headers
            .iter()
            .any(|(n, v)| n == "x-forwarded-proto" && v == "https"),
        "{headers:?}"
    );
    assert!(edge.metric("preflightd_tls_handshakes_total{result=\"success\"}") >= 1.0);
}

/// Shadow mode's promise, with Chromium as the judge: behind preflightd in shadow mode, a
/// page sees exactly what it sees with the application alone, whatever the rules would have
/// said. Two instances of an application that answers CORS its own way (`test_upstream
/// --cors`): one reached directly, one behind preflightd, whose rules differ from the
/// application's on purpose (each way round).
#[test]
fn chromium_behind_shadow_mode_behaves_as_with_the_upstream_alone() {
    let pages = Upstream::start();
    let port = pages.address.port();
    let page = format!("http://localhost:{port}");
    let alone = Upstream::start_cors(&[&page]);
    let behind = Upstream::start_cors(&[&page]);
    let rules = format!(
        r#"
[settings]
mode = "shadow"

[[rule]]
name = "app"
origins = ["{page}"]
methods = ["PUT", "DELETE"]
headers = ["content-type", "x-api-key"]
max_age = 0
"#
    );
    let edge = Preflightd::start(&rules, Some(&behind.url()), &[]);
    let home = format!("{page}/page");
    let stranger = format!("http://127.0.0.1:{port}/page");
    let bases = [
        (
            "alone",
            format!("http://127.0.0.1:{}", alone.address.port()),
        ),
        ("shadow", format!("http://127.0.0.1:{}", edge.data.port())),
    ];
    let cases = |api: &str| {
        let json = |mut s: Value| {
            s["headers"] = json!({ "content-type": "application/json" });
            s["body"] = json!("{\"a\":1}");
            s
        };
        let mut credentialed = step(
            "credentialed-legacy-header",
            &home,
            &format!("{api}/v1/me"),
            "GET",
            json!({ "x-legacy": "1" }),
        );
        credentialed["credentials"] = json!("include");
        let mut cached = json(step(
            "cached-put",
            &home,
            &format!("{api}/v1/cached"),
            "PUT",
            json!({}),
        ));
        cached["repeat"] = json!(3);
        vec![
            // Both allow.
            json(step(
                "put-json",
                &home,
                &format!("{api}/v1/items"),
                "PUT",
                json!({}),
            )),
            // The application allows, the rules would not.
            step(
                "patch",
                &home,
                &format!("{api}/v1/items/1"),
                "PATCH",
                json!({}),
            ),
            step(
                "legacy-header",
                &home,
                &format!("{api}/v1/legacy"),
                "GET",
                json!({ "x-legacy": "1" }),
            ),
            credentialed,
            // The rules would allow, the application does not.
            step(
                "delete",
                &home,
                &format!("{api}/v1/items/2"),
                "DELETE",
                json!({}),
            ),
            step(
                "api-key-header",
                &home,
                &format!("{api}/v1/key"),
                "GET",
                json!({ "x-api-key": "k" }),
            ),
            // Neither.
            json(step(
                "stranger",
                &stranger,
                &format!("{api}/v1/items"),
                "PUT",
                json!({}),
            )),
            // The application's max-age (300), not the rules' (0): one preflight for three.
            cached,
        ]
    };
    let mut steps = Vec::new();
    for (name, api) in &bases {
        for mut case in cases(api) {
            case["name"] = json!(format!("{}@{name}", case["name"].as_str().unwrap_or("")));
            steps.push(case);
        }
    }
    let results = run_browser(&steps);

    let names: Vec<String> = cases("API")
        .iter()
        .map(|c| c["name"].as_str().unwrap_or("").to_owned())
        .collect();
    // What the page saw: each fetch's outcome (allowed, status or error) and the console,
    // with the API's address written as API.
    let seen = |name: &str, base: &(&str, String)| {
        let result = results
            .get(&format!("{name}@{}", base.0))
            .unwrap_or_else(|| panic!("no result for {name}@{}", base.0));
        let outcomes: Vec<Value> = result["outcomes"]
            .as_array()
            .expect("outcomes")
            .iter()
            .map(|o| json!([o["allowed"], o["status"], o["error"]]))
            .collect();
        let console = result["console"].to_string().replace(&base.1, "API");
        (outcomes, console)
    };
    for name in &names {
        assert_eq!(
            seen(name, &bases[1]),
            seen(name, &bases[0]),
            "{name}: behind shadow mode (left) and alone (right) differ"
        );
    }
    // Not vacuous: the application allowed some, refused others, and the rules disagreed.
    let allowed = |name: &str| seen(name, &bases[0]).0.iter().all(|o| o[0] == true);
    for name in [
        "put-json",
        "patch",
        "legacy-header",
        "credentialed-legacy-header",
        "cached-put",
    ] {
        assert!(allowed(name), "{name}: {:?}", seen(name, &bases[0]));
    }
    for name in ["delete", "api-key-header", "stranger"] {
        assert!(!allowed(name), "{name}: {:?}", seen(name, &bases[0]));
    }
    assert!(
        edge.metric(
            "preflightd_shadow_comparisons_total{result=\"only_upstream_allows\",rule=\"app\"}"
        ) >= 3.0
    );
    assert!(
        edge.metric(
            "preflightd_shadow_comparisons_total{result=\"only_rules_allow\",rule=\"app\"}"
        ) >= 2.0
    );

    // The application behind preflightd got exactly the requests, preflights included, that
    // it got alone.
    let requests = |upstream: &Upstream| -> Vec<(String, String)> {
        upstream
            .log()
            .iter()
            .map(|e| {
                (
                    e["method"].as_str().unwrap_or("").to_owned(),
                    e["uri"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    };
    let (direct, shadowed) = (requests(&alone), requests(&behind));
    assert_eq!(shadowed, direct);
    assert!(direct.iter().any(|(m, _)| m == "OPTIONS"), "{direct:?}");
    assert_eq!(
        direct
            .iter()
            .filter(|(m, u)| m == "OPTIONS" && u == "/v1/cached")
            .count(),
        1
    );
    assert_eq!(behind.preflights(), alone.preflights());
}
