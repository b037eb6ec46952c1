//! TLS through rustls: certificates made here (rcgen), a real TLS client
//! (rustls'), client certificates, renewal on HUP, handshakes under the
//! client deadlines, per-listener TLS.

use std::fs;
use std::io::{self, BufRead, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use gunicornd_test_support::*;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SerialNumber,
    SignatureAlgorithm,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// A test CA that signs server and client certificates.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn new() -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "gunicornd test CA");
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for `localhost` (or a client `cn`) with `serial`,
    /// and its key: PEM texts.
    fn issue(&self, cn: &str, serial: u64, alg: &'static SignatureAlgorithm) -> (String, String) {
        let key = KeyPair::generate_for(alg).unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.serial_number = Some(SerialNumber::from(serial));
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// Write `cert.pem`, `key.pem` and `ca.pem` into `dir`.
fn write_files(dir: &Path, ca: &Ca, (cert, key): &(String, String)) {
    fs::write(dir.join("cert.pem"), cert).unwrap();
    fs::write(dir.join("key.pem"), key).unwrap();
    fs::write(dir.join("ca.pem"), &ca.pem).unwrap();
}

/// A launch whose directory holds a localhost ECDSA certificate (serial 1),
/// its key and the CA that signed it.
fn certified() -> (Ca, Launch) {
    let ca = Ca::new();
    let launch = certified_by(&ca);
    (ca, launch)
}

fn certified_by(ca: &Ca) -> Launch {
    let launch = Launch::new(&[]);
    write_files(
        &launch.path(""),
        ca,
        &ca.issue("localhost", 1, &rcgen::PKCS_ECDSA_P256_SHA256),
    );
    launch
}

fn client_config(ca: &Ca, client: Option<&(String, String)>) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// What one HTTPS request got.
struct Answer {
    response: Response,
    /// The serial number of the certificate the server presented.
    serial: Vec<u8>,
}

/// `GET /tls` over TLS on `sock` (fresh, or after bytes of its own).
fn https_on(sock: TcpStream, config: Arc<rustls::ClientConfig>) -> io::Result<Answer> {
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    sock.set_write_timeout(Some(Duration::from_secs(10)))?;
    https_over(sock, config)
}

/// `GET /tls` over TLS on any stream (timeouts set by the caller).
fn https_over(sock: impl Read + Write, config: Arc<rustls::ClientConfig>) -> io::Result<Answer> {
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(config, name).map_err(io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(b"GET /tls HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut out = Vec::new();
    match tls.read_to_end(&mut out) {
        Ok(_) => {}
        // A peer that closes without close_notify, after the response.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !out.is_empty() => {}
        Err(e) => return Err(e),
    }
    let serial = {
        let cert = &tls.conn.peer_certificates().expect("server certificate")[0];
        let (_, parsed) = x509_parser::parse_x509_certificate(cert).unwrap();
        parsed.raw_serial().to_vec()
    };
    let response = read_response(&mut &out[..])?;
    Ok(Answer { response, serial })
}

fn https_get(addr: &str, config: Arc<rustls::ClientConfig>) -> io::Result<Answer> {
    https_on(TcpStream::connect(addr)?, config)
}

/// One worker of builtin:echo with TLS from the files in the launch's
/// directory, plus `options` (no control socket unless they name one).
fn tls_server(launch: Launch, options: &[&str]) -> Server {
    let dir = launch.path("");
    let mut launch = launch;
    for arg in ["-b", "127.0.0.1:0", "-w", "1"] {
        launch = launch.arg(arg);
    }
    if !options.contains(&"--control-socket") {
        launch = launch.arg("--no-control-socket");
    }
    launch = launch
        .arg("--certfile")
        .arg(dir.join("cert.pem"))
        .arg("--keyfile")
        .arg(dir.join("key.pem"));
    for arg in options {
        launch = launch.arg(arg);
    }
    launch.arg("builtin:echo").booted(1).start()
}

#[test]
fn https_is_served_to_a_real_client_with_ecdsa_and_ed25519_keys() {
    let ca = Ca::new();
    for alg in [&rcgen::PKCS_ECDSA_P256_SHA256, &rcgen::PKCS_ED25519] {
        let launch = Launch::new(&[]);
        write_files(&launch.path(""), &ca, &ca.issue("localhost", 1, alg));
        let srv = tls_server(launch, &[]);
        assert!(
            srv.log_contains("Listening at: https://127.0.0.1:"),
            "{}",
            srv.log()
        );
        let answer = https_get(srv.addr(), client_config(&ca, None)).unwrap();
        assert_eq!(answer.response.status, 200);
        let doc = answer.response.json();
        assert_eq!(doc["scheme"], "https");
        assert_eq!(doc["tls"]["version"], "TLSv1.3");
        assert!(
            doc["tls"]["cipher"].as_str().unwrap().starts_with("TLS13_"),
            "{doc}"
        );
        assert_eq!(doc["tls"]["alpn"], "http/1.1");
        assert!(doc["tls"]["client_subject"].is_null());
        assert_eq!(answer.serial, [1]);
    }
}

#[test]
fn an_rsa_key_from_openssl_is_served() {
    // ring makes no RSA keys: openssl does, when it is there.
    let launch = Launch::new(&[]);
    let dir = launch.path("");
    let made = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output();
    let pem = match made {
        Ok(out) if out.status.success() => String::from_utf8(out.stdout).unwrap(),
        _ => {
            eprintln!("skipped: no openssl to make an RSA key with");
            return;
        }
    };
    let key = KeyPair::from_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256).unwrap();
    let ca = Ca::new();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.serial_number = Some(SerialNumber::from(4u64));
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    write_files(&dir, &ca, &(cert.pem(), pem));
    let srv = tls_server(launch, &[]);
    let answer = https_get(srv.addr(), client_config(&ca, None)).unwrap();
    assert_eq!(answer.response.status, 200);
    assert_eq!(answer.serial, [4]);
}

#[test]
fn cert_reqs_2_refuses_a_client_without_a_certificate_and_takes_one_the_ca_signed() {
    let (ca, launch) = certified();
    let dir = launch.path("");
    let ca_file = dir.join("ca.pem");
    let srv = tls_server(
        launch,
        &[
            "--ca-certs",
            ca_file.to_str().unwrap(),
            "--cert-reqs",
            "2",
            "--log-level",
            "debug",
        ],
    );
    assert!(https_get(srv.addr(), client_config(&ca, None)).is_err());
    srv.expect_log("TLS handshake failed", Duration::from_secs(10));
    // A certificate from another CA is refused too.
    let stranger = Ca::new().issue("mallory", 9, &rcgen::PKCS_ECDSA_P256_SHA256);
    assert!(https_get(srv.addr(), client_config(&ca, Some(&stranger))).is_err());
    let client = ca.issue("client one", 5, &rcgen::PKCS_ECDSA_P256_SHA256);
    let answer = https_get(srv.addr(), client_config(&ca, Some(&client))).unwrap();
    assert_eq!(answer.response.status, 200);
    let doc = answer.response.json();
    assert_eq!(doc["tls"]["client_subject"], "CN=client one");
}

#[test]
fn hup_serves_a_renewed_certificate_and_keeps_the_old_one_when_the_new_one_is_broken() {
    let (ca, launch) = certified();
    let dir = launch.path("");
    let srv = tls_server(launch, &[]);
    let config = client_config(&ca, None);
    assert_eq!(https_get(srv.addr(), config.clone()).unwrap().serial, [1]);

    write_files(
        &dir,
        &ca,
        &ca.issue("localhost", 2, &rcgen::PKCS_ECDSA_P256_SHA256),
    );
    srv.signal(libc::SIGHUP);
    srv.poll("the renewed certificate served", |srv| {
        let answer = https_get(srv.addr(), config.clone()).ok()?;
        (answer.serial == [2]).then_some(())
    });

    // A renewal cut short: the reload fails, the old certificate serves on.
    let (cert, key) = ca.issue("localhost", 3, &rcgen::PKCS_ECDSA_P256_SHA256);
    fs::write(dir.join("cert.pem"), &cert[..cert.len() / 2]).unwrap();
    fs::write(dir.join("key.pem"), key).unwrap();
    srv.signal(libc::SIGHUP);
    srv.expect_log("cert.pem", Duration::from_secs(10));
    for _ in 0..5 {
        assert_eq!(https_get(srv.addr(), config.clone()).unwrap().serial, [2]);
    }
    assert_eq!(srv.worker_pids().len(), 1);
}

#[test]
fn unusable_files_are_refused_at_startup_naming_the_file() {
    let ca = Ca::new();
    let launch = Launch::new(&[]);
    let dir = launch.path("");
    let (cert, _) = ca.issue("localhost", 1, &rcgen::PKCS_ECDSA_P256_SHA256);
    let (_, other_key) = ca.issue("localhost", 2, &rcgen::PKCS_ECDSA_P256_SHA256);
    fs::write(dir.join("cert.pem"), cert).unwrap();
    fs::write(dir.join("key.pem"), other_key).unwrap();
    fs::write(dir.join("empty.pem"), "").unwrap();
    let check = |args: &[&str]| {
        let out = std::process::Command::new(gunicornd_bin())
            .current_dir(&dir)
            .args(args)
            .args(["--check-config", "builtin:echo"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} was accepted");
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    let e = check(&["--certfile", "missing.pem", "--keyfile", "key.pem"]);
    assert!(e.contains("certfile") && e.contains("missing.pem"), "{e}");
    let e = check(&["--certfile", "cert.pem", "--keyfile", "empty.pem"]);
    assert!(e.contains("keyfile") && e.contains("empty.pem"), "{e}");
    let e = check(&["--certfile", "cert.pem", "--keyfile", "key.pem"]);
    assert!(e.contains("cert.pem") && e.contains("key.pem"), "{e}");
    let e = check(&[
        "--certfile",
        "cert.pem",
        "--keyfile",
        "key.pem",
        "--ciphers",
        "HIGH:!aNULL",
    ]);
    assert!(e.contains("unknown cipher 'HIGH'"), "{e}");
    let e = check(&["--certfile", "empty.pem", "--keyfile", "key.pem"]);
    assert!(
        e.contains("empty.pem") && e.contains("no PEM certificate"),
        "{e}"
    );
}

#[test]
fn a_stalled_handshake_holds_no_worker_and_ends_at_the_head_deadline() {
    let (ca, launch) = certified();
    let srv = tls_server(launch, &["--header-timeout", "2"]);
    // Half a ClientHello, then nothing.
    let mut stalled = TcpStream::connect(srv.addr()).unwrap();
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap();
    let silent = TcpStream::connect(srv.addr()).unwrap();
    // The one worker serves others meanwhile.
    for _ in 0..3 {
        let answer = https_get(srv.addr(), client_config(&ca, None)).unwrap();
        assert_eq!(answer.response.status, 200);
    }
    for mut s in [stalled, silent] {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let started = std::time::Instant::now();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "closed only after {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn tls_bind_makes_one_listener_https_and_leaves_the_unix_socket_plain() {
    let (ca, launch) = certified();
    let dir = launch.path("");
    let sock = dir.join("plain.sock");
    let sock_bind = format!("unix:{}", sock.display());
    let ctl_sock = dir.join("ctl.sock");
    let ctl_sock = ctl_sock.to_str().unwrap();
    let srv = tls_server(
        launch,
        &[
            "-b",
            &sock_bind,
            "--tls-bind",
            "127.0.0.1:0",
            "--control-socket",
            ctl_sock,
        ],
    );
    // gunicornctl says which listener speaks TLS.
    let listed = ctl_ok(&["-s", ctl_sock, "listeners"]);
    let scheme_of = |address: &str| {
        listed
            .lines()
            .find(|l| l.starts_with(address))
            .and_then(|l| l.split_whitespace().nth(3))
            .map(str::to_owned)
    };
    assert_eq!(scheme_of(srv.addr()).as_deref(), Some("https"), "{listed}");
    assert_eq!(scheme_of(&sock_bind).as_deref(), Some("http"), "{listed}");
    let log = srv.log();
    assert!(
        log.contains("https://127.0.0.1:") && log.contains(&sock_bind),
        "{log}"
    );
    let answer = https_get(srv.addr(), client_config(&ca, None)).unwrap();
    assert_eq!(answer.response.json()["scheme"], "https");
    let plain = unix_request(
        &sock,
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(plain.status, 200);
    assert_eq!(plain.json()["scheme"], "http");
    assert!(plain.json().get("tls").is_none());
}

#[test]
fn a_proxy_header_comes_before_the_handshake_on_a_tls_listener() {
    let (ca, launch) = certified();
    let srv = tls_server(launch, &["--proxy-protocol", "v1"]);
    let mut sock = TcpStream::connect(srv.addr()).unwrap();
    sock.write_all(b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n")
        .unwrap();
    let answer = https_on(sock, client_config(&ca, None)).unwrap();
    let doc = answer.response.json();
    assert_eq!(doc["peer"], "192.0.2.1:56324");
    assert_eq!(doc["scheme"], "https");
    // Without a header, the handshake starts at the first byte.
    let answer = https_get(srv.addr(), client_config(&ca, None)).unwrap();
    assert!(answer.response.json()["peer"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    // A refused one closes the connection without a word in plain text.
    let srv = {
        let launch = certified_by(&ca);
        tls_server(
            launch,
            &["--proxy-protocol", "v1", "--proxy-allow-from", "10.0.0.1"],
        )
    };
    let mut sock = TcpStream::connect(srv.addr()).unwrap();
    sock.write_all(b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n")
        .unwrap();
    assert!(https_on(sock, client_config(&ca, None)).is_err());
    srv.expect_log("Refused PROXY header", Duration::from_secs(10));
}

/// A client that offers TLS 1.2 only.
fn tls12_client(ca: &Ca) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

#[test]
fn ciphers_and_the_minimum_version_are_what_is_negotiated() {
    let (ca, launch) = certified();
    let srv = tls_server(launch, &["--ciphers", "ECDHE-ECDSA-AES256-GCM-SHA384"]);
    let doc = https_get(srv.addr(), tls12_client(&ca))
        .unwrap()
        .response
        .json();
    assert_eq!(doc["tls"]["version"], "TLSv1.2");
    assert_eq!(
        doc["tls"]["cipher"],
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"
    );
    // TLS 1.3 suites stay when the list names none.
    let doc = https_get(srv.addr(), client_config(&ca, None))
        .unwrap()
        .response
        .json();
    assert_eq!(doc["tls"]["version"], "TLSv1.3");

    let launch = Launch::new(&[]);
    write_files(
        &launch.path(""),
        &ca,
        &ca.issue("localhost", 1, &rcgen::PKCS_ECDSA_P256_SHA256),
    );
    let srv = tls_server(launch, &["--tls-min-version", "1.3"]);
    assert!(https_get(srv.addr(), tls12_client(&ca)).is_err());
    assert!(https_get(srv.addr(), client_config(&ca, None)).is_ok());
}

#[test]
fn the_config_file_takes_the_tls_and_front_end_keys() {
    let ca = Ca::new();
    let launch = Launch::from_config(
        "bind = \"127.0.0.1:0\"\n\
         workers = 1\n\
         app = \"builtin:echo\"\n\
         certfile = \"cert.pem\"\n\
         keyfile = \"key.pem\"\n\
         tls_bind = [\"127.0.0.1:0\"]\n\
         tls_min_version = \"1.3\"\n\
         do_handshake_on_connect = true\n\
         ssl_version = \"TLSv1_2\"\n\
         proxy_protocol = true\n\
         proxy_allow_ips = [\"127.0.0.0/8\", \"::1\"]\n\
         forwarded_allow_ips = \"*\"\n\
         [secure_scheme_headers]\n\
         X-Scheme = \"secure\"\n",
    );
    let dir = launch.path("");
    write_files(
        &dir,
        &ca,
        &ca.issue("localhost", 1, &rcgen::PKCS_ECDSA_P256_SHA256),
    );
    let printed = std::process::Command::new(gunicornd_bin())
        .current_dir(&dir)
        .arg("--print-config")
        .output()
        .unwrap();
    let printed = String::from_utf8(printed.stdout).unwrap();
    for line in [
        "tls_bind = [\"127.0.0.1:0\"]",
        "proxy_protocol = \"auto\"",
        "proxy_allow_ips = [\"127.0.0.0/8\", \"::1\"]",
        "forwarded_allow_ips = [\"*\"]",
        "secure_scheme_headers = \"X-SCHEME=secure\"",
        "tls_min_version = \"1.3\"",
    ] {
        assert!(printed.contains(line), "{line} not in:\n{printed}");
    }
    let srv = launch.arg("--no-control-socket").booted(1).start();
    assert!(
        srv.log_contains("ssl_version is deprecated and ignored"),
        "{}",
        srv.log()
    );
    let mut sock = TcpStream::connect(srv.addr()).unwrap();
    sock.write_all(b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n")
        .unwrap();
    let doc = https_on(sock, client_config(&ca, None))
        .unwrap()
        .response
        .json();
    assert_eq!(doc["peer"], "192.0.2.1:56324");
    assert_eq!(doc["tls"]["version"], "TLSv1.3");
}

#[test]
fn a_bind_of_the_tls_binds_table_serves_its_own_certificate() {
    let ca = Ca::new();
    let launch = Launch::from_config(
        "bind = [\"127.0.0.1:0\", \"unix:tls.sock\", \"unix:plain.sock\"]\n\
         workers = 1\n\
         app = \"builtin:echo\"\n\
         certfile = \"cert.pem\"\n\
         keyfile = \"key.pem\"\n\
         tls_bind = [\"127.0.0.1:0\"]\n\
         [tls_binds.\"unix:tls.sock\"]\n\
         certfile = \"other.pem\"\n",
    );
    let dir = launch.path("");
    write_files(
        &dir,
        &ca,
        &ca.issue("localhost", 1, &rcgen::PKCS_ECDSA_P256_SHA256),
    );
    // The key may be in the certificate file.
    let (cert, key) = ca.issue("localhost", 2, &rcgen::PKCS_ECDSA_P256_SHA256);
    fs::write(dir.join("other.pem"), cert + &key).unwrap();
    let srv = launch
        .arg("--no-control-socket")
        .expect_tcp(true)
        .booted(1)
        .start();
    let log = srv.log();
    assert!(
        log.contains("https://127.0.0.1:") && log.contains("unix:"),
        "{log}"
    );
    assert_eq!(
        https_get(srv.addr(), client_config(&ca, None))
            .unwrap()
            .serial,
        [1]
    );
    let unix = std::os::unix::net::UnixStream::connect(dir.join("tls.sock")).unwrap();
    unix.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let answer = https_over(unix, client_config(&ca, None)).unwrap();
    assert_eq!(answer.serial, [2]);
    assert_eq!(answer.response.json()["scheme"], "https");
    let plain = unix_request(
        &dir.join("plain.sock"),
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(plain.json()["scheme"], "http");
    let printed = std::process::Command::new(gunicornd_bin())
        .current_dir(&dir)
        .arg("--print-config")
        .output()
        .unwrap();
    let printed = String::from_utf8(printed.stdout).unwrap();
    assert!(
        printed.contains("[tls_binds.\"unix:tls.sock\"]"),
        "{printed}"
    );
    // A table for an address that is not bound is an error.
    let out = std::process::Command::new(gunicornd_bin())
        .current_dir(&dir)
        .args(["-b", "127.0.0.1:0", "--check-config"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not one of the binds"));
}

#[test]
fn a_large_file_goes_out_whole_through_tls() {
    let (ca, launch) = certified();
    let dir = launch.path("");
    fs::create_dir(dir.join("www")).unwrap();
    // More than the socket buffers hold: the server meets a full socket.
    let content: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    fs::write(dir.join("www/big.bin"), &content).unwrap();
    let mut launch = launch;
    for arg in [
        "-b",
        "127.0.0.1:0",
        "-w",
        "1",
        "--no-control-socket",
        "--certfile",
    ] {
        launch = launch.arg(arg);
    }
    let srv = launch
        .arg(dir.join("cert.pem"))
        .arg("--keyfile")
        .arg(dir.join("key.pem"))
        .arg(format!("static:{}", dir.join("www").display()))
        .booted(1)
        .start();
    let sock = TcpStream::connect(srv.addr()).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(client_config(&ca, None), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = Vec::new();
    match tls.read_to_end(&mut out) {
        Ok(_) => {}
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}"),
    }
    let response = read_response(&mut &out[..]).unwrap();
    assert_eq!(response.status, 200);
    assert!(
        response.body == content,
        "{} bytes of {}",
        response.body.len(),
        content.len()
    );
}

#[test]
fn a_request_body_larger_than_the_buffered_one_is_read_through_tls() {
    let (ca, launch) = certified();
    let srv = tls_server(launch, &[]);
    let sock = TcpStream::connect(srv.addr()).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(client_config(&ca, None), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    // Over --body-buffer (64 KiB): the app reads it from the connection.
    let body = "x".repeat(900 * 1024);
    let head = format!(
        "POST /up HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).unwrap();
    tls.write_all(body.as_bytes()).unwrap();
    let mut out = Vec::new();
    if let Err(e) = tls.read_to_end(&mut out) {
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
    }
    let response = read_response(&mut &out[..]).unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["body_length"], body.len());
}

/// One response off a kept TLS connection, framed by its Content-Length:
/// its `Connection` header and its body.
fn kept_answer(tls: &mut impl BufRead) -> (Option<String>, Vec<u8>) {
    let mut connection = None;
    let mut length = 0;
    let mut line = String::new();
    tls.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line:?}");
    loop {
        line.clear();
        tls.read_line(&mut line).unwrap();
        let field = line.trim_end();
        if field.is_empty() {
            break;
        }
        let (name, value) = field.split_once(':').unwrap();
        match name.to_ascii_lowercase().as_str() {
            "connection" => connection = Some(value.trim().to_owned()),
            "content-length" => length = value.trim().parse().unwrap(),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    tls.read_exact(&mut body).unwrap();
    (connection, body)
}

#[test]
fn the_gthread_worker_keeps_https_connections_alive_behind_a_proxy_header() {
    let (ca, launch) = certified();
    let srv = tls_server(
        launch,
        &["-k", "gthread", "--threads", "2", "--proxy-protocol", "v1"],
    );
    let mut sock = TcpStream::connect(srv.addr()).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    sock.write_all(b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n")
        .unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(client_config(&ca, None), name).unwrap();
    let mut tls = io::BufReader::new(rustls::StreamOwned::new(conn, sock));
    let request: &[u8] = b"GET /tls HTTP/1.1\r\nHost: localhost\r\n\r\n";
    for round in 0..20 {
        // One request at a time, then two pipelined in one TLS record.
        let pipelined = round % 5 == 4;
        let sent = if pipelined {
            [request, request].concat()
        } else {
            request.to_vec()
        };
        tls.get_mut().write_all(&sent).unwrap();
        for _ in 0..1 + usize::from(pipelined) {
            let (connection, body) = kept_answer(&mut tls);
            assert_eq!(connection.as_deref(), Some("keep-alive"), "round {round}");
            let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(
                doc["peer"], "192.0.2.1:56324",
                "the proxied peer, on every request"
            );
            assert_eq!(doc["scheme"], "https");
            assert!(doc["tls"]["version"].is_string(), "{doc}");
        }
    }
}
