//! Binary upgrade (USR2, `gunicornctl upgrade`), the part that does I/O:
//! starting the new master, the channel between the two masters, and the
//! new master's takeover. The decisions (one upgrade at a time, the
//! timeout, what an exit means) are the plan's (`Pool::start_upgrade` and
//! the `child_master`/`parent_master` state).
//!
//! How it goes (ARCHITECTURE.md, "Binary upgrade", has the protocol):
//! 1. The old master fork+execs the binary it was started from
//!    ([`StartContext`]) with its listeners at fd 3.. (`GUNICORN_FD`, or
//!    `LISTEN_FDS` when they came from systemd), `GUNICORN_PID=<old pid>`
//!    and one end of a socket pair, the channel, after them
//!    (`GUNICORND_UPGRADE_FD`).
//! 2. The new master writes `<pidfile>.2`, binds `<control socket>.2`, logs
//!    as `Master.2`, says nothing to systemd, and spawns its workers on the
//!    inherited sockets.
//! 3. When they have all booted it writes `READY <pid>\n` on the channel;
//!    the old master logs it and emits `upgrade_ready`.
//! 4. When the old master exits, its end of the channel closes: the new
//!    master reads end-of-file at once and takes over (pidfile, control
//!    socket path, MAINPID, READY=1).

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Instant;

use mio::unix::SourceFd;
use mio::{Interest, Token};
use nix::unistd::Pid;

use super::{Arbiter, ListenerSource, Outcome};
use crate::config::{BindAddr, Settings};
use crate::control::protocol::{EventKind, UpgradeMode};
use crate::fd::FileId;
use crate::listeners::{self, ListenAddr, Listener, ListenerSpec};

/// The event loop's token for the channel to the other master.
pub(super) const CHANNEL: Token = Token(usize::MAX);
/// The event loop's token for a pidfd of the old master (new master).
pub(super) const OLD_MASTER: Token = Token(usize::MAX - 1);
/// How long a new master waits, after the old master closed the channel,
/// for that master to be gone before it concludes it was given up on.
const GIVE_UP: std::time::Duration = std::time::Duration::from_secs(2);

/// Names the fd of the channel in the new master's environment.
const CHANNEL_VAR: &str = "GUNICORND_UPGRADE_FD";
/// The handed-over fds whose unix socket files the old master owns (it
/// bound them), each as `FD:DEV:INO` (the file's identity, see
/// [`FileId`]): the new master owns them once it takes over. An old master
/// of an earlier release writes the fd alone.
pub(super) const OWNED_VAR: &str = "GUNICORND_OWNED_FDS";
/// The old master's pid, as gunicorn names it.
const PARENT_VAR: &str = "GUNICORN_PID";

/// Variables describing inherited descriptors or the previous master: the
/// new master gets fresh ones, never the ones this master was started with.
pub(super) const HANDED_OVER_VARS: &[&str] = &[
    "GUNICORN_FD",
    PARENT_VAR,
    CHANNEL_VAR,
    OWNED_VAR,
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    // systemd watches the main pid only; the new master becomes it on
    // takeover and must not skip the watchdog because of the old pid.
    "WATCHDOG_PID",
    super::handover::STATE_VAR,
    super::handover::CONTROL_VAR,
];

/// How this master was started, captured before anything changes it: what
/// a new master is started with.
#[derive(Debug, Clone)]
pub(super) struct StartContext {
    /// The binary, by the path it was started with, made absolute: after a
    /// package upgrade that path names the new binary (`/proc/self/exe`
    /// would still name the replaced one). `Err` says why it is unknown.
    pub(super) program: Result<PathBuf, String>,
    pub(super) args: Vec<OsString>,
    pub(super) cwd: PathBuf,
    pub(super) env: Vec<(OsString, OsString)>,
}

impl StartContext {
    /// The environment the master started with, less what one master hands
    /// the next ([`HANDED_OVER_VARS`]): the base of a new master's or a new
    /// image's environment.
    pub(super) fn env_to_hand_on(&self) -> Vec<(OsString, OsString)> {
        self.env
            .iter()
            .filter(|(k, _)| !HANDED_OVER_VARS.iter().any(|v| k == v))
            .cloned()
            .collect()
    }

    pub(super) fn capture() -> StartContext {
        let args: Vec<OsString> = std::env::args_os().collect();
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        let env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
        let path_var = env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.clone());
        let program = match args.first() {
            Some(argv0) => resolve_program(argv0, &cwd, path_var.as_deref()),
            None => Err("the process was started without argv[0]".into()),
        };
        StartContext {
            program,
            args,
            cwd,
            env,
        }
    }
}

/// `argv0` as an absolute path: relative to the start directory when it has
/// a slash, else the first executable of that name on `PATH` (as the shell
/// that started us found it).
fn resolve_program(argv0: &OsStr, cwd: &Path, path: Option<&OsStr>) -> Result<PathBuf, String> {
    let name = Path::new(argv0);
    if argv0.as_bytes().contains(&b'/') {
        return Ok(cwd.join(name));
    }
    for dir in std::env::split_paths(path.unwrap_or_default()) {
        let candidate = cwd.join(dir).join(name);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    Err(format!(
        "cannot tell which binary to start: argv[0] '{}' has no slash and is not on PATH",
        name.display()
    ))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A handed-over socket whose file the old master created: ours to remove
/// once we take over, while its path still names `file`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct OwnedSocketFile {
    pub(super) fd: RawFd,
    /// `None` from an old master that does not say (an earlier release).
    pub(super) file: Option<FileId>,
}

impl OwnedSocketFile {
    /// One `FD[:DEV:INO]` item of [`OWNED_VAR`].
    fn parse(item: &str) -> Option<OwnedSocketFile> {
        let item = item.trim();
        let (fd, file) = match item.split_once(':') {
            Some((fd, id)) => (fd, Some(FileId::parse(id)?)),
            None => (item, None),
        };
        Some(OwnedSocketFile {
            fd: fd.parse().ok()?,
            file,
        })
    }
}

/// The handed-over fds whose socket files become ours ([`OWNED_VAR`]),
/// taken out of the environment.
pub(super) fn owned_from_env() -> Vec<OwnedSocketFile> {
    let owned = std::env::var(OWNED_VAR)
        .ok()
        .map(|v| v.split(',').filter_map(OwnedSocketFile::parse).collect())
        .unwrap_or_default();
    std::env::remove_var(OWNED_VAR);
    owned
}

/// The old master, as a new master started by an upgrade sees it.
pub(super) struct Parent {
    pub(super) pid: Pid,
    pub(super) channel: UnixStream,
    /// Handed-over fds whose socket files become ours on takeover.
    pub(super) owned_fds: Vec<OwnedSocketFile>,
}

impl Parent {
    /// Are we the new master of an upgrade? Takes the variables out of the
    /// environment so that workers and hooks do not inherit them.
    pub(super) fn from_env() -> Result<Option<Parent>, String> {
        let (Some(pid), Some(fd)) = (std::env::var_os(PARENT_VAR), std::env::var_os(CHANNEL_VAR))
        else {
            return Ok(None);
        };
        let owned_fds = owned_from_env();
        std::env::remove_var(PARENT_VAR);
        std::env::remove_var(CHANNEL_VAR);
        let pid: i32 = pid
            .to_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("{PARENT_VAR}={pid:?} is not a pid"))?;
        let fd: RawFd = fd
            .to_str()
            .and_then(|s| s.parse().ok())
            .filter(|fd| *fd > 2)
            .ok_or_else(|| format!("{CHANNEL_VAR}={fd:?} is not a descriptor number"))?;
        // SAFETY: fcntl(F_GETFD) only checks that the descriptor is open.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(format!("{CHANNEL_VAR}={fd}: no such open descriptor"));
        }
        // SAFETY: the old master handed this descriptor to us to own.
        let channel = UnixStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
        crate::fd::set_cloexec(&channel).map_err(|e| format!("{CHANNEL_VAR}={fd}: {e}"))?;
        channel
            .set_nonblocking(true)
            .map_err(|e| format!("{CHANNEL_VAR}={fd}: {e}"))?;
        Ok(Some(Parent {
            pid: Pid::from_raw(pid),
            channel,
            owned_fds,
        }))
    }
}

/// A new master's listeners: the ones the old master handed over that the
/// (possibly new) configuration still binds, plus fresh sockets for
/// addresses it adds; the others are closed here (the old master keeps its
/// copies until it exits). `fd://N` binds and port 0 cannot be compared by
/// address: they take a handed-over socket of their kind, in order.
pub(super) fn match_binds(
    handed: Vec<Listener>,
    settings: &Settings,
) -> Result<Vec<Listener>, String> {
    let mut handed: Vec<Option<Listener>> = handed.into_iter().map(Some).collect();
    let mut kept = Vec::with_capacity(settings.binds.len());
    for bind in &settings.binds {
        let found = handed
            .iter()
            .position(|l| l.as_ref().is_some_and(|l| takes(l, bind)));
        match found.and_then(|i| handed[i].take()) {
            Some(l) => kept.push(l),
            None if matches!(bind, BindAddr::Fd(_)) => {
                return Err(format!(
                "{bind:?}: the old master handed over fewer sockets than the configuration names"
            ))
            }
            None => {
                let spec = ListenerSpec::new(settings, std::slice::from_ref(bind));
                kept.extend(listeners::create_all(&spec, &[], 1)?);
            }
        }
    }
    for l in handed.into_iter().flatten() {
        tracing::info!("No longer listening at {l}: the configuration does not bind it");
        l.close(false);
    }
    Ok(kept)
}

/// Whether a handed-over socket serves `bind`.
fn takes(l: &Listener, bind: &BindAddr) -> bool {
    match bind {
        BindAddr::Fd(_) => true,
        BindAddr::Tcp { port: 0, host } => match l.addr() {
            ListenAddr::Tcp(addr) => listeners::resolve(host, 0).is_ok_and(|a| a.ip() == addr.ip()),
            ListenAddr::Unix(_) => false,
        },
        _ => listeners::serves(l, bind),
    }
}

/// The process has exited (a zombie counts: it runs no more code).
fn process_gone(pid: Pid) -> bool {
    super::process_state(pid).is_none_or(|state| state == 'Z' || state == 'X')
}

/// `path` with `.2` appended: where a new master keeps its pidfile and
/// control socket until it takes over.
pub(super) fn second(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".2");
    PathBuf::from(s)
}

impl Arbiter {
    /// USR2 / `upgrade`: in the mode asked for, else the configured one.
    pub(super) fn upgrade(&mut self, mode: Option<UpgradeMode>) -> Outcome {
        match mode.unwrap_or(self.settings.upgrade_mode) {
            UpgradeMode::Fork => self.fork_upgrade(),
            UpgradeMode::InPlace => self.in_place_upgrade(),
        }
    }

    /// A fork-style upgrade: start a new master on the same sockets.
    fn fork_upgrade(&mut self) -> Outcome {
        tracing::info!("Upgrade requested: {}", self.name);
        if let Err(why) = self.pool.start_upgrade() {
            return Outcome::Refused(why);
        }
        match self.start_new_master() {
            Ok((pid, channel)) => {
                self.channel = Some(channel);
                self.pool.upgrade_started(pid, Instant::now())
            }
            Err(e) => self.pool.upgrade_not_started(&e),
        }
    }

    fn start_new_master(&mut self) -> Result<(Pid, UnixStream), String> {
        let program = self.start.program.clone()?;
        let (ours, theirs) =
            UnixStream::pair().map_err(|e| format!("cannot create the upgrade channel: {e}"))?;
        let mut fds: Vec<RawFd> = self.listeners.iter().map(|l| l.raw_fd()).collect();
        let count = fds.len();
        fds.push(theirs.as_raw_fd());
        let mut env = self.start.env_to_hand_on();
        let var = |k: &str, v: String| (OsString::from(k), OsString::from(v));
        env.push(var(PARENT_VAR, self.pid.to_string()));
        env.push(var(CHANNEL_VAR, (3 + count).to_string()));
        let owned: Vec<String> = self
            .listeners
            .iter()
            .enumerate()
            .filter_map(|(i, l)| Some(format!("{}:{}", 3 + i, l.socket_file()?)))
            .collect();
        if !owned.is_empty() {
            env.push(var(OWNED_VAR, owned.join(",")));
        }
        let mut pid_var = None;
        match &self.listener_source {
            ListenerSource::Systemd { names } => {
                env.push(var("LISTEN_FDS", count.to_string()));
                env.push(var("LISTEN_FDNAMES", names.join(":")));
                pid_var = Some(OsString::from("LISTEN_PID"));
            }
            _ => {
                let list: Vec<String> = (3..3 + count).map(|fd| fd.to_string()).collect();
                env.push(var("GUNICORN_FD", list.join(",")));
            }
        }
        let spec = crate::exec::ExecSpec {
            program,
            args: self.start.args.clone(),
            env,
            cwd: Some(self.start.cwd.clone()),
            fds,
            pid_var,
            pre_exec: self.hooks.command_for("pre_exec", &[]),
            ..Default::default()
        };
        let pid = crate::exec::spawn(&spec).map_err(|e| e.to_string())?;
        drop(theirs);
        ours.set_nonblocking(true)
            .map_err(|e| format!("upgrade channel: {e}"))?;
        self.poll
            .registry()
            .register(
                &mut SourceFd(&ours.as_raw_fd()),
                CHANNEL,
                Interest::READABLE,
            )
            .map_err(|e| format!("upgrade channel: {e}"))?;
        Ok((pid, ours))
    }

    /// The channel to the other master is readable.
    pub(super) fn channel_ready(&mut self) {
        if self.pool.parent_master.is_some() {
            self.read_from_old_master();
        } else {
            self.read_from_new_master();
        }
    }

    /// Old master: `READY <pid>` lines; end-of-file when the new master is
    /// gone (its exit is reaped and judged separately).
    fn read_from_new_master(&mut self) {
        let Some(channel) = self.channel.as_mut() else {
            return;
        };
        let mut buf = [0u8; 256];
        let mut closed = false;
        loop {
            match channel.read(&mut buf) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => self.channel_buf.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        while let Some(end) = self.channel_buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.channel_buf.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line);
            match text.trim().strip_prefix("READY ").map(str::parse::<i32>) {
                Some(Ok(pid)) => self.pool.upgrade_ready(Pid::from_raw(pid)),
                _ => tracing::warn!("Upgrade channel: unexpected message {:?}", text.trim()),
            }
        }
        // One short line is all the protocol has: anything longer is noise.
        if self.channel_buf.len() > 1024 {
            tracing::warn!("Upgrade channel: discarding an overlong message");
            self.channel_buf.clear();
        }
        if closed {
            self.close_channel();
        }
    }

    /// New master: watch for the old master's exit through a pidfd, which
    /// becomes readable the moment it exits (kernels without pidfds: the
    /// channel's end-of-file, then a look at `/proc`).
    pub(super) fn watch_old_master(&mut self, pid: Pid) {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
        if fd < 0 {
            tracing::debug!(
                "pidfd_open({pid}): {}; watching the upgrade channel only",
                std::io::Error::last_os_error()
            );
            return;
        }
        // SAFETY: the syscall returned a new descriptor that we now own.
        let pidfd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        let _ = crate::fd::set_cloexec(&pidfd);
        match self.poll.registry().register(
            &mut SourceFd(&pidfd.as_raw_fd()),
            OLD_MASTER,
            Interest::READABLE,
        ) {
            Ok(()) => self.old_master_pidfd = Some(pidfd),
            Err(e) => tracing::debug!("cannot watch the old master's pidfd: {e}"),
        }
    }

    /// New master: the old master exited. Take over.
    pub(super) fn old_master_exited(&mut self) {
        if let Some(pidfd) = self.old_master_pidfd.take() {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&pidfd.as_raw_fd()));
        }
        self.given_up_check = None;
        self.close_channel();
        self.pool.promoted();
    }

    /// New master: the old master closed the channel some time ago. Gone by
    /// now: take over; still running: it gave up on this master (it was not
    /// ready in time, or was reached through a wrapper that did not exec),
    /// and taking over would make two masters.
    pub(super) fn check_given_up(&mut self, now: Instant) {
        let (Some(at), Some(old)) = (self.given_up_check, self.pool.parent_master) else {
            return;
        };
        if now < at {
            return;
        }
        if process_gone(old) {
            self.old_master_exited();
            return;
        }
        self.given_up_check = None;
        tracing::error!(
            "The old master (pid:{old}) closed the upgrade channel but still runs: it gave up on this master; stopping"
        );
        self.command(super::Command::Stop { graceful: true });
    }

    /// New master: the old master never writes, so readable means its end
    /// closed: it is exiting, or it gave up on us.
    fn read_from_old_master(&mut self) {
        let Some(channel) = self.channel.as_mut() else {
            return;
        };
        let mut buf = [0u8; 64];
        match channel.read(&mut buf) {
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) =>
            {
                return
            }
            Ok(n) if n > 0 => return,
            _ => {}
        }
        self.close_channel();
        match self.pool.parent_master {
            Some(old) if self.old_master_pidfd.is_none() && process_gone(old) => {
                self.old_master_exited()
            }
            // An exiting master closes its files before it is gone: give the
            // pidfd (or /proc) a moment to say so.
            Some(_) => self.given_up_check = Some(Instant::now() + GIVE_UP),
            None => {}
        }
    }

    fn close_channel(&mut self) {
        if let Some(channel) = self.channel.take() {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&channel.as_raw_fd()));
        }
        self.channel_buf.clear();
    }

    /// New master: all workers booted; tell the old master.
    pub(super) fn tell_old_master_ready(&mut self) {
        if self.pool.parent_master.is_none() {
            return;
        }
        let line = format!("READY {}\n", self.pid);
        if let Some(channel) = self.channel.as_mut() {
            if let Err(e) = channel.write_all(line.as_bytes()) {
                tracing::warn!("Cannot tell the old master that this one is ready: {e}");
            }
        }
    }

    /// New master, old master gone: take over its pidfile, control socket
    /// path and place with systemd; the sockets' files are ours now.
    pub(super) fn take_over(&mut self, old: Pid) {
        self.name = "Master";
        if let (Some(pidfile), Some(path)) = (self.pidfile.as_mut(), &self.settings.pidfile) {
            if let Err(e) = pidfile.rename(path) {
                tracing::error!("Cannot move the pidfile to {}: {e}", path.display());
            }
        }
        if let Some(control) = self.control.as_mut() {
            if let Some(path) = self.control_path.clone() {
                match control.rename(&path) {
                    Ok(()) => tracing::info!("Control socket listening at {}", path.display()),
                    Err(e) => {
                        tracing::error!("Cannot move the control socket to {}: {e}", path.display())
                    }
                }
            }
        }
        if self.listener_source == ListenerSource::Upgrade {
            // Only the files the old master owned: one it had inherited
            // itself belongs to whoever created it.
            for l in &mut self.listeners {
                if let Some(owned) = self.owned_fds.iter().find(|o| o.fd == l.raw_fd()) {
                    l.claim_path(owned.file);
                }
            }
            self.listener_source = ListenerSource::Bound;
        }
        // The pidfile holds our pid before systemd hears MAINPID.
        self.report.take_over(self.pid);
        self.emit(EventKind::Promoted {
            pid: self.pid.as_raw(),
            old_pid: old.as_raw(),
        });
    }

    /// Old master: the new master `pid` is gone; remove what it left.
    pub(super) fn remove_upgrade_files(&mut self, pid: Pid) {
        self.close_channel();
        if let Some(path) = &self.settings.pidfile {
            crate::pidfile::remove_if_held_by(&second(path), pid.as_raw() as u32);
        }
        if let Some(path) = &self.control_path {
            crate::control::server::remove_stale_socket(&second(path));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_is_argv0_made_absolute_or_found_on_path() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let exe = bin.join("gunicornd");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let cwd = Path::new("/srv/app");
        assert_eq!(
            resolve_program(OsStr::new("/usr/bin/gunicornd"), cwd, None),
            Ok(PathBuf::from("/usr/bin/gunicornd"))
        );
        assert_eq!(
            resolve_program(OsStr::new("./bin/gunicornd"), cwd, None),
            Ok(PathBuf::from("/srv/app/./bin/gunicornd"))
        );
        let path = std::env::join_paths(["/nonexistent", bin.to_str().unwrap()]).unwrap();
        assert_eq!(
            resolve_program(OsStr::new("gunicornd"), cwd, Some(&path)),
            Ok(exe)
        );
        let err = resolve_program(
            OsStr::new("gunicornd"),
            cwd,
            Some(OsStr::new("/nonexistent")),
        )
        .unwrap_err();
        assert!(err.contains("is not on PATH"), "{err}");
    }

    #[test]
    fn owned_fds_name_the_socket_files_by_identity() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "").unwrap();
        let id = FileId::of_path(&file).unwrap();
        assert_eq!(
            OwnedSocketFile::parse(&format!(" 3:{id}")),
            Some(OwnedSocketFile {
                fd: 3,
                file: Some(id)
            })
        );
        // What a master of an earlier release writes.
        assert_eq!(
            OwnedSocketFile::parse("4"),
            Some(OwnedSocketFile { fd: 4, file: None })
        );
        assert_eq!(OwnedSocketFile::parse("4:x"), None);
        assert_eq!(OwnedSocketFile::parse(""), None);
    }

    #[test]
    fn second_appends_dot_2() {
        assert_eq!(
            second(Path::new("/run/g.pid")),
            PathBuf::from("/run/g.pid.2")
        );
    }
}
