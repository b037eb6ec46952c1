//! Worker kinds: what runs in a worker after `fork()`, and how the master
//! judges that it is alive. The master asks the kind and never assumes one;
//! a new kind (threads, an exec'd program) is a new variant here.

use std::time::Duration;

use crate::config::Settings;
use crate::scoreboard::Slot;

use super::WorkerSetup;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerKind {
    /// One request at a time per process, in the forked copy of the master
    /// (no exec): `sync.rs`.
    Sync,
}

impl WorkerKind {
    /// The kind the settings ask for.
    pub fn from_settings(_settings: &Settings) -> WorkerKind {
        WorkerKind::Sync
    }

    /// The name gunicorn's `-k` would use, as logged at startup.
    pub fn name(self) -> &'static str {
        match self {
            WorkerKind::Sync => "sync",
        }
    }

    /// Run the worker in the freshly forked child. Never returns.
    pub fn run(self, setup: WorkerSetup<'_>) -> ! {
        match self {
            WorkerKind::Sync => super::run(setup, super::sync::serve),
        }
    }

    /// How long the worker has given no sign of life. The forked kinds
    /// stamp their scoreboard slot while they make progress.
    pub fn silence(self, slot: &Slot) -> Duration {
        match self {
            WorkerKind::Sync => slot.silence(),
        }
    }
}
