//! `--wait`: poll the daemon until a change is real, with a deadline.
//!
//! The truth is the worker table (`show stats` + `show workers`), which both
//! servers have. gunicornd also streams events; when it does, the waiter
//! listens to them between polls, to re-check as soon as something happens
//! and to fail at once (with the daemon's reason) when the change cannot
//! complete, instead of running into the timeout.

use std::thread;
use std::time::{Duration, Instant};

use gunicornd_protocol::exit::{APP_LOAD_ERROR, WORKER_BOOT_ERROR};
use gunicornd_protocol::EventKind;

use crate::client::{is_stream_end, Client, EventStream, Flavor, StreamItem};
use crate::error::CtlError;

/// Longest pause between two looks at the daemon (its worker table, its
/// upgrade, its processes).
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The outcome of one look at the daemon.
pub enum Check<T> {
    Done(T),
    /// Not yet; says what is still missing (used in the timeout message).
    Pending(String),
}

/// Decides whether an event means the change will not complete; returns the
/// reason.
pub type FailureTest = fn(&EventKind) -> Option<String>;

pub struct Waiter {
    events: Option<EventStream>,
    started: Instant,
    timeout: Duration,
}

impl Waiter {
    /// Starts the clock and, on gunicornd, subscribes to events. Call it
    /// before sending the command, so that no event about it is missed.
    pub fn start(client: &mut Client, timeout: Duration) -> Result<Waiter, CtlError> {
        let events = match client.flavor()? {
            Flavor::Gunicornd(_) => Some(EventStream::subscribe(client.path())?),
            Flavor::Gunicorn => None,
        };
        Ok(Waiter {
            events,
            started: Instant::now(),
            timeout,
        })
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Runs `check` until it is done, an event fails the change, or the
    /// timeout passes (then the error says what was still `Pending`).
    pub fn until<T>(
        &mut self,
        client: &mut Client,
        what: &str,
        failure: FailureTest,
        mut check: impl FnMut(&mut Client) -> Result<Check<T>, CtlError>,
    ) -> Result<T, CtlError> {
        let deadline = self.started + self.timeout;
        loop {
            let missing = match check(client)? {
                Check::Done(value) => return Ok(value),
                Check::Pending(missing) => missing,
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(timed_out(self.timeout, what, &missing));
            }
            self.pause(POLL_INTERVAL.min(deadline - now), failure)?;
        }
    }

    /// Sleeps up to `nap`, or less if an event arrives; fails on an event
    /// that `failure` recognises.
    fn pause(&mut self, nap: Duration, failure: FailureTest) -> Result<(), CtlError> {
        let Some(stream) = &mut self.events else {
            thread::sleep(nap);
            return Ok(());
        };
        match stream.next_within(Some(nap)) {
            Ok(Some(StreamItem::Event(event))) => match failure(&event.kind) {
                Some(reason) => Err(CtlError::Failed(reason)),
                None => Ok(()),
            },
            Ok(Some(StreamItem::Unknown(_))) | Ok(None) => Ok(()),
            // The daemon closed the stream (it is going away); the next
            // check reports that with the request connection's error.
            Err(e) if is_stream_end(&e) => {
                self.events = None;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// `timed out after 2m waiting for WHAT: MISSING`, the one wording of a
/// timeout.
pub fn timed_out(timeout: Duration, what: &str, missing: &str) -> CtlError {
    CtlError::Failed(format!(
        "timed out after {} waiting for {what}: {missing}",
        humantime::format_duration(round_to_millis(timeout))
    ))
}

fn round_to_millis(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis().try_into().unwrap_or(u64::MAX))
}

/// gunicorn's exit codes for a worker that could not start.
const BOOT_FAILURE_CODES: [i32; 2] = [WORKER_BOOT_ERROR, APP_LOAD_ERROR];

/// Events that stop any wait: a worker that cannot boot, the master leaving.
pub fn pool_failure(kind: &EventKind) -> Option<String> {
    match kind {
        EventKind::WorkerExited {
            pid,
            reason,
            exit_code: Some(code),
            ..
        } if BOOT_FAILURE_CODES.contains(code) => {
            Some(format!("worker {pid} failed to boot: {reason}"))
        }
        EventKind::ShuttingDown { mode } => Some(format!("the master is shutting down ({mode})")),
        _ => None,
    }
}

/// [`pool_failure`], plus the daemon giving up on the reload.
pub fn reload_failure(kind: &EventKind) -> Option<String> {
    match kind {
        EventKind::ReloadFailed { reason, .. } => Some(format!(
            "reload failed: {reason}; the previous workers keep serving"
        )),
        other => pool_failure(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gunicornd_protocol::ShutdownMode;

    #[test]
    fn failure_events() {
        let boot = EventKind::WorkerExited {
            pid: 9,
            generation: 2,
            reason: "exited with code 3 (worker failed to boot)".into(),
            exit_code: Some(WORKER_BOOT_ERROR),
            signal: None,
        };
        assert_eq!(
            pool_failure(&boot).unwrap(),
            "worker 9 failed to boot: exited with code 3 (worker failed to boot)"
        );
        let load = EventKind::WorkerExited {
            pid: 9,
            generation: 2,
            reason: "exited with code 4 (app failed to load)".into(),
            exit_code: Some(APP_LOAD_ERROR),
            signal: None,
        };
        assert!(pool_failure(&load).is_some());
        let normal = EventKind::WorkerExited {
            pid: 9,
            generation: 1,
            reason: "exited with code 0".into(),
            exit_code: Some(0),
            signal: None,
        };
        assert_eq!(pool_failure(&normal), None);
        assert!(pool_failure(&EventKind::ShuttingDown {
            mode: ShutdownMode::Graceful
        })
        .is_some());
        let failed = EventKind::ReloadFailed {
            generation: Some(3),
            reason: "bad config".into(),
        };
        assert_eq!(pool_failure(&failed), None);
        assert_eq!(
            reload_failure(&failed).unwrap(),
            "reload failed: bad config; the previous workers keep serving"
        );
    }
}
