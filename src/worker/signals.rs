//! Worker signal dispositions, as gunicorn's worker sets them up
//! (`init_signals` in `gunicorn/workers/base.py`), with gunicorn's quirk
//! fixed: HUP and USR2 sent straight to a worker are ignored, not fatal.
//!
//! TERM and USR1 become bytes on the worker's own self-pipe (graceful stop and
//! log reopen happen in the serving loop). QUIT/INT and ABRT end the process
//! right in the handler, because they must work even when the loop is stuck;
//! they end it with gunicorn's exit codes (0 and 1), which the master reads,
//! so no signal here falls back to its default action (that would report a
//! death by signal instead).
//!
//! Unless a hook must run first (a Python configuration file's `worker_int`
//! or `worker_abort`): code that runs a hook cannot run in a signal handler,
//! so for a hooked signal the handler only passes it on, to the self-pipe
//! (the loop then calls [`super::quit`]) and to the Python app, which
//! notices it between two bytecodes even when it never returns to the loop
//! (as gunicorn's Python-level handlers do). A worker stuck where neither
//! can see it is killed by the master after the graceful timeout, as in
//! gunicorn.

use std::sync::atomic::{AtomicU64, Ordering};

use nix::sys::signal::{SaFlags, SigHandler, Signal};

use crate::signals::{set_handler, SignalPipe};

/// One bit per signal number whose hook must run before the exit.
static HOOKED: AtomicU64 = AtomicU64::new(0);

/// The quick-stop signals and the exit code each ends the worker with.
pub const QUICK_STOPS: [(Signal, i32); 3] = [
    (Signal::SIGQUIT, super::EXIT_OK),
    (Signal::SIGINT, super::EXIT_OK),
    (Signal::SIGABRT, super::EXIT_ABORTED),
];

/// The exit code for a quick-stop signal (`None` for any other signal).
pub fn quick_stop_code(sig: Signal) -> Option<i32> {
    QUICK_STOPS.iter().find(|(s, _)| *s == sig).map(|(_, c)| *c)
}

/// From now on `sig` runs its hook before the worker exits (only Python
/// config files have such hooks).
#[cfg(feature = "python")]
pub fn hook(sig: Signal) {
    HOOKED.fetch_or(1 << sig as u32, Ordering::SeqCst);
}

fn hooked(sig: Signal) -> bool {
    HOOKED.load(Ordering::SeqCst) & (1 << sig as u32) != 0
}

/// Replace the master's handlers (inherited through fork) with the worker's.
pub fn install() -> nix::Result<SignalPipe> {
    // First: this unregisters the master's forwarding actions, which fork
    // copied into the worker along with signal-hook's handler.
    let pipe = SignalPipe::new()?;
    set_handler(
        &[
            Signal::SIGHUP,
            Signal::SIGWINCH,
            Signal::SIGUSR2,
            Signal::SIGTTIN,
            Signal::SIGTTOU,
            Signal::SIGPIPE,
        ],
        SigHandler::SigIgn,
        SaFlags::empty(),
    )?;
    set_handler(&[Signal::SIGCHLD], SigHandler::SigDfl, SaFlags::empty())?;
    for (sig, code) in QUICK_STOPS {
        // SAFETY: the action is async-signal-safe: an atomic load, then
        // `_exit(2)` or `interrupt_app` (async-signal-safe, see there).
        unsafe {
            signal_hook::low_level::register(sig as libc::c_int, move || {
                if !hooked(sig) {
                    signal_hook::low_level::exit(code)
                }
                interrupt_app(sig);
            })
        }
        .map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EINVAL)))?;
    }
    // Registered after the actions above, so it runs only for a hooked
    // quick stop (an unhooked one has ended the process already).
    let quick: Vec<Signal> = QUICK_STOPS.iter().map(|(s, _)| *s).collect();
    pipe.forward_to_pipe(&quick, true)?;
    // Restarting system calls: a TERM must not break the request being
    // served; the loop sees it at its next pass (the pipe wakes it if it is
    // waiting).
    pipe.forward_to_pipe(&[Signal::SIGTERM, Signal::SIGUSR1], true)?;
    Ok(pipe)
}

/// Let the app's own code see `sig` (only Python apps have hooks).
fn interrupt_app(sig: Signal) {
    #[cfg(feature = "python")]
    crate::python::interrupt(sig);
    #[cfg(not(feature = "python"))]
    let _ = sig;
}
