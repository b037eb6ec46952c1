//! The probe of an in-place upgrade (src/arbiter/in_place.rs): the new
//! binary, run as a child with the master's original arguments plus
//! [`PROBE_FLAG`], checks the configuration and the state version, then
//! exits. The master does not wait for it: the probe's stderr is a
//! non-blocking pipe in the event loop, its exit is reaped with every other
//! child's, and it is killed at [`PROBE_TIMEOUT`]; the loop serves on
//! meanwhile (the master never blocks, ARCHITECTURE.md "Rules").

use std::ffi::OsString;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

use super::in_place::STATE_VERSION;
use super::upgrade::StartContext;

/// The hidden command-line flag that makes `gunicornd` a probe: check the
/// configuration and the state version given with it, then exit.
pub const PROBE_FLAG: &str = "--upgrade-probe";

/// How long a probe may take: it only loads the configuration.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The probe's stderr in the event loop.
pub(super) const PROBE: Token = Token(usize::MAX - 3);

/// What the master keeps of the probe's stderr: its last line is the reason
/// of a failure; the rest is read and dropped, so it never blocks.
const SAID_MAX: usize = 64 * 1024;

/// A probe that is running.
pub(super) struct Probe {
    pid: Pid,
    stderr: std::fs::File,
    said: Vec<u8>,
    deadline: Instant,
    timed_out: bool,
}

impl Probe {
    /// Runs the binary this master was started from (the path, which may
    /// name a new file by now) as a probe, its stderr watched by `registry`.
    pub(super) fn start(start: &StartContext, registry: &Registry) -> Result<Probe, String> {
        let program = start.program.clone()?;
        let mut args: Vec<OsString> = start.args.iter().skip(1).cloned().collect();
        // Before the original arguments: after a `--` they would be the
        // command workers' words.
        args.splice(
            0..0,
            [OsString::from(PROBE_FLAG), STATE_VERSION.to_string().into()],
        );
        let mut child = Process::new(&program)
            .args(&args)
            .env_clear()
            .envs(start.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&start.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
        let pid = Pid::from_raw(child.id() as i32);
        // The loop's reaper collects its exit (Arbiter::on_child_exit).
        let stderr = std::fs::File::from(std::os::fd::OwnedFd::from(
            child.stderr.take().expect("stderr is piped"),
        ));
        let registered = crate::fd::set_nonblocking(&stderr)
            .map_err(|e| e.to_string())
            .and_then(|()| {
                registry
                    .register(
                        &mut SourceFd(&stderr.as_raw_fd()),
                        PROBE,
                        Interest::READABLE,
                    )
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = registered {
            let _ = kill(pid, Signal::SIGKILL);
            return Err(format!("cannot watch the probe's output: {e}"));
        }
        Ok(Probe {
            pid,
            stderr,
            said: Vec::new(),
            deadline: Instant::now() + PROBE_TIMEOUT,
            timed_out: false,
        })
    }

    pub(super) fn pid(&self) -> Pid {
        self.pid
    }

    /// Its stderr pipe, which a forked worker must close.
    pub(super) fn raw_fd(&self) -> std::os::fd::RawFd {
        self.stderr.as_raw_fd()
    }

    /// When it is killed if it has not exited.
    pub(super) fn deadline(&self) -> Option<Instant> {
        (!self.timed_out).then_some(self.deadline)
    }

    /// Reads what it wrote so far (until the pipe is empty).
    pub(super) fn readable(&mut self) {
        let mut buf = [0u8; 4096];
        loop {
            match self.stderr.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    let room = SAID_MAX.saturating_sub(self.said.len());
                    self.said.extend_from_slice(&buf[..n.min(room)]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// Past its deadline: SIGKILL (its exit, reaped, ends it).
    pub(super) fn check_deadline(&mut self, now: Instant) {
        if !self.timed_out && now >= self.deadline {
            self.timed_out = true;
            let _ = kill(self.pid, Signal::SIGKILL);
        }
    }

    /// It exited with `status`: `Ok` if it accepts the upgrade, else why not.
    pub(super) fn finish(mut self, status: &WaitStatus, registry: &Registry) -> Result<(), String> {
        self.readable();
        let _ = registry.deregister(&mut SourceFd(&self.stderr.as_raw_fd()));
        if self.timed_out {
            return Err(format!(
                "it did not answer within {} s",
                PROBE_TIMEOUT.as_secs()
            ));
        }
        let text = String::from_utf8_lossy(&self.said);
        let said = text
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .map(|l| l.strip_prefix("Error: ").unwrap_or(l).to_string());
        let how = match *status {
            WaitStatus::Exited(_, 0) => return Ok(()),
            WaitStatus::Exited(_, code) => format!("exit status: {code}"),
            WaitStatus::Signaled(_, sig, _) => format!("signal: {}", sig as i32),
            ref other => format!("{other:?}"),
        };
        Err(match said {
            Some(line) => format!("{line} ({how})"),
            None => format!("it ended ({how}) and said nothing"),
        })
    }

    /// The master stops: the probe goes too.
    pub(super) fn abandon(self, registry: &Registry) {
        let _ = registry.deregister(&mut SourceFd(&self.stderr.as_raw_fd()));
        let _ = kill(self.pid, Signal::SIGKILL);
    }
}
