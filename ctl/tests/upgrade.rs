//! `gunicornctl upgrade` against the real gunicornd: binary upgrades under
//! load, one after the other, without a failed request; and upgrades that
//! cannot succeed (the binary on disk does not start, the app does not
//! load, the new master is too slow), after which the old master serves as
//! before with its pidfile and control socket, and a later upgrade works.
//!
//! Every master an upgrade started is killed, with its process group, when
//! the test ends ([`Masters`]); the harness's `Server` kills the first.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gunicornd_protocol::{read_frame, write_frame, Request, Response};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::{getpgid, getpgrp, Pid};
use serde_json::Value;

use gunicornd_test_support::control::booted_workers;
use gunicornd_test_support::{
    children_of, ctl, ctl_ok, gunicornd_bin, http_get_status, listening_inodes, poll,
    process_alive, stderr, stdout, Launch, Load, Server, DEADLINE,
};

/// Masters started by upgrades, killed with their process groups on drop.
#[derive(Default)]
struct Masters(Vec<i32>);

impl Masters {
    fn record(&mut self, outcome: &Value) {
        if let Some(pid) = outcome["new_pid"].as_i64() {
            self.0.push(pid as i32);
        }
    }
}

impl Drop for Masters {
    fn drop(&mut self) {
        for &pid in &self.0 {
            let pid = Pid::from_raw(pid);
            if let Ok(group) = getpgid(Some(pid)) {
                if group != getpgrp() {
                    let _ = killpg(group, Signal::SIGKILL);
                }
            }
            let _ = kill(pid, Signal::SIGKILL);
        }
    }
}

/// `PATH.2`: where a new master's pidfile and control socket are until it
/// is promoted.
fn dot2(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".2");
    PathBuf::from(name)
}

fn pid_in(pidfile: &Path) -> Option<i32> {
    fs::read_to_string(pidfile).ok()?.trim().parse().ok()
}

/// The data of an `ok` reply to `command`, or `None` (never panics: it is
/// polled while masters come and go).
fn query(socket: &Path, command: &str) -> Option<Value> {
    let mut stream = UnixStream::connect(socket).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .ok()?;
    write_frame(&mut stream, &Request::new(1, command)).ok()?;
    match read_frame(&mut stream).ok()? {
        Response::Ok { data, .. } => Some(data),
        _ => None,
    }
}

/// The pid of the master answering `ping` on `socket`.
fn ping(socket: &Path) -> Option<i32> {
    query(socket, "ping")?["pid"].as_i64().map(|p| p as i32)
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

fn sorted_inodes(port: u16) -> Vec<u64> {
    let mut inodes = listening_inodes(port);
    inodes.sort_unstable();
    inodes
}

/// `gunicornctl -s SOCK upgrade --json ARGS`: exit code, outcome, stderr.
/// The new master, if any, is recorded in `masters` first.
fn upgrade(srv: &Server, masters: &mut Masters, args: &[&str]) -> (Option<i32>, Value, String) {
    let mut all = vec!["-s", srv.sock(), "upgrade", "--json"];
    all.extend_from_slice(args);
    let out = ctl(&all);
    let outcome: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "upgrade printed no JSON object ({e}): {}{}",
            stdout(&out),
            stderr(&out)
        )
    });
    masters.record(&outcome);
    (out.status.code(), outcome, stderr(&out))
}

/// A successful upgrade from `old`; returns the new master's pid.
#[track_caller]
fn upgraded(srv: &Server, masters: &mut Masters, old: i32) -> i32 {
    let (code, outcome, err) = upgrade(srv, masters, &[]);
    assert_eq!(code, Some(0), "{err}{outcome}");
    assert_eq!(outcome["status"], "upgraded", "{outcome}");
    assert_eq!(outcome["error"], Value::Null, "{outcome}");
    assert_eq!(outcome["old_pid"], old, "{outcome}");
    let new = outcome["new_pid"].as_i64().unwrap() as i32;
    assert_ne!(new, old);
    new
}

/// A failed upgrade: exit 1, the reason on stderr and in the outcome.
/// Returns the reason.
#[track_caller]
fn failed(srv: &Server, masters: &mut Masters, args: &[&str]) -> String {
    let (code, outcome, err) = upgrade(srv, masters, args);
    assert_eq!(code, Some(1), "{err}{outcome}");
    assert_eq!(outcome["status"], "failed", "{outcome}");
    assert_eq!(outcome["old_pid"], srv.pid, "{outcome}");
    let error = outcome["error"].as_str().unwrap().to_string();
    assert!(!error.is_empty());
    assert_eq!(err, format!("gunicornctl: {error}\n"));
    if let Some(new) = outcome["new_pid"].as_i64() {
        let new = new as i32;
        poll(&format!("new master {new} to be gone"), || {
            (!process_alive(new)).then_some(())
        });
    }
    error
}

/// After a failed upgrade: the old master serves as before, with the same
/// workers, its pidfile and its control socket, and reports no upgrade.
#[track_caller]
fn old_master_serves_as_before(srv: &Server, pidfile: &Path, workers: &BTreeSet<i32>) {
    let socket = srv.socket.clone().unwrap();
    assert!(!srv.exited(), "the old master exited");
    assert_eq!(http_get_status(srv.addr()), Some(200));
    assert_eq!(ping(&socket), Some(srv.pid));
    assert_eq!(pid_in(pidfile), Some(srv.pid));
    poll("no .2 pidfile or control socket left", || {
        (!dot2(pidfile).exists() && !dot2(&socket).exists()).then_some(())
    });
    poll("'show stats' to report no upgrade", || {
        let stats = query(&socket, "show stats")?;
        stats.get("upgrade").is_none().then_some(())
    });
    assert_eq!(&srv.worker_pids(), workers, "the old workers still serve");
}

#[test]
fn three_upgrades_under_load_without_a_failed_request() {
    let launch = Launch::hello(2);
    let pidfile = launch.path("app.pid");
    let srv = launch.arg("--pid").arg(&pidfile).start();
    let mut masters = Masters::default();
    let socket = srv.socket.clone().unwrap();
    let port = port_of(srv.addr());
    let inodes = sorted_inodes(port);
    assert!(!inodes.is_empty());

    let load = Load::start(srv.addr(), 2, "/", 1_000_000);
    let mut master = srv.pid;
    for round in 1..=3 {
        let new = upgraded(&srv, &mut masters, master);
        poll(
            &format!("round {round}: old master {master} to exit"),
            || (!process_alive(master)).then_some(()),
        );
        if round == 1 {
            assert_eq!(srv.wait_exit(DEADLINE), 0, "the first master's exit status");
        }
        assert_eq!(ping(&socket), Some(new), "round {round}");
        poll(&format!("round {round}: the pidfile to name {new}"), || {
            (pid_in(&pidfile) == Some(new)).then_some(())
        });
        poll(&format!("round {round}: no .2 file left"), || {
            (!dot2(&pidfile).exists() && !dot2(&socket).exists()).then_some(())
        });
        assert_eq!(
            sorted_inodes(port),
            inodes,
            "round {round}: the same listening socket"
        );
        poll(
            &format!("round {round}: the workers of {new}, booted"),
            || {
                let listed = booted_workers(&socket)?;
                (!listed.is_empty() && listed == children_of(new)).then_some(())
            },
        );
        master = new;
    }
    let (ok, failures) = load.finish();
    assert_eq!(failures, Vec::<String>::new(), "{ok} requests answered");
    assert!(ok > 0);

    // The last master is an ordinary one: it stops and cleans up.
    ctl_ok(&["-s", srv.sock(), "stop"]);
    poll("the last master to exit", || {
        (!process_alive(master)).then_some(())
    });
    poll("its pidfile and socket to be removed", || {
        (!pidfile.exists() && !socket.exists()).then_some(())
    });
}

#[test]
fn an_upgrade_to_a_binary_that_exits_is_refused_or_fails_and_the_old_master_serves() {
    let launch = Launch::hello(2);
    let binary = launch.path("gunicornd");
    fs::copy(gunicornd_bin(), &binary).unwrap();
    let pidfile = launch.path("app.pid");
    let srv = launch.binary(&binary).arg("--pid").arg(&pidfile).start();
    let mut masters = Masters::default();
    let workers = srv.worker_pids();

    // The binary on disk is now a program that exits 1 at once (renamed
    // over the running one, as a package upgrade would).
    let replacement = srv.path("gunicornd.new");
    let mut script = fs::File::create(&replacement).unwrap();
    script.write_all(b"#!/bin/sh\nexit 1\n").unwrap();
    drop(script);
    fs::set_permissions(&replacement, fs::Permissions::from_mode(0o755)).unwrap();
    fs::rename(&replacement, &binary).unwrap();
    let error = failed(&srv, &mut masters, &[]);
    assert!(error.contains("upgrade failed"), "{error}");
    old_master_serves_as_before(&srv, &pidfile, &workers);

    // Gone altogether: refused or failed, with the reason.
    fs::remove_file(&binary).unwrap();
    let error = failed(&srv, &mut masters, &[]);
    assert!(error.contains("upgrade"), "{error}");
    old_master_serves_as_before(&srv, &pidfile, &workers);

    // A good binary again: the upgrade goes through.
    fs::copy(gunicornd_bin(), &binary).unwrap();
    let new = upgraded(&srv, &mut masters, srv.pid);
    poll("the pidfile to name the new master", || {
        (pid_in(&pidfile) == Some(new)).then_some(())
    });
    assert_eq!(http_get_status(srv.addr()), Some(200));
}

/// gunicornd from a config file that names `app`, with a control socket and
/// a pidfile.
fn from_config(app: &str) -> (Server, PathBuf) {
    let launch = Launch::from_config(&config(app)).control_socket().booted(2);
    let pidfile = launch.path("app.pid");
    (launch.arg("--pid").arg(&pidfile).start(), pidfile)
}

fn config(app: &str) -> String {
    format!("workers = 2\nbind = \"127.0.0.1:0\"\ngraceful_timeout = 2\napp = \"{app}\"\n")
}

#[test]
fn an_upgrade_whose_app_cannot_load_fails_and_the_old_master_serves() {
    let (srv, pidfile) = from_config("builtin:debug");
    let mut masters = Masters::default();
    let workers = srv.worker_pids();
    // The new master reads the configuration anew; its workers exit 4.
    fs::write(
        srv.path("gunicornd.toml"),
        config("builtin:debug?fail_load=1"),
    )
    .unwrap();
    let error = failed(&srv, &mut masters, &[]);
    assert!(error.contains("upgrade failed"), "{error}");
    old_master_serves_as_before(&srv, &pidfile, &workers);

    fs::write(srv.path("gunicornd.toml"), config("builtin:debug")).unwrap();
    upgraded(&srv, &mut masters, srv.pid);
    assert_eq!(http_get_status(srv.addr()), Some(200));
}

#[test]
fn an_upgrade_that_times_out_stops_the_new_master_through_its_socket() {
    let (srv, pidfile) = from_config("builtin:hello");
    let mut masters = Masters::default();
    let workers = srv.worker_pids();
    // The new master's workers hang while booting: it never gets ready.
    fs::write(
        srv.path("gunicornd.toml"),
        config("builtin:debug?boot_sleep=600"),
    )
    .unwrap();
    let error = failed(&srv, &mut masters, &["--timeout", "3"]);
    let new = masters.0.last().copied().expect("a new master was started");
    assert!(
        error.starts_with(&format!(
            "timed out after 3s waiting for new master {new} to be ready"
        )),
        "{error}"
    );
    assert!(
        error.ends_with(&format!(
            "; rolled back (new master {new} stopped): the old master {} keeps serving",
            srv.pid
        )),
        "{error}"
    );
    old_master_serves_as_before(&srv, &pidfile, &workers);
}
