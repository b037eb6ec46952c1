//! The worker table: the master's truth about its children. Nothing here
//! touches a process; the plan reads and changes it, the executor reports
//! what really happened (a fork's pid, a reaped exit).

use std::collections::BTreeMap;
use std::time::Instant;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// Why a worker should make way once a replacement has booted. A worker
/// with a `Replace` still serves and is still capacity; it is retired
/// (asked to stop) only when the capacity it gives is no longer needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    /// Part of an older generation (a reload is rolling it over).
    Generation,
    /// Served its `max_requests` and asked to be replaced.
    Recycle,
}

/// How a worker tells the master that it booted and that it is alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// The forked kinds: "booted" on the worker channel, the heartbeat in
    /// the scoreboard.
    WorkerChannel,
    /// An exec'd program (`-k command`): sd_notify datagrams on its
    /// `NOTIFY_SOCKET` (ARCHITECTURE.md, "Command workers").
    SdNotify,
}

/// What the master heard from an sd_notify worker, and what it decided
/// from it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notified {
    /// It sent something: it speaks the protocol, so only `READY=1` boots
    /// it (the boot grace is for programs that never speak).
    pub spoke: bool,
    /// Its last `WATCHDOG=1`. Heartbeat checks start with the first one,
    /// as systemd's `WatchdogSec=` needs the service to ping.
    pub watchdog_at: Option<Instant>,
    /// `EXTEND_TIMEOUT_USEC=`: the deadline running now (booting, the
    /// heartbeat, or SIGKILL while it stops) is no earlier than this.
    pub extended_to: Option<Instant>,
    /// Its last `STATUS=` text.
    pub status: Option<String>,
    /// When it said `STOPPING=1`: it leaves on its own, is no longer
    /// capacity, and its replacement starts at once.
    pub stopping_at: Option<Instant>,
    /// It was timed out before it sent `READY=1`: a failure to boot.
    pub missed_ready: bool,
}

/// A stop signal that was sent, so that it is never sent twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopSent {
    pub signal: Signal,
    pub at: Instant,
    /// SIGKILL goes out at this time if the worker is still there.
    pub kill_at: Instant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worker {
    pub pid: Pid,
    /// Spawn order across the master's life (gunicorn's `age`).
    pub age: u64,
    pub generation: u64,
    /// Index of its scoreboard slot.
    pub slot: usize,
    pub spawned_at: Instant,
    pub booted_at: Option<Instant>,
    pub replace: Option<Replace>,
    pub stop: Option<StopSent>,
    /// When SIGABRT was sent for a heartbeat timeout.
    pub aborted_at: Option<Instant>,
    /// SIGKILL was sent by us (so its exit is not blamed on the OOM killer).
    pub killed: bool,
    /// `Some` for an sd_notify worker ([`Protocol::SdNotify`]).
    pub notify: Option<Notified>,
}

impl Worker {
    pub fn new(pid: Pid, age: u64, generation: u64, slot: usize, now: Instant) -> Worker {
        Worker {
            pid,
            age,
            generation,
            slot,
            spawned_at: now,
            booted_at: None,
            replace: None,
            stop: None,
            aborted_at: None,
            killed: false,
            notify: None,
        }
    }

    /// It said `STOPPING=1`.
    pub fn stopping(&self) -> bool {
        self.notify
            .as_ref()
            .is_some_and(|n| n.stopping_at.is_some())
    }

    pub fn booted(&self) -> bool {
        self.booted_at.is_some()
    }

    /// Still serving: not asked to stop, not timed out, not leaving on
    /// its own.
    pub fn running(&self) -> bool {
        self.stop.is_none() && self.aborted_at.is_none() && !self.stopping()
    }

    /// Counts towards the target: running and not waiting to be replaced.
    pub fn live(&self) -> bool {
        self.running() && self.replace.is_none()
    }
}

/// Workers by pid.
#[derive(Debug, Default)]
pub struct WorkerTable {
    by_pid: BTreeMap<i32, Worker>,
}

impl WorkerTable {
    pub fn insert(&mut self, w: Worker) {
        self.by_pid.insert(w.pid.as_raw(), w);
    }

    pub fn remove(&mut self, pid: Pid) -> Option<Worker> {
        self.by_pid.remove(&pid.as_raw())
    }

    pub fn get_mut(&mut self, pid: Pid) -> Option<&mut Worker> {
        self.by_pid.get_mut(&pid.as_raw())
    }

    pub fn get(&self, pid: Pid) -> Option<&Worker> {
        self.by_pid.get(&pid.as_raw())
    }

    pub fn len(&self) -> usize {
        self.by_pid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_pid.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Worker> {
        self.by_pid.values()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Worker> {
        self.by_pid.values_mut()
    }

    /// Pids of the workers matching `pred`, oldest (lowest age) first.
    pub fn oldest_first(&self, pred: impl Fn(&Worker) -> bool) -> Vec<Pid> {
        let mut ws: Vec<&Worker> = self.by_pid.values().filter(|w| pred(w)).collect();
        ws.sort_by_key(|w| w.age);
        ws.into_iter().map(|w| w.pid).collect()
    }

    pub fn count(&self, pred: impl Fn(&Worker) -> bool) -> usize {
        self.by_pid.values().filter(|w| pred(w)).count()
    }
}
