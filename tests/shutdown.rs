//! Stopping: TERM lets the requests in flight finish, INT stops at once and
//! QUIT cuts a graceful stop short, and workers never outlive a master
//! that was killed.

use std::time::{Duration, Instant};

use gunicornd_test_support::*;

/// Whether a user and a group of these names exist (getpwnam/getgrnam).
fn user_and_group_exist(user: &str, group: &str) -> bool {
    let user = std::ffi::CString::new(user).unwrap();
    let group = std::ffi::CString::new(group).unwrap();
    // SAFETY: NUL-terminated names; the results are only compared to null.
    unsafe { !libc::getpwnam(user.as_ptr()).is_null() && !libc::getgrnam(group.as_ptr()).is_null() }
}

#[test]
fn term_lets_the_request_in_flight_finish_then_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("web.sock");
    let unix_bind = format!("unix:{}", sock.display());
    let srv = Launch::new(&[
        "-b",
        "127.0.0.1:0",
        "-b",
        &unix_bind,
        "--graceful-timeout",
        "20",
        "builtin:debug",
    ])
    .booted(1)
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
    let srv =
        Server::start_with_workers(2, &["-w", "2", "--graceful-timeout", "30", "builtin:debug"]);
    let addr = srv.addr().to_string();
    let _slow = std::thread::spawn(move || {
        try_http_request(&addr, b"GET /?sleep=20 HTTP/1.1\r\nHost: x\r\n\r\n")
    });
    let t = Instant::now();
    srv.signal(libc::SIGINT);
    assert_eq!(srv.wait_exit(Duration::from_secs(10)), 0);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "quick stop does not wait for the slow request"
    );
}

#[test]
fn quick_stop_escalates_a_graceful_one() {
    let srv = Server::start_with_workers(1, &["--graceful-timeout", "60", "builtin:debug"]);
    let addr = srv.addr().to_string();
    let _slow = std::thread::spawn(move || {
        try_http_request(&addr, b"GET /?sleep=30 HTTP/1.1\r\nHost: x\r\n\r\n")
    });
    expect_within(Duration::from_secs(5), "request in flight", || {
        srv.worker_pids().iter().any(|&p| sleeping_in_app(p))
    });
    let t = Instant::now();
    srv.signal(libc::SIGTERM);
    srv.expect_log("Handling signal: term", Duration::from_secs(5));
    srv.signal(libc::SIGQUIT);
    assert_eq!(srv.wait_exit(Duration::from_secs(10)), 0);
    assert!(t.elapsed() < Duration::from_secs(6));
    assert!(srv.log_contains("Quick shutdown requested"));
}

/// Workers that dropped privileges (`-u`/`-g`) still exit when their master
/// is killed with SIGKILL; guards against the uid change clearing the
/// workers' parent-death signal, which left them running as orphans.
#[test]
fn workers_with_dropped_privileges_exit_when_the_master_is_killed() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !user_and_group_exist("nobody", "nogroup") {
        eprintln!("SKIPPED: needs root and the user nobody / group nogroup");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The workers run as nobody: let them into their working directory.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let srv = Launch::new(&[
        "-b",
        "127.0.0.1:0",
        "-u",
        "nobody",
        "-g",
        "nogroup",
        "--no-control-socket",
        "builtin:hello",
    ])
    .in_dir(dir)
    .booted(1)
    .start();
    hello_at(srv.addr()).unwrap();
    let workers = srv.worker_pids();
    srv.signal(libc::SIGKILL);
    srv.wait_gone(Duration::from_secs(5));
    let gone = wait_until(Duration::from_secs(2), || {
        workers.iter().all(|&p| !process_alive(p))
    });
    let left: Vec<i32> = workers.into_iter().filter(|&p| process_alive(p)).collect();
    assert!(
        gone,
        "workers {left:?} (running as nobody) outlived the killed master by 2 s"
    );
}
