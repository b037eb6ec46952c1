//! The control socket's side of the master: frames become [`Command`]s for
//! [`Arbiter::command`] (the handler signals use too), outcomes become
//! replies. Read-only requests (`show ...`, `ping`, `version`, `help`) are
//! answered from the state without changing it.

use std::time::Instant;

use mio::Token;
use nix::unistd::Pid;

use super::{Arbiter, Command, Outcome};
use crate::control::protocol::{
    BinaryInfo, ConfigReply, ControlCommand, DirtyReply, EventsReply, HelpReply, ListenerInfo,
    ListenersReply, PingReply, ReloadReply, Response, ScaleReply, ScaleTarget, ShowAllReply,
    ShowTarget, ShutdownMode, ShutdownReply, StatsReply, StatusReply, StopWorkersReply,
    UpgradeInfo, UpgradeReply, VersionReply, WorkerAddReply, WorkerInfo, WorkerKillReply,
    WorkerRemoveReply, WorkersReply,
};
use crate::control::server::Incoming;
use crate::listeners::ListenAddr;

impl Arbiter {
    pub(super) fn accept_control_clients(&mut self) {
        if let Some(ctl) = self.control.as_mut() {
            ctl.accept(self.poll.registry());
        }
    }

    /// Requests that arrived on a client's connection.
    pub(super) fn control_ready(
        &mut self,
        token: Token,
        readable: bool,
        writable: bool,
    ) -> Vec<Incoming> {
        match self.control.as_mut() {
            Some(ctl) if ctl.owns(token) => {
                ctl.ready(self.poll.registry(), token, readable, writable)
            }
            _ => Vec::new(),
        }
    }

    /// Close clients that are idle or too slow; accept the connections an
    /// earlier pass left waiting; return requests left over from earlier
    /// passes.
    pub(super) fn control_housekeeping(&mut self, now: Instant) -> Vec<Incoming> {
        match self.control.as_mut() {
            Some(ctl) => {
                ctl.expire(self.poll.registry(), now);
                ctl.serve_backlog(self.poll.registry())
            }
            None => Vec::new(),
        }
    }

    /// Answer one request, unless its client has gone meanwhile (dropped
    /// for not reading its replies).
    pub(super) fn on_control_request(&mut self, inc: Incoming) {
        if !self.control.as_ref().is_some_and(|ctl| ctl.owns(inc.token)) {
            return;
        }
        let (response, subscribe) = self.answer(&inc);
        if let Some(ctl) = self.control.as_mut() {
            ctl.reply(self.poll.registry(), inc.token, &response);
            if subscribe {
                ctl.subscribe(inc.token, inc.request.id);
            }
        }
    }

    /// The reply to one request; the flag says "subscribe this connection".
    fn answer(&mut self, inc: &Incoming) -> (Response, bool) {
        let id = inc.request.id;
        let cmd = match ControlCommand::parse(&inc.request) {
            Ok(cmd) => cmd,
            Err(e) => return (Response::error(id, e), false),
        };
        if !cmd.is_read_only() {
            tracing::info!(
                "Control command '{cmd}' from pid {} uid {}",
                inc.peer.pid,
                inc.peer.uid
            );
        }
        let reply = match cmd {
            ControlCommand::Show(target) => self.show(id, target),
            ControlCommand::Help => Response::ok(id, &HelpReply::gunicornd()),
            ControlCommand::Ping => Response::ok(
                id,
                &PingReply {
                    pong: true,
                    pid: self.pid.as_raw(),
                },
            ),
            ControlCommand::Version => Response::ok(id, &VersionReply::current()),
            ControlCommand::Events => {
                return (Response::ok(id, &EventsReply { subscribed: true }), true)
            }
            ControlCommand::WorkerAdd(n) => {
                match self.command(Command::Scale(ScaleTarget::Up(n))) {
                    Outcome::Scaled { previous, total } => Response::ok(
                        id,
                        &WorkerAddReply {
                            added: total.saturating_sub(previous),
                            previous,
                            total,
                        },
                    ),
                    other => refusal(id, other),
                }
            }
            ControlCommand::WorkerRemove(n) => {
                match self.command(Command::Scale(ScaleTarget::Down(n))) {
                    Outcome::Scaled { previous, total } => Response::ok(
                        id,
                        &WorkerRemoveReply {
                            removed: previous.saturating_sub(total),
                            previous,
                            total,
                        },
                    ),
                    other => refusal(id, other),
                }
            }
            ControlCommand::Scale(target) => match self.command(Command::Scale(target)) {
                Outcome::Scaled { previous, total } => {
                    Response::ok(id, &ScaleReply { previous, total })
                }
                other => refusal(id, other),
            },
            ControlCommand::WorkerKill(pid) => {
                match self.command(Command::KillWorker(Pid::from_raw(pid))) {
                    Outcome::Retired { pid } => Response::ok(
                        id,
                        &WorkerKillReply {
                            success: true,
                            killed: Some(pid.as_raw()),
                            error: None,
                        },
                    ),
                    // gunicorn answers "ok" with success false.
                    Outcome::Refused(why) => Response::ok(
                        id,
                        &WorkerKillReply {
                            success: false,
                            killed: None,
                            error: Some(why),
                        },
                    ),
                    other => refusal(id, other),
                }
            }
            ControlCommand::Reload => match self.command(Command::Reload) {
                Outcome::Reloading { generation } => {
                    Response::ok(id, &ReloadReply::reloading(generation))
                }
                Outcome::Refused(e) => Response::error(id, format!("reload failed: {e}")),
                other => refusal(id, other),
            },
            ControlCommand::Reopen => match self.command(Command::ReopenLogs) {
                Outcome::Done => Response::ok(id, &StatusReply::reopening()),
                other => refusal(id, other),
            },
            ControlCommand::Shutdown(mode) => {
                let graceful = mode == ShutdownMode::Graceful;
                match self.command(Command::Stop { graceful }) {
                    Outcome::Done => Response::ok(id, &ShutdownReply::new(mode)),
                    other => refusal(id, other),
                }
            }
            ControlCommand::StopWorkers => match self.command(Command::StopWorkers) {
                Outcome::StoppingWorkers { count } => {
                    Response::ok(id, &StopWorkersReply::new(count))
                }
                other => refusal(id, other),
            },
            ControlCommand::Upgrade(mode) => match self.command(Command::Upgrade(mode)) {
                Outcome::Upgrading { pid } => Response::ok(
                    id,
                    &UpgradeReply {
                        status: "started".into(),
                        pid: pid.as_raw(),
                        old_pid: self.pid.as_raw(),
                        control_socket: self
                            .control_path
                            .as_deref()
                            .map(|p| super::upgrade::second(p).display().to_string()),
                    },
                ),
                Outcome::Refused(why) if !why.starts_with("upgrade failed") => {
                    Response::error(id, format!("upgrade refused: {why}"))
                }
                other => refusal(id, other),
            },
        };
        (reply, false)
    }

    fn show(&self, id: u64, target: ShowTarget) -> Response {
        match target {
            ShowTarget::Workers => Response::ok(id, &WorkersReply::new(self.worker_infos())),
            ShowTarget::Stats => Response::ok(id, &self.stats_reply()),
            ShowTarget::Config => {
                let map = match serde_json::to_value(&self.settings) {
                    Ok(serde_json::Value::Object(m)) => m.into_iter().collect(),
                    _ => Default::default(),
                };
                Response::ok(id, &ConfigReply(map))
            }
            ShowTarget::Listeners => Response::ok(id, &ListenersReply::new(self.listener_infos())),
            ShowTarget::All => Response::ok(
                id,
                &ShowAllReply::new(self.pid.as_raw(), self.worker_infos()),
            ),
            ShowTarget::Dirty => Response::ok(id, &DirtyReply::disabled()),
        }
    }

    fn worker_infos(&self) -> Vec<WorkerInfo> {
        let mut infos: Vec<WorkerInfo> = self
            .pool
            .workers
            .iter()
            .map(|w| {
                let slot = self.scoreboard.slot(w.slot);
                // A command worker's heartbeat is its last WATCHDOG=1; the
                // program counts no requests for us.
                let (last_heartbeat, requests, status) = match &w.notify {
                    Some(n) => (
                        n.watchdog_at.map(|t| t.elapsed().as_secs_f64()),
                        None,
                        n.status.clone(),
                    ),
                    None => (
                        Some(slot.silence().as_secs_f64()),
                        Some(slot.requests()),
                        None,
                    ),
                };
                // Connections held and requests in the app, as the worker
                // last published them (forked workers only).
                let (connections, in_flight) = match &w.notify {
                    Some(_) => (None, None),
                    None => {
                        let (held, busy) = slot.connections();
                        (Some(u64::from(held)), Some(u64::from(busy)))
                    }
                };
                WorkerInfo {
                    pid: w.pid.as_raw(),
                    age: w.age,
                    booted: w.booted(),
                    aborted: w.aborted_at.is_some(),
                    last_heartbeat,
                    kind: None,
                    generation: Some(w.generation),
                    requests,
                    connections,
                    in_flight,
                    status,
                    rss_kb: rss_kb(w.pid),
                    uptime: Some(w.spawned_at.elapsed().as_secs_f64()),
                    retiring: Some(!w.live()),
                }
            })
            .collect();
        infos.sort_by_key(|w| w.age);
        infos
    }

    /// Where an upgrade stands, seen from this master.
    fn upgrade_info(&self) -> Option<UpgradeInfo> {
        if let Some(child) = self.pool.child_master {
            let phase = if child.ready { "ready" } else { "starting" };
            return Some(UpgradeInfo {
                phase: phase.into(),
                pid: child.pid.as_raw(),
            });
        }
        self.pool.parent_master.map(|old| UpgradeInfo {
            phase: "waiting".into(),
            pid: old.as_raw(),
        })
    }

    fn stats_reply(&self) -> StatsReply {
        let counters = self.pool.counters;
        StatsReply {
            uptime: Some(self.started_at.elapsed().as_secs_f64()),
            pid: self.pid.as_raw(),
            workers_current: self.pool.workers.len(),
            workers_target: self.pool.target,
            workers_spawned: counters.spawned,
            workers_killed: counters.killed,
            reloads: counters.reloads,
            dirty_arbiter_pid: None,
            workers_booted: Some(self.pool.serving_capacity()),
            generation: Some(self.pool.generation),
            upgrade: self.upgrade_info(),
            binary: self.binary_info(),
        }
    }

    /// The executable this image runs; exec'd when this image started.
    fn binary_info(&self) -> Option<BinaryInfo> {
        use std::os::unix::fs::MetadataExt;
        let path = std::fs::read_link("/proc/self/exe").ok()?;
        // Follows to the running file even once its path names another.
        let meta = std::fs::metadata("/proc/self/exe").ok()?;
        Some(BinaryInfo {
            path: path.display().to_string(),
            inode: meta.ino(),
            mtime: meta.mtime(),
            execed: self.started_at.elapsed().as_secs_f64(),
        })
    }

    fn listener_infos(&self) -> Vec<ListenerInfo> {
        self.listeners
            .iter()
            .map(|l| {
                let (address, kind) = match l.addr() {
                    ListenAddr::Tcp(a) if a.is_ipv4() => (a.to_string(), "tcp"),
                    ListenAddr::Tcp(a) => (a.to_string(), "tcp6"),
                    ListenAddr::Unix(p) => (format!("unix:{}", p.display()), "unix"),
                };
                ListenerInfo {
                    address,
                    fd: l.raw_fd(),
                    kind: kind.to_string(),
                    tls: self.settings.tls.for_listener(l.addr()).is_some(),
                }
            })
            .collect()
    }
}

/// The reply for an outcome the request does not expect: an error saying
/// why nothing was done.
fn refusal(id: u64, outcome: Outcome) -> Response {
    match outcome {
        Outcome::Refused(why) => Response::error(id, why),
        other => Response::error(id, format!("unexpected outcome: {other:?}")),
    }
}

/// Resident set size from `/proc/PID/statm` (pages → KiB).
fn rss_kb(pid: Pid) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * page.max(0) as u64 / 1024)
}
