//! TLS on the data listener (DESIGN 11): certificate and key pairs from PEM files, each
//! checked (the chain parses, the key parses and matches the certificate, the certificate has
//! not expired), chosen per handshake by SNI, served with rustls's safe defaults (TLS 1.2 and
//! 1.3) and ALPN `h2` and `http/1.1`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// One `--tls-cert` / `--tls-key` pair, as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A loaded pair: what it serves and the names it serves for.
#[derive(Debug)]
struct Pair {
    certified: Arc<CertifiedKey>,
    /// DNS names of the certificate's subjectAltName, lowercased (`*.example.com` kept as is).
    names: Vec<String>,
}

/// Why a pair cannot be served, with the file it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairError {
    pub file: PathBuf,
    pub reason: String,
}

impl std::fmt::Display for PairError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.reason)
    }
}

/// The rustls configuration serving `pairs`, or every error of every pair.
pub fn server_config(pairs: &[PairFiles]) -> Result<Arc<ServerConfig>, Vec<PairError>> {
    let mut loaded = Vec::new();
    let mut errors = Vec::new();
    for files in pairs {
        match load_pair(files, SystemTime::now()) {
            Ok(pair) => loaded.push(pair),
            Err(mut more) => errors.append(&mut more),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if loaded.is_empty() {
        return Err(vec![PairError {
            file: PathBuf::from("--tls-cert"),
            reason: "no certificate given".into(),
        }]);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| {
            vec![PairError {
                file: PathBuf::from("--tls-cert"),
                reason: e.to_string(),
            }]
        })?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(BySni { pairs: loaded }));
    // RFC 7301: h2 first, so that a client offering both speaks HTTP/2 (RFC 9113 3.2).
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn load_pair(files: &PairFiles, now: SystemTime) -> Result<Pair, Vec<PairError>> {
    let at = |file: &Path, reason: String| PairError {
        file: file.to_path_buf(),
        reason,
    };
    let mut errors = Vec::new();
    let chain = match CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
    {
        Ok(chain) if chain.is_empty() => {
            errors.push(at(&files.cert, "no CERTIFICATE block".into()));
            None
        }
        Ok(chain) => Some(chain),
        Err(e) => {
            errors.push(at(
                &files.cert,
                format!("cannot read the certificate chain: {e}"),
            ));
            None
        }
    };
    let key = match PrivateKeyDer::from_pem_file(&files.key) {
        Ok(key) => match rustls::crypto::ring::sign::any_supported_type(&key) {
            Ok(key) => Some(key),
            Err(e) => {
                errors.push(at(&files.key, format!("unsupported private key: {e}")));
                None
            }
        },
        Err(e) => {
            errors.push(at(
                &files.key,
                format!("cannot read a PKCS#8, PKCS#1 or SEC1 private key: {e}"),
            ));
            None
        }
    };
    let (Some(chain), Some(key)) = (chain, key) else {
        return Err(errors);
    };
    let facts = match chain.first().map(|leaf| leaf_facts(leaf.as_ref())) {
        Some(Ok(facts)) => facts,
        Some(Err(reason)) => return Err(vec![at(&files.cert, reason)]),
        None => return Err(vec![at(&files.cert, "no certificate".into())]),
    };
    let now = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    if facts.not_after < now {
        errors.push(at(
            &files.cert,
            format!(
                "the certificate expired at {}",
                humantime::format_rfc3339_seconds(
                    UNIX_EPOCH
                        + std::time::Duration::from_secs(
                            u64::try_from(facts.not_after).unwrap_or(0)
                        )
                )
            ),
        ));
    }
    let certified = CertifiedKey::new(chain, key);
    if let Err(e) = certified.keys_match() {
        errors.push(at(
            &files.key,
            format!(
                "the key does not match the certificate {}: {e}",
                files.cert.display()
            ),
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Pair {
        certified: Arc::new(certified),
        names: facts.names,
    })
}

/// What preflightd needs of a leaf certificate.
struct LeafFacts {
    names: Vec<String>,
    /// Unix seconds.
    not_after: i64,
}

fn leaf_facts(der: &[u8]) -> Result<LeafFacts, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("cannot parse the certificate: {e}"))?;
    let names = cert
        .subject_alternative_name()
        .map_err(|e| format!("cannot parse the subjectAltName: {e}"))?
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    x509_parser::extensions::GeneralName::DNSName(dns) => {
                        Some(dns.to_ascii_lowercase())
                    }
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(LeafFacts {
        names,
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// Chooses a pair by the client's SNI name: the first whose names cover it (exactly, or a
/// `*.` name covering one more label, RFC 6125 6.4.3); else, and for a client without SNI, the
/// first pair.
#[derive(Debug)]
struct BySni {
    pairs: Vec<Pair>,
}

impl BySni {
    fn choose(&self, name: Option<&str>) -> Option<&Pair> {
        let chosen = name.and_then(|name| {
            let name = name.to_ascii_lowercase();
            self.pairs
                .iter()
                .find(|pair| pair.names.iter().any(|n| covers(n, &name)))
        });
        chosen.or_else(|| self.pairs.first())
    }
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.choose(hello.server_name())
            .map(|pair| Arc::clone(&pair.certified))
    }
}

/// Whether the certificate name `pattern` covers the host `name` (both lowercase).
fn covers(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(domain) => name
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == domain),
        None => pattern == name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_covers_exactly_one_label() {
        assert!(covers("*.example.com", "a.example.com"));
        assert!(!covers("*.example.com", "a.b.example.com"));
        assert!(!covers("*.example.com", "example.com"));
        assert!(covers("api.example.com", "api.example.com"));
        assert!(!covers("api.example.com", "x.api.example.com"));
    }
}
