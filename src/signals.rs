//! Signals as bytes on a self-pipe, one byte per delivery, in arrival order.
//!
//! Why not signal-hook's `Signals` iterator: it keeps one "pending" flag per
//! signal number, so ten TTINs delivered between two loop passes read back as
//! one, which is exactly gunicorn 23's lost-signal bug (reference §1.3). The
//! handler here does the one async-signal-safe thing that keeps every
//! delivery: `write(2)` the signal number to a non-blocking pipe that the
//! event loop polls. (The kernel itself merges a standard signal that is sent
//! again while still pending; nothing in userspace can undo that.)
//!
//! A forked worker calls [`SignalPipe::new`] again and re-installs its own
//! handlers, so master and worker never share a pipe.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use nix::fcntl::OFlag;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

static WRITE_FD: AtomicI32 = AtomicI32::new(-1);

/// Set by the handler *after* its byte is in the pipe, so that a hot loop
/// can skip the `read(2)` when no signal came (see [`SignalPipe::drain`]).
static PENDING: AtomicBool = AtomicBool::new(false);

/// The read end of the pipe the handler writes to.
pub struct SignalPipe {
    read: OwnedFd,
    // Kept open for the handler; closed when the process replaces the pipe.
    _write: OwnedFd,
}

extern "C" fn forward(sig: libc::c_int) {
    // SAFETY: errno is saved and restored so the interrupted code never sees
    // the handler's write; write(2) is async-signal-safe.
    unsafe {
        let errno = *libc::__errno_location();
        let fd = WRITE_FD.load(Ordering::Relaxed);
        if fd >= 0 {
            let byte = sig as u8;
            libc::write(fd, (&byte as *const u8).cast(), 1);
            PENDING.store(true, Ordering::Release);
        }
        *libc::__errno_location() = errno;
    }
}

impl SignalPipe {
    /// Create the pipe and make it the target of [`SignalPipe::forward_to_pipe`].
    pub fn new() -> nix::Result<SignalPipe> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        WRITE_FD.store(write.as_raw_fd(), Ordering::SeqCst);
        Ok(SignalPipe {
            read,
            _write: write,
        })
    }

    pub fn raw_fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// Both ends, for a forked child to close (it makes its own pipe).
    pub fn fds(&self) -> [RawFd; 2] {
        [self.read.as_raw_fd(), self._write.as_raw_fd()]
    }

    /// Deliver each of `signals` as a byte on this pipe.
    pub fn forward_to_pipe(&self, signals: &[Signal], restart: bool) -> nix::Result<()> {
        let flags = if restart {
            SaFlags::SA_RESTART
        } else {
            SaFlags::empty()
        };
        let action = SigAction::new(SigHandler::Handler(forward), flags, SigSet::empty());
        for &sig in signals {
            // SAFETY: `forward` is async-signal-safe (see above).
            unsafe { sigaction(sig, &action) }?;
        }
        Ok(())
    }

    /// Every signal delivered since the last call, oldest first. Costs no
    /// system call when no signal arrived.
    pub fn drain(&self) -> Vec<Signal> {
        let mut out = Vec::new();
        // Clearing before reading cannot lose a byte: a handler that runs
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

/// Set a disposition for each signal (default, ignore, or a plain handler).
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

    #[test]
    fn every_delivery_is_kept_in_order() {
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
        set_handler(
            &[Signal::SIGUSR2, Signal::SIGWINCH],
            SigHandler::SigIgn,
            SaFlags::empty(),
        )
        .unwrap();
    }
}
