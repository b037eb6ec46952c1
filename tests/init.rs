//! Init-system integration (issue 4): daemon mode (`-D`), the pidfile
//! (`-p`), systemd readiness notifications and watchdog, socket activation
//! (`LISTEN_FDS`), and running as PID 1 in a container.

use std::fs;
use std::io::ErrorKind;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use gunicornd_test_support::*;

/// How long a launcher may take: binding a busy port is retried
/// `BIND_ATTEMPTS` (5) times one second apart before giving up.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(40);
const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: init\r\n\r\n";

// ---------------------------------------------------------------------------
// Helpers: processes found through /proc
// ---------------------------------------------------------------------------

/// Live processes whose command line mentions `dir`. A daemon and its
/// workers leave the test's process group, so this is how they are found:
/// every daemon test passes paths inside its own temporary directory.
fn processes_mentioning(dir: &Path) -> Vec<i32> {
    let needle = dir.as_os_str().as_bytes();
    all_processes()
        .into_iter()
        .filter(|p| p.state != 'Z')
        .filter(|p| {
            fs::read(format!("/proc/{}/cmdline", p.pid))
                .is_ok_and(|cmdline| cmdline.windows(needle.len()).any(|w| w == needle))
        })
        .map(|p| p.pid)
        .collect()
}

/// SIGKILL everything that mentions `dir` until nothing does.
fn kill_processes_mentioning(dir: &Path) {
    wait_until(Duration::from_secs(10), || {
        let pids = processes_mentioning(dir);
        for &pid in &pids {
            // SAFETY: plain kill(2) on a process this test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        pids.is_empty()
    });
}

/// The session id of `pid` (field 6 of /proc/PID/stat).
fn session_of(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    // state ppid pgrp session
    rest.split_whitespace().nth(3)?.parse().ok()
}

fn monotonic_now_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC)");
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

/// A process that is alive and is not gunicornd, killed on drop.
struct Sleeper(Child);

impl Sleeper {
    fn start() -> Sleeper {
        let child = Command::new("sleep")
            .arg("60")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sleep");
        let sleeper = Sleeper(child);
        let pid = sleeper.pid();
        expect_within(Duration::from_secs(5), "sleep has exec'd", || {
            proc_info(pid).is_some_and(|p| p.comm == "sleep")
        });
        sleeper
    }

    fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A pid that belonged to a process that has exited.
fn dead_pid() -> i32 {
    let mut child = Command::new("true").spawn().expect("spawn true");
    let pid = child.id() as i32;
    child.wait().unwrap();
    pid
}

fn read_pidfile(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok()
}

/// Wait until the pidfile at `path` holds `"<srv.pid>\n"`.
#[track_caller]
fn expect_pidfile_of(srv: &Server, path: &Path) {
    let want = format!("{}\n", srv.pid);
    if !wait_until(Duration::from_secs(10), || {
        read_pidfile(path).as_deref() == Some(want.as_str())
    }) {
        panic!(
            "pidfile {} holds {:?}, want {want:?}; log:\n{}",
            path.display(),
            read_pidfile(path),
            srv.log()
        );
    }
}

// ---------------------------------------------------------------------------
// Helpers: daemon mode
// ---------------------------------------------------------------------------

/// A finished `gunicornd -D` launcher and whatever daemon it left running.
/// On drop, every process mentioning the test's directory is killed.
struct Daemon {
    dir: tempfile::TempDir,
    launcher_pid: i32,
    status: ExitStatus,
    stderr: String,
    log_path: PathBuf,
    pid_path: PathBuf,
}

impl Daemon {
    /// `gunicornd -D -p DIR/g.pid --error-logfile DIR/error.log ARGS`.
    fn launch(args: &[&str]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let pid_path = dir.path().join("g.pid");
        Daemon::launch_with(dir, &pid_path, args, &[])
    }

    fn launch_with(
        dir: tempfile::TempDir,
        pid_path: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        let log_path = dir.path().join("error.log");
        let stdout_path = dir.path().join("launcher.stdout");
        let stderr_path = dir.path().join("launcher.stderr");
        let mut cmd = Command::new(gunicornd_bin());
        cmd.arg("-D")
            .arg("-p")
            .arg(pid_path)
            .arg("--error-logfile")
            .arg(&log_path)
            // A control socket of its own, so parallel daemons never share one.
            .arg("--control-socket")
            .arg(dir.path().join("ctl.sock"))
            .args(args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            // Files, not pipes: a daemon that kept a pipe open would hang the read.
            .stdout(fs::File::create(&stdout_path).unwrap())
            .stderr(fs::File::create(&stderr_path).unwrap());
        without_inherited_settings(&mut cmd);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut launcher = cmd.spawn().expect("spawn gunicornd -D");
        let launcher_pid = launcher.id() as i32;
        let mut status = None;
        let exited = wait_until(LAUNCH_TIMEOUT, || {
            status = launcher.try_wait().unwrap();
            status.is_some()
        });
        if !exited {
            let _ = launcher.kill();
            let _ = launcher.wait();
            kill_processes_mentioning(dir.path());
            panic!(
                "the launcher did not exit within {LAUNCH_TIMEOUT:?}; stderr:\n{}\nlog:\n{}",
                fs::read_to_string(&stderr_path).unwrap_or_default(),
                fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        Daemon {
            launcher_pid,
            status: status.unwrap(),
            stderr: fs::read_to_string(&stderr_path).unwrap_or_default(),
            log_path,
            pid_path: pid_path.to_path_buf(),
            dir,
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Everything a failure message needs.
    fn report(&self) -> String {
        format!(
            "launcher status: {:?}\nlauncher stderr:\n{}\nerror log:\n{}",
            self.status,
            self.stderr,
            self.log()
        )
    }

    /// The pid in the pidfile.
    fn pid(&self) -> Option<i32> {
        read_pidfile(&self.pid_path)?.trim().parse().ok()
    }

    /// The first stderr line starting with `Error: `.
    #[track_caller]
    fn error_line(&self) -> String {
        self.stderr
            .lines()
            .find(|l| l.starts_with("Error: "))
            .unwrap_or_else(|| {
                panic!(
                    "no line starting 'Error: ' on the launcher's stderr\n{}",
                    self.report()
                )
            })
            .to_string()
    }

    /// A failed start leaves no pidfile and no process behind.
    #[track_caller]
    fn expect_nothing_left(&self) {
        let clean = wait_until(Duration::from_secs(10), || {
            !self.pid_path.exists() && processes_mentioning(self.dir.path()).is_empty()
        });
        assert!(
            clean,
            "left behind: pidfile {:?}, processes {:?}\n{}",
            read_pidfile(&self.pid_path),
            processes_mentioning(self.dir.path()),
            self.report()
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        kill_processes_mentioning(self.dir.path());
    }
}

// ---------------------------------------------------------------------------
// Helpers: the service manager's notify socket
// ---------------------------------------------------------------------------

/// One datagram from gunicornd.
#[derive(Debug, Clone)]
struct Notice {
    received: Instant,
    /// CLOCK_MONOTONIC when it was received, in microseconds.
    received_usec: u64,
    lines: Vec<String>,
}

impl Notice {
    fn has(&self, line: &str) -> bool {
        self.lines.iter().any(|l| l == line)
    }

    fn value(&self, key: &str) -> Option<&str> {
        self.lines
            .iter()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
    }
}

/// A bound datagram socket standing in for systemd's `NOTIFY_SOCKET`.
struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
    /// Every datagram received so far, in order.
    seen: Vec<Notice>,
}

impl NotifySocket {
    fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        NotifySocket {
            socket,
            path,
            seen: vec![],
        }
    }

    fn path(&self) -> &str {
        self.path.to_str().unwrap()
    }

    /// Receive one datagram, or `None` once `deadline` has passed.
    fn recv_before(&mut self, deadline: Instant) -> Option<Notice> {
        let mut buf = vec![0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.socket.set_read_timeout(Some(left)).unwrap();
            match self.socket.recv(&mut buf) {
                Ok(n) => return Some(self.record(&buf[..n])),
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(e) => panic!("recv on the notify socket: {e}"),
            }
        }
    }

    /// Take whatever is queued without waiting.
    fn drain(&mut self) -> Vec<Notice> {
        let mut buf = vec![0u8; 4096];
        let mut out = vec![];
        self.socket.set_nonblocking(true).unwrap();
        while let Ok(n) = self.socket.recv(&mut buf) {
            out.push(self.record(&buf[..n]));
        }
        self.socket.set_nonblocking(false).unwrap();
        out
    }

    fn record(&mut self, datagram: &[u8]) -> Notice {
        let notice = Notice {
            received: Instant::now(),
            received_usec: monotonic_now_usec(),
            lines: String::from_utf8_lossy(datagram)
                .lines()
                .map(str::to_string)
                .collect(),
        };
        self.seen.push(notice.clone());
        notice
    }

    /// Receive until a datagram satisfies `want`; panic with the server's
    /// log after `timeout`.
    #[track_caller]
    fn expect(
        &mut self,
        srv: &Server,
        timeout: Duration,
        what: &str,
        want: impl Fn(&Notice) -> bool,
    ) -> Notice {
        let deadline = Instant::now() + timeout;
        while let Some(notice) = self.recv_before(deadline) {
            if want(&notice) {
                return notice;
            }
        }
        panic!(
            "no {what} from gunicornd within {timeout:?}; datagrams so far: {:?}\nlog:\n{}",
            self.lines(),
            srv.log()
        );
    }

    /// The lines of every datagram, one entry per datagram.
    fn lines(&self) -> Vec<String> {
        self.seen.iter().map(|n| n.lines.join("|")).collect()
    }
}

/// Workers of `srv` not in `old` that logged their boot.
fn booted_since(srv: &Server, old: &std::collections::BTreeSet<i32>) -> usize {
    let log = srv.log();
    srv.worker_pids()
        .iter()
        .filter(|pid| !old.contains(pid))
        .filter(|pid| log.contains(&format!("Booting worker with pid: {pid}")))
        .count()
}

#[track_caller]
fn request_now(addr: &str, srv: &Server, when: &str) {
    match try_http_request(addr, GET) {
        Ok(r) => assert_eq!(
            r.status,
            200,
            "{when}: status {}\nlog:\n{}",
            r.status,
            srv.log()
        ),
        Err(e) => panic!("{when}: the request failed: {e}\nlog:\n{}", srv.log()),
    }
}

// ---------------------------------------------------------------------------
// Daemon mode
// ---------------------------------------------------------------------------

#[test]
fn daemon_launcher_exits_0_once_workers_serve() {
    let d = Daemon::launch(&["-b", "127.0.0.1:0", "-w", "2", "builtin:hello"]);
    assert_eq!(
        d.status.code(),
        Some(0),
        "the launcher reports success\n{}",
        d.report()
    );
    let addr = listening_addr_in(&d.log())
        .unwrap_or_else(|| panic!("no 'Listening at:' in the error log\n{}", d.report()));
    // No retry on purpose: the launcher's exit promises a serving daemon.
    match try_http_request(&addr, GET) {
        Ok(r) => assert_eq!(r.status, 200, "{}", d.report()),
        Err(e) => panic!(
            "first request after the launcher exited failed: {e}\n{}",
            d.report()
        ),
    }
    let pid = d.pid().unwrap_or_else(|| {
        panic!(
            "the pidfile holds the daemon's pid once the launcher exits\n{}",
            d.report()
        )
    });
    assert_ne!(pid, d.launcher_pid, "the daemon is not the launcher");
    assert_eq!(read_pidfile(&d.pid_path).unwrap(), format!("{pid}\n"));
    assert!(process_alive(pid), "the daemon {pid} runs\n{}", d.report());
    assert!(
        !children_of(pid).is_empty(),
        "the daemon has workers\n{}",
        d.report()
    );

    // Detached: a session of its own, of which it is not the leader (double
    // fork, so it can never reacquire a terminal), stdio on /dev/null.
    // SAFETY: getsid(0) only reads our own session id.
    let our_session = unsafe { libc::getsid(0) };
    let session = session_of(pid).expect("the daemon's session");
    assert_ne!(session, our_session, "the daemon left the test's session");
    assert_ne!(session, pid, "the daemon is not a session leader");
    for fd in 0..3 {
        let target = fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap();
        assert_eq!(target, Path::new("/dev/null"), "daemon fd {fd}");
    }

    // Stopped through its pidfile, it removes the file and takes its workers along.
    // SAFETY: plain kill(2) on the daemon this test started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let gone = wait_until(Duration::from_secs(30), || {
        !process_alive(pid) && !d.pid_path.exists() && processes_mentioning(d.dir.path()).is_empty()
    });
    assert!(
        gone,
        "after TERM: alive={} pidfile={:?} processes={:?}\n{}",
        process_alive(pid),
        read_pidfile(&d.pid_path),
        processes_mentioning(d.dir.path()),
        d.report()
    );
}

#[test]
fn daemon_reports_a_port_in_use_and_leaves_nothing_behind() {
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let d = Daemon::launch(&["-b", &addr, "builtin:hello"]);
    assert_ne!(
        d.status.code(),
        Some(0),
        "the launcher reports failure\n{}",
        d.report()
    );
    let line = d.error_line();
    assert!(
        line.contains(&addr),
        "the error names {addr}: {line:?}\n{}",
        d.report()
    );
    d.expect_nothing_left();
}

#[test]
fn daemon_reports_an_app_that_fails_to_load() {
    let d = Daemon::launch(&["-b", "127.0.0.1:0", "static:/nonexistent"]);
    assert_ne!(
        d.status.code(),
        Some(0),
        "the launcher reports failure\n{}",
        d.report()
    );
    d.error_line();
    d.expect_nothing_left();
}

#[test]
fn daemon_refuses_a_pidfile_held_by_a_running_server() {
    let first_dir = tempfile::tempdir().unwrap();
    let pid_path = first_dir.path().join("g.pid");
    let pid_arg = pid_path.to_str().unwrap().to_string();
    let first = Launch::new(&["-b", "127.0.0.1:0", "-p", &pid_arg, "builtin:hello"])
        .booted(1)
        .in_dir(first_dir)
        .start();
    expect_pidfile_of(&first, &pid_path);

    let d = Daemon::launch_with(
        tempfile::tempdir().unwrap(),
        &pid_path,
        &["-b", "127.0.0.1:0", "builtin:hello"],
        &[],
    );
    assert_ne!(
        d.status.code(),
        Some(0),
        "the launcher reports failure\n{}",
        d.report()
    );
    let line = d.error_line();
    let expected = format!("Error: Already running on PID {}", first.pid);
    assert!(
        line.starts_with(&expected),
        "{line:?} starts with {expected:?}\n{}",
        d.report()
    );
    let clean = wait_until(Duration::from_secs(10), || {
        processes_mentioning(d.dir.path()).is_empty()
    });
    assert!(
        clean,
        "the refused daemon is gone: {:?}\n{}",
        processes_mentioning(d.dir.path()),
        d.report()
    );
    // The first server is untouched.
    assert_eq!(read_pidfile(&pid_path), Some(format!("{}\n", first.pid)));
    assert_eq!(first.get("/").status, 200);
}

#[test]
fn daemon_under_notify_socket_warns_about_type_notify() {
    let dir = tempfile::tempdir().unwrap();
    // Something must receive what the daemon may still send.
    let notify = NotifySocket::bind(dir.path());
    let pid_path = dir.path().join("g.pid");
    let env = [("NOTIFY_SOCKET", notify.path().to_string())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let d = Daemon::launch_with(
        dir,
        &pid_path,
        &["-b", "127.0.0.1:0", "builtin:hello"],
        &env,
    );
    assert_eq!(
        d.status.code(),
        Some(0),
        "the start still succeeds\n{}",
        d.report()
    );
    let warned = |text: &str| {
        text.lines()
            .any(|l| l.contains("daemon mode") && l.contains("Type=notify"))
    };
    assert!(
        warned(&d.stderr) || warned(&d.log()),
        "a warning mentioning 'daemon mode' and 'Type=notify'\n{}",
        d.report()
    );
    let on_stderr = d
        .stderr
        .lines()
        .filter(|l| l.contains("daemon mode") && l.contains("Type=notify"))
        .count();
    assert_eq!(on_stderr, 1, "the warning is printed once\n{}", d.report());
}

#[test]
fn daemon_applies_a_relative_chdir_once() {
    let dir = tempfile::tempdir().unwrap();
    // Relative to where gunicornd starts; `site/site` does not exist, so a
    // second chdir would fail the start.
    fs::create_dir(dir.path().join("site")).unwrap();
    fs::write(dir.path().join("site").join("here.txt"), "from site\n").unwrap();
    let pid_path = dir.path().join("g.pid");
    let d = Daemon::launch_with(
        dir,
        &pid_path,
        &["-b", "127.0.0.1:0", "--chdir", "site", "static:."],
        &[],
    );
    assert_eq!(
        d.status.code(),
        Some(0),
        "the start succeeds\n{}",
        d.report()
    );
    let addr = listening_addr_in(&d.log())
        .unwrap_or_else(|| panic!("no 'Listening at:' in the error log\n{}", d.report()));
    let r = try_http_request(&addr, b"GET /here.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap_or_else(|e| panic!("request failed: {e}\n{}", d.report()));
    assert_eq!(r.status, 200, "served from site/\n{}", d.report());
}

// ---------------------------------------------------------------------------
// Pidfile
// ---------------------------------------------------------------------------

#[test]
fn pidfile_holds_the_master_pid_and_is_removed_at_exit() {
    let dir = tempfile::tempdir().unwrap();
    let pid_path = dir.path().join("run").join("g.pid");
    fs::create_dir(pid_path.parent().unwrap()).unwrap();
    let pid_arg = pid_path.to_str().unwrap().to_string();
    let srv = Launch::new(&["-b", "127.0.0.1:0", "-p", &pid_arg, "builtin:hello"])
        .booted(1)
        .in_dir(dir)
        .start();
    expect_pidfile_of(&srv, &pid_path);
    let mode = fs::metadata(&pid_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "pidfile mode {mode:o}");
    srv.signal(libc::SIGTERM);
    assert_eq!(srv.wait_exit(Duration::from_secs(30)), 0, "{}", srv.log());
    assert!(
        !pid_path.exists(),
        "pidfile removed at exit; log:\n{}",
        srv.log()
    );
}

#[test]
fn pidfile_of_a_running_gunicornd_refuses_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let pid_path = dir.path().join("g.pid");
    let pid_arg = pid_path.to_str().unwrap().to_string();
    let first = Launch::new(&["-b", "127.0.0.1:0", "-p", &pid_arg, "builtin:hello"])
        .booted(1)
        .in_dir(dir)
        .start();
    expect_pidfile_of(&first, &pid_path);

    let second = Server::start(&["-b", "127.0.0.1:0", "-p", &pid_arg, "builtin:hello"]);
    assert_eq!(
        second.wait_exit(Duration::from_secs(15)),
        1,
        "{}",
        second.log()
    );
    let expected = format!("Error: Already running on PID {}", first.pid);
    assert!(
        second.log().lines().any(|l| l.starts_with(&expected)),
        "a line starting {expected:?}; log:\n{}",
        second.log()
    );
    assert_eq!(
        read_pidfile(&pid_path),
        Some(format!("{}\n", first.pid)),
        "the pidfile is left alone"
    );
    assert_eq!(first.get("/").status, 200, "the first server still serves");
    assert_eq!(
        first.worker_pids().len(),
        1,
        "the first server keeps its worker"
    );
}

#[test]
fn stale_pidfile_of_a_dead_process_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let pid_path = dir.path().join("g.pid");
    fs::write(&pid_path, format!("{}\n", dead_pid())).unwrap();
    let pid_arg = pid_path.to_str().unwrap().to_string();
    let srv = Launch::new(&["-b", "127.0.0.1:0", "-p", &pid_arg, "builtin:hello"])
        .booted(1)
        .in_dir(dir)
        .start();
    expect_pidfile_of(&srv, &pid_path);
    assert_eq!(srv.get("/").status, 200);
}

#[test]
fn pidfile_naming_a_live_process_that_is_not_gunicornd_is_replaced_with_a_warning() {
    let sleeper = Sleeper::start();
    let dir = tempfile::tempdir().unwrap();
    let pid_path = dir.path().join("g.pid");
    fs::write(&pid_path, format!("{}\n", sleeper.pid())).unwrap();
    let pid_arg = pid_path.to_str().unwrap().to_string();
    let srv = Launch::new(&["-b", "127.0.0.1:0", "-p", &pid_arg, "builtin:hello"])
        .booted(1)
        .in_dir(dir)
        .start();
    expect_pidfile_of(&srv, &pid_path);
    let sleeper_pid = sleeper.pid().to_string();
    assert!(
        srv.log()
            .lines()
            .any(|l| l.contains("[WARNING]") && l.contains(&sleeper_pid)),
        "a WARNING naming PID {sleeper_pid}; log:\n{}",
        srv.log()
    );
    assert!(
        process_alive(sleeper.pid()),
        "the unrelated process is left alone"
    );
}

#[test]
fn pidfile_in_a_missing_directory_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir");
    let pid_arg = missing.join("g.pid").to_str().unwrap().to_string();
    let srv = Launch::new(&["-b", "127.0.0.1:0", "-p", &pid_arg, "builtin:hello"])
        .in_dir(dir)
        .start();
    assert_eq!(srv.wait_exit(Duration::from_secs(15)), 1, "{}", srv.log());
    let missing = missing.to_str().unwrap();
    assert!(
        srv.log()
            .lines()
            .any(|l| l.starts_with("Error:") && l.contains(missing)),
        "an 'Error:' line naming {missing}; log:\n{}",
        srv.log()
    );
}

// ---------------------------------------------------------------------------
// systemd notifications
// ---------------------------------------------------------------------------

/// What systemd saw of a run with one reload (or in-place upgrade) in it:
/// READY=1, RELOADING=1, READY=1, STOPPING=1, in that order, nothing more.
#[track_caller]
fn assert_one_reload_seen(notify: &NotifySocket) {
    let milestones: Vec<&str> = notify
        .seen
        .iter()
        .flat_map(|n| n.lines.iter())
        .map(String::as_str)
        .filter(|l| matches!(*l, "READY=1" | "RELOADING=1" | "STOPPING=1"))
        .collect();
    assert_eq!(
        milestones,
        ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"],
        "datagrams: {:?}",
        notify.lines()
    );
}

/// An in-place upgrade is one continuous service to systemd (what
/// `Type=notify-reload` expects): the same process throughout, RELOADING=1
/// with MONOTONIC_USEC when it starts, READY=1 from the new image only once
/// its own generation serves, and never a MAINPID= change.
#[test]
fn notify_in_place_upgrade_reloading_then_ready_from_the_same_pid() {
    let dir = tempfile::tempdir().unwrap();
    let mut notify = NotifySocket::bind(dir.path());
    let srv = Launch::new(&[
        "-b",
        "127.0.0.1:0",
        "-w",
        "2",
        "--upgrade-mode",
        "in-place",
        "builtin:hello",
    ])
    .env("NOTIFY_SOCKET", notify.path())
    .in_dir(dir)
    .start();
    let addr = srv.addr().to_string();
    notify.expect(&srv, Duration::from_secs(20), "READY=1", |n| {
        n.has("READY=1")
    });
    let first_generation = srv.worker_pids();
    let before = monotonic_now_usec();
    srv.signal(libc::SIGUSR2);
    let reloading = notify.expect(&srv, Duration::from_secs(10), "RELOADING=1", |n| {
        n.has("RELOADING=1")
    });
    let stamp: u64 = reloading
        .value("MONOTONIC_USEC")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("RELOADING=1 with MONOTONIC_USEC=: {:?}", reloading.lines));
    assert!((before..=reloading.received_usec).contains(&stamp));
    notify.expect(
        &srv,
        Duration::from_secs(20),
        "READY=1 after the in-place upgrade",
        |n| n.has("READY=1"),
    );
    request_now(&addr, &srv, "right after READY=1 following the upgrade");
    assert!(
        booted_since(&srv, &first_generation) >= 2 && srv.worker_pids().is_disjoint(&first_generation),
        "READY=1 once the new image's generation alone serves: first {first_generation:?}, now {:?}; log:\n{}",
        srv.worker_pids(),
        srv.log()
    );
    assert!(srv.log_contains("Upgraded in place"), "{}", srv.log());
    srv.signal(libc::SIGTERM);
    assert_eq!(srv.wait_exit(Duration::from_secs(30)), 0, "{}", srv.log());
    notify.drain();
    assert!(
        !notify.lines().iter().any(|l| l.starts_with("MAINPID=")),
        "the same main pid throughout: {:?}",
        notify.lines()
    );
    assert_one_reload_seen(&notify);
}

#[test]
fn notify_ready_reloading_ready_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let mut notify = NotifySocket::bind(dir.path());
    let srv = Launch::new(&[
        "-b",
        "127.0.0.1:0",
        "-w",
        "2",
        "--graceful-timeout",
        "10",
        "builtin:hello",
    ])
    .env("NOTIFY_SOCKET", notify.path())
    .in_dir(dir)
    .start();
    let addr = srv.addr().to_string();

    notify.expect(&srv, Duration::from_secs(20), "READY=1", |n| {
        n.has("READY=1")
    });
    // READY=1 means the first generation has booted: no retry.
    request_now(&addr, &srv, "right after the first READY=1");
    assert_eq!(
        srv.booted_count(),
        2,
        "both workers booted by READY=1; log:\n{}",
        srv.log()
    );
    let first_generation = srv.worker_pids();

    let before_hup = monotonic_now_usec();
    srv.signal(libc::SIGHUP);
    let reloading = notify.expect(&srv, Duration::from_secs(10), "RELOADING=1", |n| {
        n.has("RELOADING=1")
    });
    let stamp: u64 = reloading
        .value("MONOTONIC_USEC")
        .unwrap_or_else(|| {
            panic!(
                "RELOADING=1 comes with MONOTONIC_USEC= in one datagram: {:?}",
                reloading.lines
            )
        })
        .parse()
        .unwrap_or_else(|e| panic!("MONOTONIC_USEC is a number ({e}): {:?}", reloading.lines));
    assert!(
        (before_hup..=reloading.received_usec).contains(&stamp),
        "MONOTONIC_USEC={stamp} lies between the HUP ({before_hup}) and its receipt ({})",
        reloading.received_usec
    );

    notify.expect(
        &srv,
        Duration::from_secs(20),
        "READY=1 after the reload",
        |n| n.has("READY=1"),
    );
    request_now(&addr, &srv, "right after READY=1 following HUP");
    assert!(
        booted_since(&srv, &first_generation) >= 2,
        "the new generation booted by READY=1: first {first_generation:?}, now {:?}; log:\n{}",
        srv.worker_pids(),
        srv.log()
    );

    srv.signal(libc::SIGTERM);
    notify.expect(&srv, Duration::from_secs(10), "STOPPING=1", |n| {
        n.has("STOPPING=1")
    });
    assert_eq!(srv.wait_exit(Duration::from_secs(30)), 0, "{}", srv.log());
    notify.drain();

    assert_one_reload_seen(&notify);
    assert!(
        notify
            .seen
            .iter()
            .any(|n| n.value("STATUS").is_some_and(|s| !s.is_empty())),
        "some STATUS= along the way: {:?}",
        notify.lines()
    );
}

#[test]
fn watchdog_pings_every_half_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut notify = NotifySocket::bind(dir.path());
    let srv = Launch::new(&["-b", "127.0.0.1:0", "builtin:hello"])
        .env("NOTIFY_SOCKET", notify.path())
        .env("WATCHDOG_USEC", "1000000")
        .pid_env("WATCHDOG_PID")
        .booted(1)
        .in_dir(dir)
        .start();
    // Pings queued while the server started would all seem to arrive now.
    notify.drain();

    let deadline = Instant::now() + Duration::from_millis(3200);
    let mut pings: Vec<Instant> = vec![];
    while pings.len() < 7 {
        let Some(notice) = notify.recv_before(deadline) else {
            break;
        };
        if notice.has("WATCHDOG=1") {
            pings.push(notice.received);
        }
    }
    let gaps: Vec<Duration> = pings.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        pings.len() >= 4,
        "at least 4 WATCHDOG=1 in ~3 s, got {} (gaps {gaps:?}); datagrams: {:?}\nlog:\n{}",
        pings.len(),
        notify.lines(),
        srv.log()
    );
    for gap in &gaps {
        assert!(
            (Duration::from_millis(250)..=Duration::from_millis(900)).contains(gap),
            "pings about every 0.5 s; gaps {gaps:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// Socket activation
// ---------------------------------------------------------------------------

#[test]
fn socket_activation_uses_the_passed_tcp_socket_and_ignores_binds() {
    let passed = TcpListener::bind("127.0.0.1:0").unwrap();
    let passed_addr = passed.local_addr().unwrap().to_string();
    let ignored_addr = format!("127.0.0.1:{}", free_port());
    let srv = Launch::new(&["-b", &ignored_addr, "builtin:hello"])
        .env("LISTEN_FDS", "1")
        .pid_env("LISTEN_PID")
        .fd3(passed.as_raw_fd())
        .booted(1)
        .start();
    assert_eq!(
        srv.addr(),
        passed_addr,
        "listening on the socket from LISTEN_FDS, not on {ignored_addr}; log:\n{}",
        srv.log()
    );
    request_now(&passed_addr, &srv, "through the passed socket");
    match TcpStream::connect(&ignored_addr) {
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
        other => panic!(
            "nothing listens on the ignored bind {ignored_addr}: {other:?}\nlog:\n{}",
            srv.log()
        ),
    }
    let log = srv.log();
    assert!(
        log.lines().any(|l| l.contains("[INFO]")
            && (l.contains("LISTEN_FDS") || l.contains("systemd"))
            && l.to_lowercase().contains("ignor")),
        "an INFO line saying the bind setting is ignored under LISTEN_FDS; log:\n{log}"
    );
    srv.signal(libc::SIGTERM);
    assert_eq!(srv.wait_exit(Duration::from_secs(30)), 0, "{}", srv.log());
}

#[test]
fn socket_activation_keeps_the_unix_socket_file_at_exit() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("web.sock");
    let passed = UnixListener::bind(&sock).unwrap();
    let ignored = dir.path().join("ignored.sock");
    let ignored_bind = format!("unix:{}", ignored.display());
    let srv = Launch::new(&["-b", &ignored_bind, "builtin:hello"])
        .env("LISTEN_FDS", "1")
        .pid_env("LISTEN_PID")
        .fd3(passed.as_raw_fd())
        .expect_tcp(false)
        .in_dir(dir)
        .start();
    srv.expect_log(
        &format!("Listening at: unix:{}", sock.display()),
        Duration::from_secs(15),
    );
    srv.wait_booted(1);
    assert!(
        !ignored.exists(),
        "the -b unix socket is ignored; log:\n{}",
        srv.log()
    );
    assert_eq!(
        unix_request(&sock, "GET / HTTP/1.1\r\nHost: init\r\n\r\n").status,
        200
    );
    srv.signal(libc::SIGTERM);
    assert_eq!(srv.wait_exit(Duration::from_secs(30)), 0, "{}", srv.log());
    assert!(
        sock.exists(),
        "systemd's socket file is not removed; log:\n{}",
        srv.log()
    );
}

// ---------------------------------------------------------------------------
// Containers: gunicornd as PID 1
// ---------------------------------------------------------------------------

const UNSHARE: &[&str] = &["unshare", "--pid", "--fork", "--kill-child"];

/// `Err(reason)` when this host does not let us create a PID namespace.
fn pid_namespaces_allowed() -> Result<(), String> {
    let out = Command::new(UNSHARE[0])
        .args(&UNSHARE[1..])
        .arg("true")
        .output()
        .unwrap_or_else(|e| panic!("cannot run unshare (util-linux): {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        Ok(())
    } else if stderr.contains("Operation not permitted") {
        Err(format!("unshare --pid: {}", stderr.trim()))
    } else {
        panic!(
            "unshare --pid --fork true failed: {:?} {stderr}",
            out.status
        );
    }
}

/// The pid in its own namespace, from the `NSpid:` line of /proc/PID/status.
fn innermost_pid(pid: i32) -> Option<i32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))?
        .split_whitespace()
        .last()?
        .parse()
        .ok()
}

#[test]
fn as_pid_1_reaps_orphans_and_stops_gracefully() {
    if let Err(reason) = pid_namespaces_allowed() {
        eprintln!("skipped: {reason}");
        return;
    }
    // Each hook leaves an orphan that is re-parented to PID 1: gunicornd.
    let srv = Launch::new(&[
        "-b",
        "127.0.0.1:0",
        "-w",
        "2",
        "--graceful-timeout",
        "5",
        "--hook",
        "post_fork=sleep 2 &",
        "builtin:hello",
    ])
    .wrapper(UNSHARE)
    .start();
    let mut inner = 0;
    expect_within(
        Duration::from_secs(10),
        "gunicornd forked by unshare",
        || {
            let kids = children_of(srv.pid);
            inner = kids.iter().next().copied().unwrap_or(0);
            kids.len() == 1 && proc_info(inner).is_some_and(|p| p.comm == "gunicornd")
        },
    );
    assert_eq!(
        innermost_pid(inner),
        Some(1),
        "gunicornd is PID 1 in its namespace"
    );

    let describe = |inner: i32| {
        format!(
            "children of gunicornd: {:?}\nlog:\n{}",
            all_children_of(inner),
            srv.log()
        )
    };
    let workers = || {
        all_children_of(inner)
            .into_iter()
            .filter(|p| p.comm == "gunicornd" && p.state != 'Z')
            .count()
    };
    if !wait_until(Duration::from_secs(20), || workers() == 2) {
        panic!("two workers; {}", describe(inner));
    }
    if !wait_until(Duration::from_secs(10), || {
        all_children_of(inner).iter().any(|p| p.comm == "sleep")
    }) {
        panic!(
            "an orphaned hook child re-parented to gunicornd; {}",
            describe(inner)
        );
    }
    // Once the orphans have exited, none lingers as a zombie.
    let reaped = wait_until(Duration::from_secs(15), || {
        all_children_of(inner)
            .iter()
            .all(|p| p.comm != "sleep" && p.state != 'Z')
    });
    if !reaped {
        panic!("orphans reaped; {}", describe(inner));
    }
    assert_eq!(workers(), 2, "{}", describe(inner));
    request_now(srv.addr(), &srv, "as PID 1");

    // SAFETY: plain kill(2) on gunicornd inside the namespace we created.
    unsafe { libc::kill(inner, libc::SIGTERM) };
    let code = srv.wait_exit(Duration::from_secs(15));
    assert_eq!(
        code,
        0,
        "graceful stop as PID 1 (unshare passes on the status); log:\n{}",
        srv.log()
    );
}

// ---------------------------------------------------------------------------
// Binary upgrade under systemd
// ---------------------------------------------------------------------------

fn pid_in(path: &Path) -> Option<i32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// USR2, wait for the new master (its pid in `<pidfile>.2`) to be ready,
/// then WINCH and TERM to the old one; returns the new master's pid once
/// the pidfile holds it.
#[track_caller]
fn upgrade_by_signals(srv: &Server, old: i32, pidfile: &Path) -> i32 {
    let second = PathBuf::from(format!("{}.2", pidfile.display()));
    // SAFETY: plain kill(2) on the master this test started.
    unsafe { libc::kill(old, libc::SIGUSR2) };
    let mut new = None;
    expect_within(Duration::from_secs(20), "the new master's pidfile", || {
        new = pid_in(&second);
        new.is_some()
    });
    let new = new.unwrap();
    srv.expect_log(
        &format!("the new master (pid:{new}) is ready"),
        Duration::from_secs(20),
    );
    // SAFETY: as above.
    unsafe {
        libc::kill(old, libc::SIGWINCH);
        libc::kill(old, libc::SIGTERM);
    }
    expect_within(
        Duration::from_secs(20),
        "the pidfile holds the new pid",
        || pid_in(pidfile) == Some(new),
    );
    new
}

/// A datagram's text and the pid the pidfile held when it came.
type Received = (String, Option<i32>);

#[test]
fn upgrade_tells_systemd_the_new_mainpid_after_the_pidfile_holds_it() {
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let notify = NotifySocket::bind(dir.path());
    let pidfile = dir.path().join("g.pid");
    // Record each datagram with what the pidfile held the moment it came.
    let received: Arc<Mutex<Vec<Received>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let listener = {
        let socket = notify.socket.try_clone().unwrap();
        let (received, stop, pidfile) = (received.clone(), stop.clone(), pidfile.clone());
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(n) = socket.recv(&mut buf) {
                    let held = pid_in(&pidfile);
                    let text = String::from_utf8_lossy(&buf[..n]).to_string();
                    received.lock().unwrap().push((text, held));
                }
            }
        })
    };
    let srv = Launch::new(&["-b", "127.0.0.1:0", "-w", "1", "-p"])
        .arg(&pidfile)
        .arg("builtin:hello")
        .env("NOTIFY_SOCKET", notify.path())
        .in_dir(dir)
        .booted(1)
        .start();
    let has = |line: &str| {
        received
            .lock()
            .unwrap()
            .iter()
            .any(|(text, _)| text.lines().any(|l| l == line))
    };
    expect_within(Duration::from_secs(20), "READY=1", || has("READY=1"));
    let new = upgrade_by_signals(&srv, srv.pid, &pidfile);
    let mainpid = format!("MAINPID={new}");
    expect_within(Duration::from_secs(20), &mainpid, || has(&mainpid));
    expect_within(
        Duration::from_secs(20),
        "READY=1 from the new master",
        || {
            let got = received.lock().unwrap();
            let at = got
                .iter()
                .position(|(t, _)| t.lines().any(|l| l == mainpid));
            at.is_some_and(|i| {
                got[i..]
                    .iter()
                    .any(|(t, _)| t.lines().any(|l| l == "READY=1"))
            })
        },
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    listener.join().unwrap();
    let got = received.lock().unwrap().clone();
    let first = got
        .iter()
        .position(|(t, _)| t.lines().any(|l| l == mainpid))
        .unwrap();
    // When the first MAINPID= came, the pidfile named the new master already.
    assert_eq!(got[first].1, Some(new), "{got:?}");
    // Nothing said READY=1 between the first one and the hand-over: the new
    // master was silent until it took over.
    let readies = got[..first]
        .iter()
        .filter(|(t, _)| t.lines().any(|l| l == "READY=1"))
        .count();
    assert_eq!(readies, 1, "{got:?}");
    assert_eq!(srv.get("/").status, 200);
}

#[test]
fn upgrade_of_a_socket_activated_server_hands_on_listen_fds() {
    let passed = TcpListener::bind("127.0.0.1:0").unwrap();
    let passed_addr = passed.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("g.pid");
    let srv = Launch::new(&["-w", "1", "-p"])
        .arg(&pidfile)
        .arg("builtin:hello")
        .in_dir(dir)
        .env("LISTEN_FDS", "1")
        .pid_env("LISTEN_PID")
        .fd3(passed.as_raw_fd())
        .booted(1)
        .start();
    let inode = socket_inode(srv.pid, 3).expect("the passed socket at fd 3");
    drop(passed);
    let new = upgrade_by_signals(&srv, srv.pid, &pidfile);
    assert_eq!(socket_inode(new, 3), Some(inode), "the same socket at fd 3");
    let environ = fs::read(format!("/proc/{new}/environ")).unwrap();
    let environ = String::from_utf8_lossy(&environ).to_string();
    // The new master took the socket as systemd's (LISTEN_PID matched).
    srv.expect_log(
        &format!("[{new}] [INFO] Using 1 socket(s) passed by systemd (LISTEN_FDS"),
        Duration::from_secs(5),
    );
    assert!(!environ.contains("GUNICORN_FD="), "{environ}");
    // The exec'd process's initial environment: LISTEN_PID is its own pid.
    assert!(
        environ.contains(&format!("LISTEN_PID={new}\0")),
        "{environ}"
    );
    assert!(environ.contains("LISTEN_FDS=1\0"), "{environ}");
    request_now(
        &passed_addr,
        &srv,
        "through the passed socket, after the upgrade",
    );
}

// ---------------------------------------------------------------------------
// The LSB init script
// ---------------------------------------------------------------------------

/// Runs `contrib/init.d/gunicornd ACTION` with its settings in `defaults`.
fn init_script(defaults: &Path, action: &str) -> std::process::Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/init.d/gunicornd");
    let mut cmd = Command::new("/bin/sh");
    cmd.arg(script)
        .arg(action)
        .env("GUNICORND_DEFAULTS", defaults)
        .stdin(Stdio::null());
    without_inherited_settings(&mut cmd);
    cmd.output().expect("run the init script")
}

#[test]
fn init_script_upgrade_replaces_the_master_with_and_without_gunicornctl() {
    let dir = tempfile::tempdir().unwrap();
    // The daemons are detached: whatever happens, kill what runs from here.
    struct Cleanup<'a>(&'a Path);
    impl Drop for Cleanup<'_> {
        fn drop(&mut self) {
            kill_processes_mentioning(self.0);
        }
    }
    let _cleanup = Cleanup(dir.path());
    let port = free_port();
    let pidfile = dir.path().join("g.pid");
    for (round, ctl) in [gunicornctl_bin(), PathBuf::from("/nonexistent/gunicornctl")]
        .iter()
        .enumerate()
    {
        let defaults = dir.path().join(format!("defaults{round}"));
        fs::write(
            &defaults,
            format!(
                "DAEMON={bin}\nRUNDIR={dir}\nPIDFILE={pid}\nERROR_LOG={dir}/error.log\n\
                 APP=builtin:hello\nGUNICORNCTL={ctl}\nUPGRADE_TIMEOUT=20\n\
                 DAEMON_OPTS=\"--bind 127.0.0.1:{port} --workers 2\"\n",
                bin = gunicornd_bin().display(),
                dir = dir.path().display(),
                pid = pidfile.display(),
                ctl = ctl.display(),
            ),
        )
        .unwrap();
        if round == 0 {
            let out = init_script(&defaults, "start");
            assert!(out.status.success(), "start: {out:?}");
        }
        let old = pid_in(&pidfile).expect("a pidfile");
        let out = init_script(&defaults, "upgrade");
        let log = fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
        assert!(
            out.status.success(),
            "upgrade (round {round}): {out:?}\n{log}"
        );
        let new = pid_in(&pidfile).expect("a pidfile after the upgrade");
        assert_ne!(new, old, "round {round}");
        assert!(!process_alive(old), "round {round}: the old master is gone");
        assert!(!PathBuf::from(format!("{}.2", pidfile.display())).exists());
        let r = try_http_request(&format!("127.0.0.1:{port}"), GET).unwrap();
        assert_eq!(r.status, 200, "round {round}");
    }
    let defaults = dir.path().join("defaults0");
    let last = pid_in(&pidfile).unwrap();
    let out = init_script(&defaults, "stop");
    assert!(out.status.success(), "stop: {out:?}");
    expect_within(Duration::from_secs(20), "stopped", || !process_alive(last));
}
