//! Reading the certificate, key and CA files and building the rustls
//! server configuration from the TLS settings.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedCipherSuite};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::{CertReqs, MinVersion, TlsFiles};

/// The rustls name and OpenSSL's name of every suite the ring provider has
/// (OpenSSL names the TLS 1.3 suites as IANA does).
const SUITE_NAMES: [(&str, &str); 9] = [
    ("TLS13_AES_256_GCM_SHA384", "TLS_AES_256_GCM_SHA384"),
    ("TLS13_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256"),
    (
        "TLS13_CHACHA20_POLY1305_SHA256",
        "TLS_CHACHA20_POLY1305_SHA256",
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        "ECDHE-RSA-CHACHA20-POLY1305",
    ),
];

/// What `--ciphers` chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CipherChoice {
    /// The rustls names, in the order given.
    pub names: Vec<&'static str>,
}

/// Parse a `--ciphers` list (`:` or `,` separated; OpenSSL's or rustls'
/// names) into the rustls suites it names. OpenSSL's keywords and
/// exclusions (`HIGH`, `!aNULL`) have no rustls meaning and are refused by
/// name, as is any suite rustls does not implement (CBC, RSA key exchange).
/// As with OpenSSL's cipher list, a list that names no TLS 1.3 suite keeps
/// all of them.
pub fn cipher_suites(list: &str) -> Result<CipherChoice, String> {
    let mut names = Vec::new();
    for word in list
        .split([':', ','])
        .map(str::trim)
        .filter(|w| !w.is_empty())
    {
        let found = SUITE_NAMES.iter().find(|(rustls, openssl)| {
            word.eq_ignore_ascii_case(rustls) || word.eq_ignore_ascii_case(openssl)
        });
        match found {
            Some((name, _)) => {
                if !names.contains(name) {
                    names.push(*name)
                }
            }
            None => {
                return Err(format!(
                    "unknown cipher '{word}': rustls implements {}",
                    SUITE_NAMES
                        .iter()
                        .map(|(_, openssl)| *openssl)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            }
        }
    }
    if names.is_empty() {
        return Err("expected at least one cipher".to_owned());
    }
    if !names.iter().any(|n| n.starts_with("TLS13_")) {
        names.extend(
            SUITE_NAMES
                .iter()
                .map(|(n, _)| *n)
                .filter(|n| n.starts_with("TLS13_")),
        );
    }
    Ok(CipherChoice { names })
}

fn suite_name(suite: &SupportedCipherSuite) -> String {
    format!("{:?}", suite.suite())
}

/// The crypto provider with the suites `ciphers` allows.
fn provider(ciphers: Option<&str>) -> Result<CryptoProvider, String> {
    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(list) = ciphers {
        let choice = cipher_suites(list).map_err(|e| format!("--ciphers: {e}"))?;
        let all = std::mem::take(&mut provider.cipher_suites);
        provider.cipher_suites = choice
            .names
            .iter()
            .filter_map(|name| all.iter().find(|s| suite_name(s) == *name).copied())
            .collect();
    }
    Ok(provider)
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))
}

fn certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what} {}: not PEM certificates: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{what} {}: no PEM certificate (BEGIN CERTIFICATE) in it",
            path.display()
        ));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let pem = read(path, "keyfile")?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        format!(
            "keyfile {}: no usable PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC): {e}",
            path.display()
        )
    })
}

/// The server configuration `files` describe, and the chain it serves.
pub(super) fn server_config(
    files: &TlsFiles,
) -> Result<(ServerConfig, Vec<CertificateDer<'static>>), String> {
    let provider = Arc::new(provider(files.ciphers.as_deref())?);
    let chain = certificates(&files.certfile, "certfile")?;
    let key = private_key(&files.keyfile)?;
    let versions: &[&rustls::SupportedProtocolVersion] = match files.min_version {
        MinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        MinVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions)
        .map_err(|e| {
            format!(
                "--ciphers with --tls-min-version {}: {e}",
                files.min_version.name()
            )
        })?;
    let verifier = match (files.cert_reqs, &files.ca_certs) {
        (CertReqs::None, _) => WebPkiClientVerifier::no_client_auth(),
        (_, None) => return Err(
            "--cert-reqs 1 or 2 needs --ca-certs (the CAs client certificates are checked against)"
                .to_owned(),
        ),
        (reqs, Some(ca)) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(ca, "ca-certs")? {
                roots
                    .add(cert)
                    .map_err(|e| format!("ca-certs {}: {e}", ca.display()))?;
            }
            let builder =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider));
            let builder = if reqs == CertReqs::Optional {
                builder.allow_unauthenticated()
            } else {
                builder
            };
            builder
                .build()
                .map_err(|e| format!("ca-certs {}: {e}", ca.display()))?
        }
    };
    let mut config = builder
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain.clone(), key)
        .map_err(|e| {
            format!(
                "certfile {} with keyfile {}: {e}",
                files.certfile.display(),
                files.keyfile.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // No session resumption, yet: each worker would resume only the
    // sessions it made itself (rustls' cache lives in the process), and
    // tickets good in every worker need keys the master makes and rotates.
    // Every connection is a full handshake (what bench/http.sh measures).
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok((config, chain))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ciphers_are_taken_by_either_name_and_unknown_ones_refused() {
        let c =
            cipher_suites("ECDHE-RSA-AES128-GCM-SHA256:TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256")
                .unwrap();
        assert_eq!(c.names[0], "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256");
        assert_eq!(c.names[1], "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256");
        // No TLS 1.3 suite named: all of them stay, as with OpenSSL.
        assert_eq!(c.names.len(), 5);
        let c = cipher_suites("TLS_AES_128_GCM_SHA256").unwrap();
        assert_eq!(c.names, ["TLS13_AES_128_GCM_SHA256"]);
        let e = cipher_suites("HIGH:!aNULL").unwrap_err();
        assert!(e.contains("unknown cipher 'HIGH'"), "{e}");
        assert!(cipher_suites("AES128-SHA").is_err());
        assert!(cipher_suites(" : ").is_err());
    }

    #[test]
    fn every_suite_name_is_one_ring_has() {
        let provider = rustls::crypto::ring::default_provider();
        let have: Vec<String> = provider.cipher_suites.iter().map(suite_name).collect();
        for (name, _) in SUITE_NAMES {
            assert!(have.iter().any(|h| h == name), "{name} not in {have:?}");
        }
    }
}
