//! A snapshot of the master and its workers, read from either server and
//! normalised so that the rest of the client need not care which one it is.

use gunicornd_protocol::{
    BinaryInfo, ControlCommand, ListenerInfo, ListenersReply, ShowTarget, StatsReply, UpgradeInfo,
    WorkerInfo, WorkersReply,
};
use serde::Serialize;

use crate::client::{Client, Flavor};
use crate::error::CtlError;
use crate::procfs;

pub struct Pool {
    pub flavor: Flavor,
    pub stats: StatsReply,
    /// Oldest first, as the server sends them.
    pub workers: Vec<WorkerInfo>,
}

impl Pool {
    /// `show stats` + `show workers`, with RSS filled in from `/proc` when
    /// the server does not report it.
    pub fn fetch(client: &mut Client) -> Result<Pool, CtlError> {
        let flavor = client.flavor()?;
        let stats: StatsReply = client.call_as(&ControlCommand::Show(ShowTarget::Stats))?;
        let reply: WorkersReply = client.call_as(&ControlCommand::Show(ShowTarget::Workers))?;
        let mut workers = reply.workers;
        normalize_workers(&flavor, &mut workers);
        for w in &mut workers {
            if w.rss_kb.is_none() {
                w.rss_kb = procfs::rss_kb_of_child(w.pid, stats.pid);
            }
        }
        Ok(Pool {
            flavor,
            stats,
            workers,
        })
    }

    pub fn target(&self) -> usize {
        self.stats.workers_target
    }

    /// Workers that are capacity: booted and not asked to stop.
    pub fn serving(&self) -> usize {
        self.workers.iter().filter(|w| is_serving(w)).count()
    }

    pub fn pids(&self) -> Vec<i32> {
        self.workers.iter().map(|w| w.pid).collect()
    }

    pub fn newest_generation(&self) -> Option<u64> {
        self.stats
            .generation
            .or_else(|| self.workers.iter().filter_map(|w| w.generation).max())
    }
}

pub fn is_serving(w: &WorkerInfo) -> bool {
    w.booted && !w.aborted && w.retiring != Some(true)
}

/// Makes workers reported by `flavor` mean what gunicornd's do.
pub fn normalize_workers(flavor: &Flavor, workers: &mut [WorkerInfo]) {
    if *flavor == Flavor::Gunicorn {
        workers.iter_mut().for_each(normalize_gunicorn_worker);
    }
}

/// gunicorn's master never learns that a worker booted: `booted` is set in
/// the worker process, so `show workers` always says false. A worker's first
/// heartbeat comes from its request loop, after booting, so a heartbeat
/// means booted. Before the first one, gunicorn subtracts the heartbeat
/// file's wall-clock creation time from a monotonic clock and reports a
/// large negative age: that is "no heartbeat yet".
fn normalize_gunicorn_worker(w: &mut WorkerInfo) {
    match w.last_heartbeat {
        Some(age) if age >= 0.0 => w.booted = true,
        _ => w.last_heartbeat = None,
    }
}

/// What `gunicornctl status` shows.
#[derive(Debug, Serialize)]
pub struct StatusView {
    /// `gunicornd 0.1.0` or `gunicorn`.
    pub server: String,
    pub master_pid: i32,
    pub uptime: Option<f64>,
    pub workers_booted: usize,
    pub workers_current: usize,
    pub workers_target: usize,
    pub generation: Option<u64>,
    pub listeners: Vec<ListenerInfo>,
    /// A binary upgrade in progress, as this master sees it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<UpgradeInfo>,
    /// The binary the master runs (gunicornd only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binary: Option<BinaryInfo>,
}

impl StatusView {
    pub fn fetch(client: &mut Client) -> Result<StatusView, CtlError> {
        let pool = Pool::fetch(client)?;
        let listeners: ListenersReply =
            client.call_as(&ControlCommand::Show(ShowTarget::Listeners))?;
        Ok(StatusView {
            server: pool.flavor.describe(),
            master_pid: pool.stats.pid,
            uptime: pool.stats.uptime,
            workers_booted: pool.serving(),
            workers_current: pool.workers.len(),
            workers_target: pool.target(),
            generation: pool.newest_generation(),
            listeners: listeners.listeners,
            upgrade: pool.stats.upgrade.clone(),
            binary: pool.stats.binary.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gunicorn_worker(last_heartbeat: Option<f64>) -> WorkerInfo {
        WorkerInfo {
            pid: 1,
            age: 1,
            booted: false,
            aborted: false,
            last_heartbeat,
            kind: None,
            generation: None,
            requests: None,
            connections: None,
            in_flight: None,
            rss_kb: None,
            uptime: None,
            retiring: None,
            status: None,
        }
    }

    #[test]
    fn gunicorn_heartbeat_means_booted() {
        let mut w = gunicorn_worker(Some(0.4));
        normalize_gunicorn_worker(&mut w);
        assert!(w.booted && is_serving(&w));

        let mut w = gunicorn_worker(Some(-1_767_000_000.0));
        normalize_gunicorn_worker(&mut w);
        assert!(!w.booted);
        assert_eq!(w.last_heartbeat, None);
    }

    #[test]
    fn retiring_and_aborted_workers_are_not_capacity() {
        let mut w = gunicorn_worker(None);
        w.booted = true;
        assert!(is_serving(&w));
        w.retiring = Some(true);
        assert!(!is_serving(&w));
        w.retiring = None;
        w.aborted = true;
        assert!(!is_serving(&w));
    }
}
