//! Telling the outside world how the master is doing: systemd (`sd_notify`
//! READY/RELOADING/STOPPING/STATUS/WATCHDOG) and the launcher of a daemon
//! (`-D` waits for "ready" or an error before it exits).
//!
//! "Ready" means what an operator means: listeners bound *and* the first
//! generation of workers booted (gunicorn sends READY=1 before it has
//! spawned a single worker).

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use crate::daemon::DaemonHandle;
use crate::systemd::Notifier;

pub(super) struct Reporter {
    notifier: Notifier,
    /// A new master of an upgrade holds its notifier back until it takes
    /// over: until then the old master is the service's main process.
    held: Option<Notifier>,
    daemon: Option<DaemonHandle>,
    ready: bool,
    status: String,
    watchdog: Option<(Duration, Instant)>,
}

impl Reporter {
    pub(super) fn new(daemon: Option<DaemonHandle>, hold: bool) -> Reporter {
        let (notifier, held) = if hold {
            (Notifier::disabled(), Some(Notifier::from_env()))
        } else {
            (Notifier::from_env(), None)
        };
        let watchdog = watchdog_of(&notifier);
        Reporter {
            notifier,
            held,
            daemon,
            ready: false,
            status: String::new(),
            watchdog,
        }
    }

    /// A new master took over: `MAINPID=` first (its pidfile is already
    /// written), then READY=1 if it is serving, then its status.
    pub(super) fn take_over(&mut self, pid: nix::unistd::Pid) {
        let Some(notifier) = self.held.take() else {
            return;
        };
        self.notifier = notifier;
        self.notifier.mainpid(pid.as_raw() as u32);
        if self.ready {
            self.notifier.ready();
        }
        self.notifier.status(&self.status);
        self.watchdog = watchdog_of(&self.notifier);
    }

    /// The old master exits after an upgrade: systemd follows `pid` now.
    pub(super) fn hand_over(&self, pid: nix::unistd::Pid) {
        self.notifier.mainpid(pid.as_raw() as u32);
    }

    /// Descriptors a forked worker must close.
    pub(super) fn fds(&self) -> Vec<RawFd> {
        self.daemon.iter().map(DaemonHandle::raw_fd).collect()
    }

    /// The first generation is serving: tell systemd and the launcher.
    pub(super) fn serving(&mut self) {
        if self.ready {
            return;
        }
        self.ready = true;
        self.notifier.ready();
        if let Some(handle) = self.daemon.take() {
            handle.report_ready();
        }
    }

    /// The new image of an in-place upgrade: the service was serving all
    /// along, so the end of the roll-over says READY=1 as after a reload.
    pub(super) fn serving_already(&mut self) {
        self.ready = true;
    }

    /// Startup failed before the server was ready: the launcher says why.
    pub(super) fn startup_failed(&mut self, reason: &str) {
        if let Some(handle) = self.daemon.take() {
            handle.report_error(&format!("Error: {reason}"));
        }
    }

    pub(super) fn reloading(&self) {
        self.notifier.reloading();
    }

    /// A reload ended (done or rolled back): serving again.
    pub(super) fn reloaded(&self) {
        if self.ready {
            self.notifier.ready();
        }
    }

    pub(super) fn stopping(&self) {
        self.notifier.stopping();
    }

    /// Update `STATUS=` when the text changed.
    pub(super) fn status(&mut self, text: String) {
        if text != self.status {
            self.notifier.status(&text);
            self.status = text;
        }
    }

    pub(super) fn next_watchdog(&self) -> Option<Instant> {
        self.watchdog.map(|(_, at)| at)
    }

    pub(super) fn watchdog_due(&self, now: Instant) -> bool {
        self.watchdog.is_some_and(|(_, at)| now >= at)
    }

    /// Ping the watchdog when due: the event loop running is the proof of life.
    pub(super) fn tick(&mut self, now: Instant) {
        if let Some((every, at)) = self.watchdog {
            if now >= at {
                self.notifier.watchdog_ping();
                self.watchdog = Some((every, now + every));
            }
        }
    }
}

/// The watchdog schedule a notifier asks for, logged when enabled.
fn watchdog_of(notifier: &Notifier) -> Option<(Duration, Instant)> {
    let every = notifier.watchdog_interval()?;
    tracing::info!(
        "systemd watchdog enabled: pinging every {} ms",
        every.as_millis()
    );
    Some((every, Instant::now() + every))
}
