//! gunicornctl against a real Python gunicorn (≥ 25.1) master: the wire
//! format and reply shapes are gunicorn's, so the commands both understand
//! must work unchanged.
//!
//! gunicorn comes from PyPI into a venv cached under `target/` (created once,
//! atomically). The test is skipped only when `python3` cannot make venvs.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use gunicornd_test_support::{ctl, ctl_json, ctl_ok, gunicorn_python, poll, stderr};

/// A gunicorn master in its own process group, killed with its workers on
/// drop (and its log printed if the test failed).
struct Gunicorn {
    child: Child,
    log: PathBuf,
}

impl Gunicorn {
    fn start(python: &Path, dir: &Path) -> Gunicorn {
        fs::write(
            dir.join("app.py"),
            "def app(environ, start_response):\n    \
             start_response('200 OK', [('Content-Type', 'text/plain')])\n    \
             return [b'ok\\n']\n",
        )
        .unwrap();
        let log = dir.join("gunicorn.log");
        let log_file = fs::File::create(&log).unwrap();
        let child = Command::new(python)
            .args([
                "-m",
                "gunicorn",
                "--workers",
                "2",
                "--bind",
                "127.0.0.1:0",
                "--chdir",
            ])
            .arg(dir)
            .arg("--pid")
            .arg(dir.join("app.pid"))
            .arg("--control-socket")
            .arg(dir.join("app.pid.ctl"))
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
