//! Error log and access log in gunicorn's formats.
//!
//! Everyone logs with `tracing::{debug, info, warn, error}!` and
//! [`critical!`](crate::critical); [`init`] installs the one global
//! subscriber that writes gunicorn's error-log lines:
//!
//! ```text
//! [2026-11-22 01:57:18 +0000] [8981] [INFO] Starting gunicorn 26.1.0
//! ```
//!
//! with the local time and the pid of the process that logs (workers are
//! forked from the master and inherit the subscriber). The worker calls
//! [`access`] once per request; [`reconfigure`] (HUP) and [`reopen`] (USR1)
//! change or reopen the destinations at run time. Each process reopens its
//! own descriptors: the master forwards USR1 and each worker calls
//! [`reopen`] itself.
//!
//! # Workers under `--user`
//!
//! Workers that dropped privileges must still be able to reopen the files
//! by path after a rotation. So the master, which opens (and, after a
//! rotation, creates) them first, gives each log file to the workers' user
//! and group ([`LogConfig::owner`]), as gunicorn does at startup; it does so
//! on every open and reopen, through the open descriptor (`fchown`), and
//! only for a regular file reached without a symlink and with one link, so
//! that a link planted at the path cannot hand someone else's file to the
//! workers. The master reopens before it forwards USR1, so each worker
//! finds a file it may open.
//!
//! # Fork safety
//!
//! The master forks workers, so logging must never leave a lock held or a
//! half-written buffer in a child (design rule 1):
//!
//! - no threads and no background writers: each line is formatted in the
//!   calling thread and written with one `write(2)` on an `O_APPEND`
//!   descriptor, so lines from the master and the workers never interleave
//!   and nothing is buffered in user space at fork time;
//! - the locks involved (the outputs `Mutex`, the level filter's `RwLock`
//!   inside `tracing_subscriber::reload`, tracing's callsite registry) are
//!   held only during a write, a swap or a filter change, all within the
//!   calling thread. The master is single-threaded, so no lock can be held
//!   by another thread when it forks.

mod access_log;
mod error_log;
mod level;
mod localtime;
mod state;
mod target;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use tracing::level_filters::LevelFilter;
use tracing::Subscriber;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{reload, Registry};

pub use access_log::DEFAULT_ACCESS_LOG_FORMAT;

use crate::config::Settings;
use crate::http::{PeerAddr, RequestHead};
use error_log::ErrorLogLayer;
use level::Threshold;
use state::{Outputs, Shared};

/// Log an error at gunicorn's CRITICAL level (an ERROR event marked
/// `critical = true`; shown as `[CRITICAL]`, and the only errors that pass
/// `--log-level critical`). Takes fields and a format message like
/// `tracing::error!` (but no `target:`/`parent:`), e.g.
/// `critical!(code = 4, "App failed to load: {err}")`.
#[macro_export]
macro_rules! critical {
    ($($arg:tt)+) => {
        $crate::log::__private::tracing::error!(critical = true, $($arg)+)
    };
}

#[doc(hidden)]
pub mod __private {
    pub use tracing;
}

/// Write one line of a command worker's output (its stdout or stderr, read
/// by the master) to the error log at INFO, as if worker `pid` had logged
/// it: the line carries that pid, not the master's.
pub fn worker_output(pid: u32, line: &str) {
    tracing::info!(worker_pid = pid, "{line}");
}

/// Whether the error log takes a line now without blocking the writer (a
/// pipe whose reader lags may be full): the master writes a worker's
/// output only then, and counts the line as dropped otherwise.
pub fn error_log_ready() -> bool {
    GLOBAL
        .get()
        .is_none_or(|global| global.shared.error_ready())
}

/// The logging settings, as gunicorn names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `"-"` = stderr, else a file path.
    pub errorlog: String,
    /// debug, info, warning, error or critical.
    pub loglevel: String,
    /// `None` = off, `"-"` = stdout, else a file path.
    pub accesslog: Option<String>,
    pub access_log_format: String,
    /// The uid and gid to give log files to: the workers' (`--user`,
    /// `--group`), so that they can reopen them (module documentation);
    /// `(None, None)` leaves files as they are.
    pub owner: (Option<u32>, Option<u32>),
}

impl LogConfig {
    pub fn from_settings(settings: &Settings) -> Self {
        LogConfig {
            errorlog: settings.errorlog.clone(),
            loglevel: settings.loglevel.clone(),
            accesslog: settings.accesslog.clone(),
            access_log_format: settings.access_log_format.clone(),
            owner: (settings.user, settings.group),
        }
    }
}

impl Default for LogConfig {
    /// gunicorn's defaults: errors at info to stderr, no access log.
    fn default() -> Self {
        LogConfig {
            errorlog: "-".to_string(),
            loglevel: "info".to_string(),
            accesslog: None,
            access_log_format: DEFAULT_ACCESS_LOG_FORMAT.to_string(),
            owner: (None, None),
        }
    }
}

/// One finished request (or a request that got an error answer), for the
/// access log.
#[derive(Debug, Clone, Copy)]
pub struct AccessRecord<'a> {
    pub peer: &'a PeerAddr,
    /// `None` when the request could not be parsed.
    pub head: Option<&'a RequestHead>,
    pub status: u16,
    /// Response body bytes sent.
    pub body_bytes: u64,
    pub response_headers: &'a [(String, String)],
    /// When the request started (shown by `%(t)s`).
    pub started: SystemTime,
    pub duration: Duration,
}

type LevelHandle = reload::Handle<LevelFilter, Registry>;

struct Global {
    shared: Arc<Shared>,
    level: LevelHandle,
}

static GLOBAL: OnceLock<Global> = OnceLock::new();

/// Install the global subscriber. Call once, early in the master; fails if
/// a log file cannot be opened (naming it and the OS error), if the level
/// is not one of gunicorn's, or if logging is already set up.
pub fn init(cfg: &LogConfig) -> Result<(), String> {
    if GLOBAL.get().is_some() {
        return Err("logging is already initialised".into());
    }
    let threshold = Threshold::parse(&cfg.loglevel)?;
    let shared = Arc::new(Shared::new(Outputs::open(cfg)?, threshold));
    let (subscriber, level) = subscriber(Arc::clone(&shared), threshold.filter);
    tracing::subscriber::set_global_default(subscriber)
        .map_err(|e| format!("cannot install the logger: {e}"))?;
    GLOBAL
        .set(Global { shared, level })
        .map_err(|_| "logging is already initialised".to_string())
}

/// Apply new logging settings (HUP): level, destinations, access format.
/// Everything is opened first; on any error the previous configuration
/// stays in force and the error is returned.
pub fn reconfigure(cfg: &LogConfig) -> Result<(), String> {
    let global = GLOBAL.get().ok_or("logging is not initialised")?;
    let threshold = Threshold::parse(&cfg.loglevel)?;
    let outputs = Outputs::open(cfg)?;
    global
        .level
        .reload(threshold.filter)
        .map_err(|e| format!("cannot change the log level: {e}"))?;
    global.shared.replace(outputs, threshold);
    Ok(())
}

/// Reopen the error and access log files by path (USR1), so a file that
/// was rotated away is created again; stdout/stderr are left alone. Every
/// file is tried; on failure that file keeps its old descriptor. A no-op
/// before [`init`].
pub fn reopen() -> Result<(), String> {
    match GLOBAL.get() {
        Some(global) => global.shared.reopen(),
        None => Ok(()),
    }
}

/// Write one access-log line for `rec`, in the configured format. Costs an
/// atomic load when the access log is off.
pub fn access(rec: &AccessRecord<'_>) {
    if let Some(global) = GLOBAL.get() {
        global.shared.write_access(rec);
    }
}

/// Whether the access log is on, so callers can skip gathering a record.
pub fn access_enabled() -> bool {
    GLOBAL.get().is_some_and(|global| global.shared.access_on())
}

/// The subscriber: a reloadable level filter in front of the error-log
/// layer. Separate from [`init`] so tests can run it as a local default.
fn subscriber(
    shared: Arc<Shared>,
    filter: LevelFilter,
) -> (impl Subscriber + Send + Sync, LevelHandle) {
    let (filter, handle) = reload::Layer::new(filter);
    let subscriber = tracing_subscriber::registry()
        .with(filter)
        .with(ErrorLogLayer::new(shared));
    (subscriber, handle)
}

#[cfg(test)]
mod tests;
