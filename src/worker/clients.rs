//! The connections a sync worker holds without serving them: clients whose
//! request head (or small body) has not fully arrived, and clients being
//! closed with a lingering close. The worker's loop (`super::sync`) waits
//! on them all at once, so that no single slow client holds the worker:
//! the app is called only for a request that has arrived.
//!
//! Each client has one deadline: the whole head must arrive within
//! `header_timeout` of the accept (then 408); a buffered body must make
//! progress every `body_timeout`; a lingering close lasts at most
//! [`LINGER_TIME`] and reads at most [`LINGER_BYTES`].

use std::time::{Duration, Instant, SystemTime};

use super::stream::Stream;
use crate::http::PeerAddr;

/// A lingering close (RFC 9112 §9.6) reads and discards for at most this
/// long and this much (gunicorn 26 does the same, in the worker itself).
pub const LINGER_TIME: Duration = Duration::from_secs(2);
pub const LINGER_BYTES: usize = 64 * 1024;

/// Past this many bytes without a complete head, the parser gets them
/// anyway (it refuses a head over the limits; a legitimate one that is
/// longer is read to its end by the parser, within the head deadline).
pub const HEAD_BUFFER: usize = 64 * 1024;

/// At most this much is read from a client at a time.
const READ_CHUNK: usize = 16 * 1024;

/// Where a held client is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reading the request head.
    Head,
    /// Reading a body of up to `body_buffer` bytes: `missing` more to go.
    Body { missing: u64, continue_sent: bool },
    /// Response sent, write side shut: discarding what the client still
    /// sends until it closes, `left` bytes at most.
    Linger { left: usize },
}

/// One held connection.
pub struct Client<'s> {
    pub stream: Stream<'s>,
    pub peer: PeerAddr,
    /// Index of the listener it came from.
    pub listener: usize,
    /// What the client sent so far (not kept while lingering).
    pub received: Vec<u8>,
    pub eof: bool,
    pub phase: Phase,
    pub deadline: Instant,
    /// The last moment for a buffered body, however it progresses.
    pub body_deadline: Instant,
    pub started: SystemTime,
    pub accepted: Instant,
    /// The last [`Client::read_available`] read the socket dry (it stops
    /// early once a request has arrived). An edge-triggered loop must read
    /// again before it waits on a socket that was not (`super::gthread`).
    pub drained: bool,
}

/// What one read pass over a client's socket found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The request (head, or head and buffered body) is there: serve it.
    Arrived,
    /// More to come: keep waiting.
    Waiting,
    /// Nothing more to do with this client: close it.
    Finished,
}

impl<'s> Client<'s> {
    /// Read what the socket has now, without waiting.
    pub fn read_available(&mut self, body_patience: Duration) -> Progress {
        // Until a read says otherwise (would block, short, end of stream).
        self.drained = false;
        loop {
            // While lingering nothing is kept: read, count, discard.
            if matches!(self.phase, Phase::Linger { .. }) {
                self.received.clear();
            }
            let before = self.received.len();
            let n = match self.stream.read_now_append(&mut self.received, READ_CHUNK) {
                Ok(Some(n)) => n,
                Ok(None) => {
                    self.drained = true;
                    return self.progress();
                }
                Err(_) => {
                    // A reset or other failure: nobody to answer.
                    return Progress::Finished;
                }
            };
            if n == 0 {
                self.eof = true;
                self.drained = true;
                return match self.phase {
                    Phase::Linger { .. } => Progress::Finished,
                    // Nothing sent at all: gunicorn closes silently.
                    Phase::Head if self.received.is_empty() => Progress::Finished,
                    _ => Progress::Arrived,
                };
            }
            match &mut self.phase {
                Phase::Linger { left } => {
                    *left = left.saturating_sub(n);
                    if *left == 0 {
                        return Progress::Finished;
                    }
                }
                Phase::Body { missing, .. } => {
                    *missing = missing.saturating_sub(n as u64);
                    self.deadline = (Instant::now() + body_patience).min(self.body_deadline);
                    if *missing == 0 {
                        return Progress::Arrived;
                    }
                }
                Phase::Head => {
                    // Only the new bytes (and the three before them) can
                    // complete the head.
                    if head_arrived(&self.received, before.saturating_sub(3)) {
                        return Progress::Arrived;
                    }
                }
            }
            if n < READ_CHUNK {
                // A short read drained the socket: no need for the EAGAIN.
                self.drained = true;
                return self.progress();
            }
        }
    }

    fn progress(&self) -> Progress {
        match self.phase {
            Phase::Head if head_arrived(&self.received, 0) => Progress::Arrived,
            _ => Progress::Waiting,
        }
    }

    /// Switch to a lingering close (the write side is shut already).
    pub fn linger(&mut self, now: Instant) {
        self.received = Vec::new();
        self.phase = Phase::Linger { left: LINGER_BYTES };
        self.deadline = now + LINGER_TIME;
    }
}

/// Whether a request head is complete, or can be judged without more:
/// the blank line that ends it, a bare LF (refused at once, not waited
/// on), or more bytes than a head is buffered for. Bytes before `from`
/// were looked at already.
pub fn head_arrived(received: &[u8], from: usize) -> bool {
    if received.len() >= HEAD_BUFFER {
        return true;
    }
    let mut prev = if from == 0 { 0u8 } else { received[from - 1] };
    for (i, &b) in received.iter().enumerate().skip(from) {
        if b == b'\n' && (prev != b'\r' || received[..=i].ends_with(b"\r\n\r\n")) {
            return true;
        }
        prev = b;
    }
    false
}

/// The clients a worker holds, by slot number (the epoll token).
pub struct Clients<'s> {
    slots: Vec<Option<Client<'s>>>,
    free: Vec<usize>,
    held: usize,
}

impl<'s> Clients<'s> {
    pub fn new() -> Self {
        Clients {
            slots: Vec::new(),
            free: Vec::new(),
            held: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.held
    }

    pub fn is_empty(&self) -> bool {
        self.held == 0
    }

    /// Hold `client`; returns its slot.
    pub fn insert(&mut self, client: Client<'s>) -> usize {
        self.held += 1;
        match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(client);
                i
            }
            None => {
                self.slots.push(Some(client));
                self.slots.len() - 1
            }
        }
    }

    pub fn get_mut(&mut self, slot: usize) -> Option<&mut Client<'s>> {
        self.slots.get_mut(slot).and_then(Option::as_mut)
    }

    /// Take a client out of the set (the caller serves it again, or lets
    /// it go after removing it from the epoll set: `Server::release`).
    pub fn remove(&mut self, slot: usize) -> Option<Client<'s>> {
        let client = self.slots.get_mut(slot)?.take()?;
        self.held -= 1;
        self.free.push(slot);
        Some(client)
    }

    /// The earliest deadline, if any client is held.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.slots.iter().flatten().map(|c| c.deadline).min()
    }

    /// The slots whose deadline has passed.
    pub fn expired(&self, now: Instant) -> Vec<usize> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().filter(|c| c.deadline <= now).map(|_| i))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_has_arrived_at_its_blank_line_or_a_bare_lf() {
        // Looking only from a point: the blank line across the boundary.
        let head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert!(head_arrived(head, head.len() - 4));
        assert!(!head_arrived(b"GET / HTTP/1.1\r\nHost: x\r\n", 10));
        assert!(!head_arrived(b"", 0));
        assert!(!head_arrived(b"GET / HTTP/1.1\r\nHost: x\r\n", 0));
        assert!(!head_arrived(b"GET / HTTP/1.1\r\nHost: x\r\n\r", 0));
        assert!(head_arrived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0));
        assert!(head_arrived(b"GET / HTTP/1.0\r\n\r\n", 0));
        assert!(head_arrived(b"GET / HTTP/1.1\nHost", 0));
        assert!(head_arrived(b"GET / HTTP/1.1\r\nHost: x\n", 0));
        assert!(head_arrived(&vec![b'a'; HEAD_BUFFER], 0));
    }
}
