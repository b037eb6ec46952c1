//! The master's life, scenario by scenario, with no process: a simulated
//! clock, made-up pids, and the [`Pool`]'s actions read back as values.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

use super::plan::{Phase, BACKOFF_BASE, BACKOFF_MAX, QUICK_STOP_GRACE, STARTUP_FAILURES};
use super::workers::Protocol;
use super::*;
use crate::control::protocol::{EventKind, RetireReason, ScaleTarget};
use crate::worker::notify::WorkerMsg;
use crate::worker::{APP_LOAD_ERROR, WORKER_BOOT_ERROR};

const TIMEOUT: Duration = Duration::from_secs(30);
const GRACEFUL: Duration = Duration::from_secs(30);

fn limits() -> Limits {
    Limits {
        timeout: TIMEOUT,
        graceful_timeout: GRACEFUL,
        daemon: false,
        upgrade_timeout: UPGRADE_TIMEOUT,
        max_workers: 64,
        boot_grace: BOOT_GRACE,
        halt_on_boot_error: true,
    }
}

const UPGRADE_TIMEOUT: Duration = Duration::from_secs(60);
const BOOT_GRACE: Duration = Duration::from_secs(1);

/// A pool driven the way the executor drives it, with forks that succeed
/// (pids from 100 up) unless told to fail, and heartbeats the test controls.
struct Sim {
    pool: Pool,
    now: Instant,
    next_pid: i32,
    /// This many forks fail from now on.
    failing_forks: usize,
    beats: BTreeMap<i32, Instant>,
    stopped: BTreeSet<i32>,
    /// Every action performed so far, in order.
    done: Vec<Action>,
    /// How the workers spawned from now on report.
    protocol: Protocol,
}

impl Sim {
    fn new(target: usize) -> Sim {
        Sim::with_limits(target, limits())
    }

    fn with_limits(target: usize, limits: Limits) -> Sim {
        Sim {
            pool: Pool::new(target, limits),
            now: Instant::now(),
            next_pid: 100,
            failing_forks: 0,
            beats: BTreeMap::new(),
            stopped: BTreeSet::new(),
            done: Vec::new(),
            protocol: Protocol::WorkerChannel,
        }
    }

    /// Perform what the pool queued, as `execute.rs` does (a fork's
    /// outcome is acted on before the rest of the batch); return it all.
    fn run(&mut self) -> Vec<Action> {
        let mut performed = Vec::new();
        for a in self.pool.take_actions() {
            if let Action::Spawn { age, generation } = a {
                if !self.pool.may_spawn(self.now) {
                    continue;
                }
                if self.failing_forks > 0 {
                    self.failing_forks -= 1;
                    self.pool.spawn_failed(
                        "Cannot fork a worker: EAGAIN".into(),
                        age,
                        true,
                        self.now,
                    );
                } else {
                    let pid = Pid::from_raw(self.next_pid);
                    self.next_pid += 1;
                    self.beats.insert(pid.as_raw(), self.now);
                    self.pool
                        .spawned(pid, age, generation, 0, self.protocol, self.now);
                }
                self.done.push(a.clone());
                performed.push(a);
                performed.extend(self.run());
                continue;
            }
            self.done.push(a.clone());
            performed.push(a);
        }
        performed
    }

    /// One pass of the loop with nothing else happening.
    fn tick(&mut self) -> Vec<Action> {
        let (now, beats, stopped) = (self.now, &self.beats, &self.stopped);
        self.pool.check_deadlines(now, |w| Liveness {
            silence: now.saturating_duration_since(beats[&w.pid.as_raw()]),
            stopped: stopped.contains(&w.pid.as_raw()),
        });
        let mut out = self.run();
        self.pool.progress();
        self.pool.manage(now);
        out.extend(self.run());
        out
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    fn beat_all(&mut self) {
        for t in self.beats.values_mut() {
            *t = self.now;
        }
    }

    fn boot(&mut self, pid: Pid) {
        self.pool.worker_message(pid, WorkerMsg::Booted, self.now);
        self.tick();
    }

    /// Boot every worker that has not booted yet, then let the plan react.
    fn boot_all(&mut self) {
        for pid in self.pids(|w| !w.booted()) {
            self.pool.worker_message(pid, WorkerMsg::Booted, self.now);
        }
        self.tick();
    }

    fn exit(&mut self, pid: Pid, status: WaitStatus) -> Vec<Action> {
        let booted = self.pool.workers.get(pid).is_some_and(Worker::booted);
        self.pool.worker_exited(
            Exit {
                pid,
                status,
                booted,
            },
            self.now,
        );
        self.beats.remove(&pid.as_raw());
        let mut out = self.run();
        out.extend(self.tick());
        out
    }

    /// Every worker that was sent a stop signal exits as it was asked.
    fn stopped_workers_exit(&mut self) {
        for pid in self.pids(|w| w.stop.is_some()) {
            self.exit(pid, WaitStatus::Exited(pid, 0));
        }
    }

    fn pids(&self, pred: impl Fn(&Worker) -> bool) -> Vec<Pid> {
        self.pool.workers.oldest_first(pred)
    }

    fn generation_pids(&self, generation: u64) -> Vec<Pid> {
        self.pids(|w| w.generation == generation)
    }

    fn reload(&mut self) -> Outcome {
        self.reload_with(self.pool.target)
    }

    /// A reload whose configuration asks for `workers` (the old one asked
    /// for the current target).
    fn reload_with(&mut self, workers: usize) -> Outcome {
        self.pool.start_reload().expect("reload allowed");
        let out = self
            .pool
            .begin_reload((self.pool.target, workers), limits());
        self.run();
        self.tick();
        out
    }
}

fn signals(actions: &[Action]) -> Vec<(Pid, Signal)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Signal { pid, signal } => Some((*pid, *signal)),
            _ => None,
        })
        .collect()
}

fn spawns(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|a| matches!(a, Action::Spawn { .. }))
        .count()
}

fn has_log(actions: &[Action], level: Level, needle: &str) -> bool {
    actions
        .iter()
        .any(|a| matches!(a, Action::Log(l, m) if *l == level && m.contains(needle)))
}

fn retired(actions: &[Action], reason: RetireReason) -> Vec<i32> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Emit(EventKind::WorkerRetired { pid, reason: r, .. }) if *r == reason => {
                Some(*pid)
            }
            _ => None,
        })
        .collect()
}

/// A pool at `n` booted workers of generation 1, ready.
fn serving(n: usize) -> Sim {
    let mut sim = Sim::new(n);
    sim.tick();
    sim.boot_all();
    assert_eq!(sim.pool.serving_capacity(), n);
    sim
}

// --- start ---------------------------------------------------------------

#[test]
fn start_spawns_the_target_and_is_ready_only_once_all_booted() {
    let mut sim = Sim::new(3);
    let first = sim.tick();
    assert_eq!(spawns(&first), 3);
    assert!(!first.contains(&Action::Report(Report::Ready)));
    let pids = sim.pids(|_| true);
    sim.boot(pids[0]);
    sim.boot(pids[1]);
    assert!(!sim.done.contains(&Action::Report(Report::Ready)));
    sim.boot(pids[2]);
    assert!(sim.done.contains(&Action::Report(Report::Ready)));
    // Nothing more to do once at target.
    assert!(sim.tick().is_empty());
}

// --- reload --------------------------------------------------------------

#[test]
fn reload_keeps_capacity_old_workers_retire_only_as_new_ones_boot() {
    let mut sim = serving(3);
    let old = sim.generation_pids(1);
    assert_eq!(sim.reload(), Outcome::Reloading { generation: 2 });
    let new = sim.generation_pids(2);
    assert_eq!(new.len(), 3, "a whole new generation is spawned at once");
    // Nothing old is stopped before anything new has booted.
    assert!(signals(&sim.done).is_empty());
    let finished = |sim: &Sim| {
        sim.done
            .contains(&Action::Emit(EventKind::ReloadFinished { generation: 2 }))
    };
    for (i, pid) in new.iter().enumerate() {
        assert!(!finished(&sim), "not complete before new worker {i} booted");
        let before = sim.done.len();
        sim.boot(*pid);
        let stops = signals(&sim.done[before..]);
        assert_eq!(
            stops,
            vec![(old[i], Signal::SIGTERM)],
            "one old per new booted"
        );
        // Booted capacity never drops below the target.
        let capacity = sim.pool.workers.count(|w| w.running() && w.booted());
        assert!(capacity >= 3);
    }
    // Complete once the new generation serves at target and every old
    // worker has been asked to stop (they drain on their own).
    assert!(sim
        .done
        .contains(&Action::Emit(EventKind::ReloadFinished { generation: 2 })));
    assert!(sim.done.contains(&Action::CloseParkedListeners));
    assert!(sim.pool.previous.is_none());
    sim.stopped_workers_exit();
    assert_eq!(sim.pool.workers.len(), 3);
}

#[test]
fn reload_whose_new_generation_cannot_boot_rolls_back() {
    let mut sim = serving(2);
    let old = sim.generation_pids(1);
    sim.pool.start_reload().unwrap();
    let short = Limits {
        graceful_timeout: Duration::from_secs(5),
        ..limits()
    };
    sim.pool.begin_reload((2, 4), short);
    sim.run();
    sim.tick();
    assert_eq!(sim.pool.target, 4);
    let new = sim.generation_pids(2);
    let t0 = sim.now;
    let out = sim.exit(new[0], WaitStatus::Exited(new[0], APP_LOAD_ERROR));
    assert!(out.contains(&Action::RestorePrevious));
    assert!(has_log(
        &out,
        Level::Error,
        "Reload failed: App failed to load."
    ));
    assert!(out.contains(&Action::Emit(EventKind::ReloadFailed {
        generation: Some(2),
        reason: "App failed to load.".into()
    })));
    // Back to generation 1 with its own worker count; the rest of
    // generation 2 is stopped, the old workers are kept.
    assert_eq!((sim.pool.generation, sim.pool.target), (1, 2));
    assert_eq!(
        sim.pool.limits,
        limits(),
        "the old generation's settings are back"
    );
    assert!(out.contains(&Action::Report(Report::Reloaded)));
    assert!(out.contains(&Action::Emit(EventKind::ScaleChanged {
        previous: 4,
        target: 2
    })));
    // The new generation's workers get the restored graceful timeout.
    let stop = sim.pool.workers.get(new[1]).unwrap().stop.unwrap();
    assert_eq!(stop.kill_at, t0 + GRACEFUL);
    assert_eq!(
        signals(&out),
        vec![
            (new[1], Signal::SIGTERM),
            (new[2], Signal::SIGTERM),
            (new[3], Signal::SIGTERM)
        ]
    );
    for pid in &old {
        let w = sim.pool.workers.get(*pid).unwrap();
        assert!(w.live(), "old worker {pid} serves on");
    }
    assert!(sim.pool.finished().is_none(), "the master does not halt");
    assert_eq!(spawns(&out), 0);
}

#[test]
fn exit_3_without_a_reload_halts_the_master() {
    let mut sim = Sim::new(2);
    sim.tick();
    let pid = sim.pids(|_| true)[0];
    sim.exit(pid, WaitStatus::Exited(pid, WORKER_BOOT_ERROR));
    assert!(matches!(
        sim.pool.phase,
        Phase::Stopping { graceful: true, .. }
    ));
    sim.stopped_workers_exit();
    assert_eq!(
        sim.pool.finished(),
        Some(Halt {
            reason: Some("Worker failed to boot.".into()),
            status: WORKER_BOOT_ERROR
        })
    );
}

#[test]
fn reload_during_a_reload_keeps_the_last_serving_generation_as_fallback() {
    let mut sim = serving(2);
    let gen1 = sim.generation_pids(1);
    sim.reload();
    sim.boot(sim.generation_pids(2)[0]);
    // Generation 2 is half booted when the second HUP arrives.
    sim.reload();
    assert_eq!(sim.pool.generation, 3);
    assert_eq!(sim.pool.previous.map(|p| p.generation), Some(1));
    // Generation 3 fails: generation 1 (still serving one worker) is back,
    // and every later worker goes.
    let gen3 = sim.generation_pids(3);
    let out = sim.exit(gen3[0], WaitStatus::Exited(gen3[0], WORKER_BOOT_ERROR));
    assert!(out.contains(&Action::RestorePrevious));
    assert_eq!(sim.pool.generation, 1);
    let stopped: BTreeSet<Pid> = sim.pids(|w| w.stop.is_some()).into_iter().collect();
    for pid in sim.generation_pids(2).iter().chain(&gen3[1..]) {
        assert!(
            stopped.contains(pid),
            "{pid} of a later generation is stopped"
        );
    }
    let serving_old = gen1
        .iter()
        .filter(|p| sim.pool.workers.get(**p).is_some_and(Worker::live));
    assert_eq!(
        serving_old.count(),
        1,
        "the gen-1 worker not yet replaced serves on"
    );
    // The plan makes up the missing gen-1 capacity.
    sim.stopped_workers_exit();
    assert_eq!(sim.pool.workers.count(|w| w.generation == 1 && w.live()), 2);
}

#[test]
fn scaling_during_a_reload() {
    struct Case {
        name: &'static str,
        scale: ScaleTarget,
        target: usize,
    }
    let cases = [
        Case {
            name: "up",
            scale: ScaleTarget::Up(2),
            target: 5,
        },
        Case {
            name: "down",
            scale: ScaleTarget::Down(2),
            target: 1,
        },
    ];
    for case in cases {
        let mut sim = serving(3);
        sim.reload();
        assert_eq!(
            sim.pool.scale(case.scale),
            Outcome::Scaled {
                previous: 3,
                total: case.target
            },
            "{}",
            case.name
        );
        sim.run();
        sim.tick();
        sim.boot_all();
        sim.stopped_workers_exit();
        sim.boot_all();
        let live_new = sim
            .pool
            .workers
            .count(|w| w.generation == 2 && w.live() && w.booted());
        assert_eq!(
            live_new, case.target,
            "{}: new generation at the new target",
            case.name
        );
        assert_eq!(
            sim.pool.workers.count(|w| w.generation == 1),
            0,
            "{}",
            case.name
        );
        assert!(
            sim.done
                .contains(&Action::Emit(EventKind::ReloadFinished { generation: 2 })),
            "{}",
            case.name
        );
    }
}

// --- scaling -------------------------------------------------------------

#[test]
fn scale_down_stops_booting_workers_first_then_the_oldest() {
    let mut sim = serving(2);
    sim.pool.scale(ScaleTarget::Up(2));
    sim.tick();
    let all = sim.pids(|_| true);
    // Workers 3 and 4 are still booting: they go first, newest first.
    sim.pool.scale(ScaleTarget::To(1));
    let out = sim.tick();
    assert_eq!(
        signals(&out),
        vec![
            (all[3], Signal::SIGTERM),
            (all[2], Signal::SIGTERM),
            (all[0], Signal::SIGTERM)
        ]
    );
    assert_eq!(retired(&out, RetireReason::Scale).len(), 3);
}

#[test]
fn ttou_at_one_or_zero_changes_nothing_and_the_cap_holds() {
    let mut sim = serving(1);
    assert_eq!(
        sim.pool.scale(ScaleTarget::Down(1)),
        Outcome::Scaled {
            previous: 1,
            total: 1
        }
    );
    assert!(sim.run().is_empty(), "no event, no hook");
    let out = sim.pool.scale(ScaleTarget::To(1000));
    assert_eq!(
        out,
        Outcome::Scaled {
            previous: 1,
            total: 64
        }
    );
    assert!(has_log(
        &sim.run(),
        Level::Warn,
        "64 is the most one master runs"
    ));
}

// --- max_requests ----------------------------------------------------------

#[test]
fn max_requests_recycling_starts_the_replacement_first() {
    let mut sim = serving(2);
    let old = sim.pids(|_| true)[0];
    sim.pool.worker_message(old, WorkerMsg::Recycle, sim.now);
    let out = sim.tick();
    assert_eq!(spawns(&out), 1, "a replacement is spawned");
    assert!(
        signals(&out).is_empty(),
        "the recycled worker serves until it is ready"
    );
    let replacement = sim.pids(|w| !w.booted())[0];
    let before = sim.done.len();
    sim.boot(replacement);
    assert_eq!(signals(&sim.done[before..]), vec![(old, Signal::SIGTERM)]);
    assert_eq!(
        retired(&sim.done[before..], RetireReason::MaxRequests),
        vec![old.as_raw()]
    );
    // A second recycle request from the same worker is no second stop.
    sim.pool.worker_message(old, WorkerMsg::Recycle, sim.now);
    assert!(signals(&sim.tick()).is_empty());
}

// --- worker messages -------------------------------------------------------

#[test]
fn messages_count_only_from_a_worker_and_a_worker_boots_once() {
    let mut sim = serving(1);
    let worker = sim.pids(|_| true)[0];
    // The kernel names the sender: a pid that is no worker speaks for
    // nobody, whatever it says.
    let stranger = Pid::from_raw(worker.as_raw() + 1000);
    sim.pool
        .worker_message(stranger, WorkerMsg::Recycle, sim.now);
    let out = sim.tick();
    assert!(has_log(
        &out,
        Level::Warn,
        &format!("from pid {stranger}, which is not one of this master's workers")
    ));
    assert_eq!(spawns(&out), 0, "nothing is replaced");
    assert!(sim.pool.workers.iter().all(|w| w.replace.is_none()));
    // A second "booted" from the worker changes nothing and emits nothing.
    sim.pool.worker_message(worker, WorkerMsg::Booted, sim.now);
    let out = sim.run();
    assert!(
        !out.iter()
            .any(|a| matches!(a, Action::Emit(EventKind::WorkerBooted { .. }))),
        "{out:?}"
    );
}

// --- heartbeat -------------------------------------------------------------

#[test]
fn heartbeat_timeout_while_booting_and_while_serving() {
    for booted in [false, true] {
        let mut sim = Sim::new(1);
        sim.tick();
        let pid = sim.pids(|_| true)[0];
        if booted {
            sim.boot(pid);
        }
        sim.advance(TIMEOUT);
        assert!(
            signals(&sim.tick()).is_empty(),
            "silence of exactly timeout is fine"
        );
        sim.advance(Duration::from_millis(1));
        let out = sim.tick();
        assert_eq!(signals(&out), vec![(pid, Signal::SIGABRT)]);
        let text = if booted {
            format!("WORKER TIMEOUT (pid:{pid})")
        } else {
            format!("WORKER TIMEOUT (pid:{pid}) while booting")
        };
        assert!(has_log(&out, Level::Critical, &text), "booted={booted}");
        assert_eq!(retired(&out, RetireReason::Timeout), vec![pid.as_raw()]);
        // A timed-out worker is no capacity: its replacement is spawned.
        assert_eq!(spawns(&out), 1, "booted={booted}");
        // Still there after the grace: SIGKILL, once.
        sim.advance(super::plan::ABORT_GRACE);
        let out = sim.tick();
        assert_eq!(signals(&out), vec![(pid, Signal::SIGKILL)]);
        assert!(signals(&sim.tick()).is_empty());
        assert_eq!(sim.pool.counters.killed, 1);
    }
}

#[test]
fn a_stopped_worker_that_times_out_is_killed_at_once() {
    let mut sim = serving(1);
    let pid = sim.pids(|_| true)[0];
    sim.stopped.insert(pid.as_raw());
    sim.advance(TIMEOUT + Duration::from_millis(1));
    let out = sim.tick();
    assert_eq!(signals(&out), vec![(pid, Signal::SIGKILL)]);
    assert!(has_log(&out, Level::Critical, "WORKER TIMEOUT"));
}

#[test]
fn the_next_deadline_is_the_first_heartbeat_to_go_stale() {
    let mut sim = serving(2);
    let first = sim.pids(|_| true)[0];
    sim.advance(Duration::from_secs(10));
    sim.beats.insert(first.as_raw(), sim.now);
    let (now, beats) = (sim.now, &sim.beats);
    let next = sim.pool.next_deadline(now, |w| Liveness {
        silence: now - beats[&w.pid.as_raw()],
        stopped: false,
    });
    // The other worker has been silent 10 s of its 30.
    assert_eq!(
        next,
        Some(now + Duration::from_secs(20) + Duration::from_millis(1))
    );
}

#[test]
fn no_heartbeat_check_with_timeout_zero() {
    let mut sim = Sim::with_limits(
        1,
        Limits {
            timeout: Duration::ZERO,
            ..limits()
        },
    );
    sim.tick();
    sim.boot_all();
    sim.advance(Duration::from_secs(86_400));
    assert!(signals(&sim.tick()).is_empty());
}

// --- crash loop ------------------------------------------------------------

#[test]
fn crash_loop_backs_off_exponentially_and_resets_on_boot() {
    let mut sim = Sim::new(2);
    sim.tick();
    let mut delay = BACKOFF_BASE;
    for failure in 1..=STARTUP_FAILURES + 3 {
        let pid = sim.pids(|w| !w.booted())[0];
        let out = sim.exit(pid, WaitStatus::Exited(pid, 1));
        assert!(
            has_log(
                &out,
                Level::Warn,
                &format!(
                    "{failure} worker(s) in a row died before booting; next spawn in {} ms",
                    delay.as_millis()
                )
            ),
            "failure {failure}: {out:?}"
        );
        assert_eq!(
            out.contains(&Action::Report(Report::StartupFailed(format!(
                "workers keep dying before they boot ({STARTUP_FAILURES} in a row); see the error log"
            )))),
            failure == STARTUP_FAILURES
        );
        // Nothing is spawned before the delay is over...
        sim.advance(delay - Duration::from_millis(1));
        assert_eq!(spawns(&sim.tick()), 0, "failure {failure}");
        // ...then one worker at a time.
        sim.advance(Duration::from_millis(1));
        assert_eq!(spawns(&sim.tick()), 1, "failure {failure}");
        delay = (delay * 2).min(BACKOFF_MAX);
    }
    // One boot resets the count: the rest are spawned together, and the
    // next failure starts from the base delay again.
    let pid = sim.pids(|w| !w.booted())[0];
    sim.boot(pid);
    assert_eq!(
        sim.pool.workers.len(),
        2,
        "the missing worker follows at once"
    );
    let fresh = sim.pids(|w| !w.booted())[0];
    let out = sim.exit(fresh, WaitStatus::Exited(fresh, 1));
    assert!(has_log(
        &out,
        Level::Warn,
        "1 worker(s) in a row died before booting; next spawn in 100 ms"
    ));
}

#[test]
fn a_worker_that_dies_after_booting_is_no_boot_failure() {
    let mut sim = serving(1);
    let pid = sim.pids(|_| true)[0];
    let out = sim.exit(pid, WaitStatus::Signaled(pid, Signal::SIGSEGV, false));
    assert!(has_log(&out, Level::Warn, "was sent SIGSEGV!"));
    assert!(!has_log(&out, Level::Warn, "died before booting"));
    assert_eq!(spawns(&out), 1, "replaced at once");
}

// --- stop ------------------------------------------------------------------

#[test]
fn graceful_and_quick_stop_with_their_deadlines() {
    struct Case {
        graceful: bool,
        signal: Signal,
        grace: Duration,
    }
    for case in [
        Case {
            graceful: true,
            signal: Signal::SIGTERM,
            grace: GRACEFUL,
        },
        Case {
            graceful: false,
            signal: Signal::SIGQUIT,
            grace: QUICK_STOP_GRACE,
        },
    ] {
        let mut sim = serving(2);
        let pids = sim.pids(|_| true);
        let t0 = sim.now;
        assert_eq!(sim.pool.begin_stop(case.graceful, sim.now), Outcome::Done);
        assert_eq!(
            sim.pool.phase,
            Phase::Stopping {
                graceful: case.graceful,
                deadline: t0 + case.grace
            }
        );
        let out = sim.run();
        assert!(out.contains(&Action::CloseListeners));
        assert!(out.contains(&Action::Report(Report::Stopping)));
        assert_eq!(
            signals(&out),
            pids.iter().map(|p| (*p, case.signal)).collect::<Vec<_>>()
        );
        // No respawn while stopping, and a second request changes nothing.
        assert_eq!(spawns(&sim.tick()), 0);
        assert_eq!(sim.pool.begin_stop(case.graceful, sim.now), Outcome::Done);
        assert!(signals(&sim.run()).is_empty());
        sim.exit(pids[0], WaitStatus::Exited(pids[0], 0));
        assert!(sim.pool.finished().is_none());
        sim.advance(case.grace - Duration::from_millis(1));
        sim.beat_all();
        assert!(signals(&sim.tick()).is_empty());
        sim.advance(Duration::from_millis(1));
        sim.beat_all();
        let out = sim.tick();
        assert_eq!(signals(&out), vec![(pids[1], Signal::SIGKILL)]);
        sim.exit(
            pids[1],
            WaitStatus::Signaled(pids[1], Signal::SIGKILL, false),
        );
        assert_eq!(
            sim.pool.finished(),
            Some(Halt {
                reason: None,
                status: 0
            })
        );
    }
}

#[test]
fn quick_stop_during_a_graceful_one_escalates_and_shortens_the_deadline() {
    let mut sim = serving(1);
    let pid = sim.pids(|_| true)[0];
    sim.pool.begin_stop(true, sim.now);
    sim.run();
    sim.advance(Duration::from_secs(1));
    sim.pool.begin_stop(false, sim.now);
    let out = sim.run();
    assert!(has_log(&out, Level::Info, "Quick shutdown requested"));
    assert_eq!(signals(&out), vec![(pid, Signal::SIGQUIT)]);
    assert_eq!(
        sim.pool.phase,
        Phase::Stopping {
            graceful: false,
            deadline: sim.now + QUICK_STOP_GRACE
        },
        "the 30 s graceful deadline shrinks to the quick one"
    );
    sim.advance(QUICK_STOP_GRACE);
    sim.beat_all();
    assert_eq!(signals(&sim.tick()), vec![(pid, Signal::SIGKILL)]);
}

#[test]
fn reload_is_refused_while_stopping() {
    let mut sim = serving(1);
    sim.pool.begin_stop(true, sim.now);
    assert_eq!(
        sim.pool.start_reload(),
        Err("the server is shutting down".to_string())
    );
}

// --- WINCH -----------------------------------------------------------------

#[test]
fn winch_stops_every_worker_in_daemon_mode_only() {
    let mut fg = serving(2);
    let outcome = fg.pool.stop_workers(fg.now);
    assert!(matches!(outcome, Outcome::Refused(ref why) if why.contains("daemon mode")));
    assert!(fg.run().is_empty(), "refused: nothing is done");

    let mut sim = Sim::with_limits(
        2,
        Limits {
            daemon: true,
            ..limits()
        },
    );
    sim.tick();
    sim.boot_all();
    let pids = sim.pids(|_| true);
    assert_eq!(
        sim.pool.stop_workers(sim.now),
        Outcome::StoppingWorkers { count: 2 }
    );
    let out = sim.run();
    assert_eq!(
        signals(&out),
        pids.iter()
            .map(|p| (*p, Signal::SIGTERM))
            .collect::<Vec<_>>()
    );
    assert_eq!(sim.pool.target, 0);
    sim.stopped_workers_exit();
    assert_eq!(spawns(&sim.tick()), 0, "target 0: nothing respawns");
    // TTOU leaves it at zero, TTIN brings one back.
    sim.pool.scale(ScaleTarget::Down(1));
    assert_eq!(sim.pool.target, 0);
    sim.pool.scale(ScaleTarget::Up(1));
    assert_eq!(spawns(&sim.tick()), 1);
}

#[test]
fn winch_during_a_shutdown_still_sets_the_target_to_zero() {
    let mut sim = Sim::with_limits(
        2,
        Limits {
            daemon: true,
            ..limits()
        },
    );
    sim.tick();
    sim.boot_all();
    sim.pool.begin_stop(true, sim.now);
    sim.run();
    assert_eq!(
        sim.pool.stop_workers(sim.now),
        Outcome::StoppingWorkers { count: 0 }
    );
    let out = sim.run();
    assert_eq!(sim.pool.target, 0);
    assert!(out.contains(&Action::Emit(EventKind::ScaleChanged {
        previous: 2,
        target: 0
    })));
    assert!(
        signals(&out).is_empty(),
        "every worker already has its TERM"
    );
}

// --- commands from anywhere --------------------------------------------------

#[test]
fn worker_kill_retires_a_running_worker_and_refuses_anything_else() {
    let mut sim = serving(1);
    let pid = sim.pids(|_| true)[0];
    assert_eq!(sim.pool.kill_worker(pid, sim.now), Outcome::Retired { pid });
    assert_eq!(signals(&sim.run()), vec![(pid, Signal::SIGTERM)]);
    assert_eq!(
        sim.pool.kill_worker(pid, sim.now),
        Outcome::Refused(format!("no running worker with pid {pid}"))
    );
    assert!(signals(&sim.run()).is_empty(), "never asked twice");
}

#[test]
fn signals_map_to_the_commands_control_requests_use() {
    let table = [
        (Signal::SIGHUP, Some(Command::Reload)),
        (Signal::SIGTERM, Some(Command::Stop { graceful: true })),
        (Signal::SIGINT, Some(Command::Stop { graceful: false })),
        (Signal::SIGQUIT, Some(Command::Stop { graceful: false })),
        (Signal::SIGTTIN, Some(Command::Scale(ScaleTarget::Up(1)))),
        (Signal::SIGTTOU, Some(Command::Scale(ScaleTarget::Down(1)))),
        (Signal::SIGUSR1, Some(Command::ReopenLogs)),
        (Signal::SIGUSR2, Some(Command::Upgrade(None))),
        (Signal::SIGWINCH, Some(Command::StopWorkers)),
        (Signal::SIGCHLD, None),
    ];
    for (sig, cmd) in table {
        assert_eq!(Command::from_signal(sig), cmd, "{sig}");
    }
}

#[test]
fn reopen_forwards_usr1_to_every_worker() {
    let mut sim = serving(2);
    let pids = sim.pids(|_| true);
    assert_eq!(sim.pool.reopen_logs(), Outcome::Done);
    let out = sim.run();
    assert_eq!(out[0], Action::ReopenLogs);
    assert_eq!(
        signals(&out),
        pids.iter()
            .map(|p| (*p, Signal::SIGUSR1))
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_failed_fork_backs_off_skips_the_rest_of_the_batch_and_keeps_ages_consecutive() {
    let mut sim = Sim::new(3);
    sim.failing_forks = 1;
    let out = sim.tick();
    assert!(has_log(&out, Level::Error, "Cannot fork a worker"));
    assert_eq!(
        sim.pool.workers.len(),
        0,
        "the other two spawns wait for the backoff"
    );
    sim.advance(BACKOFF_BASE);
    sim.tick();
    let ages: Vec<u64> = sim.pool.workers.iter().map(|w| w.age).collect();
    assert_eq!(
        ages,
        vec![2, 3, 4],
        "age 1 went to the failed fork; none skipped"
    );
}

#[test]
fn a_worker_whose_boot_message_was_not_read_yet_is_no_boot_failure() {
    let mut sim = Sim::new(1);
    sim.tick();
    let pid = sim.pids(|_| true)[0];
    // It marked itself booted in the scoreboard, then died at once.
    sim.pool.worker_exited(
        Exit {
            pid,
            status: WaitStatus::Exited(pid, 1),
            booted: true,
        },
        sim.now,
    );
    let out = sim.run();
    assert!(!has_log(&out, Level::Warn, "died before booting"));
    assert!(sim.pool.may_spawn(sim.now), "no backoff");
}

#[test]
fn a_boot_during_a_backoff_lets_the_next_spawn_go_at_once() {
    let mut sim = Sim::new(2);
    sim.tick();
    let pids = sim.pids(|_| true);
    sim.exit(pids[0], WaitStatus::Exited(pids[0], 1));
    assert!(!sim.pool.may_spawn(sim.now));
    sim.boot(pids[1]);
    assert!(sim.pool.may_spawn(sim.now));
    assert_eq!(
        sim.pool.workers.len(),
        2,
        "the missing worker is spawned without waiting"
    );
}

#[test]
fn a_reload_resets_the_backoff() {
    let mut sim = serving(1);
    sim.pool.scale(ScaleTarget::Up(1));
    sim.tick();
    let fresh = sim.pids(|w| !w.booted())[0];
    sim.exit(fresh, WaitStatus::Exited(fresh, 1));
    assert!(!sim.pool.may_spawn(sim.now));
    sim.reload();
    assert!(sim.pool.may_spawn(sim.now));
    assert_eq!(sim.pool.workers.count(|w| w.generation == 2), 2);
}

#[test]
fn no_startup_failure_is_reported_once_the_server_was_ready() {
    let mut sim = serving(1);
    sim.pool.scale(ScaleTarget::Up(1));
    sim.tick();
    for _ in 0..STARTUP_FAILURES + 1 {
        let pid = sim.pids(|w| !w.booted())[0];
        sim.exit(pid, WaitStatus::Exited(pid, 1));
        sim.advance(BACKOFF_MAX);
        sim.tick();
    }
    assert!(!sim
        .done
        .iter()
        .any(|a| matches!(a, Action::Report(Report::StartupFailed(_)))));
}

#[test]
fn a_fork_reports_its_event_and_hook_before_the_next_fork() {
    let mut sim = Sim::new(2);
    let out = sim.tick();
    let kinds: Vec<&str> = out
        .iter()
        .filter_map(|a| match a {
            Action::Spawn { .. } => Some("spawn"),
            Action::Emit(EventKind::WorkerSpawned { .. }) => Some("event"),
            Action::Hook("post_fork", _) => Some("post_fork"),
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds,
        ["spawn", "event", "post_fork", "spawn", "event", "post_fork"]
    );
}

// --- binary upgrade ----------------------------------------------------------

#[test]
fn one_upgrade_at_a_time_and_none_from_a_new_master_not_yet_promoted() {
    let mut sim = serving(2);
    assert_eq!(sim.pool.start_upgrade(), Ok(()));
    let child = Pid::from_raw(9000);
    assert_eq!(
        sim.pool.upgrade_started(child, sim.now),
        Outcome::Upgrading { pid: child }
    );
    let out = sim.run();
    assert!(out.contains(&Action::Emit(EventKind::UpgradeStarted { pid: 9000 })));
    let refused = sim.pool.start_upgrade().unwrap_err();
    assert!(
        refused.contains("a new master (pid 9000) is already running"),
        "{refused}"
    );

    let mut new = serving(2);
    new.pool.parent_master = Some(Pid::from_raw(1));
    let refused = new.pool.start_upgrade().unwrap_err();
    assert!(refused.contains("not yet promoted"), "{refused}");
    new.pool.promoted();
    assert_eq!(
        new.run(),
        vec![
            Action::Log(Level::Info, "Master has been promoted.".into()),
            Action::TakeOver {
                old: Pid::from_raw(1)
            }
        ]
    );
    assert_eq!(
        new.pool.start_upgrade(),
        Ok(()),
        "a promoted master may upgrade"
    );
}

#[test]
fn an_upgrade_never_touches_the_old_workers() {
    let mut sim = serving(2);
    let old = sim.pids(|_| true);
    sim.pool.upgrade_started(Pid::from_raw(9000), sim.now);
    sim.pool.upgrade_ready(Pid::from_raw(9000));
    let out = sim.run();
    assert!(out.contains(&Action::Emit(EventKind::UpgradeReady { pid: 9000 })));
    assert!(signals(&sim.tick()).is_empty());
    assert_eq!(sim.pids(|w| w.live()), old);
    assert_eq!(sim.pool.successor(), Some(Pid::from_raw(9000)));
}

#[test]
fn a_new_master_that_exits_ends_the_upgrade_and_its_files_go() {
    let child = Pid::from_raw(9000);
    for (status, reason) in [
        (
            WaitStatus::Exited(child, APP_LOAD_ERROR),
            "the new master exited with code 4: its app failed to load",
        ),
        (
            WaitStatus::Exited(child, 1),
            "the new master exited with code 1",
        ),
        (
            WaitStatus::Signaled(child, Signal::SIGTERM, false),
            "the new master was killed by SIGTERM",
        ),
    ] {
        let mut sim = serving(1);
        sim.pool.upgrade_started(child, sim.now);
        sim.run();
        sim.pool.child_master_exited(&status);
        let out = sim.run();
        assert!(
            out.contains(&Action::Emit(EventKind::UpgradeFailed {
                pid: Some(9000),
                reason: reason.into()
            })),
            "{out:?}"
        );
        assert!(out.contains(&Action::RemoveUpgradeFiles { pid: child }));
        assert!(sim.pool.child_master.is_none());
        assert_eq!(
            sim.pool.start_upgrade(),
            Ok(()),
            "another upgrade may start"
        );
        assert_eq!(sim.pool.successor(), None);
    }
}

#[test]
fn a_new_master_not_ready_in_time_is_killed() {
    let mut sim = serving(1);
    let child = Pid::from_raw(9000);
    sim.pool.upgrade_started(child, sim.now);
    sim.run();
    let (now, beats) = (sim.now, sim.beats.clone());
    let next = sim.pool.next_deadline(now, |w| Liveness {
        silence: now - beats[&w.pid.as_raw()],
        stopped: false,
    });
    assert_eq!(next, Some(now + TIMEOUT + Duration::from_millis(1)));
    sim.advance(UPGRADE_TIMEOUT - Duration::from_millis(1));
    sim.beat_all();
    assert!(signals(&sim.tick()).is_empty());
    sim.advance(Duration::from_millis(1));
    sim.beat_all();
    let out = sim.tick();
    assert_eq!(signals(&out), vec![(child, Signal::SIGKILL)]);
    assert!(signals(&sim.tick()).is_empty(), "killed once");
    sim.pool
        .child_master_exited(&WaitStatus::Signaled(child, Signal::SIGKILL, false));
    let out = sim.run();
    assert!(out.contains(&Action::Emit(EventKind::UpgradeFailed {
        pid: Some(9000),
        reason: "the new master was not ready within 60 s (--upgrade-timeout) and was killed"
            .into()
    })));
}

#[test]
fn a_ready_report_from_another_pid_is_not_readiness() {
    let mut sim = serving(1);
    sim.pool.upgrade_started(Pid::from_raw(9000), sim.now);
    sim.run();
    sim.pool.upgrade_ready(Pid::from_raw(9001));
    let out = sim.run();
    assert!(has_log(&out, Level::Warn, "pid 9001 says it is ready"));
    assert_eq!(sim.pool.successor(), None);
}

#[test]
fn a_ready_new_master_is_not_timed_out() {
    let mut sim = serving(1);
    let child = Pid::from_raw(9000);
    sim.pool.upgrade_started(child, sim.now);
    sim.pool.upgrade_ready(child);
    sim.run();
    sim.advance(UPGRADE_TIMEOUT * 2);
    sim.beat_all();
    assert!(signals(&sim.tick()).is_empty());
}

#[test]
fn winch_acts_in_the_foreground_during_an_upgrade() {
    let mut sim = serving(2);
    sim.pool.upgrade_started(Pid::from_raw(9000), sim.now);
    sim.pool.upgrade_ready(Pid::from_raw(9000));
    sim.run();
    assert_eq!(
        sim.pool.stop_workers(sim.now),
        Outcome::StoppingWorkers { count: 2 }
    );
    let out = sim.run();
    assert_eq!(signals(&out).len(), 2);
    assert_eq!(sim.pool.target, 0);
    // The new master's workers serve the listen queue: no drain needed.
    let told: Vec<&Action> = out
        .iter()
        .filter(|a| matches!(a, Action::QueueServedElsewhere { .. }))
        .collect();
    assert_eq!(told.len(), 2);
}

// --- command workers (sd_notify) --------------------------------------------

const MS: Duration = Duration::from_millis(1);

/// A pool whose workers speak sd_notify, with `limits`, its first
/// workers spawned.
fn notifying(target: usize, limits: Limits) -> Sim {
    let mut sim = Sim::with_limits(target, limits);
    sim.protocol = Protocol::SdNotify;
    sim.tick();
    sim
}

impl Sim {
    /// `pid` sends the sd_notify message `text`, then a pass of the loop.
    fn notify(&mut self, pid: Pid, text: &str) -> Vec<Action> {
        let notice = super::notify_socket::Notice::parse(text.as_bytes(), false);
        self.pool.worker_notice(pid, notice, self.now);
        let mut out = self.run();
        out.extend(self.tick());
        out
    }

    fn deadline(&self) -> Option<Instant> {
        let (now, beats) = (self.now, &self.beats);
        self.pool.next_deadline(now, |w| Liveness {
            silence: now.saturating_duration_since(beats[&w.pid.as_raw()]),
            stopped: false,
        })
    }

    fn booted(&self, pid: Pid) -> bool {
        self.pool.workers.get(pid).is_some_and(Worker::booted)
    }
}

#[test]
fn an_sd_notify_worker_is_capacity_from_ready_1_only() {
    let mut sim = notifying(2, limits());
    let pids = sim.pids(|_| true);
    // It speaks (STATUS=), so the boot grace is not for it: however long
    // it takes, only READY=1 boots it.
    sim.notify(pids[0], "STATUS=loading the model");
    sim.notify(pids[1], "STATUS=loading the model");
    sim.advance(BOOT_GRACE * 10);
    sim.tick();
    assert_eq!(sim.pool.serving_capacity(), 0);
    let out = sim.notify(pids[0], "READY=1\nSTATUS=serving");
    assert!(out.contains(&Action::Emit(EventKind::WorkerBooted {
        pid: pids[0].as_raw(),
        generation: 1
    })));
    assert_eq!(sim.pool.serving_capacity(), 1);
    assert!(!sim.done.contains(&Action::Report(Report::Ready)));
    sim.notify(pids[1], "READY=1");
    assert!(sim.done.contains(&Action::Report(Report::Ready)));
    let w = sim.pool.workers.get(pids[0]).unwrap();
    assert_eq!(
        w.notify.as_ref().unwrap().status.as_deref(),
        Some("serving")
    );
    // A second READY=1 changes nothing.
    assert!(!sim
        .notify(pids[0], "READY=1")
        .iter()
        .any(|a| matches!(a, Action::Emit(EventKind::WorkerBooted { .. }))));
}

#[test]
fn a_worker_that_says_nothing_counts_as_booted_after_the_boot_grace() {
    let mut sim = notifying(1, limits());
    let pid = sim.pids(|_| true)[0];
    let spawned = sim.now;
    assert_eq!(sim.deadline(), Some(spawned + BOOT_GRACE));
    sim.advance(BOOT_GRACE - Duration::from_millis(1));
    sim.tick();
    assert!(!sim.booted(pid));
    sim.advance(Duration::from_millis(1));
    let out = sim.tick();
    assert!(sim.booted(pid));
    assert!(has_log(&out, Level::Debug, "--boot-grace"));
    assert!(sim.done.contains(&Action::Report(Report::Ready)));
    // Booted that way it has no heartbeat check (it never pinged).
    sim.advance(TIMEOUT * 10);
    assert!(signals(&sim.tick()).is_empty());
    assert_eq!(sim.deadline(), None);
}

#[test]
fn with_no_boot_grace_only_ready_1_boots_and_the_timeout_is_a_failure_to_boot() {
    let mut sim = notifying(
        1,
        Limits {
            boot_grace: Duration::ZERO,
            ..limits()
        },
    );
    let pid = sim.pids(|_| true)[0];
    assert_eq!(sim.deadline(), Some(sim.now + TIMEOUT + MS));
    sim.advance(TIMEOUT);
    assert!(signals(&sim.tick()).is_empty());
    assert!(!sim.booted(pid));
    sim.advance(Duration::from_millis(1));
    let out = sim.tick();
    assert_eq!(signals(&out), vec![(pid, Signal::SIGABRT)]);
    assert!(has_log(
        &out,
        Level::Critical,
        &format!("WORKER TIMEOUT (pid:{pid}) while booting: no READY=1 in time")
    ));
    // Like exit 3: with no generation to fall back to, the server halts.
    sim.exit(pid, WaitStatus::Signaled(pid, Signal::SIGABRT, false));
    sim.stopped_workers_exit();
    assert_eq!(
        sim.pool.finished(),
        Some(Halt {
            reason: Some("Worker failed to boot: no READY=1 in time.".into()),
            status: WORKER_BOOT_ERROR
        })
    );
}

#[test]
fn a_new_generation_that_never_says_ready_1_rolls_back() {
    let mut sim = notifying(2, limits());
    for pid in sim.pids(|_| true) {
        sim.notify(pid, "READY=1");
    }
    let old = sim.generation_pids(1);
    sim.reload();
    let new = sim.generation_pids(2);
    for &pid in &new {
        sim.notify(pid, "STATUS=starting");
    }
    sim.advance(TIMEOUT + Duration::from_millis(1));
    sim.tick();
    // The old generation was never touched.
    assert!(signals(&sim.done).iter().all(|(pid, _)| new.contains(pid)));
    let out = sim.exit(new[0], WaitStatus::Signaled(new[0], Signal::SIGABRT, false));
    assert!(out.contains(&Action::RestorePrevious));
    assert!(has_log(
        &out,
        Level::Error,
        "Reload failed: Worker failed to boot: no READY=1 in time. Keeping generation 1 serving"
    ));
    assert_eq!(sim.pool.generation, 1);
    assert!(old
        .iter()
        .all(|&p| sim.pool.workers.get(p).is_some_and(Worker::live)));
}

#[test]
fn without_halt_on_boot_error_exit_3_4_and_a_missed_ready_back_off() {
    let lenient = Limits {
        halt_on_boot_error: false,
        boot_grace: Duration::ZERO,
        ..limits()
    };
    let mut sim = notifying(1, lenient);
    for code in [WORKER_BOOT_ERROR, APP_LOAD_ERROR] {
        let pid = sim.pids(|_| true)[0];
        let out = sim.exit(pid, WaitStatus::Exited(pid, code));
        assert!(has_log(&out, Level::Warn, "died before booting"), "{code}");
        assert!(sim.pool.is_running());
        sim.advance(BACKOFF_MAX);
        sim.tick();
    }
    let pid = sim.pids(|_| true)[0];
    sim.advance(TIMEOUT + Duration::from_millis(1));
    sim.tick();
    let out = sim.exit(pid, WaitStatus::Signaled(pid, Signal::SIGABRT, false));
    assert!(has_log(
        &out,
        Level::Warn,
        "3 worker(s) in a row died before booting"
    ));
    assert!(sim.pool.is_running());
}

#[test]
fn the_heartbeat_is_watched_from_the_first_watchdog_1_on() {
    let mut sim = notifying(1, limits());
    let pid = sim.pids(|_| true)[0];
    sim.notify(pid, "READY=1");
    // READY=1 but no WATCHDOG=1 yet: nothing to watch.
    sim.advance(TIMEOUT * 3);
    assert!(signals(&sim.tick()).is_empty());
    assert_eq!(sim.deadline(), None);
    sim.notify(pid, "WATCHDOG=1");
    assert_eq!(sim.deadline(), Some(sim.now + TIMEOUT + MS));
    sim.advance(TIMEOUT - Duration::from_secs(1));
    sim.notify(pid, "WATCHDOG=1");
    sim.advance(TIMEOUT);
    assert!(signals(&sim.tick()).is_empty());
    sim.advance(Duration::from_millis(1));
    let out = sim.tick();
    assert_eq!(signals(&out), vec![(pid, Signal::SIGABRT)]);
    assert!(has_log(
        &out,
        Level::Critical,
        &format!("WORKER TIMEOUT (pid:{pid}): no WATCHDOG=1 in time")
    ));
    // Its replacement is spawned; its exit afterwards is no boot failure.
    assert_eq!(spawns(&out), 1);
    let out = sim.exit(pid, WaitStatus::Signaled(pid, Signal::SIGABRT, false));
    assert!(!has_log(&out, Level::Warn, "died before booting"));
    assert!(sim.pool.is_running());
}

#[test]
fn extend_timeout_usec_pushes_back_the_deadline_that_runs() {
    let mut sim = notifying(1, limits());
    let pid = sim.pids(|_| true)[0];
    // Booting: READY=1 is awaited until the extension ends.
    sim.notify(pid, "EXTEND_TIMEOUT_USEC=90000000");
    sim.advance(TIMEOUT * 2);
    assert!(signals(&sim.tick()).is_empty());
    assert_eq!(sim.deadline(), Some(sim.now + TIMEOUT + MS));
    sim.notify(pid, "READY=1\nWATCHDOG=1");
    // Serving: the boot's extension is over; a new one covers a pause.
    assert_eq!(sim.deadline(), Some(sim.now + TIMEOUT + MS));
    sim.notify(pid, "EXTEND_TIMEOUT_USEC=60000000");
    sim.advance(TIMEOUT + Duration::from_secs(1));
    assert!(signals(&sim.tick()).is_empty());
    sim.advance(TIMEOUT);
    assert_eq!(signals(&sim.tick()), vec![(pid, Signal::SIGABRT)]);
}

#[test]
fn extend_timeout_usec_while_stopping_pushes_sigkill_back_but_not_past_a_shutdown() {
    let mut sim = notifying(2, limits());
    let pids = sim.pids(|_| true);
    for &pid in &pids {
        sim.notify(pid, "READY=1");
    }
    assert_eq!(
        sim.pool.kill_worker(pids[0], sim.now),
        Outcome::Retired { pid: pids[0] }
    );
    sim.run();
    sim.notify(pids[0], "EXTEND_TIMEOUT_USEC=50000000");
    sim.advance(GRACEFUL + Duration::from_secs(1));
    assert!(signals(&sim.tick()).is_empty(), "extended past the grace");
    sim.advance(Duration::from_secs(20));
    let out = sim.tick();
    assert_eq!(signals(&out), vec![(pids[0], Signal::SIGKILL)]);
    assert!(has_log(&out, Level::Warn, "did not stop in time"));
    // A shutdown's own deadline holds whatever a worker asks.
    sim.pool.begin_stop(true, sim.now);
    sim.run();
    sim.notify(pids[1], "EXTEND_TIMEOUT_USEC=500000000");
    sim.advance(GRACEFUL);
    let out = sim.tick();
    assert!(signals(&out).contains(&(pids[1], Signal::SIGKILL)));
}

#[test]
fn stopping_1_is_no_capacity_gets_its_replacement_at_once_and_a_deadline() {
    let mut sim = notifying(1, limits());
    let pid = sim.pids(|_| true)[0];
    sim.notify(pid, "READY=1");
    let out = sim.notify(pid, "STOPPING=1");
    assert!(has_log(
        &out,
        Level::Info,
        "is stopping on its own (STOPPING=1)"
    ));
    assert_eq!(spawns(&out), 1, "the replacement starts now");
    assert!(
        signals(&out).is_empty(),
        "it is not signalled: it is leaving"
    );
    assert_eq!(sim.pool.serving_capacity(), 0);
    assert_eq!(
        sim.pool.kill_worker(pid, sim.now),
        Outcome::Refused(format!("no running worker with pid {pid}"))
    );
    // Past --graceful-timeout it is killed.
    sim.advance(GRACEFUL + Duration::from_millis(1));
    let out = sim.tick();
    assert_eq!(signals(&out), vec![(pid, Signal::SIGKILL)]);
    // Its exit, whatever the status, is no crash to back off from.
    let out = sim.exit(pid, WaitStatus::Signaled(pid, Signal::SIGKILL, false));
    assert!(!has_log(&out, Level::Warn, "died before booting"));
}

#[test]
fn watchdog_trigger_times_the_worker_out_at_once() {
    let mut sim = notifying(1, limits());
    let pid = sim.pids(|_| true)[0];
    sim.notify(pid, "READY=1");
    let out = sim.notify(pid, "WATCHDOG=trigger");
    assert_eq!(signals(&out), vec![(pid, Signal::SIGABRT)]);
    assert!(has_log(&out, Level::Critical, "WATCHDOG=trigger"));
}

#[test]
fn notices_from_anyone_but_a_command_worker_count_for_nothing() {
    let mut sim = notifying(1, limits());
    let pid = sim.pids(|_| true)[0];
    sim.notify(pid, "STATUS=starting");
    let stranger = Pid::from_raw(4242);
    let out = sim.notify(stranger, "READY=1");
    assert!(has_log(
        &out,
        Level::Warn,
        "Ignoring a NOTIFY_SOCKET message from pid 4242, which is not one of this master's \
         command workers"
    ));
    assert!(!sim.booted(pid));
    // A flood is logged sparingly.
    for _ in 0..5 {
        assert!(!has_log(
            &sim.notify(stranger, "READY=1"),
            Level::Warn,
            "Ignoring"
        ));
    }
    sim.advance(super::plan::IGNORED_NOTICE_LOG_INTERVAL);
    assert!(has_log(
        &sim.notify(stranger, "READY=1"),
        Level::Warn,
        "(5 more such messages were ignored since the last one logged)"
    ));
    // A forked worker has no say on the NOTIFY_SOCKET either.
    let mut forked = Sim::new(1);
    forked.tick();
    let sync_pid = forked.pids(|_| true)[0];
    let out = forked.notify(sync_pid, "READY=1");
    assert!(has_log(
        &out,
        Level::Warn,
        "Ignoring a NOTIFY_SOCKET message"
    ));
    assert!(!forked.booted(sync_pid));
}

#[test]
fn a_program_that_cannot_be_executed_backs_off_like_a_boot_failure() {
    let mut sim = notifying(1, limits());
    let pid = sim.pids(|_| true)[0];
    sim.exit(pid, WaitStatus::Exited(pid, 1));
    sim.advance(BACKOFF_MAX);
    sim.tick();
    let age = sim.pool.workers.iter().map(|w| w.age).max().unwrap() + 1;
    sim.pool.exec_failed(
        "Cannot start a worker: cannot execute /x: No such file or directory".into(),
        age,
        sim.now,
    );
    let out = sim.run();
    assert!(has_log(&out, Level::Error, "cannot execute /x"));
    assert!(has_log(
        &out,
        Level::Warn,
        "2 worker(s) in a row died before booting"
    ));
}

#[test]
fn an_extension_sent_with_ready_1_or_stopping_1_is_one_of_the_phase_they_begin() {
    let mut sim = notifying(1, limits());
    let pid = sim.pids(|_| true)[0];
    sim.notify(pid, "READY=1\nWATCHDOG=1\nEXTEND_TIMEOUT_USEC=90000000");
    sim.advance(TIMEOUT * 2);
    assert!(
        signals(&sim.tick()).is_empty(),
        "the heartbeat was extended"
    );
    sim.notify(pid, "STOPPING=1\nEXTEND_TIMEOUT_USEC=60000000");
    sim.advance(GRACEFUL + Duration::from_secs(1));
    assert!(signals(&sim.tick()).is_empty(), "the stop was extended");
    sim.advance(GRACEFUL);
    assert_eq!(signals(&sim.tick()), vec![(pid, Signal::SIGKILL)]);
}

// --- in-place upgrade: the new image ------------------------------------

/// The new image of an in-place upgrade with `booted` and `booting`
/// workers of generation 3 (pids 50 up) adopted at a target of their
/// number, before its first pass.
fn adopting(booted: usize, booting: usize) -> (Sim, Vec<Pid>) {
    let n = booted + booting;
    let mut sim = Sim::new(n);
    let workers: Vec<Worker> = (0..n)
        .map(|i| {
            let pid = Pid::from_raw(50 + i as i32);
            sim.beats.insert(pid.as_raw(), sim.now);
            let mut w = Worker::new(pid, i as u64 + 1, 3, i, sim.now);
            if i < booted {
                w.booted_at = Some(sim.now);
            }
            w
        })
        .collect();
    let pids = workers.iter().map(|w| w.pid).collect();
    let counters = super::plan::Counters {
        spawned: 7,
        killed: 1,
        reloads: 2,
    };
    sim.pool.adopt(workers, 3, None, n, (n, n), counters);
    (sim, pids)
}

#[test]
fn adopted_workers_are_rolled_over_like_a_reload() {
    let (mut sim, adopted) = adopting(2, 0);
    let first = sim.tick();
    assert!(has_log(
        &sim.done,
        Level::Info,
        "Upgraded in place: generation 4 with 2 workers replaces the 2 workers of generation 3"
    ));
    assert_eq!(spawns(&first), 2, "a whole new generation at once");
    assert!(signals(&first).is_empty(), "nothing retired before a boot");
    let new = sim.generation_pids(4);
    // Ages and counters go on from the previous image's.
    let ages: Vec<u64> = new
        .iter()
        .map(|p| sim.pool.workers.get(*p).unwrap().age)
        .collect();
    assert_eq!(ages, vec![3, 4]);
    assert_eq!(sim.pool.counters.spawned, 9);
    assert_eq!(sim.pool.counters.reloads, 2);
    for (i, pid) in new.iter().enumerate() {
        let before = sim.done.len();
        sim.boot(*pid);
        assert_eq!(
            signals(&sim.done[before..]),
            vec![(adopted[i], Signal::SIGTERM)],
            "one adopted worker retired per new one booted"
        );
    }
    assert!(sim
        .done
        .contains(&Action::Emit(EventKind::ReloadFinished { generation: 4 })));
    // Serving before, serving after: READY=1 again, never a first Ready.
    assert!(sim.done.contains(&Action::Report(Report::Reloaded)));
    assert!(!sim.done.contains(&Action::Report(Report::Ready)));
    sim.stopped_workers_exit();
    assert_eq!(sim.pids(|_| true), new);
}

#[test]
fn an_adopted_worker_that_hangs_is_timed_out_by_its_heartbeat() {
    let (mut sim, adopted) = adopting(2, 0);
    sim.tick();
    sim.advance(TIMEOUT + Duration::from_millis(1));
    // The new generation and one adopted worker beat; the other is silent.
    sim.beat_all();
    sim.beats.insert(adopted[1].as_raw(), sim.now - TIMEOUT * 2);
    let out = sim.tick();
    assert_eq!(signals(&out), vec![(adopted[1], Signal::SIGABRT)]);
    assert!(has_log(
        &out,
        Level::Critical,
        &format!("WORKER TIMEOUT (pid:{})", adopted[1])
    ));
}

#[test]
fn an_adopted_worker_still_booting_is_no_capacity_and_goes_at_once() {
    let (mut sim, adopted) = adopting(1, 1);
    let out = sim.tick();
    assert_eq!(signals(&out), vec![(adopted[1], Signal::SIGTERM)]);
    assert_eq!(spawns(&out), 2);
}

#[test]
fn a_new_binary_whose_workers_cannot_boot_leaves_the_adopted_ones_serving() {
    let (mut sim, adopted) = adopting(2, 0);
    sim.tick();
    let new = sim.generation_pids(4);
    let out = sim.exit(new[0], WaitStatus::Exited(new[0], APP_LOAD_ERROR));
    assert!(has_log(&out, Level::Error, "Keeping generation 3 serving"));
    assert_eq!(signals(&out), vec![(new[1], Signal::SIGTERM)]);
    for pid in &adopted {
        assert!(
            sim.pool.workers.get(*pid).unwrap().live(),
            "{pid} serves on"
        );
    }
    assert!(sim.pool.finished().is_none());
}

#[test]
fn an_adopted_target_is_kept_unless_the_configuration_changed_it() {
    let mut sim = Sim::new(4);
    sim.pool
        .adopt(Vec::new(), 1, None, 3, (4, 4), Default::default());
    assert_eq!(sim.pool.target, 3, "what TTOU made of it stays");
    let mut sim = Sim::new(5);
    sim.pool
        .adopt(Vec::new(), 1, None, 3, (4, 5), Default::default());
    assert_eq!(sim.pool.target, 5, "a changed workers setting wins");
}

#[test]
fn an_upgrade_during_a_reload_falls_back_to_the_generation_that_served() {
    // Generation 1 serves (2 booted), generation 2 of the reload is
    // booting (pids 52, 53); the new image starts generation 3.
    let mut sim = Sim::new(2);
    let workers: Vec<Worker> = (0..4)
        .map(|i| {
            let pid = Pid::from_raw(50 + i);
            sim.beats.insert(pid.as_raw(), sim.now);
            let mut w = Worker::new(pid, i as u64 + 1, 1 + i as u64 / 2, i as usize, sim.now);
            if i < 2 {
                w.booted_at = Some(sim.now);
            }
            w
        })
        .collect();
    sim.pool
        .adopt(workers, 2, Some((1, 2)), 2, (2, 2), Default::default());
    let out = sim.tick();
    assert!(has_log(
        &sim.done,
        Level::Info,
        "replaces the 4 workers of generations 1 to 2 (a reload was in progress)"
    ));
    assert_eq!(spawns(&out), 2);
    // The reload's workers still booting are no capacity: they go at once.
    assert_eq!(
        signals(&out),
        vec![
            (Pid::from_raw(52), Signal::SIGTERM),
            (Pid::from_raw(53), Signal::SIGTERM)
        ]
    );
    let new = sim.generation_pids(3);
    let out = sim.exit(new[0], WaitStatus::Exited(new[0], APP_LOAD_ERROR));
    assert!(has_log(&out, Level::Error, "Keeping generation 1 serving"));
    for pid in [50, 51] {
        assert!(sim.pool.workers.get(Pid::from_raw(pid)).unwrap().live());
    }
}
