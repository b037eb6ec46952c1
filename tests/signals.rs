//! The master's signal model: reloads and scaling that never drop a request,
//! no lost signals, log reopening, crash-loop backoff, hooks.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;

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

#[test]
fn scale_up_and_down_under_load_retires_the_oldest() {
    // The master reports each worker's age (spawn order) to a hook: log lines
    // from concurrently booting workers do not come in spawn order.
    let ages_hook = "post_fork=echo \"$GUNICORND_WORKER_AGE $GUNICORND_WORKER_PID\" >> ages.txt";
    let srv = Server::start_with_workers(3, &["-w", "3", "--hook", ages_hook, "builtin:hello"]);
    let load = Load::start(srv.addr(), 4, "/", 200_000);
    for _ in 0..5 {
        srv.signal_delivered(libc::SIGTTIN);
    }
    srv.wait_booted(8);
    for _ in 0..5 {
        srv.signal_delivered(libc::SIGTTOU);
    }
    expect_within(Duration::from_secs(20), "back to 3 workers", || {
        srv.worker_pids().len() == 3
    });
    let (ok, failures) = load.finish();
    assert!(
        failures.is_empty(),
        "{} failed requests: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(ok > 50);
    let read_ages = || -> Vec<(u64, i32)> {
        let text = std::fs::read_to_string(srv.path("ages.txt")).unwrap_or_default();
        let mut ages: Vec<(u64, i32)> = text
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter_map(|(a, p)| Some((a.parse().ok()?, p.trim().parse().ok()?)))
            .collect();
        ages.sort();
        ages
    };
    expect_within(Duration::from_secs(10), "all 8 post_fork hooks ran", || {
        read_ages().len() == 8
    });
    let ages = read_ages();
    let newest: BTreeSet<i32> = ages[ages.len() - 3..].iter().map(|&(_, pid)| pid).collect();
    assert_eq!(srv.worker_pids(), newest, "the oldest workers were retired");
}

#[test]
fn burst_of_ten_ttin_adds_exactly_ten_workers() {
    let srv = Server::start_with_workers(1, &["builtin:hello"]);
    for _ in 0..10 {
        srv.signal_delivered(libc::SIGTTIN);
    }
    srv.wait_booted(11);
    // Nothing more arrives later.
    assert!(!wait_until(Duration::from_millis(500), || srv
        .worker_pids()
        .len()
        != 11));
}

#[test]
fn ttou_never_goes_below_one_worker() {
    let srv = Server::start_with_workers(1, &["builtin:hello"]);
    let pid = srv.worker_pids();
    srv.signal_delivered(libc::SIGTTOU);
    assert!(!wait_until(Duration::from_millis(500), || srv
        .worker_pids()
        != pid));
}

#[test]
fn reload_with_a_broken_config_file_keeps_serving() {
    let srv = Launch::from_config("workers = 2\nbind = \"127.0.0.1:0\"\napp = \"builtin:hello\"\n")
        .workers(2)
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
    let mut srv =
        Launch::from_config("workers = 2\nbind = \"127.0.0.1:0\"\napp = \"builtin:hello\"\n")
            .workers(2)
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

#[test]
fn usr1_reopens_logs_in_master_and_workers() {
    let srv = Launch::new(&[
        "-b",
        "127.0.0.1:0",
        "--error-logfile",
        "error.log",
        "--access-logfile",
        "access.log",
        "builtin:echo",
    ])
    .log_file("error.log")
    .workers(1)
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

#[test]
fn crash_loop_backs_off_instead_of_fork_storming() {
    let mut srv = Server::start(&["-b", "127.0.0.1:0", "builtin:debug?boot_exit=1"]);
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
fn quick_stop_escalates_a_graceful_one() {
    let mut srv = Server::start_with_workers(1, &["--graceful-timeout", "60", "builtin:debug"]);
    let addr = srv.addr().to_string();
    let _slow =
        std::thread::spawn(move || try_http_request(&addr, b"GET /?sleep=30 HTTP/1.1\r\n\r\n"));
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
    let mut srv = Launch::new(&argv).in_dir(dir).workers(1).start();
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

#[test]
fn runtime_scale_survives_a_reload_unless_workers_changed() {
    let srv = Launch::from_config("workers = 2\nbind = \"127.0.0.1:0\"\napp = \"builtin:hello\"\n")
        .workers(2)
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
    .workers(1)
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
        http_request(&new_addr, "GET / HTTP/1.1\r\n\r\n").status,
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
