//! Whose forwarding fields to believe (`--trusted-proxies`, DESIGN 11): a trusted peer's
//! `X-Forwarded-For` / `-Proto` are kept and appended to; anyone else's are replaced by what
//! preflightd saw; without the flag, every peer's are appended to.

use std::io::{Read, Write};
use std::process::Command;
use std::sync::Arc;

use crate::support::{Preflightd, RULES, Upstream, connect, logged_headers, send};
use crate::tls::{Pki, path};

/// The `X-Forwarded-For` and `-Proto` lines the upstream saw for a GET that claimed
/// `198.51.100.1` over https, sent from 127.0.0.1 with `extra` flags.
fn forwarded(extra: &[&str]) -> (Vec<String>, Vec<String>) {
    let upstream = Upstream::start();
    let edge = Preflightd::start(RULES, Some(&upstream.url()), extra);
    let response = send(
        edge.data,
        "GET /v1/forwarded HTTP/1.1\r\nHost: api.example.com\r\nX-Forwarded-For: 198.51.100.1\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(response.status, 200);
    let log = upstream.log();
    assert_eq!(log.len(), 1, "{log:#?}");
    let headers = logged_headers(&log[0]);
    let lines = |name: &str| -> Vec<String> {
        headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    };
    (lines("x-forwarded-for"), lines("x-forwarded-proto"))
}

#[test]
fn without_the_flag_every_peers_forwarding_fields_are_appended_to() {
    let (for_, proto) = forwarded(&[]);
    assert_eq!(for_, ["198.51.100.1, 127.0.0.1"]);
    assert_eq!(proto, ["https, http"]);
}

#[test]
fn a_trusted_peers_fields_are_kept_and_anyone_elses_replaced() {
    let (for_, proto) = forwarded(&["--trusted-proxies", "10.0.0.0/8,127.0.0.1"]);
    assert_eq!(for_, ["198.51.100.1, 127.0.0.1"]);
    assert_eq!(proto, ["https, http"]);
    let (for_, proto) = forwarded(&["--trusted-proxies", "10.0.0.0/8,::1"]);
    assert_eq!(for_, ["127.0.0.1"], "a spoofed address is dropped");
    assert_eq!(proto, ["http"]);
}

#[test]
fn a_bad_trusted_proxies_block_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_preflightd"))
        .args(["serve", "--trusted-proxies", "10.0.0.0/33"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("prefix length must be 0 to 32"), "{stderr}");
}

/// Sends `bytes` on a new connection and reads until it closes.
fn exchange(edge: &Preflightd, bytes: &[u8]) -> String {
    let mut stream = connect(edge.data);
    stream.write_all(bytes).expect("write");
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    String::from_utf8_lossy(&reply).into_owned()
}

/// A PROXY v2 header for a TCP connection from `source` (IPv4) to 10.0.0.1:443.
fn v2_header(source: [u8; 4], port: u16) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    header.extend_from_slice(&source);
    header.extend_from_slice(&[10, 0, 0, 1]);
    header.extend_from_slice(&port.to_be_bytes());
    header.extend_from_slice(&443u16.to_be_bytes());
    header
}

const GET: &str = "GET /v1/pp HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n";

#[test]
fn proxy_protocol_v1_and_v2_give_the_client_address_and_a_missing_header_closes() {
    let upstream = Upstream::start();
    let edge = Preflightd::start(RULES, Some(&upstream.url()), &["--proxy-protocol"]);
    let v1 = exchange(
        &edge,
        format!("PROXY TCP4 203.0.113.7 10.0.0.1 55555 443\r\n{GET}").as_bytes(),
    );
    assert!(v1.starts_with("HTTP/1.1 200"), "{v1}");
    let mut v2 = v2_header([198, 51, 100, 9], 8080);
    v2.extend_from_slice(GET.as_bytes());
    let v2 = exchange(&edge, &v2);
    assert!(v2.starts_with("HTTP/1.1 200"), "{v2}");
    assert_eq!(
        upstream.seen("x-forwarded-for"),
        ["203.0.113.7", "198.51.100.9"]
    );
    // Preflights behind the header take the fast path as usual.
    let preflight = exchange(
        &edge,
        format!(
            "PROXY TCP4 203.0.113.7 10.0.0.1 55555 443\r\n{}",
            crate::support::preflight("/", "api.example.com", "https://app.example.com", "PUT", "")
                .replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n")
        )
        .as_bytes(),
    );
    assert!(preflight.starts_with("HTTP/1.1 204"), "{preflight}");
    // No header, or a broken one: closed without an answer, counted.
    assert_eq!(exchange(&edge, GET.as_bytes()), "");
    assert_eq!(exchange(&edge, b"PROXY TCP4 garbage\r\n"), "");
    assert_eq!(
        edge.metric("preflightd_client_errors_total{kind=\"proxy_protocol\"}"),
        2.0
    );
    assert_eq!(
        upstream.log().len(),
        2,
        "nothing of the refused connections went upstream"
    );
}

#[test]
fn proxy_protocol_comes_before_the_tls_handshake() {
    let pki = Pki::new();
    let (cert, key) = pki.leaf("api", &["api.example.com"], None);
    let upstream = Upstream::start();
    let edge = Preflightd::start(
        RULES,
        Some(&upstream.url()),
        &[
            "--proxy-protocol",
            "--tls-cert",
            path(&cert),
            "--tls-key",
            path(&key),
        ],
    );
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(pki.ca()).expect("CA");
    let ca = rustls_pki_pem(&ca);
    roots.add(ca).expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut tcp = connect(edge.data);
    tcp.write_all(&v2_header([192, 0, 2, 44], 40000))
        .expect("PROXY header");
    let name = rustls::pki_types::ServerName::try_from("api.example.com").expect("name");
    let client = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
    let mut tls = rustls::StreamOwned::new(client, tcp);
    tls.write_all(GET.as_bytes()).expect("request");
    let mut reply = Vec::new();
    let _ = tls.read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert_eq!(upstream.seen("x-forwarded-for"), ["192.0.2.44"]);
}

/// The first certificate of a PEM file, as DER.
fn rustls_pki_pem(pem: &[u8]) -> rustls::pki_types::CertificateDer<'static> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem).expect("PEM certificate")
}

#[test]
fn a_silent_or_trickling_client_on_a_proxy_protocol_listener_is_closed_at_the_header_timeout() {
    let edge = Preflightd::start(
        RULES,
        None,
        &["--proxy-protocol", "--header-read-timeout", "500ms"],
    );
    // One connection sends nothing; another starts a v1 line and never ends it.
    let silent = connect(edge.data);
    let mut partial = connect(edge.data);
    partial.write_all(b"PROXY TCP4 203.0.11").expect("write");
    let started = std::time::Instant::now();
    for mut stream in [silent, partial] {
        let mut reply = Vec::new();
        let _ = stream.read_to_end(&mut reply);
        assert!(reply.is_empty(), "{reply:?}");
    }
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(400)
            && waited < std::time::Duration::from_secs(5),
        "{waited:?}"
    );
    assert_eq!(
        edge.metric("preflightd_client_errors_total{kind=\"header_timeout\"}"),
        2.0
    );
    // Meanwhile and after, a client behind a proper header is answered.
    let answered = exchange(
        &edge,
        format!(
            "PROXY TCP4 203.0.113.7 10.0.0.1 55555 443\r\n{}",
            crate::support::preflight("/", "api.example.com", "https://app.example.com", "PUT", "")
                .replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n")
        )
        .as_bytes(),
    );
    assert!(answered.starts_with("HTTP/1.1 204"), "{answered}");
}
