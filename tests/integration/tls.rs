//! TLS on the data listener (DESIGN 11), with real clients (curl, openssl s_client) against
//! the real binary, and a test CA made at test time.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, date_time_ymd,
};

use crate::support::{Preflightd, RULES, Upstream};

/// A CA and leaf certificates it signs, as PEM files in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "preflightd test CA");
        let ca =
            CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("write CA");
        Pki { dir, ca }
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A leaf for `names` (the first also its CN), valid until `until` (y, m, d) or for
    /// years: (cert.pem, key.pem).
    fn leaf(&self, stem: &str, names: &[&str], until: Option<(i32, u8, u8)>) -> (PathBuf, PathBuf) {
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .expect("params");
        params.distinguished_name.push(DnType::CommonName, names[0]);
        if let Some((y, m, d)) = until {
            params.not_before = date_time_ymd(y - 1, m, d);
            params.not_after = date_time_ymd(y, m, d);
        }
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &*self.ca).expect("sign");
        let cert_path = self.dir.path().join(format!("{stem}.pem"));
        let key_path = self.dir.path().join(format!("{stem}-key.pem"));
        std::fs::write(&cert_path, cert.pem()).expect("write cert");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        (cert_path, key_path)
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `curl` against the edge as `https://api.example.com:PORT`, trusting only the test CA:
/// (status line, headers lowercased, body).
fn curl(edge: &Preflightd, ca: &Path, extra: &[&str], target: &str) -> (String, String) {
    let port = edge.data.port();
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-D", "-", "-o", "/dev/null"])
        .args(["--cacert", path(ca)])
        .args(["--resolve", &format!("api.example.com:{port}:127.0.0.1")])
        .args(extra)
        .arg(format!("https://api.example.com:{port}{target}"))
        .output()
        .expect("curl runs");
    let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    let status = head.lines().next().unwrap_or("").trim().to_owned();
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (status, head)
}

const PREFLIGHT: [&str; 6] = [
    "-X",
    "OPTIONS",
    "-H",
    "Origin: https://app.example.com",
    "-H",
    "Access-Control-Request-Method: PUT",
];

#[test]
fn curl_gets_preflights_and_proxied_requests_over_tls_with_http_1_1_and_http_2() {
    let pki = Pki::new();
    let (cert, key) = pki.leaf("api", &["api.example.com"], None);
    let upstream = Upstream::start();
    let edge = Preflightd::start(
        RULES,
        Some(&upstream.url()),
        &["--tls-cert", path(&cert), "--tls-key", path(&key)],
    );
    for (protocol, status) in [("--http1.1", "http/1.1 204"), ("--http2", "http/2 204")] {
        let mut args = vec![protocol];
        args.extend(PREFLIGHT);
        let (line, head) = curl(&edge, &pki.ca(), &args, "/v1/items");
        assert!(line.starts_with(status), "{protocol}: {head}");
        assert!(
            head.contains("access-control-allow-origin: https://app.example.com"),
            "{head}"
        );
        assert!(
            head.contains("access-control-allow-credentials: true"),
            "{head}"
        );
    }
    for protocol in ["--http1.1", "--http2"] {
        let (line, head) = curl(&edge, &pki.ca(), &[protocol], "/v1/over-tls");
        assert!(line.contains(" 200"), "{protocol}: {head}");
    }
    // The upstream learns the client came over TLS.
    let log = upstream.log();
    let protos: Vec<String> = log
        .iter()
        .map(|entry| {
            let headers: Vec<(String, String)> =
                serde_json::from_value(entry["headers"].clone()).expect("headers");
            headers
                .into_iter()
                .find(|(n, _)| n == "x-forwarded-proto")
                .map(|(_, v)| v)
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(protos, ["https", "https"], "{log:#?}");
}

/// `openssl s_client` against the edge: its output (stdout and stderr).
fn s_client(edge: &Preflightd, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &edge.data.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("openssl runs");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn sni_chooses_the_certificate_and_tls_1_1_is_refused() {
    let pki = Pki::new();
    let (api, api_key) = pki.leaf("api", &["api.example.com"], None);
    let (other, other_key) = pki.leaf("other", &["*.other.example.net"], None);
    let edge = Preflightd::start(
        RULES,
        None,
        &[
            "--tls-cert",
            path(&api),
            "--tls-key",
            path(&api_key),
            "--tls-cert",
            path(&other),
            "--tls-key",
            path(&other_key),
        ],
    );
    let subject = |out: &str| {
        out.lines()
            .find(|l| l.starts_with("subject="))
            .unwrap_or("")
            .to_owned()
    };
    let named = s_client(&edge, &["-servername", "x.other.example.net"]);
    assert!(subject(&named).contains("other.example.net"), "{named}");
    let first = s_client(&edge, &["-servername", "api.example.com"]);
    assert!(subject(&first).contains("api.example.com"), "{first}");
    // No SNI, or a name no certificate covers: the first pair.
    let none = s_client(&edge, &["-noservername"]);
    assert!(subject(&none).contains("api.example.com"), "{none}");
    let unknown = s_client(&edge, &["-servername", "a.b.other.example.net"]);
    assert!(subject(&unknown).contains("api.example.com"), "{unknown}");
    // TLS 1.2 and 1.3 are served; TLS 1.1 is refused by the server (the client is told to
    // allow it).
    for (flag, version) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let out = s_client(&edge, &["-servername", "api.example.com", flag]);
        assert!(
            out.contains(&format!("Protocol: {version}"))
                || out.contains(&format!("Protocol  : {version}"))
                || out.contains(&format!(", {version},")),
            "{flag}: {out}"
        );
    }
    let old = s_client(
        &edge,
        &[
            "-servername",
            "api.example.com",
            "-tls1_1",
            "-cipher",
            "DEFAULT@SECLEVEL=0",
        ],
    );
    // rustls answers a ClientHello offering nothing above TLS 1.1 with a fatal alert.
    assert!(
        old.contains("alert handshake failure") || old.contains("alert protocol version"),
        "{old}"
    );
    assert!(old.contains("Cipher is (NONE)"), "{old}");
    assert!(old.contains("no peer certificate available"), "{old}");
}

/// `preflightd serve` with TLS flags that cannot be served: its exit code and log.
fn serve_fails(args: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("rules.toml"), RULES).expect("rules");
    let out = Command::new(env!("CARGO_BIN_EXE_preflightd"))
        .args(["serve", "--rules", path(dir.path())])
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(args)
        .output()
        .expect("runs");
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn pairs_that_cannot_be_served_stop_startup_with_every_error() {
    let pki = Pki::new();
    let (api, api_key) = pki.leaf("api", &["api.example.com"], None);
    let (other, other_key) = pki.leaf("other", &["other.example.net"], None);
    let (expired, expired_key) = pki.leaf("expired", &["old.example.com"], Some((2020, 1, 1)));
    let missing = pki.dir.path().join("missing.pem");
    let garbage = pki.dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a PEM file\n").expect("write");
    // A mismatched key, a missing certificate, an expired one and an unreadable key: all
    // four named at once, exit 1, nothing served.
    let (code, log) = serve_fails(&[
        "--tls-cert",
        path(&api),
        "--tls-key",
        path(&other_key),
        "--tls-cert",
        path(&missing),
        "--tls-key",
        path(&api_key),
        "--tls-cert",
        path(&expired),
        "--tls-key",
        path(&expired_key),
        "--tls-cert",
        path(&other),
        "--tls-key",
        path(&garbage),
    ]);
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("does not match the certificate"), "{log}");
    assert!(log.contains("missing.pem"), "{log}");
    assert!(
        log.contains("the certificate expired at 2020-01-01"),
        "{log}"
    );
    assert!(log.contains("garbage.pem"), "{log}");
    assert!(log.contains("cannot serve TLS"), "{log}");
    assert!(
        !log.contains("\"serving\"") && !log.contains(" serving"),
        "{log}"
    );
    // Unpaired flags: a usage error.
    let (code, log) = serve_fails(&[
        "--tls-cert",
        path(&api),
        "--tls-cert",
        path(&other),
        "--tls-key",
        path(&api_key),
    ]);
    assert_eq!(code, Some(2), "{log}");
    assert!(log.contains("come in pairs"), "{log}");
}

#[test]
fn a_silent_socket_on_the_tls_listener_is_closed_at_the_header_timeout() {
    use std::io::Read;
    let pki = Pki::new();
    let (cert, key) = pki.leaf("api", &["api.example.com"], None);
    let edge = Preflightd::start(
        RULES,
        None,
        &[
            "--tls-cert",
            path(&cert),
            "--tls-key",
            path(&key),
            "--header-read-timeout",
            "500ms",
        ],
    );
    // The handshake counts against the header read timeout: a client that never sends its
    // ClientHello is closed like one that never sends a head.
    let mut silent = crate::support::connect(edge.data);
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let _ = silent.read_to_end(&mut rest);
    let waited = started.elapsed();
    assert!(rest.is_empty());
    assert!(
        waited >= std::time::Duration::from_millis(400)
            && waited < std::time::Duration::from_secs(5),
        "{waited:?}"
    );
    // Meanwhile and after, TLS clients are answered.
    let mut args = vec!["--http1.1"];
    args.extend(PREFLIGHT);
    let (line, head) = curl(&edge, &pki.ca(), &args, "/v1/items");
    assert!(line.contains(" 204"), "{head}");
    assert_eq!(
        edge.metric("preflightd_client_errors_total{kind=\"header_timeout\"}"),
        1.0
    );
}
