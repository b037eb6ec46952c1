//! Signals that have no test file of their own: USR1 reopens the logs in
//! the master and the workers, WINCH is ignored in the foreground. (HUP is
//! in `reload.rs`, TTIN and TTOU in `scaling.rs`, TERM, INT and QUIT in
//! `shutdown.rs`.)

use std::time::Duration;

use gunicornd_test_support::*;

#[test]
fn usr1_reopens_logs_in_master_and_workers() {
    let srv = Launch::new(&[
        "-b",
        "127.0.0.1:0",
        "--access-logfile",
        "access.log",
        "builtin:echo",
    ])
    .error_logfile("error.log")
    .booted(1)
    .start();
    let err = srv.path("error.log");
    let access = srv.path("access.log");
    assert_eq!(srv.get("/before").status, 200);
    expect_within(Duration::from_secs(5), "access line", || {
        std::fs::read_to_string(&access)
            .unwrap_or_default()
            .contains("/before")
    });
    std::fs::rename(&err, srv.path("error.log.1")).unwrap();
    std::fs::rename(&access, srv.path("access.log.1")).unwrap();
    srv.signal_delivered(libc::SIGUSR1);
    expect_within(
        Duration::from_secs(5),
        "master reopened its error log",
        || {
            std::fs::read_to_string(&err)
                .unwrap_or_default()
                .contains("Log files reopened")
        },
    );
    // Requests until the worker has processed its USR1 (it reopens at its next pass).
    expect_within(
        Duration::from_secs(10),
        "worker writes to the new access log",
        || {
            srv.get("/after");
            std::fs::read_to_string(&access)
                .unwrap_or_default()
                .contains("/after")
        },
    );
    let r = http_request(srv.addr(), "BAD REQUEST LINE\r\n\r\n");
    assert_eq!(r.status, 400);
    expect_within(
        Duration::from_secs(5),
        "worker error lines land in the new error log",
        || {
            std::fs::read_to_string(&err)
                .unwrap_or_default()
                .contains("Invalid request from ip=127.0.0.1")
        },
    );
}

#[test]
fn winch_is_ignored_in_the_foreground() {
    let srv = Server::start_with_workers(2, &["-w", "2", "builtin:hello"]);
    let before = srv.worker_pids();
    srv.signal(libc::SIGWINCH);
    srv.expect_log("SIGWINCH ignored. Not daemonized", Duration::from_secs(5));
    assert_eq!(srv.worker_pids(), before);
}

#[test]
fn signals_sent_straight_to_a_worker_keep_gunicorns_exit_codes() {
    let srv = Server::start_with_workers(1, &["builtin:hello"]);
    let worker = *srv.worker_pids().iter().next().unwrap();
    let send = |pid: i32, sig: i32| {
        // SAFETY: plain kill(2) on our server's worker.
        unsafe { libc::kill(pid, sig) };
        let bit = 1u64 << (sig - 1);
        expect_within(Duration::from_secs(5), "signal delivered", || {
            pending_signals(pid) & bit == 0
        });
    };
    // Ignored by the worker (gunicorn's worker dies of HUP and USR2).
    for sig in [libc::SIGHUP, libc::SIGUSR2, libc::SIGTTIN, libc::SIGWINCH] {
        send(worker, sig);
    }
    assert_eq!(srv.get("/").status, 200);
    assert_eq!(srv.worker_pids().into_iter().collect::<Vec<_>>(), [worker]);
    // ABRT: exit 1, as after a heartbeat timeout.
    send(worker, libc::SIGABRT);
    srv.expect_log(
        &format!("Worker (pid:{worker}) exited with code 1."),
        Duration::from_secs(10),
    );
    srv.wait_booted(1);
    // QUIT: exit 0, not a death by signal.
    let second = *srv.worker_pids().iter().next().unwrap();
    send(second, libc::SIGQUIT);
    expect_within(Duration::from_secs(10), "the worker replaced", || {
        let now = srv.worker_pids();
        now.len() == 1 && !now.contains(&second)
    });
    let log = srv.log();
    assert!(
        !log.contains(&format!("Worker (pid:{second})")),
        "a clean exit is not reported:\n{log}"
    );
}
