//! The sync worker's loop (gunicorn's `gunicorn/workers/sync.py`): accept,
//! serve one request per connection, heartbeat, repeat.
//!
//! Differences from gunicorn, on purpose:
//! - no client can hold the worker while it sends its request: a
//!   connection whose head (or small body) has not fully arrived waits in
//!   the loop's set of held clients (`super::clients`), with a deadline,
//!   while the worker serves others; the app is called only for a request
//!   that is there. A request that arrives in one read is served at once,
//!   with no more system calls than a plain blocking worker makes;
//! - the close after a response is a lingering close when the client may
//!   still be sending, done by the loop as well;
//! - the wait is an epoll with `EPOLLEXCLUSIVE` on the listeners, so one
//!   connection wakes one idle worker instead of all of them (no thundering
//!   herd), and the signal self-pipe is in the same wait (no lost wake-ups);
//! - after a graceful stop (TERM) the worker first serves the connections
//!   already queued on the listeners, so a shutdown does not reset them
//!   (gunicorn's workers exit and leave them to be reset);
//! - at `max_requests` the worker asks the master for a replacement and keeps
//!   serving until the master retires it once that replacement has booted
//!   (gunicorn's worker just exits, so the pool is one short until the
//!   replacement boots).

use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::signal::Signal;
use nix::sys::socket::{SockaddrLike, SockaddrStorage};

use super::clients::{Client, Clients, Intake, Phase, Progress};
use super::connection::{self, Options, Served};
use super::notify::{self, WorkerMsg};
use super::WorkerSetup;
use crate::app::App;
use crate::http::{HttpError, PeerAddr};
use crate::listeners::Listener;
use crate::signals::SignalPipe;

const SIGNAL_TOKEN: u64 = u64::MAX;
/// Held clients' epoll tokens: this plus their slot.
const CLIENT_TOKEN: u64 = 1 << 32;

/// At most this many queued connections are served after a graceful stop,
/// and for at most this long.
const DRAIN_LIMIT: usize = 1024;
const DRAIN_WINDOW: Duration = Duration::from_secs(1);

/// Serve until told to stop; returns the exit code.
pub fn serve(setup: &WorkerSetup<'_>, app: &mut dyn App, sigpipe: &SignalPipe) -> i32 {
    let epoll = match watch(setup.listeners, sigpipe) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!("Exception in worker process: epoll: {e}");
            return super::WORKER_BOOT_ERROR;
        }
    };
    let limits = limits(setup.settings);
    let mut server = Server::new(setup, app, &epoll, &limits);
    let mut events = [EpollEvent::empty(); 64];
    loop {
        setup.slot.beat();
        if !server.handle_signals(sigpipe) {
            server.finish(&mut events, sigpipe);
            return super::EXIT_OK;
        }
        if server.accept_ready() {
            // While the listeners keep it busy, the held clients still get
            // their turn (their reads and deadlines) at every pass.
            if let Err(e) = server.service_held(&mut events) {
                tracing::error!("epoll_wait failed: {e}");
                return super::EXIT_ABORTED;
            }
            continue;
        }
        if nix::unistd::getppid() != setup.master_pid {
            tracing::info!(
                "Parent changed, shutting down: <Worker {}>",
                std::process::id()
            );
            return super::EXIT_OK;
        }
        if let Err(e) = server.wait(&mut events) {
            tracing::error!("epoll_wait failed: {e}");
            return super::EXIT_ABORTED;
        }
    }
}

/// The HTTP parser's limits and rules, from the settings.
pub(super) fn limits(s: &crate::config::Settings) -> crate::http::Limits {
    crate::http::Limits {
        request_line: s.limit_request_line,
        fields: s.limit_request_fields,
        field_size: s.limit_request_field_size,
        rules: crate::http::Rules {
            permit_unconventional_method: s.permit_unconventional_http_method,
            casefold_method: s.casefold_http_method,
            permit_unconventional_version: s.permit_unconventional_http_version,
            permit_obsolete_folding: s.permit_obsolete_folding,
            header_map: s.header_map,
            forwarder_headers: s.forwarder_headers.clone(),
        },
    }
}

fn watch(listeners: &[Listener], sigpipe: &SignalPipe) -> nix::Result<Epoll> {
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    watch_listeners(&epoll, listeners)?;
    // SAFETY: the pipe outlives the epoll instance (both live for the worker).
    let pipe_fd = unsafe { BorrowedFd::borrow_raw(sigpipe.raw_fd()) };
    epoll.add(pipe_fd, EpollEvent::new(EpollFlags::EPOLLIN, SIGNAL_TOKEN))?;
    Ok(epoll)
}

/// `EPOLLEXCLUSIVE`: a connection wakes one idle worker, not all of them.
fn watch_listeners(epoll: &Epoll, listeners: &[Listener]) -> nix::Result<()> {
    for (i, l) in listeners.iter().enumerate() {
        epoll.add(
            l.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLEXCLUSIVE, i as u64),
        )?;
    }
    Ok(())
}

struct Server<'a, 'b> {
    setup: &'a WorkerSetup<'a>,
    app: &'b mut dyn App,
    epoll: &'a Epoll,
    opts: Options<'a>,
    /// Longest wait for a client's next bytes once its request is served.
    patience: Duration,
    /// Heartbeat period: the longest the loop sleeps.
    beat_every: Duration,
    clients: Clients<'a>,
    intake: Intake<'a>,
    /// Whether the listeners are in the epoll set (not while the worker
    /// holds `worker_connections` clients, nor once it stops).
    accepting: bool,
    /// Set by a graceful stop: the listeners stay out from then on.
    stopping: bool,
    recycle_requested: bool,
}

impl<'a, 'b> Server<'a, 'b> {
    fn new(
        setup: &'a WorkerSetup<'a>,
        app: &'b mut dyn App,
        epoll: &'a Epoll,
        limits: &'a crate::http::Limits,
    ) -> Self {
        let s = setup.settings;
        // Heartbeat twice per timeout, like gunicorn; without a timeout, still
        // wake now and then to notice an orphaning.
        let beat_every = if s.timeout > 0 {
            Duration::from_millis((s.timeout * 1000 / 2).max(100))
        } else {
            Duration::from_secs(1)
        };
        Server {
            setup,
            app,
            epoll,
            opts: Options {
                limits,
                body_buffer: s.body_buffer,
                secure_scheme_headers: &s.secure_scheme_headers,
            },
            patience: connection::patience(s.body_timeout, s.timeout),
            beat_every,
            clients: Clients::new(),
            intake: Intake::new(
                setup,
                connection::patience(s.body_timeout, s.timeout),
                Duration::from_secs(s.header_timeout),
            ),
            accepting: true,
            stopping: false,
            recycle_requested: false,
        }
    }

    /// Act on queued signals; false once a graceful stop was requested.
    fn handle_signals(&mut self, sigpipe: &SignalPipe) -> bool {
        handle_signals(sigpipe)
    }

    /// Accept one connection from each ready listener and serve it if its
    /// request is there (else hold it); true if any was accepted (the
    /// caller then tries again before waiting).
    fn accept_ready(&mut self) -> bool {
        if !self.accepting {
            return false;
        }
        let mut accepted = false;
        for (i, listener) in self.setup.listeners.iter().enumerate() {
            if let Some((fd, peer)) = accept(listener.raw_fd()) {
                self.take(fd, peer, i);
                accepted = true;
            }
        }
        accepted
    }

    /// A new connection: read what it sent already; serve it when that is
    /// the whole request (the usual case), else hold it.
    fn take(&mut self, fd: OwnedFd, peer: PeerAddr, listener: usize) {
        let Some(mut client) = self.intake.client(fd, peer, listener) else {
            return;
        };
        match client.read_available(self.patience) {
            Progress::Arrived => self.serve_client(client, None),
            Progress::Waiting => self.hold(client, None),
            Progress::Finished => {}
            Progress::Refused(err) => self.refuse(client, None, &err),
        }
    }

    /// Keep `client` in the held set; `slot` is where it was (its socket is
    /// then still in the epoll set).
    fn hold(&mut self, client: Client<'a>, slot: Option<usize>) {
        let fd = client.stream.raw_fd();
        let new_slot = self.clients.insert(client);
        let event = EpollEvent::new(EpollFlags::EPOLLIN, CLIENT_TOKEN + new_slot as u64);
        // SAFETY: the client's socket stays open while it is held; it is
        // taken out of the epoll set before it closes (`release`).
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let result = match slot {
            Some(old) if old == new_slot => Ok(()),
            Some(_) => self.epoll.modify(fd, &mut { event }),
            None => self.epoll.add(fd, event),
        };
        if let Err(e) = result {
            tracing::debug!("cannot wait on a client: {e}");
            if let Some(client) = self.clients.remove(new_slot) {
                self.release(client);
            }
        }
        self.update_accepting();
    }

    /// Serve the request `client` sent, then close it (or linger, or wait
    /// for the rest of a small body).
    fn serve_client(&mut self, mut client: Client<'a>, slot: Option<usize>) {
        // For `gunicornctl workers`: this client is in the app.
        self.setup.slot.set_connections(self.clients.len() + 1, 1);
        let server = self.setup.listeners[client.listener].addr();
        let served = connection::serve(client.arrived(server, None), self.app, &self.opts);
        let now = Instant::now();
        match served {
            Served::NeedBody {
                missing,
                continue_sent,
            } => {
                client.phase = Phase::Body {
                    missing,
                    continue_sent,
                };
                // However it trickles, a buffered body has a last moment.
                client.deadline = (now + self.patience).min(client.body_deadline);
                self.hold(client, slot);
            }
            served => {
                // `Kept` is never offered here (`keep_alive: None`); it
                // would be a client that may send more: linger.
                let linger = matches!(served, Served::Done { linger: true } | Served::Kept { .. });
                client.stream.shutdown_write();
                if linger {
                    client.linger(now);
                    self.hold(client, slot);
                } else {
                    if slot.is_some() {
                        self.release(client);
                    }
                    self.update_accepting();
                }
                self.count_request();
            }
        }
        self.setup.slot.set_connections(self.clients.len(), 0);
    }

    fn count_request(&mut self) {
        let served = self.setup.slot.count_request();
        self.setup.slot.beat();
        if self.setup.max_requests > 0
            && served >= self.setup.max_requests
            && !self.recycle_requested
        {
            tracing::info!("Autorestarting worker after {served} requests: asking the master for a replacement.");
            self.recycle_requested = true;
            if let Err(e) = notify::send(self.setup.notify_fd, WorkerMsg::Recycle) {
                tracing::error!("Cannot reach the master ({e}); exiting to be replaced.");
                // Without the master's help, fall back to gunicorn's way.
                // SAFETY: terminating the process is always sound.
                unsafe { libc::_exit(super::EXIT_OK) };
            }
        }
    }

    /// Wait for a listener, a held client, a signal or a deadline, and deal
    /// with the clients that are ready or expired.
    fn wait(&mut self, events: &mut [EpollEvent]) -> nix::Result<()> {
        let now = Instant::now();
        let mut sleep = self.beat_every;
        if let Some(deadline) = self.clients.next_deadline() {
            // Rounded up: waking a millisecond early would only loop.
            sleep = sleep.min(deadline.saturating_duration_since(now) + Duration::from_micros(999));
        }
        self.wait_for(events, sleep)
    }

    /// The held clients' turn without sleeping (nothing to do, no system
    /// call, when none is held).
    fn service_held(&mut self, events: &mut [EpollEvent]) -> nix::Result<()> {
        if self.clients.is_empty() {
            return Ok(());
        }
        self.wait_for(events, Duration::ZERO)
    }

    fn wait_for(&mut self, events: &mut [EpollEvent], sleep: Duration) -> nix::Result<()> {
        let ms = sleep.as_millis().min(i32::MAX as u128) as i32;
        let timeout = EpollTimeout::try_from(ms).unwrap_or(EpollTimeout::NONE);
        let n = match self.epoll.wait(events, timeout) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => 0,
            Err(e) => return Err(e),
        };
        for event in &events[..n] {
            let token = event.data();
            if (CLIENT_TOKEN..SIGNAL_TOKEN).contains(&token) {
                self.on_readable((token - CLIENT_TOKEN) as usize);
            }
        }
        if !self.clients.is_empty() {
            self.expire(Instant::now());
        }
        self.setup.slot.set_connections(self.clients.len(), 0);
        Ok(())
    }

    fn on_readable(&mut self, slot: usize) {
        let patience = self.patience;
        let Some(client) = self.clients.get_mut(slot) else {
            return;
        };
        match client.read_available(patience) {
            Progress::Waiting => {}
            Progress::Arrived => {
                if let Some(client) = self.clients.remove(slot) {
                    self.serve_client(client, Some(slot));
                }
            }
            Progress::Finished => {
                if let Some(client) = self.clients.remove(slot) {
                    self.release(client);
                }
                self.update_accepting();
            }
            Progress::Refused(err) => {
                if let Some(client) = self.clients.remove(slot) {
                    self.refuse(client, Some(slot), &err);
                }
            }
        }
    }

    /// A connection whose PROXY header is refused: the logs, then the error
    /// page and a lingering close on a plain listener, a close on a TLS one
    /// (no session to answer in yet). Nothing reaches the app.
    fn refuse(&mut self, mut client: Client<'a>, slot: Option<usize>, err: &HttpError) {
        if client.refuse(err, Instant::now()) {
            self.hold(client, slot);
            return;
        }
        if slot.is_some() {
            self.release(client);
        }
        self.update_accepting();
    }

    /// Let go of a client that was in the epoll set. Explicitly out of the
    /// set first: a process the app forked may hold a copy of the socket,
    /// and epoll watches the socket, not the descriptor.
    fn release(&self, client: Client<'a>) {
        // SAFETY: the client's socket is open until `client` drops below.
        let fd = unsafe { BorrowedFd::borrow_raw(client.stream.raw_fd()) };
        let _ = self.epoll.delete(fd);
        drop(client);
    }

    /// Clients past their deadline: a 408 for a request that did not
    /// arrive in time; the end of a lingering close.
    fn expire(&mut self, now: Instant) {
        for slot in self.clients.expired(now) {
            let Some(mut client) = self.clients.remove(slot) else {
                continue;
            };
            if matches!(client.phase, Phase::Linger { .. }) {
                self.release(client);
                continue;
            }
            if !client.received.is_empty() {
                request_timeout(&client);
            }
            // A client that did not send its request in time is not
            // waited for: what the socket does not take is dropped.
            client.stream.shutdown_write_now();
            client.linger(now);
            self.hold(client, Some(slot));
        }
        self.update_accepting();
    }

    /// Take the listeners out of the epoll set while the worker holds as
    /// many clients as it may (level-triggered, they would wake it at
    /// every pass), and put them back once it holds fewer.
    fn update_accepting(&mut self) {
        let room = !self.stopping && self.clients.len() < self.setup.settings.worker_connections;
        if room == self.accepting {
            return;
        }
        let result = if room {
            watch_listeners(self.epoll, self.setup.listeners)
        } else {
            self.setup
                .listeners
                .iter()
                .try_for_each(|l| self.epoll.delete(l.as_fd()))
        };
        match result {
            Ok(()) => self.accepting = room,
            Err(e) => tracing::error!("cannot change the listeners' epoll registration: {e}"),
        }
    }

    /// After a graceful stop: serve what is already queued and the clients
    /// held, then exit. The listeners may be shared with a new generation
    /// that keeps them busy, so the backlog drain is bounded in time as
    /// well: a retiring worker must not go on accepting until its SIGKILL.
    fn finish(&mut self, events: &mut [EpollEvent], sigpipe: &SignalPipe) {
        let graceful = Duration::from_secs(self.setup.settings.graceful_timeout);
        let started = Instant::now();
        // During a binary upgrade the new master's workers accept from the
        // same queue: nothing queued is lost without us.
        if !self.setup.slot.queue_served_elsewhere() {
            let deadline = started + DRAIN_WINDOW.min(graceful / 2);
            for _ in 0..DRAIN_LIMIT {
                if Instant::now() >= deadline || !self.accept_ready() {
                    break;
                }
            }
        }
        self.stopping = true;
        self.update_accepting();
        // Held clients have their own deadlines; the graceful timeout
        // bounds them all.
        let deadline = started + graceful / 2;
        while !self.clients.is_empty() && Instant::now() < deadline {
            self.setup.slot.beat();
            // A log reopen or a hooked quick stop still counts (and the
            // pipe must be read, or it would wake every wait at once).
            self.handle_signals(sigpipe);
            if self.wait(events).is_err() {
                break;
            }
        }
    }
}

/// Act on queued signals (a log reopen, a hooked quick stop); false once a
/// graceful stop was requested.
pub(super) fn handle_signals(sigpipe: &SignalPipe) -> bool {
    let mut alive = true;
    for sig in sigpipe.drain() {
        match sig {
            Signal::SIGTERM => alive = false,
            Signal::SIGUSR1 => {
                if let Err(e) = crate::log::reopen() {
                    tracing::error!("Cannot reopen log files: {e}");
                }
            }
            // Only a hooked quick stop reaches the pipe.
            sig if super::signals::quick_stop_code(sig).is_some() => super::quit(sig),
            _ => {}
        }
    }
    alive
}

/// A 408 for a client whose request did not arrive in time (best effort:
/// written only if the socket takes it at once).
pub(super) fn request_timeout(client: &Client<'_>) {
    let err = HttpError::new(408, "The request did not arrive in time.");
    tracing::debug!(
        "Request timed out from ip={}: {}",
        client.peer.host(),
        err.message
    );
    let mut page = Vec::new();
    if crate::http::write_error(&mut page, &err).is_ok() {
        let _ = client.stream.write_now(&page);
    }
    crate::log::access(&crate::log::AccessRecord {
        peer: &client.peer,
        head: None,
        status: 408,
        body_bytes: 0,
        response_headers: &[],
        started: client.started,
        duration: client.accepted.elapsed(),
    });
}

/// One non-blocking accept; `None` when nothing is queued (or on a benign
/// error such as a connection reset before it was accepted).
pub(super) fn accept(listener: RawFd) -> Option<(OwnedFd, PeerAddr)> {
    // SAFETY: zeroed storage is a valid sockaddr_storage; accept4 fills it.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    loop {
        // SAFETY: storage/len describe a writable buffer of the right size.
        let fd = unsafe {
            libc::accept4(
                listener,
                (&mut storage as *mut libc::sockaddr_storage).cast(),
                &mut len,
                libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            )
        };
        if fd >= 0 {
            // SAFETY: accept4 returned a new descriptor that we now own.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            return Some((owned, peer_of(&storage, len)));
        }
        match nix::errno::Errno::last() {
            nix::errno::Errno::EINTR => continue,
            nix::errno::Errno::EAGAIN
            | nix::errno::Errno::ECONNABORTED
            | nix::errno::Errno::EPROTO => return None,
            e => {
                tracing::debug!("accept failed: {e}");
                return None;
            }
        }
    }
}

fn peer_of(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> PeerAddr {
    // SAFETY: storage holds `len` bytes of an address written by accept4.
    let addr = unsafe {
        SockaddrStorage::from_raw((storage as *const libc::sockaddr_storage).cast(), Some(len))
    };
    match addr {
        Some(a) if a.family() == Some(nix::sys::socket::AddressFamily::Inet) => {
            PeerAddr::Tcp((*a.as_sockaddr_in().expect("inet")).into())
        }
        Some(a) if a.family() == Some(nix::sys::socket::AddressFamily::Inet6) => {
            PeerAddr::Tcp((*a.as_sockaddr_in6().expect("inet6")).into())
        }
        _ => PeerAddr::Unix,
    }
}
