//! Supervision: replacing dead and hung workers, recycling, halting on boot
//! failures, backing off a crash loop, and timeouts at their limits.

use std::time::{Duration, Instant};

use gunicornd_test_support::*;

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
    let srv = Server::start(&["-b", "127.0.0.1:0", "builtin:debug?boot_exit=3"]);
    assert_eq!(srv.wait_exit(Duration::from_secs(15)), 3);
    let log = srv.log();
    assert!(log.contains("Reason: Worker failed to boot."), "{log}");
    assert!(srv.worker_pids().is_empty());
}

#[test]
fn app_load_failure_halts_with_status_4() {
    let srv = Server::start(&["-b", "127.0.0.1:0", "static:/nonexistent/dir"]);
    assert_eq!(srv.wait_exit(Duration::from_secs(15)), 4);
    assert!(
        srv.log().contains("Reason: App failed to load."),
        "{}",
        srv.log()
    );
}

#[test]
fn crash_loop_backs_off_instead_of_fork_storming() {
    let srv = Server::start(&["-b", "127.0.0.1:0", "builtin:debug?boot_exit=1"]);
    expect_within(Duration::from_secs(20), "five backoff steps", || {
        srv.log().matches("died before booting").count() >= 5
    });
    let delays: Vec<u64> = srv
        .log()
        .lines()
        .filter_map(|l| l.split("next spawn in ").nth(1))
        .filter_map(|r| r.split(' ').next()?.parse().ok())
        .collect();
    assert!(
        delays.windows(2).all(|w| w[1] >= w[0]),
        "delays grow: {delays:?}"
    );
    assert!(delays[4] > delays[0], "delays grow: {delays:?}");
    assert!(!srv.exited(), "exit 1 is not a reason to halt");
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
    .booted(1)
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

/// `--timeout`, `--graceful-timeout` and `--upgrade-timeout` too large for a
/// deadline (now plus that many seconds overflows) are refused at startup or
/// honoured; guards against a master that panicked computing the deadline.
#[test]
fn huge_timeouts_are_refused_or_honoured_without_panicking() {
    for flag in ["--timeout", "--graceful-timeout", "--upgrade-timeout"] {
        let srv = Launch::new(&[
            "-b",
            "127.0.0.1:0",
            "--no-control-socket",
            flag,
            "9223372036854775807",
            "builtin:hello",
        ])
        .start();
        let settled = wait_until(Duration::from_secs(15), || {
            srv.exited()
                || srv.log_contains("panicked")
                || srv.log_contains("Ready: 1 workers booted")
        });
        assert!(
            settled,
            "{flag}: neither refused nor ready; log:\n{}",
            srv.log()
        );
        if srv.exited() {
            let code = srv.wait_exit(Duration::from_secs(1));
            let log = srv.log();
            assert!(
                code == 1 && log.contains("Error:") && !log.contains("panicked"),
                "{flag} 9223372036854775807: exit {code}, expected a refusal (exit 1, `Error:`); log:\n{log}"
            );
            continue;
        }
        assert!(
            !srv.log_contains("panicked"),
            "{flag} 9223372036854775807: a panic; log:\n{}",
            srv.log()
        );
        hello_at(srv.addr()).unwrap_or_else(|e| panic!("{flag}: {e}; log:\n{}", srv.log()));
        srv.signal(libc::SIGTERM);
        let code = srv.wait_exit(Duration::from_secs(15));
        let log = srv.log();
        assert!(
            code == 0 && !log.contains("panicked"),
            "{flag} 9223372036854775807: TERM gave exit {code}; log:\n{log}"
        );
    }
}
