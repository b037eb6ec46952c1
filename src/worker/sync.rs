//! The sync worker's loop (gunicorn's `gunicorn/workers/sync.py`): accept,
//! serve one request per connection, heartbeat, repeat.
//!
//! Differences from gunicorn, on purpose:
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

use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::signal::Signal;
use nix::sys::socket::{SockaddrLike, SockaddrStorage};

use super::connection::{self, Stream};
use super::notify::{self, WorkerMsg};
use super::WorkerSetup;
use crate::app::App;
use crate::http::PeerAddr;
use crate::listeners::Listener;
use crate::signals::SignalPipe;

const SIGNAL_TOKEN: u64 = u64::MAX;

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
    let mut server = Server::new(setup, app);
    let mut events = [EpollEvent::empty(); 16];
    loop {
        setup.slot.beat();
        if !server.handle_signals(sigpipe) {
            server.drain_backlog();
            return super::EXIT_OK;
        }
        if server.accept_ready() {
            continue;
        }
        if nix::unistd::getppid() != setup.master_pid {
            tracing::info!(
                "Parent changed, shutting down: <Worker {}>",
                std::process::id()
            );
            return super::EXIT_OK;
        }
        match epoll.wait(&mut events, server.wait_timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                tracing::error!("epoll_wait failed: {e}");
                return super::EXIT_ABORTED;
            }
        }
    }
}

fn watch(listeners: &[Listener], sigpipe: &SignalPipe) -> nix::Result<Epoll> {
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    for (i, l) in listeners.iter().enumerate() {
        epoll.add(
            l.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLEXCLUSIVE, i as u64),
        )?;
    }
    // SAFETY: the pipe outlives the epoll instance (both live for the worker).
    let pipe_fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(sigpipe.raw_fd()) };
    epoll.add(pipe_fd, EpollEvent::new(EpollFlags::EPOLLIN, SIGNAL_TOKEN))?;
    Ok(epoll)
}

struct Server<'a, 'b> {
    setup: &'a WorkerSetup<'a>,
    app: &'b mut dyn App,
    limits: crate::http::Limits,
    io_timeout: Option<Duration>,
    wait_timeout: EpollTimeout,
    recycle_requested: bool,
}

impl<'a, 'b> Server<'a, 'b> {
    fn new(setup: &'a WorkerSetup<'a>, app: &'b mut dyn App) -> Self {
        let s = setup.settings;
        let limits = crate::http::Limits {
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
        };
        // Heartbeat twice per timeout, like gunicorn; without a timeout, still
        // wake now and then to notice an orphaning.
        let wait_ms = if s.timeout > 0 {
            (s.timeout * 1000 / 2).max(100)
        } else {
            1000
        };
        let wait_timeout = EpollTimeout::try_from(wait_ms.min(i32::MAX as u64) as i32)
            .unwrap_or(EpollTimeout::NONE);
        // A client that stalls longer than the heartbeat timeout would get
        // the worker killed; give up on it first.
        let io_timeout =
            (s.timeout > 0).then(|| Duration::from_millis((s.timeout * 1000 / 2).max(500)));
        Server {
            setup,
            app,
            limits,
            io_timeout,
            wait_timeout,
            recycle_requested: false,
        }
    }

    /// Act on queued signals; false once a graceful stop was requested.
    fn handle_signals(&mut self, sigpipe: &SignalPipe) -> bool {
        let mut alive = true;
        for sig in sigpipe.drain() {
            match sig {
                Signal::SIGTERM => alive = false,
                Signal::SIGUSR1 => {
                    if let Err(e) = crate::log::reopen() {
                        tracing::error!("Cannot reopen log files: {e}");
                    }
                }
                _ => {}
            }
        }
        alive
    }

    /// Accept and serve one connection from each ready listener; true if any
    /// was served (the caller then tries again before waiting).
    fn accept_ready(&mut self) -> bool {
        let mut served = false;
        for listener in self.setup.listeners {
            if let Some((fd, peer)) = accept(listener.raw_fd()) {
                self.serve_one(fd, peer, listener.is_unix());
                served = true;
            }
        }
        served
    }

    fn serve_one(&mut self, fd: OwnedFd, peer: PeerAddr, unix: bool) {
        let stream = Stream::new(fd, unix);
        if let Err(e) = stream.set_timeouts(self.io_timeout) {
            tracing::debug!("cannot set socket timeouts: {e}");
        }
        connection::serve(stream, &peer, self.app, &self.limits);
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

    /// After a graceful stop: serve what is already queued, then exit. The
    /// listeners may be shared with a new generation that keeps them busy,
    /// so the drain is bounded in time as well: a retiring worker must not
    /// go on accepting until its SIGKILL.
    fn drain_backlog(&mut self) {
        // During a binary upgrade the new master's workers accept from the
        // same queue: nothing queued is lost without us.
        if self.setup.slot.queue_served_elsewhere() {
            return;
        }
        let graceful = Duration::from_secs(self.setup.settings.graceful_timeout);
        let deadline = std::time::Instant::now() + DRAIN_WINDOW.min(graceful / 2);
        for _ in 0..DRAIN_LIMIT {
            if std::time::Instant::now() >= deadline || !self.accept_ready() {
                return;
            }
        }
    }
}

/// One non-blocking accept; `None` when nothing is queued (or on a benign
/// error such as a connection reset before it was accepted).
fn accept(listener: RawFd) -> Option<(OwnedFd, PeerAddr)> {
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
                libc::SOCK_CLOEXEC,
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
