//! In-place binary upgrade (`upgrade_mode = "in-place"`, `gunicornctl
//! upgrade --in-place`): the new binary replaces this master's image in the
//! same process, so the pid that supervisors and containers watch stays.
//!
//! First the probe (src/arbiter/probe.rs): the new binary, run as a child
//! with the master's original arguments and environment plus
//! `--upgrade-probe`, loads and checks the configuration and says whether
//! it reads the state format this master writes ([`STATE_VERSION`]). The
//! master serves on while it runs. A failed probe aborts the upgrade with
//! its reason (an `upgrade_failed` event) and changes nothing.
//!
//! Then the exec: the master writes its state to a memfd
//! (src/arbiter/handover.rs), keeps exactly the listeners, the control
//! socket's listener, the worker scoreboard and that memfd open across
//! `execve`, and execs the binary with its original arguments and
//! environment. If `execve` fails, the old image carries on. The new image
//! takes the listeners and the control socket over, maps the same
//! scoreboard, and puts the workers it inherited (still its children) in
//! its worker table, heartbeats watched as before; then it rolls them over
//! as a reload does (`Pool::adopt`). A state it cannot read still names the
//! inherited pids: those are retired once the new generation has booted
//! (SIGTERM, then SIGKILL after `graceful_timeout`), unwatched.

use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::time::{Instant, SystemTime};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

use super::handover::{self, HandedState, HandedWorker, Unreadable};
use super::probe::Probe;
use super::upgrade::OWNED_VAR;
use super::workers::Worker;
use super::{Arbiter, ListenerSource, Outcome};
use crate::scoreboard::Scoreboard;
use crate::worker::kind::WorkerKind;

/// The version of the state an old image hands the new one across
/// `execve`; a new binary that reads another one says so in the probe.
pub const STATE_VERSION: u32 = 2;

/// What the probe says about `version`: `Ok` if this binary reads it, else
/// why not (the probe's exit message).
pub fn probe_answer(version: u32) -> Result<(), String> {
    if version == STATE_VERSION {
        Ok(())
    } else {
        Err(format!(
            "the new binary reads upgrade state version {STATE_VERSION}, not {version}"
        ))
    }
}

/// The worker scoreboard: in the new image of an in-place upgrade, the
/// table the previous image handed over (so the adopted workers' heartbeats
/// go on being watched), else a new one. A table that cannot be taken over
/// makes the state's workers pids to retire, unwatched.
pub(super) fn scoreboard_for(
    worker_tmp_dir: Option<&std::path::Path>,
    handed: Option<Result<HandedState, Unreadable>>,
) -> Result<(Scoreboard, Option<Result<HandedState, Unreadable>>), String> {
    let inherited = handed
        .as_ref()
        .and_then(|_| handover::scoreboard_from_env());
    let (fd, stride, state) = match (inherited, handed) {
        (Some((fd, stride)), Some(Ok(state))) => (fd, stride, state),
        (None, Some(Ok(state))) => {
            let why = "the previous image did not hand it over".to_string();
            let pids = state.workers.iter().map(|w| w.pid).collect();
            return Ok((
                Scoreboard::new(worker_tmp_dir)?,
                Some(Err(Unreadable::Scoreboard { why, pids })),
            ));
        }
        // Nothing to adopt into it (a handed table is closed here).
        (_, handed) => return Ok((Scoreboard::new(worker_tmp_dir)?, handed)),
    };
    match Scoreboard::inherit(fd, stride) {
        Ok(board) => Ok((board, Some(Ok(state)))),
        Err(why) => {
            let pids = state.workers.iter().map(|w| w.pid).collect();
            Ok((
                Scoreboard::new(worker_tmp_dir)?,
                Some(Err(Unreadable::Scoreboard { why, pids })),
            ))
        }
    }
}

/// After SIGKILL to the workers of a previous image, how long until the
/// master looks at them again (their exits are reaped meanwhile).
const ADOPTED_KILL_RECHECK: std::time::Duration = std::time::Duration::from_secs(10);

impl Arbiter {
    /// USR2 / `upgrade in-place`: start the probe of the new binary; once
    /// it passes, the state is handed over and the binary exec'd
    /// ([`Arbiter::probe_exited`]). The reply says the upgrade is under way;
    /// how it ends is an event (`upgrade_failed`) or the new image itself.
    pub(super) fn in_place_upgrade(&mut self) -> Outcome {
        tracing::info!("In-place upgrade requested: {}", self.name);
        if let Err(why) = self.pool.start_upgrade() {
            return Outcome::Refused(why);
        }
        if let Some(probe) = &self.probe {
            return Outcome::Refused(format!(
                "an in-place upgrade is under way (its probe, pid {}, is running)",
                probe.pid()
            ));
        }
        // systemd (Type=notify-reload) waits for RELOADING=1 after the
        // signal, then READY=1: from the new image once its generation
        // serves, or from this one at once when the upgrade does not happen.
        self.report.reloading();
        let started = match self.why_not_in_place() {
            Some(why) => Err(why),
            None => Probe::start(&self.start, self.poll.registry())
                .map_err(|reason| format!("the new binary failed the probe: {reason}")),
        };
        match started {
            Ok(probe) => {
                tracing::info!("Upgrade: probing the new binary (pid:{})", probe.pid());
                self.probe = Some(probe);
                Outcome::Upgrading { pid: self.pid }
            }
            Err(why) => {
                self.report.reloaded();
                self.pool.upgrade_not_started(&why)
            }
        }
    }

    /// The probe exited: exec the new binary at the end of this pass if it
    /// passed and nothing changed meanwhile that an exec cannot carry (a
    /// reload started, the server is stopping); else the upgrade ends here.
    pub(super) fn probe_exited(&mut self, probe: Probe, status: &WaitStatus) {
        let passed = probe
            .finish(status, self.poll.registry())
            .map_err(|reason| format!("the new binary failed the probe: {reason}"))
            .and_then(|()| match self.pool.start_upgrade() {
                Err(why) => Err(why),
                Ok(()) => self.why_not_in_place().map_or(Ok(()), Err),
            });
        match passed {
            Ok(()) => {
                tracing::info!("Upgrade: the new binary passed the probe; it runs in place next");
                // At the end of this pass, once every reply due is out.
                self.exec_pending = true;
            }
            Err(why) => {
                self.report.reloaded();
                self.pool.upgrade_not_started(&why);
            }
        }
    }

    /// The probe ran out of time: it is killed (its exit ends the upgrade).
    pub(super) fn check_probe(&mut self, now: Instant) {
        if let Some(probe) = self.probe.as_mut() {
            probe.check_deadline(now);
        }
    }

    /// What this first version of the in-place upgrade cannot hand over.
    fn why_not_in_place(&self) -> Option<String> {
        if matches!(self.kind, WorkerKind::Command(_)) || self.notices.is_some() {
            return Some(
                "an in-place upgrade cannot hand command workers over yet (their output pipes \
                 and NOTIFY_SOCKET would close); use upgrade_mode = \"fork\""
                    .into(),
            );
        }
        if matches!(self.listener_source, ListenerSource::Systemd { .. }) {
            return Some(
                "an in-place upgrade cannot hand sockets from systemd over yet; use \
                 upgrade_mode = \"fork\""
                    .into(),
            );
        }
        if !self.parked_listeners.is_empty() {
            return Some(
                "a reload that changed the listeners is in progress (the previous generation's \
                 sockets would close); upgrade once it completes"
                    .into(),
            );
        }
        None
    }

    /// The exec an in-place upgrade asked for; returns only if it failed
    /// (then nothing changed).
    pub(super) fn exec_in_place(&mut self) {
        self.exec_pending = false;
        let reason = self.exec_new_image();
        // Serving as before (RELOADING=1 went out with the request).
        self.report.reloaded();
        self.pool.upgrade_not_started(&reason);
        self.execute();
    }

    fn exec_new_image(&mut self) -> String {
        let program = match self.start.program.clone() {
            Ok(p) => p,
            Err(e) => return e,
        };
        let listener_fds: Vec<RawFd> = self.listeners.iter().map(|l| l.raw_fd()).collect();
        let state = HandedState {
            version: super::in_place::STATE_VERSION,
            master_pid: self.pid.as_raw(),
            workers: self
                .pool
                .workers
                .iter()
                .map(|w| HandedWorker {
                    pid: w.pid.as_raw(),
                    age: w.age,
                    generation: w.generation,
                    booted: w.booted(),
                    slot: w.slot,
                })
                .collect(),
            target: self.pool.target,
            configured: self.settings.workers,
            generation: self.pool.generation,
            fallback: self.pool.previous.map(|p| handover::HandedFallback {
                generation: p.generation,
                target: p.target,
            }),
            counters: self.pool.counters,
            listener_fds: listener_fds.clone(),
            execed_at: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        let state_fd = match handover::write_state(&state) {
            Ok(fd) => fd,
            Err(e) => return e,
        };
        let list = |fds: &[RawFd]| {
            fds.iter()
                .map(|fd| fd.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut env = self.start.env_to_hand_on();
        let var = |k: &str, v: String| (OsString::from(k), OsString::from(v));
        env.push(var("GUNICORN_FD", list(&listener_fds)));
        env.push(var(handover::STATE_VAR, state_fd.as_raw_fd().to_string()));
        let owned: Vec<String> = self
            .listeners
            .iter()
            .filter(|_| self.listener_source == ListenerSource::Bound)
            .filter_map(|l| Some(format!("{}:{}", l.raw_fd(), l.socket_file()?)))
            .collect();
        if !owned.is_empty() {
            env.push(var(OWNED_VAR, owned.join(",")));
        }
        let cstring = |s: &std::ffi::OsStr| CString::new(s.as_bytes()).ok();
        let Some(path) = cstring(program.as_os_str()) else {
            return format!("{} has a NUL byte", program.display());
        };
        let args: Option<Vec<CString>> = self.start.args.iter().map(|a| cstring(a)).collect();
        let env: Option<Vec<CString>> = env
            .iter()
            .map(|(k, v)| {
                let mut kv = k.clone();
                kv.push("=");
                kv.push(v);
                cstring(&kv)
            })
            .collect();
        let (Some(args), Some(mut env)) = (args, env) else {
            return "an argument or variable has a NUL byte".into();
        };
        let mut keep = listener_fds;
        keep.push(state_fd.as_raw_fd());
        let board = self.scoreboard.backing_fd();
        env.push(
            CString::new(format!(
                "{}={board}:{}",
                handover::SCOREBOARD_VAR,
                self.scoreboard.stride()
            ))
            .expect("digits"),
        );
        keep.push(board);
        if let Some(ctl) = &self.control {
            // The same listener, so that clients connecting during the exec
            // wait in its queue instead of being refused.
            let (fd, file) = ctl.listener();
            let value = match file {
                Some(file) => format!("{fd}:{file}"),
                None => fd.to_string(),
            };
            env.push(CString::new(format!("{}={value}", handover::CONTROL_VAR)).expect("digits"));
            keep.push(fd);
        }
        let mut kept = match handover::keep_across_exec(&keep) {
            Ok(kept) => kept,
            Err(e) => return e,
        };
        // The new image resolves relative paths (a config file, a pidfile)
        // against the directory we were started in, as we did.
        let here = std::env::current_dir().ok();
        if let Err(e) = std::env::set_current_dir(&self.start.cwd) {
            kept.restore();
            return format!("cannot change to {}: {e}", self.start.cwd.display());
        }
        tracing::info!(
            "Upgrade: exec'ing {} in place (pid:{}), handing {} workers over",
            program.display(),
            self.pid,
            state.workers.len()
        );
        let err = nix::unistd::execve(&path, &args, &env).unwrap_err();
        kept.restore();
        if let Some(dir) = here {
            let _ = std::env::set_current_dir(dir);
        }
        format!("cannot execute {}: {err}", program.display())
    }

    /// New image: what the old image handed over. The listeners were
    /// claimed already, the scoreboard mapped ([`scoreboard_for`]); here the
    /// inherited workers join the worker table (or, from a state we cannot
    /// read, are noted for retiring) and the sockets' files are taken as
    /// ours.
    pub(super) fn adopt(&mut self, handed: Result<HandedState, Unreadable>) {
        // Still our children: none was reaped between the state and the
        // exec, so no pid here can have been reused.
        let pids: Vec<i32> = match handed {
            Ok(state) => self.adopt_workers(state),
            Err(e) => {
                match e {
                    Unreadable::Broken(_) => tracing::error!("Upgrade state unreadable: {e}"),
                    _ => tracing::warn!(
                        "Upgrade state unreadable: {e}; retiring its workers once ours have booted"
                    ),
                }
                e.pids().to_vec()
            }
        };
        self.adopted = pids
            .into_iter()
            .filter(|&p| p > 0)
            .map(Pid::from_raw)
            .collect();
        if !self.adopted.is_empty() {
            tracing::info!(
                "Upgraded in place (pid:{}): {} workers of the previous image serve until ours have booted",
                self.pid,
                self.adopted.len()
            );
        }
        if self.listener_source == ListenerSource::Upgrade {
            let owned = super::upgrade::owned_from_env();
            for l in &mut self.listeners {
                if let Some(o) = owned.iter().find(|o| o.fd == l.raw_fd()) {
                    l.claim_path(o.file);
                }
            }
            self.listener_source = ListenerSource::Bound;
        }
    }

    /// The workers of a state we read join the pool, each in its own
    /// scoreboard slot; returns those that cannot (a slot out of range or
    /// named twice), to be retired unwatched.
    fn adopt_workers(&mut self, state: HandedState) -> Vec<i32> {
        if state.master_pid != self.pid.as_raw() {
            tracing::warn!(
                "Upgrade state of another process (pid:{}); its workers are ours anyway",
                state.master_pid
            );
        }
        let now = Instant::now();
        let mut workers = Vec::new();
        let mut unwatched = Vec::new();
        for w in state.workers {
            if !self.scoreboard.claim(w.slot) {
                tracing::warn!(
                    "Worker {} of the previous image names scoreboard slot {}, which is not free; retiring it",
                    w.pid,
                    w.slot
                );
                unwatched.push(w.pid);
                continue;
            }
            let mut worker = Worker::new(Pid::from_raw(w.pid), w.age, w.generation, w.slot, now);
            // It may have booted between the state and the exec (its
            // message went to the previous image's channel).
            if w.booted || self.scoreboard.slot(w.slot).booted() {
                worker.booted_at = Some(now);
            }
            workers.push(worker);
        }
        self.pool.adopt(
            workers,
            state.generation,
            state.fallback.map(|f| (f.generation, f.target)),
            state.target,
            (state.configured, self.settings.workers),
            state.counters,
        );
        self.report.serving_already();
        unwatched
    }

    /// New image: stop the inherited workers once the new generation serves
    /// (or the server stops), and kill those still there after
    /// `graceful_timeout`.
    pub(super) fn retire_adopted(&mut self, now: Instant) {
        if self.adopted.is_empty() {
            self.adopted_kill_at = None;
            return;
        }
        match self.adopted_kill_at {
            None => {
                let serving = self.pool.serving_capacity() >= self.pool.target;
                if serving || !self.pool.is_running() {
                    tracing::info!(
                        "Retiring the {} workers of the previous image",
                        self.adopted.len()
                    );
                    for &pid in &self.adopted {
                        let _ = kill(pid, Signal::SIGTERM);
                    }
                    self.adopted_kill_at = Some(now + self.pool.limits.graceful_timeout);
                }
            }
            Some(at) if now >= at => {
                for &pid in &self.adopted {
                    tracing::warn!("Killing worker {pid} of the previous image (graceful timeout)");
                    let _ = kill(pid, Signal::SIGKILL);
                }
                // Only their exits are awaited now; look again later.
                self.adopted_kill_at = Some(now + ADOPTED_KILL_RECHECK);
            }
            Some(_) => {}
        }
    }

    /// New image: a reaped child that was an inherited worker.
    pub(super) fn adopted_exited(&mut self, pid: Pid) -> bool {
        let before = self.adopted.len();
        self.adopted.retain(|&p| p != pid);
        self.adopted.len() != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_accepts_only_its_own_state_version() {
        assert_eq!(probe_answer(STATE_VERSION), Ok(()));
        assert_eq!(
            probe_answer(STATE_VERSION + 1),
            Err(format!(
                "the new binary reads upgrade state version {STATE_VERSION}, not {}",
                STATE_VERSION + 1
            ))
        );
    }
}
