//! The `data` of `ok` replies, one type per command.
//!
//! Field names are gunicorn's (`gunicorn/ctl/handlers.py`) so gunicornc can
//! print gunicornd's replies. Fields gunicorn does not send are `Option`s
//! that default to `None` when decoding and are left out when `None`, so the
//! same types read replies from both servers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::command::ShutdownMode;

/// Version of gunicornd's additions to the protocol, reported by `version`.
/// Bumped when a command or reply changes incompatibly.
pub const PROTOCOL_VERSION: u32 = 1;

/// One worker, as in `show workers` and `show all`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerInfo {
    pub pid: i32,
    /// gunicorn's meaning: the spawn order (a counter bumped for every
    /// spawned worker; larger is younger), not a duration.
    pub age: u64,
    /// The worker loaded the app and counts as capacity.
    pub booted: bool,
    /// The worker was aborted (timed out). gunicorn omits it in `show all`.
    #[serde(default)]
    pub aborted: bool,
    /// Seconds since the worker's last heartbeat, `null` if unknown.
    pub last_heartbeat: Option<f64>,
    /// `"web"` in gunicorn's `show all`; absent in `show workers`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// gunicornd: which reload generation the worker belongs to (the initial
    /// workers are generation 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// gunicornd: requests served so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<u64>,
    /// gunicornd: connections the worker holds (idle between requests,
    /// arriving, or being answered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<u64>,
    /// gunicornd: of those, the ones whose request is in the app (busy);
    /// the others are idle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<u64>,
    /// gunicornd: resident set size in KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_kb: Option<u64>,
    /// gunicornd: seconds since the worker was spawned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime: Option<f64>,
    /// gunicornd: the master asked it to stop; it no longer counts as
    /// capacity and exits once its in-flight requests are done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retiring: Option<bool>,
    /// gunicornd: what a command worker last said about itself
    /// (sd_notify's `STATUS=`), if it said anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// `show workers`, sorted oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkersReply {
    pub workers: Vec<WorkerInfo>,
    pub count: usize,
}

impl WorkersReply {
    pub fn new(workers: Vec<WorkerInfo>) -> WorkersReply {
        WorkersReply {
            count: workers.len(),
            workers,
        }
    }
}

/// `show stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsReply {
    /// Seconds since the master started (`null` before it finished starting).
    pub uptime: Option<f64>,
    /// The master's pid.
    pub pid: i32,
    /// Worker processes alive, booted or not, retiring or not.
    pub workers_current: usize,
    pub workers_target: usize,
    pub workers_spawned: u64,
    pub workers_killed: u64,
    pub reloads: u64,
    /// Always `null` from gunicornd (no dirty workers); kept for gunicornc.
    #[serde(default)]
    pub dirty_arbiter_pid: Option<i32>,
    /// gunicornd: workers that booted and are not retiring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers_booted: Option<usize>,
    /// gunicornd: the current (newest) worker generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// gunicornd: a binary upgrade in progress, seen from this master.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<UpgradeInfo>,
    /// gunicornd: the binary the master runs, so that an operator can see
    /// that an upgrade took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<BinaryInfo>,
}

/// The executable the master runs, in `show stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BinaryInfo {
    /// What `/proc/PID/exe` names (with ` (deleted)` once the file was
    /// replaced on disk: a new binary is there, not yet running).
    pub path: String,
    pub inode: u64,
    /// The file's modification time, seconds since the epoch.
    pub mtime: i64,
    /// Seconds since the master exec'd it (it started, or upgraded in place).
    pub execed: f64,
}

/// `show config`: setting name → effective value. A map, because the set of
/// settings belongs to the configuration, not to the protocol.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConfigReply(pub BTreeMap<String, Value>);

/// One bound socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerInfo {
    /// `127.0.0.1:8000`, `[::1]:8000` or `unix:/path`, as gunicorn prints it.
    pub address: String,
    pub fd: i32,
    /// `tcp`, `tcp6`, `unix` (or `unknown`).
    #[serde(rename = "type", default = "unknown")]
    pub kind: String,
    /// It speaks TLS (HTTPS). Left out when false, so that a plain
    /// listener reads as gunicorn's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls: bool,
}

fn unknown() -> String {
    "unknown".to_string()
}

/// `show listeners`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenersReply {
    pub listeners: Vec<ListenerInfo>,
    pub count: usize,
}

impl ListenersReply {
    pub fn new(listeners: Vec<ListenerInfo>) -> ListenersReply {
        ListenersReply {
            count: listeners.len(),
            listeners,
        }
    }
}

/// The master in `show all`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArbiterInfo {
    pub pid: i32,
    /// `"arbiter"`
    #[serde(rename = "type")]
    pub kind: String,
    /// `"master"`
    pub role: String,
}

/// `show all`: the master and its workers (plus gunicorn's dirty pool,
/// always empty here).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShowAllReply {
    pub arbiter: ArbiterInfo,
    pub web_workers: Vec<WorkerInfo>,
    pub web_worker_count: usize,
    #[serde(default)]
    pub dirty_arbiter: Option<Value>,
    #[serde(default)]
    pub dirty_workers: Vec<Value>,
    #[serde(default)]
    pub dirty_worker_count: usize,
}

impl ShowAllReply {
    /// gunicornd's `show all`: workers get `"type": "web"` as in gunicorn.
    pub fn new(master_pid: i32, workers: Vec<WorkerInfo>) -> ShowAllReply {
        let web_workers: Vec<WorkerInfo> = workers
            .into_iter()
            .map(|w| WorkerInfo {
                kind: Some("web".to_string()),
                ..w
            })
            .collect();
        ShowAllReply {
            arbiter: ArbiterInfo {
                pid: master_pid,
                kind: "arbiter".to_string(),
                role: "master".to_string(),
            },
            web_worker_count: web_workers.len(),
            web_workers,
            dirty_arbiter: None,
            dirty_workers: Vec::new(),
            dirty_worker_count: 0,
        }
    }
}

/// `show dirty`: gunicorn's reply when no dirty arbiter runs, which is
/// always the case for gunicornd.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirtyReply {
    pub enabled: bool,
    pub pid: Option<i32>,
    pub workers: Vec<Value>,
    pub apps: Vec<Value>,
}

impl DirtyReply {
    pub fn disabled() -> DirtyReply {
        DirtyReply {
            enabled: false,
            pid: None,
            workers: Vec::new(),
            apps: Vec::new(),
        }
    }
}

/// `worker add [N]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerAddReply {
    pub added: usize,
    pub previous: usize,
    pub total: usize,
}

/// `worker remove [N]`: `removed` may be less than asked (floor of 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRemoveReply {
    pub removed: usize,
    pub previous: usize,
    pub total: usize,
}

/// `worker kill PID`. gunicorn answers an unknown pid with an `ok` reply
/// carrying `success: false`; clients must check `success`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerKillReply {
    pub success: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub killed: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `reload`: `{"status": "reloading"}` (+ gunicornd's new generation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReply {
    pub status: String,
    /// gunicornd: the generation the new workers will have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
}

impl ReloadReply {
    pub fn reloading(generation: u64) -> ReloadReply {
        ReloadReply {
            status: "reloading".to_string(),
            generation: Some(generation),
        }
    }
}

/// `upgrade` (gunicornd): a new master was started on the same sockets.
/// Its progress follows on the `events` stream (`upgrade_ready` or
/// `upgrade_failed`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeReply {
    /// `"started"`.
    pub status: String,
    /// The new master's pid.
    pub pid: i32,
    /// This (the old) master's pid.
    pub old_pid: i32,
    /// Where the new master's control socket is until it is promoted (the
    /// old path with `.2` appended), when this master has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_socket: Option<String>,
}

/// Where a binary upgrade stands, in `show stats` (gunicornd).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeInfo {
    /// On the old master: `starting` (the new master's workers are
    /// booting) or `ready` (they all booted). On a new master not yet
    /// promoted: `waiting` (for the old master to exit).
    pub phase: String,
    /// The other master: the new one's pid on the old master, the old one's
    /// on the new master.
    pub pid: i32,
}

/// Replies that only say what started: `reopen` → `{"status": "reopening"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReply {
    pub status: String,
}

impl StatusReply {
    pub fn reopening() -> StatusReply {
        StatusReply {
            status: "reopening".to_string(),
        }
    }
}

/// `shutdown [graceful|quick]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShutdownReply {
    /// `"shutting_down"`
    pub status: String,
    pub mode: ShutdownMode,
}

impl ShutdownReply {
    pub fn new(mode: ShutdownMode) -> ShutdownReply {
        ShutdownReply {
            status: "shutting_down".to_string(),
            mode,
        }
    }
}

/// `scale N|+N|-N` (gunicornd): the target before and after, in the same
/// words as `worker add`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleReply {
    pub previous: usize,
    pub total: usize,
}

/// `stop-workers` (gunicornd): how many workers were asked to stop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopWorkersReply {
    /// `"stopping_workers"`
    pub status: String,
    pub workers: usize,
}

impl StopWorkersReply {
    pub fn new(workers: usize) -> StopWorkersReply {
        StopWorkersReply {
            status: "stopping_workers".to_string(),
            workers,
        }
    }
}

/// `ping` (gunicornd).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingReply {
    pub pong: bool,
    /// The master's pid.
    pub pid: i32,
}

/// `version` (gunicornd). Python gunicorn answers it with an error, which
/// is how clients tell the two apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionReply {
    /// `"gunicornd"`
    pub name: String,
    pub version: String,
    /// [`PROTOCOL_VERSION`]
    pub protocol: u32,
}

impl VersionReply {
    /// This build's answer. The crate shares the workspace's version with
    /// gunicornd (a gunicornd test checks), so this is the server's version.
    pub fn current() -> VersionReply {
        VersionReply {
            name: "gunicornd".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            protocol: PROTOCOL_VERSION,
        }
    }
}

/// Acknowledges `events`; event frames follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventsReply {
    pub subscribed: bool,
}

/// `help`: command → one-line description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelpReply {
    pub commands: BTreeMap<String, String>,
}

impl HelpReply {
    /// Every command gunicornd understands.
    pub fn gunicornd() -> HelpReply {
        let commands = [
            ("show all", "Show the master and its workers"),
            ("show workers", "List workers with their status"),
            ("show stats", "Show server statistics"),
            ("show config", "Show the effective configuration"),
            ("show listeners", "Show bound sockets"),
            ("show dirty", "Dirty workers (none in gunicornd)"),
            ("worker add [N]", "Raise the worker target by N (default 1)"),
            (
                "worker remove [N]",
                "Lower the worker target by N (default 1, at least 1 remains)",
            ),
            (
                "worker kill <PID>",
                "Gracefully stop one worker (it is replaced)",
            ),
            (
                "scale <N|+N|-N>",
                "Set the worker target, or change it by N",
            ),
            (
                "stop-workers",
                "Stop all workers and keep the master (WINCH)",
            ),
            (
                "reload",
                "Graceful reload: new workers, then retire the old (HUP)",
            ),
            ("reopen", "Reopen log files (USR1)"),
            (
                "upgrade",
                "Binary upgrade: start a new master on the same sockets (USR2)",
            ),
            ("shutdown [graceful|quick]", "Shut down (TERM/INT)"),
            (
                "events",
                "Stream events on this connection until it is closed",
            ),
            ("ping", "Check that the master answers"),
            ("version", "Show the server name and version"),
            ("help", "Show this help message"),
        ];
        HelpReply {
            commands: commands
                .into_iter()
                .map(|(c, d)| (c.to_string(), d.to_string()))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ControlCommand;
    use serde_json::json;

    fn worker(pid: i32) -> WorkerInfo {
        WorkerInfo {
            pid,
            age: 1,
            booted: true,
            aborted: false,
            last_heartbeat: Some(0.5),
            kind: None,
            generation: Some(2),
            requests: Some(10),
            connections: None,
            in_flight: None,
            rss_kb: Some(2048),
            uptime: Some(3.0),
            retiring: Some(false),
            status: None,
        }
    }

    /// Verbatim `show workers` / `show stats` / `show all` / `show
    /// listeners` replies from gunicorn 27 (handlers.py).
    #[test]
    fn decodes_gunicorns_replies() {
        let workers: WorkersReply = serde_json::from_value(json!({"workers": [
            {"pid": 101, "age": 1, "booted": true, "aborted": false, "last_heartbeat": 0.31},
            {"pid": 102, "age": 2, "booted": false, "aborted": false, "last_heartbeat": null}
        ], "count": 2}))
        .unwrap();
        assert_eq!(workers.count, 2);
        assert_eq!(workers.workers[1].last_heartbeat, None);
        assert_eq!(workers.workers[0].generation, None);

        let stats: StatsReply = serde_json::from_value(json!({
            "uptime": 12.5, "pid": 100, "workers_current": 2, "workers_target": 2,
            "workers_spawned": 2, "workers_killed": 0, "reloads": 0, "dirty_arbiter_pid": null}))
        .unwrap();
        assert_eq!(
            (stats.pid, stats.workers_booted, stats.generation),
            (100, None, None)
        );

        let all: ShowAllReply = serde_json::from_value(json!({
            "arbiter": {"pid": 100, "type": "arbiter", "role": "master"},
            "web_workers": [{"pid": 101, "type": "web", "age": 1, "booted": true, "last_heartbeat": 0.2}],
            "web_worker_count": 1, "dirty_arbiter": null, "dirty_workers": [], "dirty_worker_count": 0}))
        .unwrap();
        assert_eq!(all.web_workers[0].kind.as_deref(), Some("web"));
        assert!(!all.web_workers[0].aborted);

        let listeners: ListenersReply = serde_json::from_value(json!({
            "listeners": [{"address": "127.0.0.1:8000", "fd": 5, "type": "tcp"}], "count": 1}))
        .unwrap();
        assert_eq!(listeners.listeners[0].kind, "tcp");

        let kill: WorkerKillReply =
            serde_json::from_value(json!({"success": false, "error": "Worker 5 not found"}))
                .unwrap();
        assert!(!kill.success);
    }

    #[test]
    fn gunicornd_replies_keep_gunicorns_field_names() {
        let reply = WorkersReply::new(vec![worker(7)]);
        assert_eq!(
            serde_json::to_value(&reply).unwrap(),
            json!({"workers": [{"pid": 7, "age": 1, "booted": true, "aborted": false, "last_heartbeat": 0.5,
                "generation": 2, "requests": 10, "rss_kb": 2048, "uptime": 3.0, "retiring": false}], "count": 1})
        );
        let all = serde_json::to_value(ShowAllReply::new(1, vec![worker(7)])).unwrap();
        assert_eq!(
            all["arbiter"],
            json!({"pid": 1, "type": "arbiter", "role": "master"})
        );
        assert_eq!(all["web_workers"][0]["type"], "web");
        assert_eq!(all["dirty_arbiter"], Value::Null);
        assert_eq!(
            serde_json::to_value(ShutdownReply::new(ShutdownMode::Quick)).unwrap(),
            json!({"status": "shutting_down", "mode": "quick"})
        );
        assert_eq!(
            serde_json::to_value(DirtyReply::disabled()).unwrap(),
            json!({"enabled": false, "pid": null, "workers": [], "apps": []})
        );
    }

    #[test]
    fn replies_round_trip() {
        fn rt<T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(v: T) {
            let back: T = serde_json::from_value(serde_json::to_value(&v).unwrap()).unwrap();
            assert_eq!(back, v);
        }
        rt(WorkersReply::new(vec![worker(1), worker(2)]));
        rt(ShowAllReply::new(3, vec![worker(1)]));
        rt(StatsReply {
            uptime: Some(1.0),
            pid: 3,
            workers_current: 2,
            workers_target: 2,
            workers_spawned: 4,
            workers_killed: 2,
            reloads: 1,
            dirty_arbiter_pid: None,
            workers_booted: Some(2),
            generation: Some(2),
            upgrade: Some(UpgradeInfo {
                phase: "ready".into(),
                pid: 99,
            }),
            binary: Some(BinaryInfo {
                path: "/usr/bin/gunicornd".into(),
                inode: 12,
                mtime: 1_700_000_000,
                execed: 3.5,
            }),
        });
        rt(UpgradeReply {
            status: "started".into(),
            pid: 99,
            old_pid: 1,
            control_socket: Some("/run/g.ctl.2".into()),
        });
        rt(ConfigReply(
            [("workers".to_string(), json!(2))].into_iter().collect(),
        ));
        rt(ListenersReply::new(vec![ListenerInfo {
            address: "unix:/tmp/s".into(),
            fd: 3,
            kind: "unix".into(),
            tls: false,
        }]));
        rt(ListenersReply::new(vec![ListenerInfo {
            address: "0.0.0.0:443".into(),
            fd: 4,
            kind: "tcp".into(),
            tls: true,
        }]));
        rt(WorkerAddReply {
            added: 1,
            previous: 2,
            total: 3,
        });
        rt(WorkerRemoveReply {
            removed: 1,
            previous: 2,
            total: 1,
        });
        rt(WorkerKillReply {
            success: true,
            killed: Some(5),
            error: None,
        });
        rt(ReloadReply::reloading(3));
        rt(StatusReply::reopening());
        rt(ScaleReply {
            previous: 2,
            total: 4,
        });
        rt(StopWorkersReply::new(2));
        rt(PingReply { pong: true, pid: 3 });
        rt(VersionReply::current());
        rt(EventsReply { subscribed: true });
        rt(HelpReply::gunicornd());
        rt(DirtyReply::disabled());
    }

    #[test]
    fn help_lists_every_command_and_each_entry_parses() {
        let help = HelpReply::gunicornd();
        for usage in help.commands.keys() {
            // Turn the usage into a concrete command: drop optional parts,
            // fill placeholders.
            let concrete: String = usage
                .split(' ')
                .filter(|w| !w.starts_with('['))
                .map(|w| match w {
                    "<PID>" => "42",
                    "<N|+N|-N>" => "+1",
                    w => w,
                })
                .collect::<Vec<_>>()
                .join(" ");
            assert!(concrete.parse::<ControlCommand>().is_ok(), "{usage}");
        }
        assert_eq!(help.commands.len(), 19);
    }
}
