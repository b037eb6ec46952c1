//! Control-socket commands, executed by the same handlers as the signals
//! (`gunicornctl reload` and `kill -HUP` run `Arbiter::handle(Reload)`),
//! plus the event stream and the periodic status report.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use mio::Token;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::{Arbiter, Command, Scale, State, Worker};
use crate::control::protocol::{
    ConfigReply, ControlCommand, DirtyReply, Event, EventKind, EventsReply, HelpReply,
    ListenerInfo, ListenersReply, PingReply, ReloadReply, Response, RetireReason, ScaleReply,
    ShowAllReply, ShowTarget, ShutdownMode, ShutdownReply, StatsReply, StatusReply,
    StopWorkersReply, VersionReply, WorkerAddReply, WorkerInfo, WorkerKillReply, WorkerRemoveReply,
    WorkersReply,
};
use crate::control::server::Incoming;
use crate::listeners::ListenAddr;

impl Arbiter {
    pub(super) fn accept_control_clients(&mut self) {
        if let Some(ctl) = self.control.as_mut() {
            ctl.accept(self.poll.registry());
        }
    }

    pub(super) fn control_ready(&mut self, token: Token, readable: bool, writable: bool) {
        let incoming = match self.control.as_mut() {
            Some(ctl) if ctl.owns(token) => {
                ctl.ready(self.poll.registry(), token, readable, writable)
            }
            _ => return,
        };
        self.run_control_requests(incoming);
    }

    /// Execute requests and send each reply, skipping those whose client
    /// has gone meanwhile (dropped for not reading its replies).
    fn run_control_requests(&mut self, incoming: Vec<Incoming>) {
        for inc in incoming {
            if !self.control.as_ref().is_some_and(|ctl| ctl.owns(inc.token)) {
                continue;
            }
            let (response, subscribe) = self.execute(&inc);
            if let Some(ctl) = self.control.as_mut() {
                ctl.reply(self.poll.registry(), inc.token, &response);
                if subscribe {
                    ctl.subscribe(inc.token, inc.request.id);
                }
            }
        }
    }

    /// Serve clients with input left over from earlier passes, and close
    /// idle ones.
    pub(super) fn control_housekeeping(&mut self, now: Instant) {
        let backlog = match self.control.as_mut() {
            Some(ctl) => {
                ctl.expire_idle(self.poll.registry(), now);
                ctl.serve_backlog(self.poll.registry())
            }
            None => return,
        };
        self.run_control_requests(backlog);
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

    /// Readiness, STATUS= and watchdog, after every pass of the loop.
    pub(super) fn report_progress(&mut self, now: Instant) {
        let gen = self.generation;
        let booted = self.serving_capacity();
        if self.state == State::Running
            && !self.report.is_ready()
            && booted >= self.target
            && self.target > 0
        {
            tracing::info!("Ready: {booted} workers booted");
            self.report.serving();
        }
        let text = match self.state {
            State::Running => format!("{booted}/{} workers booted (generation {gen})", self.target),
            State::Stopping { .. } => format!("Stopping: {} workers left", self.workers.len()),
        };
        self.report.status(text);
        self.report.tick(now);
    }

    /// Run one control command; the flag says "subscribe this connection".
    fn execute(&mut self, inc: &Incoming) -> (Response, bool) {
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
            ControlCommand::WorkerAdd(n) => {
                let previous = self.target;
                self.handle(Command::Scale(Scale::By(i64::from(n))));
                Response::ok(
                    id,
                    &WorkerAddReply {
                        added: self.target.saturating_sub(previous),
                        previous,
                        total: self.target,
                    },
                )
            }
            ControlCommand::WorkerRemove(n) => {
                let previous = self.target;
                self.handle(Command::Scale(Scale::By(-i64::from(n))));
                Response::ok(
                    id,
                    &WorkerRemoveReply {
                        removed: previous.saturating_sub(self.target),
                        previous,
                        total: self.target,
                    },
                )
            }
            ControlCommand::Scale(target) => {
                let previous = self.target;
                self.handle(Command::Scale(Scale::To(target.apply(previous))));
                Response::ok(
                    id,
                    &ScaleReply {
                        previous,
                        total: self.target,
                    },
                )
            }
            ControlCommand::WorkerKill(pid) => self.kill_worker(id, pid),
            ControlCommand::Reload => match self.reload() {
                Ok(()) => Response::ok(id, &ReloadReply::reloading(self.generation)),
                Err(e) => Response::error(id, format!("reload failed: {e}")),
            },
            ControlCommand::Reopen => {
                self.handle(Command::ReopenLogs);
                Response::ok(id, &StatusReply::reopening())
            }
            ControlCommand::Shutdown(mode) => {
                self.handle(Command::Stop {
                    graceful: mode == ShutdownMode::Graceful,
                });
                Response::ok(id, &ShutdownReply::new(mode))
            }
            ControlCommand::StopWorkers => {
                if !self.settings.daemon {
                    Response::error(
                        id,
                        "stop-workers (SIGWINCH) only acts in daemon mode (-D), like gunicorn: \
                         in the foreground it is ignored",
                    )
                } else {
                    let workers = self.workers.count(Worker::running);
                    self.handle(Command::StopWorkers);
                    Response::ok(id, &StopWorkersReply::new(workers))
                }
            }
            ControlCommand::Upgrade => Response::error(
                id,
                "binary upgrade (USR2) is not supported by this version of gunicornd yet; \
                 use reload to pick up a new configuration",
            ),
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

    fn kill_worker(&mut self, id: u64, pid: i32) -> Response {
        let target = Pid::from_raw(pid);
        let running = self.workers.get(target).is_some_and(Worker::running);
        if !running {
            let why = format!("no running worker with pid {pid}");
            return Response::ok(
                id,
                &WorkerKillReply {
                    success: false,
                    killed: None,
                    error: Some(why),
                },
            );
        }
        self.retire(target, RetireReason::Killed);
        Response::ok(
            id,
            &WorkerKillReply {
                success: true,
                killed: Some(pid),
                error: None,
            },
        )
    }

    /// Gracefully stop one worker, telling event subscribers why.
    pub(super) fn retire(&mut self, pid: Pid, reason: RetireReason) {
        let Some(w) = self.workers.get(pid) else {
            return;
        };
        if !w.running() {
            return;
        }
        let generation = w.generation;
        self.send_stop(pid, Signal::SIGTERM);
        self.emit(EventKind::WorkerRetired {
            pid: pid.as_raw(),
            generation,
            reason,
        });
    }

    fn worker_infos(&self) -> Vec<WorkerInfo> {
        let mut infos: Vec<WorkerInfo> = self
            .workers
            .iter()
            .map(|w| {
                let slot = self.scoreboard.slot(w.slot);
                WorkerInfo {
                    pid: w.pid.as_raw(),
                    age: w.age,
                    booted: w.booted(),
                    aborted: w.aborted_at.is_some(),
                    last_heartbeat: Some(slot.silence().as_secs_f64()),
                    kind: None,
                    generation: Some(w.generation),
                    requests: Some(slot.requests()),
                    rss_kb: rss_kb(w.pid),
                    uptime: Some(w.spawned_at.elapsed().as_secs_f64()),
                    retiring: Some(!w.live()),
                }
            })
            .collect();
        infos.sort_by_key(|w| w.age);
        infos
    }

    fn stats_reply(&self) -> StatsReply {
        let gen = self.generation;
        StatsReply {
            uptime: Some(self.stats.started_at.elapsed().as_secs_f64()),
            pid: self.pid.as_raw(),
            workers_current: self.workers.len(),
            workers_target: self.target,
            workers_spawned: self.stats.spawned,
            workers_killed: self.stats.killed,
            reloads: self.stats.reloads,
            dirty_arbiter_pid: None,
            workers_booted: Some(self.serving_capacity()),
            generation: Some(gen),
        }
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
                }
            })
            .collect()
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
