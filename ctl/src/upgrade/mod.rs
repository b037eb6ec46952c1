//! `gunicornctl upgrade`: a whole binary upgrade in one command.
//!
//! Both servers do it the same way: a new master is started on the same
//! listening sockets (it serves beside the old one once its workers have
//! booted), then the old workers and the old master stop, and the new
//! master takes over the pidfile (and, on gunicornd, the control socket
//! path). gunicornd is driven through its control socket ([`control`]);
//! Python gunicorn, whose protocol has no upgrade command, with the signals
//! of its documented procedure ([`signals`]).
//!
//! Until the old master is asked to exit, any failure (or the timeout) is
//! rolled back: the old master gets its workers back if they were stopped,
//! the new master is stopped if it still runs, and the old one serves as
//! before. After that request there is nothing to roll back to; a failure
//! is reported as it is.

mod control;
mod signals;

use std::fmt::Display;
use std::io::Write;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::client::{Client, Flavor};
use crate::commands::Output;
use crate::error::CtlError;
use crate::render;
use crate::wait::{timed_out, POLL_INTERVAL};

/// How long a rollback may take on top of `--timeout`: bringing the old
/// workers back and stopping the new master.
const ROLLBACK_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a master that is starting (the new one) or exiting (the old
/// one) may take to answer before the question is left for the next pass,
/// so that the wait loops keep their deadline.
const STARTING_REPLY_TIMEOUT: Duration = Duration::from_secs(1);

/// One upgrade in progress: what is known so far, and where progress goes.
struct Run<'a> {
    out: &'a mut dyn Write,
    /// `--json`: no progress lines, one outcome object at the end.
    json: bool,
    started: Instant,
    timeout: Duration,
    old_pid: Option<i32>,
    new_pid: Option<i32>,
    /// Something the operator should know about an upgrade that worked.
    warning: Option<String>,
}

impl Run<'_> {
    /// One progress line, as it happens. Progress is informational: a
    /// reader that went away must not interrupt an upgrade halfway, so
    /// write errors are ignored.
    fn say(&mut self, line: impl Display) {
        if !self.json {
            let _ = writeln!(self.out, "{line}");
            let _ = self.out.flush();
        }
    }

    fn deadline(&self) -> Instant {
        self.started + self.timeout
    }

    /// The timeout error, or `None` while there is time left.
    fn check_deadline(&self, what: &str, missing: impl FnOnce() -> String) -> Option<CtlError> {
        (Instant::now() >= self.deadline()).then(|| timed_out(self.timeout, what, &missing()))
    }

    /// Time left, capped at `nap`: how long one pause may be.
    fn nap(&self, nap: Duration) -> Duration {
        nap.min(self.deadline().saturating_duration_since(Instant::now()))
    }
}

/// How a takeover stopped short.
enum Abort {
    /// Before the old master was asked to exit: roll back, with this reason.
    RollBack(String),
    /// Nothing to roll back (nothing was changed yet, or the old master is
    /// already exiting): report as is.
    Stop(CtlError),
}

impl From<CtlError> for Abort {
    fn from(e: CtlError) -> Abort {
        Abort::Stop(e)
    }
}

/// What a rollback did, and what it could not do.
#[derive(Default)]
struct Rollback {
    done: Vec<String>,
    problems: Vec<String>,
}

impl Rollback {
    /// The final error: the reason, then what the rollback achieved.
    fn into_error(self, reason: &str, old_pid: i32) -> CtlError {
        let message = if !self.problems.is_empty() {
            format!(
                "{reason}; rollback incomplete: {}",
                self.problems.join("; ")
            )
        } else if self.done.is_empty() {
            format!("{reason}; the old master {old_pid} keeps serving")
        } else {
            format!(
                "{reason}; rolled back ({}): the old master {old_pid} keeps serving",
                self.done.join(", ")
            )
        };
        CtlError::Failed(message)
    }
}

/// Polls `f` every [`POLL_INTERVAL`] until it gives a value or `until`
/// passes.
fn poll_until<T>(until: Instant, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        let now = Instant::now();
        if now >= until {
            return None;
        }
        thread::sleep(POLL_INTERVAL.min(until - now));
    }
}

/// What `--json` prints, once, whatever happened.
#[derive(Serialize)]
struct Outcome<'a> {
    /// `upgraded` or `failed`.
    status: &'static str,
    old_pid: Option<i32>,
    new_pid: Option<i32>,
    seconds: f64,
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    warning: Option<&'a str>,
}

pub fn upgrade(
    path: &Path,
    timeout: Duration,
    in_place: bool,
    o: &mut Output,
) -> Result<(), CtlError> {
    let mut run = Run {
        out: &mut *o.out,
        json: o.json,
        started: Instant::now(),
        timeout,
        old_pid: None,
        new_pid: None,
        warning: None,
    };
    let result = Client::connect(path).and_then(|mut client| match client.flavor()? {
        Flavor::Gunicornd(_) if in_place => control::upgrade_in_place(&mut client, &mut run),
        Flavor::Gunicornd(_) => control::upgrade(&mut client, &mut run),
        Flavor::Gunicorn if in_place => Err(CtlError::Failed(
            "Python gunicorn cannot upgrade in place; drop --in-place".into(),
        )),
        Flavor::Gunicorn => signals::upgrade(&mut client, &mut run),
    });
    let seconds = run.started.elapsed().as_secs_f64();
    if let Some(warning) = &run.warning {
        if !run.json {
            let _ = writeln!(run.out, "warning: {warning}");
        }
    }
    if run.json {
        let outcome = Outcome {
            status: if result.is_ok() { "upgraded" } else { "failed" },
            old_pid: run.old_pid,
            new_pid: run.new_pid,
            seconds,
            error: result.as_ref().err().map(ToString::to_string),
            warning: run.warning.as_deref(),
        };
        render::write_json(run.out, &outcome)?;
    } else if result.is_ok() {
        writeln!(
            run.out,
            "upgraded in {}: old master {}, new master {}",
            render::duration(seconds),
            render::dash(run.old_pid),
            render::dash(run.new_pid)
        )?;
    }
    result
}
