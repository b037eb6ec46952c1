//! The worker programs in `examples/` under `gunicornd -k command`, run
//! with the commands `examples/README.md` documents: each one's workers
//! send `READY=1` (they count as booted long before `--boot-grace` would
//! count them), show their `STATUS=`, answer, keep their heartbeat
//! (`WATCHDOG=1`) beyond `--timeout`, and stop gracefully on `TERM`: a
//! request in hand is answered and the master exits 0.
//!
//! Needs the `command` worker kind and `python3`; the Node.js tests need
//! `node` and the C test `cc`, and are skipped (saying so) without them.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use gunicornd_test_support::*;

const WORKERS: usize = 2;
/// `--timeout`, which sets the workers' `WATCHDOG_USEC`: short, so that a
/// heartbeat that is not sent gets the workers replaced within the test.
const TIMEOUT: &str = "3";
/// How long the workers must keep serving, unreplaced, with heartbeats
/// due every `TIMEOUT`/2: two and a half timeouts.
const HEARTBEAT_WINDOW: Duration = Duration::from_millis(7500);
/// `--boot-grace`, far beyond every deadline here: a worker that counts
/// as booted has said `READY=1`.
const BOOT_GRACE: &str = "600";
/// How long `/sleep` keeps the request in hand during the graceful stop.
const SLOW_MS: u64 = 2000;
const HELLO: &str = "Hello, World!\n";

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// Whether `program --version` runs.
fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `GET path` with `Connection: close` (Node keeps a connection open
/// otherwise), checked for `200 Hello, World!\n`.
fn hello_over_tcp(addr: &str, path: &str) -> Result<(), String> {
    let raw = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    let r = try_http_request(addr, raw.as_bytes()).map_err(|e| format!("GET {path}: {e}"))?;
    if r.status == 200 && r.text() == HELLO {
        Ok(())
    } else {
        Err(format!("GET {path} answered {} {:?}", r.status, r.text()))
    }
}

/// `gunicornd -k command -w 2 -b 127.0.0.1:0 [-b unix:DIR/NAME...]
/// --timeout 3 [extra] --control-socket DIR/ctl.sock -- PROGRAM...`,
/// returned once it listens. `program` gets the launch, to build the
/// program in the test's directory DIR.
fn start(
    unix_sockets: &[&str],
    extra: &[&str],
    program: impl FnOnce(&Launch) -> Vec<OsString>,
) -> Server {
    let mut launch = Launch::new(&[
        "-k",
        "command",
        "-w",
        &WORKERS.to_string(),
        "-b",
        "127.0.0.1:0",
        "--timeout",
        TIMEOUT,
    ]);
    for name in unix_sockets {
        let bind = format!("unix:{}", launch.path(name).display());
        launch = launch.arg("-b").arg(bind);
    }
    for arg in extra {
        launch = launch.arg(arg);
    }
    let program = program(&launch);
    // The control socket goes before `--`: everything after it is the
    // program's. (Launch::control_socket() would put it last.)
    let socket = launch.path("ctl.sock");
    launch = launch.arg("--control-socket").arg(&socket).arg("--");
    for arg in program {
        launch = launch.arg(arg);
    }
    let mut srv = launch.start();
    srv.socket = Some(socket);
    srv
}

/// `show workers`, as JSON text.
fn show_workers(srv: &Server) -> String {
    Conn::open(srv.socket.as_deref().unwrap())
        .ok::<serde_json::Value>("show workers")
        .to_string()
}

/// What every example must do once started with `--boot-grace 600`: boot
/// by READY=1 with its STATUS= shown, serve, keep its heartbeat, then stop
/// gracefully on TERM with a request in hand.
#[track_caller]
fn check_example(srv: &Server, status: &str) {
    let pids = srv.wait_pool(WORKERS);
    srv.poll(&format!("STATUS={status} in 'show workers'"), |s| {
        show_workers(s).contains(status).then_some(())
    });

    for _ in 0..20 {
        hello_over_tcp(srv.addr(), "/").unwrap();
    }

    // Until the window closes, every request is answered and no worker is
    // replaced: their heartbeats arrive.
    let mut failure = None;
    let broke = wait_until(HEARTBEAT_WINDOW, || {
        if let Err(e) = hello_over_tcp(srv.addr(), "/") {
            failure = Some(e);
        } else if srv.worker_pids() != pids {
            failure = Some(format!("workers {pids:?} became {:?}", srv.worker_pids()));
        }
        failure.is_some()
    });
    assert!(
        !broke,
        "with a heartbeat due every half --timeout ({TIMEOUT} s): {}; log:\n{}",
        failure.unwrap_or_default(),
        srv.log()
    );
    assert_eq!(srv.wait_pool(WORKERS), pids, "the same workers, all booted");

    // TERM while a worker holds a request: the request is answered, the
    // master exits 0.
    let addr = srv.addr().to_string();
    let slow = thread::spawn(move || hello_over_tcp(&addr, &format!("/sleep?ms={SLOW_MS}")));
    srv.expect_log(&format!("sleeping {SLOW_MS} ms"), DEADLINE);
    srv.signal(libc::SIGTERM);
    let answered = slow.join().unwrap();
    assert!(
        answered.is_ok(),
        "the request in hand at TERM: {answered:?}; log:\n{}",
        srv.log()
    );
    assert_eq!(srv.wait_exit(DEADLINE), 0, "log:\n{}", srv.log());
    srv.expect_log("graceful stop", Duration::from_secs(5));
}

#[test]
fn python_example_boots_serves_beats_and_stops_gracefully() {
    let srv = start(&["app.sock"], &["--boot-grace", BOOT_GRACE], |_| {
        vec![
            "python3".into(),
            examples_dir().join("python/server.py").into(),
        ]
    });
    srv.wait_pool(WORKERS);
    // Both sockets are served, the unix one too.
    let r = unix_request(&srv.path("app.sock"), "GET / HTTP/1.0\r\n\r\n");
    assert_eq!((r.status, r.text().as_str()), (200, HELLO));
    check_example(&srv, "serving on 2 socket(s)");
}

#[test]
fn node_example_through_notify_fd_boots_serves_beats_and_stops_gracefully() {
    if !have("node") {
        eprintln!("SKIPPED: no `node` on PATH to run examples/node/server.js");
        return;
    }
    let srv = start(&[], &["--boot-grace", BOOT_GRACE], |_| {
        vec![
            "python3".into(),
            examples_dir().join("notify_fd.py").into(),
            "node".into(),
            examples_dir().join("node/server.js").into(),
        ]
    });
    check_example(&srv, "serving on 1 socket(s)");
}

#[test]
fn node_example_without_notify_fd_counts_as_booted_after_the_boot_grace() {
    if !have("node") {
        eprintln!("SKIPPED: no `node` on PATH to run examples/node/server.js");
        return;
    }
    let srv = start(&[], &["--boot-grace", "1"], |_| {
        vec!["node".into(), examples_dir().join("node/server.js").into()]
    });
    srv.wait_pool(WORKERS);
    srv.expect_log("Node cannot send to it", DEADLINE);
    hello_over_tcp(srv.addr(), "/").unwrap();
    srv.signal(libc::SIGTERM);
    assert_eq!(srv.wait_exit(DEADLINE), 0, "log:\n{}", srv.log());
}

#[test]
fn c_example_built_with_cc_boots_serves_beats_and_stops_gracefully() {
    if !have("cc") {
        eprintln!("SKIPPED: no `cc` on PATH to build examples/c/server.c");
        return;
    }
    let srv = start(&[], &["--boot-grace", BOOT_GRACE], |launch| {
        // The command examples/README.md gives, with the binary in the
        // test's directory.
        let binary = launch.path("server");
        let built = Command::new("cc")
            .args(["-O2", "-Wall", "-Wextra", "-Werror", "-o"])
            .arg(&binary)
            .arg(examples_dir().join("c/server.c"))
            .output()
            .expect("run cc");
        assert!(
            built.status.success(),
            "cc failed: {}",
            String::from_utf8_lossy(&built.stderr)
        );
        vec![binary.into()]
    });
    check_example(&srv, "serving on 1 socket(s)");
}
