//! Waiting for facts: every wait in the tests is a condition polled until
//! a deadline, here in one loop ([`wait_for`]) with three ways to use it.

use std::thread;
use std::time::{Duration, Instant};

/// How long a fact may take when the test names no deadline of its own.
/// Generous: the test machine is small and shared.
pub const DEADLINE: Duration = Duration::from_secs(60);

const POLL_PAUSE: Duration = Duration::from_millis(20);

/// Calls `f` every 20 ms until it returns `Some` (that value) or `timeout`
/// passes (`None`). `f` runs at least once, and once more at the deadline.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(POLL_PAUSE);
    }
}

/// Whether `cond` came true within `timeout`.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    wait_for(timeout, || cond().then_some(())).is_some()
}

/// Like [`wait_until`] but panics with `what` on timeout.
#[track_caller]
pub fn expect_within(timeout: Duration, what: &str, cond: impl FnMut() -> bool) {
    assert!(
        wait_until(timeout, cond),
        "timed out after {timeout:?} waiting for: {what}"
    );
}

/// The first `Some` that `f` returns within [`DEADLINE`]; panics with
/// `what` after it.
#[track_caller]
pub fn poll<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    match wait_for(DEADLINE, f) {
        Some(v) => v,
        None => panic!("timed out after {DEADLINE:?} waiting for {what}"),
    }
}
