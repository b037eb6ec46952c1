//! In-place binary upgrade (`upgrade_mode = "in-place"`, `gunicornctl
//! upgrade --in-place`): the same master pid runs the new binary, serving
//! throughout; the probe of the new binary, and a failed probe changing
//! nothing.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use gunicornd_test_support::control::booted_workers;
use gunicornd_test_support::*;

const LONG: Duration = Duration::from_secs(20);

/// A hello server run from a copy of gunicornd in its own directory, so
/// that a test can replace the binary; returns the server and the copy.
fn from_copy(workers: usize, extra: &[&str]) -> (Server, std::path::PathBuf) {
    let launch = Launch::hello(workers);
    let program = launch.path("gunicornd");
    fs::copy(gunicornd_bin(), &program).unwrap();
    let mut launch = launch.binary(&program);
    for a in extra {
        launch = launch.arg(a);
    }
    (launch.start(), program)
}

/// Replaces `program` by a script (a new file, as a package manager does).
fn install_script(program: &Path, script: &str) {
    fs::remove_file(program).unwrap();
    fs::write(program, script).unwrap();
    fs::set_permissions(program, fs::Permissions::from_mode(0o755)).unwrap();
}

/// Installs a fresh copy of gunicornd at `program` (a new inode).
fn install_copy(program: &Path) {
    fs::remove_file(program).unwrap();
    fs::copy(gunicornd_bin(), program).unwrap();
}

/// `gunicornctl upgrade --in-place`, which must succeed.
#[track_caller]
fn upgrade_in_place(srv: &Server) -> std::process::Output {
    let out = ctl(&["-s", srv.sock(), "upgrade", "--in-place"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    out
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn three_in_place_upgrades_under_load_keep_the_pid_and_replace_every_worker() {
    let (srv, program) = from_copy(2, &[]);
    let port = port_of(srv.addr());
    let inodes = listening_inodes(port);
    let load = Load::start(srv.addr(), 4, "/", 1_000_000);
    let mut workers = srv.wait_booted(2);
    for round in 0..3 {
        install_copy(&program);
        let out = ctl(&["-s", srv.sock(), "upgrade", "--in-place"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "round {round}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        let mut now = Default::default();
        expect_within(
            LONG,
            &format!("round {round}: a new generation alone"),
            || {
                now = srv.worker_pids();
                now.len() == 2
                    && now.is_disjoint(&workers)
                    && workers.iter().all(|&w| !process_alive(w))
                    && booted_workers(srv.socket.as_ref().unwrap()).is_some_and(|b| b == now)
            },
        );
        workers = now;
        assert!(process_alive(srv.pid), "round {round}");
        let exe = fs::read_link(format!("/proc/{}/exe", srv.pid)).unwrap();
        assert_eq!(exe, program, "round {round}: the master runs the new file");
        // gunicornctl status names the file it runs, so the upgrade shows.
        let ino = fs::metadata(&program).unwrap().ino();
        let status = ctl_ok(&["-s", srv.sock(), "status"]);
        assert!(
            status.contains(&format!("{} (inode {ino}, modified ", program.display())),
            "round {round}: {status}"
        );
        assert!(status.contains("exec'd"), "{status}");
        assert_eq!(
            listening_inodes(port),
            inodes,
            "round {round}: nothing rebound"
        );
    }
    let ping: serde_json::Value = Conn::open(srv.socket.as_ref().unwrap()).ok("ping");
    assert_eq!(ping["pid"].as_i64(), Some(srv.pid as i64));
    let (ok, failures) = load.finish();
    assert!(ok > 0);
    assert!(
        failures.is_empty(),
        "{} of {} requests failed across 3 in-place upgrades: {:?}\n{}",
        failures.len(),
        ok + failures.len() as u64,
        &failures[..failures.len().min(5)],
        srv.log()
    );
}

#[test]
fn a_state_of_another_version_still_ends_with_the_new_generation_alone() {
    let launch = Launch::hello(2).env("GUNICORND_STATE_VERSION_OVERRIDE", "999");
    let srv = launch.start();
    let old = srv.wait_booted(2);
    upgrade_in_place(&srv);
    srv.expect_log("Upgrade state unreadable: the state is version 2", LONG);
    expect_within(LONG, "the new generation alone", || {
        let now = srv.worker_pids();
        now.len() == 2 && now.is_disjoint(&old) && old.iter().all(|&w| !process_alive(w))
    });
    assert_eq!(srv.get("/").status, 200);
}

/// The master's open descriptors, by what they are (`socket:[INODE]`
/// numbers differ between images, so only the kind is kept).
fn fd_kinds(pid: i32) -> Vec<String> {
    let mut kinds: Vec<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .map(|target| {
            let t = target.to_string_lossy().into_owned();
            match t.split_once(':') {
                Some((kind, _)) if !t.starts_with('/') => kind.to_owned(),
                _ => t,
            }
        })
        .collect();
    kinds.sort();
    kinds
}

#[test]
fn nothing_but_what_is_handed_over_crosses_the_exec() {
    let (srv, program) = from_copy(1, &[]);
    let old = srv.wait_booted(1);
    let before = fd_kinds(srv.pid);
    let socket = srv.socket.clone().unwrap();
    let socket_file = fs::metadata(&socket).unwrap().ino();
    install_copy(&program);
    let out = upgrade_in_place(&srv);
    // gunicornctl returns once the new image's workers have booted.
    assert!(
        stdout(&out).contains("runs the new binary, its workers booted"),
        "{}",
        stdout(&out)
    );
    assert!(srv.log_contains("Upgraded in place"), "{}", srv.log());
    expect_within(LONG, "the new generation alone", || {
        let now = srv.worker_pids();
        now.len() == 1 && now.is_disjoint(&old) && old.iter().all(|&w| !process_alive(w))
    });
    // No more descriptors than the first image held: the listener crossed
    // the exec (and the state, read and closed); nothing else leaked in,
    // and what the first image had inherited without need (from whoever
    // started it) did not cross either.
    let mut after = Vec::new();
    let subset = wait_until(LONG, || {
        after = fd_kinds(srv.pid);
        let mut left = before.clone();
        after
            .iter()
            .all(|k| match left.iter().position(|b| b == k) {
                Some(i) => {
                    left.remove(i);
                    true
                }
                None => false,
            })
    });
    assert!(subset, "before the exec: {before:?}\nafter it: {after:?}");
    let environ = fs::read(format!("/proc/{}/environ", srv.pid)).unwrap();
    assert!(String::from_utf8_lossy(&environ).contains("GUNICORND_STATE_FD="));
    // The control socket was not bound anew: the same file, the same
    // listener (so a client connecting during the exec waits, not refused).
    srv.expect_log("kept across the upgrade", LONG);
    assert_eq!(fs::metadata(&socket).unwrap().ino(), socket_file);
    let ping: serde_json::Value = Conn::open(&socket).ok("ping");
    assert_eq!(ping["pid"].as_i64(), Some(srv.pid as i64));
}

#[test]
fn a_broken_new_binary_fails_the_probe_and_the_master_serves_on() {
    let (srv, program) = from_copy(1, &[]);
    let workers = srv.wait_booted(1);
    install_script(&program, "#!/bin/sh\necho 'broken build' >&2\nexit 1\n");
    let out = ctl(&["-s", srv.sock(), "upgrade", "--in-place"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("the new binary failed the probe: broken build (exit status: 1)"),
        "{err}"
    );
    srv.expect_log("the new binary failed the probe: broken build", LONG);
    assert!(process_alive(srv.pid));
    assert_eq!(srv.worker_pids(), workers, "nothing changed");
    assert_eq!(srv.get("/").status, 200);
}

#[test]
fn a_probe_that_hangs_does_not_stop_the_master_and_times_out() {
    let (srv, program) = from_copy(1, &[]);
    let workers = srv.wait_booted(1);
    // exec: the probe's pid is the sleep's, so the kill at the deadline
    // ends it (no orphan keeps the pipe open).
    install_script(
        &program,
        "#!/bin/sh
exec sleep 60
",
    );
    let socket = srv.socket.clone().unwrap();
    let sock = srv.sock().to_string();
    let upgrade = std::thread::spawn(move || ctl(&["-s", &sock, "upgrade", "--in-place"]));
    srv.expect_log("Upgrade: probing the new binary", LONG);
    // The master serves on while the probe runs: the control socket
    // answers at once, and so do the workers; a second upgrade is refused.
    let asked = std::time::Instant::now();
    let ping: serde_json::Value = Conn::open(&socket).ok("ping");
    assert_eq!(ping["pid"].as_i64(), Some(srv.pid as i64));
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(srv.get("/").status, 200);
    let again = ctl(&["-s", srv.sock(), "upgrade", "--in-place"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("its probe, pid"),
        "{}",
        stderr(&again)
    );
    let out = upgrade.join().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("the new binary failed the probe: it did not answer within 10 s"),
        "{}",
        stderr(&out)
    );
    assert_eq!(srv.worker_pids(), workers, "nothing changed");
    assert_eq!(srv.get("/").status, 200);
}

#[test]
fn the_pidfile_stays_and_is_removed_at_the_end() {
    let launch = Launch::hello(1);
    let pidfile = launch.path("g.pid");
    let srv = launch.arg("-p").arg(&pidfile).start();
    upgrade_in_place(&srv);
    assert_eq!(
        fs::read_to_string(&pidfile).unwrap().trim(),
        srv.pid.to_string()
    );
    srv.signal(libc::SIGTERM);
    assert_eq!(srv.wait_exit(LONG), 0, "{}", srv.log());
    assert!(!pidfile.exists(), "the new image removed the pidfile");
    assert!(
        !srv.socket.as_ref().unwrap().exists(),
        "and the control socket"
    );
}

#[test]
fn a_unix_socket_the_master_bound_stays_its_own_to_remove() {
    let launch = Launch::hello(1);
    let sock = launch.path("app.sock");
    let srv = launch
        .arg("-b")
        .arg(format!("unix:{}", sock.display()))
        .start();
    let inode = fs::metadata(&sock).unwrap().ino();
    upgrade_in_place(&srv);
    assert_eq!(fs::metadata(&sock).unwrap().ino(), inode, "not bound again");
    srv.signal(libc::SIGTERM);
    assert_eq!(srv.wait_exit(LONG), 0, "{}", srv.log());
    assert!(!sock.exists(), "the new image removed the socket file");
}

#[test]
fn a_failed_exec_leaves_the_old_image_serving() {
    let (srv, program) = from_copy(1, &[]);
    let workers = srv.wait_booted(1);
    // Passes the probe, then is gone when the master execs it.
    install_script(&program, "#!/bin/sh\nrm -f \"$0\"\nexit 0\n");
    let out = ctl(&["-s", srv.sock(), "upgrade", "--in-place"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("upgrade failed: cannot execute") && err.contains("ENOENT"),
        "{err}"
    );
    assert!(process_alive(srv.pid));
    assert_eq!(srv.worker_pids(), workers, "nothing changed");
    assert_eq!(srv.get("/").status, 200);
    let ping: serde_json::Value = Conn::open(srv.socket.as_ref().unwrap()).ok("ping");
    assert_eq!(ping["pid"].as_i64(), Some(srv.pid as i64));
}

#[test]
fn the_probe_checks_the_configuration_of_the_new_binary() {
    // `upgrade_mode = "in-place"` makes a plain USR2 (and `upgrade` without
    // a mode) upgrade in place; the probe gets the original arguments.
    let (srv, program) = from_copy(1, &["--upgrade-mode", "in-place"]);
    let args = srv.path("probe-args");
    install_script(
        &program,
        &format!(
            "#!/bin/sh\necho \"$@\" > {}\necho 'Error: no such setting' >&2\nexit 2\n",
            args.display()
        ),
    );
    srv.signal_delivered(libc::SIGUSR2);
    srv.expect_log(
        "the new binary failed the probe: no such setting (exit status: 2)",
        LONG,
    );
    let given = fs::read_to_string(&args).unwrap();
    assert!(
        given.starts_with("--upgrade-probe 2 ") && given.contains("--upgrade-mode in-place"),
        "{given}"
    );
    assert!(process_alive(srv.pid));
    assert_eq!(srv.get("/").status, 200);
}

#[test]
fn the_probe_flag_answers_for_the_state_version() {
    let dir = tempfile::tempdir().unwrap();
    let probe = |version: &str| {
        let mut cmd = std::process::Command::new(gunicornd_bin());
        without_inherited_settings(&mut cmd)
            .current_dir(dir.path())
            .args(["--upgrade-probe", version, "builtin:hello"])
            .output()
            .unwrap()
    };
    let ok = probe("2");
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    let other = probe("999");
    assert_eq!(other.status.code(), Some(1));
    assert!(
        stderr(&other).contains("reads upgrade state version 2, not 999"),
        "{}",
        stderr(&other)
    );
}

const UNSHARE: &[&str] = &["unshare", "--pid", "--fork", "--kill-child"];

#[test]
fn as_pid_1_the_master_upgrades_in_place_and_never_exits() {
    let allowed = std::process::Command::new(UNSHARE[0])
        .args(&UNSHARE[1..])
        .arg("true")
        .output()
        .is_ok_and(|o| o.status.success());
    if !allowed {
        eprintln!("skipped: this host does not let us create a PID namespace");
        return;
    }
    let srv = Launch::hello(2).booted(0).wrapper(UNSHARE).start();
    let socket = srv.socket.clone().unwrap();
    let mut inner = 0;
    expect_within(LONG, "gunicornd forked by unshare", || {
        let kids = children_of(srv.pid);
        inner = kids.iter().next().copied().unwrap_or(0);
        kids.len() == 1 && proc_info(inner).is_some_and(|p| p.comm == "gunicornd")
    });
    let ping: serde_json::Value = Conn::open(&socket).ok("ping");
    assert_eq!(ping["pid"].as_i64(), Some(1), "the master is PID 1");
    let mut old = None;
    expect_within(LONG, "two booted workers", || {
        old = booted_workers(&socket).filter(|b| b.len() == 2);
        old.is_some()
    });
    let old = old.unwrap();
    upgrade_in_place(&srv);
    expect_within(LONG, "a new generation alone", || {
        booted_workers(&socket).is_some_and(|b| b.len() == 2 && b.is_disjoint(&old))
            && all_children_of(inner)
                .iter()
                .filter(|p| p.state != 'Z')
                .count()
                == 2
    });
    assert!(process_alive(srv.pid), "unshare still runs");
    assert_eq!(children_of(srv.pid), [inner].into(), "the same PID 1");
    assert_eq!(srv.get("/").status, 200);
}

/// Each worker's pid and seconds since its last heartbeat, as `show
/// workers` has them.
fn heartbeats(socket: &Path) -> Vec<(i32, f64)> {
    let reply: serde_json::Value = Conn::open(socket).ok("show workers");
    reply["workers"]
        .as_array()
        .map(|ws| {
            ws.iter()
                .filter_map(|w| Some((w["pid"].as_i64()? as i32, w["last_heartbeat"].as_f64()?)))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn an_adopted_worker_that_hangs_is_killed_by_its_heartbeat_after_the_exec() {
    // The first image tolerates a long silence; the configuration the new
    // one reads does not, and its workers take 2 s to boot, so that the
    // adopted worker's silence is judged by the new image before any new
    // worker replaces it.
    let config = |timeout: u64, app: &str| {
        format!(
            "bind = \"127.0.0.1:0\"\nworkers = 2\ntimeout = {timeout}\n\
             graceful_timeout = 60\napp = \"{app}\"\n"
        )
    };
    let srv = Launch::from_config(&config(120, "builtin:debug"))
        .control_socket()
        .booted(2)
        .start();
    let socket = srv.socket.clone().unwrap();
    // One worker hangs in a request (builtin:debug's sleep beats nothing).
    let addr = srv.addr().to_string();
    let request = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        use std::io::{Read, Write};
        let _ = s.write_all(b"GET /?sleep=60 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
    });
    let mut hung = 0;
    expect_within(LONG, "a worker silent for 4 s", || {
        hung = heartbeats(&socket)
            .into_iter()
            .find(|&(_, silence)| silence >= 4.0)
            .map_or(0, |(pid, _)| pid);
        hung != 0
    });
    fs::write(
        srv.path("gunicornd.toml"),
        config(3, "builtin:debug?boot_sleep=2"),
    )
    .unwrap();
    upgrade_in_place(&srv);
    // The new image watches the heartbeat the worker stopped giving before
    // the exec: the timeout, not the 60 s graceful stop, ends it.
    srv.expect_log(&format!("WORKER TIMEOUT (pid:{hung})"), LONG);
    expect_within(LONG, "the hung worker gone", || !process_alive(hung));
    assert!(process_alive(srv.pid));
    request.join().unwrap();
    expect_within(LONG, "two new workers serving", || {
        booted_workers(&socket).is_some_and(|b| b.len() == 2 && !b.contains(&hung))
    });
}

#[test]
fn the_scoreboard_is_the_masters_alone_to_hand_over() {
    // The master holds the table (a memfd) so an in-place upgrade can hand
    // it on; a worker must not, or it could map every other worker's slot
    // again (it keeps its own slot's page mapped, and nothing else).
    let srv = Launch::hello(1).start();
    let worker = *srv.wait_booted(1).iter().next().unwrap();
    let is_board = |p: &std::path::PathBuf| p.to_string_lossy().contains("gunicornd-scoreboard");
    assert!(open_files(srv.pid).iter().any(is_board));
    assert!(
        !open_files(worker).iter().any(is_board),
        "{:?}",
        open_files(worker)
    );
    let maps = fs::read_to_string(format!("/proc/{worker}/maps")).unwrap();
    let mapped: Vec<&str> = maps
        .lines()
        .filter(|l| l.contains("gunicornd-scoreboard"))
        .collect();
    assert_eq!(mapped.len(), 1, "one page of the table: {mapped:?}");
}

#[test]
fn an_upgrade_during_a_reload_ends_with_the_new_generation_alone() {
    let config = |app: &str| format!("bind = \"127.0.0.1:0\"\nworkers = 2\napp = \"{app}\"\n");
    let srv = Launch::from_config(&config("builtin:hello"))
        .control_socket()
        .booted(2)
        .start();
    let first = srv.wait_booted(2);
    // The reload's workers take 2 s to boot: the upgrade comes meanwhile.
    fs::write(
        srv.path("gunicornd.toml"),
        config("builtin:debug?boot_sleep=2"),
    )
    .unwrap();
    srv.signal_delivered(libc::SIGHUP);
    srv.expect_log("Reloading: starting generation 2", LONG);
    let load = Load::start(srv.addr(), 2, "/", 1_000_000);
    upgrade_in_place(&srv);
    srv.expect_log("(a reload was in progress)", LONG);
    let socket = srv.socket.clone().unwrap();
    expect_within(LONG, "the new image's generation alone", || {
        booted_workers(&socket).is_some_and(|b| b.len() == 2 && b.is_disjoint(&first))
            && srv.worker_pids().len() == 2
    });
    srv.expect_log("Reload complete: generation 3", LONG);
    let (ok, failures) = load.finish();
    assert!(ok > 0);
    assert!(failures.is_empty(), "{failures:?}\n{}", srv.log());
}
