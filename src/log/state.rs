//! The open log destinations and the settings read on every event, shared
//! between the tracing layer and the `access`/`reopen` entry points.
//!
//! Fork safety: the outputs sit behind a `Mutex` that is taken only for the
//! duration of one write (or a reopen/reconfigure swap) and never across a
//! call that could fork or log. The master is single-threaded, so when it
//! forks no other thread can be holding the lock, and the child starts with
//! it free.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::access_log::AccessFormat;
use super::level::Threshold;
use super::localtime::LocalTime;
use super::target::LogTarget;
use super::{AccessRecord, LogConfig};

pub(crate) struct Shared {
    outputs: Mutex<Outputs>,
    critical_only: AtomicBool,
    /// Mirrors `outputs.access.is_some()` so a disabled access log costs one
    /// atomic load per request.
    access_on: AtomicBool,
}

pub(crate) struct Outputs {
    error: LogTarget,
    access: Option<AccessLog>,
}

struct AccessLog {
    target: LogTarget,
    format: AccessFormat,
    /// Reused line buffer (rendering happens under the lock).
    line: String,
}

impl Outputs {
    /// Open every destination `cfg` names; nothing is kept if one fails.
    pub fn open(cfg: &LogConfig) -> Result<Outputs, String> {
        let error = LogTarget::open(&cfg.errorlog, LogTarget::Stderr, cfg.owner)?;
        let access = match &cfg.accesslog {
            None => None,
            Some(spec) => Some(AccessLog {
                target: LogTarget::open(spec, LogTarget::Stdout, cfg.owner)?,
                format: AccessFormat::parse(&cfg.access_log_format),
                line: String::new(),
            }),
        };
        Ok(Outputs { error, access })
    }
}

impl Shared {
    pub fn new(outputs: Outputs, threshold: Threshold) -> Shared {
        Shared {
            critical_only: AtomicBool::new(threshold.critical_only),
            access_on: AtomicBool::new(outputs.access.is_some()),
            outputs: Mutex::new(outputs),
        }
    }

    pub fn critical_only(&self) -> bool {
        self.critical_only.load(Ordering::Relaxed)
    }

    pub fn access_on(&self) -> bool {
        self.access_on.load(Ordering::Relaxed)
    }

    /// Nothing is reported if the write fails: there is nowhere left to
    /// report it, and serving must go on.
    pub fn write_error(&self, line: &[u8]) {
        let _ = self.lock().error.write_line(line);
    }

    /// Whether a line of up to `PIPE_BUF` bytes can be written to the error
    /// log now without waiting (always, for a file; a pipe or terminal may
    /// be full when its reader lags).
    pub fn error_ready(&self) -> bool {
        self.lock().error.ready()
    }

    pub fn write_access(&self, rec: &AccessRecord<'_>) {
        if !self.access_on() {
            return;
        }
        let started = LocalTime::at(rec.started);
        let pid = std::process::id();
        let mut outputs = self.lock();
        let Some(access) = outputs.access.as_mut() else {
            return;
        };
        access.line.clear();
        access.format.render(rec, pid, &started, &mut access.line);
        access.line.push('\n');
        let _ = access.target.write_line(access.line.as_bytes());
    }

    /// Swap in new outputs and threshold (HUP). The old files are closed.
    pub fn replace(&self, outputs: Outputs, threshold: Threshold) {
        let old = {
            let mut guard = self.lock();
            self.access_on
                .store(outputs.access.is_some(), Ordering::Relaxed);
            self.critical_only
                .store(threshold.critical_only, Ordering::Relaxed);
            std::mem::replace(&mut *guard, outputs)
        };
        drop(old);
    }

    /// Reopen every file destination in place (USR1). All are tried; the
    /// errors are joined.
    pub fn reopen(&self) -> Result<(), String> {
        let mut outputs = self.lock();
        let mut errors = Vec::new();
        if let Err(e) = outputs.error.reopen() {
            errors.push(e);
        }
        if let Some(access) = outputs.access.as_mut() {
            if let Err(e) = access.target.reopen() {
                errors.push(e);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// A panic while holding the lock (there is no code that can panic
    /// there, short of allocation failure) must not silence logging forever.
    fn lock(&self) -> MutexGuard<'_, Outputs> {
        self.outputs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
