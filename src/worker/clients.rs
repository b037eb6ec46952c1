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

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant, SystemTime};

use super::stream::Stream;
use super::WorkerSetup;
use crate::http::proxy::{self, ProxyMode};
use crate::http::{HttpError, PeerAddr};

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
    /// Reading the PROXY protocol header a connection may start with (its
    /// bytes read off the socket, before any TLS).
    Proxy { mode: ProxyMode, allowed: bool },
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
    /// The client: the socket's peer, or what a PROXY header said.
    pub peer: PeerAddr,
    /// The socket's peer is a trusted front end (`--forwarded-allow-ips`).
    pub trusted: bool,
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
    /// The PROXY header the connection began with (the app sees it).
    pub proxied: Option<proxy::ProxyHeader>,
}

/// How a worker starts the connections it accepts (both kinds alike).
pub struct Intake<'s> {
    setup: &'s WorkerSetup<'s>,
    /// Each listener's TLS acceptor, if it is a TLS one.
    tls: Vec<Option<&'s crate::tls::Acceptor>>,
    patience: Duration,
    header_timeout: Duration,
}

impl<'s> Intake<'s> {
    pub fn new(setup: &'s WorkerSetup<'s>, patience: Duration, header_timeout: Duration) -> Self {
        let s = setup.settings;
        Intake {
            setup,
            tls: setup
                .listeners
                .iter()
                .map(|l| s.tls.for_listener(l.addr()))
                .collect(),
            patience,
            header_timeout,
        }
    }

    /// A connection just accepted on `listener`: its TLS session started
    /// on a TLS listener (the handshake runs in its first reads), its PROXY
    /// phase and its peer's trust set, its head deadline running. `None`
    /// (logged) when no TLS session can be made for it.
    pub fn client(&self, fd: OwnedFd, peer: PeerAddr, listener: usize) -> Option<Client<'s>> {
        let now = Instant::now();
        let s = self.setup.settings;
        let mut stream = Stream::new(fd, self.patience, self.setup.slot);
        if let Some(acceptor) = self.tls[listener] {
            match acceptor.session() {
                Ok(session) => stream.start_tls(session),
                Err(e) => {
                    tracing::error!("cannot start a TLS session: {e}");
                    return None;
                }
            }
        }
        let phase = match s.proxy_protocol {
            ProxyMode::Off => Phase::Head,
            mode => Phase::Proxy {
                mode,
                allowed: s.proxy_allow_ips.allows(&peer),
            },
        };
        Some(Client {
            stream,
            trusted: s.forwarded_allow_ips.allows(&peer),
            peer,
            listener,
            received: Vec::new(),
            eof: false,
            phase,
            deadline: now + self.header_timeout,
            body_deadline: now + self.header_timeout + self.patience,
            started: SystemTime::now(),
            accepted: now,
            drained: false,
            proxied: None,
        })
    }
}

/// What one read pass over a client's socket found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The request (head, or head and buffered body) is there: serve it.
    Arrived,
    /// More to come: keep waiting.
    Waiting,
    /// Nothing more to do with this client: close it.
    Finished,
    /// A PROXY header that is malformed or from a source not allowed:
    /// answer with this error (plain HTTP only) and close.
    Refused(HttpError),
}

impl<'s> Client<'s> {
    /// Read what the socket has now, without waiting.
    pub fn read_available(&mut self, body_patience: Duration) -> Progress {
        // Until a read says otherwise (would block, short, end of stream).
        self.drained = false;
        loop {
            if let Phase::Proxy { mode, allowed } = self.phase {
                if let Some(progress) = self.read_proxy(mode, allowed) {
                    return progress;
                }
            }
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
                Err(e) => {
                    // A reset or other failure: nobody to answer. A failed
                    // handshake costs a debug line and nothing else.
                    if e.kind() == std::io::ErrorKind::InvalidData {
                        tracing::debug!("{e} (from ip={})", self.peer.host());
                    }
                    return Progress::Finished;
                }
            };
            if n == 0 {
                self.eof = true;
                self.drained = true;
                return match self.phase {
                    Phase::Linger { .. } => Progress::Finished,
                    // Nothing sent at all: gunicorn closes silently.
                    Phase::Head | Phase::Proxy { .. } if self.received.is_empty() => {
                        Progress::Finished
                    }
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
                Phase::Proxy { .. } => {}
                Phase::Head => {
                    // Only the new bytes (and the three before them) can
                    // complete the head.
                    if head_arrived(&self.received, before.saturating_sub(3)) {
                        return Progress::Arrived;
                    }
                }
            }
            if n < READ_CHUNK && !self.stream.is_tls() {
                // A short read drained the socket: no need for the EAGAIN.
                // (Not through TLS: the session may have left records on
                // the socket, so only its "would block" says drained.)
                self.drained = true;
                return self.progress();
            }
        }
    }

    /// One raw read and a look at the PROXY header: `Some` to return,
    /// `None` once the header (or its absence) is settled and the phase is
    /// `Head`, its bytes gone (after TLS, what followed goes to the
    /// handshake).
    fn read_proxy(&mut self, mode: ProxyMode, allowed: bool) -> Option<Progress> {
        match self
            .stream
            .read_raw_now_append(&mut self.received, READ_CHUNK)
        {
            Ok(Some(0)) => self.eof = true,
            Ok(_) => {}
            Err(_) => return Some(Progress::Finished),
        }
        if self.received.is_empty() {
            return Some(if self.eof {
                Progress::Finished
            } else {
                Progress::Waiting
            });
        }
        match proxy::parse(&self.received, mode, self.eof) {
            proxy::Parsed::Incomplete if self.eof => return Some(Progress::Finished),
            proxy::Parsed::Incomplete => return Some(Progress::Waiting),
            proxy::Parsed::NotProxy => {}
            _ if !allowed => {
                return Some(Progress::Refused(HttpError::new(403, "Request forbidden")))
            }
            proxy::Parsed::Invalid(err) => return Some(Progress::Refused(err)),
            proxy::Parsed::Header { header, consumed } => {
                if let Some(source) = header.source {
                    self.peer = PeerAddr::Tcp(source);
                }
                self.proxied = Some(header);
                self.received.drain(..consumed);
            }
        }
        self.phase = Phase::Head;
        if self.stream.is_tls() {
            self.stream.push_tls_prefix(&self.received);
            self.received.clear();
        }
        None
    }

    fn progress(&self) -> Progress {
        match self.phase {
            Phase::Head if head_arrived(&self.received, 0) => Progress::Arrived,
            _ => Progress::Waiting,
        }
    }

    /// Its request as `connection::serve` takes it (it has arrived:
    /// `Progress::Arrived`). A head longer than the loop buffers is read to
    /// its end by the parser, but not past the head deadline.
    pub fn arrived<'c>(
        &'c self,
        server: &'c crate::listeners::ListenAddr,
        keep_alive: Option<&'c std::sync::atomic::AtomicBool>,
    ) -> super::connection::Arrived<'c, 's> {
        let continue_sent = matches!(
            self.phase,
            Phase::Body {
                continue_sent: true,
                ..
            }
        );
        if self.phase == Phase::Head {
            self.stream.set_deadline(Some(self.deadline));
        }
        super::connection::Arrived {
            stream: &self.stream,
            received: &self.received,
            eof: self.eof,
            continue_sent,
            peer: &self.peer,
            trusted: self.trusted,
            server,
            started: self.started,
            clock: self.accepted,
            keep_alive,
            proxied: self.proxied.as_ref(),
        }
    }

    /// Its PROXY header was refused: logged and access-logged; on a plain
    /// listener the error page goes out (what the socket takes at once) and
    /// the close lingers (true: keep it in the loop); on a TLS one it is
    /// closed at once (false), as no session exists to answer in, and
    /// reading on would run the handshake for a source that was refused.
    /// Nothing reaches the app.
    pub fn refuse(&mut self, err: &HttpError, now: Instant) -> bool {
        tracing::warn!(
            "Refused PROXY header from ip={}: {}",
            self.peer.host(),
            err.message
        );
        crate::log::access(&crate::log::AccessRecord {
            peer: &self.peer,
            head: None,
            status: err.status,
            body_bytes: 0,
            response_headers: &[],
            started: self.started,
            duration: self.accepted.elapsed(),
        });
        if self.stream.is_tls() {
            return false;
        }
        let mut page = Vec::new();
        if crate::http::write_error(&mut page, err).is_ok() {
            let _ = self.stream.write_now(&page);
        }
        self.stream.shutdown_write_now();
        self.linger(now);
        true
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
