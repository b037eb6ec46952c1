//! gunicornctl against a real Python gunicorn (≥ 25.1) master: the wire
//! format and reply shapes are gunicorn's, so the commands both understand
//! must work unchanged.
//!
//! gunicorn comes from PyPI into a venv cached under `target/` (created once,
//! atomically). The tests are skipped only when `python3` cannot make venvs.
//!
//! gunicorn is started through a small script rather than `python -m
//! gunicorn`: its binary upgrade (USR2) re-runs `sys.argv`, and with `-m`
//! that is the path of gunicorn's `__main__.py`, run as a script with
//! gunicorn's package directory first on `sys.path`, where its `http`
//! package hides the standard library's (gunicorn issue #3281).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use gunicornd_test_support::{
    children_of, ctl, ctl_command, ctl_json, ctl_ok, get_within, gunicorn_python,
    listening_addr_in, listening_inodes, poll, process_alive, stderr, stdout, Load,
};

/// A uid that is neither root nor the test's (the tests run as root).
const NOBODY: u32 = 65534;

/// A gunicorn master in its own process group, killed with its workers on
/// drop (and its log printed if the test failed).
struct Gunicorn {
    child: Child,
    log: PathBuf,
}

impl Gunicorn {
    fn start(python: &Path, dir: &Path) -> Gunicorn {
        Gunicorn::start_with(python, dir, &[])
    }

    /// With `extra` arguments before the app.
    fn start_with(python: &Path, dir: &Path, extra: &[&str]) -> Gunicorn {
        fs::write(
            dir.join("app.py"),
            "def app(environ, start_response):\n    \
             start_response('200 OK', [('Content-Type', 'text/plain')])\n    \
             return [b'ok\\n']\n",
        )
        .unwrap();
        let launcher = dir.join("run_gunicorn.py");
        fs::write(&launcher, "from gunicorn.app.wsgiapp import run\nrun()\n").unwrap();
        let log = dir.join("gunicorn.log");
        let log_file = fs::File::create(&log).unwrap();
        let child = Command::new(python)
            .arg(&launcher)
            .args([
                "--workers",
                "2",
                // Bounds how long a master waits for workers stuck booting.
                "--graceful-timeout",
                "3",
                "--bind",
                "127.0.0.1:0",
                "--chdir",
            ])
            .arg(dir)
            .arg("--pid")
            .arg(dir.join("app.pid"))
            .arg("--control-socket")
            .arg(dir.join("app.pid.ctl"))
            .args(extra)
            .arg("app:app")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .process_group(0)
            .spawn()
            .expect("start gunicorn");
        Gunicorn { child, log }
    }

    fn pid(&self) -> i64 {
        i64::from(self.child.id())
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `127.0.0.1:PORT` it listens on.
    fn addr(&self) -> String {
        poll("gunicorn's 'Listening at:' line", || {
            listening_addr_in(&self.log())
        })
    }
}

impl Drop for Gunicorn {
    fn drop(&mut self) {
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!(
                "--- gunicorn log ---\n{}",
                fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

/// (pid, booted) of every worker.
fn workers(sock: &str) -> Vec<(i64, bool)> {
    ctl_json(&["-s", sock, "workers"])["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (w["pid"].as_i64().unwrap(), w["booted"].as_bool().unwrap()))
        .collect()
}

#[test]
fn drives_python_gunicorn() {
    let Some(python) = gunicorn_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut gunicorn = Gunicorn::start(&python, dir.path());
    let sock_path = dir.path().join("app.pid.ctl");
    let sock = sock_path.to_str().unwrap();
    let pidfile_path = dir.path().join("app.pid");
    let pidfile = pidfile_path.to_str().unwrap();

    // status: up with both workers booted.
    let status = poll("gunicorn to boot 2 workers", || {
        let out = ctl(&["-s", sock, "status", "--json"]);
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        (v["workers_booted"] == 2).then_some(v)
    });
    assert_eq!(status["master_pid"].as_i64(), Some(gunicorn.pid()));
    assert_eq!(status["server"], "gunicorn");
    assert_eq!(status["workers_target"], 2);
    assert_eq!(status["generation"], Value::Null);
    assert!(
        status["listeners"][0]["address"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1:"),
        "{status}"
    );
    let text = ctl_ok(&["status", "-s", sock]);
    assert!(
        text.contains(&format!("master      {}", gunicorn.pid())),
        "{text}"
    );
    assert!(text.contains("workers     2 booted / 2 target"), "{text}");
    assert!(text.contains("generation  -"), "{text}");

    // workers: a table, and JSON with RSS read from /proc.
    let text = ctl_ok(&["-s", sock, "workers"]);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("PID  ") && lines[0].ends_with("RSS"),
        "{text}"
    );
    assert_eq!(lines.len(), 3, "{text}");
    let listed = ctl_json(&["-s", sock, "workers"]);
    for w in listed["workers"].as_array().unwrap() {
        assert!(w["rss_kb"].as_u64().unwrap() > 0, "{listed}");
    }
    let before = workers(sock);
    assert!(before.iter().all(|&(_, booted)| booted), "{before:?}");

    // scale 3 --wait: returns once three workers serve. The socket is found
    // through --pid (gunicorn was given <pidfile>.ctl).
    let text = ctl_ok(&["--pid", pidfile, "scale", "3", "--wait"]);
    assert!(text.contains("workers target 2 -> 3: 3 booted"), "{text}");
    let scaled = workers(sock);
    assert_eq!(scaled.len(), 3, "{scaled:?}");
    assert!(scaled.iter().all(|&(_, booted)| booted), "{scaled:?}");
    assert_eq!(ctl_json(&["-s", sock, "stats"])["workers_target"], 3);

    // reload --wait: every old worker replaced by a booted new one.
    let text = ctl_ok(&["reload", "--wait", "--timeout", "60", "--pid", pidfile]);
    assert!(text.starts_with("reloaded in "), "{text}");
    let reloaded = workers(sock);
    assert!(!reloaded.is_empty());
    assert!(reloaded.iter().all(|&(_, booted)| booted), "{reloaded:?}");
    for (pid, _) in &reloaded {
        assert!(
            !scaled.iter().any(|(old, _)| old == pid),
            "worker {pid} survived the reload"
        );
    }

    // scale -1 goes through `worker remove`.
    let target = ctl_json(&["-s", sock, "stats"])["workers_target"]
        .as_u64()
        .unwrap();
    let result = ctl_json(&["-s", sock, "scale", "-1", "--wait"]);
    assert_eq!(result["total"].as_u64(), Some(target - 1), "{result}");
    assert_eq!(workers(sock).len() as u64, target - 1);

    assert_eq!(ctl_ok(&["-s", sock, "reopen"]), "reopening log files\n");

    // gunicorn answers an unknown pid with ok + success:false.
    let out = ctl(&["-s", sock, "kill", "999999"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot kill worker 999999: Worker 999999 not found"),
        "{}",
        stderr(&out)
    );

    // gunicornd-only commands say what they are talking to.
    let out = ctl(&["-s", sock, "stop-workers"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("looks like Python gunicorn"),
        "{}",
        stderr(&out)
    );

    // stop: the master exits.
    assert_eq!(ctl_ok(&["-s", sock, "stop"]), "shutting down (graceful)\n");
    let status = poll("gunicorn to exit", || gunicorn.child.try_wait().unwrap());
    assert!(status.success(), "gunicorn exited with {status}");

    let out = ctl(&["-s", sock, "status"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).starts_with(&format!("gunicornctl: cannot reach gunicornd at {sock}: ")),
        "{}",
        stderr(&out)
    );
}

/// Whether `/` answers the test app's "ok".
fn serves(addr: &str) -> bool {
    get_within(addr, Duration::from_secs(5)).is_ok_and(|r| r.status == 200 && r.text() == "ok\n")
}

/// Starts gunicorn with 2 workers and waits until both have booted.
fn booted_gunicorn(python: &Path, dir: &Path) -> Gunicorn {
    booted_gunicorn_with(python, dir, &[])
}

fn booted_gunicorn_with(python: &Path, dir: &Path, extra: &[&str]) -> Gunicorn {
    let gunicorn = Gunicorn::start_with(python, dir, extra);
    let sock = dir.join("app.pid.ctl");
    poll("gunicorn to boot 2 workers", || {
        let out = ctl(&["-s", sock.to_str().unwrap(), "status", "--json"]);
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        (v["workers_booted"] == 2).then_some(())
    });
    gunicorn
}

/// gunicornctl's outcome object; panics (with gunicorn's log) unless it
/// exited with `code`.
#[track_caller]
fn upgrade_outcome(gunicorn: &Gunicorn, args: &[&str], code: i32) -> (Value, String) {
    let out = ctl(args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "gunicornctl {args:?}:\n{}{}\n--- gunicorn log ---\n{}",
        stdout(&out),
        stderr(&out),
        gunicorn.log()
    );
    let outcome = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {}", stdout(&out)));
    (outcome, stderr(&out))
}

fn pidfile_pid(dir: &Path) -> Option<i64> {
    fs::read_to_string(dir.join("app.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[test]
fn upgrades_python_gunicorn_with_signals_while_it_serves() {
    let Some(python) = gunicorn_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut gunicorn = booted_gunicorn(&python, dir.path());
    let sock = dir.path().join("app.pid.ctl");
    let addr = gunicorn.addr();
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    let inodes = listening_inodes(port);
    let old = gunicorn.pid() as i32;
    let old_workers = children_of(old);
    assert_eq!(old_workers.len(), 2, "{old_workers:?}");

    let load = Load::start(&addr, 2, "/", 1_000_000);
    let (outcome, _) = upgrade_outcome(
        &gunicorn,
        &["-s", sock.to_str().unwrap(), "upgrade", "--json"],
        0,
    );
    assert_eq!(outcome["status"], "upgraded", "{outcome}");
    assert_eq!(outcome["old_pid"], old, "{outcome}");
    assert_eq!(outcome["error"], Value::Null, "{outcome}");
    let new = outcome["new_pid"].as_i64().unwrap() as i32;
    assert_ne!(new, old);

    // The old master is gone, the new one is promoted (gunicorn renames its
    // pidfile) and serves with workers of its own on the same sockets.
    let status = poll("the old master to exit", || {
        gunicorn.child.try_wait().unwrap()
    });
    assert!(status.success(), "the old master exited with {status}");
    poll("the pidfile to name the new master", || {
        (pidfile_pid(dir.path()) == Some(i64::from(new))).then_some(())
    });
    assert!(!dir.path().join("app.pid.2").exists());
    let new_workers = poll("the new master's 2 workers", || {
        let w = children_of(new);
        (w.len() == 2).then_some(w)
    });
    assert!(new_workers.is_disjoint(&old_workers), "{new_workers:?}");
    assert!(old_workers.iter().all(|&w| !process_alive(w)));
    assert_eq!(listening_inodes(port), inodes, "the same listening socket");
    assert!(serves(&addr));
    let (ok, failures) = load.finish();
    assert!(ok > 0);
    assert_eq!(failures, Vec::<String>::new(), "{ok} requests answered");

    // gunicorn's old master removed the socket file on its way out; that
    // is reported rather than hidden.
    if !sock.exists() {
        let warning = outcome["warning"].as_str().unwrap_or_default();
        assert!(warning.contains(&format!("kill -TTIN {new}")), "{outcome}");
    }
}

/// Starts gunicorn, then replaces its app with `new_app` (which the new
/// master's workers import, the old ones having imported theirs) and runs
/// `gunicornctl upgrade --json ARGS`, expected to fail. Checks that the old
/// master serves on as before, under load, and returns the outcome.
fn failed_upgrade(new_app: &str, args: &[&str]) -> Value {
    let python = gunicorn_python().expect("checked by the caller");
    let dir = tempfile::tempdir().unwrap();
    let gunicorn = booted_gunicorn(&python, dir.path());
    let sock = dir.path().join("app.pid.ctl");
    let addr = gunicorn.addr();
    let old = gunicorn.pid() as i32;
    let old_workers = children_of(old);
    fs::write(dir.path().join("app.py"), new_app).unwrap();

    let load = Load::start(&addr, 2, "/", 1_000_000);
    let mut all = vec!["-s", sock.to_str().unwrap(), "upgrade", "--json"];
    all.extend_from_slice(args);
    let (outcome, stderr) = upgrade_outcome(&gunicorn, &all, 1);
    assert_eq!(outcome["status"], "failed", "{outcome}");
    assert_eq!(outcome["old_pid"], old, "{outcome}");
    let error = outcome["error"].as_str().unwrap();
    assert!(
        error.ends_with(&format!("the old master {old} keeps serving")),
        "{error}"
    );
    assert!(stderr.contains(error), "{stderr}");
    let new = outcome["new_pid"].as_i64().unwrap() as i32;
    assert!(!process_alive(new), "the new master is gone");
    // The old master serves as before, with the same workers.
    assert!(process_alive(old));
    assert_eq!(children_of(old), old_workers);
    assert_eq!(pidfile_pid(dir.path()), Some(i64::from(old)));
    // gunicorn's own new master removes its `.2` pidfile only when it exits
    // on its own; when it is killed mid-halt a stale one stays (gunicorn's
    // behaviour, not ours): it must then name a process that is gone.
    let second = dir.path().join("app.pid.2");
    if let Ok(text) = fs::read_to_string(&second) {
        let pid: i32 = text.trim().parse().unwrap_or(0);
        assert!(
            !process_alive(pid),
            "a .2 pidfile names a live process: {pid}"
        );
    }
    assert!(serves(&addr));
    let (ok, failures) = load.finish();
    assert!(ok > 0);
    assert_eq!(failures, Vec::<String>::new(), "{ok} requests answered");
    outcome
}

#[test]
fn a_python_gunicorn_upgrade_whose_workers_cannot_boot_leaves_the_old_master() {
    if gunicorn_python().is_none() {
        return;
    }
    // gunicorn's new master halts once a worker fails to boot; its old
    // master has nothing to undo.
    let outcome = failed_upgrade("import a_module_that_does_not_exist\n", &[]);
    let error = outcome["error"].as_str().unwrap();
    let new = &outcome["new_pid"];
    assert!(
        error.starts_with(&format!("new master {new} exited before it was ready")),
        "{error}"
    );
    assert!(!error.contains("rolled back"), "{error}");
}

#[test]
fn a_python_gunicorn_upgrade_that_times_out_is_rolled_back() {
    if gunicorn_python().is_none() {
        return;
    }
    // The new workers hang while importing the app, so it never gets ready.
    let outcome = failed_upgrade("import time\ntime.sleep(600)\n", &["--timeout", "3"]);
    let error = outcome["error"].as_str().unwrap();
    let new = &outcome["new_pid"];
    assert!(
        error.starts_with(&format!(
            "timed out after 3s waiting for new master {new} to be ready: "
        )),
        "{error}"
    );
    assert!(
        error.contains(&format!("; rolled back (new master {new} stopped): ")),
        "{error}"
    );
}

#[test]
fn a_python_gunicorn_upgrade_needs_the_right_to_signal_its_master() {
    let Some(python) = gunicorn_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Another user may reach the socket, but not signal the master.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let gunicorn = booted_gunicorn_with(&python, dir.path(), &["--control-socket-mode", "0666"]);
    let sock = dir.path().join("app.pid.ctl");
    let master = gunicorn.pid() as i32;
    let workers = children_of(master);
    let out = ctl_command(&["-s", sock.to_str().unwrap(), "upgrade"])
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(
        stderr(&out),
        format!(
            "gunicornctl: cannot upgrade gunicorn: not allowed to signal its master {master} \
             (it runs as uid {}); run gunicornctl as the same user or as root\n",
            nix::unistd::getuid()
        )
    );
    assert_eq!(children_of(master), workers, "nothing was started");
    assert!(
        !gunicorn.log().contains("Handling signal: usr2"),
        "{}",
        gunicorn.log()
    );
}
