//! Supervision: replacing dead and hung workers, recycling, halting on boot
//! failures, stopping gracefully.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn only(pids: &std::collections::BTreeSet<i32>) -> i32 {
    assert_eq!(pids.len(), 1, "{pids:?}");
    *pids.iter().next().unwrap()
}

#[test]
fn killed_worker_is_replaced() {
    let srv = Server::start_with_workers(2, &["-w", "2", "builtin:hello"]);
    let before = srv.worker_pids();
    let victim = *before.iter().next().unwrap();
    // SAFETY: plain kill(2) on our server's worker.
    unsafe { libc::kill(victim, libc::SIGKILL) };
    expect_within(Duration::from_secs(10), "a replacement worker", || {
        let now = srv.worker_pids();
        now.len() == 2 && !now.contains(&victim)
    });
    srv.expect_log(
        &format!("Worker (pid:{victim}) was sent SIGKILL! Perhaps out of memory?"),
        Duration::from_secs(5),
    );
    assert_eq!(srv.get("/").status, 200);
}

#[test]
fn stopped_worker_is_killed_after_timeout_and_replaced() {
    let srv = Server::start_with_workers(1, &["-t", "2", "builtin:hello"]);
    let victim = only(&srv.worker_pids());
    // SAFETY: plain kill(2) on our server's worker.
    unsafe { libc::kill(victim, libc::SIGSTOP) };
    let stopped = Instant::now();
    expect_within(
        Duration::from_secs(15),
        "the stopped worker replaced",
        || {
            let now = srv.worker_pids();
            now.len() == 1 && !now.contains(&victim)
        },
    );
    // It beat at most 1 s (half the timeout) before SIGSTOP, so it is due
    // 2 s after that beat: a stopped process cannot run its SIGABRT
    // handler, so SIGKILL goes out at once instead of a second later.
    let gone_after = stopped.elapsed();
    assert!(
        gone_after >= Duration::from_millis(900),
        "not killed before the timeout ({gone_after:?})"
    );
    assert!(
        gone_after <= Duration::from_millis(2400),
        "killed within timeout + 100 ms of its last heartbeat, not a second later ({gone_after:?})"
    );
    srv.expect_log(
        &format!("Worker (pid:{victim}) is stopped and cannot handle SIGABRT; sending SIGKILL"),
        Duration::from_secs(5),
    );
    srv.expect_log(
        &format!("WORKER TIMEOUT (pid:{victim})"),
        Duration::from_secs(5),
    );
    srv.expect_log(
        &format!("Worker (pid:{victim}) was sent SIGKILL!"),
        Duration::from_secs(5),
    );
    assert!(
        !srv.log_contains(&format!("Worker (pid:{victim}) was sent SIGKILL! Perhaps")),
        "we killed it; not OOM"
    );
    expect_within(Duration::from_secs(10), "the new worker answers", || {
        srv.get("/").status == 200
    });
}

#[test]
fn worker_stuck_while_booting_is_killed() {
    let srv = Server::start_with_workers(0, &["-t", "1", "builtin:debug?boot_sleep=60"]);
    expect_within(Duration::from_secs(10), "a worker", || {
        srv.worker_pids().len() == 1
    });
    let first = only(&srv.worker_pids());
    srv.expect_log(
        &format!("WORKER TIMEOUT (pid:{first}) while booting"),
        Duration::from_secs(10),
    );
    expect_within(Duration::from_secs(10), "a fresh worker", || {
        let now = srv.worker_pids();
        now.len() == 1 && !now.contains(&first)
    });
}

#[test]
fn max_requests_recycles_a_worker_without_failing_a_request() {
    let srv = Server::start_with_workers(1, &["--max-requests", "5", "builtin:hello"]);
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..40 {
        seen.extend(srv.worker_pids());
        let r = try_http_request(srv.addr(), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap_or_else(|e| panic!("request {i} failed: {e}\n{}", srv.log()));
        assert_eq!(r.status, 200, "request {i}");
    }
    seen.extend(srv.worker_pids());
    assert!(
        seen.len() >= 3,
        "workers were recycled: {seen:?}\n{}",
        srv.log()
    );
    assert!(srv.log_contains("Autorestarting worker after 5 requests"));
}

#[test]
fn worker_boot_failure_halts_with_status_3() {
    let mut srv = Server::start(&["-b", "127.0.0.1:0", "builtin:debug?boot_exit=3"]);
    assert_eq!(srv.wait_exit(Duration::from_secs(15)), 3);
    let log = srv.log();
    assert!(log.contains("Reason: Worker failed to boot."), "{log}");
    assert!(srv.worker_pids().is_empty());
}

#[test]
fn app_load_failure_halts_with_status_4() {
    let mut srv = Server::start(&["-b", "127.0.0.1:0", "static:/nonexistent/dir"]);
    assert_eq!(srv.wait_exit(Duration::from_secs(15)), 4);
    assert!(
        srv.log().contains("Reason: App failed to load."),
        "{}",
        srv.log()
    );
}

#[test]
fn term_lets_the_request_in_flight_finish_then_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("web.sock");
    let unix_bind = format!("unix:{}", sock.display());
    let mut srv = Launch::new(&[
        "-b",
        "127.0.0.1:0",
        "-b",
        &unix_bind,
        "--graceful-timeout",
        "20",
        "builtin:debug",
    ])
    .workers(1)
    .in_dir(dir)
    .start();
    let addr = srv.addr().to_string();
    let slow = std::thread::spawn(move || {
        http_request(&addr, "GET /?sleep=2 HTTP/1.1\r\nHost: x\r\n\r\n")
    });
    // The request is in flight once the worker is busy: wait for the accept.
    expect_within(
        Duration::from_secs(5),
        "the slow request reached the worker",
        || srv.worker_pids().iter().any(|&pid| sleeping_in_app(pid)),
    );
    srv.signal(libc::SIGTERM);
    let resp = slow.join().unwrap();
    assert_eq!(resp.status, 200, "the in-flight request completed");
    assert_eq!(srv.wait_exit(Duration::from_secs(15)), 0);
    assert!(!sock.exists(), "unix socket removed at exit");
    assert!(srv.log_contains("Shutting down: Master"));
}

#[test]
fn int_stops_quickly() {
    let mut srv =
        Server::start_with_workers(2, &["-w", "2", "--graceful-timeout", "30", "builtin:debug"]);
    let addr = srv.addr().to_string();
    let _slow =
        std::thread::spawn(move || try_http_request(&addr, b"GET /?sleep=20 HTTP/1.1\r\n\r\n"));
    let t = Instant::now();
    srv.signal(libc::SIGINT);
    assert_eq!(srv.wait_exit(Duration::from_secs(10)), 0);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "quick stop does not wait for the slow request"
    );
}

#[test]
fn env_and_chdir_reach_the_workers() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("site")).unwrap();
    std::fs::create_dir(dir.path().join("site/www")).unwrap();
    std::fs::write(dir.path().join("site/www/index.html"), "from chdir").unwrap();
    // `static:www` is relative: it resolves against --chdir in the worker.
    let srv = Launch::new(&[
        "-b",
        "127.0.0.1:0",
        "--chdir",
        "site",
        "-e",
        "GREETING=hello-from-env",
        "--access-logfile",
        "access.log",
        "--access-logformat",
        "%({GREETING}e)s",
        "static:www",
    ])
    .in_dir(dir)
    .workers(1)
    .start();
    assert_eq!(srv.get("/").text(), "from chdir");
    let access = srv.path("site/access.log");
    expect_within(
        Duration::from_secs(5),
        "the worker's environment in the access log",
        || {
            std::fs::read_to_string(&access)
                .unwrap_or_default()
                .contains("hello-from-env")
        },
    );
}

#[test]
fn max_requests_jitter_spreads_the_recycling_points() {
    let srv = Server::start_with_workers(
        1,
        &[
            "--max-requests",
            "5",
            "--max-requests-jitter",
            "20",
            "builtin:hello",
        ],
    );
    let limits = || -> std::collections::BTreeSet<u64> {
        srv.log()
            .lines()
            .filter_map(|l| l.split("Autorestarting worker after ").nth(1))
            .filter_map(|r| r.split(' ').next()?.parse().ok())
            .collect()
    };
    expect_within(
        Duration::from_secs(30),
        "three distinct recycling points",
        || {
            for _ in 0..10 {
                assert_eq!(srv.get("/").status, 200);
            }
            limits().len() >= 3
        },
    );
    assert!(
        limits().iter().all(|n| (5..=25).contains(n)),
        "{:?}",
        limits()
    );
}
