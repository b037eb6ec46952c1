//! Messages from workers to the master: the worker channel.
//!
//! One `SOCK_DGRAM` socket pair, made by the master before it forks any
//! worker: every worker inherits the same sending end, the master keeps the
//! receiving end. A message is one datagram holding a 4-byte code and
//! nothing else: who sent it is what the kernel says
//! ([`crate::credentials`], `SCM_CREDENTIALS`), so a worker can speak for
//! itself only, and a process that is not a worker (a worker's child, a
//! descriptor that leaked) speaks for nobody.

use std::io;
use std::os::fd::{AsFd, OwnedFd, RawFd};

use nix::sys::socket::{socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use nix::unistd::Pid;

use crate::credentials;

/// Bytes of one message.
pub const MESSAGE_LEN: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerMsg {
    /// The app is loaded; the worker now accepts connections.
    Booted,
    /// The worker served its `max_requests`: replace it (it keeps serving
    /// until the master retires it, so capacity never dips).
    Recycle,
}

impl WorkerMsg {
    fn code(self) -> u32 {
        match self {
            WorkerMsg::Booted => 1,
            WorkerMsg::Recycle => 2,
        }
    }

    fn from_code(c: u32) -> Option<Self> {
        match c {
            1 => Some(WorkerMsg::Booted),
            2 => Some(WorkerMsg::Recycle),
            _ => None,
        }
    }
}

pub fn encode(msg: WorkerMsg) -> [u8; MESSAGE_LEN] {
    msg.code().to_le_bytes()
}

/// The message a datagram holds, if it is one.
pub fn decode(datagram: &[u8]) -> Option<WorkerMsg> {
    WorkerMsg::from_code(u32::from_le_bytes(datagram.try_into().ok()?))
}

/// The two ends of the worker channel: `(master's, workers')`, both
/// close-on-exec (hooks and exec'd programs get neither). The master's end
/// already asks for the senders' credentials.
pub fn channel() -> io::Result<(OwnedFd, OwnedFd)> {
    let (master, workers) = socketpair(
        AddressFamily::Unix,
        SockType::Datagram,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    credentials::pass_credentials(&master)?;
    Ok((master, workers))
}

/// Worker side: send one message. Blocks while the master's queue is full
/// (it reads a bounded number per pass of its loop).
pub fn send(fd: RawFd, msg: WorkerMsg) -> nix::Result<()> {
    let datagram = encode(msg);
    loop {
        // MSG_NOSIGNAL: a master that is gone is an error, not a SIGPIPE.
        match nix::sys::socket::send(fd, &datagram, MsgFlags::MSG_NOSIGNAL) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// What one read of the master's end gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// A message and the pid that sent it.
    Message(Pid, WorkerMsg),
    /// A datagram that is no message, or whose sender is unknown: ignored
    /// (the reason is for the log).
    Ignored(String),
}

/// Master side: the next datagram on `channel`, without waiting; `Ok(None)`
/// when none is queued.
pub fn receive(channel: &impl AsFd) -> io::Result<Option<Received>> {
    // One byte more than a message, to tell a longer datagram from one.
    let mut buf = [0u8; MESSAGE_LEN + 1];
    let Some(datagram) = credentials::receive(channel, &mut buf)? else {
        return Ok(None);
    };
    let Some(sender) = datagram.sender else {
        return Ok(Some(Received::Ignored(
            "a worker message without its sender's credentials".to_owned(),
        )));
    };
    let msg = match (datagram.truncated, decode(&buf[..datagram.len])) {
        (false, Some(msg)) => msg,
        _ => {
            return Ok(Some(Received::Ignored(format!(
                "a malformed worker message from pid {}",
                sender.pid
            ))))
        }
    };
    Ok(Some(Received::Message(sender.pid, msg)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn messages_round_trip() {
        for msg in [WorkerMsg::Booted, WorkerMsg::Recycle] {
            assert_eq!(decode(&encode(msg)), Some(msg));
        }
        assert_eq!(decode(&[9, 0, 0, 0]), None);
        assert_eq!(decode(&[1, 0, 0]), None);
    }

    #[test]
    fn the_master_learns_the_sender_from_the_kernel() {
        let (master, workers) = channel().unwrap();
        assert_eq!(receive(&master).unwrap(), None);
        send(workers.as_raw_fd(), WorkerMsg::Booted).unwrap();
        assert_eq!(
            receive(&master).unwrap(),
            Some(Received::Message(nix::unistd::getpid(), WorkerMsg::Booted))
        );
        // Anything else is ignored, whatever it claims.
        for bytes in [&b"\x01\x00\x00\x00\x00"[..], b"\x07\x00\x00\x00", b""] {
            nix::sys::socket::send(workers.as_raw_fd(), bytes, MsgFlags::empty()).unwrap();
            assert!(
                matches!(receive(&master).unwrap(), Some(Received::Ignored(_))),
                "{bytes:?}"
            );
        }
    }
}
