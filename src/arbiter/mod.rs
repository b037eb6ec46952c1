//! The master: one single-threaded event loop that owns the listeners and
//! the workers (ARCHITECTURE.md has the picture).
//!
//! - `event.rs`: the inputs. The loop turns whatever woke it (a signal, a
//!   control request, a worker message, a reaped child, a deadline, the
//!   systemd watchdog) into an [`Event`] and calls [`Arbiter::handle`].
//! - `command.rs`: what signals and control requests ask for; both go
//!   through [`Arbiter::command`].
//! - `plan.rs`: the decisions, a state machine with no side effects
//!   ([`Pool`]), queuing `action.rs` values.
//! - `execute.rs`: the one executor that performs them (fork, signal, log,
//!   hooks, events, systemd).
//! - `reload.rs`: the part of a reload that does I/O (loading the
//!   configuration, binding sockets); `control.rs`: frames to commands,
//!   outcomes to replies; `report.rs`: systemd and the daemon's launcher.
//! - `notify_socket.rs` and `output.rs`: command workers' `NOTIFY_SOCKET`
//!   (their sd_notify messages become [`Event::WorkerNotice`]) and their
//!   stdout/stderr pipes (read last in each pass, into the error log).
//!
//! The loop waits in `mio::Poll` until the nearest deadline (a heartbeat that
//! would go stale, a SIGKILL that is due, a delayed respawn), never on a
//! fixed tick.

mod action;
mod command;
mod control;
mod event;
mod execute;
mod handover;
mod in_place;
mod notify_socket;
mod output;
mod plan;
mod probe;
mod reload;
mod report;
#[cfg(test)]
mod tests;
mod upgrade;
mod workers;

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use action::{Action, Level, Outcome, Report};
use command::Command;
pub use command::MASTER_SIGNALS;
use event::Event;
pub use in_place::{probe_answer, STATE_VERSION};
use plan::{Exit, Halt, Limits, Liveness, Pool};
pub use probe::PROBE_FLAG;
use workers::Worker;

use crate::config::{Loader, Settings};
use crate::control::server::ControlServer;
use crate::daemon::DaemonHandle;
use crate::hooks::Hooks;
use crate::listeners::{self, Listener, ListenerSpec};
use crate::pidfile::Pidfile;
use crate::scoreboard::Scoreboard;
use crate::signals::{self, SignalPipe};
use crate::worker::kind::WorkerKind;
use crate::worker::notify;

const SIGNALS: Token = Token(0);
const WORKER_MSGS: Token = Token(1);
const CONTROL: Token = Token(2);
/// The command workers' `NOTIFY_SOCKET` (below the upgrade's tokens).
const NOTICES: Token = Token(usize::MAX - 2);

/// Worker messages (and, separately, `NOTIFY_SOCKET` messages) read per
/// pass of the loop: a worker that floods them takes turns with
/// everything else the master does.
const MESSAGES_PER_PASS: usize = 64;

pub struct Arbiter {
    loader: Loader,
    settings: Settings,
    /// The settings of the generation a reload is replacing, while
    /// `pool.previous` is set (a failed reload restores them).
    previous_settings: Option<Settings>,
    pid: Pid,
    /// The kind the current generation's workers are.
    kind: WorkerKind,
    /// The kind of the generation a reload is replacing (with
    /// `previous_settings`).
    previous_kind: Option<WorkerKind>,
    listeners: Vec<Listener>,
    /// Sockets a reload stopped binding, kept open until it completes.
    parked_listeners: Vec<Listener>,
    /// Where the listeners came from (what may be rebound or unlinked).
    listener_source: ListenerSource,
    pool: Pool,
    scoreboard: Scoreboard,
    poll: Poll,
    sigpipe: SignalPipe,
    /// The worker channel (`worker/notify.rs`): the master's receiving end,
    /// and the sending end every worker inherits.
    worker_messages: OwnedFd,
    worker_sender: OwnedFd,
    /// Messages may be waiting on the worker channel: a pass reads at most
    /// [`MESSAGES_PER_PASS`] of them, the next pass goes on.
    worker_messages_pending: bool,
    /// The command workers' `NOTIFY_SOCKET` (made when a configuration
    /// first asks for command workers), and whether messages may wait on
    /// it.
    notices: Option<notify_socket::NotifySocket>,
    notices_pending: bool,
    /// The command workers' stdout and stderr.
    output: output::WorkerOutput,
    started_at: Instant,
    hooks: Hooks,
    pidfile: Option<Pidfile>,
    control: Option<ControlServer>,
    /// The control socket's normal path (a new master binds it with `.2`
    /// appended until it takes over).
    control_path: Option<PathBuf>,
    report: report::Reporter,
    /// `Master`, or `Master.2` for a new master not yet promoted.
    name: &'static str,
    /// How this master was started: what a binary upgrade starts again.
    start: upgrade::StartContext,
    /// The channel to the other master of an upgrade in progress.
    channel: Option<std::os::unix::net::UnixStream>,
    channel_buf: Vec<u8>,
    /// New master: the handed-over fds whose socket files it owns once it
    /// takes over.
    owned_fds: Vec<upgrade::OwnedSocketFile>,
    /// An in-place upgrade passed its probe: exec at the end of the pass.
    exec_pending: bool,
    /// The probe of an in-place upgrade, while it runs.
    probe: Option<probe::Probe>,
    /// New image of an in-place upgrade: the previous image's workers, to
    /// retire once ours have booted, and when the remaining ones get SIGKILL.
    adopted: Vec<Pid>,
    adopted_kill_at: Option<Instant>,
    /// New master: a pidfd of the old master, readable once it exited.
    old_master_pidfd: Option<OwnedFd>,
    /// New master: when to decide whether the old master, which closed the
    /// channel, is gone or gave up on us.
    given_up_check: Option<Instant>,
    /// The app, loaded once in the master before forking (`--preload` with
    /// a Python app); each worker gets the forked copy.
    preloaded: Option<Box<dyn crate::app::App>>,
}

impl ListenerSource {
    /// A reload may bind new addresses and drop old ones.
    fn rebindable(&self) -> bool {
        matches!(self, ListenerSource::Bound | ListenerSource::Upgrade)
    }
}

/// Where the listening sockets came from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ListenerSource {
    /// Bound by this master: rebound on reload, files removed at exit.
    Bound,
    /// systemd's socket activation (named `names`): never rebound, never
    /// unlinked, handed on as `LISTEN_FDS`.
    Systemd { names: Vec<String> },
    /// A parent master's, through `GUNICORN_FD` by an upgrade: ours once
    /// the old master is gone.
    Upgrade,
    /// `fd://N` or a `GUNICORN_FD` someone else set: never rebound or
    /// unlinked.
    Inherited,
}

/// The decisions' settings, from the configuration.
fn limits(settings: &Settings) -> Limits {
    Limits {
        timeout: Duration::from_secs(settings.timeout),
        graceful_timeout: Duration::from_secs(settings.graceful_timeout),
        daemon: settings.daemon,
        upgrade_timeout: Duration::from_secs(settings.upgrade_timeout),
        max_workers: crate::scoreboard::CAPACITY,
        boot_grace: Duration::from_secs(settings.boot_grace),
        halt_on_boot_error: settings.halt_on_boot_error,
    }
}

/// Run the master until it stops; returns the process exit status.
pub fn run(loader: Loader, settings: Settings) -> i32 {
    // Before anything changes the environment or the directory.
    let start = upgrade::StartContext::capture();
    let parent = match upgrade::Parent::from_env() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("Error: {e}");
            return 1;
        }
    };
    // daemonize() warns on stderr about NOTIFY_SOCKET and applies --chdir
    // itself, before it forks; the log file gets the warning below. A new
    // master of an upgrade is already detached: it never daemonizes.
    // The new image of an in-place upgrade is the same, detached, process.
    let handed = handover::state_from_env().map(|fd| fd.and_then(handover::read_state));
    let daemonize = settings.daemon && parent.is_none() && handed.is_none();
    let mut daemon = if daemonize {
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
    if daemonize && crate::systemd::under_notify_socket() {
        tracing::warn!(
            "{}",
            crate::daemon::NOTIFY_SOCKET_WARNING.trim_start_matches("gunicornd: warning: ")
        );
    }
    let mut arbiter = match Arbiter::start(loader, settings, &mut daemon, start, parent, handed) {
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
        start: upgrade::StartContext,
        parent: Option<upgrade::Parent>,
        handed: Option<Result<handover::HandedState, handover::Unreadable>>,
    ) -> Result<Arbiter, String> {
        let pid = nix::unistd::getpid();
        let name = if parent.is_some() {
            "Master.2"
        } else {
            "Master"
        };
        tracing::info!("Starting gunicornd {} ({name})", env!("CARGO_PKG_VERSION"));
        if let Some(p) = &parent {
            tracing::info!(
                "Started by a binary upgrade from the master with pid {}",
                p.pid
            );
        }
        // A new master keeps its pidfile and control socket beside the old
        // master's until it takes over.
        let own_path = |path: &Path| match &parent {
            Some(_) => upgrade::second(path),
            None => path.to_path_buf(),
        };
        let pidfile = match &settings.pidfile {
            Some(path) => Some(
                Pidfile::create(&own_path(path), pid.as_raw() as u32).map_err(|e| e.to_string())?,
            ),
            None => None,
        };
        // Any failure from here on must not leave our pidfile behind.
        let pidfile = UnlinkOnError(pidfile);
        if daemon.is_none() {
            if let Some(dir) = &settings.chdir {
                std::env::set_current_dir(dir)
                    .map_err(|e| format!("cannot change directory to {}: {e}", dir.display()))?;
            }
        }
        // Inherited sockets (fd://N, GUNICORN_FD, LISTEN_FDS) are claimed
        // before anything could take their numbers or inherit them.
        let claimed = claim_inherited_listeners(&settings, parent.is_some() || handed.is_some())?;
        let mut hooks = Hooks::new(&settings.hooks);
        hooks.fire("on_starting", &[]);
        let (listeners, listener_source) = match claimed {
            Some(claimed) => claimed,
            None => (
                listeners::create_all(
                    &ListenerSpec::new(&settings, &settings.binds),
                    &[],
                    listeners::BIND_ATTEMPTS,
                )?,
                ListenerSource::Bound,
            ),
        };
        let sigpipe =
            SignalPipe::new().map_err(|e| format!("cannot create the signal pipe: {e}"))?;
        sigpipe
            .forward_to_pipe(MASTER_SIGNALS, true)
            .map_err(|e| format!("cannot install signal handlers: {e}"))?;
        listeners::set_all_nonblocking(&listeners)?;
        listeners::log_listening(&listeners, pid, &settings.tls);
        if settings.ssl_version.is_some() {
            // As gunicorn says it: the setting is accepted, and has no effect.
            tracing::warn!("ssl_version is deprecated and ignored; use tls_min_version.");
        }
        let kind = WorkerKind::from_settings(&settings)?;
        log_worker_kind(&kind, &settings);
        hooks.fire(
            "when_ready",
            &[("GUNICORND_WORKERS", settings.workers.to_string())],
        );
        let (scoreboard, handed) =
            in_place::scoreboard_for(settings.worker_tmp_dir.as_deref(), handed)?;
        let (worker_messages, worker_sender) =
            notify::channel().map_err(|e| format!("cannot create the worker channel: {e}"))?;
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
                &mut SourceFd(&worker_messages.as_raw_fd()),
                WORKER_MSGS,
                Interest::READABLE,
            )
            .map_err(|e| format!("event loop: {e}"))?;
        let control_path = control_socket_path(&settings);
        // The new image of an in-place upgrade serves on the listener the
        // previous one bound.
        let handed_control = handed.as_ref().and_then(|_| handover::control_from_env());
        let mut control = control_path
            .as_deref()
            .and_then(|path| match handed_control {
                Some((listener, file)) => {
                    adopt_control_socket(listener, path, file, &settings, pid)
                }
                None => open_control_socket(&own_path(path), &settings, pid),
            });
        if let Some(server) = control.as_mut() {
            if let Err(e) = server.register(poll.registry(), CONTROL) {
                tracing::warn!("Control socket disabled: {e}");
                control = None;
            }
        }
        let notices = match &kind {
            WorkerKind::Command(_) => Some(open_notify_socket(&settings, poll.registry())?),
            WorkerKind::Sync | WorkerKind::Gthread => None,
        };
        let mut pool = Pool::new(settings.workers, limits(&settings));
        // A new master says nothing to systemd until it takes over: the old
        // master is still the service's main process.
        let report = report::Reporter::new(daemon.take(), parent.is_some());
        let mut channel = None;
        let mut owned_fds = Vec::new();
        if let Some(p) = parent {
            owned_fds = p.owned_fds;
            pool.parent_master = Some(p.pid);
            poll.registry()
                .register(
                    &mut SourceFd(&p.channel.as_raw_fd()),
                    upgrade::CHANNEL,
                    Interest::READABLE,
                )
                .map_err(|e| format!("event loop: {e}"))?;
            channel = Some(p.channel);
        }
        // Before the pidfile guard is disarmed: a failed import leaves no
        // pidfile behind.
        let preloaded = preload(&settings)?;
        let mut arbiter = Arbiter {
            loader,
            settings,
            previous_settings: None,
            pid,
            kind,
            previous_kind: None,
            listeners,
            parked_listeners: Vec::new(),
            listener_source,
            pool,
            scoreboard,
            poll,
            sigpipe,
            worker_messages,
            worker_sender,
            worker_messages_pending: false,
            notices,
            notices_pending: false,
            output: output::WorkerOutput::default(),
            started_at: Instant::now(),
            hooks,
            pidfile: pidfile.disarm(),
            control,
            control_path,
            report,
            name,
            start,
            channel,
            channel_buf: Vec::new(),
            owned_fds,
            exec_pending: false,
            probe: None,
            adopted: Vec::new(),
            adopted_kill_at: None,
            old_master_pidfd: None,
            given_up_check: None,
            preloaded,
        };
        if let Some(old) = arbiter.pool.parent_master {
            arbiter.watch_old_master(old);
        }
        if let Some(handed) = handed {
            arbiter.adopt(handed);
        }
        Ok(arbiter)
    }

    /// The event loop: every input becomes an [`Event`] for
    /// [`Arbiter::handle`]. Returns why it ended.
    fn run_loop(&mut self) -> Halt {
        let mut events = Events::with_capacity(64);
        let mut client_events: Vec<(Token, bool, bool)> = Vec::with_capacity(64);
        self.handle(Event::EndOfPass);
        loop {
            let timeout = self
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    tracing::error!("Event loop failed: {e}");
                    self.command(Command::Stop { graceful: false });
                }
            }
            // The master's own inputs first, the control socket's clients
            // after them: however many connections or requests arrive,
            // signals (reload, reopen, stop), worker messages and the
            // upgrade channel are never queued behind them.
            client_events.clear();
            for event in events.iter() {
                match event.token() {
                    SIGNALS => {
                        for sig in self.sigpipe.drain() {
                            self.handle(Event::Signal(sig));
                        }
                    }
                    WORKER_MSGS => self.worker_messages_pending = true,
                    NOTICES => self.notices_pending = true,
                    upgrade::CHANNEL => self.channel_ready(),
                    upgrade::OLD_MASTER => self.old_master_exited(),
                    probe::PROBE => {
                        if let Some(p) = self.probe.as_mut() {
                            p.readable();
                        }
                    }
                    token if self.output.owns(token) => self.output.readable(token),
                    token => client_events.push((token, event.is_readable(), event.is_writable())),
                }
            }
            if self.worker_messages_pending {
                for (pid, msg) in self.read_worker_messages() {
                    self.handle(Event::WorkerMessage { pid, msg });
                }
            }
            if self.notices_pending {
                for (pid, notice) in self.read_notices() {
                    self.handle(Event::WorkerNotice { pid, notice });
                }
            }
            for &(token, readable, writable) in &client_events {
                if token == CONTROL {
                    self.accept_control_clients();
                    continue;
                }
                for request in self.control_ready(token, readable, writable) {
                    self.handle(Event::Control(request));
                }
            }
            // Workers' output last: however much they write, it waits
            // behind everything else (and is bounded per pass).
            self.output.service(Instant::now());
            // Reap on every pass, not only on SIGCHLD: a wake-up byte can be
            // lost when the signal pipe is full, and waitpid is cheap.
            while let Some(status) = reap_one() {
                self.handle(Event::ChildExited(status));
            }
            self.handle(Event::Deadlines);
            for request in self.control_housekeeping(Instant::now()) {
                self.handle(Event::Control(request));
            }
            if self.report.watchdog_due(Instant::now()) {
                self.handle(Event::WatchdogDue);
            }
            self.handle(Event::EndOfPass);
            if self.exec_pending {
                self.exec_in_place();
            }
            if let Some(halt) = self.pool.finished() {
                if !self.adopted.is_empty() {
                    // The previous image's workers are still stopping.
                    continue;
                }
                return halt;
            }
        }
    }

    /// The one way in: every input of the master goes through here.
    fn handle(&mut self, event: Event) {
        let now = Instant::now();
        match event {
            Event::Signal(sig) => self.on_signal(sig),
            Event::Control(request) => self.on_control_request(request),
            Event::WorkerMessage { pid, msg } => self.pool.worker_message(pid, msg, now),
            Event::WorkerNotice { pid, notice } => self.pool.worker_notice(pid, notice, now),
            Event::ChildExited(status) => self.on_child_exit(status, now),
            Event::Deadlines => {
                let timeout = self.pool.limits.timeout;
                let scoreboard = &self.scoreboard;
                self.pool
                    .check_deadlines(now, |w| observe(scoreboard, w, timeout));
                self.check_probe(now);
            }
            Event::EndOfPass => {
                self.check_given_up(now);
                self.retire_adopted(now);
                self.pool.progress();
                self.pool.manage(now);
            }
            Event::WatchdogDue => self.report.tick(now),
        }
        self.execute();
    }

    fn on_signal(&mut self, sig: Signal) {
        if sig == Signal::SIGCHLD {
            // Only wakes the loop: it reaps on every pass.
            tracing::debug!("Handling signal: chld");
            return;
        }
        tracing::info!("Handling signal: {}", signals::short_name(sig));
        let Some(cmd) = Command::from_signal(sig) else {
            tracing::info!("Ignoring unknown signal: {}", signals::short_name(sig));
            return;
        };
        // A signal has nobody to answer, so a refusal goes to the log (a
        // failed reload has logged its own reason).
        if let Outcome::Refused(why) = self.command(cmd) {
            match cmd {
                Command::Reload => {}
                // gunicorn's words.
                Command::StopWorkers => tracing::info!("SIGWINCH ignored. Not daemonized"),
                _ => tracing::warn!(
                    "{} signal ignored: {why}",
                    sig.as_str().trim_start_matches("SIG")
                ),
            }
        }
    }

    /// The one handler for every command, whatever asked for it: a signal
    /// ignores the outcome, a control client gets it as its reply.
    fn command(&mut self, cmd: Command) -> Outcome {
        let now = Instant::now();
        let outcome = match cmd {
            Command::Reload => self.reload(),
            Command::Stop { graceful } => self.pool.begin_stop(graceful, now),
            Command::Scale(scale) => self.pool.scale(scale),
            Command::ReopenLogs => self.pool.reopen_logs(),
            Command::StopWorkers => self.pool.stop_workers(now),
            Command::KillWorker(pid) => self.pool.kill_worker(pid, now),
            Command::Upgrade(mode) => self.upgrade(mode),
        };
        self.execute();
        outcome
    }

    /// A reaped child: a hook, a worker, or an orphan (we may be PID 1).
    fn on_child_exit(&mut self, status: WaitStatus, now: Instant) {
        if self.hooks.reaped(&status) {
            return;
        }
        let Some(pid) = status.pid() else { return };
        if self.probe.as_ref().is_some_and(|p| p.pid() == pid) {
            let probe = self.probe.take().expect("just checked");
            self.probe_exited(probe, &status);
            return;
        }
        if self.pool.child_master.is_some_and(|c| c.pid == pid) {
            self.pool.child_master_exited(&status);
            return;
        }
        let Some(slot) = self.pool.workers.get(pid).map(|w| w.slot) else {
            if self.adopted_exited(pid) {
                tracing::info!(
                    "Worker of the previous image exited (pid:{pid}, status:{status:?})"
                );
                return;
            }
            tracing::debug!("Reaped unknown child process (pid:{pid}, status:{status:?})");
            return;
        };
        let booted = self.scoreboard.slot(slot).booted();
        self.scoreboard.release(slot);
        self.output.forget(self.poll.registry(), pid);
        self.pool.worker_exited(
            Exit {
                pid,
                status,
                booted,
            },
            now,
        );
    }

    /// The earliest moment something must happen without outside input.
    fn next_deadline(&self) -> Option<Instant> {
        let now = Instant::now();
        let timeout = self.pool.limits.timeout;
        let mut next = self
            .pool
            .next_deadline(now, |w| observe(&self.scoreboard, w, timeout));
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
        if self.worker_messages_pending || self.notices_pending || self.output.has_pending() {
            consider(now);
        }
        if let Some(t) = self.output.next_deadline() {
            consider(t);
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
        if let Some(t) = self.adopted_kill_at {
            consider(t);
        }
        if let Some(t) = self.probe.as_ref().and_then(probe::Probe::deadline) {
            consider(t);
        }
        if let Some(t) = self.given_up_check {
            consider(t);
        }
        next
    }

    /// Up to [`MESSAGES_PER_PASS`] messages from the worker channel, each
    /// with the pid the kernel says sent it (whether that is a worker is
    /// `Pool::worker_message`'s to judge); notes whether more may wait.
    /// Datagrams that are no message are logged and dropped here.
    fn read_worker_messages(&mut self) -> Vec<(Pid, notify::WorkerMsg)> {
        let mut messages = Vec::new();
        for _ in 0..MESSAGES_PER_PASS {
            match notify::receive(&self.worker_messages) {
                Ok(Some(notify::Received::Message(pid, msg))) => messages.push((pid, msg)),
                Ok(Some(notify::Received::Ignored(what))) => {
                    tracing::warn!("Ignoring {what}");
                }
                Ok(None) => {
                    self.worker_messages_pending = false;
                    return messages;
                }
                Err(e) => {
                    tracing::error!("Cannot read the worker channel: {e}");
                    self.worker_messages_pending = false;
                    return messages;
                }
            }
        }
        self.worker_messages_pending = true;
        messages
    }

    /// Up to [`MESSAGES_PER_PASS`] messages from the `NOTIFY_SOCKET`, each
    /// with the pid the kernel says sent it; notes whether more may wait.
    fn read_notices(&mut self) -> Vec<(Pid, notify_socket::Notice)> {
        let mut notices = Vec::new();
        let Some(socket) = &self.notices else {
            self.notices_pending = false;
            return notices;
        };
        for _ in 0..MESSAGES_PER_PASS {
            match socket.receive() {
                Ok(Some(notify_socket::Received::Notice(pid, notice))) => {
                    notices.push((pid, notice))
                }
                Ok(Some(notify_socket::Received::Ignored(what))) => {
                    tracing::warn!("Ignoring {what}")
                }
                Ok(None) => {
                    self.notices_pending = false;
                    return notices;
                }
                Err(e) => {
                    tracing::error!("Cannot read the NOTIFY_SOCKET: {e}");
                    self.notices_pending = false;
                    return notices;
                }
            }
        }
        self.notices_pending = true;
        notices
    }

    /// The `NOTIFY_SOCKET` for command workers, made now if this is the
    /// first configuration that runs them.
    fn ensure_notify_socket(&mut self, settings: &Settings) -> Result<(), String> {
        if self.notices.is_none() {
            self.notices = Some(open_notify_socket(settings, self.poll.registry())?);
        }
        Ok(())
    }

    /// Leave: stop what is left, log why, report the exit status.
    fn finish(mut self, halt: Halt) -> i32 {
        if let Some(probe) = self.probe.take() {
            probe.abandon(self.poll.registry());
        }
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
        for w in self.pool.workers.iter() {
            let _ = kill(w.pid, Signal::SIGKILL);
        }
        while !self.pool.workers.is_empty() {
            match nix::sys::wait::wait() {
                Ok(status) => {
                    let Some(pid) = status.pid() else { continue };
                    if self.pool.child_master.is_some_and(|c| c.pid == pid) {
                        self.pool.child_master = None;
                        self.remove_upgrade_files(pid);
                    }
                    self.pool.workers.remove(pid);
                }
                Err(_) => break,
            }
        }
        if halt.status == 0 {
            tracing::info!("Shutting down: {}", self.name);
        } else {
            tracing::error!("Shutting down: {}", self.name);
        }
        // A new master that is ready takes over as we go: its pidfile
        // becomes the pidfile, then systemd follows it (under
        // NotifyAccess=main only we may say so, and only the pid that the
        // pidfile holds should be named).
        if let Some(successor) = self.pool.successor() {
            tracing::info!("Handing over to the new master (pid:{successor})");
            if let Some(path) = &self.settings.pidfile {
                crate::pidfile::hand_over(&upgrade::second(path), path, successor.as_raw() as u32);
            }
            self.report.hand_over(successor);
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

    fn close_listeners(&mut self) {
        // Unix socket files are removed only by their owner (a socket that
        // systemd or a parent master handed us is theirs: the listener
        // knows), and not while a new master of an upgrade serves on them.
        let unlink = self.pool.child_master.is_none();
        for l in self
            .listeners
            .drain(..)
            .chain(self.parked_listeners.drain(..))
        {
            l.close(unlink);
        }
    }

    /// Descriptors a forked worker must close (they are the master's).
    fn master_fds(&self) -> Vec<RawFd> {
        let mut fds = vec![
            self.poll.as_raw_fd(),
            self.worker_messages.as_raw_fd(),
            // A worker keeps its own slot's page mapped, and nothing else.
            self.scoreboard.backing_fd(),
        ];
        fds.extend(self.sigpipe.fds());
        // Sockets parked by a reload belong to the old generation only.
        fds.extend(self.parked_listeners.iter().map(Listener::raw_fd));
        if let Some(control) = &self.control {
            fds.extend(control.fds());
        }
        fds.extend(self.report.fds());
        fds.extend(self.channel.as_ref().map(|c| c.as_raw_fd()));
        fds.extend(self.notices.as_ref().map(|n| n.as_raw_fd()));
        fds.extend(self.output.fds());
        fds.extend(self.old_master_pidfd.as_ref().map(|p| p.as_raw_fd()));
        fds.extend(self.probe.as_ref().map(probe::Probe::raw_fd));
        // The pidfile's lock must go with the master, not live on in
        // workers that outlive it.
        fds.extend(self.pidfile.as_ref().map(Pidfile::raw_fd));
        fds
    }
}

/// One worker's liveness as the way it reports says. Whether it is stopped is
/// read from `/proc` only once it is overdue: it matters only then. The
/// plan asks about an sd_notify worker (whose silence it judges itself)
/// only once that one is overdue.
fn observe(scoreboard: &Scoreboard, w: &Worker, timeout: Duration) -> Liveness {
    if w.notify.is_some() {
        return Liveness {
            silence: Duration::ZERO,
            stopped: is_stopped(w.pid),
        };
    }
    // The forked kinds stamp their slot while they make progress.
    let silence = scoreboard.slot(w.slot).silence();
    let stopped = !timeout.is_zero() && silence > timeout && is_stopped(w.pid);
    Liveness { silence, stopped }
}

/// The process is in state T (stopped) or t (traced and stopped).
fn is_stopped(pid: Pid) -> bool {
    process_state(pid).is_some_and(|state| state == 'T' || state == 't')
}

/// The one-letter state of a process in `/proc/PID/stat` (`R`, `S`, `T`,
/// `Z`, ...); `None` when there is no such process.
fn process_state(pid: Pid) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The state follows the command name, which is in parentheses and may
    // itself contain spaces or parentheses.
    stat.rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next())
}

/// Collect one exited child, if any.
fn reap_one() -> Option<WaitStatus> {
    match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::StillAlive) | Err(_) => None,
        Ok(status) => Some(status),
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
fn claim_inherited_listeners(
    settings: &Settings,
    from_upgrade: bool,
) -> Result<Option<(Vec<Listener>, ListenerSource)>, String> {
    let activated = crate::systemd::listen_fds();
    if !activated.is_empty() {
        let names: Vec<String> = activated.iter().map(|l| l.name.clone()).collect();
        tracing::info!(
            "Using {} socket(s) passed by systemd (LISTEN_FDS, named {}); the bind setting ({}) is ignored",
            activated.len(),
            names.join(", "),
            settings.bind.join(", ")
        );
        let ls = activated
            .into_iter()
            .map(|l| {
                listeners::adopt_fd(std::os::fd::IntoRawFd::into_raw_fd(l.fd), settings.backlog)
            })
            .collect::<Result<_, _>>()?;
        return Ok(Some((ls, ListenerSource::Systemd { names })));
    }
    let inherited: Vec<RawFd> = match std::env::var("GUNICORN_FD") {
        Ok(v) => {
            std::env::remove_var("GUNICORN_FD");
            listeners::parse_fd_list(&v)?
        }
        Err(_) => Vec::new(),
    };
    if from_upgrade {
        // The old master's listeners, renumbered from 3: `fd://N` binds
        // name the old numbers, so they are matched by position.
        let handed = inherited
            .iter()
            .map(|&fd| listeners::adopt_fd(fd, settings.backlog))
            .collect::<Result<Vec<_>, _>>()?;
        let ls = upgrade::match_binds(handed, settings)?;
        return Ok(Some((ls, ListenerSource::Upgrade)));
    }
    let fd_binds = settings
        .binds
        .iter()
        .any(|b| matches!(b, crate::config::BindAddr::Fd(_)));
    if inherited.is_empty() && !fd_binds {
        return Ok(None);
    }
    let ls = listeners::create_all(&ListenerSpec::new(settings, &settings.binds), &inherited, 1)?;
    Ok(Some((ls, ListenerSource::Inherited)))
}

/// `--preload` with a Python app: import it here, once, before any worker
/// is forked (gunicorn's memory-saving mode). Built-in apps ignore it. An
/// app that cannot be imported stops the start, with its traceback.
fn preload(settings: &Settings) -> Result<Option<Box<dyn crate::app::App>>, String> {
    let spec = settings.app.as_deref().unwrap_or_default();
    let python = matches!(
        crate::app::AppSpec::parse(spec),
        Ok(crate::app::AppSpec::Python { .. })
    );
    if !settings.preload_app || !python {
        return Ok(None);
    }
    tracing::info!("Preloading the app {spec} in the master");
    crate::app::load(spec, settings)
        .map(Some)
        .map_err(|e| format!("App failed to load ({spec}): {e}"))
}

/// Say which worker kind runs, and what does not apply to it.
fn log_worker_kind(kind: &WorkerKind, settings: &Settings) {
    match kind {
        WorkerKind::Command(program) => {
            tracing::info!("Using worker: command ({})", program.describe());
            if settings.max_requests > 0 {
                tracing::warn!(
                    "--max-requests ({}) does not apply to command workers: the program counts \
                     no requests for the master; ignored",
                    settings.max_requests
                );
            }
        }
        WorkerKind::Sync | WorkerKind::Gthread => {
            tracing::info!("Using worker: {}", kind.name())
        }
    }
}

/// Bind the command workers' `NOTIFY_SOCKET` in a directory of its own
/// under `--worker-tmp-dir` (else the system temporary directory), given
/// to the workers' user when they run as another one, and watch it.
fn open_notify_socket(
    settings: &Settings,
    registry: &mio::Registry,
) -> Result<notify_socket::NotifySocket, String> {
    let parent = settings
        .worker_tmp_dir
        .clone()
        .unwrap_or_else(std::env::temp_dir);
    let euid = nix::unistd::geteuid().as_raw();
    let owner = match (settings.user, settings.group) {
        (None, None) => None,
        (user, group) if user.unwrap_or(euid) == euid && group.is_none() => None,
        (user, group) => Some((
            user.unwrap_or(euid),
            group.unwrap_or_else(|| {
                user.and_then(|u| nix::unistd::User::from_uid(u.into()).ok().flatten())
                    .map_or_else(|| nix::unistd::getegid().as_raw(), |a| a.gid.as_raw())
            }),
        )),
    };
    let socket = notify_socket::NotifySocket::bind(&parent, owner).map_err(|e| {
        format!(
            "cannot create the command workers' NOTIFY_SOCKET in {}: {e}",
            parent.display()
        )
    })?;
    registry
        .register(
            &mut SourceFd(&socket.as_raw_fd()),
            NOTICES,
            Interest::READABLE,
        )
        .map_err(|e| format!("event loop: {e}"))?;
    tracing::debug!(
        "Command workers' NOTIFY_SOCKET: {}",
        socket.path().display()
    );
    Ok(socket)
}

/// Where the control socket lives, unless it is disabled.
fn control_socket_path(settings: &Settings) -> Option<PathBuf> {
    if settings.control_socket_disable {
        return None;
    }
    Some(settings.control_socket.clone().unwrap_or_else(|| {
        crate::control::paths::default_socket_path_from_env(
            settings.pidfile.as_deref(),
            settings.proc_name.as_deref(),
            nix::unistd::geteuid().as_raw(),
        )
    }))
}

/// Who may use the control socket, and how many at once.
fn control_access(settings: &Settings) -> crate::control::server::Access {
    crate::control::server::Access {
        allowed_uids: settings.control_socket_allow.clone(),
        max_clients: settings.control_socket_max_clients,
    }
}

/// Bind the control socket at `path`. Failing is a warning, never fatal
/// (gunicorn's default-on socket broke read-only containers).
fn adopt_control_socket(
    listener: std::os::unix::net::UnixListener,
    path: &Path,
    file: Option<crate::fd::FileId>,
    settings: &Settings,
    pid: Pid,
) -> Option<ControlServer> {
    match ControlServer::adopt(listener, path, file, CONTROL.0, control_access(settings)) {
        Ok(server) => {
            tracing::info!(
                "Control socket listening at {} ({pid}), kept across the upgrade",
                path.display()
            );
            Some(server)
        }
        Err(e) => {
            tracing::warn!("Failed to keep the control socket: {e}; binding it anew");
            open_control_socket(path, settings, pid)
        }
    }
}

fn open_control_socket(path: &Path, settings: &Settings, pid: Pid) -> Option<ControlServer> {
    let access = control_access(settings);
    match ControlServer::bind(path, settings.control_socket_mode, CONTROL.0, access) {
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
