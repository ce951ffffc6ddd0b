//! Whose forwarding fields to believe (`--trusted-proxies`, DESIGN 11): a trusted peer's
//! `X-Forwarded-For` / `-Proto` are kept and appended to; anyone else's are replaced by what
//! preflightd saw; without the flag, every peer's are appended to.

use std::process::Command;

use crate::support::{Preflightd, RULES, Upstream, send};

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
    let headers: Vec<(String, String)> =
        serde_json::from_value(log[0]["headers"].clone()).expect("headers");
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
