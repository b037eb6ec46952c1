//! Compare the worker table with the target and act (DESIGN rules 2 and 3):
//! spawn what is missing, stop what is in excess, and retire workers that
//! wait for a replacement only once the replacement's capacity is there.

use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, SigmaskHow};
use nix::unistd::{fork, ForkResult};
use rand::Rng;

use super::{Arbiter, Retire, State, Worker};
use crate::control::protocol::{EventKind, RetireReason};
use crate::worker::{self, WorkerSetup};

/// Crash-loop backoff: first delay, and the cap.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Boot failures in a row, before ever being ready, that count as a failed start.
const STARTUP_FAILURES: u32 = 5;

impl Arbiter {
    pub(super) fn manage(&mut self) {
        if self.state != State::Running {
            return;
        }
        self.stop_excess();
        self.spawn_missing();
        self.retire_replaced();
        self.note_reload_complete();
    }

    /// Scale-down: the oldest live workers go first (gunicorn's choice).
    /// Workers still booting are no capacity, so they go first (newest
    /// first); then the oldest booted ones (gunicorn's choice).
    fn stop_excess(&mut self) {
        let live = self.workers.count(Worker::live);
        if live <= self.target {
            return;
        }
        let mut victims = self.workers.oldest_first(|w| w.live() && !w.booted());
        victims.reverse();
        victims.extend(self.workers.oldest_first(|w| w.live() && w.booted()));
        for pid in victims.into_iter().take(live - self.target) {
            self.retire(pid, RetireReason::Scale);
        }
    }

    fn spawn_missing(&mut self) {
        let live = self.workers.count(Worker::live);
        if live >= self.target {
            // A backoff deadline nobody will act on must not stay armed
            // (it would make every poll return at once).
            self.next_spawn_at = None;
            return;
        }
        if let Some(t) = self.next_spawn_at {
            if Instant::now() < t {
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
            if let Err(e) = self.spawn_worker() {
                tracing::error!("{e}");
                self.delay_next_spawn();
                return;
            }
        }
    }

    /// Stop workers that wait for a replacement (older generation, or
    /// recycling after max_requests) while booted capacity stays >= target.
    /// A retiree that never booted is no capacity: it goes at once.
    fn retire_replaced(&mut self) {
        let booted = |w: &Worker| w.running() && w.booted();
        let mut capacity = self.workers.count(booted);
        for pid in self
            .workers
            .oldest_first(|w| w.running() && w.retire.is_some())
        {
            let Some(w) = self.workers.get(pid) else {
                continue;
            };
            let reason = match w.retire {
                Some(Retire::Recycle) => RetireReason::MaxRequests,
                _ => RetireReason::Reload,
            };
            if !w.booted() {
                self.retire(pid, reason);
            } else if capacity > self.target {
                self.retire(pid, reason);
                capacity -= 1;
            }
        }
    }

    /// A reload is complete when no worker of an older generation is serving
    /// and the new generation is at target.
    fn note_reload_complete(&mut self) {
        let Some(prev) = &self.previous else { return };
        let gen = self.generation;
        let old_serving = self.workers.count(|w| w.generation != gen && w.running());
        let booted = self.serving_capacity();
        if old_serving == 0 && booted >= self.target {
            tracing::info!(
                "Reload complete: generation {gen} is serving with {booted} workers (replaced generation {})",
                prev.generation
            );
            self.previous = None;
            self.close_retired_listeners();
            self.emit(EventKind::ReloadFinished { generation: gen });
            self.report.reloaded();
        }
    }

    /// Booted workers of the current generation that count towards the
    /// target: what "serving at capacity" is measured against.
    pub(super) fn serving_capacity(&self) -> usize {
        let gen = self.generation;
        self.workers
            .count(|w| w.generation == gen && w.live() && w.booted())
    }

    pub(super) fn delay_next_spawn(&mut self) {
        let factor = 1u32 << self.boot_failures.saturating_sub(1).min(16);
        let delay = (BACKOFF_BASE * factor).min(BACKOFF_MAX);
        self.next_spawn_at = Some(Instant::now() + delay);
        tracing::warn!(
            "{} worker(s) in a row died before booting; next spawn in {} ms",
            self.boot_failures,
            delay.as_millis()
        );
        if self.boot_failures == STARTUP_FAILURES && !self.report.is_ready() {
            // Whoever is waiting for readiness (a daemon's launcher) gets a
            // truthful answer; the master itself keeps trying.
            self.report.startup_failed(&format!(
                "workers keep dying before they boot ({STARTUP_FAILURES} in a row); see the error log"
            ));
        }
    }

    fn spawn_worker(&mut self) -> Result<(), String> {
        let slot = self.scoreboard.allocate().ok_or_else(|| {
            format!(
                "Cannot spawn a worker: {} workers is the most one master runs",
                crate::scoreboard::CAPACITY
            )
        })?;
        self.worker_age += 1;
        let age = self.worker_age;
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
        let forked = unsafe { fork() };
        match forked {
            Ok(ForkResult::Child) => {
                let setup = WorkerSetup {
                    age,
                    master_pid: self.pid,
                    listeners: &self.listeners,
                    slot: self.scoreboard.slot(slot),
                    notify_fd: std::os::fd::AsRawFd::as_raw_fd(&self.notify_write),
                    settings: &self.settings,
                    max_requests,
                    master_fds: self.master_fds(),
                    signal_mask: old_mask,
                };
                worker::run(setup)
            }
            Ok(ForkResult::Parent { child }) => {
                let _ =
                    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old_mask), None);
                self.scoreboard.set_pid(slot, child.as_raw() as u32);
                self.workers.insert(Worker {
                    pid: child,
                    age,
                    generation: self.generation,
                    slot,
                    spawned_at: Instant::now(),
                    booted_at: None,
                    retire: None,
                    stop: None,
                    aborted_at: None,
                    killed: false,
                });
                self.stats.spawned += 1;
                self.emit(EventKind::WorkerSpawned {
                    pid: child.as_raw(),
                    generation: self.generation,
                });
                self.hooks.fire(
                    "post_fork",
                    &[
                        ("GUNICORND_WORKER_PID", child.to_string()),
                        ("GUNICORND_WORKER_AGE", age.to_string()),
                    ],
                );
                Ok(())
            }
            Err(e) => {
                let _ =
                    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old_mask), None);
                self.scoreboard.release(slot);
                Err(format!("Cannot fork a worker: {e}"))
            }
        }
    }
}
