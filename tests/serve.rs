//! Serving HTTP: workers answer, the echo app round-trips requests, every
//! kind of listener works.

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::time::Duration;

use gunicornd_test_support::*;

/// Distinct worker pids seen in an access log written with `%(p)s`.
fn pids_in_access_log(path: &std::path::Path) -> BTreeSet<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim().to_string())
        .collect()
}

#[test]
fn all_workers_start_and_answer() {
    let srv = Launch::new(&[
        "-b",
        "127.0.0.1:0",
        "-w",
        "3",
        "--access-logfile",
        "access.log",
        "--access-logformat",
        "%(p)s",
        "builtin:debug",
    ])
    .booted(3)
    .start();
    assert_eq!(srv.worker_pids().len(), 3);
    // Three concurrent slow requests need three workers: each serves one.
    let addr = srv.addr().to_string();
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                http_request(&addr, "GET /?sleep=0.5 HTTP/1.1\r\nHost: t\r\n\r\n")
            })
        })
        .collect();
    for c in clients {
        assert_eq!(c.join().unwrap().status, 200);
    }
    let access = srv.path("access.log");
    expect_within(
        Duration::from_secs(5),
        "three workers in the access log",
        || pids_in_access_log(&access).len() == 3,
    );
    let logged: BTreeSet<i32> = pids_in_access_log(&access)
        .iter()
        .map(|p| p.trim_matches(|c| c == '<' || c == '>').parse().unwrap())
        .collect();
    assert_eq!(logged, srv.worker_pids(), "every worker answered");
}

#[test]
fn echo_round_trips_method_headers_and_chunked_body() {
    let srv = Server::start_with_workers(1, &["builtin:echo"]);
    let raw = "POST /submit?a=1&b=two HTTP/1.1\r\nHost: example\r\nX-First: 1\r\nx-second: Two\r\n\
               Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n";
    let resp = http_request(srv.addr(), raw);
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("Server"), Some("gunicornd"));
    assert!(resp.header("Date").is_some());
    let doc = resp.json();
    assert_eq!(doc["method"], "POST");
    assert_eq!(doc["path"], "/submit");
    assert_eq!(doc["query"], "a=1&b=two");
    assert_eq!(doc["version"], "HTTP/1.1");
    assert_eq!(doc["body"], "hello, world");
    let headers: Vec<(String, String)> = doc["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_string(),
                p[1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["Host", "X-First", "x-second", "Transfer-Encoding"],
        "order and case as received"
    );
    assert!(doc["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(doc["server"].as_str(), Some(srv.addr()));
}

#[test]
fn malformed_requests_get_4xx_and_the_worker_carries_on() {
    let srv = Server::start_with_workers(1, &["builtin:echo"]);
    let before = srv.worker_pids();
    let cases: &[(&str, u16)] = &[
        ("GARBAGE\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nBad Header\r\n\r\n", 400),
    ];
    for (raw, status) in cases {
        let r = http_request(srv.addr(), raw);
        assert_eq!(r.status, *status, "for {raw:?}: {}", r.text());
    }
    let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(5000));
    assert_eq!(http_request(srv.addr(), &long).status, 400);
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    assert_eq!(
        http_request(srv.addr(), &format!("GET / HTTP/1.1\r\n{many}\r\n")).status,
        431
    );
    assert_eq!(srv.get("/ok").status, 200);
    assert_eq!(srv.worker_pids(), before, "the same worker still serves");
}

#[test]
fn unix_socket_listener_serves_and_is_removed_on_exit() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("app.sock");
    let bind = format!("unix:{}", sock.display());
    let srv = Launch::new(&["-b", &bind, "builtin:hello"])
        .in_dir(dir)
        .start();
    expect_within(Duration::from_secs(10), "socket file", || sock.exists());
    srv.expect_log(
        &format!("Listening at: unix:{}", sock.display()),
        Duration::from_secs(5),
    );
    expect_within(
        Duration::from_secs(10),
        "a worker answers on the socket",
        || std::os::unix::net::UnixStream::connect(&sock).is_ok() && srv.booted_count() == 1,
    );
    let r = unix_request(&sock, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "Hello, World!\n");
    srv.signal(libc::SIGTERM);
    assert_eq!(srv.wait_exit(Duration::from_secs(10)), 0);
    assert!(!sock.exists(), "the owner removed its socket file");
}

#[test]
fn inherited_fd_listener_serves() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
    let dir = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
    let mut cmd = std::process::Command::new(gunicornd_bin());
    cmd.args(["-b", "fd://3", "builtin:hello"])
        .current_dir(dir.path())
        .stderr(log)
        .process_group(0);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 onto itself keeps FD_CLOEXEC: clear it explicitly.
            if (fd != 3 && libc::dup2(fd, 3) < 0) || libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let pid = child.id() as i32;
    let got = wait_until(Duration::from_secs(15), || {
        try_http_request(&addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").is_ok_and(|r| r.status == 200)
    });
    // SAFETY: kill our own child's process group.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    let _ = child.wait();
    let log = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap();
    assert!(got, "no answer through fd://3; log:\n{log}");
    assert!(
        log.contains(&format!("Listening at: http://{addr}")),
        "{log}"
    );
}

#[test]
fn static_app_serves_files_without_escaping_its_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("www");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("index.html"), "<h1>hi</h1>").unwrap();
    std::fs::write(root.join("data.json"), "{}").unwrap();
    std::fs::write(dir.path().join("secret.txt"), "secret").unwrap();
    let app = format!("static:{}", root.display());
    let srv = Server::start_with_workers(1, &[&app]);
    let r = srv.get("/");
    assert_eq!((r.status, r.text().as_str()), (200, "<h1>hi</h1>"));
    assert!(r.header("Content-Type").unwrap().starts_with("text/html"));
    assert_eq!(
        srv.get("/data.json").header("Content-Type"),
        Some("application/json")
    );
    assert_eq!(srv.get("/missing.txt").status, 404);
    assert_eq!(srv.get("/../secret.txt").status, 404);
    assert_eq!(srv.get("/%2e%2e/secret.txt").status, 404);
}
