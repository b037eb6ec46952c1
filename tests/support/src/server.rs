//! A running gunicornd ([`Server`]): its log, its workers, its exit, and
//! what a test asks of it. [`crate::Launch`] starts one.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::{getpgid, Pid};

use crate::control::booted_workers;
use crate::http::{http_request, Response};
use crate::launch::Launch;
use crate::procfs::{children_of, pending_signals, process_alive};
use crate::wait::{expect_within, wait_for, wait_until, DEADLINE};

/// A running gunicornd, killed with its workers (its whole process group)
/// on drop; its log is printed if the test is failing.
pub struct Server {
    /// The master.
    pub pid: i32,
    /// The test's directory: the server's working directory, its logs.
    pub dir: tempfile::TempDir,
    /// The control socket, when the harness knows where it is.
    pub socket: Option<PathBuf>,
    /// `127.0.0.1:PORT` of the first TCP listener, if any.
    pub(crate) addr: Option<String>,
    /// The process we started: the master, or in daemon mode the launcher
    /// (behind a lock so that waiting for it needs no `&mut`).
    pub(crate) launcher: Mutex<Option<Child>>,
    pub(crate) launcher_status: Mutex<Option<ExitStatus>>,
    pub(crate) daemon: bool,
    pub(crate) stderr_log: PathBuf,
    pub(crate) error_log: Option<PathBuf>,
}

impl Server {
    /// `gunicornd ARGS`, waiting only for its TCP listener.
    pub fn start(args: &[&str]) -> Server {
        Launch::new(args).start()
    }

    /// Start with `-b 127.0.0.1:0` added and wait until `n` workers are up.
    pub fn start_with_workers(n: usize, args: &[&str]) -> Server {
        let mut all = vec!["-b", "127.0.0.1:0"];
        all.extend_from_slice(args);
        Launch::new(&all).booted(n).start()
    }

    /// Everything logged so far: the process's stderr, then the error log
    /// when there is one.
    pub fn log(&self) -> String {
        let mut log = fs::read_to_string(&self.stderr_log).unwrap_or_default();
        if let Some(path) = &self.error_log {
            log.push_str(&fs::read_to_string(path).unwrap_or_default());
        }
        log
    }

    pub fn log_contains(&self, needle: &str) -> bool {
        self.log().contains(needle)
    }

    /// Waits until the log shows `needle` (even after the master exited:
    /// its last lines count too).
    #[track_caller]
    pub fn expect_log(&self, needle: &str, timeout: Duration) {
        if !wait_until(timeout, || self.log_contains(needle)) {
            panic!("log never showed {needle:?}; log:\n{}", self.log());
        }
    }

    /// `127.0.0.1:PORT` of the first TCP listener.
    pub fn addr(&self) -> &str {
        self.addr.as_deref().expect("server has a TCP listener")
    }

    /// The control socket path as a string, for gunicornctl's `-s`.
    pub fn sock(&self) -> &str {
        self.socket
            .as_deref()
            .and_then(Path::to_str)
            .expect("the server has a control socket with a UTF-8 path")
    }

    /// A path inside the test's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Sends `sig` (a `libc::SIG*` number) to the master.
    pub fn signal(&self, sig: i32) {
        let sig = Signal::try_from(sig).unwrap_or_else(|e| panic!("signal {sig}: {e}"));
        let _ = kill(Pid::from_raw(self.pid), sig);
    }

    /// Send `sig` and wait until the kernel has handed it to the process
    /// (no longer pending), so that back-to-back signals are not merged by
    /// the kernel before the master's handler has seen each of them.
    pub fn signal_delivered(&self, sig: i32) {
        self.signal(sig);
        let bit = 1u64 << (sig - 1);
        expect_within(Duration::from_secs(5), "signal delivered", || {
            pending_signals(self.pid) & bit == 0
        });
    }

    /// Whether the master has exited (and, in the foreground, been reaped).
    pub fn exited(&self) -> bool {
        if self.daemon {
            return !process_alive(self.pid);
        }
        self.exit_status().is_some()
    }

    fn exit_status(&self) -> Option<ExitStatus> {
        let mut status = self.launcher_status.lock().unwrap();
        if status.is_none() {
            if let Some(child) = self.launcher.lock().unwrap().as_mut() {
                *status = child.try_wait().ok().flatten();
            }
        }
        *status
    }

    /// Waits for the (foreground) master to exit; returns its exit code.
    /// Panics if it does not exit in time or was killed by a signal.
    #[track_caller]
    pub fn wait_exit(&self, timeout: Duration) -> i32 {
        assert!(!self.daemon, "a daemon is not our child: use wait_gone");
        let Some(status) = wait_for(timeout, || self.exit_status()) else {
            panic!(
                "gunicornd did not exit within {timeout:?}; log:\n{}",
                self.log()
            );
        };
        match status.code() {
            Some(code) => code,
            None => panic!("gunicornd was killed: {status}; log:\n{}", self.log()),
        }
    }

    /// Waits until the master process no longer exists (a daemon's too).
    #[track_caller]
    pub fn wait_gone(&self, timeout: Duration) {
        if !wait_until(timeout, || self.exited()) {
            panic!(
                "gunicornd still runs after {timeout:?}; log:\n{}",
                self.log()
            );
        }
    }

    /// Polls `f` until it returns `Some`, for at most [`DEADLINE`]; stops
    /// early if the master is gone.
    #[track_caller]
    pub fn poll<T>(&self, what: &str, f: impl FnMut(&Server) -> Option<T>) -> T {
        self.poll_within(DEADLINE, what, f)
    }

    /// [`Server::poll`] with a deadline of its own.
    #[track_caller]
    pub fn poll_within<T>(
        &self,
        timeout: Duration,
        what: &str,
        mut f: impl FnMut(&Server) -> Option<T>,
    ) -> T {
        let found = wait_for(timeout, || match f(self) {
            Some(v) => Some(Some(v)),
            // Checked after `f`, so a fact that came true just before the
            // master exited still counts.
            None if self.exited() => Some(None),
            None => None,
        });
        match found {
            Some(Some(v)) => v,
            Some(None) => panic!("gunicornd exited while waiting for {what}"),
            None => panic!("timed out after {timeout:?} waiting for {what}"),
        }
    }

    /// Pids of the master's live (not zombie) children: its workers.
    pub fn worker_pids(&self) -> BTreeSet<i32> {
        children_of(self.pid)
    }

    /// Waits until exactly `n` workers run, each of which logged "Booting
    /// worker" (no control socket needed); returns their pids.
    #[track_caller]
    pub fn wait_booted(&self, n: usize) -> BTreeSet<i32> {
        self.poll(&format!("{n} booted worker processes"), |s| {
            let pids = s.worker_pids();
            let log = s.log();
            let all_booted = pids
                .iter()
                .all(|p| log.contains(&format!("Booting worker with pid: {p}")));
            (pids.len() == n && all_booted).then_some(pids)
        })
    }

    /// Workers that logged "Booting worker" and are still alive: an
    /// approximation of "booted" that needs no control socket.
    pub fn booted_count(&self) -> usize {
        let log = self.log();
        let alive = self.worker_pids();
        log.lines()
            .filter_map(|l| l.split("Booting worker with pid: ").nth(1))
            .filter_map(|p| p.trim().parse::<i32>().ok())
            .filter(|p| alive.contains(p))
            .count()
    }

    /// Waits until `show workers` lists exactly `n` booted workers, none
    /// retiring, and exactly those run (per /proc); returns their pids.
    #[track_caller]
    pub fn wait_pool(&self, n: usize) -> BTreeSet<i32> {
        let path = self.socket.clone().expect("a control socket");
        self.poll(
            &format!("{n} booted workers in 'show workers' and /proc"),
            |s| {
                let listed = booted_workers(&path)?;
                let running = s.worker_pids();
                (listed.len() == n && listed == running).then_some(running)
            },
        )
    }

    /// `GET path` on the first TCP listener.
    pub fn get(&self, path: &str) -> Response {
        http_request(
            self.addr(),
            &format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n"),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The master's process group holds its workers. A daemon's group is
        // named after the process that called setsid (not the master), so
        // ask the kernel which group the master is in.
        let master = Pid::from_raw(self.pid);
        if let Ok(group) = getpgid(Some(master)) {
            let _ = killpg(group, Signal::SIGKILL);
        }
        let _ = kill(master, Signal::SIGKILL);
        // The group we started (the master's, or the launcher's), which
        // also holds whatever a wrapper such as `unshare` left.
        let launcher = self.launcher.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(mut child) = launcher.take() {
            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
        if thread::panicking() {
            eprintln!(
                "--- gunicornd log ({}) ---\n{}--- end of log ---",
                self.dir.path().display(),
                self.log()
            );
        }
    }
}

/// The first TCP address in a `Listening at:` line of `log` (`http://` or
/// `https://`).
pub fn listening_addr_in(log: &str) -> Option<String> {
    let line = log.lines().find(|l| l.contains("Listening at: "))?;
    let rest = line.split("Listening at: ").nth(1)?;
    rest.split([',', ' '])
        .find_map(|a| {
            a.strip_prefix("http://")
                .or_else(|| a.strip_prefix("https://"))
        })
        .map(|s| s.to_string())
}
