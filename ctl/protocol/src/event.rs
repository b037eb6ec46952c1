//! Frames of the `events` stream (gunicornd only; gunicorn has no events).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::command::ShutdownMode;

/// One event: when it happened and what happened. Serialised flat:
/// `{"time": 1767225600.25, "event": "worker_booted", "pid": 42, "generation": 1}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Wall-clock time the master saw it, in seconds since the Unix epoch.
    pub time: f64,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened. The `event` field holds the snake_case variant name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// A worker process was forked; it is not capacity until it boots.
    WorkerSpawned { pid: i32, generation: u64 },
    /// A worker loaded the app and now counts as capacity.
    WorkerBooted { pid: i32, generation: u64 },
    /// The master asked a worker to stop. It stays listed (with
    /// `retiring: true`) until it exits.
    WorkerRetired {
        pid: i32,
        generation: u64,
        reason: RetireReason,
    },
    /// A worker process ended and was reaped. `reason` is for people
    /// ("exited with code 3 (worker failed to boot)", "killed by SIGKILL
    /// (worker timeout)"); `exit_code`/`signal` are for programs.
    WorkerExited {
        pid: i32,
        generation: u64,
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signal: Option<i32>,
    },
    /// A reload began; `generation` is the new workers' generation.
    ReloadStarted { generation: u64 },
    /// Every worker of `generation` booted and every older one has exited.
    ReloadFinished { generation: u64 },
    /// The reload was abandoned (the new configuration did not load, or its
    /// workers could not boot); the previous generation keeps serving.
    ReloadFailed {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        generation: Option<u64>,
        reason: String,
    },
    /// The target number of workers changed (scale, worker add/remove,
    /// TTIN/TTOU).
    ScaleChanged { previous: usize, target: usize },
    /// Binary upgrade (USR2), on the old master's stream: a new master
    /// (`pid`) was started on the same sockets.
    UpgradeStarted { pid: i32 },
    /// The new master's workers have all booted: it serves beside the old
    /// one and takes over when the old master exits.
    UpgradeReady { pid: i32 },
    /// The upgrade ended without a takeover: the new master could not be
    /// started, did not become ready in time, or exited. The old master
    /// serves as before. `pid` is the new master's, when it had one.
    UpgradeFailed {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pid: Option<i32>,
        reason: String,
    },
    /// On the new master's stream: the old master (`old_pid`) exited and
    /// this one (`pid`) took over its pidfile and control socket path.
    Promoted { pid: i32, old_pid: i32 },
    /// The master began to shut down; the stream ends when it is gone.
    ShuttingDown { mode: ShutdownMode },
}

/// Why a worker was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetireReason {
    /// Replaced by a worker of a newer generation.
    Reload,
    /// Above the target count after a scale-down.
    Scale,
    /// Served `max_requests` requests.
    MaxRequests,
    /// Missed its heartbeat for longer than `timeout`.
    Timeout,
    /// `worker kill PID`.
    Killed,
    /// `stop-workers` (WINCH).
    StopWorkers,
}

impl fmt::Display for RetireReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RetireReason::Reload => "reload",
            RetireReason::Scale => "scale down",
            RetireReason::MaxRequests => "max requests reached",
            RetireReason::Timeout => "heartbeat timeout",
            RetireReason::Killed => "worker kill",
            RetireReason::StopWorkers => "stop-workers",
        })
    }
}

/// One line for people, used by `gunicornctl events` and fit for logs.
impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventKind::WorkerSpawned { pid, generation } => {
                write!(f, "worker {pid} spawned (generation {generation})")
            }
            EventKind::WorkerBooted { pid, generation } => {
                write!(f, "worker {pid} booted (generation {generation})")
            }
            EventKind::WorkerRetired {
                pid,
                generation,
                reason,
            } => {
                write!(
                    f,
                    "worker {pid} retiring (generation {generation}): {reason}"
                )
            }
            EventKind::WorkerExited {
                pid,
                generation,
                reason,
                ..
            } => {
                write!(f, "worker {pid} exited (generation {generation}): {reason}")
            }
            EventKind::ReloadStarted { generation } => {
                write!(f, "reload started (generation {generation})")
            }
            EventKind::ReloadFinished { generation } => {
                write!(f, "reload finished (generation {generation})")
            }
            EventKind::ReloadFailed {
                generation: Some(g),
                reason,
            } => {
                write!(f, "reload failed (generation {g}): {reason}")
            }
            EventKind::ReloadFailed {
                generation: None,
                reason,
            } => write!(f, "reload failed: {reason}"),
            EventKind::ScaleChanged { previous, target } => {
                write!(f, "workers target {previous} -> {target}")
            }
            EventKind::UpgradeStarted { pid } => write!(f, "upgrade: new master {pid} started"),
            EventKind::UpgradeReady { pid } => {
                write!(
                    f,
                    "upgrade: new master {pid} is ready (all its workers booted)"
                )
            }
            EventKind::UpgradeFailed { pid, reason } => match pid {
                Some(pid) => write!(f, "upgrade failed (new master {pid}): {reason}"),
                None => write!(f, "upgrade failed: {reason}"),
            },
            EventKind::Promoted { pid, old_pid } => {
                write!(f, "master {pid} promoted (old master {old_pid} exited)")
            }
            EventKind::ShuttingDown { mode } => write!(f, "shutting down ({mode})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Response;
    use serde_json::{json, Value};

    fn all_kinds() -> Vec<EventKind> {
        vec![
            EventKind::WorkerSpawned {
                pid: 1,
                generation: 1,
            },
            EventKind::WorkerBooted {
                pid: 1,
                generation: 1,
            },
            EventKind::WorkerRetired {
                pid: 1,
                generation: 1,
                reason: RetireReason::MaxRequests,
            },
            EventKind::WorkerExited {
                pid: 1,
                generation: 1,
                reason: "killed by SIGKILL (worker timeout)".into(),
                exit_code: None,
                signal: Some(9),
            },
            EventKind::ReloadStarted { generation: 2 },
            EventKind::ReloadFinished { generation: 2 },
            EventKind::ReloadFailed {
                generation: None,
                reason: "bad config".into(),
            },
            EventKind::ScaleChanged {
                previous: 2,
                target: 4,
            },
            EventKind::UpgradeStarted { pid: 9 },
            EventKind::UpgradeReady { pid: 9 },
            EventKind::UpgradeFailed {
                pid: Some(9),
                reason: "the new master exited with code 4".into(),
            },
            EventKind::UpgradeFailed {
                pid: None,
                reason: "cannot execute /x".into(),
            },
            EventKind::Promoted { pid: 9, old_pid: 1 },
            EventKind::ShuttingDown {
                mode: ShutdownMode::Quick,
            },
        ]
    }

    #[test]
    fn event_frames_round_trip() {
        for kind in all_kinds() {
            let frame = Response::event(
                7,
                Event {
                    time: 1767225600.25,
                    kind,
                },
            );
            let text = serde_json::to_string(&frame).unwrap();
            assert_eq!(
                serde_json::from_str::<Response>(&text).unwrap(),
                frame,
                "{text}"
            );
        }
    }

    #[test]
    fn event_frame_shape_is_flat() {
        let frame = Response::event(
            7,
            Event {
                time: 2.5,
                kind: EventKind::WorkerExited {
                    pid: 42,
                    generation: 3,
                    reason: "exited with code 0".into(),
                    exit_code: Some(0),
                    signal: None,
                },
            },
        );
        assert_eq!(
            serde_json::to_value(&frame).unwrap(),
            json!({"id": 7, "status": "event", "data": {
                "time": 2.5, "event": "worker_exited", "pid": 42, "generation": 3,
                "reason": "exited with code 0", "exit_code": 0}})
        );
    }

    #[test]
    fn unknown_events_fail_to_decode_so_clients_can_fall_back_to_raw() {
        let raw: Value = json!({"time": 1.0, "event": "solar_flare"});
        assert!(serde_json::from_value::<Event>(raw).is_err());
    }

    #[test]
    fn display_is_one_readable_line() {
        assert_eq!(
            EventKind::WorkerRetired {
                pid: 5,
                generation: 2,
                reason: RetireReason::Scale
            }
            .to_string(),
            "worker 5 retiring (generation 2): scale down"
        );
        for kind in all_kinds() {
            assert!(!kind.to_string().contains('\n'));
        }
    }
}
