//! Reaping children and deciding what each exit means (reference §1.7).

use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::{Arbiter, Halt, State, Worker};
use crate::control::protocol::EventKind;
use crate::worker::{APP_LOAD_ERROR, WORKER_BOOT_ERROR};

impl Arbiter {
    /// Collect every exited child. Children that are not workers (orphans
    /// re-parented to us when we run as PID 1) are reaped and ignored.
    pub(super) fn reap(&mut self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(status) => {
                    let Some(pid) = status.pid() else { return };
                    if self.hooks.reaped(&status) {
                        continue;
                    }
                    match self.workers.remove(pid) {
                        Some(w) => {
                            self.fire_child_exit(&w, &status);
                            self.on_worker_exit(w, status)
                        }
                        None => tracing::debug!(
                            "Reaped unknown child process (pid:{pid}, status:{status:?})"
                        ),
                    }
                }
            }
        }
    }

    fn fire_child_exit(&mut self, w: &Worker, status: &WaitStatus) {
        let how = match status {
            WaitStatus::Exited(_, code) => format!("exit {code}"),
            WaitStatus::Signaled(_, sig, _) => format!("signal {}", sig.as_str()),
            other => format!("{other:?}"),
        };
        self.hooks.fire(
            "child_exit",
            &[
                ("GUNICORND_WORKER_PID", w.pid.to_string()),
                ("GUNICORND_WORKER_AGE", w.age.to_string()),
                ("GUNICORND_WORKER_EXIT", how),
            ],
        );
    }

    fn on_worker_exit(&mut self, mut w: Worker, status: WaitStatus) {
        // Its "booted" message may still sit unread in the worker pipe; the
        // scoreboard knows for sure (a quick death after booting is no boot
        // failure).
        if w.booted_at.is_none() && self.scoreboard.slot(w.slot).booted() {
            w.booted_at = Some(w.spawned_at);
        }
        self.scoreboard.release(w.slot);
        let pid = w.pid;
        self.emit(exit_event(&w, &status));
        let clean = match status {
            WaitStatus::Signaled(_, sig, _) => {
                log_signaled(&w, sig);
                sig == Signal::SIGTERM && w.stop.is_some()
            }
            WaitStatus::Exited(_, 0) => true,
            WaitStatus::Exited(_, code) => {
                tracing::error!("Worker (pid:{pid}) exited with code {code}.");
                if code == WORKER_BOOT_ERROR || code == APP_LOAD_ERROR {
                    self.on_fatal_exit(&w, code);
                    return;
                }
                false
            }
            _ => false,
        };
        if !clean && !w.booted() && w.stop.is_none() && self.state == State::Running {
            self.boot_failures += 1;
            self.delay_next_spawn();
        }
    }

    /// Exit 3/4: the server cannot run this configuration. During a reload
    /// the previous generation takes over again; otherwise the master halts.
    fn on_fatal_exit(&mut self, w: &Worker, code: i32) {
        let reason = if code == WORKER_BOOT_ERROR {
            "Worker failed to boot."
        } else {
            "App failed to load."
        };
        if self.state != State::Running {
            return;
        }
        // A worker of the generation being rolled in failed while the
        // previous one still serves: fall back to it.
        if w.generation == self.generation && self.fallback_generation().is_some() {
            self.roll_back(reason);
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
        self.begin_stop(true);
    }
}

fn log_signaled(w: &Worker, sig: Signal) {
    let pid = w.pid;
    let name = sig.as_str();
    match sig {
        Signal::SIGKILL if w.killed => tracing::error!("Worker (pid:{pid}) was sent SIGKILL!"),
        Signal::SIGKILL => {
            tracing::error!("Worker (pid:{pid}) was sent SIGKILL! Perhaps out of memory?")
        }
        Signal::SIGTERM => tracing::info!("Worker (pid:{pid}) was sent SIGTERM!"),
        _ => tracing::warn!("Worker (pid:{pid}) was sent {name}!"),
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
