//! Worker signal dispositions, as gunicorn's worker sets them up
//! (`init_signals` in `gunicorn/workers/base.py`), with gunicorn's quirk
//! fixed: HUP and USR2 sent straight to a worker are ignored, not fatal.
//!
//! TERM and USR1 become bytes on the worker's own self-pipe (graceful stop and
//! log reopen happen in the serving loop); QUIT/INT and ABRT end the process
//! right in the handler, because they must work even when the loop is stuck.
//! They end it with gunicorn's exit codes (0 and 1), which the master reads,
//! so no signal here falls back to its default action (that would report a
//! death by signal instead).

use nix::sys::signal::{SaFlags, SigHandler, Signal};

use crate::signals::{exit_on, set_handler, SignalPipe};

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
    exit_on(&[Signal::SIGQUIT, Signal::SIGINT], super::EXIT_OK)?;
    exit_on(&[Signal::SIGABRT], super::EXIT_ABORTED)?;
    // Restarting system calls: a TERM must not break the request being
    // served; the loop sees it at its next pass (the pipe wakes it if it is
    // waiting).
    pipe.forward_to_pipe(&[Signal::SIGTERM, Signal::SIGUSR1], true)?;
    Ok(pipe)
}
