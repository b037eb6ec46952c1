//! Reloading (HUP): a new generation replaces every worker without failing
//! a request, the configuration file is read again (workers, binds, log
//! level), and a reload that fails, or comes while another one is still
//! booting, leaves the master and the serving generation as they were.

use std::collections::BTreeSet;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use gunicornd_test_support::*;

fn loopback(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

/// Write `gunicornd.toml` in `dir`: `app`, `workers`, the loopback `ports`
/// to bind, then `extra` lines as they are.
fn write_config(dir: &Path, app: &str, workers: usize, ports: &[u16], extra: &str) {
    let binds: Vec<String> = ports
        .iter()
        .map(|p| format!("\"{}\"", loopback(*p)))
        .collect();
    std::fs::write(
        dir.join("gunicornd.toml"),
        format!(
            "app = \"{app}\"\nworkers = {workers}\nbind = [{}]\n{extra}",
            binds.join(", ")
        ),
    )
    .unwrap();
}

/// Start gunicornd from `dir/gunicornd.toml` (no control socket: these
/// tests do not need one, and the default path is shared between tests).
fn start_from_config(dir: tempfile::TempDir, workers: usize) -> Server {
    Launch::new(&["--no-control-socket"])
        .in_dir(dir)
        .booted(workers)
        .start()
}

/// Waits until the log says a reload failed and exactly `workers` (the
/// generation that was serving) run again; panics with the log otherwise,
/// or at once if the master exited.
#[track_caller]
fn expect_rolled_back_to(srv: &Server, workers: &BTreeSet<i32>) {
    let settled = wait_until(Duration::from_secs(10), || {
        srv.exited() || (srv.log_contains("Reload failed") && srv.worker_pids() == *workers)
    });
    assert!(
        !srv.exited(),
        "the master exited after a failed reload; log:\n{}",
        srv.log()
    );
    assert!(
        settled,
        "after the failed reload the workers are {:?}, expected only the old {workers:?}; log:\n{}",
        srv.worker_pids(),
        srv.log()
    );
}

// ---------------------------------------------------------------------------
// Reloads that succeed

#[test]
fn reload_under_load_drops_nothing_and_replaces_every_worker() {
    // The master reports each worker's age (spawn order) to a hook: log lines
    // from concurrently booting workers do not come in spawn order.
    let ages_hook = "post_fork=echo \"$GUNICORND_WORKER_AGE $GUNICORND_WORKER_PID\" >> ages.txt";
    let srv = Server::start_with_workers(3, &["-w", "3", "--hook", ages_hook, "builtin:hello"]);
    let load = Load::start(srv.addr(), 4, "/", 200_000);
    let mut pids = srv.worker_pids();
    for round in 0..10 {
        srv.signal_delivered(libc::SIGHUP);
        let old = pids.clone();
        let ok = wait_until(Duration::from_secs(20), || {
            let now = srv.worker_pids();
            now.len() == 3 && now.is_disjoint(&old)
        });
        assert!(
            ok,
            "round {round}: workers not all replaced: {:?} (old {old:?})\n{}",
            srv.worker_pids(),
            srv.log()
        );
        pids = srv.worker_pids();
        srv.expect_log(
            &format!("Reload complete: generation {}", round + 2),
            Duration::from_secs(10),
        );
    }
    let (ok, failures) = load.finish();
    assert!(
        failures.is_empty(),
        "{} failed requests (of {}): {:?}",
        failures.len(),
        ok,
        &failures[..failures.len().min(5)]
    );
    assert!(ok > 100, "the load actually ran ({ok} requests)");
    eprintln!("reload under load: {ok} requests, 0 failed");
}

/// A reload under a stream of slow requests: the old workers must drain
/// within `--graceful-timeout`, not be killed ("did not stop in time") with
/// requests in flight, and no request may fail.
#[test]
fn reload_under_slow_requests_drains_old_workers_in_time() {
    let srv = Server::start_with_workers(
        2,
        &[
            "-w",
            "2",
            "--graceful-timeout",
            "3",
            "--no-control-socket",
            "builtin:debug",
        ],
    );
    let old = srv.worker_pids();
    let load = Load::start(srv.addr(), 16, "/?sleep=0.1", 5_000);
    expect_within(Duration::from_secs(10), "requests in flight", || {
        old.iter().any(|&p| sleeping_in_app(p))
    });
    srv.signal_delivered(libc::SIGHUP);
    expect_within(
        Duration::from_secs(15),
        "the old workers to be gone",
        || {
            let now = srv.worker_pids();
            now.len() == 2 && now.is_disjoint(&old)
        },
    );
    srv.expect_log("Reload complete", Duration::from_secs(5));
    let (ok, failures) = load.finish();
    assert!(
        !srv.log_contains("did not stop in time"),
        "an old worker was killed instead of draining; log:\n{}",
        srv.log()
    );
    assert!(
        failures.is_empty(),
        "{} of {} requests failed during the reload: {:?}",
        failures.len(),
        ok + failures.len() as u64,
        &failures[..failures.len().min(5)]
    );
    assert!(ok > 10, "the load ran ({ok} requests)");
}

#[test]
fn runtime_scale_survives_a_reload_unless_workers_changed() {
    let srv = Launch::from_config("workers = 2\nbind = \"127.0.0.1:0\"\napp = \"builtin:hello\"\n")
        .booted(2)
        .start();
    let conf = srv.path("gunicornd.toml");
    srv.signal_delivered(libc::SIGTTIN);
    srv.wait_booted(3);
    let before = srv.worker_pids();
    srv.signal_delivered(libc::SIGHUP);
    srv.expect_log("Reload complete: generation 2", Duration::from_secs(15));
    expect_within(Duration::from_secs(10), "3 new workers", || {
        let now = srv.worker_pids();
        now.len() == 3 && now.is_disjoint(&before)
    });
    // Now the file changes `workers`: that wins over the runtime count.
    std::fs::write(
        &conf,
        "workers = 4\nbind = \"127.0.0.1:0\"\napp = \"builtin:hello\"\n",
    )
    .unwrap();
    srv.signal_delivered(libc::SIGHUP);
    srv.expect_log("Reload complete: generation 3", Duration::from_secs(15));
    expect_within(Duration::from_secs(10), "4 workers", || {
        srv.worker_pids().len() == 4
    });
}

#[test]
fn reload_rebinds_when_the_bind_setting_changed() {
    let (a, b) = (free_port(), free_port());
    let srv = Launch::from_config(&format!(
        "bind = \"127.0.0.1:{a}\"\napp = \"builtin:hello\"\n"
    ))
    .booted(1)
    .start();
    let conf = srv.path("gunicornd.toml");
    assert_eq!(srv.get("/").status, 200);
    std::fs::write(
        &conf,
        format!("bind = \"127.0.0.1:{b}\"\napp = \"builtin:hello\"\n"),
    )
    .unwrap();
    srv.signal_delivered(libc::SIGHUP);
    srv.expect_log(
        &format!("Listening at: http://127.0.0.1:{b}"),
        Duration::from_secs(10),
    );
    srv.expect_log("Reload complete: generation 2", Duration::from_secs(15));
    let new_addr = format!("127.0.0.1:{b}");
    assert_eq!(
        http_request(&new_addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").status,
        200
    );
    // No process of this server may still listen on the old port. (A probe
    // by connecting could reach another test's server that got the freed
    // port from the kernel.)
    let ours = || {
        let mut pids = srv.worker_pids();
        pids.insert(srv.pid);
        pids
    };
    let closed = wait_until(Duration::from_secs(10), || {
        socket_holders(&ours(), &listening_inodes(a)).is_empty()
    });
    assert!(
        closed,
        "old port {a} still held by {:?} (master {}, workers {:?})\n{}",
        socket_holders(&ours(), &listening_inodes(a)),
        srv.pid,
        srv.worker_pids(),
        srv.log()
    );
}

/// A reload from `bind = [P]` to `[P, Q]` keeps P and adds Q; guards against
/// a reload that failed because it tried to bind P a second time.
#[test]
fn reload_adding_a_port_keeps_the_first_and_serves_both() {
    let dir = tempfile::tempdir().unwrap();
    let (p, q) = (free_port(), free_port());
    write_config(dir.path(), "builtin:hello", 1, &[p], "");
    let srv = start_from_config(dir, 1);
    write_config(srv.dir.path(), "builtin:hello", 1, &[p, q], "");
    srv.signal_delivered(libc::SIGHUP);
    expect_within(Duration::from_secs(15), "the reload to end", || {
        srv.log_contains("Reload complete") || srv.log_contains("Reload failed")
    });
    assert!(
        srv.log_contains("Reload complete"),
        "binding [P, Q] where P was bound failed; log:\n{}",
        srv.log()
    );
    for port in [p, q] {
        hello_at(&loopback(port)).unwrap_or_else(|e| panic!("{e}; log:\n{}", srv.log()));
    }
}

// ---------------------------------------------------------------------------
// Reloads that fail

#[test]
fn reload_with_a_broken_config_file_keeps_serving() {
    let srv = Launch::from_config("workers = 2\nbind = \"127.0.0.1:0\"\napp = \"builtin:hello\"\n")
        .booted(2)
        .start();
    let before = srv.worker_pids();
    std::fs::write(srv.path("gunicornd.toml"), "workers = [this is not toml\n").unwrap();
    srv.signal(libc::SIGHUP);
    srv.expect_log(
        "Reload failed, keeping the running configuration",
        Duration::from_secs(10),
    );
    assert_eq!(srv.get("/").status, 200);
    assert_eq!(srv.worker_pids(), before, "the old workers still serve");
}

#[test]
fn reload_whose_app_cannot_load_keeps_the_old_generation() {
    let srv = Launch::from_config("workers = 2\nbind = \"127.0.0.1:0\"\napp = \"builtin:hello\"\n")
        .booted(2)
        .start();
    let conf = srv.path("gunicornd.toml");
    let before = srv.worker_pids();
    std::fs::write(
        &conf,
        "workers = 2\nbind = \"127.0.0.1:0\"\napp = \"static:/nonexistent/dir\"\n",
    )
    .unwrap();
    srv.signal(libc::SIGHUP);
    srv.expect_log(
        "Reload failed: App failed to load.",
        Duration::from_secs(15),
    );
    expect_within(Duration::from_secs(10), "failed generation gone", || {
        srv.worker_pids() == before
    });
    assert!(!srv.exited(), "the master stays up");
    assert_eq!(srv.get("/").text(), "Hello, World!\n");
}

/// Two HUPs in quick succession, the new app failing to load: the second
/// arrives while the first reload's workers still boot. Both reloads must
/// fail on their own, without taking the master down or leaving a failed
/// generation running next to the old one.
#[test]
fn second_reload_during_a_failing_one_keeps_the_master_and_old_generation() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    write_config(dir.path(), "builtin:hello", 2, &[port], "");
    let srv = start_from_config(dir, 2);
    let before = srv.worker_pids();
    // The new app sleeps a second while booting, then fails: the second HUP
    // surely arrives while the first reload's workers are still booting.
    write_config(
        srv.dir.path(),
        "builtin:debug?boot_sleep=1&fail_load=1",
        2,
        &[port],
        "",
    );
    srv.signal_delivered(libc::SIGHUP);
    srv.expect_log("Reloading: starting generation 2", Duration::from_secs(10));
    srv.signal_delivered(libc::SIGHUP);
    expect_rolled_back_to(&srv, &before);
    // Whatever the second reload started must fail the same way, without
    // taking the master with it: give it well past its 1 s boot.
    assert!(
        !wait_until(Duration::from_secs(3), || srv.exited()),
        "the master exited after two failed reloads; log:\n{}",
        srv.log()
    );
    expect_within(Duration::from_secs(10), "only the old workers run", || {
        srv.worker_pids() == before
    });
    hello_at(srv.addr()).unwrap_or_else(|e| panic!("{e}; log:\n{}", srv.log()));
}

/// Rolling back a failed reload that also raised `workers` restores the old
/// worker count; guards against a rollback that kept the failed
/// configuration's target and grew the old generation.
#[test]
fn failed_reload_to_more_workers_rolls_back_to_the_old_count() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    write_config(dir.path(), "builtin:hello", 1, &[port], "");
    let srv = start_from_config(dir, 1);
    let before = srv.worker_pids();
    write_config(srv.dir.path(), "builtin:debug?fail_load=1", 3, &[port], "");
    srv.signal_delivered(libc::SIGHUP);
    expect_rolled_back_to(&srv, &before);
    assert!(
        !wait_until(Duration::from_millis(1000), || srv.worker_pids() != before),
        "after the rollback the pool changed to {:?} (expected the single old worker {before:?}); log:\n{}",
        srv.worker_pids(),
        srv.log()
    );
    hello_at(srv.addr()).unwrap();
}

/// Rolling back a failed reload that also moved the bind restores the old
/// listeners, for the old workers and for a worker started after the
/// rollback; guards against the failed configuration's port staying open.
#[test]
fn failed_reload_to_another_port_keeps_serving_the_old_port() {
    let dir = tempfile::tempdir().unwrap();
    let (p, q) = (free_port(), free_port());
    write_config(dir.path(), "builtin:hello", 1, &[p], "");
    let srv = start_from_config(dir, 1);
    let before = srv.worker_pids();
    write_config(srv.dir.path(), "builtin:debug?fail_load=1", 1, &[q], "");
    srv.signal_delivered(libc::SIGHUP);
    expect_rolled_back_to(&srv, &before);
    hello_at(&loopback(p)).unwrap_or_else(|e| panic!("{e}; log:\n{}", srv.log()));
    assert!(
        TcpStream::connect(loopback(q)).is_err(),
        "the failed configuration's port {q} still listens; log:\n{}",
        srv.log()
    );
    // A worker started after the rollback must serve the old port too.
    let old = *before.iter().next().unwrap();
    // SAFETY: plain kill(2) on the master's worker.
    unsafe { libc::kill(old, libc::SIGKILL) };
    expect_within(Duration::from_secs(10), "a replacement worker", || {
        let now = srv.worker_pids();
        now.len() == 1 && !now.contains(&old) && srv.booted_count() == 1
    });
    hello_at(&loopback(p)).unwrap_or_else(|e| {
        panic!(
            "port {p} after the worker was replaced: {e}; log:\n{}",
            srv.log()
        )
    });
    assert!(
        TcpStream::connect(loopback(q)).is_err(),
        "port {q} listens after the worker was replaced; log:\n{}",
        srv.log()
    );
}

/// A reload that fails (a port in its binds is taken) applies none of its
/// settings; guards against its `loglevel = "debug"` taking effect anyway.
#[test]
fn failed_reload_does_not_apply_its_log_level() {
    let dir = tempfile::tempdir().unwrap();
    let p = free_port();
    // Another socket holds Q, so binding it on reload must fail.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let q = taken.local_addr().unwrap().port();
    write_config(dir.path(), "builtin:hello", 1, &[p], "");
    let srv = start_from_config(dir, 1);
    write_config(
        srv.dir.path(),
        "builtin:hello",
        1,
        &[p, q],
        "loglevel = \"debug\"\n",
    );
    srv.signal_delivered(libc::SIGHUP);
    srv.expect_log("Reload failed", Duration::from_secs(15));
    // Events that log at debug level: a new worker booting, requests.
    srv.signal_delivered(libc::SIGTTIN);
    srv.wait_booted(2);
    for _ in 0..3 {
        hello_at(&loopback(p)).unwrap();
    }
    assert!(
        !wait_until(Duration::from_millis(1000), || srv.log_contains("[DEBUG]")),
        "the failed reload's loglevel = \"debug\" was applied; log:\n{}",
        srv.log()
    );
    drop(taken);
}
