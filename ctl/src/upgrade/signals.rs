//! The upgrade of Python gunicorn, whose control protocol has no upgrade
//! command: its documented procedure, driven with signals to the master
//! that `show stats` names.
//!
//! 1. `USR2` to the old master: it forks and execs a new master with
//!    `GUNICORN_PID=<old pid>` in its environment and the listeners
//!    inherited. The new master is found as the child of the old one whose
//!    `/proc/PID/environ` (the environment it was exec'd with) says so.
//! 2. Ready when the new master itself reports, on the control socket,
//!    every one of its target workers booted. gunicorn's new master binds
//!    the same socket path (replacing the old master's file) once it has
//!    forked its workers, so the socket answers for it then; the kernel
//!    says which process listens there (`SO_PEERCRED`), so the answer is
//!    known to be the new master's. A worker is booted once it has sent a
//!    heartbeat, which it does from its request loop, after loading the
//!    app ([`crate::pool`]). That is gunicorn's own notion of a live
//!    worker, where a count of child processes would also count workers
//!    still importing the app, or failing to.
//! 3. `WINCH` to the old master (gunicorn stops its workers only when
//!    daemonized; in the foreground they stop with the master), then
//!    `TERM`.
//! 4. Promoted when the old master is gone and the new one is no longer
//!    its child (gunicorn's own test: its new master renames the pidfile
//!    when its parent changes).
//!
//! Rollback: `HUP` to the old master if its workers were stopped (a reload
//! restores the configured count), then `TERM` to the new master (`KILL`
//! if it does not exit).
//!
//! The pid `show stats` reports is in gunicorn's pid namespace; it is
//! signalled only when it is also the process listening on the control
//! socket as seen from here.

use std::time::{Duration, Instant};

use gunicornd_protocol::{ConfigReply, ControlCommand, ShowTarget, StatsReply};
use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use super::{poll_until, Abort, Rollback, Run, ROLLBACK_TIMEOUT, STARTING_REPLY_TIMEOUT};
use crate::client::Client;
use crate::error::CtlError;
use crate::pool::Pool;
use crate::procfs;
use crate::wait::{timed_out, POLL_INTERVAL};

/// The variable gunicorn's new master is exec'd with: the old master's pid.
const GUNICORN_PID: &str = "GUNICORN_PID";

pub(super) fn upgrade(client: &mut Client, run: &mut Run) -> Result<(), CtlError> {
    let stats: StatsReply = client.call_as(&ControlCommand::Show(ShowTarget::Stats))?;
    let config: ConfigReply = client.call_as(&ControlCommand::Show(ShowTarget::Config))?;
    let old_pid = stats.pid;
    run.old_pid = Some(old_pid);
    check_may_signal(client, old_pid)?;
    refuse_if_upgrading(old_pid)?;
    let workers_before = procfs::children_of(old_pid);
    signal(old_pid, Signal::SIGUSR2)?;
    run.say(format_args!("sent USR2 to gunicorn master {old_pid}"));
    let found = find_new_master(old_pid, &workers_before, run.deadline());
    let (new_pid, late) = match found {
        Search::Found(pid) => (pid, None),
        Search::OldExited => return Err(old_exited(old_pid)),
        Search::NotYet => {
            let e = timed_out(
                run.timeout,
                "gunicorn to start a new master",
                &format!(
                    "no child of {old_pid} runs with {GUNICORN_PID}={old_pid} (see gunicorn's log)"
                ),
            );
            // USR2 was sent: a new master that shows up late is stopped.
            let until = Instant::now() + LATE_NEW_MASTER;
            match find_new_master(old_pid, &workers_before, until) {
                Search::Found(pid) => (pid, Some(e.to_string())),
                _ => return Err(e),
            }
        }
    };
    run.new_pid = Some(new_pid);
    if late.is_none() {
        run.say(format_args!(
            "new master {new_pid} started (old master {old_pid})"
        ));
    }
    let mut takeover = Takeover {
        socket: client.path().to_path_buf(),
        old_pid,
        new_pid,
        target: stats.workers_target,
        // gunicorn ignores WINCH unless daemonized; when its configuration
        // does not say, assume the workers did stop.
        winch_stops_workers: config.0.get("daemon").and_then(Value::as_bool) != Some(false),
        workers_stopped: false,
        run,
    };
    let result = match late {
        Some(reason) => Err(Abort::RollBack(reason)),
        None => takeover.run(),
    };
    match result {
        Ok(()) => Ok(()),
        Err(Abort::Stop(e)) => Err(e),
        Err(Abort::RollBack(reason)) => Err(takeover.roll_back(&reason)),
    }
}

/// Signals go to the pid gunicorn reports, so that pid must be the master
/// as seen from here, and this process must be allowed to signal it.
fn check_may_signal(client: &Client, master: i32) -> Result<(), CtlError> {
    match client.peer_pid() {
        Some(pid) if pid == master => {}
        seen => {
            let seen = seen.map_or("is not visible from here".to_string(), |p| {
                format!("is pid {p} here")
            });
            return Err(CtlError::Failed(format!(
                "cannot upgrade gunicorn: its master reports pid {master}, but the process on \
                 its control socket {seen}: it runs in another pid namespace, where \
                 gunicornctl cannot signal it"
            )));
        }
    }
    match kill(Pid::from_raw(master), None) {
        Ok(()) => Ok(()),
        Err(Errno::EPERM) => {
            let owner =
                procfs::uid_of(master).map_or(String::new(), |u| format!(" (it runs as uid {u})"));
            Err(CtlError::Failed(format!(
                "cannot upgrade gunicorn: not allowed to signal its master {master}{owner}; \
                 run gunicornctl as the same user or as root"
            )))
        }
        Err(e) => Err(CtlError::Failed(format!(
            "cannot signal gunicorn's master {master}: {e}"
        ))),
    }
}

/// gunicorn ignores USR2 while it has a new master, or is one not yet
/// promoted ("USR2 signal ignored"): say so instead of waiting for nothing.
fn refuse_if_upgrading(master: i32) -> Result<(), CtlError> {
    let refused = |message: String| CtlError::Refused {
        command: "upgrade".to_string(),
        message,
    };
    if let Some(child) = procfs::children_of(master)
        .into_iter()
        .find(|&c| is_new_master_of(c, master))
    {
        return Err(refused(format!(
            "upgrade refused: a new master (pid {child}) is already running"
        )));
    }
    let parent = procfs::environ_var(master, GUNICORN_PID).and_then(|p| p.parse::<i32>().ok());
    if parent.is_some() && parent == procfs::parent_of(master) {
        return Err(refused(format!(
            "upgrade refused: this master is a new master not yet promoted (old master {})",
            parent.unwrap_or_default()
        )));
    }
    Ok(())
}

/// Whether `pid` was exec'd as the new master of `old`. Workers do not
/// qualify: they are forks of their master and show its environment, which
/// names the master before it, if any.
fn is_new_master_of(pid: i32, old: i32) -> bool {
    procfs::environ_var(pid, GUNICORN_PID).is_some_and(|v| v == old.to_string())
}

/// What a look for the new master found.
enum Search {
    Found(i32),
    OldExited,
    NotYet,
}

/// How long to keep looking for a new master after the timeout, so that
/// one started just too late is stopped rather than left running.
const LATE_NEW_MASTER: Duration = Duration::from_secs(5);

fn find_new_master(old: i32, workers: &[i32], until: Instant) -> Search {
    let found = poll_until(until, || {
        let child = procfs::children_of(old)
            .into_iter()
            .filter(|c| !workers.contains(c))
            .find(|&c| is_new_master_of(c, old));
        match child {
            Some(pid) => Some(Search::Found(pid)),
            None => (!procfs::is_running(old)).then_some(Search::OldExited),
        }
    });
    found.unwrap_or(Search::NotYet)
}

fn old_exited(old: i32) -> CtlError {
    CtlError::Failed(format!(
        "gunicorn's master {old} exited during the upgrade (see gunicorn's log)"
    ))
}

fn signal(pid: i32, signal: Signal) -> Result<(), CtlError> {
    kill(Pid::from_raw(pid), signal)
        .map_err(|e| CtlError::Failed(format!("cannot send {} to {pid}: {e}", signal.as_str())))
}

struct Takeover<'r, 'o> {
    socket: std::path::PathBuf,
    old_pid: i32,
    new_pid: i32,
    /// The old master's target: how many workers a rollback brings back.
    target: usize,
    winch_stops_workers: bool,
    /// WINCH was sent and stops workers: a rollback must HUP the old master.
    workers_stopped: bool,
    run: &'r mut Run<'o>,
}

impl Takeover<'_, '_> {
    fn run(&mut self) -> Result<(), Abort> {
        let booted = self.wait_ready()?;
        self.run.say(format_args!(
            "new master {} ready ({booted} workers booted)",
            self.new_pid
        ));
        self.workers_stopped = self.winch_stops_workers;
        signal(self.old_pid, Signal::SIGWINCH).map_err(|e| Abort::RollBack(e.to_string()))?;
        if self.winch_stops_workers {
            self.run.say("stopping the old workers (WINCH)");
        } else {
            self.run.say(
                "stopping the old workers with the old master (gunicorn ignores WINCH unless daemonized)",
            );
        }
        if !procfs::is_running(self.new_pid) {
            return Err(Abort::RollBack(format!(
                "new master {} exited (see gunicorn's log)",
                self.new_pid
            )));
        }
        signal(self.old_pid, Signal::SIGTERM).map_err(|e| Abort::RollBack(e.to_string()))?;
        self.run
            .say(format_args!("old master {} exiting", self.old_pid));
        self.wait_promoted()?;
        self.run
            .say(format_args!("new master {} promoted", self.new_pid));
        self.check_socket(self.new_pid);
        Ok(())
    }

    /// Waits until the new master reports all its workers booted; returns
    /// how many.
    fn wait_ready(&mut self) -> Result<usize, Abort> {
        loop {
            if !procfs::is_running(self.new_pid) {
                return Err(Abort::RollBack(format!(
                    "new master {} exited before it was ready (see gunicorn's log)",
                    self.new_pid
                )));
            }
            let missing = match self.new_pool() {
                Ok(pool) => {
                    let (serving, target) = (pool.serving(), pool.target());
                    if target > 0 && serving == target && pool.workers.len() == target {
                        return Ok(serving);
                    }
                    format!("{serving} of {target} workers booted")
                }
                Err(why) => why,
            };
            let what = format!("new master {} to be ready", self.new_pid);
            if let Some(e) = self.run.check_deadline(&what, || missing) {
                return Err(Abort::RollBack(e.to_string()));
            }
            std::thread::sleep(self.run.nap(POLL_INTERVAL));
        }
    }

    /// The new master's view of its workers, once its control socket is the
    /// one at the path.
    fn new_pool(&self) -> Result<Pool, String> {
        let mut client = Client::connect_within(&self.socket, STARTING_REPLY_TIMEOUT)
            .map_err(|e| e.to_string())?;
        if client.peer_pid() != Some(self.new_pid) {
            return Err(format!(
                "its control socket does not answer at {} yet",
                self.socket.display()
            ));
        }
        let pool = Pool::fetch(&mut client).map_err(|e| e.to_string())?;
        // Its workers, not another master's.
        let children = procfs::children_of(self.new_pid);
        if pool.workers.iter().any(|w| !children.contains(&w.pid)) {
            return Err("its workers are still starting".to_string());
        }
        Ok(pool)
    }

    /// gunicorn's masters remove the control socket file as they exit and
    /// bind the path anew around every fork, even when the file is the
    /// other master's by then: after the dance the surviving master may
    /// listen on a socket without a name. Said as a warning, with what
    /// brings it back.
    fn check_socket(&mut self, survivor: i32) {
        let peer = Client::connect_within(&self.socket, STARTING_REPLY_TIMEOUT)
            .ok()
            .and_then(|c| c.peer_pid());
        if peer != Some(survivor) {
            self.run.warning = Some(format!(
                "{} no longer reaches gunicorn's master {survivor}: gunicorn's masters remove \
                 and re-create that file around their forks and as they exit, whichever master \
                 the file is by then; {survivor} creates it again the next time it forks a \
                 worker (e.g. after kill -TTIN {survivor})",
                self.socket.display()
            ));
        }
    }

    fn wait_promoted(&mut self) -> Result<(), Abort> {
        let (old, new) = (self.old_pid, self.new_pid);
        let promoted = poll_until(self.run.deadline(), || {
            if !procfs::is_running(new) {
                return Some(Err(()));
            }
            (!procfs::is_running(old) && procfs::parent_of(new) != Some(old)).then_some(Ok(()))
        });
        match promoted {
            Some(Ok(())) => Ok(()),
            Some(Err(())) => Err(Abort::Stop(CtlError::Failed(format!(
                "new master {new} exited during the takeover while the old master {old} was \
                 exiting: check whether anything serves (see gunicorn's log)"
            )))),
            None => Err(Abort::Stop(timed_out(
                self.run.timeout,
                &format!("new master {new} to take over"),
                &format!("the old master {old} has not exited yet"),
            ))),
        }
    }

    fn roll_back(&mut self, reason: &str) -> CtlError {
        let mut rollback = Rollback::default();
        let until = Instant::now() + ROLLBACK_TIMEOUT;
        let (old, new) = (self.old_pid, self.new_pid);
        if self.workers_stopped {
            self.run.say(format_args!(
                "rolling back: HUP to the old master {old} to bring its workers back"
            ));
            match signal(old, Signal::SIGHUP) {
                Ok(()) => {
                    let target = self.target;
                    let back = poll_until(until, || {
                        let workers = procfs::children_of(old).into_iter().filter(|&c| c != new);
                        (workers.count() >= target).then_some(())
                    });
                    match back {
                        Some(()) => rollback.done.push("the old workers are back".to_string()),
                        None => rollback.problems.push(format!(
                            "the old master {old} has fewer than {target} workers {}s after HUP",
                            ROLLBACK_TIMEOUT.as_secs()
                        )),
                    }
                }
                Err(e) => rollback.problems.push(e.to_string()),
            }
        }
        // Stopping the new master while the old one has no workers would
        // leave nothing serving. Still the old master's child: still the
        // new master (a pid reused since would have another parent).
        if procfs::parent_of(new) != Some(old) {
            // Gone already (gunicorn's old master reaps it).
        } else if !rollback.problems.is_empty() {
            rollback.problems.push(format!(
                "new master {new} left running, as it is what serves"
            ));
        } else {
            self.run.say(format_args!(
                "rolling back: stopping new master {new} (TERM)"
            ));
            let gone = || poll_until(until, || (!procfs::is_running(new)).then_some(()));
            match signal(new, Signal::SIGTERM).map(|()| gone()) {
                Ok(Some(())) => rollback.done.push(format!("new master {new} stopped")),
                Ok(None) => {
                    self.run.say(format_args!(
                        "new master {new} still runs {}s after TERM: KILL",
                        ROLLBACK_TIMEOUT.as_secs()
                    ));
                    match signal(new, Signal::SIGKILL) {
                        Ok(()) => rollback.done.push(format!("new master {new} killed")),
                        Err(e) => rollback.problems.push(e.to_string()),
                    }
                }
                Err(e) => rollback.problems.push(e.to_string()),
            }
        }
        self.check_socket(old);
        rollback.into_error(reason, old)
    }
}
