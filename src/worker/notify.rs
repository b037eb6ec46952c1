//! Messages from workers to the master over one shared pipe.
//!
//! Each message is a fixed 8-byte record (pid, kind). Writes of at most
//! `PIPE_BUF` bytes to a pipe are atomic, so records from many workers never
//! interleave, and the master reads them in the order they were sent.

use std::os::fd::{AsFd, RawFd};

pub const RECORD_LEN: usize = 8;

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

pub fn encode(pid: u32, msg: WorkerMsg) -> [u8; RECORD_LEN] {
    let mut rec = [0u8; RECORD_LEN];
    rec[..4].copy_from_slice(&pid.to_le_bytes());
    rec[4..].copy_from_slice(&msg.code().to_le_bytes());
    rec
}

/// Worker side: send one message (blocking write of one atomic record).
pub fn send(fd: RawFd, msg: WorkerMsg) -> nix::Result<()> {
    let rec = encode(std::process::id(), msg);
    // SAFETY: fd is the inherited write end, open for the worker's lifetime.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    loop {
        match nix::unistd::write(fd.as_fd(), &rec) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Master side: split what was read into records; a partial tail stays in `buf`.
pub fn decode_all(buf: &mut Vec<u8>) -> Vec<(u32, WorkerMsg)> {
    let whole = buf.len() / RECORD_LEN * RECORD_LEN;
    let out = buf[..whole]
        .chunks_exact(RECORD_LEN)
        .filter_map(|r| {
            let pid = u32::from_le_bytes(r[..4].try_into().ok()?);
            let code = u32::from_le_bytes(r[4..].try_into().ok()?);
            Some((pid, WorkerMsg::from_code(code)?))
        })
        .collect();
    buf.drain(..whole);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_partial_tails_wait() {
        let mut buf = encode(42, WorkerMsg::Booted).to_vec();
        buf.extend_from_slice(&encode(7, WorkerMsg::Recycle)[..5]);
        assert_eq!(decode_all(&mut buf), vec![(42, WorkerMsg::Booted)]);
        assert_eq!(buf.len(), 5);
        buf.extend_from_slice(&encode(7, WorkerMsg::Recycle)[5..]);
        assert_eq!(decode_all(&mut buf), vec![(7, WorkerMsg::Recycle)]);
        assert!(buf.is_empty());
    }
}
