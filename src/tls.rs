//! TLS on the data listener (DESIGN 11): certificate and key pairs from PEM files, each
//! checked (the chain parses, the key parses and matches the certificate, the certificate has
//! not expired), chosen per handshake by SNI, served with rustls's safe defaults (TLS 1.2 and
//! 1.3) and ALPN `h2` and `http/1.1`.
//!
//! The pairs rotate without a restart: the rules' reload triggers (directory watch, SIGHUP,
//! the periodic re-check) also re-read them, and a new set that passes every check is swapped
//! in atomically for new handshakes (an `ArcSwap` the resolver loads without a lock);
//! connections in flight keep theirs. A set with any bad pair keeps the last good one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

use crate::metrics::{Metrics, TlsHandshake};

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
    /// `notAfter`, Unix seconds.
    not_after: i64,
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

/// The served pairs and where they come from.
pub struct Certificates {
    files: Vec<PairFiles>,
    pairs: ArcSwap<Vec<Pair>>,
    /// Hash of the files' contents when `pairs` was loaded, or last failed: a re-check that
    /// finds the same bytes does nothing. Only the reload thread writes it.
    seen: ArcSwap<[u8; 32]>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificates")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl Certificates {
    /// The first load: every pair must pass every check, an expired certificate included.
    pub fn load(files: Vec<PairFiles>, metrics: Arc<Metrics>) -> Result<Arc<Self>, Vec<PairError>> {
        if files.is_empty() {
            return Err(vec![PairError {
                file: PathBuf::from("--tls-cert"),
                reason: "no certificate given".into(),
            }]);
        }
        let (seen, _) = read_all(&files);
        let (pairs, warnings) = load_pairs(&files, SystemTime::now(), Expired::Refuse)?;
        debug_assert!(warnings.is_empty());
        let certificates = Certificates {
            files,
            pairs: ArcSwap::from_pointee(pairs),
            seen: ArcSwap::from_pointee(seen),
            metrics,
        };
        certificates.publish_expiry();
        certificates.metrics.count_tls_reload("success", "startup");
        Ok(Arc::new(certificates))
    }

    /// Re-reads the pairs; swaps them in if they changed and all pass (an expired certificate
    /// is served, with a warning: refusing it would not bring back a valid one).
    pub fn reload(&self, trigger: &str) {
        let (hash, unreadable) = read_all(&self.files);
        if **self.seen.load() == hash && !unreadable {
            return;
        }
        self.seen.store(Arc::new(hash));
        match load_pairs(&self.files, SystemTime::now(), Expired::Warn) {
            Ok((pairs, warnings)) => {
                for warning in &warnings {
                    tracing::warn!(file = %warning.file.display(), trigger, "{}", warning.reason);
                }
                self.pairs.store(Arc::new(pairs));
                self.publish_expiry();
                self.metrics.count_tls_reload("success", trigger);
                tracing::info!(trigger, pairs = self.files.len(), "certificates reloaded");
            }
            Err(errors) => {
                for error in &errors {
                    tracing::error!(file = %error.file.display(), trigger, "{}", error.reason);
                }
                self.metrics.count_tls_reload("failure", trigger);
                tracing::error!(
                    errors = errors.len(),
                    "certificate reload failed; the last good certificates stay in use"
                );
            }
        }
    }

    /// The directories that hold the files, each once: what to watch.
    pub fn directories(&self) -> Vec<PathBuf> {
        let mut directories: Vec<PathBuf> = Vec::new();
        for file in self.files.iter().flat_map(|f| [&f.cert, &f.key]) {
            let directory = match file.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
                _ => PathBuf::from("."),
            };
            if !directories.contains(&directory) {
                directories.push(directory);
            }
        }
        directories
    }

    fn publish_expiry(&self) {
        let pairs = self.pairs.load();
        self.metrics.tls_certificate_expiry.reset();
        for (files, pair) in self.files.iter().zip(pairs.iter()) {
            #[allow(clippy::cast_precision_loss)]
            self.metrics
                .tls_certificate_expiry
                .with_label_values(&[&files.cert.display().to_string()])
                .set(pair.not_after as f64);
        }
    }
}

/// The hash of every file's bytes (a file that cannot be read counts as empty), and whether
/// one could not be read.
fn read_all(files: &[PairFiles]) -> ([u8; 32], bool) {
    let mut hash = Sha256::new();
    let mut unreadable = false;
    for file in files.iter().flat_map(|f| [&f.cert, &f.key]) {
        hash.update(file.as_os_str().as_encoded_bytes());
        hash.update([0]);
        match std::fs::read(file) {
            Ok(bytes) => hash.update(&bytes),
            Err(_) => unreadable = true,
        }
        hash.update([0]);
    }
    (hash.finalize().into(), unreadable)
}

/// What an expired certificate is: an error (startup) or a warning (reload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expired {
    Refuse,
    Warn,
}

/// Every pair, or every error of every pair; with the warnings.
fn load_pairs(
    files: &[PairFiles],
    now: SystemTime,
    expired: Expired,
) -> Result<(Vec<Pair>, Vec<PairError>), Vec<PairError>> {
    let mut loaded = Vec::new();
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    for pair in files {
        match load_pair(pair, now) {
            Ok((pair, expiry)) => {
                if let Some(expiry) = expiry {
                    match expired {
                        Expired::Refuse => errors.push(expiry),
                        Expired::Warn => warnings.push(expiry),
                    }
                }
                loaded.push(pair);
            }
            Err(mut more) => errors.append(&mut more),
        }
    }
    if errors.is_empty() {
        Ok((loaded, warnings))
    } else {
        Err(errors)
    }
}

/// The rustls configuration serving `certificates`.
pub fn server_config(certificates: Arc<Certificates>) -> Result<Arc<ServerConfig>, PairError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PairError {
            file: PathBuf::from("--tls-cert"),
            reason: e.to_string(),
        })?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(BySni { certificates }));
    // RFC 7301: h2 first, so that a client offering both speaks HTTP/2 (RFC 9113 3.2).
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The `result` of a failed handshake.
pub fn handshake_failure(error: &std::io::Error) -> TlsHandshake {
    if error.kind() == std::io::ErrorKind::UnexpectedEof {
        return TlsHandshake::Eof;
    }
    match error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::PeerIncompatible(_) | rustls::Error::NoApplicationProtocol) => {
            TlsHandshake::Incompatible
        }
        Some(
            rustls::Error::InvalidMessage(_)
            | rustls::Error::InappropriateHandshakeMessage { .. }
            | rustls::Error::InappropriateMessage { .. },
        ) => TlsHandshake::Malformed,
        Some(rustls::Error::AlertReceived(_)) => TlsHandshake::Alert,
        _ => TlsHandshake::Other,
    }
}

/// One pair, and the error its expiry would be (kept apart: an error at startup, a warning at
/// reload).
fn load_pair(
    files: &PairFiles,
    now: SystemTime,
) -> Result<(Pair, Option<PairError>), Vec<PairError>> {
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
    let mut expiry = None;
    if facts.not_after < now {
        expiry = Some(at(
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
    Ok((
        Pair {
            certified: Arc::new(certified),
            names: facts.names,
            not_after: facts.not_after,
        },
        expiry,
    ))
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
    certificates: Arc<Certificates>,
}

/// The pair for the SNI `name` among `pairs`.
fn choose<'p>(pairs: &'p [Pair], name: Option<&str>) -> Option<&'p Pair> {
    let chosen = name.and_then(|name| {
        let name = name.to_ascii_lowercase();
        pairs
            .iter()
            .find(|pair| pair.names.iter().any(|n| covers(n, &name)))
    });
    chosen.or_else(|| pairs.first())
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let pairs = self.certificates.pairs.load();
        choose(&pairs, hello.server_name()).map(|pair| Arc::clone(&pair.certified))
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
