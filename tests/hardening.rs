//! The master against hostile neighbours: local users who race it for its
//! files. A Unix socket that answers is not taken over and a socket file
//! is removed only while it is still the master's; owners are changed
//! without following symlinks; `--user` leaves no group from root; workers
//! reopen their logs after dropping privileges; one pidfile admits one
//! master; `static:DIR` serves nothing outside DIR and no dotfiles.
//!
//! Tests that switch users need root and the user nobody with the group
//! nogroup (CI runs as root); elsewhere they say SKIPPED and pass.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gunicornd_test_support::*;

/// Generous: binding retries for 4 s before a start fails.
const LONG: Duration = Duration::from_secs(30);

/// nobody's uid and nogroup's gid, when the test runs as root and both
/// exist; `None` (after saying so) otherwise.
fn nobody() -> Option<(u32, u32)> {
    let user = nix::unistd::User::from_name("nobody").ok().flatten();
    let group = nix::unistd::Group::from_name("nogroup").ok().flatten();
    match (nix::unistd::geteuid().is_root(), user, group) {
        (true, Some(u), Some(g)) => Some((u.uid.as_raw(), g.gid.as_raw())),
        _ => {
            eprintln!("SKIPPED: needs root and the user nobody / group nogroup");
            None
        }
    }
}

fn unix_bind(path: &Path) -> String {
    format!("unix:{}", path.display())
}

/// A server on the Unix socket `sock` only, in `dir`.
fn on_unix_socket(dir: tempfile::TempDir, sock: &Path, args: &[&str]) -> Launch {
    let bind = unix_bind(sock);
    let mut all = vec!["-b", &bind];
    all.extend_from_slice(args);
    all.push("builtin:hello");
    Launch::new(&all)
        .in_dir(dir)
        .no_control_socket()
        .expect_tcp(false)
}

fn answers_hello(sock: &Path) -> bool {
    UnixStream::connect(sock).is_ok()
        && unix_request(sock, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").status == 200
}

#[test]
fn a_unix_socket_that_answers_is_not_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("app.sock");
    let theirs = UnixListener::bind(&sock).unwrap();
    let srv = on_unix_socket(dir, &sock, &[]).start();
    assert_eq!(srv.wait_exit(LONG), 1, "{}", srv.log());
    // The words and the retries of a TCP port in use.
    let shown = unix_bind(&sock);
    let log = srv.log();
    assert!(
        log.contains(&format!("Connection in use: {shown}")),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "connection to {shown} failed: Address already in use"
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "Error: Can't connect to {shown}: Address already in use"
        )),
        "{log}"
    );
    // Their socket kept its file, and still answers.
    let _client = UnixStream::connect(&sock).unwrap();
    theirs.accept().unwrap();
}

#[test]
fn a_stale_unix_socket_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("app.sock");
    // What a server that crashed leaves: a socket file nobody listens on.
    drop(UnixListener::bind(&sock).unwrap());
    assert!(UnixStream::connect(&sock).is_err());
    let srv = on_unix_socket(dir, &sock, &[]).booted(1).start();
    expect_within(LONG, "the replaced socket answers", || answers_hello(&sock));
    srv.signal(libc::SIGTERM);
    assert_eq!(srv.wait_exit(LONG), 0);
    assert!(!sock.exists(), "the master removed the file it created");
}

#[test]
fn a_socket_file_replaced_by_another_server_is_not_removed_on_exit() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("app.sock");
    let srv = on_unix_socket(dir, &sock, &[]).booted(1).start();
    expect_within(LONG, "gunicornd answers", || answers_hello(&sock));
    // Another server takes the path (the file is unlinked, then bound again).
    fs::remove_file(&sock).unwrap();
    let theirs = UnixListener::bind(&sock).unwrap();
    srv.signal(libc::SIGTERM);
    assert_eq!(srv.wait_exit(LONG), 0);
    srv.expect_log(
        &format!(
            "Leaving {}: it is no longer the socket file this master created",
            sock.display()
        ),
        Duration::from_secs(5),
    );
    let _client = UnixStream::connect(&sock).expect("their socket file is still there");
    theirs.accept().unwrap();
}

#[test]
fn a_reload_that_spells_the_socket_path_differently_keeps_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("app.sock");
    let config = dir.path().join("gunicornd.toml");
    let write_config = |path: &Path| {
        fs::write(
            &config,
            format!(
                "bind = [\"{}\"]\napp = \"builtin:hello\"\n",
                unix_bind(path)
            ),
        )
        .unwrap()
    };
    write_config(&sock);
    let srv = Launch::new(&[])
        .in_dir(dir)
        .no_control_socket()
        .expect_tcp(false)
        .booted(1)
        .start();
    expect_within(LONG, "gunicornd answers", || answers_hello(&sock));
    let inode = fs::metadata(&sock).unwrap().ino();
    // The same file under another name: not a new address to bind (which
    // would find the path in use), and never a file to remove.
    write_config(&srv.path(".").join("app.sock"));
    srv.signal_delivered(libc::SIGHUP);
    srv.expect_log("Reload complete: generation 2", LONG);
    assert!(
        !srv.log_contains("Reload failed"),
        "the reload failed:\n{}",
        srv.log()
    );
    assert_eq!(fs::metadata(&sock).map(|m| m.ino()).ok(), Some(inode));
    assert!(answers_hello(&sock));
    srv.signal(libc::SIGTERM);
    assert_eq!(srv.wait_exit(LONG), 0);
    assert!(!sock.exists(), "its own file is removed at exit");
}

#[test]
fn a_symlink_at_a_socket_path_is_refused_and_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    fs::write(&victim, "precious").unwrap();
    let sock = dir.path().join("app.sock");
    std::os::unix::fs::symlink(&victim, &sock).unwrap();
    let srv = on_unix_socket(dir, &sock, &[]).start();
    assert_eq!(srv.wait_exit(LONG), 1);
    srv.expect_log(
        &format!("{} is not a socket", sock.display()),
        Duration::from_secs(5),
    );
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
    assert!(fs::symlink_metadata(&sock).unwrap().is_symlink());
}

#[test]
fn socket_files_get_the_umask_mode_and_the_workers_owner() {
    let Some((uid, gid)) = nobody() else { return };
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("app.sock");
    let srv = on_unix_socket(dir, &sock, &["-u", "nobody", "-g", "nogroup", "-m", "0077"])
        .dir_mode(0o755)
        .booted(1)
        .start();
    expect_within(LONG, "gunicornd answers", || answers_hello(&sock));
    let meta = fs::symlink_metadata(&sock).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!((meta.uid(), meta.gid()), (uid, gid));
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);
    srv.signal(libc::SIGTERM);
    assert_eq!(srv.wait_exit(LONG), 0);
}

/// Someone swaps the socket file for a symlink to a file of root's the
/// moment it appears: whichever way the race goes, the master never
/// changes the owner of the symlink's target, and never removes what is
/// not its own file.
#[test]
fn a_socket_file_swapped_for_a_symlink_never_gives_away_its_target() {
    let Some(_) = nobody() else { return };
    // The window is a few microseconds wide: several rounds give the
    // attacker several chances to land in it.
    for round in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "precious").unwrap();
        fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).unwrap();
        let sock = dir.path().join("app.sock");
        let evil = dir.path().join("evil");
        std::os::unix::fs::symlink(&victim, &evil).unwrap();
        let (sock_path, evil_path) = (sock.clone(), evil.clone());
        let attacker = std::thread::spawn(move || {
            let deadline = Instant::now() + LONG;
            while Instant::now() < deadline {
                let is_socket =
                    fs::symlink_metadata(&sock_path).is_ok_and(|m| m.file_type().is_socket());
                if is_socket && fs::rename(&evil_path, &sock_path).is_ok() {
                    return true;
                }
                std::hint::spin_loop();
            }
            false
        });
        let srv = on_unix_socket(dir, &sock, &["-u", "nobody", "-g", "nogroup"])
            .dir_mode(0o755)
            .start();
        assert!(
            attacker.join().unwrap(),
            "round {round}: the swap never happened"
        );
        // Refused ("replaced while binding"), or serving on a socket whose
        // name is gone: both are fine.
        expect_within(LONG, "the master refused or listens", || {
            srv.exited() || srv.log_contains("Listening at: unix:")
        });
        let meta = fs::metadata(&victim).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), meta.permissions().mode() & 0o777),
            (0, 0, 0o600),
            "round {round}: the symlink's target was changed; log:\n{}",
            srv.log()
        );
        srv.signal(libc::SIGTERM);
        srv.wait_gone(LONG);
        assert!(
            fs::symlink_metadata(&sock).unwrap().is_symlink(),
            "round {round}: the master removed a file that was not its own"
        );
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
    }
}

#[test]
fn user_nobody_leaves_no_supplementary_groups() {
    let Some((uid, _)) = nobody() else { return };
    // The master starts with supplementary groups of its own (disk, sudo:
    // what a root shell often has), which no worker may keep.
    let srv = Launch::new(&[
        "-b",
        "127.0.0.1:0",
        "-u",
        "nobody",
        "--no-control-socket",
        "builtin:hello",
    ])
    .wrapper(&["setpriv", "--groups", "6,27"])
    .dir_mode(0o755)
    .booted(1)
    .start();
    let master = credentials(srv.pid).unwrap();
    assert_eq!(master.groups, [6, 27].into(), "the master's own groups");
    let worker = *srv.worker_pids().iter().next().unwrap();
    let creds = credentials(worker).unwrap();
    assert_eq!(creds.uids, [uid; 4], "{creds:?}");
    // No --group: nobody's primary group.
    let primary = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .unwrap()
        .unwrap()
        .gid
        .as_raw();
    assert_eq!(creds.gids, [primary; 4], "{creds:?}");
    let expected: std::collections::BTreeSet<u32> = nix::unistd::getgrouplist(
        &std::ffi::CString::new("nobody").unwrap(),
        nix::unistd::Gid::from_raw(primary),
    )
    .unwrap()
    .into_iter()
    .map(|g| g.as_raw())
    .collect();
    assert_eq!(creds.groups, expected, "initgroups' groups, no others");
    assert!(!creds.groups.contains(&0) && !creds.groups.contains(&6));
    assert_eq!(srv.get("/").status, 200);
}

#[test]
fn a_uid_without_a_primary_group_stops_the_worker_and_says_why() {
    let Some(_) = nobody() else { return };
    // A uid no account has: no primary group to take.
    let unknown = (40000..60000)
        .find(|&u| {
            nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(u))
                .ok()
                .flatten()
                .is_none()
        })
        .unwrap();
    let user = unknown.to_string();
    let srv = Launch::new(&[
        "-b",
        "127.0.0.1:0",
        "-u",
        &user,
        "--no-control-socket",
        "builtin:hello",
    ])
    .start();
    assert_eq!(srv.wait_exit(LONG), 3, "{}", srv.log());
    srv.expect_log(
        &format!(
            "cannot switch to user {unknown}: it has no entry in the user database, so it has no \
             primary group; set --group"
        ),
        Duration::from_secs(5),
    );
}

#[test]
fn logs_reopen_after_privileges_are_dropped() {
    let Some((uid, _)) = nobody() else { return };
    let srv = Launch::new(&[
        "-b",
        "127.0.0.1:0",
        "-u",
        "nobody",
        "-g",
        "nogroup",
        "--access-logfile",
        "access.log",
        "--no-control-socket",
        "builtin:echo",
    ])
    .error_logfile("error.log")
    .dir_mode(0o755)
    .booted(1)
    .start();
    let err = srv.path("error.log");
    let access = srv.path("access.log");
    let read = |p: &PathBuf| fs::read_to_string(p).unwrap_or_default();
    assert_eq!(srv.get("/before").status, 200);
    expect_within(Duration::from_secs(10), "access line", || {
        read(&access).contains("/before")
    });
    // logrotate without copytruncate: the files move away, USR1 follows.
    fs::rename(&err, srv.path("error.log.1")).unwrap();
    fs::rename(&access, srv.path("access.log.1")).unwrap();
    srv.signal_delivered(libc::SIGUSR1);
    expect_within(Duration::from_secs(10), "the master reopened", || {
        read(&err).contains("Log files reopened")
    });
    for path in [&err, &access] {
        assert_eq!(
            fs::metadata(path).unwrap().uid(),
            uid,
            "{} is the workers'",
            path.display()
        );
    }
    expect_within(LONG, "the worker writes to the new access log", || {
        srv.get("/after");
        read(&access).contains("/after")
    });
    assert_eq!(
        http_request(srv.addr(), "BAD REQUEST LINE\r\n\r\n").status,
        400
    );
    expect_within(
        Duration::from_secs(10),
        "the worker's error lines land in the new error log",
        || read(&err).contains("Invalid request from ip=127.0.0.1"),
    );
    assert!(
        !read(&srv.path("error.log")).contains("Cannot reopen log files"),
        "{}",
        srv.log()
    );
    let rotated = read(&srv.path("access.log.1"));
    assert!(!rotated.contains("/after"), "{rotated}");
}

#[test]
fn two_masters_racing_for_one_pidfile_leave_exactly_one_running() {
    let shared = tempfile::tempdir().unwrap();
    let pidfile = shared.path().join("app.pid");
    for round in 0..3 {
        let launch = || {
            Launch::new(&["-b", "127.0.0.1:0", "-p"])
                .arg(&pidfile)
                .arg("builtin:hello")
                .no_control_socket()
                .expect_tcp(true)
        };
        let (a, b) = (launch(), launch());
        let barrier = &std::sync::Barrier::new(2);
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(move || {
                barrier.wait();
                a.start()
            });
            let b = s.spawn(move || {
                barrier.wait();
                b.start()
            });
            (a.join().unwrap(), b.join().unwrap())
        });
        let (winner, loser) = match (a.exited(), b.exited()) {
            (false, true) => (a, b),
            (true, false) => (b, a),
            both => panic!(
                "round {round}: exactly one master must run, exited: {both:?}\n--- a ---\n{}\n--- b ---\n{}",
                a.log(),
                b.log()
            ),
        };
        assert_eq!(loser.wait_exit(LONG), 1);
        loser.expect_log(
            &format!(
                "Error: Already running on PID {} (pidfile {})",
                winner.pid,
                pidfile.display()
            ),
            Duration::from_secs(5),
        );
        let held = fs::read_to_string(&pidfile).unwrap();
        assert_eq!(held.trim(), winner.pid.to_string());
        // The lock lives in the master alone: no worker holds the file.
        let worker = *winner.wait_booted(1).iter().next().unwrap();
        assert!(open_files(winner.pid).contains(&pidfile));
        assert!(!open_files(worker).contains(&pidfile));
        winner.signal(libc::SIGTERM);
        assert_eq!(winner.wait_exit(LONG), 0);
        assert!(!pidfile.exists(), "round {round}: the holder removes it");
    }
}

#[test]
fn static_files_refuse_dotfiles_and_escaping_symlinks() {
    let launch = |extra: &[&str]| {
        let mut args = vec!["-b", "127.0.0.1:0", "--no-control-socket"];
        args.extend_from_slice(extra);
        args.push("static:site");
        let launch = Launch::new(&args);
        let site = launch.path("site");
        fs::create_dir_all(site.join(".git")).unwrap();
        fs::write(site.join(".git/config"), "[core]").unwrap();
        fs::write(site.join(".env"), "SECRET=1").unwrap();
        fs::write(site.join("hello.txt"), "hi\n").unwrap();
        fs::write(launch.path("secret.txt"), "secret").unwrap();
        std::os::unix::fs::symlink("../secret.txt", site.join("relative-out")).unwrap();
        std::os::unix::fs::symlink(launch.path("secret.txt"), site.join("absolute-out")).unwrap();
        std::os::unix::fs::symlink("hello.txt", site.join("inside")).unwrap();
        launch.booted(1).start()
    };
    let srv = launch(&[]);
    let status = |srv: &Server, path: &str| {
        let r = srv.get(path);
        assert!(!r.text().contains("secret"), "{path}: {}", r.text());
        r.status
    };
    for path in [
        "/.git/config",
        "/.env",
        "/%2Eenv",
        "/.git/",
        "/relative-out",
        "/absolute-out",
        "/../secret.txt",
    ] {
        assert_eq!(status(&srv, path), 404, "{path}");
    }
    assert_eq!(srv.get("/hello.txt").text(), "hi\n");
    assert_eq!(srv.get("/inside").text(), "hi\n");
    let allowed = launch(&["--static-dotfiles"]);
    assert_eq!(allowed.get("/.env").text(), "SECRET=1");
    assert_eq!(status(&allowed, "/relative-out"), 404);
    assert_eq!(status(&allowed, "/absolute-out"), 404);
}
