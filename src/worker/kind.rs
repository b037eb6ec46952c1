//! Worker kinds: what a worker process is. The master asks the kind and
//! never assumes one; a new kind (threads, ...) is a new variant here.
//!
//! How a worker's readiness and liveness are read goes with how it reports
//! (`arbiter::workers::Protocol`): the forked kinds send "booted" on the
//! worker channel and stamp their scoreboard slot; an exec'd program speaks
//! sd_notify, which the master's plan judges.

use std::sync::Arc;

use crate::config::{Settings, WorkerClass};

use super::command::Program;
use super::WorkerSetup;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerKind {
    /// One request at a time per process, in the forked copy of the master
    /// (no exec): `sync.rs`.
    Sync,
    /// An event loop holding keep-alive connections, requests run by a
    /// pool of threads, in the forked copy of the master: `gthread.rs`.
    Gthread,
    /// A program of the user's, exec'd by the master's fork
    /// (`command.rs`): the executor starts it with `exec::spawn`, never
    /// with [`WorkerKind::run`].
    Command(Arc<Program>),
}

impl WorkerKind {
    /// The kind the settings ask for; `Err` says why it cannot run.
    pub fn from_settings(settings: &Settings) -> Result<WorkerKind, String> {
        Ok(match settings.worker_class {
            WorkerClass::Sync => WorkerKind::Sync,
            WorkerClass::Gthread => WorkerKind::Gthread,
            WorkerClass::Command => {
                WorkerKind::Command(Arc::new(Program::from_settings(settings)?))
            }
        })
    }

    /// The name gunicorn's `-k` would use, as logged at startup.
    pub fn name(&self) -> &'static str {
        match self {
            WorkerKind::Sync => "sync",
            WorkerKind::Gthread => "gthread",
            WorkerKind::Command(_) => "command",
        }
    }

    /// Run a forked kind's worker in the freshly forked child. Never
    /// returns.
    pub fn run(&self, setup: WorkerSetup<'_>) -> ! {
        match self {
            WorkerKind::Sync => super::run(setup, super::sync::serve),
            WorkerKind::Gthread => super::run(setup, super::gthread::serve),
            WorkerKind::Command(program) => {
                // The executor execs these (module documentation); a fork
                // that got here has nothing to run.
                tracing::error!(
                    "Exception in worker process: {} is exec'd, not run in a fork",
                    program.describe()
                );
                super::exit(super::WORKER_BOOT_ERROR)
            }
        }
    }
}
