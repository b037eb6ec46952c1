//! The PROXY protocol (v1, v2, over TLS) and trusted front ends
//! (`--forwarded-allow-ips`, `--secure-scheme-headers`) against
//! builtin:echo, through real sockets.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use gunicornd_test_support::*;

const REQUEST: &[u8] = b"GET /who HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

/// One worker of builtin:echo with an access log, plus `options`.
fn echo(options: &[&str]) -> (Server, std::path::PathBuf) {
    let launch = Launch::new(&[]);
    let access = launch.path("access.log");
    let mut launch = launch;
    for arg in [
        "-b",
        "127.0.0.1:0",
        "-w",
        "1",
        "--no-control-socket",
        "--access-logfile",
    ] {
        launch = launch.arg(arg);
    }
    launch = launch.arg(&access);
    for arg in options {
        launch = launch.arg(arg);
    }
    (launch.arg("builtin:echo").booted(1).start(), access)
}

/// Send `bytes` on one connection and read the whole answer.
fn exchange(addr: &str, bytes: &[u8]) -> Response {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    read_response(&mut s).unwrap()
}

fn v1(src: &str, sport: u16) -> Vec<u8> {
    format!("PROXY TCP4 {src} 198.51.100.2 {sport} 443\r\n").into_bytes()
}

fn v2(src: [u8; 4], sport: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&[198, 51, 100, 2]);
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&443u16.to_be_bytes());
    h
}

/// The access log's lines once there are `n`.
fn access_lines(access: &std::path::Path, n: usize) -> Vec<String> {
    poll("the access log lines", || {
        let text = fs::read_to_string(access).ok()?;
        let lines: Vec<String> = text.lines().map(String::from).collect();
        (lines.len() >= n).then_some(lines)
    })
}

#[test]
fn proxy_v1_and_v2_from_an_allowed_source_set_the_client_for_the_app_and_the_log() {
    let (srv, access) = echo(&["--proxy-protocol", "auto"]);
    let answer = exchange(
        srv.addr(),
        &[v1("192.0.2.1", 56324), REQUEST.to_vec()].concat(),
    );
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["peer"], "192.0.2.1:56324");
    assert_eq!(answer.json()["proxy"]["version"], 1);
    assert_eq!(answer.json()["proxy"]["source"], "192.0.2.1:56324");
    let answer = exchange(
        srv.addr(),
        &[v2([203, 0, 113, 7], 4000), REQUEST.to_vec()].concat(),
    );
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["peer"], "203.0.113.7:4000");
    assert_eq!(answer.json()["proxy"]["version"], 2);
    // Without a header: served as it is, from its own address.
    let answer = exchange(srv.addr(), REQUEST);
    assert!(answer.json().get("proxy").is_none());
    assert!(answer.json()["peer"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    let lines = access_lines(&access, 3);
    assert!(lines[0].starts_with("192.0.2.1 "), "{lines:?}");
    assert!(lines[1].starts_with("203.0.113.7 "), "{lines:?}");
    assert!(lines[2].starts_with("127.0.0.1 "), "{lines:?}");
}

#[test]
fn a_version_the_mode_does_not_read_is_no_header() {
    let (srv, _) = echo(&["--proxy-protocol", "v2"]);
    let answer = exchange(
        srv.addr(),
        &[v2([203, 0, 113, 7], 4000), REQUEST.to_vec()].concat(),
    );
    assert_eq!(answer.json()["peer"], "203.0.113.7:4000");
    // A v1 line is then the request line of a bad request.
    let answer = exchange(srv.addr(), &[v1("192.0.2.1", 1), REQUEST.to_vec()].concat());
    assert_eq!(answer.status, 400);
}

#[test]
fn a_proxy_header_from_a_source_not_allowed_is_refused_and_logged() {
    let (srv, access) = echo(&["--proxy-protocol", "--proxy-allow-from", "10.0.0.0/8"]);
    for header in [v1("192.0.2.1", 1), v2([192, 0, 2, 1], 1)] {
        let answer = exchange(srv.addr(), &[header, REQUEST.to_vec()].concat());
        assert_eq!(answer.status, 403);
        assert!(!answer.text().contains("/who"), "{}", answer.text());
    }
    srv.expect_log(
        "Refused PROXY header from ip=127.0.0.1",
        Duration::from_secs(10),
    );
    let lines = access_lines(&access, 2);
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("127.0.0.1 ") && l.contains(" 403 ")),
        "{lines:?}"
    );
    // A plain request from the same peer is still served.
    assert_eq!(exchange(srv.addr(), REQUEST).status, 200);
}

#[test]
fn a_malformed_proxy_header_is_refused() {
    let (srv, _) = echo(&["--proxy-protocol", "auto"]);
    for bad in [
        b"PROXY UNKNOWN\r\n".to_vec(),
        b"PROXY TCP4 192.0.2.1 198.51.100.2 99999 443\r\n".to_vec(),
        b"PROXY TCP6 192.0.2.1 ::1 1 2\r\n".to_vec(),
        [b"\r\n\r\n\0\r\nQUIT\n".to_vec(), vec![0x21, 0x31, 0, 0]].concat(),
    ] {
        let answer = exchange(srv.addr(), &[bad.clone(), REQUEST.to_vec()].concat());
        assert_eq!(answer.status, 400, "{bad:?}");
        assert!(answer.text().contains("Invalid PROXY"), "{}", answer.text());
    }
    srv.expect_log("Refused PROXY header", Duration::from_secs(10));
}

#[test]
fn a_proxy_header_that_never_ends_meets_the_head_deadline() {
    let (srv, _) = echo(&["--proxy-protocol", "auto", "--header-timeout", "2"]);
    let mut s = TcpStream::connect(srv.addr()).unwrap();
    s.write_all(b"PROXY TCP4 192.0.2.1").unwrap();
    // The one worker serves others meanwhile.
    assert_eq!(exchange(srv.addr(), REQUEST).status, 200);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = std::time::Instant::now();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(started.elapsed() < Duration::from_secs(8));
}

#[test]
fn x_forwarded_proto_sets_the_scheme_for_a_trusted_peer_only() {
    let with = |proto: &str| {
        format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-Proto: {proto}\r\nConnection: close\r\n\r\n"
        )
    };
    // Loopback is trusted by default.
    let (srv, _) = echo(&[]);
    assert_eq!(
        exchange(srv.addr(), with("https").as_bytes()).json()["scheme"],
        "https"
    );
    assert_eq!(
        exchange(srv.addr(), with("http").as_bytes()).json()["scheme"],
        "http"
    );
    let both = "GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Ssl: off\r\nConnection: close\r\n\r\n";
    assert_eq!(exchange(srv.addr(), both.as_bytes()).status, 400);
    // Not trusted: the field means nothing, and X-Forwarded-For never
    // changes the remote address.
    let (srv, _) = echo(&["--forwarded-allow-ips", "10.0.0.0/8"]);
    let answer = exchange(srv.addr(), with("https").as_bytes());
    assert_eq!(answer.json()["scheme"], "http");
    let xff =
        "GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 192.0.2.9\r\nConnection: close\r\n\r\n";
    let answer = exchange(srv.addr(), xff.as_bytes());
    assert!(answer.json()["peer"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    // FORWARDED_ALLOW_IPS is the default, and a header table of our own.
    let launch = Launch::new(&["-b", "127.0.0.1:0", "-w", "1", "--no-control-socket"])
        .env("FORWARDED_ALLOW_IPS", "192.0.2.0/24")
        .arg("builtin:echo")
        .booted(1);
    let srv = launch.start();
    assert_eq!(
        exchange(srv.addr(), with("https").as_bytes()).json()["scheme"],
        "http"
    );
    let (srv, _) = echo(&["--secure-scheme-headers", "X-Scheme=secure"]);
    let custom = "GET / HTTP/1.1\r\nHost: x\r\nX-Scheme: secure\r\nX-Forwarded-Proto: http\r\nConnection: close\r\n\r\n";
    assert_eq!(
        exchange(srv.addr(), custom.as_bytes()).json()["scheme"],
        "https"
    );
}
