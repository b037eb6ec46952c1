//! gunicornctl's gunicornd-only paths (`scale`, events, failing fast on a
//! failed reload, timeouts) against a scripted server built from the shared
//! protocol types. The real server is tested with the daemon; this checks
//! the client's side of the contract.

use std::os::unix::net::{UnixListener, UnixStream};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::thread;

use gunicornd_protocol::{
    encode_frame, read_frame, write_frame, ControlCommand, Event, EventKind, EventsReply,
    ListenersReply, ReloadReply, Request, Response, ScaleReply, ShowTarget, StatsReply,
    VersionReply, WorkerInfo, WorkersReply,
};
use gunicornd_test_support::ctl_command;
use serde_json::json;

#[derive(Default)]
struct State {
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
            rss_kb: Some(1024),
            uptime: Some(1.0),
            retiring: Some(false),
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

    fn handle(&mut self, id: u64, command: Result<ControlCommand, String>) -> Response {
        let command = match command {
            Ok(c) => c,
            Err(e) => return Response::error(id, e),
        };
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
                    upgrade: None,
                },
            ),
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
        let mut state = State {
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
        let dir = tempfile::tempdir().unwrap();
        let listener = UnixListener::bind(dir.path().join("d.ctl")).unwrap();
        let shared = Arc::clone(&state);
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = Arc::clone(&shared);
                thread::spawn(move || serve(stream, state));
            }
        });
        Fake { dir, state }
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

fn serve(mut stream: UnixStream, state: Arc<Mutex<State>>) {
    while let Ok(req) = read_frame::<_, Request>(&mut stream) {
        let command = ControlCommand::parse(&req);
        let mut s = state.lock().unwrap();
        s.received.push(req.command.clone());
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
        let reply = s.handle(req.id, command);
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
    let out = fake.ctl(&["stop-workers"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "gunicornctl: 'stop-workers' failed: the fake daemon does not do 'stop-workers'\n"
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
