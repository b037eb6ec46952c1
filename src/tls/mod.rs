//! TLS termination with rustls (gunicorn's `--certfile`, `--keyfile`,
//! `--ca-certs`, `--cert-reqs`, `--ciphers`).
//!
//! Two halves, apart on purpose:
//! - [`Acceptor::load`] runs when the configuration is loaded (startup,
//!   every reload): it reads and checks the files and builds the rustls
//!   server configuration once, in the master. A file that cannot be used
//!   is a configuration error naming the file, so a broken renewal fails
//!   the reload (logged) and the workers already running keep the
//!   certificate they have; forked workers inherit the built configuration.
//! - [`Session`] is one connection's TLS state in a worker, driven over the
//!   non-blocking client socket: the worker's loop reads through it, so
//!   the handshake is just the first bytes of a request head and meets the
//!   same deadline (`--header-timeout`) without holding the worker.
//!
//! What a worker calls: [`Acceptor::session`] for an accepted connection on
//! a listener that [`ListenerTls::is_tls`] says is TLS, then
//! [`Session::read_now`] / [`Session::write_now`] / [`Session::flush_now`]
//! instead of `read(2)`/`write(2)` on the socket (`worker/stream.rs` does
//! this), and [`Session::info`] for what the app sees.

mod files;
mod session;

use std::path::PathBuf;
use std::sync::Arc;

pub use files::cipher_suites;
pub use session::Session;

use crate::config::BindAddr;
use crate::listeners::ListenAddr;

/// `--cert-reqs`: whether clients must present a certificate (Python's
/// `ssl.CERT_NONE`, `CERT_OPTIONAL`, `CERT_REQUIRED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(into = "u8")]
pub enum CertReqs {
    #[default]
    None = 0,
    Optional = 1,
    Required = 2,
}

impl From<CertReqs> for u8 {
    /// gunicorn's number for it (what the settings say).
    fn from(reqs: CertReqs) -> u8 {
        reqs as u8
    }
}

impl CertReqs {
    pub fn from_number(n: u8) -> Option<CertReqs> {
        match n {
            0 => Some(CertReqs::None),
            1 => Some(CertReqs::Optional),
            2 => Some(CertReqs::Required),
            _ => None,
        }
    }
}

/// `--tls-min-version`: the oldest protocol version offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub enum MinVersion {
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

impl MinVersion {
    pub fn name(self) -> &'static str {
        match self {
            MinVersion::Tls12 => "1.2",
            MinVersion::Tls13 => "1.3",
        }
    }
}

/// What the TLS settings name, before the files are read.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsFiles {
    pub certfile: PathBuf,
    pub keyfile: PathBuf,
    pub ca_certs: Option<PathBuf>,
    pub cert_reqs: CertReqs,
    pub ciphers: Option<String>,
    pub min_version: MinVersion,
}

/// The built server configuration, shared by every connection.
#[derive(Clone)]
pub struct Acceptor {
    config: Arc<rustls::ServerConfig>,
    /// The certificate chain served, to compare two loads and to log.
    chain: Vec<rustls_pki_types::CertificateDer<'static>>,
}

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acceptor")
            .field("certificates", &self.chain.len())
            .finish()
    }
}

impl PartialEq for Acceptor {
    /// Two loads are the same when they serve the same certificates.
    fn eq(&self, other: &Acceptor) -> bool {
        self.chain == other.chain
    }
}

impl Acceptor {
    /// Read the files and build the server configuration; the error names
    /// the file and what is wrong with it.
    pub fn load(files: &TlsFiles) -> Result<Acceptor, String> {
        let (config, chain) = files::server_config(files)?;
        Ok(Acceptor {
            config: Arc::new(config),
            chain,
        })
    }

    /// A new server session for one accepted connection.
    pub fn session(&self) -> std::io::Result<Session> {
        Session::new(Arc::clone(&self.config))
    }
}

/// Which listeners speak TLS, with which certificate: a bind of the
/// `tls_binds` table with its own; else, when `certfile` is set, every
/// listener (gunicorn's way) or those `tls_bind` names, with that one.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ListenerTls {
    /// From `certfile`/`keyfile`.
    pub acceptor: Option<Acceptor>,
    /// The binds that get `acceptor`; empty: all of them.
    pub only: Vec<BindAddr>,
    /// Binds with a certificate of their own (`tls_binds`).
    pub per_bind: Vec<(BindAddr, Acceptor)>,
}

impl ListenerTls {
    /// Whether connections to `addr` are TLS.
    pub fn is_tls(&self, addr: &ListenAddr) -> bool {
        self.for_listener(addr).is_some()
    }

    /// The acceptor for connections to `addr`, if they are TLS.
    pub fn for_listener(&self, addr: &ListenAddr) -> Option<&Acceptor> {
        if let Some((_, acceptor)) = self.per_bind.iter().find(|(b, _)| names(b, addr)) {
            return Some(acceptor);
        }
        self.acceptor
            .as_ref()
            .filter(|_| self.only.is_empty() || self.only.iter().any(|b| names(b, addr)))
    }

    /// Whether any listener may speak TLS.
    pub fn any(&self) -> bool {
        self.acceptor.is_some() || !self.per_bind.is_empty()
    }
}

/// One entry of the `tls_binds` table: a bind with its own certificate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TlsBind {
    /// As given (a `bind` value).
    pub bind: String,
    pub certfile: PathBuf,
    /// `None`: the key is in `certfile`.
    pub keyfile: Option<PathBuf>,
}

/// Whether the bind `bind` is the listener at `addr`: the same socket path,
/// or the same port (port 0: any) and an IP literal equal to the
/// listener's address (a host name matches any address on its port). No
/// name is resolved: this runs in the workers.
fn names(bind: &BindAddr, addr: &ListenAddr) -> bool {
    match (bind, addr) {
        (BindAddr::Unix(path), ListenAddr::Unix(p)) => path == p,
        (BindAddr::Tcp { host, port }, ListenAddr::Tcp(sock)) => {
            (*port == 0 || *port == sock.port())
                && host
                    .parse::<std::net::IpAddr>()
                    .map_or(true, |ip| ip == sock.ip())
        }
        _ => false,
    }
}

/// What an app may know about a connection's TLS.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TlsInfo {
    /// `TLSv1.2` or `TLSv1.3`.
    pub version: String,
    /// The IANA name of the cipher suite (`TLS13_AES_128_GCM_SHA256`).
    pub cipher: String,
    /// The client certificate's subject (`CN=client,O=Example`), if one
    /// was presented.
    pub client_subject: Option<String>,
    /// The ALPN protocol agreed on, if any.
    pub alpn: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bind_names_its_listener() {
        let tcp = |s: &str| ListenAddr::Tcp(s.parse().unwrap());
        let bind = |s: &str| crate::config::parse_address(s, 8000).unwrap();
        assert!(names(&bind("0.0.0.0:8443"), &tcp("0.0.0.0:8443")));
        assert!(!names(&bind("0.0.0.0:8443"), &tcp("0.0.0.0:8000")));
        assert!(names(&bind("127.0.0.1:0"), &tcp("127.0.0.1:41000")));
        assert!(!names(&bind("127.0.0.1:8443"), &tcp("0.0.0.0:8443")));
        assert!(names(&bind("localhost:8443"), &tcp("127.0.0.1:8443")));
        assert!(names(
            &bind("unix:/run/a.sock"),
            &ListenAddr::Unix("/run/a.sock".into())
        ));
        assert!(!names(&bind("unix:/run/a.sock"), &tcp("127.0.0.1:8443")));
    }
}
