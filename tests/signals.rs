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
