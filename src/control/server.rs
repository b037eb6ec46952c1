//! The control socket, served inside the master's event loop.
//!
//! Everything here is non-blocking: a client that is slow, stuck or hostile
//! costs a buffer, never a wait. The server only moves frames; what a request
//! *does* is decided by the arbiter (the same handler as the matching
//! signal), which hands the reply back through [`ControlServer::reply`].
//!
//! Limits: frames over [`MAX_FRAME`] get an error reply and the connection is
//! closed; idle connections are closed after [`IDLE_TIMEOUT`] (event
//! subscribers excepted); a client whose unsent output exceeds
//! [`MAX_PENDING_OUTPUT`] (an event subscriber that stopped reading) is
//! dropped; at most [`MAX_CLIENTS`] connections are open at once.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mio::net::{UnixListener, UnixStream};
use mio::{Interest, Registry, Token};
use nix::sys::socket::{getsockopt, sockopt};

use super::protocol::{encode_frame, Event, FrameDecoder, Request, Response, MAX_FRAME};
use super::{paths, private_dir};

pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
pub const MAX_PENDING_OUTPUT: usize = 4 << 20;
pub const MAX_CLIENTS: usize = 1024;
/// Requests run per client per pass of the event loop: a client that
/// pipelines thousands of requests takes turns with everything else.
pub const REQUESTS_PER_PASS: usize = 16;
/// Stop reading from a client whose replies pile up beyond this (it will be
/// read again once they drain): backpressure instead of unbounded work.
const OUTPUT_HIGH_WATER: usize = 256 << 10;

/// Who is on the other end of a control connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub pid: i32,
    pub uid: u32,
}

/// A request from an authorised client, for the arbiter to execute.
#[derive(Debug)]
pub struct Incoming {
    pub token: Token,
    pub peer: Peer,
    pub request: Request,
}

struct Client {
    stream: UnixStream,
    peer: Peer,
    allowed: bool,
    decoder: FrameDecoder,
    out: Vec<u8>,
    last_active: Instant,
    /// Request id of an `events` subscription.
    subscribed: Option<u64>,
    /// Close once `out` is flushed.
    closing: bool,
    /// The peer shut down its sending side: close once every request it
    /// sent has been answered.
    peer_eof: bool,
    /// Requests handed to the arbiter and not yet answered.
    awaiting: usize,
    /// More work may be waiting (unread bytes or unparsed requests): serve it
    /// on the next pass even without a readiness event.
    wants_service: bool,
    /// Its replies piled up: no reading or new requests until they drain
    /// (its writable event resumes it).
    paused: bool,
    writable_interest: bool,
}

pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
    owner_uid: u32,
    clients: HashMap<Token, Client>,
    first_token: usize,
    next_token: usize,
}

impl ControlServer {
    /// Bind the socket at `path` (replacing a stale socket file, refusing to
    /// replace anything else) with file mode `mode`.
    pub fn bind(path: &Path, mode: u32, first_token: usize) -> Result<ControlServer, String> {
        let owner_uid = nix::unistd::geteuid().as_raw();
        if let Some(dir) = path.parent() {
            if paths::is_private_tmp_path(path, owner_uid) {
                private_dir::ensure_private_dir(dir, owner_uid)
                    .map_err(|e| format!("{}: {e}", dir.display()))?;
            } else if !dir.is_dir() {
                return Err(format!("directory {} does not exist", dir.display()));
            }
        }
        replace_stale_socket(path)?;
        let listener =
            UnixListener::bind(path).map_err(|e| format!("cannot bind {}: {e}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))?;
        Ok(ControlServer {
            listener,
            path: path.to_path_buf(),
            owner_uid,
            clients: HashMap::new(),
            first_token: first_token + 1,
            next_token: first_token + 1,
        })
    }

    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(&mut self.listener, token, Interest::READABLE)
    }

    /// Whether `token` is one of ours (a client connection).
    pub fn owns(&self, token: Token) -> bool {
        token.0 >= self.first_token && self.clients.contains_key(&token)
    }

    /// Descriptors a forked worker must close.
    pub fn fds(&self) -> Vec<i32> {
        let mut fds = vec![self.listener.as_raw_fd()];
        fds.extend(self.clients.values().map(|c| c.stream.as_raw_fd()));
        fds
    }

    /// Accept every pending connection.
    pub fn accept(&mut self, registry: &Registry) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    if self.clients.len() >= MAX_CLIENTS {
                        tracing::warn!("Control socket: {MAX_CLIENTS} clients already connected; refusing one more");
                        continue;
                    }
                    let peer = peer_of(&stream);
                    let allowed = peer.uid == 0 || peer.uid == self.owner_uid;
                    if !allowed {
                        tracing::warn!(
                            "Control socket: refusing pid {} uid {}: only root and uid {} may control this server",
                            peer.pid,
                            peer.uid,
                            self.owner_uid
                        );
                    }
                    let token = Token(self.next_token);
                    self.next_token += 1;
                    if let Err(e) = registry.register(&mut stream, token, Interest::READABLE) {
                        tracing::warn!("Control socket: cannot watch a client: {e}");
                        continue;
                    }
                    self.clients.insert(
                        token,
                        Client {
                            stream,
                            peer,
                            allowed,
                            decoder: FrameDecoder::new(),
                            out: Vec::new(),
                            last_active: Instant::now(),
                            subscribed: None,
                            closing: false,
                            peer_eof: false,
                            awaiting: 0,
                            wants_service: false,
                            paused: false,
                            writable_interest: false,
                        },
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!("Control socket: accept failed: {e}");
                    return;
                }
            }
        }
    }

    /// Handle readiness of a client; returns the complete requests it sent.
    pub fn ready(
        &mut self,
        registry: &Registry,
        token: Token,
        readable: bool,
        writable: bool,
    ) -> Vec<Incoming> {
        let mut incoming = Vec::new();
        let Some(client) = self.clients.get_mut(&token) else {
            return incoming;
        };
        if writable {
            client.flush();
        }
        if readable || client.wants_service {
            client.serve_input(token, &mut incoming);
        }
        self.settle(registry, token);
        incoming
    }

    /// Queue the reply to a request and try to send it right away.
    pub fn reply(&mut self, registry: &Registry, token: Token, response: &Response) {
        if let Some(client) = self.clients.get_mut(&token) {
            client.awaiting = client.awaiting.saturating_sub(1);
            client.queue(response);
            client.flush();
        }
        self.settle(registry, token);
    }

    /// Whether some client has input left to serve (the loop then polls
    /// without waiting and calls [`ControlServer::serve_backlog`]).
    pub fn has_backlog(&self) -> bool {
        self.clients.values().any(|c| c.wants_service)
    }

    /// One more batch from every client that has input left.
    pub fn serve_backlog(&mut self, registry: &Registry) -> Vec<Incoming> {
        let tokens: Vec<Token> = self
            .clients
            .iter()
            .filter(|(_, c)| c.wants_service)
            .map(|(t, _)| *t)
            .collect();
        let mut incoming = Vec::new();
        for token in tokens {
            incoming.extend(self.ready(registry, token, false, false));
        }
        incoming
    }

    /// Turn the connection into an event stream (after the ok reply).
    pub fn subscribe(&mut self, token: Token, id: u64) {
        if let Some(client) = self.clients.get_mut(&token) {
            client.subscribed = Some(id);
        }
    }

    /// Send an event to every subscriber.
    pub fn broadcast(&mut self, registry: &Registry, event: &Event) {
        let subscribers: Vec<Token> = self
            .clients
            .iter()
            .filter(|(_, c)| c.subscribed.is_some())
            .map(|(t, _)| *t)
            .collect();
        for token in subscribers {
            if let Some(client) = self.clients.get_mut(&token) {
                let id = client.subscribed.unwrap_or(0);
                client.queue(&Response::event(id, event.clone()));
                client.flush();
            }
            self.settle(registry, token);
        }
    }

    /// When the next idle client must be closed.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.clients
            .values()
            .filter(|c| c.subscribed.is_none())
            .map(|c| c.last_active + IDLE_TIMEOUT)
            .min()
    }

    /// Close connections that have been idle too long.
    pub fn expire_idle(&mut self, registry: &Registry, now: Instant) {
        let idle: Vec<Token> = self
            .clients
            .iter()
            .filter(|(_, c)| c.subscribed.is_none() && now >= c.last_active + IDLE_TIMEOUT)
            .map(|(t, _)| *t)
            .collect();
        for token in idle {
            tracing::debug!(
                "Control socket: closing a connection idle for {}s",
                IDLE_TIMEOUT.as_secs()
            );
            self.drop_client(registry, token);
        }
    }

    /// Move the socket file to `to` (a new master taking over the old one's
    /// path after a binary upgrade): clients that connect to `to` reach us.
    /// Whatever was at `to` is replaced.
    pub fn rename(&mut self, to: &Path) -> io::Result<()> {
        std::fs::rename(&self.path, to)?;
        self.path = to.to_path_buf();
        Ok(())
    }

    /// Close everything and remove the socket file (we created it).
    pub fn shutdown(mut self, registry: &Registry) {
        let tokens: Vec<Token> = self.clients.keys().copied().collect();
        for token in tokens {
            if let Some(c) = self.clients.get_mut(&token) {
                c.flush();
            }
            self.drop_client(registry, token);
        }
        let _ = registry.deregister(&mut self.listener);
        if let Err(e) = std::fs::remove_file(&self.path) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!("Could not remove {}: {e}", self.path.display());
            }
        }
    }

    /// Close the client if it is done, or update its write interest.
    fn settle(&mut self, registry: &Registry, token: Token) {
        let Some(client) = self.clients.get_mut(&token) else {
            return;
        };
        if client.out.len() > MAX_PENDING_OUTPUT {
            tracing::warn!(
                "Control socket: dropping pid {} that does not read its replies",
                client.peer.pid
            );
            self.drop_client(registry, token);
            return;
        }
        if client.paused && client.out.len() <= OUTPUT_HIGH_WATER {
            // Its replies drained (by a writable event or a direct flush):
            // serve its input again on the next pass.
            client.paused = false;
            client.wants_service = true;
        }
        let answered = client.awaiting == 0 && !client.wants_service && !client.paused;
        let done = client.closing || (client.peer_eof && answered && client.subscribed.is_none());
        if done && client.out.is_empty() {
            self.drop_client(registry, token);
            return;
        }
        let want_write = !client.out.is_empty();
        if want_write != client.writable_interest {
            let interest = if want_write {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if registry
                .reregister(&mut client.stream, token, interest)
                .is_ok()
            {
                client.writable_interest = want_write;
            }
        }
    }

    fn drop_client(&mut self, registry: &Registry, token: Token) {
        if let Some(mut client) = self.clients.remove(&token) {
            let _ = registry.deregister(&mut client.stream);
        }
    }
}

impl Client {
    /// Read what is there, up to about one maximal frame.
    fn read_available(&mut self) -> ReadOutcome {
        let mut buf = [0u8; 16 * 1024];
        loop {
            // Never buffer more than one maximal frame's worth unparsed.
            if self.decoder.buffered() > MAX_FRAME + 8 {
                return ReadOutcome::Full;
            }
            match self.stream.read(&mut buf) {
                Ok(0) => return ReadOutcome::Eof,
                Ok(n) => self.decoder.feed(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadOutcome::Drained,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return ReadOutcome::Eof,
            }
        }
    }

    /// Read what the socket has (unless replies are piling up) and take at
    /// most [`REQUESTS_PER_PASS`] requests; note whether more is waiting.
    fn serve_input(&mut self, token: Token, incoming: &mut Vec<Incoming>) {
        if self.out.len() > OUTPUT_HIGH_WATER {
            self.paused = true;
            self.wants_service = false;
            return;
        }
        let mut unread = false;
        if !self.peer_eof {
            match self.read_available() {
                ReadOutcome::Drained => {}
                ReadOutcome::Eof => self.peer_eof = true,
                ReadOutcome::Full => unread = true,
            }
            self.last_active = Instant::now();
        }
        let before = incoming.len();
        self.take_requests(token, incoming);
        let taken = incoming.len() - before;
        self.awaiting += taken;
        self.wants_service = !self.closing && (taken == REQUESTS_PER_PASS || unread);
    }

    fn take_requests(&mut self, token: Token, incoming: &mut Vec<Incoming>) {
        let limit = incoming.len() + REQUESTS_PER_PASS;
        while !self.closing && incoming.len() < limit {
            match self.decoder.next_request() {
                Ok(Some(request)) if !self.allowed => {
                    let why = format!(
                        "permission denied: uid {} is not allowed to control this server (only root and the server's own user are)",
                        self.peer.uid
                    );
                    self.queue(&Response::error(request.id, why));
                    self.closing = true;
                }
                Ok(Some(_)) if self.subscribed.is_some() => {
                    // An event stream takes no further requests.
                    self.closing = true;
                }
                Ok(Some(request)) => incoming.push(Incoming {
                    token,
                    peer: self.peer,
                    request,
                }),
                Ok(None) => return,
                Err(e) => {
                    if let Some(reply) = e.error_reply() {
                        self.queue(&reply);
                    }
                    if e.is_fatal() {
                        self.closing = true;
                    }
                }
            }
        }
    }

    fn queue(&mut self, response: &Response) {
        match encode_frame(response) {
            Ok(frame) => self.out.extend_from_slice(&frame),
            Err(e) => {
                let fallback =
                    Response::error(response.id(), format!("cannot encode the reply: {e}"));
                if let Ok(frame) = encode_frame(&fallback) {
                    self.out.extend_from_slice(&frame);
                }
            }
        }
    }

    fn flush(&mut self) {
        while !self.out.is_empty() {
            match self.stream.write(&self.out) {
                Ok(0) => break,
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.out.clear();
                    self.closing = true;
                    break;
                }
            }
        }
    }
}

enum ReadOutcome {
    /// Everything available was read.
    Drained,
    /// The peer will send nothing more (or the connection failed).
    Eof,
    /// The buffer is full; more may be waiting in the socket.
    Full,
}

fn peer_of(stream: &UnixStream) -> Peer {
    match getsockopt(stream, sockopt::PeerCredentials) {
        Ok(cred) => Peer {
            pid: cred.pid(),
            uid: cred.uid(),
        },
        // Unknown credentials are treated as an unknown (refused) user.
        Err(_) => Peer {
            pid: 0,
            uid: u32::MAX,
        },
    }
}

/// Remove the socket file at `path` if nothing answers on it any more (the
/// server that bound it is gone). Anything else is left alone.
pub fn remove_stale_socket(path: &Path) {
    use std::os::unix::fs::FileTypeExt;
    let is_socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    if is_socket && std::os::unix::net::UnixStream::connect(path).is_err() {
        if let Err(e) = std::fs::remove_file(path) {
            tracing::debug!("cannot remove {}: {e}", path.display());
        }
    }
}

fn replace_stale_socket(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            // A live server answers a connect: then the path is taken.
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(format!(
                    "{} is in use by another running server",
                    path.display()
                ));
            }
            std::fs::remove_file(path)
                .map_err(|e| format!("cannot replace {}: {e}", path.display()))
        }
        Ok(_) => Err(format!("{} exists and is not a socket", path.display())),
        Err(_) => Ok(()),
    }
}
