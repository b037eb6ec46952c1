//! Signals as bytes on a self-pipe, one byte per delivery, in arrival order.
//!
//! One byte per delivery is the point: the master counts signals. Ten `TTIN`s
//! must add ten workers and ten `TTOU`s remove ten, so no delivery may be
//! folded into another. signal-hook's `Signals` iterator keeps one "pending"
//! flag per signal number (ten TTINs between two loop passes read back as
//! one), and its `low_level::pipe` writes the same byte for every signal; both
//! lose the count. gunicorn 23 loses it too: its handler drops a signal when
//! five are already queued (`SIG_QUEUE` in `gunicorn/arbiter.py`).
//!
//! So signal-hook is used one level lower: [`signal_hook::low_level::register`]
//! adds an action to its handler that does the one async-signal-safe thing
//! that keeps every delivery, `write(2)` the signal number to a non-blocking
//! pipe the event loop polls, leaving `errno` as it found it. (The kernel
//! itself merges a standard signal that is sent again while still pending;
//! nothing in userspace can undo that.)
//!
//! A process has one signal pipe at a time. Actions registered with
//! signal-hook survive `fork()`, so a forked worker that calls
//! [`SignalPipe::new`] first unregisters every action of the previous pipe
//! (the master's): no delivery in the worker can then reach the master's pipe
//! or be written twice, and the worker registers its own signals afresh.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Mutex;

use nix::fcntl::OFlag;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use signal_hook::SigId;

/// The write end of the current pipe, read by the action at each delivery.
static WRITE_FD: AtomicI32 = AtomicI32::new(-1);

/// Set by the action *after* its byte is in the pipe, so that a hot loop
/// can skip the `read(2)` when no signal came (see [`SignalPipe::drain`]).
static PENDING: AtomicBool = AtomicBool::new(false);

/// The signal-hook actions that forward to the current pipe. Only touched
/// outside signal handlers (registration and [`SignalPipe::new`]); the
/// master is single-threaded when it forks, so the lock is free in the child.
static FORWARDED: Mutex<Vec<SigId>> = Mutex::new(Vec::new());

/// The read end of the pipe the action writes to.
pub struct SignalPipe {
    read: OwnedFd,
    // Kept open for the action; closed when the pipe is dropped.
    write: OwnedFd,
}

/// The action run by signal-hook's handler at each delivery of a forwarded
/// signal. Async-signal-safe: two atomics and one `write(2)`, no allocation,
/// no lock. `errno` is restored so the interrupted code never sees the
/// write's (signal-hook's handler does the same; this does not rely on it).
fn forward(sig: libc::c_int) {
    let errno = nix::errno::Errno::last_raw();
    let fd = WRITE_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = sig as u8;
        // SAFETY: writing one byte from a live local; a full pipe (EAGAIN)
        // only means the loop has many bytes to read already.
        unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
        PENDING.store(true, Ordering::Release);
    }
    nix::errno::Errno::set_raw(errno);
}

/// Remove every action that forwards to the current pipe.
fn unregister_forwarded() {
    let mut ids = FORWARDED.lock().unwrap_or_else(|e| e.into_inner());
    for id in ids.drain(..) {
        signal_hook::low_level::unregister(id);
    }
}

impl SignalPipe {
    /// Create the pipe and make it the target of [`SignalPipe::forward_to_pipe`].
    /// Actions of a previous pipe (in a forked worker: the master's) are
    /// unregistered first; the caller registers its signals again.
    pub fn new() -> nix::Result<SignalPipe> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        unregister_forwarded();
        // The new pipe is empty and no action writes to it yet.
        PENDING.store(false, Ordering::SeqCst);
        WRITE_FD.store(write.as_raw_fd(), Ordering::SeqCst);
        Ok(SignalPipe { read, write })
    }

    pub fn raw_fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// Both ends, for a forked child to close (it makes its own pipe).
    pub fn fds(&self) -> [RawFd; 2] {
        [self.read.as_raw_fd(), self.write.as_raw_fd()]
    }

    /// Deliver each of `signals` as a byte on this pipe.
    ///
    /// signal-hook installs its handler with `SA_RESTART`, so a system call
    /// the signal interrupts is restarted. With `restart == false` the flag is
    /// cleared again on the installed disposition, for a caller that wants
    /// such a call to fail with `EINTR` instead (the handler and its actions
    /// stay signal-hook's). Both the master and the worker restart: the loops
    /// learn of a signal from the pipe, not from `EINTR`.
    pub fn forward_to_pipe(&self, signals: &[Signal], restart: bool) -> nix::Result<()> {
        for &sig in signals {
            let signum = sig as libc::c_int;
            // SAFETY: `forward` is async-signal-safe (see above).
            let id = unsafe { signal_hook::low_level::register(signum, move || forward(signum)) }
                .map_err(errno)?;
            FORWARDED.lock().unwrap_or_else(|e| e.into_inner()).push(id);
            if !restart {
                clear_restart(sig)?;
            }
        }
        Ok(())
    }

    /// Every signal delivered since the last call, oldest first. Costs no
    /// system call when no signal arrived.
    pub fn drain(&self) -> Vec<Signal> {
        let mut out = Vec::new();
        // Clearing before reading cannot lose a byte: an action that runs
        // after this sets the flag again once its byte is written.
        if !PENDING.swap(false, Ordering::Acquire) {
            return out;
        }
        let mut buf = [0u8; 256];
        loop {
            match nix::unistd::read(&self.read, &mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend(
                    buf[..n]
                        .iter()
                        .filter_map(|&b| Signal::try_from(b as i32).ok()),
                ),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break, // EAGAIN: drained
            }
        }
        out
    }
}

impl Drop for SignalPipe {
    /// Stop forwarding into a pipe that is about to close (its descriptor
    /// number could be reused by an unrelated file). The signals stay caught
    /// by signal-hook's handler, which now does nothing for them.
    fn drop(&mut self) {
        if WRITE_FD
            .compare_exchange(
                self.write.as_raw_fd(),
                -1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .is_ok()
        {
            unregister_forwarded();
        }
    }
}

/// Re-install the current disposition of `sig` without `SA_RESTART`.
fn clear_restart(sig: Signal) -> nix::Result<()> {
    // SAFETY: a zeroed sigaction is a valid out-parameter, and re-installing
    // the handler sigaction reported (signal-hook's) changes only the flags.
    unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(sig as libc::c_int, std::ptr::null(), &mut current) != 0 {
            return Err(nix::errno::Errno::last());
        }
        current.sa_flags &= !libc::SA_RESTART;
        if libc::sigaction(sig as libc::c_int, &current, std::ptr::null_mut()) != 0 {
            return Err(nix::errno::Errno::last());
        }
    }
    Ok(())
}

/// signal-hook reports the `sigaction(2)` failure as an `io::Error`.
fn errno(e: std::io::Error) -> nix::errno::Errno {
    nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EINVAL))
}

/// Set a disposition for each signal (default, ignore, or a plain handler).
///
/// For what signal-hook has no call for: `SIG_DFL` and `SIG_IGN`. This
/// replaces signal-hook's handler for those signals, so a process must not
/// register signal-hook actions for them afterwards (signal-hook believes
/// its handler is still installed and would not install it again).
pub fn set_handler(signals: &[Signal], handler: SigHandler, flags: SaFlags) -> nix::Result<()> {
    let action = SigAction::new(handler, flags, SigSet::empty());
    for &sig in signals {
        // SAFETY: callers pass SIG_DFL/SIG_IGN or async-signal-safe handlers.
        unsafe { sigaction(sig, &action) }?;
    }
    Ok(())
}

/// gunicorn's lowercase signal name (`hup`, `ttin`...), for log lines.
pub fn short_name(sig: Signal) -> String {
    sig.as_str().trim_start_matches("SIG").to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pipe and its registrations are process-wide: tests that use them
    /// must not overlap when run as threads of one process.
    static SERIAL: Mutex<()> = Mutex::new(());

    fn restarts(sig: Signal) -> bool {
        // SAFETY: querying a disposition into a zeroed out-parameter.
        unsafe {
            let mut current: libc::sigaction = std::mem::zeroed();
            assert_eq!(
                libc::sigaction(sig as libc::c_int, std::ptr::null(), &mut current),
                0
            );
            current.sa_flags & libc::SA_RESTART != 0
        }
    }

    #[test]
    fn every_delivery_is_kept_in_order() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let pipe = SignalPipe::new().unwrap();
        pipe.forward_to_pipe(&[Signal::SIGUSR2, Signal::SIGWINCH], true)
            .unwrap();
        for _ in 0..3 {
            nix::sys::signal::raise(Signal::SIGUSR2).unwrap();
        }
        nix::sys::signal::raise(Signal::SIGWINCH).unwrap();
        assert_eq!(
            pipe.drain(),
            vec![
                Signal::SIGUSR2,
                Signal::SIGUSR2,
                Signal::SIGUSR2,
                Signal::SIGWINCH
            ]
        );
        assert!(pipe.drain().is_empty());
    }

    #[test]
    fn a_new_pipe_takes_over_from_the_previous_one() {
        // What a forked worker does: the master's actions must not keep
        // writing (into the old pipe, or twice into the new one).
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let old = SignalPipe::new().unwrap();
        old.forward_to_pipe(&[Signal::SIGUSR1, Signal::SIGUSR2], true)
            .unwrap();
        let new = SignalPipe::new().unwrap();
        new.forward_to_pipe(&[Signal::SIGUSR1], true).unwrap();
        nix::sys::signal::raise(Signal::SIGUSR1).unwrap();
        // No longer forwarded anywhere: signal-hook's handler catches it.
        nix::sys::signal::raise(Signal::SIGUSR2).unwrap();
        assert_eq!(new.drain(), vec![Signal::SIGUSR1]);
        let mut buf = [0u8; 8];
        assert_eq!(
            nix::unistd::read(&old.read, &mut buf),
            Err(nix::errno::Errno::EAGAIN)
        );
    }

    #[test]
    fn forwarding_without_restart_clears_only_the_flag() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let pipe = SignalPipe::new().unwrap();
        pipe.forward_to_pipe(&[Signal::SIGALRM], true).unwrap();
        assert!(restarts(Signal::SIGALRM));
        pipe.forward_to_pipe(&[Signal::SIGVTALRM], false).unwrap();
        assert!(!restarts(Signal::SIGVTALRM));
        nix::sys::signal::raise(Signal::SIGVTALRM).unwrap();
        assert_eq!(pipe.drain(), vec![Signal::SIGVTALRM]);
    }
}
