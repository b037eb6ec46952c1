//! gunicornctl's gunicornd-only paths (`scale`, events, failing fast on a
//! failed reload, timeouts, `upgrade`) against a scripted server built from
//! the shared protocol types. The real server is tested with the daemon;
//! this checks the client's side of the contract.
//!
//! For `upgrade` the fake plays both masters: the old one on `d.ctl`, the
//! new one on `d.ctl.2`, whose socket file is renamed to `d.ctl` when the
//! old master "exits" (a bound socket keeps listening under its new name).

use std::fs;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use gunicornd_protocol::{
    encode_frame, read_frame, write_frame, ControlCommand, Event, EventKind, EventsReply,
    ListenersReply, PingReply, ReloadReply, Request, Response, ScaleReply, ShowTarget,
    ShutdownReply, StatsReply, StopWorkersReply, UpgradeInfo, UpgradeReply, VersionReply,
    WorkerInfo, WorkersReply,
};
use gunicornd_test_support::ctl_command;
use serde_json::{json, Value};

const OLD_PID: i32 = 1;
const NEW_PID: i32 = 500;

/// How the fake's `upgrade` goes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
enum UpgradeScript {
    /// An error reply, as from a server without upgrades.
    #[default]
    Unsupported,
    /// An error reply with this reason.
    Refused(&'static str),
    /// The new master is ready at once.
    Ready,
    /// `upgrade_failed` with this reason at once: the new master is gone.
    Fails(&'static str),
    /// The new master never becomes ready.
    Never,
    /// Ready, but the new master dies as the old one exits.
    DiesInTakeover,
}

/// Which master a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    Old,
    New,
}

#[derive(Default)]
struct NewMaster {
    subscribers: Vec<UnixStream>,
    promoted: bool,
    gone: bool,
}

#[derive(Default)]
struct State {
    /// The old master's control socket; the new one's is this plus `.2`.
    sock: PathBuf,
    /// The worker count a reload restores.
    configured: usize,
    upgrade: UpgradeScript,
    /// Old-master commands (by name) answered with an error.
    refuse: Vec<&'static str>,
    new_master: Option<NewMaster>,
    /// The new master's listener to serve, bound by `upgrade`.
    bound_new: Option<UnixListener>,
    old_gone: bool,
    target: usize,
    generation: u64,
    next_pid: i32,
    workers: Vec<WorkerInfo>,
    /// New workers boot at once (else they stay booting forever).
    boot_new: bool,
    reload_fails: bool,
    /// Frames sent to an `events` subscriber, after which it is closed.
    event_script: Option<Vec<serde_json::Value>>,
    subscribers: Vec<UnixStream>,
    received: Vec<String>,
}

impl State {
    fn spawn(&mut self, booted: bool) {
        self.next_pid += 1;
        self.workers.push(WorkerInfo {
            pid: self.next_pid,
            age: self.next_pid as u64,
            booted,
            aborted: false,
            last_heartbeat: Some(0.1),
            kind: None,
            generation: Some(self.generation),
            requests: Some(0),
            connections: None,
            in_flight: None,
            rss_kb: Some(1024),
            uptime: Some(1.0),
            retiring: Some(false),
            status: None,
        });
    }

    fn broadcast(&mut self, kind: EventKind) {
        let frame = Response::event(
            0,
            Event {
                time: 1_767_225_600.0,
                kind,
            },
        );
        self.subscribers
            .retain_mut(|s| write_frame(s, &frame).is_ok());
    }

    fn new_sock(&self) -> PathBuf {
        let mut path = self.sock.clone().into_os_string();
        path.push(".2");
        PathBuf::from(path)
    }

    fn is_gone(&self, role: Role) -> bool {
        match role {
            Role::Old => self.old_gone,
            Role::New => self.new_master.as_ref().is_none_or(|m| m.gone),
        }
    }

    fn broadcast_new(&mut self, kind: EventKind) {
        let frame = Response::event(
            0,
            Event {
                time: 1_767_225_600.0,
                kind,
            },
        );
        if let Some(m) = &mut self.new_master {
            m.subscribers.retain_mut(|s| write_frame(s, &frame).is_ok());
        }
    }

    /// What the old master reports in `show stats`.
    fn upgrade_info(&self) -> Option<UpgradeInfo> {
        self.new_master
            .as_ref()
            .filter(|m| !m.gone && !m.promoted)?;
        let ready = matches!(
            self.upgrade,
            UpgradeScript::Ready | UpgradeScript::DiesInTakeover
        );
        let phase = if ready { "ready" } else { "starting" };
        Some(UpgradeInfo {
            phase: phase.to_string(),
            pid: NEW_PID,
        })
    }

    fn handle_upgrade(&mut self, id: u64) -> Response {
        let script = self.upgrade;
        let started = || {
            Response::ok(
                id,
                &UpgradeReply {
                    status: "started".into(),
                    pid: NEW_PID,
                    old_pid: OLD_PID,
                    control_socket: Some(self.new_sock().to_str().unwrap().to_string()),
                },
            )
        };
        match script {
            UpgradeScript::Unsupported => {
                Response::error(id, "the fake daemon does not do 'upgrade'")
            }
            UpgradeScript::Refused(reason) => Response::error(id, reason),
            UpgradeScript::Fails(reason) => {
                let reply = started();
                self.broadcast(EventKind::UpgradeStarted { pid: NEW_PID });
                self.broadcast(EventKind::UpgradeFailed {
                    pid: Some(NEW_PID),
                    reason: reason.into(),
                });
                reply
            }
            UpgradeScript::Ready | UpgradeScript::Never | UpgradeScript::DiesInTakeover => {
                let reply = started();
                self.bound_new = Some(UnixListener::bind(self.new_sock()).unwrap());
                self.new_master = Some(NewMaster::default());
                self.broadcast(EventKind::UpgradeStarted { pid: NEW_PID });
                if script != UpgradeScript::Never {
                    self.broadcast(EventKind::UpgradeReady { pid: NEW_PID });
                }
                reply
            }
        }
    }

    /// The old master exits: its stream ends, and the new master (if any)
    /// takes over its socket path.
    fn old_master_exits(&mut self) {
        self.broadcast(EventKind::ShuttingDown {
            mode: gunicornd_protocol::ShutdownMode::Graceful,
        });
        self.subscribers.clear();
        self.old_gone = true;
        let _ = fs::remove_file(&self.sock);
        if self.upgrade == UpgradeScript::DiesInTakeover {
            let _ = fs::remove_file(self.new_sock());
            if let Some(m) = &mut self.new_master {
                m.gone = true;
                m.subscribers.clear();
            }
        } else if self.new_master.as_ref().is_some_and(|m| !m.gone) {
            fs::rename(self.new_sock(), &self.sock).unwrap();
            self.new_master.as_mut().unwrap().promoted = true;
            self.broadcast_new(EventKind::Promoted {
                pid: NEW_PID,
                old_pid: OLD_PID,
            });
        }
    }

    fn handle_new(&mut self, id: u64, command: ControlCommand) -> Response {
        match command {
            ControlCommand::Version => Response::ok(id, &VersionReply::current()),
            ControlCommand::Ping => Response::ok(
                id,
                &PingReply {
                    pong: true,
                    pid: NEW_PID,
                },
            ),
            ControlCommand::Shutdown(mode) => {
                let promoted = self.new_master.as_ref().is_some_and(|m| m.promoted);
                let _ = fs::remove_file(if promoted {
                    self.sock.clone()
                } else {
                    self.new_sock()
                });
                if let Some(m) = &mut self.new_master {
                    m.gone = true;
                    m.subscribers.clear();
                }
                self.broadcast(EventKind::UpgradeFailed {
                    pid: Some(NEW_PID),
                    reason: "the new master exited".into(),
                });
                Response::ok(id, &ShutdownReply::new(mode))
            }
            other => Response::error(id, format!("the fake new master does not do '{other}'")),
        }
    }

    fn handle(&mut self, role: Role, id: u64, command: Result<ControlCommand, String>) -> Response {
        let command = match command {
            Ok(c) => c,
            Err(e) => return Response::error(id, e),
        };
        if role == Role::New {
            return self.handle_new(id, command);
        }
        if self.refuse.contains(&command.name()) {
            return Response::error(id, format!("'{}' refused by the test", command.name()));
        }
        match command {
            ControlCommand::Version => Response::ok(id, &VersionReply::current()),
            ControlCommand::Show(ShowTarget::Stats) => Response::ok(
                id,
                &StatsReply {
                    uptime: Some(5.0),
                    pid: 1,
                    workers_current: self.workers.len(),
                    workers_target: self.target,
                    workers_spawned: 0,
                    workers_killed: 0,
                    reloads: 0,
                    dirty_arbiter_pid: None,
                    workers_booted: Some(self.workers.iter().filter(|w| w.booted).count()),
                    generation: Some(self.generation),
                    upgrade: self.upgrade_info(),
                    binary: None,
                },
            ),
            ControlCommand::Ping => Response::ok(
                id,
                &PingReply {
                    pong: true,
                    pid: OLD_PID,
                },
            ),
            ControlCommand::Upgrade(_) => self.handle_upgrade(id),
            ControlCommand::StopWorkers => {
                let n = self.workers.len();
                self.workers.clear();
                self.target = 0;
                Response::ok(id, &StopWorkersReply::new(n))
            }
            ControlCommand::Shutdown(mode) => {
                self.old_master_exits();
                Response::ok(id, &ShutdownReply::new(mode))
            }
            ControlCommand::Show(ShowTarget::Workers) => {
                Response::ok(id, &WorkersReply::new(self.workers.clone()))
            }
            ControlCommand::Show(ShowTarget::Listeners) => {
                Response::ok(id, &ListenersReply::new(Vec::new()))
            }
            ControlCommand::Scale(target) => {
                let previous = self.target;
                self.target = target.apply(previous);
                while self.workers.len() < self.target {
                    self.spawn(self.boot_new);
                }
                self.workers.truncate(self.target);
                Response::ok(
                    id,
                    &ScaleReply {
                        previous,
                        total: self.target,
                    },
                )
            }
            ControlCommand::Reload if self.reload_fails => {
                self.broadcast(EventKind::ReloadFailed {
                    generation: Some(self.generation + 1),
                    reason: "bad config".into(),
                });
                Response::ok(id, &ReloadReply::reloading(self.generation + 1))
            }
            ControlCommand::Reload => {
                self.target = self.configured;
                self.generation += 1;
                self.workers.clear();
                for _ in 0..self.target {
                    self.spawn(true);
                }
                self.broadcast(EventKind::ReloadFinished {
                    generation: self.generation,
                });
                Response::ok(id, &ReloadReply::reloading(self.generation))
            }
            other => Response::error(id, format!("the fake daemon does not do '{other}'")),
        }
    }
}

struct Fake {
    dir: tempfile::TempDir,
    state: Arc<Mutex<State>>,
}

impl Fake {
    fn start(configure: impl FnOnce(&mut State)) -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let mut state = State {
            sock: dir.path().join("d.ctl"),
            configured: 2,
            target: 2,
            generation: 1,
            next_pid: 100,
            boot_new: true,
            ..State::default()
        };
        for _ in 0..2 {
            state.spawn(true);
        }
        configure(&mut state);
        let state = Arc::new(Mutex::new(state));
        let listener = UnixListener::bind(dir.path().join("d.ctl")).unwrap();
        accept(listener, Arc::clone(&state), Role::Old);
        Fake { dir, state }
    }

    /// State-changing commands received, in order (the new master's with
    /// a `new: ` prefix); queries left out.
    fn changes(&self) -> Vec<String> {
        self.received()
            .into_iter()
            .filter(|c| {
                let c = c.strip_prefix("new: ").unwrap_or(c);
                !matches!(c, "version" | "ping" | "events") && !c.starts_with("show ")
            })
            .collect()
    }

    fn sock(&self) -> String {
        self.dir.path().join("d.ctl").to_str().unwrap().to_string()
    }

    fn received(&self) -> Vec<String> {
        self.state.lock().unwrap().received.clone()
    }

    fn ctl(&self, args: &[&str]) -> Output {
        ctl_command(&["-s", &self.sock()])
            .args(args)
            .output()
            .expect("run gunicornctl")
    }
}

fn accept(listener: UnixListener, state: Arc<Mutex<State>>, role: Role) {
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let state = Arc::clone(&state);
            thread::spawn(move || serve(stream, state, role));
        }
    });
}

fn serve(mut stream: UnixStream, state: Arc<Mutex<State>>, role: Role) {
    while let Ok(req) = read_frame::<_, Request>(&mut stream) {
        let command = ControlCommand::parse(&req);
        let mut s = state.lock().unwrap();
        // A master that exited answers nothing more.
        if s.is_gone(role) {
            return;
        }
        s.received.push(match role {
            Role::Old => req.command.clone(),
            Role::New => format!("new: {}", req.command),
        });
        if command == Ok(ControlCommand::Events) && role == Role::New {
            let _ = write_frame(
                &mut stream,
                &Response::ok(req.id, &EventsReply { subscribed: true }),
            );
            if let Some(m) = &mut s.new_master {
                m.subscribers.push(stream);
            }
            return;
        }
        if command == Ok(ControlCommand::Events) {
            // Acknowledge and subscribe under the lock, so no event sent
            // after the client saw the ack can be missed.
            let _ = write_frame(
                &mut stream,
                &Response::ok(req.id, &EventsReply { subscribed: true }),
            );
            match s.event_script.take() {
                Some(frames) => {
                    for frame in frames {
                        let _ =
                            std::io::Write::write_all(&mut stream, &encode_frame(&frame).unwrap());
                    }
                }
                None => s.subscribers.push(stream),
            }
            return;
        }
        let reply = s.handle(role, req.id, command);
        // Bound before the reply that names it goes out.
        if let Some(listener) = s.bound_new.take() {
            accept(listener, Arc::clone(&state), Role::New);
        }
        drop(s);
        if write_frame(&mut stream, &reply).is_err() {
            return;
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn scale_uses_gunicornds_scale_command_and_waits() {
    let fake = Fake::start(|_| {});
    let out = fake.ctl(&["scale", "+2", "--wait", "--timeout", "20"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("workers target 2 -> 4: 4 booted in "),
        "{}",
        text(&out.stdout)
    );
    assert!(
        fake.received().contains(&"scale +2".to_string()),
        "{:?}",
        fake.received()
    );
    assert!(
        !fake.received().iter().any(|c| c.starts_with("worker ")),
        "{:?}",
        fake.received()
    );
}

#[test]
fn scale_wait_times_out_with_what_is_missing() {
    let fake = Fake::start(|s| s.boot_new = false);
    let out = fake.ctl(&["scale", "3", "--wait", "--timeout", "0.3"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "gunicornctl: timed out after 300ms waiting for 3 booted workers: 2 booted, 3 running\n"
    );
}

#[test]
fn reload_wait_reports_the_new_generation() {
    let fake = Fake::start(|_| {});
    let out = fake.ctl(&["reload", "--wait", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["generation"], 2);
    assert_eq!(result["retired"], json!([101, 102]));
    assert_eq!(result["workers"], json!([103, 104]));
}

#[test]
fn reload_wait_fails_fast_with_the_daemons_reason() {
    let fake = Fake::start(|s| s.reload_fails = true);
    // Without the event the wait would run into the (long) timeout and say so.
    let out = fake.ctl(&["reload", "--wait", "--timeout", "1h"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "gunicornctl: reload failed: bad config; the previous workers keep serving\n"
    );
}

#[test]
fn events_are_printed_until_the_daemon_closes_the_stream() {
    let frames = vec![
        serde_json::to_value(Response::event(
            1,
            Event {
                time: 1_767_225_600.25,
                kind: EventKind::WorkerBooted {
                    pid: 42,
                    generation: 3,
                },
            },
        ))
        .unwrap(),
        json!({"id": 1, "status": "event", "data": {"time": 1767225601.0, "event": "solar_flare", "x": 1}}),
        serde_json::to_value(Response::event(
            1,
            Event {
                time: 1_767_225_602.0,
                kind: EventKind::ScaleChanged {
                    previous: 2,
                    target: 4,
                },
            },
        ))
        .unwrap(),
    ];
    let fake = Fake::start(|s| s.event_script = Some(frames.clone()));
    let out = fake.ctl(&["events"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "2026-01-01T00:00:00.250Z  worker 42 booted (generation 3)\n\
         2026-01-01T00:00:01.000Z  {\"event\":\"solar_flare\",\"time\":1767225601.0,\"x\":1}\n\
         2026-01-01T00:00:02.000Z  workers target 2 -> 4\n"
    );

    let fake = Fake::start(|s| s.event_script = Some(frames[..1].to_vec()));
    let out = fake.ctl(&["events", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let line: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(
        line,
        json!({"time": 1767225600.25, "event": "worker_booted", "pid": 42, "generation": 3})
    );
}

#[test]
fn error_replies_exit_1_with_the_daemons_message() {
    let fake = Fake::start(|_| {});
    let out = fake.ctl(&["reopen"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "gunicornctl: 'reopen' failed: the fake daemon does not do 'reopen'\n"
    );
    let out = fake.ctl(&["raw", "frobnicate", "now"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "gunicornctl: 'frobnicate' failed: unknown command 'frobnicate'; try 'help'\n"
    );
}

#[test]
fn status_shows_generation_and_booted_counts() {
    let fake = Fake::start(|_| {});
    let out = fake.ctl(&["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with(&format!(
            "server      gunicornd {}\n",
            env!("CARGO_PKG_VERSION")
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("\nworkers     2 booted / 2 target\ngeneration  1\nlisteners   -\n"),
        "{stdout}"
    );
}

// ---------------------------------------------------------------------------
// upgrade

/// `gunicornctl upgrade` against a fake whose upgrade goes as `script`.
fn upgrade(script: UpgradeScript, refuse: &[&'static str], args: &[&str]) -> (Fake, Output) {
    let fake = Fake::start(|s| {
        s.upgrade = script;
        s.refuse = refuse.to_vec();
    });
    let mut all = vec!["upgrade"];
    all.extend_from_slice(args);
    let out = fake.ctl(&all);
    (fake, out)
}

fn lines(bytes: &[u8]) -> Vec<String> {
    text(bytes).lines().map(str::to_string).collect()
}

#[test]
fn upgrade_drives_the_whole_takeover_and_prints_its_progress() {
    let (fake, out) = upgrade(UpgradeScript::Ready, &[], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let printed = lines(&out.stdout);
    assert_eq!(
        printed[..5],
        [
            "new master 500 started (old master 1)",
            "new master 500 ready",
            "stopping the old workers (2)",
            "old master 1 exiting",
            "new master 500 promoted",
        ],
        "{printed:?}"
    );
    assert_eq!(printed.len(), 6, "{printed:?}");
    assert!(
        printed[5].starts_with("upgraded in ")
            && printed[5].ends_with("s: old master 1, new master 500"),
        "{printed:?}"
    );
    assert_eq!(
        fake.changes(),
        ["upgrade", "stop-workers", "shutdown graceful"],
        "{:?}",
        fake.received()
    );
    // Subscribed to the old master's events before asking for the upgrade,
    // and to the new master's on its own socket.
    let received = fake.received();
    let position = |c: &str| received.iter().position(|r| r == c);
    assert!(
        position("events") < position("upgrade"),
        "events before upgrade: {received:?}"
    );
    assert!(position("new: events").is_some(), "{received:?}");
    // Promotion was confirmed with a ping on the normal path, which the new
    // master answers.
    assert_eq!(position("new: ping").map(|_| ()), Some(()), "{received:?}");
    assert!(!fake.state.lock().unwrap().new_sock().exists());
}

#[test]
fn upgrade_json_is_one_outcome_object() {
    let (_fake, out) = upgrade(UpgradeScript::Ready, &[], &["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let outcome: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {}", text(&out.stdout)));
    let seconds = outcome["seconds"].as_f64().unwrap();
    assert!((0.0..60.0).contains(&seconds), "{outcome}");
    assert_eq!(
        outcome,
        json!({"status": "upgraded", "old_pid": 1, "new_pid": 500, "seconds": seconds, "error": null})
    );
}

#[test]
fn a_refused_upgrade_exits_1_with_the_daemons_reason_and_changes_nothing() {
    let reason = "upgrade refused: a new master (pid 7) is already running";
    let (fake, out) = upgrade(UpgradeScript::Refused(reason), &[], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!("gunicornctl: 'upgrade' failed: {reason}\n")
    );
    assert_eq!(text(&out.stdout), "");
    assert_eq!(fake.changes(), ["upgrade"]);

    let (_fake, out) = upgrade(UpgradeScript::Refused(reason), &[], &["--json"]);
    assert_eq!(out.status.code(), Some(1));
    let outcome: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(outcome["status"], "failed");
    assert_eq!(outcome["old_pid"], 1);
    assert_eq!(outcome["new_pid"], Value::Null);
    assert_eq!(
        outcome["error"],
        format!("'upgrade' failed: {reason}"),
        "{outcome}"
    );
}

#[test]
fn a_failed_upgrade_needs_no_rollback_the_old_master_stopped_the_new_one() {
    let (fake, out) = upgrade(
        UpgradeScript::Fails("the new master's workers exited with code 4"),
        &[],
        &["--json"],
    );
    assert_eq!(out.status.code(), Some(1));
    let error = "upgrade failed: the new master's workers exited with code 4; \
                 the old master 1 keeps serving";
    assert_eq!(text(&out.stderr), format!("gunicornctl: {error}\n"));
    let outcome: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(outcome["status"], "failed");
    assert_eq!(outcome["old_pid"], 1);
    assert_eq!(outcome["new_pid"], 500);
    assert_eq!(outcome["error"], error);
    assert_eq!(fake.changes(), ["upgrade"], "{:?}", fake.received());
}

#[test]
fn a_refused_stop_workers_rolls_back_by_stopping_the_new_master() {
    let (fake, out) = upgrade(UpgradeScript::Ready, &["stop-workers"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "gunicornctl: cannot stop the old workers: 'stop-workers' failed: 'stop-workers' \
         refused by the test; rolled back (new master 500 stopped): the old master 1 keeps \
         serving\n"
    );
    assert_eq!(
        lines(&out.stdout)[2..],
        ["rolling back: stopping new master 500"]
    );
    assert_eq!(
        fake.changes(),
        ["upgrade", "stop-workers", "new: shutdown graceful"]
    );
}

#[test]
fn a_refused_shutdown_rolls_back_the_old_workers_first_then_the_new_master() {
    let (fake, out) = upgrade(UpgradeScript::Ready, &["shutdown"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "gunicornctl: the old master 1 refused to exit: 'shutdown graceful' failed: 'shutdown' \
         refused by the test; rolled back (the old workers are back, new master 500 stopped): \
         the old master 1 keeps serving\n"
    );
    assert_eq!(
        lines(&out.stdout)[3..],
        [
            "rolling back: reloading the old master 1 to bring its workers back",
            "rolling back: stopping new master 500",
        ]
    );
    assert_eq!(
        fake.changes(),
        [
            "upgrade",
            "stop-workers",
            "shutdown graceful",
            "reload",
            "new: shutdown graceful"
        ]
    );
    let state = fake.state.lock().unwrap();
    assert_eq!(state.target, 2, "the old master has its workers back");
}

#[test]
fn an_upgrade_that_times_out_stops_the_new_master() {
    let started = Instant::now();
    let (fake, out) = upgrade(UpgradeScript::Never, &[], &["--timeout", "0.5"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "gunicornctl: timed out after 500ms waiting for new master 500 to be ready: it is \
         starting; rolled back (new master 500 stopped): the old master 1 keeps serving\n"
    );
    assert_eq!(fake.changes(), ["upgrade", "new: shutdown graceful"]);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_new_master_lost_after_the_old_one_was_told_to_exit_is_reported_not_rolled_back() {
    let (fake, out) = upgrade(UpgradeScript::DiesInTakeover, &[], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "gunicornctl: new master 500 went away before it took over; the old master 1 is \
         exiting: check which master serves\n"
    );
    assert_eq!(
        fake.changes(),
        ["upgrade", "stop-workers", "shutdown graceful"],
        "nothing to roll back to"
    );
}
