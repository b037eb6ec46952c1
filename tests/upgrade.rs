//! Binary upgrade with signals, as gunicorn documents it: USR2 starts a new
//! master on the same sockets; WINCH then TERM to the old one hands over;
//! HUP to the old one and TERM to the new one roll back. (`gunicornctl
//! upgrade`, which does the whole dance, is tested in ctl/tests.)

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gunicornd_test_support::*;

const LONG: Duration = Duration::from_secs(20);

fn read_pid(path: &Path) -> Option<i32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn second(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".2");
    PathBuf::from(s)
}

/// A hello server with a pidfile `DIR/g.pid` and its control socket.
fn launch(workers: usize) -> Launch {
    let launch = Launch::hello(workers);
    let pidfile = launch.path("g.pid");
    launch.arg("-p").arg(pidfile)
}

/// A hello server from `DIR/gunicornd.toml` (which a test rewrites before
/// USR2: the new master reads it), on an OS-chosen port, with a pidfile;
/// `extra` arguments go before the app. Returns the server, the config
/// file and the pidfile.
fn from_config(extra: &[&str]) -> (Server, PathBuf, PathBuf) {
    let launch = Launch::from_config("workers = 1\napp = \"builtin:hello\"\n");
    let config = launch.path("gunicornd.toml");
    let pidfile = launch.path("g.pid");
    let mut launch = launch.arg("-b").arg("127.0.0.1:0").arg("-p").arg(&pidfile);
    for a in extra {
        launch = launch.arg(a);
    }
    (launch.booted(1).start(), config, pidfile)
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: plain kill(2) on a process this test started.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill({pid}, {sig})");
}

/// Send USR2 to `old` and wait for the new master to report ready; returns
/// its pid (read from `<pidfile>.2`).
#[track_caller]
fn upgrade_until_ready(srv: &Server, old: i32) -> i32 {
    let pidfile = srv.path("g.pid");
    let seen = srv
        .log()
        .matches("is ready, all its workers booted")
        .count();
    signal(old, libc::SIGUSR2);
    let new = poll_pid(&second(&pidfile));
    assert_ne!(new, old);
    expect_within(LONG, "the old master hears the new one is ready", || {
        srv.log()
            .matches(&format!(
                "the new master (pid:{new}) is ready, all its workers booted"
            ))
            .count()
            > 0
            && srv
                .log()
                .matches("is ready, all its workers booted")
                .count()
                > seen
    });
    new
}

/// WINCH then TERM to `old`; waits until `new` is promoted.
#[track_caller]
fn hand_over(srv: &Server, old: i32, new: i32) {
    let pidfile = srv.path("g.pid");
    signal(old, libc::SIGWINCH);
    signal(old, libc::SIGTERM);
    expect_within(LONG, "the old master gone, the new one promoted", || {
        !process_alive(old) && read_pid(&pidfile) == Some(new) && !second(&pidfile).exists()
    });
}

/// The pid in `path`, once there is one (the server may be on its second
/// or third master: its first one is not watched).
#[track_caller]
fn poll_pid(path: &Path) -> i32 {
    let mut pid = None;
    expect_within(LONG, &format!("a pid in {}", path.display()), || {
        pid = read_pid(path);
        pid.is_some()
    });
    pid.unwrap()
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn usr2_winch_term_hands_over_to_the_new_master_without_a_failed_request() {
    let srv = launch(2).start();
    let socket = srv.socket.clone().unwrap();
    let port = port_of(srv.addr());
    let inodes = listening_inodes(port);
    assert!(!inodes.is_empty());
    let load = Load::start(srv.addr(), 4, "/", 1_000_000);
    let mut master = srv.pid;
    for round in 0..3 {
        let new = upgrade_until_ready(&srv, master);
        assert!(
            second(&socket).exists(),
            "round {round}: the new master's .2 socket"
        );
        hand_over(&srv, master, new);
        srv.expect_log(
            &format!("[{new}] [INFO] Master has been promoted."),
            Duration::from_secs(5),
        );
        // The control socket moved to its normal path and answers as the new master.
        let ping: serde_json::Value = Conn::open(&socket).ok("ping");
        assert_eq!(ping["pid"].as_i64(), Some(new as i64), "round {round}");
        assert!(!second(&socket).exists(), "round {round}");
        // The same listening sockets throughout: nothing was rebound.
        assert_eq!(listening_inodes(port), inodes, "round {round}");
        master = new;
    }
    let (ok, failures) = load.finish();
    assert!(ok > 0);
    assert!(
        failures.is_empty(),
        "{} of {} requests failed across 3 upgrades: {:?}\n{}",
        failures.len(),
        ok + failures.len() as u64,
        &failures[..failures.len().min(5)],
        srv.log()
    );
    assert_eq!(read_pid(&srv.path("g.pid")), Some(master));
}

#[test]
fn usr2_winch_then_hup_and_term_to_the_new_master_rolls_back() {
    let srv = launch(2).start();
    let old = srv.pid;
    let old_workers = srv.worker_pids();
    let new = upgrade_until_ready(&srv, old);
    signal(old, libc::SIGWINCH);
    expect_within(LONG, "the old workers stopped", || {
        srv.worker_pids().is_disjoint(&old_workers) && children_of(old).len() == 1
    });
    signal(old, libc::SIGHUP);
    expect_within(LONG, "the old master has two workers again", || {
        srv.booted_count() == 2
    });
    signal(new, libc::SIGTERM);
    expect_within(LONG, "the new master gone with its files", || {
        !process_alive(new) && !second(&srv.path("g.pid")).exists()
    });
    srv.expect_log(
        &format!("Upgrade ended without a takeover (pid:{new}): the new master exited with code 0"),
        Duration::from_secs(5),
    );
    assert_eq!(read_pid(&srv.path("g.pid")), Some(old));
    assert_eq!(srv.get("/").status, 200);
    let ping: serde_json::Value = Conn::open(srv.socket.as_ref().unwrap()).ok("ping");
    assert_eq!(ping["pid"].as_i64(), Some(old as i64));
}

#[test]
fn a_second_usr2_during_an_upgrade_is_refused_and_changes_nothing() {
    let srv = launch(1).start();
    let old = srv.pid;
    let new = upgrade_until_ready(&srv, old);
    let before: BTreeSet<i32> = children_of(old);
    srv.signal_delivered(libc::SIGUSR2);
    srv.expect_log(
        &format!("USR2 signal ignored: a new master (pid {new}) is already running"),
        Duration::from_secs(5),
    );
    signal(new, libc::SIGUSR2);
    srv.expect_log(
        &format!("[{new}] [WARNING] USR2 signal ignored: this is a new master not yet promoted"),
        Duration::from_secs(5),
    );
    assert_eq!(
        children_of(old),
        before,
        "no third master, no worker changed"
    );
    assert_eq!(children_of(new).len(), 1);
}

#[test]
fn the_new_master_gets_the_listeners_and_the_channel_and_nothing_else() {
    let srv = launch(1).start();
    let old = srv.pid;
    let new = upgrade_until_ready(&srv, old);
    let listeners: BTreeSet<u64> = listening_inodes(port_of(srv.addr())).into_iter().collect();
    // The listener is fd 3, the channel to the old master fd 4.
    assert!(listeners.contains(&socket_inode(new, 3).expect("fd 3 is a socket")));
    assert!(socket_inode(new, 4).is_some(), "fd 4: the upgrade channel");
    // Everything else is what any master opens for itself (whatever else
    // the old master inherited from whoever started it does not cross):
    // 0-2, its pidfile (held open: it holds the file's lock), the signal
    // pipe, the worker scoreboard (a memfd), the worker channel (a socket
    // pair), the event loop, the control socket.
    let mut fds: Vec<(i32, String)> = fs::read_dir(format!("/proc/{new}/fd"))
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let fd: i32 = e.file_name().to_str()?.parse().ok()?;
            let target = fs::read_link(e.path()).ok()?.to_string_lossy().to_string();
            Some((fd, target.split(':').next().unwrap().to_string()))
        })
        .collect();
    fds.sort();
    let kinds: Vec<&str> = fds[3..].iter().map(|(_, k)| k.as_str()).collect();
    let pidfile = second(&srv.path("g.pid")).display().to_string();
    assert_eq!(
        kinds,
        [
            "socket",
            "socket",
            &pidfile,
            "pipe",
            "pipe",
            "/memfd",
            "socket",
            "socket",
            "anon_inode",
            "socket",
            "anon_inode"
        ],
        "the new master's descriptors from 3 on: {fds:?}"
    );
    assert_eq!(
        fds.last().unwrap().0,
        13,
        "numbered 0 to 13 without gaps: {fds:?}"
    );
    let environ = fs::read(format!("/proc/{new}/environ")).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    assert!(
        environ.contains(&format!("GUNICORN_PID={old}\0")),
        "{environ}"
    );
    assert!(environ.contains("GUNICORN_FD=3\0"), "{environ}");
}

#[test]
fn a_broken_new_binary_leaves_the_old_master_serving() {
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("gunicornd");
    fs::copy(gunicornd_bin(), &program).unwrap();
    let srv = launch(1).binary(&program).start();
    let old = srv.pid;
    // The package manager installs something that does not start.
    fs::remove_file(&program).unwrap();
    fs::write(&program, "#!/bin/sh\necho 'broken build' >&2\nexit 1\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&program, fs::Permissions::from_mode(0o755)).unwrap();
    srv.signal_delivered(libc::SIGUSR2);
    srv.expect_log(
        "the new master exited with code 1; this master serves on",
        LONG,
    );
    assert!(!second(&srv.path("g.pid")).exists());
    assert_eq!(read_pid(&srv.path("g.pid")), Some(old));
    assert_eq!(srv.get("/").status, 200);
    let ping: serde_json::Value = Conn::open(srv.socket.as_ref().unwrap()).ok("ping");
    assert_eq!(ping["pid"].as_i64(), Some(old as i64));
    // A path that cannot be executed at all fails at once, with the reason.
    fs::remove_file(&program).unwrap();
    let error = Conn::open(srv.socket.as_ref().unwrap()).error("upgrade");
    assert!(
        error.contains("upgrade failed: cannot execute") && error.contains("No such file"),
        "{error}"
    );
    assert!(process_alive(old));
}

#[test]
fn a_new_app_that_fails_to_load_leaves_the_old_master_serving() {
    let (srv, config, pidfile) = from_config(&["--control-socket", "ctl.sock"]);
    fs::write(
        &config,
        "workers = 1\napp = \"builtin:debug?fail_load=1\"\n",
    )
    .unwrap();
    srv.signal_delivered(libc::SIGUSR2);
    srv.expect_log(
        "the new master exited with code 4: its app failed to load",
        LONG,
    );
    assert!(!second(&pidfile).exists());
    assert!(!second(&launch_socket(&pidfile)).exists());
    assert_eq!(read_pid(&pidfile), Some(srv.pid));
    assert_eq!(srv.get("/").status, 200);
}

fn launch_socket(pidfile: &Path) -> PathBuf {
    pidfile.with_file_name("ctl.sock")
}

#[test]
fn a_new_master_not_ready_within_the_upgrade_timeout_is_killed() {
    let (srv, config, pidfile) = from_config(&["--upgrade-timeout", "1"]);
    // The new generation's workers hang while booting.
    fs::write(
        &config,
        "workers = 1\napp = \"builtin:debug?boot_sleep=60\"\n",
    )
    .unwrap();
    srv.signal_delivered(libc::SIGUSR2);
    let new = poll_pid(&second(&pidfile));
    srv.expect_log(
        "the new master was not ready within 1 s (--upgrade-timeout) and was killed",
        LONG,
    );
    expect_within(LONG, "the new master and its workers gone", || {
        !process_alive(new) && !second(&pidfile).exists()
    });
    assert_eq!(srv.get("/").status, 200);
    assert_eq!(read_pid(&pidfile), Some(srv.pid));
}

#[test]
fn hooks_keep_working_across_an_upgrade() {
    let launch = launch(1);
    let record = launch.path("hooks.log");
    let hook = |name: &str| {
        format!(
            "{name}=echo {name} $GUNICORND_PID $GUNICORND_WORKER_PID >> {}",
            record.display()
        )
    };
    let srv = launch
        .arg("--hook")
        .arg(hook("pre_exec"))
        .arg("--hook")
        .arg(hook("child_exit"))
        .arg("--hook")
        .arg(hook("post_fork"))
        .start();
    let old = srv.pid;
    let new = upgrade_until_ready(&srv, old);
    let lines = || fs::read_to_string(&record).unwrap_or_default();
    expect_within(LONG, "pre_exec ran with the old master's pid", || {
        lines().contains(&format!("pre_exec {old}"))
    });
    hand_over(&srv, old, new);
    // The new master forks and collects its workers with its own hooks.
    let worker = *children_of(new)
        .iter()
        .next()
        .expect("a worker of the new master");
    signal(worker, libc::SIGKILL);
    expect_within(LONG, "child_exit and post_fork from the new master", || {
        let text = lines();
        text.contains(&format!("child_exit {new} {worker}"))
            && text.matches(&format!("post_fork {new} ")).count() >= 2
    });
}

#[test]
fn a_new_configuration_that_does_not_load_leaves_the_old_master_serving() {
    let (srv, config, pidfile) = from_config(&[]);
    fs::write(&config, "workers = \"many\"\n").unwrap();
    srv.signal_delivered(libc::SIGUSR2);
    srv.expect_log("Upgrade ended without a takeover", LONG);
    srv.expect_log("this master serves on", LONG);
    assert!(!second(&pidfile).exists());
    assert_eq!(read_pid(&pidfile), Some(srv.pid));
    assert_eq!(srv.get("/").status, 200);
}

#[test]
fn a_unix_socket_file_is_kept_across_an_upgrade_and_removed_by_the_last_master() {
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.sock");
    let pidfile = dir.path().join("g.pid");
    let bind = format!("unix:{}", web.display());
    let srv = Launch::new(&["-b", &bind, "-w", "1", "-p"])
        .arg(&pidfile)
        .arg("--control-socket")
        .arg(dir.path().join("ctl.sock"))
        .arg("builtin:hello")
        .in_dir(dir)
        .expect_tcp(false)
        .booted(1)
        .start();
    use std::os::unix::fs::MetadataExt;
    let inode = fs::metadata(&web).unwrap().ino();
    let new = upgrade_until_ready(&srv, srv.pid);
    hand_over(&srv, srv.pid, new);
    assert_eq!(
        fs::metadata(&web).map(|m| m.ino()).ok(),
        Some(inode),
        "the old master left the socket file to the new one\n{}",
        srv.log()
    );
    let mut stream = std::os::unix::net::UnixStream::connect(&web).unwrap();
    use std::io::{Read, Write};
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    signal(new, libc::SIGTERM);
    expect_within(
        LONG,
        "the promoted master gone and its socket file removed",
        || !process_alive(new) && !web.exists(),
    );
}

#[test]
fn the_new_master_takes_over_when_the_old_one_is_killed() {
    let srv = launch(1).start();
    let old = srv.pid;
    let new = upgrade_until_ready(&srv, old);
    signal(old, libc::SIGKILL);
    expect_within(LONG, "the new master promoted", || {
        read_pid(&srv.path("g.pid")) == Some(new) && !second(&srv.path("g.pid")).exists()
    });
    srv.expect_log(&format!("[{new}] [INFO] Master has been promoted."), LONG);
    expect_within(LONG, "served by the new master's workers", || {
        try_http_request(srv.addr(), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .is_ok_and(|r| r.status == 200)
    });
}

#[test]
fn a_daemon_is_upgraded_and_its_new_master_stays_detached() {
    let srv = Launch::hello(1).daemon().start();
    let pidfile = srv.path("app.pid");
    let old = srv.pid;
    signal(old, libc::SIGUSR2);
    let new = poll_pid(&second(&pidfile));
    expect_within(LONG, "the new master ready", || {
        fs::read_to_string(srv.path("error.log"))
            .unwrap_or_default()
            .contains(&format!("the new master (pid:{new}) is ready"))
    });
    signal(old, libc::SIGWINCH);
    signal(old, libc::SIGTERM);
    expect_within(LONG, "the new daemon promoted", || {
        !process_alive(old) && read_pid(&pidfile) == Some(new)
    });
    // It did not daemonize again: the same session as the old master had,
    // stdio still on /dev/null.
    for fd in 0..3 {
        let target = fs::read_link(format!("/proc/{new}/fd/{fd}")).unwrap();
        assert_eq!(target, Path::new("/dev/null"), "fd {fd}");
    }
    signal(new, libc::SIGTERM);
    expect_within(LONG, "the new daemon gone", || !process_alive(new));
}

#[test]
fn new_workers_that_fail_to_boot_leave_the_old_master_serving() {
    let (srv, config, pidfile) = from_config(&[]);
    fs::write(
        &config,
        "workers = 1\napp = \"builtin:debug?boot_exit=3\"\n",
    )
    .unwrap();
    srv.signal_delivered(libc::SIGUSR2);
    srv.expect_log(
        "the new master exited with code 3: its workers failed to boot",
        LONG,
    );
    assert!(!second(&pidfile).exists());
    assert_eq!(srv.get("/").status, 200);
}

#[test]
fn an_fd_bind_is_handed_over_by_position() {
    let passed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = passed.local_addr().unwrap().to_string();
    let launch = Launch::new(&["-b", "fd://3", "-w", "1", "builtin:hello"]);
    let pidfile = launch.path("g.pid");
    use std::os::fd::AsRawFd;
    let srv = launch
        .arg("-p")
        .arg(&pidfile)
        .fd3(passed.as_raw_fd())
        .booted(1)
        .start();
    drop(passed);
    let new = upgrade_until_ready(&srv, srv.pid);
    hand_over(&srv, srv.pid, new);
    let r = try_http_request(&addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(r.status, 200);
    let log = srv.log();
    let listening = log
        .lines()
        .filter(|l| l.contains(&format!("[{new}]")) && l.contains("Listening at:"))
        .collect::<Vec<_>>();
    assert_eq!(
        listening.len(),
        1,
        "one socket, adopted once: {listening:?}"
    );
    assert!(!listening[0].contains(','), "{listening:?}");
}

#[test]
fn a_new_release_that_binds_another_address_listens_there_after_the_upgrade() {
    let first = free_port();
    let second_port = free_port();
    let launch = Launch::from_config(&format!(
        "workers = 1\napp = \"builtin:hello\"\nbind = [\"127.0.0.1:{first}\"]\n"
    ));
    let config = launch.path("gunicornd.toml");
    let pidfile = launch.path("g.pid");
    let srv = launch.arg("-p").arg(&pidfile).booted(1).start();
    fs::write(
        &config,
        format!("workers = 1\napp = \"builtin:hello\"\nbind = [\"127.0.0.1:{second_port}\"]\n"),
    )
    .unwrap();
    let new = upgrade_until_ready(&srv, srv.pid);
    hand_over(&srv, srv.pid, new);
    let r = try_http_request(
        &format!("127.0.0.1:{second_port}"),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    expect_within(LONG, "the old address closed with the old master", || {
        std::net::TcpStream::connect(format!("127.0.0.1:{first}")).is_err()
    });
}

#[test]
fn a_new_master_started_through_a_wrapper_that_forks_never_takes_over() {
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("gunicornd");
    let real = dir.path().join("gunicornd.real");
    fs::copy(gunicornd_bin(), &program).unwrap();
    fs::copy(gunicornd_bin(), &real).unwrap();
    let launch = launch(1).binary(&program).arg("--upgrade-timeout").arg("2");
    let srv = launch.start();
    let old = srv.pid;
    // A wrapper that runs the binary as its child instead of exec'ing it.
    fs::remove_file(&program).unwrap();
    fs::write(
        &program,
        format!("#!/bin/sh\n\"{}\" \"$@\"\n", real.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&program, fs::Permissions::from_mode(0o755)).unwrap();
    srv.signal_delivered(libc::SIGUSR2);
    let grandchild = poll_pid(&second(&srv.path("g.pid")));
    srv.expect_log(
        &format!("Upgrade: pid {grandchild} says it is ready, but the new master started is pid"),
        LONG,
    );
    srv.expect_log("was killed", LONG);
    srv.expect_log("gave up on this master; stopping", LONG);
    expect_within(LONG, "the orphaned new master gone", || {
        !process_alive(grandchild)
    });
    assert_eq!(read_pid(&srv.path("g.pid")), Some(old));
    let ping: serde_json::Value = Conn::open(srv.socket.as_ref().unwrap()).ok("ping");
    assert_eq!(ping["pid"].as_i64(), Some(old as i64));
    assert!(process_alive(old));
}
