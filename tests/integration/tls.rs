//! TLS on the data listener (DESIGN 11), with real clients (curl, openssl s_client) against
//! the real binary, and a test CA made at test time.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, date_time_ymd,
};

use crate::support::{Preflightd, RULES, Upstream};

/// A CA and leaf certificates it signs, as PEM files in a temporary directory.
pub struct Pki {
    dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    pub fn new() -> Pki {
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

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A leaf for `names` (the first also its CN), valid until `until` (y, m, d) or for
    /// years: (cert.pem, key.pem).
    pub fn leaf(
        &self,
        stem: &str,
        names: &[&str],
        until: Option<(i32, u8, u8)>,
    ) -> (PathBuf, PathBuf) {
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .expect("params");
        params.distinguished_name.push(DnType::CommonName, names[0]);
        // Tells versions of one name apart in `openssl s_client`'s subject line.
        params
            .distinguished_name
            .push(DnType::OrganizationName, stem);
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

pub fn path(p: &Path) -> &str {
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
    let protos = upstream.seen("x-forwarded-proto");
    assert_eq!(protos, ["https", "https"]);
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

/// The subject line `openssl s_client` prints for `name`'s certificate.
fn served_subject(edge: &Preflightd, name: &str) -> String {
    s_client(edge, &["-servername", name])
        .lines()
        .find(|l| l.starts_with("subject="))
        .unwrap_or("")
        .to_owned()
}

/// Waits (bounded) until `name` is served with a subject containing `want`.
fn wait_for_subject(edge: &Preflightd, name: &str, want: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let subject = served_subject(edge, name);
        if subject.contains(want) || std::time::Instant::now() > deadline {
            return subject;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Preflights over new TLS connections in a loop until `stop`, at most 400 or 20 s: (sent,
/// failed).
fn steady_load(
    port: u16,
    ca: PathBuf,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<(u32, Vec<String>)> {
    std::thread::spawn(move || {
        let started = std::time::Instant::now();
        let mut sent = 0;
        let mut failed = Vec::new();
        while !stop.load(std::sync::atomic::Ordering::Relaxed)
            && sent < 400
            && started.elapsed() < std::time::Duration::from_secs(20)
        {
            let out = Command::new("curl")
                .args([
                    "-sS",
                    "--max-time",
                    "5",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                ])
                .args(["--cacert", path(&ca)])
                .args(["--resolve", &format!("api.example.com:{port}:127.0.0.1")])
                .args(PREFLIGHT)
                .arg(format!("https://api.example.com:{port}/v1/items"))
                .output()
                .expect("curl runs");
            sent += 1;
            let code = String::from_utf8_lossy(&out.stdout).into_owned();
            if code != "204" {
                failed.push(format!("{code} {}", String::from_utf8_lossy(&out.stderr)));
            }
        }
        (sent, failed)
    })
}

/// Writes `from`'s bytes to `to` through a temporary file renamed over it (how editors and
/// most tools replace files).
fn replace(from: &Path, to: &Path) {
    let temporary = to.with_extension("tmp");
    std::fs::copy(from, &temporary).expect("copy");
    std::fs::rename(&temporary, to).expect("rename");
}

#[test]
fn certificates_replaced_on_disk_are_served_without_a_failed_request_and_a_bad_pair_is_not() {
    let pki = Pki::new();
    let (v1, v1_key) = pki.leaf("api-v1", &["api.example.com"], None);
    let (v2, v2_key) = pki.leaf("api-v2", &["api.example.com"], None);
    let (other, _) = pki.leaf("other", &["api.example.com"], None);
    let live = tempfile::tempdir().expect("tempdir");
    let cert = live.path().join("tls.crt");
    let key = live.path().join("tls.key");
    std::fs::copy(&v1, &cert).expect("copy");
    std::fs::copy(&v1_key, &key).expect("copy");
    let edge = Preflightd::start(
        RULES,
        None,
        &[
            "--tls-cert",
            path(&cert),
            "--tls-key",
            path(&key),
            "--reload-debounce",
            "100ms",
        ],
    );
    assert!(served_subject(&edge, "api.example.com").contains("api-v1"));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = steady_load(edge.data.port(), pki.ca(), std::sync::Arc::clone(&stop));
    std::thread::sleep(std::time::Duration::from_millis(300));
    // Renamed over, certificate then key: for a moment the pair does not match, and that
    // moment is never served.
    replace(&v2, &cert);
    replace(&v2_key, &key);
    let subject = wait_for_subject(&edge, "api.example.com", "api-v2");
    assert!(subject.contains("api-v2"), "{subject}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    // A bad pair (v1's key under another certificate): refused, v2 stays, and it shows.
    replace(&other, &cert);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while edge
        .metric("preflightd_tls_certificate_reloads_total{result=\"failure\",trigger=\"watch\"}")
        < 1.0
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        edge.metric(
            "preflightd_tls_certificate_reloads_total{result=\"failure\",trigger=\"watch\"}"
        ) >= 1.0
    );
    assert!(served_subject(&edge, "api.example.com").contains("api-v2"));
    std::thread::sleep(std::time::Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, failed) = load.join().expect("load thread");
    assert!(sent >= 5, "only {sent} requests during the swaps");
    assert!(
        failed.is_empty(),
        "{} of {sent} failed: {failed:?}",
        failed.len()
    );
    // Handshakes are counted: at least one per request, none failed.
    let successes = edge.metric("preflightd_tls_handshakes_total{result=\"success\"}");
    assert!(
        successes >= f64::from(sent),
        "{successes} handshakes for {sent} requests"
    );
    assert_eq!(
        edge.metric("preflightd_tls_handshakes_total{result=\"other\"}"),
        0.0
    );
}

#[test]
fn a_kubernetes_secret_volume_swap_is_served_and_expiry_and_handshakes_are_metrics() {
    use std::os::unix::fs::symlink;
    let pki = Pki::new();
    let (v1, v1_key) = pki.leaf("api-v1", &["api.example.com"], None);
    let (v2, v2_key) = pki.leaf("api-v2", &["api.example.com"], Some((2031, 6, 1)));
    // The layout kubelet writes: files are links into `..data`, itself a link to a
    // timestamped directory; an update writes a new directory and renames a new `..data`
    // link over the old one.
    let volume = tempfile::tempdir().expect("tempdir");
    let version = |name: &str, cert: &Path, key: &Path| {
        let dir = volume.path().join(name);
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::copy(cert, dir.join("tls.crt")).expect("copy");
        std::fs::copy(key, dir.join("tls.key")).expect("copy");
    };
    version("..2026_12_03_v1", &v1, &v1_key);
    symlink("..2026_12_03_v1", volume.path().join("..data")).expect("link");
    symlink("..data/tls.crt", volume.path().join("tls.crt")).expect("link");
    symlink("..data/tls.key", volume.path().join("tls.key")).expect("link");
    let cert = volume.path().join("tls.crt");
    let key = volume.path().join("tls.key");
    let edge = Preflightd::start(
        RULES,
        None,
        &[
            "--tls-cert",
            path(&cert),
            "--tls-key",
            path(&key),
            "--reload-debounce",
            "100ms",
        ],
    );
    assert!(served_subject(&edge, "api.example.com").contains("api-v1"));
    version("..2026_12_03_v2", &v2, &v2_key);
    symlink("..2026_12_03_v2", volume.path().join("..data_tmp")).expect("link");
    std::fs::rename(
        volume.path().join("..data_tmp"),
        volume.path().join("..data"),
    )
    .expect("swap");
    let subject = wait_for_subject(&edge, "api.example.com", "api-v2");
    assert!(subject.contains("api-v2"), "{subject}");
    // The expiry gauge follows the served certificate: 2031-06-01T00:00:00Z.
    let expiry = format!(
        "preflightd_tls_certificate_expiry_timestamp_seconds{{certificate=\"{}\"}}",
        cert.display()
    );
    assert_eq!(edge.metric(&expiry), 1_938_038_400.0);
    // A plain HTTP request on the TLS port is a malformed handshake: a TLS alert record
    // (content type 21) back, and counted.
    let mut plain = crate::support::connect(edge.data);
    std::io::Write::write_all(
        &mut plain,
        b"OPTIONS / HTTP/1.1\r\nHost: api.example.com\r\n\r\n",
    )
    .expect("write");
    let mut reply = Vec::new();
    let _ = std::io::Read::read_to_end(&mut plain, &mut reply);
    assert_eq!(reply.first(), Some(&21), "{reply:?}");
    // The failed handshake's socket is closed (by tokio-rustls) before the server counts it:
    // the count follows within moments, not before the client sees the close.
    let malformed = "preflightd_tls_handshakes_total{result=\"malformed\"}";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while edge.metric(malformed) < 1.0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(edge.metric(malformed), 1.0);
}

#[test]
fn an_expired_certificate_pushed_at_reload_is_served_with_a_warning() {
    let pki = Pki::new();
    let (fresh, fresh_key) = pki.leaf("api-fresh", &["api.example.com"], None);
    let (expired, expired_key) = pki.leaf("api-expired", &["api.example.com"], Some((2020, 1, 1)));
    let live = tempfile::tempdir().expect("tempdir");
    let cert = live.path().join("tls.crt");
    let key = live.path().join("tls.key");
    std::fs::copy(&fresh, &cert).expect("copy");
    std::fs::copy(&fresh_key, &key).expect("copy");
    let edge = Preflightd::start(
        RULES,
        None,
        &[
            "--tls-cert",
            path(&cert),
            "--tls-key",
            path(&key),
            "--no-watch",
        ],
    );
    // Both files replaced, then SIGHUP: refusing an expired renewal would not bring a valid
    // certificate back, so it is served, with a warning naming it.
    std::fs::copy(&expired, &cert).expect("copy");
    std::fs::copy(&expired_key, &key).expect("copy");
    edge.process.signal("HUP");
    let line = edge
        .process
        .wait_for_line("the certificate expired at 2020-01-01");
    assert!(
        line.contains("WARN") || line.contains("\"level\":\"WARN\""),
        "{line}"
    );
    let subject = wait_for_subject(&edge, "api.example.com", "api-expired");
    assert!(subject.contains("api-expired"), "{subject}");
    assert_eq!(
        edge.metric(
            "preflightd_tls_certificate_reloads_total{result=\"success\",trigger=\"signal\"}"
        ),
        1.0
    );
}
