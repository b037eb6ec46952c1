//! The master: one single-threaded event loop that owns the listeners and the
//! worker table, and turns every input (signal, worker message, deadline,
//! child exit) into changes of that table (DESIGN rules 1–3).
//!
//! The loop waits in `mio::Poll` until the nearest deadline (a heartbeat that
//! would go stale, a SIGKILL that is due, a delayed respawn), never on a
//! fixed tick.

mod command;
mod control;
mod exits;
mod manage;
mod reload;
mod report;
mod workers;

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub use command::{Command, Scale, MASTER_SIGNALS};
pub use workers::{Retire, StopSent, Worker, WorkerTable};

use crate::config::{Loader, Settings};
use crate::control::protocol::{EventKind, RetireReason, ShutdownMode};
use crate::control::server::ControlServer;
use crate::daemon::DaemonHandle;
use crate::hooks::Hooks;
use crate::listeners::{self, Listener, ListenerSpec};
use crate::pidfile::Pidfile;
use crate::scoreboard::Scoreboard;
use crate::signals::{self, SignalPipe};
use crate::worker::notify::{self, WorkerMsg};

const SIGNALS: Token = Token(0);
const WORKER_MSGS: Token = Token(1);
const CONTROL: Token = Token(2);

/// SIGKILL follows SIGABRT this long after a heartbeat timeout.
const ABORT_GRACE: Duration = Duration::from_secs(1);
/// How long a quick stop (INT/QUIT) waits before SIGKILL.
const QUICK_STOP_GRACE: Duration = Duration::from_secs(2);

/// Why the master is exiting, and with what status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Halt {
    pub reason: Option<String>,
    pub status: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    Stopping { graceful: bool, deadline: Instant },
}

/// The generation a reload is replacing, kept until the new one is serving
/// so that a failed reload can fall back to it.
struct PreviousGeneration {
    settings: Settings,
    generation: u64,
    /// The worker target it ran with.
    target: usize,
}

/// Counters reported by `show stats`.
#[derive(Debug, Clone)]
pub struct Stats {
    pub started_at: Instant,
    pub spawned: u64,
    pub killed: u64,
    pub reloads: u64,
}

pub struct Arbiter {
    loader: Loader,
    settings: Settings,
    pid: Pid,
    listeners: Vec<Listener>,
    /// Sockets a reload stopped binding, kept open until it completes.
    retired_listeners: Vec<Listener>,
    /// Listeners came from systemd or a parent master: never rebind them.
    inherited_listeners: bool,
    workers: WorkerTable,
    scoreboard: Scoreboard,
    /// Workers wanted (changed by TTIN/TTOU/scale/WINCH, reset by config).
    target: usize,
    generation: u64,
    next_generation: u64,
    previous: Option<PreviousGeneration>,
    worker_age: u64,
    state: State,
    halt: Option<Halt>,
    /// Consecutive workers that died before booting, and when the next
    /// spawn may happen (crash-loop backoff).
    boot_failures: u32,
    next_spawn_at: Option<Instant>,
    poll: Poll,
    sigpipe: SignalPipe,
    notify_read: OwnedFd,
    notify_write: OwnedFd,
    notify_buf: Vec<u8>,
    stats: Stats,
    hooks: Hooks,
    pidfile: Option<Pidfile>,
    control: Option<ControlServer>,
    report: report::Reporter,
}

/// Run the master until it stops; returns the process exit status.
pub fn run(loader: Loader, settings: Settings) -> i32 {
    let mut daemon = if settings.daemon {
        if crate::systemd::under_notify_socket() {
            eprintln!("{}", crate::daemon::NOTIFY_SOCKET_WARNING);
        }
        let opts = crate::daemon::DaemonOptions {
            chdir: settings.chdir.clone(),
            umask: 0o022,
        };
        match crate::daemon::daemonize(&opts) {
            Ok(handle) => Some(handle),
            Err(e) => {
                eprintln!("Error: {e}");
                return 1;
            }
        }
    } else {
        None
    };
    if let Err(e) = crate::log::init(&crate::log::LogConfig::from_settings(&settings)) {
        report_startup_error(daemon.take(), &e);
        return 1;
    }
    if settings.daemon && crate::systemd::under_notify_socket() {
        tracing::warn!(
            "{}",
            crate::daemon::NOTIFY_SOCKET_WARNING.trim_start_matches("gunicornd: warning: ")
        );
    }
    let mut arbiter = match Arbiter::start(loader, settings, &mut daemon) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!("{e}");
            report_startup_error(daemon.take(), &e);
            return 1;
        }
    };
    let halt = arbiter.run_loop();
    arbiter.finish(halt)
}

/// Tell whoever started us why we could not start: the daemon's launcher
/// (which prints it and exits 1), or our own stderr.
fn report_startup_error(daemon: Option<DaemonHandle>, error: &str) {
    match daemon {
        Some(handle) => handle.report_error(&format!("Error: {error}")),
        None => eprintln!("Error: {error}"),
    }
}

impl Arbiter {
    fn start(
        loader: Loader,
        settings: Settings,
        daemon: &mut Option<DaemonHandle>,
    ) -> Result<Arbiter, String> {
        let pid = nix::unistd::getpid();
        tracing::info!("Starting gunicornd {}", env!("CARGO_PKG_VERSION"));
        let pidfile = match &settings.pidfile {
            Some(path) => {
                Some(Pidfile::create(path, pid.as_raw() as u32).map_err(|e| e.to_string())?)
            }
            None => None,
        };
        // Any failure from here on must not leave our pidfile behind.
        let pidfile = UnlinkOnError(pidfile);
        if let Some(dir) = &settings.chdir {
            std::env::set_current_dir(dir)
                .map_err(|e| format!("cannot change directory to {}: {e}", dir.display()))?;
        }
        // Inherited sockets (fd://N, GUNICORN_FD, LISTEN_FDS) are claimed
        // before anything could take their numbers or inherit them.
        let claimed = claim_inherited_listeners(&settings)?;
        let mut hooks = Hooks::new(&settings.hooks);
        hooks.fire("on_starting", &[]);
        let inherited_listeners = claimed.is_some();
        let listeners = match claimed {
            Some(ls) => ls,
            None => bind_listeners(&settings)?,
        };
        let sigpipe =
            SignalPipe::new().map_err(|e| format!("cannot create the signal pipe: {e}"))?;
        sigpipe
            .forward_to_pipe(MASTER_SIGNALS, true)
            .map_err(|e| format!("cannot install signal handlers: {e}"))?;
        for l in &listeners {
            l.set_nonblocking().map_err(|e| format!("{l}: {e}"))?;
        }
        let shown: Vec<String> = listeners.iter().map(|l| l.to_string()).collect();
        tracing::info!("Listening at: {} ({})", shown.join(","), pid);
        tracing::info!("Using worker: sync");
        hooks.fire(
            "when_ready",
            &[("GUNICORND_WORKERS", settings.workers.to_string())],
        );
        let scoreboard = Scoreboard::new(settings.worker_tmp_dir.as_deref())?;
        let (notify_read, notify_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| format!("cannot create the worker pipe: {e}"))?;
        set_nonblocking(notify_read.as_raw_fd());
        let poll = Poll::new().map_err(|e| format!("cannot create the event loop: {e}"))?;
        poll.registry()
            .register(
                &mut SourceFd(&sigpipe.raw_fd()),
                SIGNALS,
                Interest::READABLE,
            )
            .map_err(|e| format!("event loop: {e}"))?;
        poll.registry()
            .register(
                &mut SourceFd(&notify_read.as_raw_fd()),
                WORKER_MSGS,
                Interest::READABLE,
            )
            .map_err(|e| format!("event loop: {e}"))?;
        let mut control = open_control_socket(&settings, pid);
        if let Some(server) = control.as_mut() {
            if let Err(e) = server.register(poll.registry(), CONTROL) {
                tracing::warn!("Control socket disabled: {e}");
                control = None;
            }
        }
        let target = settings.workers;
        let report = report::Reporter::new(daemon.take());
        Ok(Arbiter {
            loader,
            settings,
            pid,
            listeners,
            retired_listeners: Vec::new(),
            inherited_listeners,
            workers: WorkerTable::default(),
            scoreboard,
            target,
            generation: 1,
            next_generation: 2,
            previous: None,
            worker_age: 0,
            state: State::Running,
            halt: None,
            boot_failures: 0,
            next_spawn_at: None,
            poll,
            sigpipe,
            notify_read,
            notify_write,
            notify_buf: Vec::new(),
            stats: Stats {
                started_at: Instant::now(),
                spawned: 0,
                killed: 0,
                reloads: 0,
            },
            hooks,
            pidfile: pidfile.disarm(),
            control,
            report,
        })
    }

    /// The event loop. Returns why it ended.
    fn run_loop(&mut self) -> Halt {
        let mut events = Events::with_capacity(64);
        self.manage();
        loop {
            let timeout = self
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    tracing::error!("Event loop failed: {e}");
                    self.begin_stop(false);
                }
            }
            for event in events.iter() {
                match event.token() {
                    SIGNALS => {
                        for sig in self.sigpipe.drain() {
                            self.on_signal(sig);
                        }
                    }
                    WORKER_MSGS => self.read_worker_messages(),
                    CONTROL => self.accept_control_clients(),
                    token => self.control_ready(token, event.is_readable(), event.is_writable()),
                }
            }
            // Reap on every pass, not only on SIGCHLD: a wake-up byte can be
            // lost when the signal pipe is full, and waitpid is cheap.
            self.reap();
            let now = Instant::now();
            self.enforce_deadlines(now);
            self.control_housekeeping(now);
            self.report_progress(now);
            if let State::Stopping { .. } = self.state {
                if self.workers.is_empty() {
                    return self.halt.take().unwrap_or(Halt {
                        reason: None,
                        status: 0,
                    });
                }
            } else {
                self.manage();
            }
        }
    }

    fn on_signal(&mut self, sig: Signal) {
        if sig == Signal::SIGCHLD {
            tracing::debug!("Handling signal: chld");
        } else {
            tracing::info!("Handling signal: {}", signals::short_name(sig));
        }
        match Command::from_signal(sig) {
            Some(cmd) => self.handle(cmd),
            None => tracing::info!("Ignoring unknown signal: {}", signals::short_name(sig)),
        }
    }

    /// The one handler for every command, whatever asked for it.
    pub fn handle(&mut self, cmd: Command) {
        match cmd {
            // SIGCHLD only has to wake the loop: it reaps on every pass.
            Command::Reap => {}
            Command::Stop { graceful } => self.begin_stop(graceful),
            Command::Scale(scale) => self.scale(scale),
            Command::ReopenLogs => self.reopen_logs(),
            Command::StopWorkers => self.stop_workers(),
            Command::Reload => {
                // The signal path has nobody to answer; reload() logs why.
                let _ = self.reload();
            }
            Command::Upgrade => {
                tracing::warn!("USR2 signal ignored: binary upgrade is not supported by this version of gunicornd.")
            }
        }
    }

    fn scale(&mut self, scale: Scale) {
        if self.state != State::Running {
            return;
        }
        let old = self.target;
        let wanted = match scale {
            Scale::To(n) => n.max(1),
            // Like gunicorn's TTOU: never below one, and nothing to do at
            // one or at zero (after WINCH).
            Scale::By(d) if d < 0 && old <= 1 => old,
            Scale::By(d) => (old as i64).saturating_add(d).max(1) as usize,
        };
        let cap = crate::scoreboard::CAPACITY;
        if wanted > cap {
            tracing::warn!(
                "Cannot run {wanted} workers: {cap} is the most one master runs; using {cap}"
            );
        }
        self.target = wanted.min(cap);
        self.target_changed(old);
    }

    /// Log and announce a new worker target (`nworkers_changed`).
    fn target_changed(&mut self, old: usize) {
        if self.target != old {
            tracing::info!("Number of workers: {old} -> {}", self.target);
            self.emit(EventKind::ScaleChanged {
                previous: old,
                target: self.target,
            });
            self.hooks.fire(
                "nworkers_changed",
                &[
                    ("GUNICORND_WORKERS", self.target.to_string()),
                    ("GUNICORND_OLD_WORKERS", old.to_string()),
                ],
            );
        }
    }

    fn reopen_logs(&mut self) {
        match crate::log::reopen() {
            Ok(()) => tracing::info!(
                "Log files reopened; forwarding USR1 to {} workers",
                self.workers.len()
            ),
            Err(e) => tracing::error!("Cannot reopen log files: {e}"),
        }
        for w in self.workers.iter() {
            let _ = kill(w.pid, Signal::SIGUSR1);
        }
    }

    /// WINCH: only meaningful when daemonized (a terminal sends it on resize).
    fn stop_workers(&mut self) {
        if !self.settings.daemon {
            tracing::info!("SIGWINCH ignored. Not daemonized");
            return;
        }
        tracing::info!("graceful stop of workers");
        let old = self.target;
        self.target = 0;
        self.target_changed(old);
        for pid in self.workers.oldest_first(Worker::running) {
            self.retire(pid, RetireReason::StopWorkers);
        }
    }

    /// TERM (graceful) or INT/QUIT (quick); a quick request during a
    /// graceful stop escalates it.
    fn begin_stop(&mut self, graceful: bool) {
        let now = Instant::now();
        match self.state {
            State::Stopping {
                graceful: false, ..
            } => return,
            State::Stopping {
                graceful: true,
                deadline,
            } if !graceful => {
                tracing::info!("Quick shutdown requested");
                self.state = State::Stopping {
                    graceful: false,
                    deadline: deadline.min(now + QUICK_STOP_GRACE),
                };
            }
            State::Stopping { .. } => return,
            State::Running => {
                let grace = if graceful {
                    Duration::from_secs(self.settings.graceful_timeout)
                } else {
                    QUICK_STOP_GRACE
                };
                self.state = State::Stopping {
                    graceful,
                    deadline: now + grace,
                };
                self.report.stopping();
                let mode = if graceful {
                    ShutdownMode::Graceful
                } else {
                    ShutdownMode::Quick
                };
                self.emit(EventKind::ShuttingDown { mode });
                self.close_listeners();
            }
        }
        let sig = if graceful {
            Signal::SIGTERM
        } else {
            Signal::SIGQUIT
        };
        for pid in self.workers.oldest_first(|_| true) {
            self.send_stop(pid, sig);
        }
    }

    fn close_listeners(&mut self) {
        // Unix socket files are removed only by their owner (DESIGN rule 4).
        let unlink = !self.inherited_listeners;
        for l in self
            .listeners
            .drain(..)
            .chain(self.retired_listeners.drain(..))
        {
            l.close(unlink);
        }
    }

    /// Send a stop signal once; a different (stronger) one may follow.
    fn send_stop(&mut self, pid: Pid, sig: Signal) {
        let now = Instant::now();
        let grace = if sig == Signal::SIGTERM {
            Duration::from_secs(self.settings.graceful_timeout)
        } else {
            QUICK_STOP_GRACE
        };
        let Some(w) = self.workers.get_mut(pid) else {
            return;
        };
        if w.stop.is_some_and(|s| s.signal == sig) || w.killed {
            return;
        }
        w.stop = Some(StopSent {
            signal: sig,
            at: now,
            kill_at: now + grace,
        });
        if let Err(e) = kill(pid, sig) {
            tracing::debug!("kill({pid}, {sig}): {e}");
        }
    }

    fn send_kill(&mut self, pid: Pid) {
        if let Some(w) = self.workers.get_mut(pid) {
            if w.killed {
                return;
            }
            w.killed = true;
            self.stats.killed += 1;
            if let Err(e) = kill(pid, Signal::SIGKILL) {
                tracing::debug!("kill({pid}, SIGKILL): {e}");
            }
        }
    }

    /// The earliest moment something must happen without outside input.
    fn next_deadline(&self) -> Option<Instant> {
        let now = Instant::now();
        let timeout = Duration::from_secs(self.settings.timeout);
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        let unkilled = self.workers.iter().any(|w| !w.killed);
        match self.state {
            // Once everyone got SIGKILL the deadline has done its job.
            State::Stopping { deadline, .. } if unkilled => consider(deadline),
            State::Stopping { .. } => {}
            State::Running => {
                if let Some(t) = self.next_spawn_at {
                    consider(t);
                }
            }
        }
        if let Some(ctl) = &self.control {
            if ctl.has_backlog() {
                consider(now);
            }
            if let Some(t) = ctl.next_deadline() {
                consider(t);
            }
        }
        if let Some(t) = self.report.next_watchdog() {
            consider(t);
        }
        for w in self.workers.iter().filter(|w| !w.killed) {
            if let Some(at) = kill_due(w) {
                consider(at);
            } else if !timeout.is_zero() {
                let silence = self.scoreboard.slot(w.slot).silence();
                consider(now + timeout.saturating_sub(silence) + Duration::from_millis(1));
            }
        }
        next
    }

    /// Heartbeat timeouts, overdue stops, a stop that ran out of time.
    fn enforce_deadlines(&mut self, now: Instant) {
        let timeout = Duration::from_secs(self.settings.timeout);
        let mut abort = Vec::new();
        let mut kill_now = Vec::new();
        for w in self.workers.iter().filter(|w| !w.killed) {
            if let Some(at) = kill_due(w) {
                if now >= at {
                    let why = if w.aborted_at.is_some() {
                        "still there after SIGABRT"
                    } else {
                        "did not stop in time"
                    };
                    kill_now.push((w.pid, why));
                }
            } else if !timeout.is_zero() && self.scoreboard.slot(w.slot).silence() > timeout {
                abort.push(w.pid);
            }
        }
        if let State::Stopping { deadline, .. } = self.state {
            if now >= deadline {
                for w in self.workers.iter().filter(|w| !w.killed) {
                    kill_now.push((w.pid, "graceful timeout expired"));
                }
            }
        }
        for pid in abort {
            let booted = self.workers.get(pid).is_some_and(Worker::booted);
            let during = if booted { "" } else { " while booting" };
            crate::critical!("WORKER TIMEOUT (pid:{pid}){during}");
            if let Some(w) = self.workers.get_mut(pid) {
                w.aborted_at = Some(now);
                let generation = w.generation;
                self.emit(EventKind::WorkerRetired {
                    pid: pid.as_raw(),
                    generation,
                    reason: RetireReason::Timeout,
                });
            }
            let _ = kill(pid, Signal::SIGABRT);
        }
        for (pid, why) in kill_now {
            if self.workers.get(pid).is_some_and(|w| !w.killed) {
                tracing::warn!("Worker (pid:{pid}) {why}; sending SIGKILL");
                self.send_kill(pid);
            }
        }
    }

    fn read_worker_messages(&mut self) {
        let mut buf = [0u8; 4096];
        loop {
            match nix::unistd::read(&self.notify_read, &mut buf) {
                Ok(0) => break,
                Ok(n) => self.notify_buf.extend_from_slice(&buf[..n]),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
        let mut pending = std::mem::take(&mut self.notify_buf);
        for (pid, msg) in notify::decode_all(&mut pending) {
            self.on_worker_message(Pid::from_raw(pid as i32), msg);
        }
        self.notify_buf = pending;
    }

    fn on_worker_message(&mut self, pid: Pid, msg: WorkerMsg) {
        let Some(w) = self.workers.get_mut(pid) else {
            return;
        };
        match msg {
            WorkerMsg::Booted => {
                w.booted_at = Some(Instant::now());
                let generation = w.generation;
                self.boot_failures = 0;
                self.next_spawn_at = None;
                tracing::debug!("Worker (pid:{pid}) booted");
                self.emit(EventKind::WorkerBooted {
                    pid: pid.as_raw(),
                    generation,
                });
            }
            WorkerMsg::Recycle => {
                if w.retire.is_none() {
                    w.retire = Some(Retire::Recycle);
                }
            }
        }
    }

    /// Leave: stop what is left, log why, report the exit status.
    fn finish(mut self, halt: Halt) -> i32 {
        self.close_listeners();
        if let Some(control) = self.control.take() {
            control.shutdown(self.poll.registry());
        }
        if halt.status != 0 {
            let reason = halt
                .reason
                .clone()
                .unwrap_or_else(|| format!("exit status {}", halt.status));
            self.report.startup_failed(&reason);
        }
        for w in self.workers.iter() {
            let _ = kill(w.pid, Signal::SIGKILL);
        }
        while !self.workers.is_empty() {
            match nix::sys::wait::wait() {
                Ok(status) => {
                    if let Some(pid) = status.pid() {
                        self.workers.remove(pid);
                    }
                }
                Err(_) => break,
            }
        }
        if halt.status == 0 {
            tracing::info!("Shutting down: Master");
        } else {
            tracing::error!("Shutting down: Master");
        }
        if let Some(pidfile) = &self.pidfile {
            pidfile.unlink();
        }
        self.hooks.fire(
            "on_exit",
            &[("GUNICORND_EXIT_STATUS", halt.status.to_string())],
        );
        if let Some(reason) = &halt.reason {
            if halt.status == 0 {
                tracing::info!("Reason: {reason}");
            } else {
                tracing::error!("Reason: {reason}");
            }
        }
        halt.status
    }

    /// Descriptors a forked worker must close (they are the master's).
    fn master_fds(&self) -> Vec<RawFd> {
        let mut fds = vec![self.poll.as_raw_fd(), self.notify_read.as_raw_fd()];
        fds.extend(self.sigpipe.fds());
        // Sockets parked by a reload belong to the old generation only.
        fds.extend(self.retired_listeners.iter().map(Listener::raw_fd));
        if let Some(control) = &self.control {
            fds.extend(control.fds());
        }
        fds.extend(self.report.fds());
        fds
    }
}

/// When a worker that was asked to stop (or aborted after a timeout) gets
/// SIGKILL if it is still there; `None` while it is not on its way out. A hung
/// worker that also got TERM keeps its short SIGABRT grace.
fn kill_due(w: &Worker) -> Option<Instant> {
    let after_abort = w.aborted_at.map(|at| at + ABORT_GRACE);
    match (w.stop.map(|s| s.kill_at), after_abort) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Removes the pidfile it holds when dropped, unless disarmed: a start that
/// fails half-way leaves no pidfile behind.
struct UnlinkOnError(Option<Pidfile>);

impl UnlinkOnError {
    fn disarm(mut self) -> Option<Pidfile> {
        self.0.take()
    }
}

impl Drop for UnlinkOnError {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            p.unlink();
        }
    }
}

/// Take the listening sockets handed to us (systemd's `LISTEN_FDS`, a
/// parent master's `GUNICORN_FD`, `fd://N` binds), if any. Called before
/// anything else opens a descriptor or runs a hook: until they are adopted
/// (with close-on-exec) a hook would inherit them.
fn claim_inherited_listeners(settings: &Settings) -> Result<Option<Vec<Listener>>, String> {
    let activated = crate::systemd::listen_fds();
    if !activated.is_empty() {
        tracing::info!(
            "Using {} socket(s) passed by systemd (LISTEN_FDS); the bind setting ({}) is ignored",
            activated.len(),
            settings.bind.join(", ")
        );
        let ls = activated
            .into_iter()
            .map(|l| {
                listeners::adopt_fd(std::os::fd::IntoRawFd::into_raw_fd(l.fd), settings.backlog)
            })
            .collect::<Result<_, _>>()?;
        return Ok(Some(ls));
    }
    let inherited: Vec<RawFd> = match std::env::var("GUNICORN_FD") {
        Ok(v) => {
            std::env::remove_var("GUNICORN_FD");
            listeners::parse_fd_list(&v)?
        }
        Err(_) => Vec::new(),
    };
    let fd_binds = settings
        .binds
        .iter()
        .any(|b| matches!(b, crate::config::BindAddr::Fd(_)));
    if inherited.is_empty() && !fd_binds {
        return Ok(None);
    }
    listeners::create_all(&listener_spec(settings), &inherited, 1).map(Some)
}

/// Bind the configured addresses (retrying like gunicorn).
fn bind_listeners(settings: &Settings) -> Result<Vec<Listener>, String> {
    listeners::create_all(&listener_spec(settings), &[], listeners::BIND_ATTEMPTS)
}

fn listener_spec(settings: &Settings) -> ListenerSpec<'_> {
    ListenerSpec {
        binds: &settings.binds,
        backlog: settings.backlog,
        umask: settings.umask,
        owner: (settings.user, settings.group),
    }
}

/// Bind the control socket unless disabled. Failing is a warning, never
/// fatal (gunicorn's default-on socket broke read-only containers).
fn open_control_socket(settings: &Settings, pid: Pid) -> Option<ControlServer> {
    if settings.control_socket_disable {
        return None;
    }
    let path = settings.control_socket.clone().unwrap_or_else(|| {
        crate::control::paths::default_socket_path_from_env(
            settings.pidfile.as_deref(),
            settings.proc_name.as_deref(),
            nix::unistd::geteuid().as_raw(),
        )
    });
    match ControlServer::bind(&path, settings.control_socket_mode, CONTROL.0) {
        Ok(server) => {
            tracing::info!("Control socket listening at {} ({})", path.display(), pid);
            Some(server)
        }
        Err(e) => {
            tracing::warn!("Failed to start control socket: {e} (use --control-socket PATH or --no-control-socket)");
            None
        }
    }
}

fn set_nonblocking(fd: RawFd) {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    // SAFETY: fd is a descriptor we just created and own.
    let bfd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    if let Ok(flags) = fcntl(bfd, FcntlArg::F_GETFL) {
        let _ = fcntl(
            bfd,
            FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
        );
    }
}
