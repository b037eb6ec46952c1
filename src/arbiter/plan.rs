//! The master's decisions, as a state machine with no side effects.
//!
//! [`Pool`] holds everything the master decides from: the worker table, the
//! target, the generations, the phase (running or stopping), the crash-loop
//! backoff and the clock it is given. Each input (a command, a worker
//! message, a reaped exit, the passing of time) is one method that changes
//! that state and queues [`Action`]s; the executor (`execute.rs`) takes them
//! with [`Pool::take_actions`] and performs them. Nothing here forks, sends
//! a signal, reads a file or looks at the real clock, which is what lets
//! `tests.rs` play whole scenarios (reloads, rollbacks, timeouts, stops)
//! without a single process.
//!
//! The rules it keeps (ARCHITECTURE.md, "Rules"):
//! - a worker counts as capacity only once it has booted;
//! - workers waiting for a replacement are retired only while the booted
//!   capacity stays at the target;
//! - a worker that was asked to stop is never asked twice (a stronger
//!   signal may follow), and never counted as capacity.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

use super::action::{Action, Level, Outcome, Report};
use super::notify_socket::Notice;
use super::workers::{Notified, Protocol, Replace, StopSent, Worker, WorkerTable};
use crate::control::protocol::{EventKind, RetireReason, ScaleTarget, ShutdownMode};
use crate::worker::notify::WorkerMsg;
use crate::worker::{APP_LOAD_ERROR, WORKER_BOOT_ERROR};

/// SIGKILL follows SIGABRT this long after a heartbeat timeout.
pub const ABORT_GRACE: Duration = Duration::from_secs(1);
/// How long a quick stop (INT/QUIT) waits before SIGKILL.
pub const QUICK_STOP_GRACE: Duration = Duration::from_secs(2);
/// Crash-loop backoff: first delay, and the cap.
pub const BACKOFF_BASE: Duration = Duration::from_millis(100);
pub const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Boot failures in a row, before ever being ready, that count as a failed start.
pub const STARTUP_FAILURES: u32 = 5;
/// Messages on the `NOTIFY_SOCKET` from processes that are no command
/// worker are logged at most this often (the rest are counted).
pub const IGNORED_NOTICE_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The settings the decisions depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Heartbeat timeout; zero disables it.
    pub timeout: Duration,
    pub graceful_timeout: Duration,
    /// Daemon mode (`-D`): WINCH only acts there (and during an upgrade).
    pub daemon: bool,
    /// How long a new master started by an upgrade has to be ready.
    pub upgrade_timeout: Duration,
    /// The most workers one master runs (the scoreboard's size).
    pub max_workers: usize,
    /// An sd_notify worker that has said nothing this long after it
    /// started counts as booted; zero: only `READY=1` boots one.
    pub boot_grace: Duration,
    /// Exit codes 3 and 4 halt the server (or roll a reload back); off,
    /// they are crashes like any other.
    pub halt_on_boot_error: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Running,
    Stopping { graceful: bool, deadline: Instant },
}

/// Why the master is exiting, and with what status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Halt {
    pub reason: Option<String>,
    pub status: i32,
}

/// The generation a reload is replacing, kept until the new one serves so
/// that a failed reload can fall back to it. Its settings are kept by the
/// executor (they hold things the plan has no use for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fallback {
    pub generation: u64,
    /// The worker target it ran with.
    pub target: usize,
    pub limits: Limits,
}

/// A new master started by a binary upgrade, seen from the old one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildMaster {
    pub pid: Pid,
    /// Killed if not ready by then (`--upgrade-timeout`).
    pub deadline: Instant,
    /// All its workers booted.
    pub ready: bool,
    /// SIGKILL was sent (timeout): only its exit is awaited.
    pub killed: bool,
}

/// Counters reported by `show stats` (and handed to the new image of an
/// in-place upgrade).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counters {
    pub spawned: u64,
    pub killed: u64,
    pub reloads: u64,
}

/// What the executor observed of a worker's liveness (its worker kind
/// knows how: for the built-in kinds, the scoreboard heartbeat). For an
/// sd_notify worker the plan judges the silence itself (from its
/// `WATCHDOG=1` messages) and asks only whether the process is stopped,
/// once it is overdue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    /// Time since its last sign of life (not read for sd_notify workers).
    pub silence: Duration,
    /// The process is stopped (SIGSTOP, a debugger): it cannot run its
    /// SIGABRT handler, so a timeout kills it at once.
    pub stopped: bool,
}

/// A reaped worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    pub pid: Pid,
    pub status: WaitStatus,
    /// The worker had marked itself booted (its "booted" message may still
    /// be unread when it dies right away).
    pub booted: bool,
}

#[derive(Debug)]
pub struct Pool {
    pub workers: WorkerTable,
    /// Workers wanted (changed by TTIN/TTOU/scale/WINCH, reset by config).
    pub target: usize,
    pub generation: u64,
    next_generation: u64,
    pub previous: Option<Fallback>,
    pub phase: Phase,
    pub limits: Limits,
    pub counters: Counters,
    /// The new master of an upgrade in progress (this is the old one).
    pub child_master: Option<ChildMaster>,
    /// This is a new master started by an upgrade, not yet promoted: the
    /// old master's pid.
    pub parent_master: Option<Pid>,
    halt: Option<Halt>,
    /// Consecutive workers that died before booting, and when the next
    /// spawn may happen (crash-loop backoff).
    boot_failures: u32,
    next_spawn_at: Option<Instant>,
    worker_age: u64,
    /// Messages from non-workers on the `NOTIFY_SOCKET`: when one was last
    /// logged, and how many were not logged since.
    ignored_notices: (Option<Instant>, u64),
    /// The first generation reached its target.
    ready: bool,
    status: String,
    out: Vec<Action>,
}

impl Pool {
    pub fn new(target: usize, limits: Limits) -> Pool {
        Pool {
            workers: WorkerTable::default(),
            target: target.min(limits.max_workers),
            generation: 1,
            next_generation: 2,
            previous: None,
            phase: Phase::Running,
            limits,
            counters: Counters::default(),
            child_master: None,
            parent_master: None,
            halt: None,
            boot_failures: 0,
            next_spawn_at: None,
            worker_age: 0,
            ignored_notices: (None, 0),
            ready: false,
            status: String::new(),
            out: Vec::new(),
        }
    }

    /// The actions queued since the last call, in order.
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.out)
    }

    fn log(&mut self, level: Level, msg: impl Into<String>) {
        self.out.push(Action::Log(level, msg.into()));
    }

    fn emit(&mut self, kind: EventKind) {
        self.out.push(Action::Emit(kind));
    }

    fn report(&mut self, r: Report) {
        self.out.push(Action::Report(r));
    }

    /// Booted workers of the current generation that count towards the
    /// target: what "serving at capacity" is measured against.
    pub fn serving_capacity(&self) -> usize {
        let gen = self.generation;
        self.workers
            .count(|w| w.generation == gen && w.live() && w.booted())
    }

    /// Stopping and every worker gone: the master may exit, with this.
    pub fn finished(&self) -> Option<Halt> {
        match self.phase {
            Phase::Stopping { .. } if self.workers.is_empty() => {
                Some(self.halt.clone().unwrap_or(Halt {
                    reason: None,
                    status: 0,
                }))
            }
            _ => None,
        }
    }

    pub fn is_running(&self) -> bool {
        self.phase == Phase::Running
    }

    // --- commands ------------------------------------------------------------

    /// TTIN / TTOU / `scale` / `worker add|remove`.
    pub fn scale(&mut self, scale: ScaleTarget) -> Outcome {
        let previous = self.target;
        if self.is_running() {
            let wanted = scale.apply(previous);
            let cap = self.limits.max_workers;
            if wanted > cap {
                self.log(
                    Level::Warn,
                    format!(
                        "Cannot run {wanted} workers: {cap} is the most one master runs; using {cap}"
                    ),
                );
            }
            self.target = wanted.min(cap);
            self.target_changed(previous);
        }
        Outcome::Scaled {
            previous,
            total: self.target,
        }
    }

    /// Log and announce a new worker target (`nworkers_changed`).
    fn target_changed(&mut self, old: usize) {
        if self.target == old {
            return;
        }
        let target = self.target;
        self.log(Level::Info, format!("Number of workers: {old} -> {target}"));
        self.emit(EventKind::ScaleChanged {
            previous: old,
            target,
        });
        self.out.push(Action::Hook(
            "nworkers_changed",
            vec![
                ("GUNICORND_WORKERS", target.to_string()),
                ("GUNICORND_OLD_WORKERS", old.to_string()),
            ],
        ));
    }

    /// USR1: the master reopens its logs, every worker gets USR1.
    pub fn reopen_logs(&mut self) -> Outcome {
        self.out.push(Action::ReopenLogs);
        for pid in self.workers.oldest_first(|_| true) {
            self.out.push(Action::Signal {
                pid,
                signal: Signal::SIGUSR1,
            });
        }
        Outcome::Done
    }

    /// WINCH / `stop-workers`: stop every worker, keep the master. Only in
    /// daemon mode, like gunicorn (a terminal sends WINCH on every resize).
    pub fn stop_workers(&mut self, now: Instant) -> Outcome {
        // During an upgrade WINCH is the documented step that retires the
        // old workers, so it acts in the foreground too.
        if !self.limits.daemon && self.child_master.is_none() {
            return Outcome::Refused(
                "stop-workers (SIGWINCH) only acts in daemon mode (-D), like gunicorn: \
                 in the foreground it is ignored"
                    .into(),
            );
        }
        self.log(Level::Info, "graceful stop of workers");
        let count = self.workers.count(Worker::running);
        let old = self.target;
        self.target = 0;
        self.target_changed(old);
        for pid in self.workers.oldest_first(Worker::running) {
            self.retire(pid, RetireReason::StopWorkers, now);
        }
        Outcome::StoppingWorkers { count }
    }

    /// `worker kill PID`: retire one worker (a replacement follows).
    pub fn kill_worker(&mut self, pid: Pid, now: Instant) -> Outcome {
        if !self.workers.get(pid).is_some_and(Worker::running) {
            return Outcome::Refused(format!("no running worker with pid {pid}"));
        }
        self.retire(pid, RetireReason::Killed, now);
        Outcome::Retired { pid }
    }

    // --- binary upgrade --------------------------------------------------------

    /// USR2 / `upgrade`: may a new master be started now? One upgrade at a
    /// time, and not from a new master that has not taken over yet (as in
    /// gunicorn: "Child exists." / "Parent exists.").
    pub fn start_upgrade(&self) -> Result<(), String> {
        if !self.is_running() {
            return Err("the server is shutting down".into());
        }
        if let Some(child) = self.child_master {
            return Err(format!(
                "a new master (pid {}) is already running; finish or roll back that upgrade first",
                child.pid
            ));
        }
        if let Some(parent) = self.parent_master {
            return Err(format!(
                "this is a new master not yet promoted (the old master, pid {parent}, still runs)"
            ));
        }
        Ok(())
    }

    /// The executor started the new master of an upgrade.
    pub fn upgrade_started(&mut self, pid: Pid, now: Instant) -> Outcome {
        let timeout = self.limits.upgrade_timeout;
        self.child_master = Some(ChildMaster {
            pid,
            deadline: now + timeout,
            ready: false,
            killed: false,
        });
        self.log(
            Level::Info,
            format!(
                "Upgrade: started a new master (pid:{pid}); it has {} s to boot its workers",
                timeout.as_secs()
            ),
        );
        self.emit(EventKind::UpgradeStarted { pid: pid.as_raw() });
        Outcome::Upgrading { pid }
    }

    /// The new master could not be started; nothing changed.
    pub fn upgrade_not_started(&mut self, reason: &str) -> Outcome {
        self.log(
            Level::Error,
            format!("Upgrade failed: {reason}; this master carries on"),
        );
        self.emit(EventKind::UpgradeFailed {
            pid: None,
            reason: reason.to_string(),
        });
        Outcome::Refused(format!("upgrade failed: {reason}"))
    }

    /// The new master reported that all its workers booted.
    pub fn upgrade_ready(&mut self, pid: Pid) {
        let Some(child) = self.child_master.as_mut() else {
            return;
        };
        if child.pid != pid {
            let started = child.pid;
            self.log(
                Level::Warn,
                format!(
                    "Upgrade: pid {pid} says it is ready, but the new master started is pid {started} \
                     (a wrapper that runs gunicornd without exec?); it cannot take over"
                ),
            );
            return;
        }
        if child.ready || child.killed {
            return;
        }
        child.ready = true;
        self.log(
            Level::Info,
            format!(
                "Upgrade: the new master (pid:{pid}) is ready, all its workers booted; \
                 stop this master to hand over (WINCH then TERM), or stop the new one to roll back"
            ),
        );
        self.emit(EventKind::UpgradeReady { pid: pid.as_raw() });
    }

    /// The new master exited (we are its parent and reaped it). Whatever
    /// the reason, this master goes on as before; the new one's `.2` files
    /// go with it.
    pub fn child_master_exited(&mut self, status: &WaitStatus) {
        let Some(child) = self.child_master.take() else {
            return;
        };
        let pid = child.pid;
        let reason = if child.killed {
            format!(
                "the new master was not ready within {} s (--upgrade-timeout) and was killed",
                self.limits.upgrade_timeout.as_secs()
            )
        } else {
            match *status {
                WaitStatus::Exited(_, WORKER_BOOT_ERROR) => format!(
                    "the new master exited with code {WORKER_BOOT_ERROR}: its workers failed to boot"
                ),
                WaitStatus::Exited(_, APP_LOAD_ERROR) => format!(
                    "the new master exited with code {APP_LOAD_ERROR}: its app failed to load"
                ),
                WaitStatus::Exited(_, code) => {
                    format!("the new master exited with code {code}")
                }
                WaitStatus::Signaled(_, sig, _) => {
                    format!("the new master was killed by {}", sig.as_str())
                }
                ref other => format!("the new master ended: {other:?}"),
            }
        };
        let level = if child.ready {
            Level::Warn
        } else {
            Level::Error
        };
        self.log(
            level,
            format!(
                "Upgrade ended without a takeover (pid:{pid}): {reason}; this master serves on"
            ),
        );
        self.emit(EventKind::UpgradeFailed {
            pid: Some(pid.as_raw()),
            reason,
        });
        self.out.push(Action::RemoveUpgradeFiles { pid });
    }

    /// Who takes over when this master exits: a new master that is ready.
    pub fn successor(&self) -> Option<Pid> {
        self.child_master.filter(|c| c.ready).map(|c| c.pid)
    }

    /// This new master's old master exited: it is the master now.
    pub fn promoted(&mut self) {
        let Some(old) = self.parent_master.take() else {
            return;
        };
        self.log(Level::Info, "Master has been promoted.");
        self.out.push(Action::TakeOver { old });
    }

    /// TERM (graceful) or INT/QUIT (quick); a quick request during a
    /// graceful stop escalates it.
    pub fn begin_stop(&mut self, graceful: bool, now: Instant) -> Outcome {
        match self.phase {
            Phase::Stopping {
                graceful: true,
                deadline,
            } if !graceful => {
                self.log(Level::Info, "Quick shutdown requested");
                self.phase = Phase::Stopping {
                    graceful: false,
                    deadline: deadline.min(now + QUICK_STOP_GRACE),
                };
            }
            Phase::Stopping { .. } => return Outcome::Done,
            Phase::Running => {
                let grace = if graceful {
                    self.limits.graceful_timeout
                } else {
                    QUICK_STOP_GRACE
                };
                self.phase = Phase::Stopping {
                    graceful,
                    deadline: now + grace,
                };
                self.report(Report::Stopping);
                let mode = if graceful {
                    ShutdownMode::Graceful
                } else {
                    ShutdownMode::Quick
                };
                self.emit(EventKind::ShuttingDown { mode });
                self.out.push(Action::CloseListeners);
            }
        }
        let sig = if graceful {
            Signal::SIGTERM
        } else {
            Signal::SIGQUIT
        };
        for pid in self.workers.oldest_first(|_| true) {
            self.send_stop(pid, sig, now);
        }
        Outcome::Done
    }

    // --- reload --------------------------------------------------------------

    /// A reload was asked for: refused while stopping, else the service
    /// manager hears that one is under way (until `Reloaded`).
    pub fn start_reload(&mut self) -> Result<(), String> {
        if !self.is_running() {
            return Err("the server is shutting down".into());
        }
        self.report(Report::Reloading);
        Ok(())
    }

    /// The new configuration loaded (and its sockets are bound): roll a new
    /// generation in. `configured` is the worker count of the old and the
    /// new configuration: a changed count replaces the target, an unchanged
    /// one keeps what TTIN/TTOU made of it (unless WINCH left it at zero).
    pub fn begin_reload(&mut self, configured: (usize, usize), limits: Limits) -> Outcome {
        let old_target = self.target;
        if configured.0 != configured.1 || self.target == 0 {
            self.target = configured.1.min(limits.max_workers);
        }
        self.counters.reloads += 1;
        if self.previous.is_none() {
            self.previous = Some(Fallback {
                generation: self.generation,
                target: old_target,
                limits: self.limits,
            });
        }
        self.limits = limits;
        self.generation = self.next_generation;
        self.next_generation += 1;
        for w in self.workers.iter_mut() {
            if w.running() && w.replace.is_none() {
                w.replace = Some(Replace::Generation);
            }
        }
        self.boot_failures = 0;
        self.next_spawn_at = None;
        let (generation, target) = (self.generation, self.target);
        self.log(
            Level::Info,
            format!("Reloading: starting generation {generation} with {target} workers"),
        );
        self.out.push(Action::Hook(
            "on_reload",
            vec![("GUNICORND_WORKERS", target.to_string())],
        ));
        self.emit(EventKind::ReloadStarted { generation });
        self.target_changed(old_target);
        Outcome::Reloading { generation }
    }

    /// The new configuration could not be used; nothing changed.
    pub fn reload_failed(&mut self, reason: &str) -> Outcome {
        self.log(
            Level::Error,
            format!("Reload failed, keeping the running configuration: {reason}"),
        );
        self.emit(EventKind::ReloadFailed {
            generation: None,
            reason: reason.to_string(),
        });
        self.report(Report::Reloaded);
        Outcome::Refused(reason.to_string())
    }

    /// The generation a failed reload falls back to, while any of its
    /// workers still serves.
    pub fn fallback_generation(&self) -> Option<u64> {
        let prev = self.previous.as_ref()?;
        let serving = self
            .workers
            .count(|w| w.generation == prev.generation && w.running())
            > 0;
        serving.then_some(prev.generation)
    }

    /// The new generation cannot boot: the previous one serves again, with
    /// its settings, worker count, hooks, log settings and sockets.
    fn roll_back(&mut self, reason: &str, now: Instant) {
        let Some(prev) = self.previous.take() else {
            return;
        };
        self.log(
            Level::Error,
            format!(
                "Reload failed: {reason} Keeping generation {} serving; fix the configuration and reload again.",
                prev.generation
            ),
        );
        self.emit(EventKind::ReloadFailed {
            generation: Some(self.generation),
            reason: reason.to_string(),
        });
        self.out.push(Action::RestorePrevious);
        let old_target = self.target;
        self.generation = prev.generation;
        self.target = prev.target;
        self.limits = prev.limits;
        // Every worker of a later generation goes (a HUP during the reload
        // may have started more than one); the serving one is kept.
        for pid in self
            .workers
            .oldest_first(|w| w.generation != prev.generation && w.running())
        {
            self.send_stop(pid, Signal::SIGTERM, now);
        }
        for w in self.workers.iter_mut() {
            if w.generation == prev.generation && w.replace == Some(Replace::Generation) {
                w.replace = None;
            }
        }
        self.boot_failures = 0;
        self.next_spawn_at = None;
        self.report(Report::Reloaded);
        self.target_changed(old_target);
    }

    // --- in-place upgrade ----------------------------------------------------

    /// The new image of an in-place upgrade took over `workers` (the
    /// previous image's, still our children, their heartbeats still in the
    /// scoreboard) serving `generation` at `target`: they are rolled over
    /// as a reload rolls a generation over, each retired only as the new
    /// generation's booted workers take its place. Should the new binary's
    /// workers fail to boot, the rollback of a reload keeps the adopted ones
    /// serving: those of `fallback` (generation, target) when the previous
    /// image was in the middle of a reload, else those of `generation`.
    /// `configured` is the worker count of the old configuration and of
    /// ours, compared as a reload compares them.
    pub fn adopt(
        &mut self,
        workers: Vec<Worker>,
        generation: u64,
        fallback: Option<(u64, usize)>,
        target: usize,
        configured: (usize, usize),
        counters: Counters,
    ) {
        self.counters = counters;
        self.worker_age = workers.iter().map(|w| w.age).max().unwrap_or(0);
        let newest = workers.iter().map(|w| w.generation).max().unwrap_or(0);
        let adopted = workers.len();
        for mut w in workers {
            w.replace = Some(Replace::Generation);
            self.workers.insert(w);
        }
        let old_target = target.min(self.limits.max_workers);
        self.target = if configured.0 != configured.1 || old_target == 0 {
            configured.1.min(self.limits.max_workers)
        } else {
            old_target
        };
        let generation = generation.max(newest);
        let (serving, serving_target) = fallback.unwrap_or((generation, old_target));
        self.previous = Some(Fallback {
            generation: serving,
            target: serving_target.min(self.limits.max_workers),
            limits: self.limits,
        });
        self.generation = generation + 1;
        self.next_generation = generation + 2;
        // The service was ready before the exec; it stays so (READY=1
        // follows when the roll-over completes, as after a reload).
        self.ready = true;
        let (new, target) = (self.generation, self.target);
        let replaced = if serving == generation {
            format!("generation {generation}")
        } else {
            format!("generations {serving} to {generation} (a reload was in progress)")
        };
        self.log(
            Level::Info,
            format!(
                "Upgraded in place: generation {new} with {target} workers replaces the {adopted} workers of {replaced}"
            ),
        );
        self.emit(EventKind::ReloadStarted { generation: new });
    }

    // --- workers -------------------------------------------------------------

    /// The executor started the worker a [`Action::Spawn`] asked for; it
    /// reports through `protocol`.
    pub fn spawned(
        &mut self,
        pid: Pid,
        age: u64,
        generation: u64,
        slot: usize,
        protocol: Protocol,
        now: Instant,
    ) {
        let mut w = Worker::new(pid, age, generation, slot, now);
        if protocol == Protocol::SdNotify {
            w.notify = Some(Notified::default());
        }
        self.workers.insert(w);
        self.counters.spawned += 1;
        self.emit(EventKind::WorkerSpawned {
            pid: pid.as_raw(),
            generation,
        });
        self.out.push(Action::Hook(
            "post_fork",
            vec![
                ("GUNICORND_WORKER_PID", pid.to_string()),
                ("GUNICORND_WORKER_AGE", age.to_string()),
            ],
        ));
    }

    /// The executor could not spawn the worker of age `age`: back off before
    /// the next try. Ages stay consecutive: the spawns skipped after this one
    /// take none, and `age` itself counts only if `fork()` was tried.
    pub fn spawn_failed(&mut self, reason: String, age: u64, forked: bool, now: Instant) {
        self.worker_age = if forked { age } else { age - 1 };
        self.log(Level::Error, reason);
        self.delay_next_spawn(now);
    }

    /// The program of the worker of age `age` could not be executed (its
    /// exec failed in the forked child, which is gone): a worker that died
    /// before booting, so the crash-loop backoff applies.
    pub fn exec_failed(&mut self, reason: String, age: u64, now: Instant) {
        self.worker_age = age;
        self.log(Level::Error, reason);
        if self.is_running() {
            self.boot_failures += 1;
            self.delay_next_spawn(now);
        }
    }

    /// Whether a queued [`Action::Spawn`] may go ahead: not while a backoff
    /// armed by a failure in the same batch is running.
    pub fn may_spawn(&self, now: Instant) -> bool {
        self.next_spawn_at.is_none_or(|t| now >= t)
    }

    /// A message from `pid`, as the kernel identified the sender: only a
    /// worker's own messages count, and a worker boots once.
    pub fn worker_message(&mut self, pid: Pid, msg: WorkerMsg, now: Instant) {
        let Some(w) = self.workers.get_mut(pid) else {
            self.log(
                Level::Warn,
                format!(
                    "Ignoring a worker message ({msg:?}) from pid {pid}, which is not one of this master's workers"
                ),
            );
            return;
        };
        match msg {
            WorkerMsg::Booted => self.mark_booted(pid, now),
            WorkerMsg::Recycle => {
                if w.replace.is_none() {
                    w.replace = Some(Replace::Recycle);
                }
            }
        }
    }

    /// A worker booted (its message, `READY=1`, or the boot grace): it is
    /// capacity from now on. A worker boots once.
    fn mark_booted(&mut self, pid: Pid, now: Instant) {
        let Some(w) = self.workers.get_mut(pid) else {
            return;
        };
        if w.booted_at.is_some() {
            return;
        }
        w.booted_at = Some(now);
        if let Some(n) = w.notify.as_mut() {
            // An extension of the boot deadline is over with the boot.
            n.extended_to = None;
        }
        let generation = w.generation;
        self.boot_failures = 0;
        self.next_spawn_at = None;
        self.log(Level::Debug, format!("Worker (pid:{pid}) booted"));
        self.emit(EventKind::WorkerBooted {
            pid: pid.as_raw(),
            generation,
        });
    }

    /// An sd_notify message from `pid`, as the kernel identified the
    /// sender: only a command worker's own messages count (ARCHITECTURE.md,
    /// "Command workers", has what each one means for a worker).
    pub fn worker_notice(&mut self, pid: Pid, notice: Notice, now: Instant) {
        let graceful = self.limits.graceful_timeout;
        let Some(w) = self.workers.get_mut(pid).filter(|w| w.notify.is_some()) else {
            self.ignore_notice(pid, now);
            return;
        };
        let running = w.running();
        let booted = w.booted();
        let Some(n) = w.notify.as_mut() else { return };
        n.spoke = true;
        if let Some(status) = notice.status {
            // An empty STATUS= clears it, as in systemd.
            n.status = Some(status).filter(|s| !s.is_empty());
        }
        if notice.watchdog {
            n.watchdog_at = Some(now);
        }
        if notice.stopping && running {
            n.stopping_at = Some(now);
            // An extension sent before is not one of this stop.
            n.extended_to = None;
            self.log(
                Level::Info,
                format!(
                    "Worker (pid:{pid}) is stopping on its own (STOPPING=1); it has {} s to exit \
                     and its replacement starts now",
                    graceful.as_secs()
                ),
            );
        }
        if notice.ready && !booted {
            self.mark_booted(pid, now);
        }
        // After the changes of phase above: an extension sent with them is
        // one of the phase they begin.
        if let Some(extension) = notice.extend_timeout {
            if let Some(n) = self.workers.get_mut(pid).and_then(|w| w.notify.as_mut()) {
                let to = now + extension;
                n.extended_to = Some(n.extended_to.map_or(to, |t| t.max(to)));
            }
        }
        if notice.watchdog_trigger && running {
            self.time_out(pid, false, now, ": it asked for it (WATCHDOG=trigger)");
        }
    }

    /// A message on the `NOTIFY_SOCKET` from a process that is no command
    /// worker of this master (a worker's child, anyone else): ignored, and
    /// logged at most once per [`IGNORED_NOTICE_LOG_INTERVAL`].
    fn ignore_notice(&mut self, pid: Pid, now: Instant) {
        let (last, suppressed) = self.ignored_notices;
        if last.is_some_and(|t| now < t + IGNORED_NOTICE_LOG_INTERVAL) {
            self.ignored_notices.1 += 1;
            return;
        }
        let more = if suppressed > 0 {
            format!(" ({suppressed} more such messages were ignored since the last one logged)")
        } else {
            String::new()
        };
        self.ignored_notices = (Some(now), 0);
        self.log(
            Level::Warn,
            format!(
                "Ignoring a NOTIFY_SOCKET message from pid {pid}, which is not one of this \
                 master's command workers{more}"
            ),
        );
    }

    /// A reaped worker: what its end means (a clean stop, a crash, a boot
    /// failure that backs off, exit 3/4 that halts or rolls back).
    pub fn worker_exited(&mut self, exit: Exit, now: Instant) {
        let Some(mut w) = self.workers.remove(exit.pid) else {
            return;
        };
        self.out.push(Action::Hook(
            "child_exit",
            vec![
                ("GUNICORND_WORKER_PID", w.pid.to_string()),
                ("GUNICORND_WORKER_AGE", w.age.to_string()),
                ("GUNICORND_WORKER_EXIT", exit_text(&exit.status)),
            ],
        ));
        if w.booted_at.is_none() && exit.booted {
            w.booted_at = Some(w.spawned_at);
        }
        self.emit(exit_event(&w, &exit.status));
        let pid = w.pid;
        let clean = match exit.status {
            WaitStatus::Signaled(_, sig, _) => {
                let (level, msg) = signaled_log(&w, sig);
                self.log(level, msg);
                sig == Signal::SIGTERM && w.stop.is_some()
            }
            WaitStatus::Exited(_, 0) => true,
            WaitStatus::Exited(_, code) => {
                self.log(
                    Level::Error,
                    format!("Worker (pid:{pid}) exited with code {code}."),
                );
                if (code == WORKER_BOOT_ERROR || code == APP_LOAD_ERROR)
                    && self.limits.halt_on_boot_error
                {
                    self.fatal_exit(&w, code, now);
                    return;
                }
                false
            }
            _ => false,
        };
        // No READY=1 in time is a failure to boot, like exit 3.
        if w.notify.as_ref().is_some_and(|n| n.missed_ready) && self.limits.halt_on_boot_error {
            self.fatal_exit(&w, WORKER_BOOT_ERROR, now);
            return;
        }
        if !clean && !w.booted() && w.stop.is_none() && !w.stopping() && self.is_running() {
            self.boot_failures += 1;
            self.delay_next_spawn(now);
        }
    }

    /// Exit 3/4: the server cannot run this configuration. During a reload
    /// the previous generation takes over again; otherwise the master halts.
    fn fatal_exit(&mut self, w: &Worker, code: i32, now: Instant) {
        let reason = if w.notify.as_ref().is_some_and(|n| n.missed_ready) {
            "Worker failed to boot: no READY=1 in time."
        } else if code == WORKER_BOOT_ERROR {
            "Worker failed to boot."
        } else {
            "App failed to load."
        };
        if !self.is_running() {
            return;
        }
        if w.generation == self.generation && self.fallback_generation().is_some() {
            self.roll_back(reason, now);
            return;
        }
        if w.generation != self.generation {
            // A straggler of a generation already replaced (or of one in
            // between two reloads): nothing to halt.
            return;
        }
        self.halt = Some(Halt {
            reason: Some(reason.to_string()),
            status: code,
        });
        self.begin_stop(true, now);
    }

    fn delay_next_spawn(&mut self, now: Instant) {
        let factor = 1u32 << self.boot_failures.saturating_sub(1).min(16);
        let delay = (BACKOFF_BASE * factor).min(BACKOFF_MAX);
        self.next_spawn_at = Some(now + delay);
        self.log(
            Level::Warn,
            format!(
                "{} worker(s) in a row died before booting; next spawn in {} ms",
                self.boot_failures,
                delay.as_millis()
            ),
        );
        if self.boot_failures == STARTUP_FAILURES && !self.ready {
            // Whoever is waiting for readiness (a daemon's launcher) gets a
            // truthful answer; the master itself keeps trying.
            self.report(Report::StartupFailed(format!(
                "workers keep dying before they boot ({STARTUP_FAILURES} in a row); see the error log"
            )));
        }
    }

    /// Gracefully stop one worker, telling event subscribers why.
    fn retire(&mut self, pid: Pid, reason: RetireReason, now: Instant) {
        let Some(w) = self.workers.get(pid) else {
            return;
        };
        if !w.running() {
            return;
        }
        let generation = w.generation;
        self.send_stop(pid, Signal::SIGTERM, now);
        self.emit(EventKind::WorkerRetired {
            pid: pid.as_raw(),
            generation,
            reason,
        });
    }

    /// Send a stop signal once; a different (stronger) one may follow.
    fn send_stop(&mut self, pid: Pid, signal: Signal, now: Instant) {
        let handed_over = self.successor().is_some();
        let grace = if signal == Signal::SIGTERM {
            self.limits.graceful_timeout
        } else {
            QUICK_STOP_GRACE
        };
        let Some(w) = self.workers.get_mut(pid) else {
            return;
        };
        if w.stop.is_some_and(|s| s.signal == signal) || w.killed {
            return;
        }
        w.stop = Some(StopSent {
            signal,
            at: now,
            kill_at: now + grace,
        });
        if let Some(n) = w.notify.as_mut() {
            // An extension sent before is not one of this stop.
            n.extended_to = None;
        }
        if handed_over && signal == Signal::SIGTERM {
            self.out.push(Action::QueueServedElsewhere { pid });
        }
        self.out.push(Action::Signal { pid, signal });
    }

    fn send_kill(&mut self, pid: Pid, why: &str) {
        let Some(w) = self.workers.get_mut(pid) else {
            return;
        };
        if w.killed {
            return;
        }
        w.killed = true;
        self.counters.killed += 1;
        self.log(
            Level::Warn,
            format!("Worker (pid:{pid}) {why}; sending SIGKILL"),
        );
        self.out.push(Action::Signal {
            pid,
            signal: Signal::SIGKILL,
        });
    }

    // --- time ----------------------------------------------------------------

    /// Heartbeat timeouts, overdue stops, a stop that ran out of time;
    /// sd_notify workers that booted by their boot grace, or that missed
    /// `READY=1` or their `WATCHDOG=1`.
    pub fn check_deadlines(&mut self, now: Instant, liveness: impl Fn(&Worker) -> Liveness) {
        let (timeout, graceful, grace) = (
            self.limits.timeout,
            self.limits.graceful_timeout,
            self.limits.boot_grace,
        );
        let mut abort = Vec::new();
        let mut kill_now = Vec::new();
        let mut grace_booted = Vec::new();
        for w in self.workers.iter().filter(|w| !w.killed) {
            if let Some(at) = kill_due(w, graceful) {
                if now >= at {
                    let why = if w.aborted_at.is_some() {
                        "still there after SIGABRT"
                    } else {
                        "did not stop in time"
                    };
                    kill_now.push((w.pid, why));
                }
                continue;
            }
            let Some(n) = &w.notify else {
                if !timeout.is_zero() {
                    let seen = liveness(w);
                    if seen.silence > timeout {
                        abort.push((w.pid, seen.stopped, ""));
                    }
                }
                continue;
            };
            if boot_grace_due(w, n, grace).is_some_and(|at| now >= at) {
                grace_booted.push(w.pid);
            } else if notify_due(w, n, timeout).is_some_and(|at| now > at) {
                let detail = if w.booted() {
                    ": no WATCHDOG=1 in time"
                } else {
                    ": no READY=1 in time"
                };
                abort.push((w.pid, liveness(w).stopped, detail));
            }
        }
        if let Phase::Stopping { deadline, .. } = self.phase {
            if now >= deadline {
                for w in self.workers.iter().filter(|w| !w.killed) {
                    kill_now.push((w.pid, "graceful timeout expired"));
                }
            }
        }
        for pid in grace_booted {
            self.log(
                Level::Debug,
                format!(
                    "Worker (pid:{pid}) said nothing on its NOTIFY_SOCKET within {} s \
                     (--boot-grace): counting it as booted",
                    grace.as_secs()
                ),
            );
            self.mark_booted(pid, now);
        }
        for (pid, stopped, detail) in abort {
            self.time_out(pid, stopped, now, detail);
        }
        if let Some(child) = self.child_master.as_mut() {
            if !child.ready && !child.killed && now >= child.deadline {
                child.killed = true;
                let pid = child.pid;
                self.log(
                    Level::Error,
                    format!(
                        "Upgrade: the new master (pid:{pid}) is not ready after {} s; killing it",
                        self.limits.upgrade_timeout.as_secs()
                    ),
                );
                self.out.push(Action::Signal {
                    pid,
                    signal: Signal::SIGKILL,
                });
            }
        }
        for (pid, why) in kill_now {
            self.send_kill(pid, why);
        }
    }

    /// A worker missed its heartbeat (or, an sd_notify worker, its
    /// `READY=1`): SIGABRT (gunicorn's: the worker logs where it was and
    /// exits 1; systemd's watchdog sends the same), SIGKILL after
    /// [`ABORT_GRACE`]. A stopped process cannot run its handler, so it
    /// gets SIGKILL at once. `detail` ends the log line.
    fn time_out(&mut self, pid: Pid, stopped: bool, now: Instant, detail: &str) {
        let Some(w) = self.workers.get_mut(pid) else {
            return;
        };
        let booted = w.booted();
        let during = if booted { "" } else { " while booting" };
        w.aborted_at = Some(now);
        if let Some(n) = w.notify.as_mut() {
            n.missed_ready = !booted;
        }
        let generation = w.generation;
        self.log(
            Level::Critical,
            format!("WORKER TIMEOUT (pid:{pid}){during}{detail}"),
        );
        self.emit(EventKind::WorkerRetired {
            pid: pid.as_raw(),
            generation,
            reason: RetireReason::Timeout,
        });
        if stopped {
            self.send_kill(pid, "is stopped and cannot handle SIGABRT");
        } else {
            self.out.push(Action::Signal {
                pid,
                signal: Signal::SIGABRT,
            });
        }
    }

    /// The earliest moment something must happen without outside input.
    /// `liveness` gives the silence of the forked kinds' workers only.
    pub fn next_deadline(
        &self,
        now: Instant,
        liveness: impl Fn(&Worker) -> Liveness,
    ) -> Option<Instant> {
        let (timeout, graceful, grace) = (
            self.limits.timeout,
            self.limits.graceful_timeout,
            self.limits.boot_grace,
        );
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        let unkilled = self.workers.iter().any(|w| !w.killed);
        match self.phase {
            // Once everyone got SIGKILL the deadline has done its job.
            Phase::Stopping { deadline, .. } if unkilled => consider(deadline),
            Phase::Stopping { .. } => {}
            Phase::Running => {
                if let Some(t) = self.next_spawn_at {
                    consider(t);
                }
            }
        }
        if let Some(child) = self.child_master.filter(|c| !c.ready && !c.killed) {
            consider(child.deadline);
        }
        for w in self.workers.iter().filter(|w| !w.killed) {
            if let Some(at) = kill_due(w, graceful) {
                consider(at);
            } else if let Some(n) = &w.notify {
                // Overdue is past the deadline, as a silence longer than
                // the timeout.
                let overdue = notify_due(w, n, timeout).map(|at| at + Duration::from_millis(1));
                [boot_grace_due(w, n, grace), overdue]
                    .into_iter()
                    .flatten()
                    .for_each(&mut consider);
            } else if !timeout.is_zero() {
                let silence = liveness(w).silence;
                consider(now + timeout.saturating_sub(silence) + Duration::from_millis(1));
            }
        }
        next
    }

    // --- the target ----------------------------------------------------------

    /// Compare the worker table with the target and act: stop what is in
    /// excess, spawn what is missing, retire workers that wait for a
    /// replacement once the replacement's capacity is there.
    pub fn manage(&mut self, now: Instant) {
        if !self.is_running() {
            return;
        }
        self.stop_excess(now);
        self.spawn_missing(now);
        self.retire_replaced(now);
        self.note_reload_complete();
    }

    /// Scale-down: workers still booting are no capacity, so they go first
    /// (newest first); then the oldest booted ones (gunicorn's choice).
    fn stop_excess(&mut self, now: Instant) {
        let live = self.workers.count(Worker::live);
        if live <= self.target {
            return;
        }
        let mut victims = self.workers.oldest_first(|w| w.live() && !w.booted());
        victims.reverse();
        victims.extend(self.workers.oldest_first(|w| w.live() && w.booted()));
        for pid in victims.into_iter().take(live - self.target) {
            self.retire(pid, RetireReason::Scale, now);
        }
    }

    fn spawn_missing(&mut self, now: Instant) {
        let live = self.workers.count(Worker::live);
        if live >= self.target {
            // A backoff deadline nobody will act on must not stay armed
            // (it would make every poll return at once).
            self.next_spawn_at = None;
            return;
        }
        if let Some(t) = self.next_spawn_at {
            if now < t {
                return;
            }
            self.next_spawn_at = None;
        }
        // While workers keep dying at boot, try one at a time.
        let missing = if self.boot_failures > 0 {
            1
        } else {
            self.target - live
        };
        for _ in 0..missing {
            self.worker_age += 1;
            self.out.push(Action::Spawn {
                age: self.worker_age,
                generation: self.generation,
            });
        }
    }

    /// Retire workers that wait for a replacement (older generation, or
    /// recycling after max_requests) while booted capacity stays >= target.
    /// One that never booted is no capacity: it goes at once.
    fn retire_replaced(&mut self, now: Instant) {
        let mut capacity = self.workers.count(|w| w.running() && w.booted());
        for pid in self
            .workers
            .oldest_first(|w| w.running() && w.replace.is_some())
        {
            let Some(w) = self.workers.get(pid) else {
                continue;
            };
            let reason = match w.replace {
                Some(Replace::Recycle) => RetireReason::MaxRequests,
                _ => RetireReason::Reload,
            };
            if !w.booted() {
                self.retire(pid, reason, now);
            } else if capacity > self.target {
                self.retire(pid, reason, now);
                capacity -= 1;
            }
        }
    }

    /// A reload is complete when no worker of an older generation is serving
    /// and the new generation is at target.
    fn note_reload_complete(&mut self) {
        let Some(prev) = self.previous else { return };
        let gen = self.generation;
        let old_serving = self.workers.count(|w| w.generation != gen && w.running());
        let booted = self.serving_capacity();
        if old_serving == 0 && booted >= self.target {
            self.log(
                Level::Info,
                format!(
                    "Reload complete: generation {gen} is serving with {booted} workers (replaced generation {})",
                    prev.generation
                ),
            );
            self.previous = None;
            self.out.push(Action::CloseParkedListeners);
            self.emit(EventKind::ReloadFinished { generation: gen });
            self.report(Report::Reloaded);
        }
    }

    /// Readiness (the first generation at its target) and the status line.
    pub fn progress(&mut self) {
        let booted = self.serving_capacity();
        if self.is_running() && !self.ready && booted >= self.target && self.target > 0 {
            self.log(Level::Info, format!("Ready: {booted} workers booted"));
            self.ready = true;
            self.report(Report::Ready);
        }
        let text = match self.phase {
            Phase::Running => format!(
                "{booted}/{} workers booted (generation {})",
                self.target, self.generation
            ),
            Phase::Stopping { .. } => format!("Stopping: {} workers left", self.workers.len()),
        };
        if text != self.status {
            self.status = text.clone();
            self.report(Report::Status(text));
        }
    }
}

/// When a worker that was asked to stop (or aborted after a timeout, or
/// said `STOPPING=1`) gets SIGKILL if it is still there; `None` while it is
/// not on its way out. A hung worker that also got TERM keeps its short
/// SIGABRT grace. An sd_notify worker's `EXTEND_TIMEOUT_USEC=` pushes a
/// stop's SIGKILL back (never the one after SIGABRT; and the server's own
/// shutdown deadline, `Phase::Stopping`, still holds).
fn kill_due(w: &Worker, graceful: Duration) -> Option<Instant> {
    let extended = w.notify.as_ref().and_then(|n| n.extended_to);
    let stopping = w.notify.as_ref().and_then(|n| n.stopping_at);
    let stop = w
        .stop
        .map(|s| s.kill_at)
        .or(stopping.map(|at| at + graceful))
        .map(|at| extended.map_or(at, |e| at.max(e)));
    let after_abort = w.aborted_at.map(|at| at + ABORT_GRACE);
    match (stop, after_abort) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// When an sd_notify worker that has said nothing counts as booted by its
/// boot grace; `None` once it spoke or booted, or without a grace.
fn boot_grace_due(w: &Worker, n: &Notified, grace: Duration) -> Option<Instant> {
    (!grace.is_zero() && !n.spoke && !w.booted() && w.running()).then(|| w.spawned_at + grace)
}

/// Until when a running sd_notify worker is on time (past it, it is
/// overdue): `READY=1` within `timeout`
/// of its start, then (once it sent a first `WATCHDOG=1`) a `WATCHDOG=1`
/// within `timeout` of the last; either pushed back by
/// `EXTEND_TIMEOUT_USEC=`. `None` when nothing is awaited (no timeout, no
/// watchdog yet, not running).
fn notify_due(w: &Worker, n: &Notified, timeout: Duration) -> Option<Instant> {
    if timeout.is_zero() || !w.running() {
        return None;
    }
    let due = if w.booted() {
        n.watchdog_at? + timeout
    } else {
        w.spawned_at + timeout
    };
    Some(n.extended_to.map_or(due, |e| due.max(e)))
}

/// `GUNICORND_WORKER_EXIT` for the `child_exit` hook.
fn exit_text(status: &WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("exit {code}"),
        WaitStatus::Signaled(_, sig, _) => format!("signal {}", sig.as_str()),
        other => format!("{other:?}"),
    }
}

fn signaled_log(w: &Worker, sig: Signal) -> (Level, String) {
    let pid = w.pid;
    match sig {
        Signal::SIGKILL if w.killed => (
            Level::Error,
            format!("Worker (pid:{pid}) was sent SIGKILL!"),
        ),
        Signal::SIGKILL => (
            Level::Error,
            format!("Worker (pid:{pid}) was sent SIGKILL! Perhaps out of memory?"),
        ),
        Signal::SIGTERM => (Level::Info, format!("Worker (pid:{pid}) was sent SIGTERM!")),
        _ => (
            Level::Warn,
            format!("Worker (pid:{pid}) was sent {}!", sig.as_str()),
        ),
    }
}

/// The `worker_exited` event for a reaped worker.
fn exit_event(w: &Worker, status: &WaitStatus) -> EventKind {
    let (reason, exit_code, signal) = match *status {
        WaitStatus::Exited(_, code) => {
            let why = match code {
                0 => "exited normally".to_string(),
                WORKER_BOOT_ERROR => format!("exited with code {code} (worker failed to boot)"),
                APP_LOAD_ERROR => format!("exited with code {code} (app failed to load)"),
                _ => format!("exited with code {code}"),
            };
            (why, Some(code), None)
        }
        WaitStatus::Signaled(_, sig, _) => {
            let why = if w.aborted_at.is_some() {
                format!("killed by {} (worker timeout)", sig.as_str())
            } else {
                format!("killed by {}", sig.as_str())
            };
            (why, None, Some(sig as i32))
        }
        ref other => (format!("{other:?}"), None, None),
    };
    EventKind::WorkerExited {
        pid: w.pid.as_raw(),
        generation: w.generation,
        reason,
        exit_code,
        signal,
    }
}
