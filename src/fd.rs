//! Flags of file descriptors the master creates or inherits.

use std::os::fd::AsFd;

use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};

/// Switch the open file description to non-blocking. For a socket or pipe
/// shared with forked workers this changes it for them too.
pub fn set_nonblocking(fd: impl AsFd) -> nix::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(fd.as_fd(), FcntlArg::F_GETFL)?);
    fcntl(fd.as_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// Keep the descriptor from crossing an `execve` (hooks, exec'd programs).
pub fn set_cloexec(fd: impl AsFd) -> nix::Result<()> {
    fcntl(fd.as_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    Ok(())
}
