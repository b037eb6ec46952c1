//! Worker signal dispositions (reference §2.3), with gunicorn's quirk fixed:
//! HUP and USR2 sent straight to a worker are ignored, not fatal.
//!
//! TERM and USR1 become bytes on the worker's own self-pipe (graceful stop and
//! log reopen happen in the serving loop); QUIT/INT and ABRT end the process
//! right in the handler, because they must work even when the loop is stuck.

use nix::sys::signal::{SaFlags, SigHandler, Signal};

use crate::signals::{set_handler, SignalPipe};

extern "C" fn quit_now(_: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(super::EXIT_OK) }
}

extern "C" fn abort_now(_: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(super::EXIT_ABORTED) }
}

/// Replace the master's handlers (inherited through fork) with the worker's.
pub fn install() -> nix::Result<SignalPipe> {
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
    set_handler(
        &[Signal::SIGQUIT, Signal::SIGINT],
        SigHandler::Handler(quit_now),
        SaFlags::empty(),
    )?;
    set_handler(
        &[Signal::SIGABRT],
        SigHandler::Handler(abort_now),
        SaFlags::empty(),
    )?;
    // SA_RESTART: a TERM must not break the request being served; the loop
    // sees it at its next pass (the pipe wakes it if it is waiting).
    pipe.forward_to_pipe(&[Signal::SIGTERM, Signal::SIGUSR1], true)?;
    Ok(pipe)
}
