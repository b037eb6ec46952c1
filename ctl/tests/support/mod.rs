//! Shared by gunicornctl's integration tests: running `gunicornctl`, the
//! cached venv with Python gunicorn, and a harness that starts the real
//! `gunicornd` (the root package's `tests/common` cannot be imported from
//! here, so this is its small equivalent).
//!
//! Synchronisation is always "poll a fact until a deadline" ([`poll`]);
//! every process a test starts is killed (with its process group) on drop.

// Each test crate includes this module and uses a different part of it.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use gunicornd_protocol::{read_frame, write_frame, ProtocolError, Request, Response};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// How long any single fact may take to become true. Generous: the test
/// machine is small and shared.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// How long the control socket may take to appear once the server listens.
const SOCKET_DEADLINE: Duration = Duration::from_secs(20);

const POLL_PAUSE: Duration = Duration::from_millis(20);

/// Calls `f` until it returns `Some`, panicking with `what` after
/// [`DEADLINE`].
#[track_caller]
pub fn poll<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    poll_within(DEADLINE, what, f)
}

#[track_caller]
pub fn poll_within<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        thread::sleep(POLL_PAUSE);
    }
}

// ---------------------------------------------------------------------------
// gunicornctl

/// Runs gunicornctl. `XDG_RUNTIME_DIR` would take precedence over `--pid`
/// in the default-path rules, so it is removed.
pub fn ctl(args: &[&str]) -> Output {
    ctl_command(args).output().expect("run gunicornctl")
}

/// gunicornctl ready to run, without `XDG_RUNTIME_DIR`.
pub fn ctl_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gunicornctl"));
    cmd.args(args).env_remove("XDG_RUNTIME_DIR");
    cmd
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// gunicornctl's stdout; panics unless it exited 0.
#[track_caller]
pub fn ctl_ok(args: &[&str]) -> String {
    let out = ctl(args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "gunicornctl {args:?}: {}{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// gunicornctl with `--json` appended; its stdout parsed.
#[track_caller]
pub fn ctl_json(args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    let text = ctl_ok(&args);
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{args:?} printed invalid JSON ({e}): {text}"))
}

/// The value of `key` in gunicornctl's `key  value` output (keys are
/// followed by at least two spaces).
pub fn pair<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?;
        rest.starts_with("  ").then(|| rest.trim())
    })
}

// ---------------------------------------------------------------------------
// Python gunicorn

/// Python with gunicorn installed, or `None` (with a message) when this
/// machine cannot create venvs. The venv is cached in `target/` and made
/// once, atomically.
pub fn gunicorn_python() -> Option<PathBuf> {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    let venv = target.join("gunicorn-venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        let probe = Command::new("python3")
            .args(["-c", "import venv, ensurepip"])
            .output();
        if !probe.is_ok_and(|o| o.status.success()) {
            eprintln!("SKIPPED: `python3 -m venv` is unavailable (no python3, or no venv/ensurepip module)");
            return None;
        }
        // Build beside the final place and rename when complete, so an
        // interrupted or concurrent run never leaves a half-made venv there.
        // (The venv is used through `bin/python -m ...`, which survives the
        // rename; console-script shebangs would not.)
        let building = target.join(format!("gunicorn-venv.building-{}", std::process::id()));
        let _ = fs::remove_dir_all(&building);
        run_ok(Command::new("python3").arg("-m").arg("venv").arg(&building));
        run_ok(Command::new(building.join("bin/python")).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "gunicorn>=25.1",
        ]));
        if fs::rename(&building, &venv).is_err() {
            // Another run finished first; use its venv.
            let _ = fs::remove_dir_all(&building);
        }
    }
    let version =
        run_ok(Command::new(&python).args(["-c", "import gunicorn; print(gunicorn.__version__)"]));
    let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
    let parts: Vec<u32> = version.split('.').filter_map(|p| p.parse().ok()).collect();
    assert!(
        parts.as_slice() >= &[25, 1][..],
        "gunicorn {version} in {} is older than 25.1",
        venv.display()
    );
    Some(python)
}

#[track_caller]
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

// ---------------------------------------------------------------------------
// /proc

/// Live (non-zombie) children of `ppid`, found by scanning /proc.
pub fn children_of(ppid: i32) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Some((state, parent)) = state_and_ppid(pid) {
            if parent == ppid && state != 'Z' {
                out.insert(pid);
            }
        }
    }
    out
}

/// The process exists and is not a zombie.
pub fn process_alive(pid: i32) -> bool {
    state_and_ppid(pid).is_some_and(|(state, _)| state != 'Z')
}

/// State letter and parent pid from `/proc/PID/stat`.
fn state_and_ppid(pid: i32) -> Option<(char, i32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the ")" that closes the command name: state, ppid.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

// ---------------------------------------------------------------------------
// HTTP

/// The status code of `GET /` on `addr`, or `None` if the request failed.
pub fn http_get_status(addr: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    text.lines().next()?.split(' ').nth(1)?.parse().ok()
}

// ---------------------------------------------------------------------------
// The control protocol, spoken directly

/// One control connection, for what gunicornctl cannot send (bad frames,
/// idle clients) and for checking reply shapes exactly.
pub struct Conn {
    pub stream: UnixStream,
    next_id: u64,
}

impl Conn {
    #[track_caller]
    pub fn open(path: &Path) -> Conn {
        let stream = UnixStream::connect(path)
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", path.display()));
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Conn { stream, next_id: 1 }
    }

    /// Writes bytes as they are (a frame or not).
    #[track_caller]
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("cannot send {} bytes: {e}", bytes.len()));
    }

    /// A length prefix and `payload`.
    #[track_caller]
    pub fn send_payload(&mut self, payload: &[u8]) {
        let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(payload);
        self.send_bytes(&frame);
    }

    pub fn read(&mut self) -> Result<Response, ProtocolError> {
        read_frame(&mut self.stream)
    }

    /// Sends `command` with a fresh id and returns the reply, checking that
    /// the id is echoed.
    #[track_caller]
    pub fn request(&mut self, command: &str) -> Response {
        let id = self.next_id;
        self.next_id += 1;
        write_frame(&mut self.stream, &Request::new(id, command))
            .unwrap_or_else(|e| panic!("cannot send '{command}': {e}"));
        let reply = self
            .read()
            .unwrap_or_else(|e| panic!("no reply to '{command}': {e}"));
        assert_eq!(reply.id(), id, "reply to '{command}' has the wrong id");
        reply
    }

    /// The data of an `ok` reply to `command`, decoded.
    #[track_caller]
    pub fn ok<T: DeserializeOwned>(&mut self, command: &str) -> T {
        match self.request(command) {
            Response::Ok { data, .. } => serde_json::from_value(data.clone()).unwrap_or_else(|e| {
                panic!("reply to '{command}' has an unexpected shape ({e}): {data}")
            }),
            other => panic!("'{command}' was refused: {other:?}"),
        }
    }

    /// The message of an `error` reply to `command`.
    #[track_caller]
    pub fn error(&mut self, command: &str) -> String {
        match self.request(command) {
            Response::Error { error, .. } => error,
            other => panic!("'{command}' should have been refused, got {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// gunicornd

/// The gunicornd binary, built by `cargo nextest run --workspace` (or
/// `cargo build`) into the same directory as gunicornctl.
pub fn gunicornd_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/debug/deps/<test> -> target/debug/gunicornd
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .join("gunicornd");
    assert!(
        bin.exists(),
        "{} is missing: build the workspace (cargo build --workspace)",
        bin.display()
    );
    bin
}

/// Where the control socket should appear, and so whether to wait for it.
enum SocketChoice {
    /// `--control-socket DIR/ctl.sock`.
    Explicit,
    /// No flag; the daemon picks this path by its default rules.
    Default(PathBuf),
    /// `--no-control-socket`.
    Disabled,
}

/// How to start gunicornd: `-b 127.0.0.1:0 -w N [socket] [args] builtin:hello`
/// in a fresh temporary directory, log to a file in it.
pub struct Launch {
    dir: tempfile::TempDir,
    workers: usize,
    args: Vec<OsString>,
    env: Vec<(String, OsString)>,
    socket: SocketChoice,
    error_log: Option<PathBuf>,
    daemon: bool,
}

impl Launch {
    pub fn new(workers: usize) -> Launch {
        Launch {
            dir: tempfile::tempdir().expect("tempdir"),
            workers,
            args: Vec::new(),
            env: Vec::new(),
            socket: SocketChoice::Explicit,
            error_log: None,
            daemon: false,
        }
    }

    /// A path inside the test's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Launch {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Launch {
        self.env
            .push((key.to_string(), value.as_ref().to_os_string()));
        self
    }

    /// Let other users into the directory (it is 0700 by default), so that
    /// a client running under another uid can reach the socket.
    pub fn dir_mode(self, mode: u32) -> Launch {
        fs::set_permissions(self.dir.path(), fs::Permissions::from_mode(mode)).unwrap();
        self
    }

    /// Give no `--control-socket`: the daemon's default rules put it at
    /// `expected`.
    pub fn default_socket(mut self, expected: PathBuf) -> Launch {
        self.socket = SocketChoice::Default(expected);
        self
    }

    /// `--no-control-socket`.
    pub fn no_control_socket(mut self) -> Launch {
        self.socket = SocketChoice::Disabled;
        self.arg("--no-control-socket")
    }

    /// `--error-logfile DIR/NAME`; the harness follows that file.
    pub fn error_logfile(mut self, name: &str) -> Launch {
        let path = self.path(name);
        self.error_log = Some(path.clone());
        self.arg("--error-logfile").arg(path)
    }

    /// `-D --pid DIR/app.pid`, logging to `DIR/error.log` (a daemon's
    /// stderr goes nowhere). The master is found through the pidfile.
    pub fn daemon(mut self) -> Launch {
        self.daemon = true;
        let pidfile = self.path("app.pid");
        self.arg("-D")
            .arg("--pid")
            .arg(pidfile)
            .error_logfile("error.log")
    }

    /// Starts gunicornd and waits until it listens, logged that its control
    /// socket listens (unless disabled), and runs `workers` booted workers.
    #[track_caller]
    pub fn start(self) -> Gunicornd {
        let socket = match &self.socket {
            SocketChoice::Explicit => Some(self.path("ctl.sock")),
            SocketChoice::Default(p) => Some(p.clone()),
            SocketChoice::Disabled => None,
        };
        let stderr_log = self.path("stderr.log");
        let log_file = fs::File::create(&stderr_log).unwrap();
        let mut cmd = Command::new(gunicornd_bin());
        cmd.args(["-b", "127.0.0.1:0", "-w", &self.workers.to_string()]);
        if let (SocketChoice::Explicit, Some(path)) = (&self.socket, &socket) {
            cmd.arg("--control-socket").arg(path);
        }
        cmd.args(&self.args)
            .arg("builtin:hello")
            .current_dir(self.dir.path())
            .env_remove("GUNICORN_CMD_ARGS")
            .env_remove("PORT")
            .env_remove("WEB_CONCURRENCY")
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .process_group(0);
        for (key, value) in &self.env {
            cmd.env(key, value);
        }
        let child = cmd.spawn().expect("spawn gunicornd");
        let launcher = child.id() as i32;
        let mut srv = Gunicornd {
            pid: launcher,
            launcher: Some(child),
            launcher_status: None,
            daemon: self.daemon,
            stderr_log,
            error_log: self.error_log,
            socket,
            addr: String::new(),
            dir: self.dir,
        };
        if srv.daemon {
            srv.pid = srv.daemon_pid();
        }
        srv.addr = srv.poll("the 'Listening at: http://127.0.0.1:PORT' log line", |s| {
            s.listening_addr()
        });
        if let Some(path) = srv.socket.clone() {
            // The socket is bound at startup, right after the listeners: no
            // need to wait the full deadline when it never comes.
            let line = format!("Control socket listening at {}", path.display());
            srv.poll_within(SOCKET_DEADLINE, &format!("the log line {line:?}"), |s| {
                s.log().contains(&line).then_some(())
            });
            srv.wait_pool(self.workers);
        } else {
            srv.wait_children(self.workers);
        }
        srv
    }
}

/// A running gunicornd, killed with its workers (its whole process group)
/// on drop; its log is printed if the test is failing.
pub struct Gunicornd {
    /// The master.
    pub pid: i32,
    /// The process we started: the master, or in daemon mode the launcher.
    launcher: Option<Child>,
    launcher_status: Option<ExitStatus>,
    daemon: bool,
    stderr_log: PathBuf,
    error_log: Option<PathBuf>,
    /// The control socket, unless disabled.
    pub socket: Option<PathBuf>,
    /// `127.0.0.1:PORT`
    pub addr: String,
    pub dir: tempfile::TempDir,
}

impl Gunicornd {
    /// The control socket path as a string, for gunicornctl's `-s`.
    pub fn sock(&self) -> &str {
        self.socket
            .as_deref()
            .and_then(Path::to_str)
            .expect("the server has a control socket with a UTF-8 path")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
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

    /// Polls `f` until it returns `Some`; stops early with the log if the
    /// master is gone.
    #[track_caller]
    pub fn poll<T>(&mut self, what: &str, f: impl FnMut(&mut Gunicornd) -> Option<T>) -> T {
        self.poll_within(DEADLINE, what, f)
    }

    #[track_caller]
    pub fn poll_within<T>(
        &mut self,
        timeout: Duration,
        what: &str,
        mut f: impl FnMut(&mut Gunicornd) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = f(self) {
                return v;
            }
            if self.gone() {
                panic!("gunicornd exited while waiting for {what}");
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}"
            );
            thread::sleep(POLL_PAUSE);
        }
    }

    fn listening_addr(&self) -> Option<String> {
        let log = self.log();
        let rest = log.split("Listening at: http://").nth(1)?;
        let end = rest.find([',', ' ', '\n'])?;
        Some(rest[..end].to_string())
    }

    /// Daemon mode: the launcher must exit 0 once the daemon is ready;
    /// the master's pid is then in the pidfile.
    #[track_caller]
    fn daemon_pid(&mut self) -> i32 {
        let status = poll("the -D launcher to exit once the daemon is ready", || {
            self.launcher.as_mut().unwrap().try_wait().unwrap()
        });
        self.launcher_status = Some(status);
        assert!(
            status.success(),
            "the -D launcher exited with {status}; log:\n{}",
            self.log()
        );
        let pidfile = self.path("app.pid");
        let pid = poll("the pidfile to name a live process", || {
            let text = fs::read_to_string(&pidfile).ok()?;
            let pid: i32 = text.trim().parse().ok()?;
            process_alive(pid).then_some(pid)
        });
        assert_ne!(
            pid,
            self.launcher.as_ref().unwrap().id() as i32,
            "-D: the pidfile names the launcher, the master did not detach"
        );
        pid
    }

    /// Whether the master has exited (and, in the foreground, been reaped).
    pub fn gone(&mut self) -> bool {
        if self.daemon {
            return !process_alive(self.pid);
        }
        self.exit_status().is_some()
    }

    fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.launcher_status.is_none() {
            if let Some(child) = self.launcher.as_mut() {
                self.launcher_status = child.try_wait().ok().flatten();
            }
        }
        self.launcher_status
    }

    /// Waits for the (foreground) master to exit; returns its exit code.
    #[track_caller]
    pub fn wait_exit(&mut self) -> i32 {
        assert!(!self.daemon, "a daemon is not our child: use wait_gone");
        let status = poll("gunicornd to exit", || self.exit_status());
        status
            .code()
            .unwrap_or_else(|| panic!("gunicornd was killed: {status}"))
    }

    /// Waits until the master process no longer exists.
    #[track_caller]
    pub fn wait_gone(&mut self) {
        poll("gunicornd to exit", || self.gone().then_some(()));
    }

    /// The worker pids: the master's live children.
    pub fn workers(&self) -> BTreeSet<i32> {
        children_of(self.pid)
    }

    /// Waits until exactly `n` worker processes run, each of which logged
    /// "Booting worker" (no control socket needed).
    #[track_caller]
    pub fn wait_children(&mut self, n: usize) -> BTreeSet<i32> {
        self.poll(&format!("{n} booted worker processes"), |s| {
            let pids = s.workers();
            let log = s.log();
            let all_booted = pids
                .iter()
                .all(|p| log.contains(&format!("Booting worker with pid: {p}")));
            (pids.len() == n && all_booted).then_some(pids)
        })
    }

    /// Waits until `show workers` lists exactly `n` booted workers, none
    /// retiring, and exactly those run (per /proc).
    #[track_caller]
    pub fn wait_pool(&mut self, n: usize) -> BTreeSet<i32> {
        let path = self.socket.clone().expect("a control socket");
        self.poll(
            &format!("{n} booted workers in 'show workers' and /proc"),
            |s| {
                let listed = booted_workers(&path)?;
                let running = s.workers();
                (listed.len() == n && listed == running).then_some(running)
            },
        )
    }

    /// Counts log lines containing every one of `needles`.
    pub fn log_lines_with(&self, needles: &[&str]) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .map(str::to_string)
            .collect()
    }
}

/// The pids `show workers` reports, if every one is booted and none is
/// retiring; `None` otherwise or when the socket does not answer.
fn booted_workers(path: &Path) -> Option<BTreeSet<i32>> {
    let mut stream = UnixStream::connect(path).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    write_frame(&mut stream, &Request::new(1, "show workers")).ok()?;
    let Response::Ok { data, .. } = read_frame(&mut stream).ok()? else {
        return None;
    };
    let workers = data.get("workers")?.as_array()?;
    let mut pids = BTreeSet::new();
    for w in workers {
        let serving = w.get("booted") == Some(&Value::Bool(true))
            && w.get("retiring") != Some(&Value::Bool(true));
        if !serving {
            return None;
        }
        pids.insert(i32::try_from(w.get("pid")?.as_i64()?).ok()?);
    }
    Some(pids)
}

impl Drop for Gunicornd {
    fn drop(&mut self) {
        // The master's process group holds its workers. A daemon's group is
        // named after the process that called setsid (not the master), so
        // ask the kernel which group the master is in.
        let master = Pid::from_raw(self.pid);
        if let Ok(group) = nix::unistd::getpgid(Some(master)) {
            let _ = killpg(group, Signal::SIGKILL);
        }
        let _ = nix::sys::signal::kill(master, Signal::SIGKILL);
        if let Some(mut child) = self.launcher.take() {
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

/// A process running in the background for the length of a test (e.g.
/// `gunicornctl events`), killed on drop.
pub struct Background {
    pub child: Child,
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
