//! The control socket, served inside the master's event loop.
//!
//! Everything here is non-blocking: a client that is slow, stuck or hostile
//! costs a buffer, never a wait. The server only moves frames; what a request
//! *does* is decided by the arbiter (the same handler as the matching
//! signal), which hands the reply back through [`ControlServer::reply`].
//!
//! Who may connect is decided when the connection is accepted, from the
//! peer's credentials (`SO_PEERCRED`): root, the server's own uid and the
//! uids of [`Access::allowed_uids`]. Anyone else gets one error frame and is
//! closed there and then, holding no slot and no buffer.
//!
//! Limits: at most [`Access::max_clients`] connections are open at once
//! (never more than a quarter of the open-files limit); when all are taken,
//! the connection idle the longest makes room for the new one, and only
//! when every client is busy is the new one refused. At most [`ACCEPTS_PER_PASS`] connections are accepted
//! per pass of the loop, so a flood of them waits behind the master's own
//! work. Frames over [`MAX_FRAME`] get an error reply and the connection is
//! closed; a frame begun and not finished within [`FRAME_TIMEOUT`] closes
//! the connection; idle connections are closed after [`IDLE_TIMEOUT`]
//! (event subscribers excepted); a client whose unsent output exceeds
//! [`MAX_PENDING_OUTPUT`] (an event subscriber that stopped reading) is
//! dropped.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mio::net::{UnixListener, UnixStream};
use mio::{Interest, Registry, Token};
use nix::sys::socket::{getsockopt, sockopt};

use super::protocol::{encode_frame, Event, FrameDecoder, Request, Response, MAX_FRAME};
use super::{paths, private_dir};

pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a client may take to finish a frame it has begun sending. A
/// real client writes a frame at once; one that trickles it holds a
/// connection and a buffer for nothing.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(5);
pub const MAX_PENDING_OUTPUT: usize = 4 << 20;
/// Requests run per client per pass of the event loop: a client that
/// pipelines thousands of requests takes turns with everything else.
pub const REQUESTS_PER_PASS: usize = 16;
/// Connections accepted per pass of the event loop; the rest wait in the
/// listen queue for the next pass.
pub const ACCEPTS_PER_PASS: usize = 64;
/// The control socket may hold at most this fraction (1/N) of the
/// open-files limit: the rest is for listeners, workers, logs and hooks.
const OPEN_FILES_SHARE: u64 = 4;
/// Stop reading from a client whose replies pile up beyond this (it will be
/// read again once they drain): backpressure instead of unbounded work.
const OUTPUT_HIGH_WATER: usize = 256 << 10;
/// The same warning (refused peers, a full server, slow frames) is logged
/// at most once per interval: a flood must not turn into a flood of log
/// lines.
const WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// Who may use the control socket and how many at once, as configured
/// (`control_socket_allow`, `control_socket_max_clients`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// Uids allowed besides root and the server's own.
    pub allowed_uids: Vec<u32>,
    /// Most connections open at once, before the open-files cap.
    pub max_clients: usize,
}

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
    decoder: FrameDecoder,
    out: Vec<u8>,
    last_active: Instant,
    /// When the frame it is still sending began (see [`FRAME_TIMEOUT`]).
    partial_since: Option<Instant>,
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
    /// The socket file bound (device and inode): removed only while the
    /// path still names it.
    file: Option<crate::fd::FileId>,
    owner_uid: u32,
    access: Access,
    /// `access.max_clients` within the open-files cap.
    max_clients: usize,
    clients: HashMap<Token, Client>,
    first_token: usize,
    next_token: usize,
    /// The last accept pass stopped at [`ACCEPTS_PER_PASS`]: more
    /// connections may be waiting.
    accept_pending: bool,
    refused_warning: Throttle,
    full_warning: Throttle,
    slow_frame_warning: Throttle,
}

/// A warning logged at most once per [`WARNING_INTERVAL`]; the next one
/// says how many were held back meanwhile.
#[derive(Default)]
struct Throttle {
    last: Option<Instant>,
    held_back: u64,
}

impl Throttle {
    fn warn(&mut self, now: Instant, message: impl FnOnce() -> String) {
        if self.last.is_some_and(|t| now < t + WARNING_INTERVAL) {
            self.held_back += 1;
            return;
        }
        self.last = Some(now);
        match std::mem::take(&mut self.held_back) {
            0 => tracing::warn!("{}", message()),
            n => tracing::warn!(
                "{} ({n} more like it since the last such warning)",
                message()
            ),
        }
    }
}

impl ControlServer {
    /// Bind the socket at `path` (replacing a stale socket file, refusing to
    /// replace anything else) with file mode `mode`.
    pub fn bind(
        path: &Path,
        mode: u32,
        first_token: usize,
        access: Access,
    ) -> Result<ControlServer, String> {
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
        // The mode comes from the umask at bind time, not from a chmod by
        // path afterwards (which would follow a symlink swapped in
        // meanwhile). The master is single-threaded here.
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(
            (!mode & 0o777) as libc::mode_t,
        ));
        let bound = UnixListener::bind(path);
        nix::sys::stat::umask(old);
        let listener = bound.map_err(|e| format!("cannot bind {}: {e}", path.display()))?;
        let file = crate::fd::FileId::of_path(path);
        Ok(ControlServer::serving(
            listener,
            path,
            file,
            first_token,
            access,
        ))
    }

    /// Serve on a listener bound at `path` before (by the image an in-place
    /// upgrade replaced): not bound again, so connections made meanwhile
    /// wait in its queue. `file` is the socket file it created.
    pub fn adopt(
        listener: std::os::unix::net::UnixListener,
        path: &Path,
        file: Option<crate::fd::FileId>,
        first_token: usize,
        access: Access,
    ) -> Result<ControlServer, String> {
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("control socket {}: {e}", path.display()))?;
        crate::fd::set_cloexec(&listener)
            .map_err(|e| format!("control socket {}: {e}", path.display()))?;
        let listener = UnixListener::from_std(listener);
        Ok(ControlServer::serving(
            listener,
            path,
            file,
            first_token,
            access,
        ))
    }

    fn serving(
        listener: UnixListener,
        path: &Path,
        file: Option<crate::fd::FileId>,
        first_token: usize,
        access: Access,
    ) -> ControlServer {
        let owner_uid = nix::unistd::geteuid().as_raw();
        ControlServer {
            listener,
            path: path.to_path_buf(),
            file,
            owner_uid,
            max_clients: effective_max_clients(access.max_clients),
            access,
            clients: HashMap::new(),
            first_token: first_token + 1,
            next_token: first_token + 1,
            accept_pending: false,
            refused_warning: Throttle::default(),
            full_warning: Throttle::default(),
            slow_frame_warning: Throttle::default(),
        }
    }

    /// The listening socket and the file it is bound at (what an in-place
    /// upgrade hands over).
    pub fn listener(&self) -> (std::os::fd::RawFd, Option<crate::fd::FileId>) {
        (self.listener.as_raw_fd(), self.file)
    }

    /// Apply new access settings (a reload): they hold for connections
    /// accepted from now on.
    pub fn set_access(&mut self, access: Access) {
        self.max_clients = effective_max_clients(access.max_clients);
        self.access = access;
    }

    /// Whether a peer with this uid may use the socket.
    fn allows(&self, uid: u32) -> bool {
        uid == 0 || uid == self.owner_uid || self.access.allowed_uids.contains(&uid)
    }

    /// Who may, in words, for the refusal.
    fn who_may(&self) -> String {
        let mut uids: Vec<u32> = Vec::new();
        for &uid in std::iter::once(&self.owner_uid).chain(&self.access.allowed_uids) {
            if uid != 0 && !uids.contains(&uid) {
                uids.push(uid);
            }
        }
        match uids.as_slice() {
            [] => "only root may control this server".to_owned(),
            [one] => format!("only root and uid {one} may control this server"),
            many => format!(
                "only root and uids {} may control this server",
                many.iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
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

    /// Accept the pending connections, at most [`ACCEPTS_PER_PASS`] of
    /// them (the loop calls [`ControlServer::serve_backlog`] for the rest).
    pub fn accept(&mut self, registry: &Registry) {
        self.accept_pending = false;
        for _ in 0..ACCEPTS_PER_PASS {
            match self.listener.accept() {
                Ok((stream, _)) => self.admit(registry, stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors, say: the connection stays queued
                    // and is tried again when another one arrives.
                    self.full_warning.warn(Instant::now(), || {
                        format!("Control socket: accept failed: {e}")
                    });
                    return;
                }
            }
        }
        self.accept_pending = true;
    }

    /// Decide about one accepted connection: refuse it (an unauthorised
    /// peer, or every slot busy), or make it a client.
    fn admit(&mut self, registry: &Registry, mut stream: UnixStream) {
        let now = Instant::now();
        let peer = peer_of(&stream);
        if !self.allows(peer.uid) {
            let who_may = self.who_may();
            self.refused_warning.warn(now, || {
                format!(
                    "Control socket: refusing pid {} uid {}: {who_may}",
                    peer.pid, peer.uid
                )
            });
            refuse(
                &mut stream,
                &format!(
                    "permission denied: uid {} is not allowed to control this server ({who_may})",
                    peer.uid
                ),
            );
            return;
        }
        if self.clients.len() >= self.max_clients && !self.evict_idlest(registry) {
            let max = self.max_clients;
            self.full_warning.warn(now, || {
                format!(
                    "Control socket: {max} clients connected and none idle; refusing pid {}",
                    peer.pid
                )
            });
            refuse(
                &mut stream,
                &format!("the control socket is busy ({max} clients); try again later"),
            );
            return;
        }
        let token = Token(self.next_token);
        self.next_token += 1;
        if let Err(e) = registry.register(&mut stream, token, Interest::READABLE) {
            tracing::warn!("Control socket: cannot watch a client: {e}");
            return;
        }
        self.clients.insert(
            token,
            Client {
                stream,
                peer,
                decoder: FrameDecoder::new(),
                out: Vec::new(),
                last_active: now,
                partial_since: None,
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

    /// Every slot is taken: close the client idle the longest, if one is
    /// idle. Whether a slot was freed.
    fn evict_idlest(&mut self, registry: &Registry) -> bool {
        let idlest = self
            .clients
            .iter()
            .filter(|(_, c)| c.is_idle())
            .min_by_key(|(_, c)| c.last_active)
            .map(|(t, c)| (*t, c.peer));
        let Some((token, peer)) = idlest else {
            return false;
        };
        let max = self.max_clients;
        self.full_warning.warn(Instant::now(), || {
            format!("Control socket: {max} clients connected; closing the one idle the longest (pid {}) to make room", peer.pid)
        });
        self.drop_client(registry, token);
        true
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

    /// Whether connections wait to be accepted or some client has input
    /// left to serve (the loop then polls without waiting and calls
    /// [`ControlServer::serve_backlog`]).
    pub fn has_backlog(&self) -> bool {
        self.accept_pending || self.clients.values().any(|c| c.wants_service)
    }

    /// One more batch of waiting connections, and of requests from every
    /// client that has input left.
    pub fn serve_backlog(&mut self, registry: &Registry) -> Vec<Incoming> {
        if self.accept_pending {
            self.accept(registry);
        }
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

    /// When the next client must be closed for being idle or for a frame
    /// it does not finish.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.clients.values().filter_map(Client::deadline).min()
    }

    /// Close connections that have been idle too long, or that began a
    /// frame and did not finish it in time.
    pub fn expire(&mut self, registry: &Registry, now: Instant) {
        let expired: Vec<(Token, bool)> = self
            .clients
            .iter()
            .filter(|(_, c)| c.deadline().is_some_and(|d| now >= d))
            .map(|(t, c)| (*t, c.partial_since.is_some()))
            .collect();
        for (token, slow_frame) in expired {
            if let Some(client) = self.clients.get(&token) {
                let pid = client.peer.pid;
                if slow_frame {
                    self.slow_frame_warning.warn(now, || {
                        format!(
                            "Control socket: closing the connection of pid {pid}: it did not finish a frame within {}s",
                            FRAME_TIMEOUT.as_secs()
                        )
                    });
                } else {
                    tracing::debug!(
                        "Control socket: closing a connection idle for {}s",
                        IDLE_TIMEOUT.as_secs()
                    );
                }
            }
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
        if self.file.is_none() || crate::fd::FileId::of_path(&self.path) != self.file {
            // Replaced by someone else's file since: theirs to remove.
            return;
        }
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
    /// Nothing in progress: no request unanswered, no reply unsent, no frame
    /// begun, no event stream. Such a client may be closed to make room.
    fn is_idle(&self) -> bool {
        self.subscribed.is_none()
            && self.awaiting == 0
            && self.out.is_empty()
            && self.decoder.buffered() == 0
            && !self.wants_service
            && !self.paused
    }

    /// When it must be closed unless something happens: the end of the
    /// frame deadline while it sends one (unless the wait is ours: input we
    /// have not parsed yet, or replies it must read first), else the idle
    /// timeout (never for an event stream).
    fn deadline(&self) -> Option<Instant> {
        match self.partial_since {
            Some(_) if self.wants_service || self.paused => None,
            Some(since) => Some(since + FRAME_TIMEOUT),
            None if self.subscribed.is_some() => None,
            None => Some(self.last_active + IDLE_TIMEOUT),
        }
    }

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
            let next = self.decoder.next_request();
            // A whole frame arrived (or failed): the next one starts now.
            if !matches!(next, Ok(None)) {
                self.partial_since = None;
            }
            match next {
                Ok(Some(_)) if self.subscribed.is_some() => {
                    // An event stream takes no further requests.
                    self.closing = true;
                }
                Ok(Some(request)) => incoming.push(Incoming {
                    token,
                    peer: self.peer,
                    request,
                }),
                Ok(None) => {
                    // What is left is the start of a frame, if anything.
                    if self.decoder.buffered() == 0 {
                        self.partial_since = None;
                    } else if self.partial_since.is_none() {
                        self.partial_since = Some(Instant::now());
                    }
                    return;
                }
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

/// [`client_limit`] under this process's open-files limit, with a warning
/// when that lowers the configured number.
fn effective_max_clients(configured: usize) -> usize {
    let open_files = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .ok()
        .map(|(soft, _)| soft);
    let max = client_limit(configured, open_files);
    if max < configured {
        tracing::warn!(
            "Control socket: at most {max} clients, not {configured}: a quarter of the open-files limit ({})",
            open_files.unwrap_or_default()
        );
    }
    max
}

/// At most this many clients, as configured, but never more than a
/// quarter of the open-files limit `open_files` (unknown: no cap), and at
/// least one.
fn client_limit(configured: usize, open_files: Option<u64>) -> usize {
    let cap = open_files
        .map(|n| usize::try_from(n / OPEN_FILES_SHARE).unwrap_or(usize::MAX))
        .unwrap_or(usize::MAX);
    configured.min(cap).max(1)
}

/// Answer a connection that will not be served with one error frame (a
/// fresh socket's buffer always takes it, so the write does not wait), then
/// close it.
fn refuse(stream: &mut UnixStream, why: &str) {
    if let Ok(frame) = encode_frame(&Response::error(0, why.to_owned())) {
        let _ = stream.write(&frame);
    }
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
    // Non-blocking probe: a wedged server with a full backlog must not stall
    // the master's loop.
    if is_socket && crate::listeners::probe_socket(path) == crate::listeners::Probe::Stale {
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
            use crate::listeners::Probe;
            match crate::listeners::probe_socket(path) {
                Probe::Answers => Err(format!(
                    "{} is in use by another running server",
                    path.display()
                )),
                Probe::Gone => Ok(()),
                Probe::Stale => std::fs::remove_file(path)
                    .map_err(|e| format!("cannot replace {}: {e}", path.display())),
                Probe::Unknown(e) => Err(format!(
                    "cannot tell whether {} is in use ({e}); remove it if no server runs there",
                    path.display()
                )),
            }
        }
        Ok(_) => Err(format!("{} exists and is not a socket", path.display())),
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::ErrorKind;
    use std::os::unix::net::UnixStream as StdStream;

    use super::super::protocol::read_frame;

    /// A server in a fresh directory, with its event loop's registry.
    struct Harness {
        _dir: tempfile::TempDir,
        path: PathBuf,
        poll: mio::Poll,
        server: ControlServer,
    }

    impl Harness {
        fn new(max_clients: usize) -> Harness {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("ctl.sock");
            let access = Access {
                allowed_uids: Vec::new(),
                max_clients,
            };
            let server = ControlServer::bind(&path, 0o600, 10, access).unwrap();
            Harness {
                _dir: dir,
                path,
                poll: mio::Poll::new().unwrap(),
                server,
            }
        }

        fn connect(&self) -> StdStream {
            let stream = StdStream::connect(&self.path).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            stream
        }

        fn accept(&mut self) {
            self.server.accept(self.poll.registry());
        }

        /// Let the server read every client (what a readiness event does).
        fn serve_all(&mut self) -> Vec<Incoming> {
            let tokens: Vec<Token> = self.server.clients.keys().copied().collect();
            let mut incoming = Vec::new();
            for token in tokens {
                incoming.extend(self.server.ready(self.poll.registry(), token, true, false));
            }
            incoming
        }

        fn clients(&self) -> usize {
            self.server.clients.len()
        }
    }

    /// Whether the server closed this end: end of file, or a reset.
    fn closed(stream: &mut StdStream) -> bool {
        stream.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        let closed = match stream.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() != ErrorKind::WouldBlock,
        };
        stream.set_nonblocking(false).unwrap();
        closed
    }

    #[test]
    fn the_client_limit_is_a_quarter_of_the_open_files_at_most() {
        assert_eq!(client_limit(256, Some(1024)), 256);
        assert_eq!(client_limit(1000, Some(1024)), 256);
        assert_eq!(client_limit(256, Some(100_000)), 256);
        assert_eq!(client_limit(256, Some(8)), 2);
        assert_eq!(client_limit(256, Some(2)), 1, "never none");
        assert_eq!(client_limit(256, None), 256);
    }

    #[test]
    fn a_flood_is_accepted_a_batch_per_pass() {
        let mut h = Harness::new(1000);
        let streams: Vec<StdStream> = (0..ACCEPTS_PER_PASS + 10).map(|_| h.connect()).collect();
        h.accept();
        assert_eq!(h.clients(), ACCEPTS_PER_PASS);
        assert!(h.server.has_backlog(), "the rest waits for the next pass");
        let registry = h.poll.registry().try_clone().unwrap();
        assert!(h.server.serve_backlog(&registry).is_empty());
        assert_eq!(h.clients(), streams.len());
        assert!(!h.server.has_backlog());
    }

    #[test]
    fn a_full_server_closes_its_idlest_client_to_make_room() {
        let mut h = Harness::new(2);
        let mut first = h.connect();
        h.accept();
        let mut second = h.connect();
        h.accept();
        // The first one has been idle the longest: it makes room.
        second
            .write_all(&encode_frame(&Request::new(1, "ping")).unwrap())
            .unwrap();
        assert_eq!(h.serve_all().len(), 1, "second's ping");
        let mut third = h.connect();
        h.accept();
        assert_eq!(h.clients(), 2);
        assert!(closed(&mut first), "the idle client was closed");
        assert!(
            !closed(&mut second),
            "a client with a request in flight stays"
        );
        assert!(!closed(&mut third));
    }

    #[test]
    fn a_full_server_of_busy_clients_refuses_the_next_one() {
        let mut h = Harness::new(2);
        let mut busy = Vec::new();
        for _ in 0..2 {
            let mut stream = h.connect();
            h.accept();
            // Half a length prefix: a frame in progress.
            stream.write_all(&[0, 0]).unwrap();
            busy.push(stream);
        }
        h.serve_all();
        let mut refused = h.connect();
        h.accept();
        assert_eq!(h.clients(), 2);
        match read_frame::<_, Response>(&mut refused) {
            Ok(Response::Error { id: 0, error }) => {
                assert!(error.contains("busy (2 clients)"), "{error}")
            }
            other => panic!("expected the busy error, got {other:?}"),
        }
        assert!(closed(&mut refused));
        for stream in &mut busy {
            assert!(!closed(stream));
        }
    }

    #[test]
    fn an_unfinished_frame_is_closed_after_the_frame_timeout() {
        let mut h = Harness::new(10);
        let mut slow = h.connect();
        h.accept();
        let mut idle = h.connect();
        h.accept();
        // A prefix announcing 60 bytes, and 2 of them.
        slow.write_all(&[0, 0, 0, 60, b'{', b'"']).unwrap();
        h.serve_all();
        let begun = Instant::now();
        let deadline = h.server.next_deadline().expect("a deadline");
        assert!(deadline <= begun + FRAME_TIMEOUT, "{deadline:?}");
        let registry = h.poll.registry().try_clone().unwrap();
        h.server.expire(&registry, begun + FRAME_TIMEOUT / 2);
        assert_eq!(h.clients(), 2, "not yet");
        h.server.expire(&registry, begun + FRAME_TIMEOUT);
        assert_eq!(h.clients(), 1);
        assert!(closed(&mut slow));
        assert!(
            !closed(&mut idle),
            "an idle client waits for the idle timeout"
        );
        h.server.expire(&registry, begun + IDLE_TIMEOUT);
        assert_eq!(h.clients(), 0);
        assert!(closed(&mut idle));
    }

    #[test]
    fn finishing_frames_restarts_the_frame_deadline() {
        let mut h = Harness::new(10);
        let mut client = h.connect();
        h.accept();
        let frame = encode_frame(&Request::new(1, "ping")).unwrap();
        // A whole frame and the start of the next one.
        let mut bytes = frame.clone();
        bytes.extend_from_slice(&frame[..3]);
        client.write_all(&bytes).unwrap();
        assert_eq!(h.serve_all().len(), 1);
        let first = h.server.clients.values().next().unwrap().partial_since;
        assert!(first.is_some(), "the second frame is under way");
        // Its rest, and a third frame begun: the deadline is the third's.
        let mut bytes = frame[3..].to_vec();
        bytes.extend_from_slice(&frame[..1]);
        client.write_all(&bytes).unwrap();
        assert_eq!(h.serve_all().len(), 1);
        let second = h.server.clients.values().next().unwrap().partial_since;
        assert!(second > first, "{second:?} after {first:?}");
        // And nothing pending once frames end on a boundary.
        client.write_all(&frame[1..]).unwrap();
        assert_eq!(h.serve_all().len(), 1);
        assert_eq!(
            h.server.clients.values().next().unwrap().partial_since,
            None
        );
    }

    #[test]
    fn refusals_name_who_may() {
        let mut server = Harness::new(1).server;
        server.owner_uid = 0;
        assert_eq!(server.who_may(), "only root may control this server");
        server.owner_uid = 1000;
        assert_eq!(
            server.who_may(),
            "only root and uid 1000 may control this server"
        );
        server.set_access(Access {
            allowed_uids: vec![0, 33, 1000, 34],
            max_clients: 1,
        });
        assert_eq!(
            server.who_may(),
            "only root and uids 1000, 33, 34 may control this server"
        );
        assert!(server.allows(0) && server.allows(33) && server.allows(1000));
        assert!(!server.allows(35));
    }
}
