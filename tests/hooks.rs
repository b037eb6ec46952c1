//! Hooks: the commands run at each event with the documented variables, a
//! failing hook changes nothing, and hooks inherit none of the master's
//! sockets.

use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::time::Duration;

use gunicornd_test_support::*;

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

#[test]
fn hooks_run_with_the_documented_variables() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("hooks.out");
    let script = dir.path().join("hook.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n{{ echo \"event=$GUNICORND_EVENT pid=$GUNICORND_PID worker=$GUNICORND_WORKER_PID age=$GUNICORND_WORKER_AGE workers=$GUNICORND_WORKERS old=$GUNICORND_OLD_WORKERS\"; }} >> {}\n",
            out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let s = script.display().to_string();
    let hook = |name: &str| format!("{name}={s}");
    let args: Vec<String> = [
        "on_starting",
        "when_ready",
        "post_fork",
        "nworkers_changed",
        "child_exit",
        "worker_exit",
        "on_reload",
        "on_exit",
        "pre_fork",
    ]
    .iter()
    .flat_map(|n| ["--hook".to_string(), hook(n)])
    .chain(
        ["-b", "127.0.0.1:0", "builtin:hello"]
            .iter()
            .map(|s| s.to_string()),
    )
    .collect();
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let srv = Launch::new(&argv).in_dir(dir).booted(1).start();
    let master = srv.pid;
    let worker = *srv.worker_pids().iter().next().unwrap();
    let read = || std::fs::read_to_string(&out).unwrap_or_default();
    expect_within(Duration::from_secs(10), "post_fork hook", || {
        read().contains(&format!(
            "event=post_fork pid={master} worker={worker} age=1"
        ))
    });
    assert!(read().contains(&format!("event=on_starting pid={master}")));
    assert!(read().contains("event=when_ready"));
    assert!(read().contains("event=pre_fork") && read().contains("age=1"));
    srv.signal_delivered(libc::SIGTTIN);
    expect_within(Duration::from_secs(10), "nworkers_changed hook", || {
        read().contains("event=nworkers_changed") && read().contains("workers=2 old=1")
    });
    // SAFETY: plain kill(2) on our server's worker.
    unsafe { libc::kill(worker, libc::SIGTERM) };
    expect_within(
        Duration::from_secs(10),
        "worker_exit and child_exit hooks",
        || {
            read().contains(&format!("event=worker_exit pid={master} worker={worker}"))
                && read().contains(&format!("event=child_exit pid={master} worker={worker}"))
        },
    );
    srv.signal(libc::SIGTERM);
    assert_eq!(srv.wait_exit(Duration::from_secs(10)), 0);
    expect_within(Duration::from_secs(10), "on_exit hook", || {
        read().contains(&format!("event=on_exit pid={master}"))
    });
}

#[test]
fn a_failing_hook_is_logged_and_changes_nothing() {
    let srv = Server::start_with_workers(1, &["--hook", "post_fork=exit 7", "builtin:hello"]);
    srv.expect_log("Hook post_fork", Duration::from_secs(10));
    srv.expect_log("failed with exit code 7", Duration::from_secs(10));
    assert_eq!(srv.get("/").status, 200);
}

/// Hook commands inherit none of the master's sockets; guards against an
/// `on_starting` hook (run before any worker) holding the listener passed
/// in as fd 3, which kept the port open for as long as the hook ran.
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
    let holders: Vec<(ProcInfo, Vec<i32>)> = hook
        .into_iter()
        .map(|p| {
            let fds = fds_holding_socket(p.pid, &[inode]);
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
