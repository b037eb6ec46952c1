//! The upgrade of gunicornd, through its control socket.
//!
//! 1. Subscribe to the old master's events, then send `upgrade`: the reply
//!    names the new master and its control socket (`<path>.2` until it is
//!    promoted).
//! 2. Wait for `upgrade_ready` (all the new master's workers booted) on the
//!    old master's stream; `upgrade_failed` means the old master has
//!    already stopped the new one. `show stats` (`upgrade.phase`) is
//!    checked between events, in case the stream is lost.
//! 3. `stop-workers` to the old master, then `shutdown graceful`: it exits
//!    once its workers have finished their requests.
//! 4. The new master is promoted: its control socket moves to `<path>`
//!    (`ping` there answers with its pid, the proof waited for) and its
//!    stream, subscribed to on `<path>.2` as early as it answers, carries
//!    `promoted`.

use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use gunicornd_protocol::{
    ControlCommand, EventKind, PingReply, ReloadReply, ShowTarget, ShutdownMode, ShutdownReply,
    StatsReply, StopWorkersReply, UpgradeInfo, UpgradeMode, UpgradeReply,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{poll_until, Abort, Rollback, Run, ROLLBACK_TIMEOUT, STARTING_REPLY_TIMEOUT};
use crate::client::{Client, EventStream, StreamItem};
use crate::error::CtlError;
use crate::pool::Pool;
use crate::procfs;
use crate::wait::POLL_INTERVAL;

pub(super) fn upgrade(client: &mut Client, run: &mut Run) -> Result<(), CtlError> {
    let path = client.path().to_path_buf();
    // Known even if the upgrade is refused.
    let ping: PingReply = client.call_as(&ControlCommand::Ping)?;
    run.old_pid = Some(ping.pid);
    // Subscribed before the request, so that no event about it is missed.
    let old_events = EventStream::subscribe(&path)?;
    // No mode: the server's upgrade_mode decides (an older master knows no
    // modes at all).
    let reply: UpgradeReply = client.call_as(&ControlCommand::Upgrade(None))?;
    if reply.pid == reply.old_pid {
        in_place_started(&reply, run);
        return wait_in_place(client.path().to_path_buf(), Some(old_events), run);
    }
    run.old_pid = Some(reply.old_pid);
    run.new_pid = Some(reply.pid);
    run.say(format_args!(
        "new master {} started (old master {})",
        reply.pid, reply.old_pid
    ));
    let mut takeover = Takeover {
        client,
        path,
        new_socket: reply.control_socket.map(PathBuf::from),
        old_pid: reply.old_pid,
        new_pid: reply.pid,
        old_events: Some(old_events),
        new_events: None,
        workers_stopped: false,
        run,
    };
    match takeover.run() {
        Ok(()) => Ok(()),
        Err(Abort::Stop(e)) => Err(e),
        Err(Abort::RollBack(reason)) => Err(takeover.roll_back(&reason)),
    }
}

/// `upgrade --in-place`: the master probes the new binary and execs it in
/// its own process; a refusal (a failed probe) carries the reason.
pub(super) fn upgrade_in_place(client: &mut Client, run: &mut Run) -> Result<(), CtlError> {
    // Subscribed before the request: a failed exec is an `upgrade_failed`.
    let events = EventStream::subscribe(client.path()).ok();
    let reply: UpgradeReply =
        client.call_as(&ControlCommand::Upgrade(Some(UpgradeMode::InPlace)))?;
    in_place_started(&reply, run);
    wait_in_place(client.path().to_path_buf(), events, run)
}

/// After an in-place upgrade was accepted: wait until the master, the same
/// pid, runs a new image whose workers have all booted. The connection
/// closes at the exec, so each look is a new one.
fn wait_in_place(
    path: PathBuf,
    mut events: Option<EventStream>,
    run: &mut Run,
) -> Result<(), CtlError> {
    let asked = Instant::now();
    let pid = run.old_pid;
    let until = run.started + run.timeout;
    let mut failed = None;
    let serving = poll_until(until, || {
        // The exec closes the stream; until then it may say the exec failed.
        while let Some(stream) = events.as_mut() {
            match stream.next_within(Some(Duration::from_millis(1))) {
                Ok(Some(StreamItem::Event(e))) => {
                    if let EventKind::UpgradeFailed { reason, .. } = e.kind {
                        failed = Some(reason);
                        return Some(());
                    }
                }
                Ok(Some(StreamItem::Unknown(_))) => {}
                Ok(None) => break,
                Err(_) => events = None,
            }
        }
        let mut client = Client::connect(&path).ok()?;
        let stats: StatsReply = client
            .call_as(&ControlCommand::Show(ShowTarget::Stats))
            .ok()?;
        let new_image = stats
            .binary
            .as_ref()
            .is_some_and(|b| b.execed < asked.elapsed().as_secs_f64());
        let booted = stats.workers_booted.unwrap_or(0) >= stats.workers_target;
        (Some(stats.pid) == pid && new_image && booted).then_some(())
    });
    if let Some(reason) = failed {
        return Err(CtlError::Failed(format!("upgrade failed: {reason}")));
    }
    match serving {
        Some(()) => {
            run.say(format_args!(
                "master {} runs the new binary, its workers booted",
                crate::render::dash(pid)
            ));
            Ok(())
        }
        None => Err(CtlError::Failed(format!(
            "the master did not come back serving from the new binary within {}",
            crate::render::duration(run.timeout.as_secs_f64())
        ))),
    }
}

/// The master took an in-place upgrade on: it keeps its pid.
fn in_place_started(reply: &UpgradeReply, run: &mut Run) {
    run.old_pid = Some(reply.old_pid);
    run.new_pid = Some(reply.pid);
    run.say(format_args!("master {} upgrading in place", reply.pid));
}

struct Takeover<'c, 'r, 'o> {
    /// The request connection to the old master.
    client: &'c mut Client,
    /// The control socket path: the old master's, the new one's once it is
    /// promoted.
    path: PathBuf,
    /// The new master's control socket until it is promoted.
    new_socket: Option<PathBuf>,
    old_pid: i32,
    new_pid: i32,
    old_events: Option<EventStream>,
    new_events: Option<EventStream>,
    /// `stop-workers` was (or may have been) carried out: a rollback must
    /// reload the old master to bring its workers back.
    workers_stopped: bool,
    run: &'r mut Run<'o>,
}

impl Takeover<'_, '_, '_> {
    fn run(&mut self) -> Result<(), Abort> {
        self.wait_ready()?;
        self.run
            .say(format_args!("new master {} ready", self.new_pid));
        self.stop_old_workers()?;
        self.check_still_ready()?;
        self.stop_old_master()?;
        self.wait_promoted()?;
        self.run
            .say(format_args!("new master {} promoted", self.new_pid));
        Ok(())
    }

    fn wait_ready(&mut self) -> Result<(), Abort> {
        let mut phase = "starting".to_string();
        loop {
            let what = format!("new master {} to be ready", self.new_pid);
            if let Some(e) = self.run.check_deadline(&what, || format!("it is {phase}")) {
                return Err(Abort::RollBack(e.to_string()));
            }
            self.subscribe_new();
            if let Some(event) = self.next_old_event(self.run.nap(POLL_INTERVAL)) {
                match event {
                    EventKind::UpgradeReady { pid } if pid == self.new_pid => return Ok(()),
                    EventKind::UpgradeFailed { reason, .. } => {
                        return Err(Abort::RollBack(format!("upgrade failed: {reason}")))
                    }
                    EventKind::ShuttingDown { mode } => return Err(self.old_shutting_down(mode)),
                    _ => {}
                }
                continue;
            }
            match self.upgrade_state()? {
                Some(UpgradeInfo { phase: p, pid }) if pid == self.new_pid => {
                    if p == "ready" {
                        return Ok(());
                    }
                    phase = p;
                }
                Some(other) => {
                    return Err(Abort::Stop(CtlError::Failed(format!(
                        "the old master {} reports another upgrade (new master {}, {})",
                        self.old_pid, other.pid, other.phase
                    ))))
                }
                None => return Err(Abort::RollBack(self.why_upgrade_ended())),
            }
        }
    }

    /// The old master no longer reports an upgrade: its `upgrade_failed`
    /// event, sent before the `show stats` reply that said so, is on the
    /// stream already unless the stream was lost.
    fn why_upgrade_ended(&mut self) -> String {
        let give_up = Instant::now() + Duration::from_secs(1);
        while Instant::now() < give_up && self.old_events.is_some() {
            if let Some(EventKind::UpgradeFailed { reason, .. }) =
                self.next_old_event(Duration::from_millis(100))
            {
                return format!("upgrade failed: {reason}");
            }
        }
        format!(
            "upgrade failed: new master {} is gone (the old master no longer reports an upgrade)",
            self.new_pid
        )
    }

    fn old_shutting_down(&self, mode: ShutdownMode) -> Abort {
        Abort::Stop(CtlError::Failed(format!(
            "the old master {} began a {mode} shutdown that this upgrade did not ask for; \
             new master {} may take over",
            self.old_pid, self.new_pid
        )))
    }

    fn stop_old_workers(&mut self) -> Result<(), Abort> {
        // A lost reply may hide a stop that happened: assume it did, the
        // rollback's reload is harmless otherwise.
        self.workers_stopped = true;
        match self
            .client
            .call_as::<StopWorkersReply>(&ControlCommand::StopWorkers)
        {
            Ok(reply) => {
                self.run
                    .say(format_args!("stopping the old workers ({})", reply.workers));
                Ok(())
            }
            Err(e) => {
                if matches!(e, CtlError::Refused { .. }) {
                    self.workers_stopped = false;
                }
                Err(Abort::RollBack(format!("cannot stop the old workers: {e}")))
            }
        }
    }

    /// The last look before the point of no return: the new master must
    /// still be there and ready.
    fn check_still_ready(&mut self) -> Result<(), Abort> {
        while let Some(event) = self.next_old_event(Duration::from_millis(1)) {
            match event {
                EventKind::UpgradeFailed { reason, .. } => {
                    return Err(Abort::RollBack(format!("upgrade failed: {reason}")))
                }
                EventKind::ShuttingDown { mode } => return Err(self.old_shutting_down(mode)),
                _ => {}
            }
        }
        match self.upgrade_state()? {
            Some(UpgradeInfo { phase, pid }) if pid == self.new_pid && phase == "ready" => Ok(()),
            _ => Err(Abort::RollBack(self.why_upgrade_ended())),
        }
    }

    fn stop_old_master(&mut self) -> Result<(), Abort> {
        let command = ControlCommand::Shutdown(ShutdownMode::Graceful);
        match self.client.call_as::<ShutdownReply>(&command) {
            Ok(_) => {
                self.run
                    .say(format_args!("old master {} exiting", self.old_pid));
                Ok(())
            }
            Err(e @ CtlError::Refused { .. }) => Err(Abort::RollBack(format!(
                "the old master {} refused to exit: {e}",
                self.old_pid
            ))),
            // It may have been carried out: stopping the new master now
            // could leave nothing serving.
            Err(e) => Err(Abort::Stop(CtlError::Failed(format!(
                "asking the old master {} to exit: {e}; check which master serves",
                self.old_pid
            )))),
        }
    }

    fn wait_promoted(&mut self) -> Result<(), Abort> {
        let mut promoted_event = false;
        loop {
            let what = format!("new master {} to take over", self.new_pid);
            if let Some(e) = self.run.check_deadline(&what, || {
                if promoted_event {
                    format!(
                        "it says it was promoted, but {} does not answer with its pid",
                        self.path.display()
                    )
                } else {
                    format!("the old master {} has not exited yet", self.old_pid)
                }
            }) {
                return Err(Abort::Stop(e));
            }
            if ping(&self.path) == Some(self.new_pid) {
                return Ok(());
            }
            if !promoted_event {
                self.subscribe_new();
            }
            let nap = self.run.nap(POLL_INTERVAL);
            match &mut self.new_events {
                Some(stream) => match stream.next_within(Some(nap)) {
                    Ok(Some(StreamItem::Event(event))) => {
                        if let EventKind::Promoted { pid, .. } = event.kind {
                            promoted_event |= pid == self.new_pid;
                        }
                    }
                    Ok(_) => {}
                    // Going away, or only moving its socket: it must still
                    // answer on one of the two paths.
                    Err(_) => {
                        self.new_events = None;
                        let until = self.run.deadline().min(Instant::now() + STREAM_END_GRACE);
                        let sockets = [Some(&self.path), self.new_socket.as_ref()];
                        let answers = poll_until(until, || {
                            let mut paths = sockets.iter().flatten();
                            paths.any(|p| ping(p) == Some(self.new_pid)).then_some(())
                        });
                        if answers.is_none() {
                            return Err(Abort::Stop(CtlError::Failed(format!(
                                "new master {} went away before it took over; the old master \
                                 {} is exiting: check which master serves",
                                self.new_pid, self.old_pid
                            ))));
                        }
                    }
                },
                // The old master's stream ends as it exits; until then it
                // is as good a clock as any.
                None => {
                    self.next_old_event(nap);
                }
            }
        }
    }

    /// Subscribes to the new master's events once its socket answers.
    fn subscribe_new(&mut self) {
        if self.new_events.is_some() {
            return;
        }
        if let Some(socket) = &self.new_socket {
            self.new_events = EventStream::subscribe_within(socket, STARTING_REPLY_TIMEOUT).ok();
        }
    }

    /// The next event from the old master within `wait`; `None` on a
    /// timeout or once the stream is gone (then it waits out `wait`, so
    /// that callers' loops keep their pace).
    fn next_old_event(&mut self, wait: Duration) -> Option<EventKind> {
        let Some(stream) = &mut self.old_events else {
            thread::sleep(wait);
            return None;
        };
        match stream.next_within(Some(wait)) {
            Ok(Some(StreamItem::Event(event))) => Some(event.kind),
            Ok(_) => None,
            Err(_) => {
                self.old_events = None;
                None
            }
        }
    }

    fn upgrade_state(&mut self) -> Result<Option<UpgradeInfo>, Abort> {
        let stats: StatsReply = self
            .client
            .call_as(&ControlCommand::Show(ShowTarget::Stats))
            .map_err(|e| {
                Abort::RollBack(format!(
                    "lost touch with the old master {}: {e}",
                    self.old_pid
                ))
            })?;
        Ok(stats.upgrade)
    }

    /// Back to the old master alone: its workers back first (capacity
    /// before anything else), then the new master stopped.
    fn roll_back(&mut self, reason: &str) -> CtlError {
        let mut rollback = Rollback::default();
        let until = Instant::now() + ROLLBACK_TIMEOUT;
        // A new connection: the old one may be what failed.
        let mut old = match Client::connect(&self.path) {
            Ok(c) => c,
            Err(e) => {
                rollback
                    .problems
                    .push(format!("cannot reach the old master: {e}"));
                return rollback.into_error(reason, self.old_pid);
            }
        };
        if self.workers_stopped {
            self.run.say(format_args!(
                "rolling back: reloading the old master {} to bring its workers back",
                self.old_pid
            ));
            match old.call_as::<ReloadReply>(&ControlCommand::Reload) {
                Ok(_) => match poll_until(until, || {
                    Pool::fetch(&mut old)
                        .ok()
                        .filter(|p| p.target() > 0 && p.serving() >= p.target())
                }) {
                    Some(_) => rollback.done.push("the old workers are back".to_string()),
                    None => rollback.problems.push(format!(
                        "the old workers did not all boot within {}s",
                        ROLLBACK_TIMEOUT.as_secs()
                    )),
                },
                Err(e) => rollback
                    .problems
                    .push(format!("cannot bring the old workers back: {e}")),
            }
        }
        let running = |c: &mut Client| {
            c.call_as::<StatsReply>(&ControlCommand::Show(ShowTarget::Stats))
                .map(|s| s.upgrade.is_some_and(|u| u.pid == self.new_pid))
        };
        match running(&mut old) {
            // The old master stopped it already, or it exited.
            Ok(false) => {}
            // Stopping it while the old master has no workers would leave
            // nothing serving.
            Ok(true) if !rollback.problems.is_empty() => rollback.problems.push(format!(
                "new master {} left running, as it is what serves",
                self.new_pid
            )),
            Ok(true) => {
                self.run.say(format_args!(
                    "rolling back: stopping new master {}",
                    self.new_pid
                ));
                match self.stop_new_master(&old) {
                    Ok(()) => match poll_until(until, || running(&mut old).ok().filter(|r| !r)) {
                        Some(_) => rollback
                            .done
                            .push(format!("new master {} stopped", self.new_pid)),
                        None => rollback.problems.push(format!(
                            "new master {} still runs {}s after it was asked to stop",
                            self.new_pid,
                            ROLLBACK_TIMEOUT.as_secs()
                        )),
                    },
                    Err(e) => rollback.problems.push(e),
                }
            }
            Err(e) => rollback.problems.push(format!(
                "cannot tell whether new master {} still runs: {e}",
                self.new_pid
            )),
        }
        rollback.into_error(reason, self.old_pid)
    }

    /// `shutdown` on the new master's socket; if that does not answer (it
    /// may hang before binding it), SIGTERM, when the pid is certainly the
    /// new master: the old master's pid as seen here is the one it reports
    /// (same pid namespace), and the new master is its child.
    fn stop_new_master(&self, old: &Client) -> Result<(), String> {
        let command = ControlCommand::Shutdown(ShutdownMode::Graceful);
        let asked = match &self.new_socket {
            Some(socket) => Client::connect(socket)
                .and_then(|mut c| c.call_as::<ShutdownReply>(&command))
                .map(drop)
                .map_err(|e| e.to_string()),
            None => Err("it has no control socket".to_string()),
        };
        let Err(why) = asked else { return Ok(()) };
        let same_namespace = old.peer_pid() == Some(self.old_pid);
        if same_namespace && procfs::parent_of(self.new_pid) == Some(self.old_pid) {
            return kill(Pid::from_raw(self.new_pid), Signal::SIGTERM).map_err(|e| {
                format!(
                    "cannot stop new master {}: {why}; SIGTERM: {e}",
                    self.new_pid
                )
            });
        }
        Err(format!(
            "cannot stop new master {}: {why} (the old master stops it after its upgrade timeout)",
            self.new_pid
        ))
    }
}

/// How long a new master whose event stream ended may take to answer
/// again before it is taken for gone.
const STREAM_END_GRACE: Duration = Duration::from_secs(5);

/// `ping` on a fresh connection: the pid of the master that answers there.
fn ping(path: &Path) -> Option<i32> {
    let reply: PingReply = Client::connect_within(path, STARTING_REPLY_TIMEOUT)
        .ok()?
        .call_as(&ControlCommand::Ping)
        .ok()?;
    Some(reply.pid)
}
