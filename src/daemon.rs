//! Daemon mode (`-D/--daemon`).
//!
//! gunicorn's `daemonize` (`gunicorn/util.py`) forks, `setsid`s, forks again
//! and lets the launching process exit 0 at once, so a start that fails a
//! moment later (port in use, bad app, pidfile held) still looks like a
//! success to the shell or init script that ran it. Here the launching
//! process waits: the daemon reports over a socket when its listeners are
//! bound and its first workers have booted, and the launcher exits with a
//! status that tells the truth.
//!
//! ```text
//! launcher ──fork──► intermediate ──setsid, fork──► daemon (master)
//!    │                    └─ exits at once               │
//!    └── blocks on the startup socket ◄── READY / ERROR ─┘
//!        READY → exit 0; ERROR → print, exit 1; EOF → "exited during startup", exit 1
//! ```
//!
//! Wire format: one record, `READY` or `ERROR <text>`, terminated by a NUL
//! byte. The launcher acts on the first complete record, so a process that
//! still holds the daemon's end (see [`DaemonHandle::raw_fd`]) cannot
//! keep it waiting after a report; only the "daemon died" case relies on
//! end-of-file.
//!
//! A connected `AF_UNIX` socket pair is used rather than a pipe: writing to it
//! after the launcher is gone (killed by Ctrl-C, say) fails with `EPIPE`
//! through `MSG_NOSIGNAL` instead of raising `SIGPIPE` in the master,
//! whatever the master's signal dispositions are.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use nix::errno::Errno;
use nix::sys::socket::{send, MsgFlags};
use nix::sys::stat::{umask, Mode};
use nix::sys::wait::waitpid;
use nix::unistd::{chdir, dup2_stderr, dup2_stdin, dup2_stdout, fork, setsid, ForkResult};
use tracing::debug;

use crate::systemd;

/// What the launcher prints when the daemon disappears without a report.
pub const DIED_DURING_STARTUP: &str =
    "gunicornd: the daemon exited during startup; see the error log (--error-logfile)";

/// What the launcher prints when started with `-D` under a service manager
/// that waits for `READY=1` from the process it started.
pub const NOTIFY_SOCKET_WARNING: &str = "gunicornd: warning: daemon mode (-D) does not mix with \
     Type=notify (NOTIFY_SOCKET is set): the service manager watches the launcher, which exits; \
     drop -D, or use Type=forking with --pid";

/// Error texts are cut to this many bytes so that a report is a single
/// write the launcher can take in one go.
const MAX_ERROR_LEN: usize = 3072;

const READY_RECORD: &str = "READY";
const ERROR_PREFIX: &str = "ERROR ";
const RECORD_END: u8 = 0;

/// How to set up the daemon process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonOptions {
    /// Directory to change to (`--chdir`). `None` keeps the current one:
    /// unlike the classic recipe there is no `chdir("/")`, because relative
    /// paths in the configuration (pidfile, logs, `static:DIR`) are meant
    /// relative to where gunicornd was started, as in gunicorn.
    pub chdir: Option<PathBuf>,
    /// The daemon's umask. gunicorn's `daemonize` sets 0o022.
    pub umask: u32,
}

impl Default for DaemonOptions {
    fn default() -> DaemonOptions {
        DaemonOptions {
            chdir: None,
            umask: 0o022,
        }
    }
}

/// The daemon's end of the startup channel. Report exactly once, then the
/// launcher exits; dropping it unreported makes the launcher report that
/// the daemon died.
#[derive(Debug)]
pub struct DaemonHandle {
    channel: UnixStream,
}

impl DaemonHandle {
    /// Tells the launcher that startup succeeded (listeners bound, first
    /// workers booted): it exits 0.
    pub fn report_ready(self) {
        self.send_record(READY_RECORD);
    }

    /// Tells the launcher that startup failed: it prints `message` (the
    /// whole line the operator should see, e.g. `Error: Already running on
    /// PID 12 (pidfile /run/g.pid)`) on its stderr and exits 1.
    pub fn report_error(self, message: &str) {
        self.send_record(&format!("{ERROR_PREFIX}{}", sanitize(message)));
    }

    /// The channel's descriptor, for a forked worker that closes it by
    /// number: workers are forked before the report (readiness means
    /// "workers booted"), and close-on-exec does not help across a plain
    /// fork. A worker that kept its copy would not delay a report, but if
    /// the master died during startup the launcher would wait for that
    /// worker too before saying so.
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self.channel.as_raw_fd()
    }

    fn send_record(self, record: &str) {
        let mut bytes = record.as_bytes().to_vec();
        bytes.push(RECORD_END);
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            match send(self.channel.as_raw_fd(), rest, MsgFlags::MSG_NOSIGNAL) {
                Ok(sent) => rest = &rest[sent..],
                Err(Errno::EINTR) => {}
                Err(err) => {
                    // EPIPE: the launcher is gone (killed by the operator);
                    // the daemon runs on regardless.
                    debug!("cannot report startup to the launcher: {err}");
                    return;
                }
            }
        }
    }
}

/// Removes what the record framing cannot carry and bounds the length.
fn sanitize(message: &str) -> String {
    let mut text = message.replace('\0', " ");
    if text.len() > MAX_ERROR_LEN {
        let mut cut = MAX_ERROR_LEN;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

/// Detaches from the terminal and the launching process.
///
/// In the launching process this function never returns once the first
/// fork succeeded: it waits for the daemon's report and exits (see the
/// module documentation). It returns `Ok` only in the daemon: a grandchild
/// of the launcher, in a new session but not its leader (so it can never
/// acquire a controlling terminal), with `umask` and `chdir` applied and
/// stdin/stdout/stderr on `/dev/null` (the caller sets up the error log,
/// `--error-logfile`, afterwards). `Err` is returned, in the launching
/// process, when something fails before the first fork; failures in the
/// intermediate process reach the launcher as error reports.
///
/// Call it while the process is single-threaded, before binding listeners
/// or writing the pidfile (the daemon has a new pid), and not at all in a
/// master started by a binary upgrade: that one is already detached.
/// Under `NOTIFY_SOCKET` a warning is printed first, since daemon mode
/// defeats `Type=notify`.
pub fn daemonize(opts: &DaemonOptions) -> Result<DaemonHandle, String> {
    if systemd::under_notify_socket() {
        eprintln!("{NOTIFY_SOCKET_WARNING}");
    }
    // Done before forking so that failures are reported directly; the
    // current directory and the open file are inherited.
    if let Some(dir) = &opts.chdir {
        chdir(dir).map_err(|err| format!("cannot change directory to {}: {err}", dir.display()))?;
    }
    let dev_null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|err| format!("cannot open /dev/null: {err}"))?;
    // std creates both ends close-on-exec.
    let (launcher_end, daemon_end) =
        UnixStream::pair().map_err(|err| format!("cannot create the startup channel: {err}"))?;
    // Buffered output would otherwise be written twice, by the launcher and
    // by the daemon.
    let _ = io::stdout().flush();
    let _ = io::stderr().flush();

    // SAFETY: the caller guarantees a single-threaded process, so the child
    // may run arbitrary code.
    match unsafe { fork() }.map_err(|err| format!("cannot fork: {err}"))? {
        ForkResult::Parent { child } => {
            drop(daemon_end);
            drop(dev_null);
            // The intermediate process exits right after its own fork;
            // reaping it keeps the launcher free of zombies while it waits.
            let _ = waitpid(child, None);
            exit_launcher(wait_for_report(launcher_end))
        }
        ForkResult::Child => {
            drop(launcher_end);
            let handle = DaemonHandle {
                channel: daemon_end,
            };
            become_daemon(handle, opts, dev_null)
        }
    }
}

/// Runs in the intermediate process; returns only in the daemon.
fn become_daemon(
    handle: DaemonHandle,
    opts: &DaemonOptions,
    dev_null: File,
) -> Result<DaemonHandle, String> {
    if let Err(err) = setsid() {
        handle.report_error(&format!("gunicornd: setsid failed: {err}"));
        // SAFETY: _exit skips the atexit handlers and buffers inherited
        // from the launcher, which are the launcher's to run.
        unsafe { libc::_exit(1) };
    }
    // SAFETY: still single-threaded (a forked child has one thread).
    match unsafe { fork() } {
        // SAFETY: as above.
        Ok(ForkResult::Parent { .. }) => unsafe { libc::_exit(0) },
        Ok(ForkResult::Child) => {}
        Err(err) => {
            handle.report_error(&format!("gunicornd: cannot fork the daemon: {err}"));
            // SAFETY: as above.
            unsafe { libc::_exit(1) };
        }
    }
    umask(Mode::from_bits_truncate(opts.umask as libc::mode_t));
    if let Err(err) = redirect_stdio(&dev_null) {
        handle.report_error(&format!(
            "gunicornd: cannot redirect stdio to /dev/null: {err}"
        ));
        // SAFETY: as above.
        unsafe { libc::_exit(1) };
    }
    Ok(handle)
}

fn redirect_stdio(dev_null: &File) -> nix::Result<()> {
    dup2_stdin(dev_null.as_fd())?;
    dup2_stdout(dev_null.as_fd())?;
    dup2_stderr(dev_null.as_fd())?;
    Ok(())
}

/// What the launcher learned from the daemon.
#[derive(Debug, PartialEq, Eq)]
enum Report {
    Ready,
    Failed(String),
    /// End of file without a report: the daemon (and everyone holding its
    /// end of the channel) is gone.
    Died,
}

/// Reads until the first complete record or end of file.
fn wait_for_report(mut channel: impl Read) -> Report {
    let mut received = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        match channel.read(&mut chunk) {
            Ok(0) => return parse_report(&received).unwrap_or(Report::Died),
            Ok(n) => {
                received.extend_from_slice(&chunk[..n]);
                if let Some(end) = received.iter().position(|&b| b == RECORD_END) {
                    return parse_report(&received[..end]).unwrap_or(Report::Died);
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return parse_report(&received).unwrap_or(Report::Died),
        }
    }
}

/// Parses one record (without its terminator). `None` for nothing usable.
fn parse_report(record: &[u8]) -> Option<Report> {
    let record = String::from_utf8_lossy(record);
    if record == READY_RECORD {
        Some(Report::Ready)
    } else {
        record
            .strip_prefix(ERROR_PREFIX)
            .map(|text| Report::Failed(text.to_string()))
    }
}

fn exit_launcher(report: Report) -> ! {
    match report {
        Report::Ready => std::process::exit(0),
        Report::Failed(text) => {
            let mut stderr = io::stderr().lock();
            let _ = stderr.write_all(text.as_bytes());
            if !text.ends_with('\n') {
                let _ = stderr.write_all(b"\n");
            }
            let _ = stderr.flush();
            std::process::exit(1)
        }
        Report::Died => {
            eprintln!("{DIED_DURING_STARTUP}");
            std::process::exit(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::Path;
    use std::process::{Child, Command, Stdio};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    const DEADLINE: Duration = Duration::from_secs(20);

    fn handle_pair() -> (DaemonHandle, UnixStream) {
        let (launcher, daemon) = UnixStream::pair().unwrap();
        (DaemonHandle { channel: daemon }, launcher)
    }

    /// Runs `wait_for_report` on a thread so that a wrong implementation
    /// fails the test instead of hanging it.
    fn report_within_deadline(launcher: UnixStream) -> Report {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(wait_for_report(launcher));
        });
        rx.recv_timeout(DEADLINE)
            .expect("the launcher decided in time")
    }

    #[test]
    fn ready_report() {
        let (handle, launcher) = handle_pair();
        handle.report_ready();
        assert_eq!(report_within_deadline(launcher), Report::Ready);
    }

    #[test]
    fn error_report_keeps_lines_and_drops_nuls() {
        let (handle, launcher) = handle_pair();
        handle.report_error("Error: Connection in use: 127.0.0.1:8000\nsecond\0line");
        assert_eq!(
            report_within_deadline(launcher),
            Report::Failed("Error: Connection in use: 127.0.0.1:8000\nsecond line".into())
        );
    }

    #[test]
    fn long_error_reports_are_cut_on_a_char_boundary() {
        let (handle, launcher) = handle_pair();
        handle.report_error(&"é".repeat(MAX_ERROR_LEN));
        match report_within_deadline(launcher) {
            Report::Failed(text) => {
                assert!(text.len() <= MAX_ERROR_LEN);
                assert!(text.len() > MAX_ERROR_LEN - 2);
                assert!(text.chars().all(|c| c == 'é'));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn dropping_the_handle_means_the_daemon_died() {
        let (handle, launcher) = handle_pair();
        drop(handle);
        assert_eq!(report_within_deadline(launcher), Report::Died);
    }

    #[test]
    fn a_copy_left_open_does_not_delay_a_report() {
        let (handle, launcher) = handle_pair();
        // Stands for a worker forked before the report that kept its copy.
        let leaked = handle.channel.try_clone().unwrap();
        handle.report_ready();
        assert_eq!(report_within_deadline(launcher), Report::Ready);
        drop(leaked);
    }

    #[test]
    fn a_report_to_a_vanished_launcher_is_harmless() {
        let (handle, launcher) = handle_pair();
        drop(launcher);
        // Would kill the test runner with SIGPIPE if MSG_NOSIGNAL were missing
        // and SIGPIPE not ignored; either way it must return quietly.
        handle.report_ready();
    }

    #[test]
    fn report_arriving_in_pieces_is_assembled() {
        let (mut daemon, launcher) = UnixStream::pair().unwrap();
        let reader = std::thread::spawn(move || wait_for_report(launcher));
        daemon.write_all(b"ERR").unwrap();
        daemon.flush().unwrap();
        daemon.write_all(b"OR boom\0trailing").unwrap();
        assert_eq!(reader.join().unwrap(), Report::Failed("boom".into()));
    }

    #[test]
    fn unknown_or_truncated_records_count_as_death() {
        assert_eq!(wait_for_report(&b"HELLO\0"[..]), Report::Died);
        assert_eq!(wait_for_report(&b"READ"[..]), Report::Died);
        assert_eq!(wait_for_report(&b""[..]), Report::Died);
        // An error cut short by the daemon's death is still shown.
        assert_eq!(
            wait_for_report(&b"ERROR half a mess"[..]),
            Report::Failed("half a mess".into())
        );
    }

    // End to end: the test binary re-runs itself with one ignored test
    // selected; that child calls `daemonize` for real and so becomes the
    // launcher, whose exit status and stderr are checked here.

    const SCENARIO: &str = "GUNICORND_DAEMON_TEST_SCENARIO";
    const WORKDIR: &str = "GUNICORND_DAEMON_TEST_DIR";

    struct Outcome {
        status: std::process::ExitStatus,
        stderr: String,
        dir: tempfile::TempDir,
    }

    /// Kills a lingering test "worker" by the pid it recorded.
    struct PidGuard(Option<i32>);

    impl Drop for PidGuard {
        fn drop(&mut self) {
            if let Some(pid) = self.0 {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }

    fn launch(scenario: &str) -> Outcome {
        let dir = tempfile::tempdir().unwrap();
        let stderr_path = dir.path().join("launcher.stderr");
        let mut child: Child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "--nocapture",
                "--test-threads=1",
                "daemon::tests::daemon_scenario",
            ])
            .env(SCENARIO, scenario)
            .env(WORKDIR, dir.path())
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > DEADLINE {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the launcher did not exit within {DEADLINE:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let stderr = fs::read_to_string(&stderr_path).unwrap();
        Outcome {
            status,
            stderr,
            dir,
        }
    }

    fn read_facts(dir: &Path) -> Vec<(String, String)> {
        fs::read_to_string(dir.join("facts"))
            .expect("the daemon recorded its facts")
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn fact<'a>(facts: &'a [(String, String)], key: &str) -> &'a str {
        facts
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no fact {key}"))
    }

    #[test]
    fn launcher_exits_0_once_the_daemon_is_ready() {
        let outcome = launch("ready");
        assert_eq!(outcome.status.code(), Some(0), "stderr: {}", outcome.stderr);
        assert_eq!(outcome.stderr, "");
        let facts = read_facts(outcome.dir.path());
        let work = outcome.dir.path().join("work").canonicalize().unwrap();
        assert_eq!(fact(&facts, "cwd"), work.display().to_string());
        assert_eq!(fact(&facts, "umask"), "27");
        for fd in ["0", "1", "2"] {
            assert_eq!(fact(&facts, &format!("fd{fd}")), "/dev/null");
        }
        let pid: i32 = fact(&facts, "pid").parse().unwrap();
        let sid: i32 = fact(&facts, "sid").parse().unwrap();
        assert_ne!(sid, pid, "the daemon must not be a session leader");
        let our_sid = nix::unistd::getsid(None).unwrap().as_raw();
        assert_ne!(sid, our_sid, "the daemon runs in a session of its own");
    }

    #[test]
    fn launcher_prints_the_daemons_error_and_exits_1() {
        let outcome = launch("error");
        assert_eq!(outcome.status.code(), Some(1));
        assert_eq!(
            outcome.stderr,
            "Error: Already running on PID 12 (pidfile /run/g.pid)\nsecond line\n"
        );
    }

    #[test]
    fn launcher_notices_a_daemon_dying_silently() {
        let outcome = launch("die");
        assert_eq!(outcome.status.code(), Some(1));
        assert_eq!(outcome.stderr, format!("{DIED_DURING_STARTUP}\n"));
    }

    #[test]
    fn a_worker_that_kept_the_channel_does_not_hold_up_readiness() {
        let outcome = launch("ready-with-leaky-worker");
        let _worker = PidGuard(Some(
            fact(&read_facts(outcome.dir.path()), "worker")
                .parse()
                .unwrap(),
        ));
        assert_eq!(outcome.status.code(), Some(0), "stderr: {}", outcome.stderr);
    }

    #[test]
    fn a_worker_that_closed_the_channel_does_not_hide_the_daemons_death() {
        let outcome = launch("die-with-worker");
        let _worker = PidGuard(Some(
            fact(&read_facts(outcome.dir.path()), "worker")
                .parse()
                .unwrap(),
        ));
        assert_eq!(outcome.status.code(), Some(1));
        assert_eq!(outcome.stderr, format!("{DIED_DURING_STARTUP}\n"));
    }

    #[test]
    fn a_missing_chdir_target_fails_before_forking() {
        let outcome = launch("bad-chdir");
        // The child test itself passes: daemonize returned Err in-process.
        assert_eq!(outcome.status.code(), Some(0), "stderr: {}", outcome.stderr);
        assert!(!outcome.dir.path().join("facts").exists());
        let text = fs::read_to_string(outcome.dir.path().join("error")).unwrap();
        assert!(text.contains("cannot change directory to"), "{text}");
        assert!(text.contains("does-not-exist"), "{text}");
    }

    /// Forks a stand-in worker that records its pid, optionally closes its
    /// copy of the channel, and lingers until the parent test kills it.
    fn fork_worker(handle: &mut Option<DaemonHandle>, close: bool, facts: &mut String) {
        // SAFETY: the forked child only closes, sleeps and exits.
        match unsafe { fork() }.unwrap() {
            ForkResult::Parent { child } => facts.push_str(&format!("worker={child}\n")),
            ForkResult::Child => {
                if close {
                    if let Some(handle) = handle.take() {
                        drop(handle);
                    }
                }
                std::mem::forget(handle.take());
                nix::unistd::sleep(60);
                // SAFETY: leaving without running the test runner's exit path.
                unsafe { libc::_exit(0) };
            }
        }
    }

    #[test]
    #[ignore = "runs as a child of the daemon::tests::launcher_* tests"]
    fn daemon_scenario() {
        let (Some(scenario), Some(dir)) = (std::env::var_os(SCENARIO), std::env::var_os(WORKDIR))
        else {
            return; // Only meaningful when run by its parent test.
        };
        let scenario = scenario.to_string_lossy().into_owned();
        let dir = PathBuf::from(dir);
        let work = dir.join(if scenario == "bad-chdir" {
            "does-not-exist"
        } else {
            "work"
        });
        if scenario != "bad-chdir" {
            fs::create_dir(&work).unwrap();
        }
        let opts = DaemonOptions {
            chdir: Some(work),
            umask: 0o027,
        };
        let handle = match daemonize(&opts) {
            Ok(handle) => handle,
            Err(err) => {
                fs::write(dir.join("error"), err).unwrap();
                return;
            }
        };
        // From here on this is the daemon; it must never return into the
        // test harness, only _exit.
        let mut facts = String::new();
        let old_umask = umask(Mode::empty());
        facts.push_str(&format!("umask={:o}\n", old_umask.bits()));
        facts.push_str(&format!(
            "cwd={}\n",
            std::env::current_dir().unwrap().display()
        ));
        facts.push_str(&format!("pid={}\n", std::process::id()));
        facts.push_str(&format!("sid={}\n", nix::unistd::getsid(None).unwrap()));
        for fd in 0..3 {
            let target = fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
            facts.push_str(&format!("fd{fd}={}\n", target.display()));
        }
        let mut handle = Some(handle);
        match scenario.as_str() {
            "ready-with-leaky-worker" => fork_worker(&mut handle, false, &mut facts),
            "die-with-worker" => fork_worker(&mut handle, true, &mut facts),
            _ => {}
        }
        // Written before reporting, so it exists when the launcher exits.
        fs::write(dir.join("facts"), facts).unwrap();
        let handle = handle.take().unwrap();
        match scenario.as_str() {
            "ready" | "ready-with-leaky-worker" => handle.report_ready(),
            "error" => handle
                .report_error("Error: Already running on PID 12 (pidfile /run/g.pid)\nsecond line"),
            _ => drop(handle),
        }
        // SAFETY: the daemon leaves without unwinding into the harness.
        unsafe { libc::_exit(0) };
    }
}
