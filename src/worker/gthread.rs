//! The gthread worker (gunicorn's `gunicorn/workers/gthread.py`): one event
//! loop (mio) per worker accepts connections and holds them while their
//! request arrives and, between requests, while they are idle (keep-alive);
//! a request that has arrived goes to a pool of `--threads` threads, each
//! with its own handle on the app (`App::for_thread`), and the connection
//! comes back to the loop after its response.
//!
//! What the loop holds is the sync worker's (`super::clients`): the same
//! deadlines apply to every connection, for every request on it (the head
//! within `--header-timeout` of its first byte, a buffered body with
//! progress every `--body-timeout`), and an idle connection is closed after
//! `--keep-alive` seconds. A request is served by `super::connection::serve`
//! exactly as in the sync worker, with keep-alive offered when
//! [`keep_alive`] allows it.
//!
//! Differences from gunicorn, on purpose:
//! - a slow client never holds a thread: its request is read by the loop,
//!   and the app runs only for a request that has arrived;
//! - at a graceful stop idle connections are closed at once and busy ones
//!   after their response (which says `Connection: close`); at
//!   `max_requests` the worker asks the master for a replacement and keeps
//!   serving, closing each connection after its next response, until it is
//!   retired (gunicorn's worker exits and drops the idle ones);
//! - pipelined requests are answered in order, each when the previous
//!   response is out.
//!
//! Where a connection could be wrapped before HTTP is read (TLS, a PROXY
//! protocol header): [`Worker::take`], between `accept` and the first read.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use super::clients::{Client, Intake, Phase, Progress};
use super::connection::{self, Options, Served};
use super::notify::{self, WorkerMsg};
use super::sync::{accept, handle_signals, limits, request_timeout};
use super::WorkerSetup;
use crate::app::App;
use crate::http::PeerAddr;
use crate::listeners::ListenAddr;
use crate::signals::SignalPipe;

/// mio tokens: listeners are `0..listeners`, connections `CONN + slot`.
const SIGNAL: Token = Token(usize::MAX);
const WAKE: Token = Token(usize::MAX - 1);
const CONN: usize = 1 << 20;

/// At most this many connections accepted from one listener per pass, so
/// that the connections held get their turn under a flood.
const ACCEPTS_PER_PASS: usize = 64;

/// After a graceful stop, connections already queued on the listeners are
/// served for at most this long (as the sync worker does).
const DRAIN_WINDOW: Duration = Duration::from_secs(1);

/// The loop wakes at least this often: the heartbeat beats while the
/// threads are busy, and an orphaned worker notices.
const BEAT_EVERY: Duration = Duration::from_secs(1);

/// What decides whether a response may offer to keep its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepAlive {
    /// `--keep-alive` seconds (0: never).
    pub seconds: u64,
    /// A graceful stop is under way.
    pub stopping: bool,
    /// The worker reached `max_requests` and waits to be replaced.
    pub recycling: bool,
    /// Connections the worker holds, this one included.
    pub connections: usize,
    /// `--worker-connections`.
    pub limit: usize,
}

/// Whether the response to a request may offer keep-alive (the client's
/// wishes and the response's framing decide the rest): never once the
/// worker is leaving (a stop, a recycle: the client then reconnects to a
/// worker that stays), nor when it holds as many connections as it may.
pub fn keep_alive(k: KeepAlive) -> bool {
    k.seconds > 0 && !k.stopping && !k.recycling && k.connections < k.limit
}

/// Serve until told to stop; returns the exit code (or exits).
pub fn serve(setup: &WorkerSetup<'_>, app: &mut dyn App, sigpipe: &SignalPipe) -> i32 {
    // An app that never waits runs on the loop: no thread hop per request.
    let inline = app.runs_inline();
    let threads = if inline {
        0
    } else {
        setup.settings.threads.max(1)
    };
    let mut apps = Vec::with_capacity(threads);
    for _ in 0..threads {
        match app.for_thread(threads) {
            Ok(app) => apps.push(app),
            Err(e) => {
                tracing::error!("Exception in worker process: cannot run the app on threads: {e}");
                return super::APP_LOAD_ERROR;
            }
        }
    }
    let poll = match Poll::new() {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("Exception in worker process: cannot create the event loop: {e}");
            return super::WORKER_BOOT_ERROR;
        }
    };
    let waker = match watch(&poll, setup, sigpipe) {
        Ok(w) => Arc::new(w),
        Err(e) => {
            tracing::error!("Exception in worker process: cannot watch the listeners: {e}");
            return super::WORKER_BOOT_ERROR;
        }
    };
    let limits = limits(setup.settings);
    let opts = Options {
        limits: &limits,
        body_buffer: setup.settings.body_buffer,
        secure_scheme_headers: &setup.settings.secure_scheme_headers,
    };
    let servers: Vec<ListenAddr> = setup.listeners.iter().map(|l| l.addr().clone()).collect();
    // Cleared when the worker starts to leave (a stop, a recycle): the
    // responses whose head is not out yet then say `Connection: close`.
    let offered = AtomicBool::new(true);
    let (job_tx, job_rx) = mpsc::channel::<Job<'_>>();
    let (done_tx, done_rx) = mpsc::channel::<Finished<'_>>();
    let job_rx = Mutex::new(job_rx);
    std::thread::scope(|scope| {
        for (i, mut app) in apps.into_iter().enumerate() {
            let (job_rx, done_tx, waker) = (&job_rx, done_tx.clone(), Arc::clone(&waker));
            let (opts, servers) = (&opts, &servers);
            let spawned = std::thread::Builder::new()
                .name(format!("gthread-{i}"))
                .spawn_scoped(scope, move || {
                    thread_life(move || {
                        run_thread(app.as_mut(), job_rx, &done_tx, &waker, opts, servers)
                    })
                });
            if let Err(e) = spawned {
                tracing::error!("Exception in worker process: cannot start a thread: {e}");
                super::exit(super::WORKER_BOOT_ERROR);
            }
        }
        drop(done_tx);
        let mut worker = Worker::new(setup, poll, job_tx, done_rx, &offered, &opts);
        worker.inline = inline.then_some(app);
        let code = worker.run(sigpipe);
        // The threads may be in an app that does not return: leave without
        // joining them (the scope would).
        super::exit(code)
    })
}

fn watch(poll: &Poll, setup: &WorkerSetup<'_>, sigpipe: &SignalPipe) -> std::io::Result<Waker> {
    for (i, l) in setup.listeners.iter().enumerate() {
        poll.registry()
            .register(&mut SourceFd(&l.raw_fd()), Token(i), Interest::READABLE)?;
    }
    poll.registry()
        .register(&mut SourceFd(&sigpipe.raw_fd()), SIGNAL, Interest::READABLE)?;
    Waker::new(poll.registry(), WAKE)
}

/// A pool thread's whole life, with what the app's language keeps per
/// thread held for it (Python's thread state: `python::with_thread_state`).
fn thread_life(f: impl FnOnce() + Send) {
    #[cfg(feature = "python")]
    crate::python::with_thread_state(f);
    #[cfg(not(feature = "python"))]
    f();
}

/// A request handed to the pool.
struct Job<'s> {
    slot: usize,
    client: Client<'s>,
    keep_alive: Option<&'s AtomicBool>,
}

/// A connection handed back to the loop.
struct Finished<'s> {
    slot: usize,
    client: Client<'s>,
    served: Served,
    /// When its response was out: its keep-alive time counts from then,
    /// however late the loop takes it (a kept connection wakes nobody).
    at: Instant,
}

/// One thread of the pool: serve what the loop hands over, one request at
/// a time, until the loop goes away.
fn run_thread<'s>(
    app: &mut dyn App,
    jobs: &Mutex<Receiver<Job<'s>>>,
    done: &Sender<Finished<'s>>,
    waker: &Waker,
    opts: &Options<'_>,
    servers: &[ListenAddr],
) {
    loop {
        let job = jobs
            .lock()
            .map_err(|_| ())
            .and_then(|rx| rx.recv().map_err(|_| ()));
        let Ok(Job {
            slot,
            client,
            keep_alive,
        }) = job
        else {
            return;
        };
        let served = serve_one(&client, app, opts, &servers[client.listener], keep_alive);
        // A connection kept for its next request needs nothing from the
        // loop until that request's edge wakes it (the loop takes finished
        // connections first thing after each wait): no wake-up, and no
        // context switch, per request. Everything else wakes it now, and so
        // do bytes that may wait with no edge to come: unread by the loop
        // (not drained, read by the request itself, or kept by TLS), or
        // arrived while the request was served (looked at after the
        // connection is handed back, so that what comes later has its edge).
        let quiet = matches!(&served, Served::Kept { pipelined } if pipelined.is_empty())
            && client.drained
            && !client.stream.read_blocking()
            && !client.stream.is_tls();
        let fd = client.stream.raw_fd();
        if done
            .send(Finished {
                slot,
                client,
                served,
                at: Instant::now(),
            })
            .is_err()
        {
            return;
        }
        if !quiet || readable_now(fd) {
            let _ = waker.wake();
        }
    }
}

/// Whether bytes (or the end of the stream) wait on socket `fd` now,
/// without reading them. The connection may be the loop's again by then:
/// a look at a descriptor it closed meanwhile only costs a spurious wake.
fn readable_now(fd: std::os::fd::RawFd) -> bool {
    let mut byte = [0u8; 1];
    // SAFETY: a one-byte buffer of ours; MSG_PEEK leaves the data; a
    // closed or reused descriptor makes it fail or look elsewhere, both
    // harmless here.
    let n = unsafe {
        libc::recv(
            fd,
            byte.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::WouldBlock
}

/// Serve `client`'s request (it has arrived: `Progress::Arrived`).
fn serve_one(
    client: &Client<'_>,
    app: &mut dyn App,
    opts: &Options<'_>,
    server: &ListenAddr,
    keep_alive: Option<&AtomicBool>,
) -> Served {
    connection::serve(client.arrived(server, keep_alive), app, opts)
}

/// Where a connection is.
// Held inline, not boxed: the slots are reused for the worker's life, so a
// free one costs a couple of hundred bytes and a new connection no
// allocation.
#[allow(clippy::large_enum_variant)]
enum Entry<'s> {
    Free,
    /// In the loop: its request arriving, idle between requests, or
    /// lingering on its way out.
    Held(Client<'s>),
    /// Its request is with a thread; `woke`: the socket became readable
    /// meanwhile (the edge is spent: the loop reads when it comes back).
    Busy {
        woke: bool,
    },
}

struct Worker<'a> {
    setup: &'a WorkerSetup<'a>,
    poll: Poll,
    jobs: Sender<Job<'a>>,
    done: Receiver<Finished<'a>>,
    /// Shared with the threads: see [`serve`].
    offered: &'a AtomicBool,
    /// The app, when it runs on the loop (`App::runs_inline`).
    inline: Option<&'a mut dyn App>,
    opts: &'a Options<'a>,
    conns: Vec<Entry<'a>>,
    free: Vec<usize>,
    /// Connections in `conns` (held or busy), and of those the busy ones.
    open: usize,
    busy: usize,
    patience: Duration,
    header_timeout: Duration,
    keepalive: Duration,
    intake: Intake<'a>,
    /// Listeners that may have connections queued (mio is edge-triggered:
    /// a listener is accepted from until it says `EAGAIN`).
    ready: Vec<bool>,
    /// After a graceful stop: accept until this moment (the queue's
    /// drain), then no more.
    accept_until: Option<Instant>,
    stopping: bool,
    recycle_requested: bool,
}

impl<'a> Worker<'a> {
    fn new(
        setup: &'a WorkerSetup<'a>,
        poll: Poll,
        jobs: Sender<Job<'a>>,
        done: Receiver<Finished<'a>>,
        offered: &'a AtomicBool,
        opts: &'a Options<'a>,
    ) -> Self {
        let s = setup.settings;
        Worker {
            setup,
            poll,
            jobs,
            done,
            offered,
            inline: None,
            opts,
            conns: Vec::new(),
            free: Vec::new(),
            open: 0,
            busy: 0,
            patience: connection::patience(s.body_timeout, s.timeout),
            header_timeout: Duration::from_secs(s.header_timeout),
            keepalive: Duration::from_secs(s.keepalive),
            intake: Intake::new(
                setup,
                connection::patience(s.body_timeout, s.timeout),
                Duration::from_secs(s.header_timeout),
            ),
            // Something may be queued already.
            ready: vec![true; setup.listeners.len()],
            accept_until: None,
            stopping: false,
            recycle_requested: false,
        }
    }

    /// The loop; returns the exit code.
    fn run(&mut self, sigpipe: &SignalPipe) -> i32 {
        let mut events = Events::with_capacity(256);
        let graceful = Duration::from_secs(self.setup.settings.graceful_timeout);
        let mut stop_deadline = None;
        let mut last_parent_check = Instant::now();
        loop {
            self.setup.slot.beat();
            if !self.stopping && !handle_signals(sigpipe) {
                let now = Instant::now();
                self.begin_stop(now, graceful);
                stop_deadline = Some(now + graceful);
            } else if self.stopping {
                // A log reopen or a hooked quick stop still counts.
                handle_signals(sigpipe);
            }
            if let Some(deadline) = stop_deadline {
                // The queue's drain ends early once the listeners are empty.
                let draining = self.accept_until.is_some_and(|t| Instant::now() < t)
                    && self.ready.iter().any(|&r| r);
                if self.open == 0 && !draining {
                    return super::EXIT_OK;
                }
                // Requests in the app get the whole graceful timeout (the
                // master's SIGKILL ends it anyway); clients that are only
                // sending theirs, half of it, as in the sync worker.
                let held_only = self.busy == 0 && !draining;
                if Instant::now() >= deadline
                    || (held_only && Instant::now() >= deadline - graceful / 2)
                {
                    tracing::info!(
                        "Graceful timeout: exiting with {} connection(s) open",
                        self.open
                    );
                    return super::EXIT_OK;
                }
            }
            self.take_finished();
            let more = self.accept_ready();
            // Orphaned? Once a second at most: not a system call per pass.
            if last_parent_check.elapsed() >= BEAT_EVERY {
                last_parent_check = Instant::now();
                if nix::unistd::getppid() != self.setup.master_pid {
                    tracing::info!(
                        "Parent changed, shutting down: <Worker {}>",
                        std::process::id()
                    );
                    return super::EXIT_OK;
                }
            }
            let now = Instant::now();
            let mut sleep = BEAT_EVERY;
            if let Some(deadline) = self.next_deadline() {
                // Rounded up: waking a millisecond early would only loop.
                sleep =
                    sleep.min(deadline.saturating_duration_since(now) + Duration::from_micros(999));
            }
            if let Some(deadline) = stop_deadline {
                sleep = sleep.min(deadline.saturating_duration_since(now));
            }
            if more {
                sleep = Duration::ZERO;
            }
            if let Err(e) = self.poll.poll(&mut events, Some(sleep)) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    tracing::error!("epoll_wait failed: {e}");
                    return super::EXIT_ABORTED;
                }
            }
            // Kept connections come back without a wake-up: take them
            // before their next request's edge is looked at.
            self.take_finished();
            for event in events.iter() {
                match event.token() {
                    SIGNAL | WAKE => {}
                    Token(i) if i < self.ready.len() => self.ready[i] = true,
                    Token(t) => self.service(t - CONN),
                }
            }
            self.expire(Instant::now());
            self.publish();
        }
    }

    /// TERM: stop accepting (after the queue's drain), close the idle
    /// connections; busy ones close after their response.
    fn begin_stop(&mut self, now: Instant, graceful: Duration) {
        self.stopping = true;
        self.offered.store(false, Ordering::Relaxed);
        // During a binary upgrade the new master's workers accept from the
        // same queue: nothing queued is lost without us.
        self.accept_until = (!self.setup.slot.queue_served_elsewhere())
            .then(|| now + DRAIN_WINDOW.min(graceful / 2));
        for slot in 0..self.conns.len() {
            let idle = matches!(
                &self.conns[slot],
                Entry::Held(c) if c.phase == Phase::Head && c.received.is_empty()
            );
            if idle {
                // A request that arrived meanwhile is still answered.
                self.service(slot);
                if let Entry::Held(c) = &self.conns[slot] {
                    if c.phase == Phase::Head && c.received.is_empty() {
                        self.close(slot);
                    }
                }
            }
        }
    }

    fn may_accept(&self) -> bool {
        let in_window = match self.accept_until {
            Some(until) => Instant::now() < until,
            None => !self.stopping,
        };
        in_window && self.open < self.setup.settings.worker_connections
    }

    /// Accept from the listeners that may have connections queued; true
    /// when some may still have (come back without sleeping).
    fn accept_ready(&mut self) -> bool {
        let mut more = false;
        for i in 0..self.ready.len() {
            let mut taken = 0;
            while self.ready[i] && self.may_accept() {
                if taken == ACCEPTS_PER_PASS {
                    more = true;
                    break;
                }
                match accept(self.setup.listeners[i].raw_fd()) {
                    Some((fd, peer)) => {
                        taken += 1;
                        self.take(fd, peer, i);
                    }
                    None => self.ready[i] = false,
                }
            }
        }
        more
    }

    /// A new connection: watch it, read what it sent (a PROXY header, the
    /// TLS handshake, the request), serve it if that is its whole request.
    fn take(&mut self, fd: OwnedFd, peer: PeerAddr, listener: usize) {
        let Some(client) = self.intake.client(fd, peer, listener) else {
            return;
        };
        let raw = client.stream.raw_fd();
        let slot = self.insert(client);
        if let Err(e) = self.poll.registry().register(
            &mut SourceFd(&raw),
            Token(CONN + slot),
            Interest::READABLE,
        ) {
            tracing::debug!("cannot wait on a client: {e}");
            self.conns[slot] = Entry::Free;
            self.free.push(slot);
            self.open -= 1;
            return;
        }
        self.service(slot);
    }

    fn insert(&mut self, client: Client<'a>) -> usize {
        self.open += 1;
        match self.free.pop() {
            Some(slot) => {
                self.conns[slot] = Entry::Held(client);
                slot
            }
            None => {
                self.conns.push(Entry::Held(client));
                self.conns.len() - 1
            }
        }
    }

    /// Read what a held connection has; true when its request has
    /// arrived (the caller then dispatches it), else it is kept or closed.
    fn on_readable(&mut self, slot: usize) -> bool {
        let patience = self.patience;
        let header_timeout = self.header_timeout;
        let client = match self.conns.get_mut(slot) {
            Some(Entry::Held(client)) => client,
            Some(Entry::Busy { woke }) => {
                // Its thread has it; the loop reads when it comes back.
                *woke = true;
                return false;
            }
            _ => return false,
        };
        let idle = client.phase == Phase::Head && client.received.is_empty();
        let progress = client.read_available(patience);
        if idle && !client.received.is_empty() {
            // The next request began: its own times and head deadline.
            let now = Instant::now();
            client.started = SystemTime::now();
            client.accepted = now;
            client.deadline = now + header_timeout;
            client.body_deadline = now + header_timeout + patience;
        }
        match progress {
            Progress::Waiting => false,
            Progress::Arrived => true,
            Progress::Finished => {
                self.close(slot);
                false
            }
            Progress::Refused(err) => {
                if client.refuse(&err, Instant::now()) {
                    // Lingering: what the client sent after the header may
                    // be there already, and no edge repeats it.
                    return self.on_readable(slot);
                }
                self.close(slot);
                false
            }
        }
    }

    /// Read a held connection and serve what arrived.
    fn service(&mut self, slot: usize) {
        if self.on_readable(slot) {
            self.dispatch(slot);
        }
    }

    /// Serve a held connection whose request has arrived: on the loop for
    /// an app that never waits ([`App::runs_inline`]), else by the pool.
    /// Pipelined requests follow one another here, in order.
    fn dispatch(&mut self, slot: usize) {
        loop {
            let busy = Entry::Busy { woke: false };
            let Entry::Held(client) = std::mem::replace(&mut self.conns[slot], busy) else {
                return;
            };
            // A client that closed its side sends no next request.
            let keep_alive = (keep_alive(KeepAlive {
                seconds: self.setup.settings.keepalive,
                stopping: self.stopping,
                recycling: self.recycle_requested,
                connections: self.open,
                limit: self.setup.settings.worker_connections,
            }) && !client.eof)
                .then_some(self.offered);
            self.busy += 1;
            if let Some(app) = self.inline.as_deref_mut() {
                let server = self.setup.listeners[client.listener].addr();
                let served = serve_one(&client, app, self.opts, server, keep_alive);
                if self.finished(slot, client, served, Instant::now()) {
                    continue;
                }
                return;
            }
            if let Err(mpsc::SendError(job)) = self.jobs.send(Job {
                slot,
                client,
                keep_alive,
            }) {
                // No thread left (they only end with the loop): drop it.
                tracing::error!("no thread to serve a request");
                self.busy -= 1;
                self.conns[slot] = Entry::Held(job.client);
                self.close(slot);
            }
            return;
        }
    }

    /// Connections the threads are done with.
    fn take_finished(&mut self) {
        while let Ok(Finished {
            slot,
            client,
            served,
            at,
        }) = self.done.try_recv()
        {
            if self.finished(slot, client, served, at) {
                self.dispatch(slot);
            }
        }
    }

    /// A connection back from its request: wait for the rest of a small
    /// body, close it (lingering if the client may still send), or keep it
    /// for the next request. True when that next request has arrived
    /// already (the caller dispatches it).
    fn finished(
        &mut self,
        slot: usize,
        mut client: Client<'a>,
        served: Served,
        now: Instant,
    ) -> bool {
        self.busy -= 1;
        // Bytes may wait that no edge will announce: the loop's last read
        // stopped at a complete request, the socket became readable while
        // the request was served, or the request read it itself.
        let woke = matches!(self.conns[slot], Entry::Busy { woke: true });
        let look_again = !client.drained || client.stream.take_read_blocking() || woke;
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
                self.conns[slot] = Entry::Held(client);
                look_again && self.on_readable(slot)
            }
            Served::Done { linger } => {
                self.count_request();
                client.stream.shutdown_write();
                if linger {
                    // Always read once: the client's end of stream may
                    // have been seen already, and no edge repeats it.
                    client.linger(now);
                    self.conns[slot] = Entry::Held(client);
                    self.on_readable(slot);
                } else {
                    self.conns[slot] = Entry::Held(client);
                    self.close(slot);
                }
                false
            }
            Served::Kept { pipelined } => {
                self.count_request();
                client.phase = Phase::Head;
                client.eof = false;
                // The buffer is kept: its capacity serves the next read.
                client.received.clear();
                client.received.extend_from_slice(&pipelined);
                if client.received.is_empty() {
                    client.deadline = now + self.keepalive;
                } else {
                    client.started = SystemTime::now();
                    client.accepted = now;
                    client.deadline = now + self.header_timeout;
                    client.body_deadline = now + self.header_timeout + self.patience;
                }
                let pipelined_head = super::clients::head_arrived(&client.received, 0);
                self.conns[slot] = Entry::Held(client);
                if pipelined_head {
                    return true;
                }
                let arrived = (look_again || self.stopping) && self.on_readable(slot);
                if self.stopping && !arrived {
                    // Leaving: close now unless a request is on its way.
                    if let Entry::Held(c) = &self.conns[slot] {
                        if c.phase == Phase::Head && c.received.is_empty() {
                            self.close(slot);
                        }
                    }
                }
                arrived
            }
        }
    }

    fn count_request(&mut self) {
        let served = self.setup.slot.count_request();
        if self.setup.max_requests > 0
            && served >= self.setup.max_requests
            && !self.recycle_requested
        {
            tracing::info!("Autorestarting worker after {served} requests: asking the master for a replacement.");
            self.recycle_requested = true;
            self.offered.store(false, Ordering::Relaxed);
            if let Err(e) = notify::send(self.setup.notify_fd, WorkerMsg::Recycle) {
                tracing::error!("Cannot reach the master ({e}); exiting to be replaced.");
                // Without the master's help, fall back to gunicorn's way.
                super::exit(super::EXIT_OK);
            }
        }
    }

    /// Let go of a held connection.
    fn close(&mut self, slot: usize) {
        if let Entry::Held(client) = std::mem::replace(&mut self.conns[slot], Entry::Free) {
            // Explicitly out of the set first: a process the app forked may
            // hold a copy of the socket, and epoll watches the socket.
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&client.stream.raw_fd()));
            if client.stream.is_tls() {
                // An idle keep-alive connection ends with close_notify
                // (if the socket takes it now), as a TLS peer expects.
                client.stream.shutdown_write_now();
            }
            drop(client);
            self.free.push(slot);
            self.open -= 1;
        }
    }

    fn held(&self) -> impl Iterator<Item = (usize, &Client<'a>)> {
        self.conns.iter().enumerate().filter_map(|(i, e)| match e {
            Entry::Held(c) => Some((i, c)),
            _ => None,
        })
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.held().map(|(_, c)| c.deadline).min()
    }

    /// Held connections past their deadline: an idle one is closed, a
    /// request that did not arrive in time gets a 408, a lingering close
    /// ends.
    fn expire(&mut self, now: Instant) {
        if !self.held().any(|(_, c)| c.deadline <= now) {
            return;
        }
        let expired: Vec<usize> = self
            .held()
            .filter(|(_, c)| c.deadline <= now)
            .map(|(i, _)| i)
            .collect();
        for slot in expired {
            let Entry::Held(client) = &mut self.conns[slot] else {
                continue;
            };
            if matches!(client.phase, Phase::Linger { .. }) || client.received.is_empty() {
                self.close(slot);
                continue;
            }
            request_timeout(client);
            // A client that did not send its request in time is not
            // waited for: what the socket does not take is dropped.
            client.stream.shutdown_write_now();
            client.linger(now);
        }
    }

    /// The counts `gunicornctl workers` shows.
    fn publish(&self) {
        self.setup.slot.set_connections(self.open, self.busy);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_alive_is_offered_only_while_the_worker_stays_and_has_room() {
        let base = KeepAlive {
            seconds: 2,
            stopping: false,
            recycling: false,
            connections: 1,
            limit: 10,
        };
        assert!(keep_alive(base));
        assert!(!keep_alive(KeepAlive { seconds: 0, ..base }));
        assert!(!keep_alive(KeepAlive {
            stopping: true,
            ..base
        }));
        assert!(!keep_alive(KeepAlive {
            recycling: true,
            ..base
        }));
        assert!(keep_alive(KeepAlive {
            connections: 9,
            ..base
        }));
        assert!(!keep_alive(KeepAlive {
            connections: 10,
            ..base
        }));
    }
}
