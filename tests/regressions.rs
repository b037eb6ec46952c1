//! Regression tests for defects a review found in the master: reloads that
//! fail (or come two at a time), rebinding, the spawn backoff, timeouts
//! too large for a deadline, draining on reload, scale-down choosing whom to
//! stop, workers outliving a killed master, and descriptors leaking into
//! hooks. Each test is the reviewer's repro turned into facts polled with
//! deadlines; control-socket cases live in `ctl/tests/regressions.rs`.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

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
        .workers(workers)
        .start()
}

/// `GET /` on `addr`, giving up after `timeout` (a request that hangs is an
/// answer too: "nobody serves this").
fn get_within(addr: &str, timeout: Duration) -> Result<Response, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(timeout)).unwrap();
    s.set_write_timeout(Some(timeout)).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        .map_err(|e| format!("send to {addr}: {e}"))?;
    read_response(&mut s).map_err(|e| format!("read from {addr}: {e}"))
}

/// Whether `GET /` on `addr` answers 200 "Hello, World!" within 5 s.
fn hello_at(addr: &str) -> Result<(), String> {
    let r = get_within(addr, Duration::from_secs(5))?;
    if r.status == 200 && r.text() == "Hello, World!\n" {
        Ok(())
    } else {
        Err(format!("{addr} answered {} {:?}", r.status, r.text()))
    }
}

/// Waits until the log says a reload failed and exactly `workers` (the
/// generation that was serving) run again; panics with the log otherwise,
/// or at once if the master exited.
#[track_caller]
fn expect_rolled_back_to(srv: &mut Server, workers: &BTreeSet<i32>) {
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

/// utime + stime of `pid` in clock ticks (fields 14 and 15 of /proc/PID/stat).
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the ")" that closes the command name start at field 3.
    let rest = stat.rsplit_once(')').unwrap().1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields[14 - 3].parse().unwrap();
    let stime: u64 = fields[15 - 3].parse().unwrap();
    utime + stime
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(hz).ok().filter(|&hz| hz > 0).unwrap_or(100)
}

/// The master's descendants (children, their children, ...).
fn descendants_of(pid: i32) -> Vec<ProcInfo> {
    let all = all_processes();
    let mut found: Vec<ProcInfo> = Vec::new();
    let mut parents = vec![pid];
    while let Some(parent) = parents.pop() {
        for p in all.iter().filter(|p| p.ppid == parent) {
            parents.push(p.pid);
            found.push(p.clone());
        }
    }
    found
}

/// The inode of the socket behind `fd` of `pid`, as /proc shows it
/// (`socket:[INODE]`).
fn socket_inode(pid: i32, fd: i32) -> Option<String> {
    let target = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
    let text = target.to_string_lossy();
    text.strip_prefix("socket:[")?
        .strip_suffix(']')
        .map(str::to_string)
}

/// The descriptors of `pid` that refer to the socket with `inode`.
fn fds_holding_socket(pid: i32, inode: &str) -> Vec<String> {
    let wanted = format!("socket:[{inode}]");
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return vec![];
    };
    entries
        .flatten()
        .filter(|e| std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy() == wanted))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Whether a user and a group of these names exist (getpwnam/getgrnam).
fn user_and_group_exist(user: &str, group: &str) -> bool {
    let user = std::ffi::CString::new(user).unwrap();
    let group = std::ffi::CString::new(group).unwrap();
    // SAFETY: NUL-terminated names; the results are only compared to null.
    unsafe { !libc::getpwnam(user.as_ptr()).is_null() && !libc::getgrnam(group.as_ptr()).is_null() }
}

// ---------------------------------------------------------------------------
// 1. Two reloads in quick succession, the new app failing to load

#[test]
fn second_reload_during_a_failing_one_keeps_the_master_and_old_generation() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    write_config(dir.path(), "builtin:hello", 2, &[port], "");
    let mut srv = start_from_config(dir, 2);
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
    expect_rolled_back_to(&mut srv, &before);
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

// ---------------------------------------------------------------------------
// 2. Rolling back a failed reload restores the worker count and the binds

#[test]
fn failed_reload_to_more_workers_rolls_back_to_the_old_count() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    write_config(dir.path(), "builtin:hello", 1, &[port], "");
    let mut srv = start_from_config(dir, 1);
    let before = srv.worker_pids();
    write_config(srv.dir.path(), "builtin:debug?fail_load=1", 3, &[port], "");
    srv.signal_delivered(libc::SIGHUP);
    expect_rolled_back_to(&mut srv, &before);
    assert!(
        !wait_until(Duration::from_millis(1000), || srv.worker_pids() != before),
        "after the rollback the pool changed to {:?} (expected the single old worker {before:?}); log:\n{}",
        srv.worker_pids(),
        srv.log()
    );
    hello_at(srv.addr()).unwrap();
}

#[test]
fn failed_reload_to_another_port_keeps_serving_the_old_port() {
    let dir = tempfile::tempdir().unwrap();
    let (p, q) = (free_port(), free_port());
    write_config(dir.path(), "builtin:hello", 1, &[p], "");
    let mut srv = start_from_config(dir, 1);
    let before = srv.worker_pids();
    write_config(srv.dir.path(), "builtin:debug?fail_load=1", 1, &[q], "");
    srv.signal_delivered(libc::SIGHUP);
    expect_rolled_back_to(&mut srv, &before);
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

// ---------------------------------------------------------------------------
// 3. Adding a port on reload; a failed reload changes nothing

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

// ---------------------------------------------------------------------------
// 4. Scaling down while a respawn is delayed does not busy-loop the master

#[test]
fn scale_down_during_the_spawn_backoff_does_not_spin_the_master() {
    let srv = Server::start_with_workers(1, &["--no-control-socket", "builtin:debug?boot_sleep=2"]);
    srv.expect_log("Ready: 1 workers booted", Duration::from_secs(15));
    let booted = srv.worker_pids();
    srv.signal_delivered(libc::SIGTTIN);
    // Kill the extra worker while it boots, three times in a row: the
    // backoff before the next spawn grows to 400 ms, time enough to scale
    // down while it is pending.
    let mut killed = BTreeSet::new();
    for round in 1..=3 {
        let mut booting = 0;
        expect_within(Duration::from_secs(10), "a booting extra worker", || {
            let extra: Vec<i32> = srv
                .worker_pids()
                .into_iter()
                .filter(|p| !booted.contains(p) && !killed.contains(p))
                .collect();
            booting = extra.first().copied().unwrap_or(0);
            booting != 0
        });
        // SAFETY: plain kill(2) on the master's worker.
        unsafe { libc::kill(booting, libc::SIGKILL) };
        killed.insert(booting);
        srv.expect_log(
            &format!("{round} worker(s) in a row died before booting"),
            Duration::from_secs(10),
        );
    }
    srv.signal_delivered(libc::SIGTTOU);
    srv.expect_log("Number of workers: 2 -> 1", Duration::from_secs(5));
    let started = Instant::now();
    let before = cpu_ticks(srv.pid);
    assert!(!wait_until(Duration::from_secs(2), || !process_alive(
        srv.pid
    )));
    let used = cpu_ticks(srv.pid) - before;
    let elapsed = started.elapsed().as_secs_f64();
    // An idle master uses next to nothing; allow 15% of one CPU.
    let limit = (clock_ticks_per_second() as f64 * elapsed * 0.15) as u64;
    assert!(
        used < limit,
        "the master used {used} clock ticks of CPU in {elapsed:.2}s (limit {limit}): it spins; log:\n{}",
        srv.log()
    );
}

// ---------------------------------------------------------------------------
// 6. Timeouts too large for a deadline

#[test]
fn huge_timeouts_are_refused_or_honoured_without_panicking() {
    for flag in ["--timeout", "--graceful-timeout"] {
        let mut srv = Launch::new(&[
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

// ---------------------------------------------------------------------------
// 9. A reload under slow requests drains the old workers within the grace

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

// ---------------------------------------------------------------------------
// 10. Scale-down stops a booting worker before the booted one

#[test]
fn scale_down_keeps_the_booted_worker_over_a_booting_one() {
    let srv = Server::start_with_workers(1, &["--no-control-socket", "builtin:debug?boot_sleep=3"]);
    srv.expect_log("Ready: 1 workers booted", Duration::from_secs(15));
    let booted = srv.worker_pids();
    srv.signal_delivered(libc::SIGTTIN);
    expect_within(Duration::from_secs(5), "a second, booting worker", || {
        srv.worker_pids().len() == 2
    });
    srv.signal_delivered(libc::SIGTTOU);
    let started = Instant::now();
    let answer = get_within(srv.addr(), Duration::from_secs(10));
    let took = started.elapsed();
    expect_within(Duration::from_secs(10), "one worker left", || {
        srv.worker_pids().len() == 1
    });
    assert_eq!(
        srv.worker_pids(),
        booted,
        "TTOU stopped the booted worker and kept the booting one; log:\n{}",
        srv.log()
    );
    assert!(
        answer.as_ref().is_ok_and(|r| r.status == 200) && took < Duration::from_secs(1),
        "a request during the scale-down: {:?} after {took:?}",
        answer.map(|r| r.status)
    );
}

// ---------------------------------------------------------------------------
// 11. Workers that dropped privileges still die with their master

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
    let mut srv = Launch::new(&[
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
    .workers(1)
    .start();
    hello_at(srv.addr()).unwrap();
    let workers = srv.worker_pids();
    srv.signal(libc::SIGKILL);
    srv.wait_exit(Duration::from_secs(5));
    let gone = wait_until(Duration::from_secs(2), || {
        workers.iter().all(|&p| !process_alive(p))
    });
    let left: Vec<i32> = workers.into_iter().filter(|&p| process_alive(p)).collect();
    assert!(
        gone,
        "workers {left:?} (running as nobody) outlived the killed master by 2 s"
    );
}

// ---------------------------------------------------------------------------
// 12. Hooks do not inherit the listening socket

#[test]
fn on_starting_hook_does_not_hold_an_inherited_listener() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let fd = listener.as_raw_fd();
    let inode = socket_inode(std::process::id() as i32, fd).expect("a socket inode");
    let srv = Launch::new(&[
        "-b",
        "fd://3",
        "--no-control-socket",
        "--hook",
        "on_starting=sleep 3",
        "builtin:hello",
    ])
    .fd3(fd)
    .expect_tcp(true)
    .start();
    let mut hook: Vec<ProcInfo> = Vec::new();
    expect_within(
        Duration::from_secs(10),
        "the on_starting hook's sleep",
        || {
            hook = descendants_of(srv.pid)
                .into_iter()
                .filter(|p| p.comm != "gunicornd")
                .collect();
            hook.iter().any(|p| p.comm == "sleep")
        },
    );
    let holders: Vec<(ProcInfo, Vec<String>)> = hook
        .into_iter()
        .map(|p| {
            let fds = fds_holding_socket(p.pid, &inode);
            (p, fds)
        })
        .filter(|(_, fds)| !fds.is_empty())
        .collect();
    assert!(
        holders.is_empty(),
        "hook processes hold the listening socket (inode {inode}): {holders:?}"
    );
    drop(listener);
}
