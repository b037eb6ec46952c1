//! What the master decided to do, as values: the plan (`plan.rs`) returns
//! them, the executor (`execute.rs`) performs them, and the unit tests read
//! them without any process being forked or signalled.

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::control::protocol::EventKind;

/// One effect on the world outside the master's state.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Fork a worker of `generation`; `age` is its spawn order. The executor
    /// tells the pool the pid ([`super::Pool::spawned`]) or the failure
    /// ([`super::Pool::spawn_failed`]).
    Spawn {
        age: u64,
        generation: u64,
    },
    /// Tell a worker about to be stopped that another master's workers
    /// serve the listen queue (it need not drain it first).
    QueueServedElsewhere {
        pid: Pid,
    },
    /// Send `signal` to a worker (the pool has already recorded it).
    Signal {
        pid: Pid,
        signal: Signal,
    },
    Log(Level, String),
    /// An event for `gunicornctl events` subscribers.
    Emit(EventKind),
    /// Run a hook with these extra environment variables.
    Hook(&'static str, Vec<(&'static str, String)>),
    /// Tell systemd and a daemon's launcher how the server is doing.
    Report(Report),
    /// Stop accepting: close every listener (the start of a shutdown).
    CloseListeners,
    /// A reload completed: sockets it stopped binding can go.
    CloseParkedListeners,
    /// A reload failed: settings, hooks, log settings and sockets of the
    /// generation that served before it come back.
    RestorePrevious,
    /// USR1 in the master (the workers get their own signal).
    ReopenLogs,
    /// The new master `pid` is gone: remove the `.2` pidfile and control
    /// socket it may have left.
    RemoveUpgradeFiles {
        pid: Pid,
    },
    /// This new master's old master (`old`) exited: take over the pidfile,
    /// the control socket path, systemd's MAINPID and the sockets' files.
    TakeOver {
        old: Pid,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
    /// gunicorn's CRITICAL (see `crate::critical!`).
    Critical,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// The first generation is serving at its target.
    Ready,
    Reloading,
    /// A reload ended, done or rolled back: serving again.
    Reloaded,
    Stopping,
    /// Startup cannot succeed; whoever waits for readiness hears why.
    StartupFailed(String),
    /// systemd's `STATUS=` text.
    Status(String),
}

/// What a command achieved, for whoever asked (a control client gets it as
/// its reply; a signal has nobody to answer, so refusals are only logged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// The worker target changed (or was already where asked).
    Scaled {
        previous: usize,
        total: usize,
    },
    /// A reload started a new generation.
    Reloading {
        generation: u64,
    },
    /// `count` running workers were asked to stop.
    StoppingWorkers {
        count: usize,
    },
    /// A new master (`pid`) was started on the same sockets.
    Upgrading {
        pid: Pid,
    },
    /// The worker was asked to stop.
    Retired {
        pid: Pid,
    },
    /// Nothing was done, and this is why.
    Refused(String),
}
