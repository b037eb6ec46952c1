//! The executor: performs the [`Action`]s the plan queued, in order. This is
//! the only place the master forks, signals workers, runs hooks, writes its
//! decisions to the log or tells systemd about them.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{kill, SigSet, SigmaskHow};
use nix::unistd::{fork, ForkResult};
use rand::Rng;

use std::os::fd::{AsRawFd, RawFd};

use super::workers::Protocol;
use super::{Action, Arbiter, Level, Report};
use crate::control::protocol::{Event, EventKind};
use crate::exec::Step;
use crate::listeners::ListenAddr;
use crate::worker::command::{listener_name, Program, WorkerEnv};
use crate::worker::kind::WorkerKind;
use crate::worker::WorkerSetup;

impl Arbiter {
    /// Perform every queued action, in order.
    pub(super) fn execute(&mut self) {
        for action in self.pool.take_actions() {
            self.perform(action);
        }
    }

    fn perform(&mut self, action: Action) {
        match action {
            Action::Spawn { age, generation } => {
                // After a failed fork the rest of the batch's spawns wait
                // for the backoff the failure armed.
                if !self.pool.may_spawn(Instant::now()) {
                    return;
                }
                let spawned = match self.kind.clone() {
                    WorkerKind::Command(program) => self.spawn_program(&program, age, generation),
                    WorkerKind::Sync | WorkerKind::Gthread => self.spawn_worker(age, generation),
                };
                match spawned {
                    Ok(()) => {}
                    Err(e) if e.exec_failed => self.pool.exec_failed(e.reason, age, Instant::now()),
                    Err(e) => self
                        .pool
                        .spawn_failed(e.reason, age, e.forked, Instant::now()),
                }
                // What the fork's outcome queued (its event and post_fork
                // hook, or the failure's log lines) happens before the rest
                // of the batch, as it would have without the queue.
                self.execute();
            }
            Action::Signal { pid, signal } => {
                if let Err(e) = kill(pid, signal) {
                    tracing::debug!("kill({pid}, {signal}): {e}");
                }
            }
            Action::QueueServedElsewhere { pid } => {
                if let Some(w) = self.pool.workers.get(pid) {
                    self.scoreboard.slot(w.slot).mark_served_elsewhere();
                }
            }
            Action::Log(level, msg) => log(level, &msg),
            Action::Emit(kind) => self.emit(kind),
            Action::Hook(name, vars) => self.hooks.fire(name, &vars),
            Action::Report(report) => self.tell(report),
            Action::CloseListeners => self.close_listeners(),
            Action::CloseParkedListeners => {
                self.previous_settings = None;
                self.previous_kind = None;
                self.close_parked_listeners();
            }
            Action::RestorePrevious => self.restore_previous(),
            Action::RemoveUpgradeFiles { pid } => self.remove_upgrade_files(pid),
            Action::TakeOver { old } => self.take_over(old),
            Action::ReopenLogs => match crate::log::reopen() {
                Ok(()) => tracing::info!(
                    "Log files reopened; forwarding USR1 to {} workers",
                    self.pool.workers.len()
                ),
                Err(e) => tracing::error!("Cannot reopen log files: {e}"),
            },
        }
    }

    fn tell(&mut self, report: Report) {
        match report {
            Report::Ready => {
                self.report.serving();
                self.tell_old_master_ready();
            }
            Report::Reloading => self.report.reloading(),
            Report::Reloaded => self.report.reloaded(),
            Report::Stopping => self.report.stopping(),
            Report::StartupFailed(reason) => self.report.startup_failed(&reason),
            Report::Status(text) => self.report.status(text),
        }
    }

    /// Send an event to `events` subscribers.
    pub(super) fn emit(&mut self, kind: EventKind) {
        if let Some(ctl) = self.control.as_mut() {
            let time = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            ctl.broadcast(self.poll.registry(), &Event { time, kind });
        }
    }

    /// A scoreboard slot for the next worker (it caps how many run).
    fn allocate_slot(&mut self) -> Result<usize, SpawnError> {
        self.scoreboard.allocate().ok_or_else(|| SpawnError {
            reason: format!(
                "Cannot spawn a worker: {} workers is the most one master runs",
                crate::scoreboard::CAPACITY
            ),
            forked: false,
            exec_failed: false,
        })
    }

    /// Start one command worker of `generation`: `program` exec'd by a
    /// fork (`exec::spawn`), its output on a pipe of ours, its messages on
    /// the `NOTIFY_SOCKET`.
    fn spawn_program(
        &mut self,
        program: &Program,
        age: u64,
        generation: u64,
    ) -> Result<(), SpawnError> {
        let not_started = |reason: String| SpawnError {
            reason,
            forked: false,
            exec_failed: false,
        };
        let notify_socket = match &self.notices {
            Some(socket) => socket.path().to_path_buf(),
            None => {
                return Err(not_started(
                    "Cannot start a worker: no NOTIFY_SOCKET".into(),
                ))
            }
        };
        let (output_read, output_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| not_started(format!("Cannot start a worker: no output pipe: {e}")))?;
        let slot = self.allocate_slot()?;
        self.hooks
            .fire("pre_fork", &[("GUNICORND_WORKER_AGE", age.to_string())]);
        let fds: Vec<RawFd> = self.listeners.iter().map(|l| l.raw_fd()).collect();
        let names = self.listener_names();
        let timeout = self.pool.limits.timeout;
        let env = WorkerEnv {
            age,
            master_pid: self.pid,
            listeners: &fds,
            names: &names,
            notify_socket: &notify_socket,
            watchdog: (!timeout.is_zero()).then_some(timeout),
        };
        let spec = program.exec_spec(&env, std::env::vars_os(), output_write.as_raw_fd());
        let pid = match crate::exec::spawn(&spec) {
            Ok(pid) => pid,
            Err(e) => {
                self.scoreboard.release(slot);
                // Before the fork nothing happened; after it, the program
                // could not be made to run: a worker that died at boot.
                let forked = !matches!(e.step(), Step::Prepare | Step::Pipe | Step::Fork);
                return Err(SpawnError {
                    reason: format!("Cannot start a worker: {e}"),
                    forked,
                    exec_failed: forked,
                });
            }
        };
        drop(output_write);
        self.scoreboard.set_pid(slot, pid.as_raw() as u32);
        if let Err(e) = self.output.watch(self.poll.registry(), pid, output_read) {
            tracing::error!("Cannot read the output of worker {pid}: {e}");
        }
        // gunicorn's line, which a forked worker logs itself.
        tracing::info!("Booting worker with pid: {pid}");
        self.pool.spawned(
            pid,
            age,
            generation,
            slot,
            Protocol::SdNotify,
            Instant::now(),
        );
        Ok(())
    }

    /// Each listener's name in a command worker's `LISTEN_FDNAMES`:
    /// systemd's, when it passed them, else made from the address.
    fn listener_names(&self) -> Vec<String> {
        match &self.listener_source {
            super::ListenerSource::Systemd { names } if names.len() == self.listeners.len() => {
                names.clone()
            }
            _ => self
                .listeners
                .iter()
                .map(|l| match l.addr() {
                    ListenAddr::Tcp(a) => listener_name(&a.to_string()),
                    ListenAddr::Unix(p) => listener_name(&format!("unix:{}", p.display())),
                })
                .collect(),
        }
    }

    /// Fork one worker of `generation`; its kind runs in the child.
    fn spawn_worker(&mut self, age: u64, generation: u64) -> Result<(), SpawnError> {
        let slot = self.allocate_slot()?;
        let s = &self.settings;
        let max_requests = if s.max_requests > 0 {
            s.max_requests + rand::rng().random_range(0..=s.max_requests_jitter)
        } else {
            0
        };
        self.hooks
            .fire("pre_fork", &[("GUNICORND_WORKER_AGE", age.to_string())]);
        // Block signals across fork so that none reaches the child while it
        // still has the master's handlers (they would write to our pipe).
        let mut old_mask = SigSet::empty();
        let _ = nix::sys::signal::sigprocmask(
            SigmaskHow::SIG_SETMASK,
            Some(&SigSet::all()),
            Some(&mut old_mask),
        );
        // SAFETY: the master is single-threaded, so the child is a consistent copy.
        let forked = match &self.preloaded {
            #[cfg(feature = "python")]
            Some(_) => crate::python::fork_with(|| unsafe { fork() }),
            _ => unsafe { fork() },
        };
        match forked {
            Ok(ForkResult::Child) => {
                // First, before any of the worker's code: this process may
                // reach its own scoreboard slot and no other.
                if let Err(e) = self.scoreboard.confine(slot) {
                    tracing::error!("Exception in worker process: {e}");
                    // SAFETY: ends the forked child at once; nothing of it
                    // has run yet.
                    unsafe { libc::_exit(crate::worker::WORKER_BOOT_ERROR) }
                }
                let setup = WorkerSetup {
                    age,
                    master_pid: self.pid,
                    listeners: &self.listeners,
                    slot: self.scoreboard.slot(slot),
                    notify_fd: std::os::fd::AsRawFd::as_raw_fd(&self.worker_sender),
                    settings: &self.settings,
                    max_requests,
                    master_fds: self.master_fds(),
                    signal_mask: old_mask,
                    preloaded: std::cell::Cell::new(self.preloaded.take()),
                };
                self.kind.clone().run(setup)
            }
            Ok(ForkResult::Parent { child }) => {
                let _ =
                    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old_mask), None);
                self.scoreboard.set_pid(slot, child.as_raw() as u32);
                self.pool.spawned(
                    child,
                    age,
                    generation,
                    slot,
                    Protocol::WorkerChannel,
                    Instant::now(),
                );
                Ok(())
            }
            Err(e) => {
                let _ =
                    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old_mask), None);
                self.scoreboard.release(slot);
                Err(SpawnError {
                    reason: format!("Cannot fork a worker: {e}"),
                    forked: true,
                    exec_failed: false,
                })
            }
        }
    }
}

/// Why no worker was spawned; `forked` says whether `fork()` was tried
/// (and so the worker's age used, as its `pre_fork` hook saw it);
/// `exec_failed`, that the forked child could not run the program.
struct SpawnError {
    reason: String,
    forked: bool,
    exec_failed: bool,
}

fn log(level: Level, msg: &str) {
    match level {
        Level::Debug => tracing::debug!("{msg}"),
        Level::Info => tracing::info!("{msg}"),
        Level::Warn => tracing::warn!("{msg}"),
        Level::Error => tracing::error!("{msg}"),
        Level::Critical => crate::critical!("{msg}"),
    }
}
