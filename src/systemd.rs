//! systemd integration: socket activation (`LISTEN_FDS`) and readiness
//! notifications (`sd_notify`); gunicorn's side of this is `gunicorn/systemd.py`.
//!
//! Where gunicorn only ever sends `READY=1` (before any worker exists), the
//! master drives [`Notifier`] through the whole lifecycle:
//!
//! | event                                   | call                                  |
//! |-----------------------------------------|---------------------------------------|
//! | first generation of workers booted      | [`Notifier::ready`]                   |
//! | workers booted/target changed           | [`Notifier::status`]                  |
//! | HUP received                            | [`Notifier::reloading`]               |
//! | new generation booted after HUP         | [`Notifier::ready`]                   |
//! | shutdown begins                         | [`Notifier::stopping`]                |
//! | every [`Notifier::watchdog_interval`]   | [`Notifier::watchdog_ping`]           |
//!
//! `RELOADING=1` always carries `MONOTONIC_USEC=`, which `Type=notify-reload`
//! (systemd ≥ 253) requires and plain `Type=notify` accepts.
//!
//! The messages are formatted by the `sd-notify` crate; sending is done here
//! because its `notify` opens a *blocking* socket per call and does not
//! support abstract socket addresses (`NOTIFY_SOCKET=@name`, used by some
//! service managers and containers). The master must never block on a slow
//! or wedged service manager, so the socket here is non-blocking and a
//! message that cannot be queued is dropped with a debug log line.

use std::env;
use std::ffi::OsStr;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use sd_notify::NotifyState;
use tracing::{debug, warn};

const LISTEN_PID: &str = "LISTEN_PID";
const LISTEN_FDS: &str = "LISTEN_FDS";
const LISTEN_FDNAMES: &str = "LISTEN_FDNAMES";
const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";
const WATCHDOG_USEC: &str = "WATCHDOG_USEC";
const WATCHDOG_PID: &str = "WATCHDOG_PID";

/// The name systemd gives a descriptor without `FileDescriptorName=`, and
/// the one libsystemd reports when `LISTEN_FDNAMES` is absent.
const UNKNOWN_FD_NAME: &str = "unknown";

/// A listening socket passed by systemd socket activation.
///
/// The socket belongs to systemd's `.socket` unit: gunicornd uses it but
/// must never unlink its path (for a unix socket) when it stops, because
/// systemd keeps listening on it to start the service again.
#[derive(Debug)]
pub struct ListenFd {
    /// The descriptor, with close-on-exec set (see [`listen_fds`]).
    pub fd: OwnedFd,
    /// The `FileDescriptorName=` of the socket unit (`LISTEN_FDNAMES`), or
    /// `"unknown"` when systemd did not pass names.
    pub name: String,
}

/// Takes the sockets systemd passed for socket activation.
///
/// Follows `sd_listen_fds_with_names(unset_environment=1)`: the descriptors
/// are used only when `LISTEN_PID` equals our pid (otherwise they were meant
/// for another process, e.g. the parent of a daemonized master), they start
/// at fd 3, their names come from `LISTEN_FDNAMES`, and `LISTEN_PID`,
/// `LISTEN_FDS` and `LISTEN_FDNAMES` are removed from the environment in
/// every case so that nothing started from the master believes they are its.
///
/// The descriptors get close-on-exec. Forked workers still inherit them
/// (fork ignores the flag), which is how they accept on them; but programs
/// the master *executes* — server hooks, or the new binary of an upgrade —
/// must not receive listening sockets by accident: a hook holding one keeps
/// the port open after gunicornd stops. The upgrade clears the flag on
/// purpose, in the child, on the descriptors it hands over.
///
/// Must be called while the master is single-threaded (it edits the
/// environment), before anything else opens descriptors that could land on
/// fds 3 and up. Malformed variables are logged and yield no descriptors.
pub fn listen_fds() -> Vec<ListenFd> {
    let fds = match sd_notify::listen_fds() {
        Ok(fds) => fds,
        Err(err) => {
            warn!("Ignoring socket activation variables: {err}");
            unset_listen_env();
            return Vec::new();
        }
    };
    let names = env::var(LISTEN_FDNAMES).ok();
    unset_listen_env();
    let fds: Vec<RawFd> = fds.collect();
    let names = fd_names(names.as_deref(), fds.len());
    fds.into_iter()
        .zip(names)
        .map(|(fd, name)| ListenFd {
            // SAFETY: systemd passed these descriptors to this process
            // (LISTEN_PID matched), nothing else in the process owns them, and
            // the environment that described them is gone, so they are
            // adopted exactly once.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            name,
        })
        .collect()
}

fn unset_listen_env() {
    // Edited while the master is still single-threaded (documented on
    // `listen_fds`): no other thread can be reading the environment.
    for var in [LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES] {
        env::remove_var(var);
    }
}

/// Pairs `count` descriptors with the names in `LISTEN_FDNAMES`. Unlike
/// libsystemd, a count mismatch does not throw the sockets away: the names
/// are only labels, so every descriptor is then called "unknown".
fn fd_names(names: Option<&str>, count: usize) -> Vec<String> {
    let listed: Vec<String> = names
        .map(|names| names.split(':').map(str::to_string).collect())
        .unwrap_or_default();
    if listed.len() == count {
        return listed;
    }
    if names.is_some() {
        warn!(
            "LISTEN_FDNAMES lists {} names for {count} sockets; ignoring the names",
            listed.len()
        );
    }
    vec![UNKNOWN_FD_NAME.to_string(); count]
}

/// Whether a service manager asked for readiness notifications.
pub fn under_notify_socket() -> bool {
    env::var_os(NOTIFY_SOCKET).is_some_and(|path| !path.is_empty())
}

/// Sends state changes to the service manager; does nothing when
/// `NOTIFY_SOCKET` is not set.
///
/// Sending never blocks and never fails loudly: the socket is non-blocking
/// and errors are logged at debug level, as gunicorn does.
#[derive(Debug)]
pub struct Notifier {
    target: Option<Target>,
    watchdog: Option<Duration>,
}

#[derive(Debug)]
struct Target {
    socket: UnixDatagram,
    addr: SocketAddr,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`.
    ///
    /// The variables are left in the environment: a master started by a
    /// binary upgrade inherits `NOTIFY_SOCKET` and reports from its own pid.
    pub fn from_env() -> Notifier {
        let watchdog = watchdog_from(
            env::var(WATCHDOG_USEC).ok().as_deref(),
            env::var(WATCHDOG_PID).ok().as_deref(),
            std::process::id(),
        );
        match env::var_os(NOTIFY_SOCKET) {
            Some(path) if !path.is_empty() => Notifier::with_socket(&path, watchdog),
            _ => Notifier::disabled(),
        }
    }

    /// A notifier for the socket at `path` (a filesystem path, or `@name`
    /// for the abstract namespace), with an optional watchdog timeout.
    /// An unusable address gives a disabled notifier and a warning.
    pub fn with_socket(path: &OsStr, watchdog_timeout: Option<Duration>) -> Notifier {
        match Target::open(path) {
            Ok(target) => Notifier {
                target: Some(target),
                watchdog: watchdog_timeout,
            },
            Err(err) => {
                warn!("Not notifying systemd: NOTIFY_SOCKET={path:?}: {err}");
                Notifier::disabled()
            }
        }
    }

    /// A notifier that sends nothing.
    pub fn disabled() -> Notifier {
        Notifier {
            target: None,
            watchdog: None,
        }
    }

    /// Whether messages go anywhere.
    #[cfg(test)]
    fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// `READY=1`: startup or a reload finished.
    pub fn ready(&self) {
        self.send(&[NotifyState::Ready]);
    }

    /// `RELOADING=1` with `MONOTONIC_USEC=<now>`.
    pub fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[NotifyState::Reloading, now]),
            // Cannot happen with CLOCK_MONOTONIC on Linux; still tell systemd.
            Err(err) => {
                debug!("clock_gettime(CLOCK_MONOTONIC): {err}");
                self.send(&[NotifyState::Reloading]);
            }
        }
    }

    /// `STOPPING=1`: shutdown began.
    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping]);
    }

    /// `MAINPID=<pid>`: the service's main process is now `pid` (a binary
    /// upgrade's new master).
    pub fn mainpid(&self, pid: u32) {
        self.send(&[NotifyState::MainPid(pid)]);
    }

    /// `STATUS=<text>`, shown by `systemctl status`. Line breaks are turned
    /// into spaces: the protocol is one assignment per line.
    pub fn status(&self, text: &str) {
        let text = one_line(text);
        self.send(&[NotifyState::Status(&text)]);
    }

    /// How often to call [`Notifier::watchdog_ping`]: half of
    /// `WATCHDOG_USEC` (as sd_watchdog_enabled(3) recommends), or `None`
    /// when systemd does not watch us or nothing would receive the pings.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.target.as_ref()?;
        self.watchdog.map(|timeout| timeout / 2)
    }

    /// `WATCHDOG=1`.
    pub fn watchdog_ping(&self) {
        self.send(&[NotifyState::Watchdog]);
    }

    /// Sends several assignments in one datagram, which systemd applies
    /// together (e.g. `READY=1` with a `STATUS=`).
    pub fn send(&self, states: &[NotifyState<'_>]) {
        let Some(target) = &self.target else {
            return;
        };
        let message = format_message(states);
        match target.socket.send_to_addr(message.as_bytes(), &target.addr) {
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                debug!("sd_notify: dropped {message:?}: the service manager's queue is full")
            }
            Err(err) => debug!("sd_notify: cannot send {message:?}: {err}"),
        }
    }
}

impl Target {
    fn open(path: &OsStr) -> io::Result<Target> {
        let addr = notify_address(path)?;
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        Ok(Target { socket, addr })
    }
}

/// Parses `NOTIFY_SOCKET`: an absolute path, or `@name` for the abstract
/// namespace. Other forms (`vsock:`...) are not supported.
fn notify_address(path: &OsStr) -> io::Result<SocketAddr> {
    let bytes = path.as_bytes();
    match bytes.first() {
        Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..]),
        Some(b'/') => SocketAddr::from_pathname(path),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "expected an absolute path or @abstract-name",
        )),
    }
}

fn format_message(states: &[NotifyState<'_>]) -> String {
    states.iter().map(|state| format!("{state}\n")).collect()
}

fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

/// The watchdog timeout systemd set for this process, if any:
/// `WATCHDOG_USEC` applies only when `WATCHDOG_PID` is absent or names us.
fn watchdog_from(usec: Option<&str>, pid: Option<&str>, our_pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&usec| usec > 0)?;
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok() != Some(our_pid) {
            return None;
        }
    }
    Some(Duration::from_micros(usec))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    use std::process::Command;
    use std::time::Instant;

    /// A bound datagram socket standing in for systemd's notify socket.
    struct FakeManager {
        _dir: tempfile::TempDir,
        path: std::path::PathBuf,
        socket: UnixDatagram,
    }

    impl FakeManager {
        fn new() -> FakeManager {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("notify");
            let socket = UnixDatagram::bind(&path).unwrap();
            socket
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            FakeManager {
                _dir: dir,
                path,
                socket,
            }
        }

        fn notifier(&self, watchdog: Option<Duration>) -> Notifier {
            let notifier = Notifier::with_socket(self.path.as_os_str(), watchdog);
            assert!(notifier.is_enabled());
            notifier
        }

        fn recv(&self) -> String {
            let mut buf = [0u8; 4096];
            let n = self.socket.recv(&mut buf).expect("a notification");
            String::from_utf8(buf[..n].to_vec()).unwrap()
        }
    }

    fn monotonic_usec() -> u64 {
        let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
        now.tv_sec() as u64 * 1_000_000 + now.tv_nsec() as u64 / 1_000
    }

    #[test]
    fn lifecycle_messages() {
        let manager = FakeManager::new();
        let notifier = manager.notifier(None);
        notifier.ready();
        assert_eq!(manager.recv(), "READY=1\n");
        notifier.status("2/4 workers\nbooted");
        assert_eq!(manager.recv(), "STATUS=2/4 workers booted\n");
        notifier.stopping();
        assert_eq!(manager.recv(), "STOPPING=1\n");
        notifier.mainpid(4242);
        assert_eq!(manager.recv(), "MAINPID=4242\n");
        notifier.watchdog_ping();
        assert_eq!(manager.recv(), "WATCHDOG=1\n");
        notifier.send(&[NotifyState::Ready, NotifyState::Status("4/4 workers")]);
        assert_eq!(manager.recv(), "READY=1\nSTATUS=4/4 workers\n");
    }

    #[test]
    fn reloading_carries_the_monotonic_clock() {
        let manager = FakeManager::new();
        let notifier = manager.notifier(None);
        let before = monotonic_usec();
        notifier.reloading();
        let after = monotonic_usec();
        let message = manager.recv();
        let mut lines = message.lines();
        assert_eq!(lines.next(), Some("RELOADING=1"));
        let usec: u64 = lines
            .next()
            .and_then(|line| line.strip_prefix("MONOTONIC_USEC="))
            .expect("MONOTONIC_USEC line")
            .parse()
            .unwrap();
        assert!(
            (before..=after).contains(&usec),
            "{before} <= {usec} <= {after}"
        );
        assert_eq!(lines.next(), None);
    }

    #[test]
    fn abstract_socket_addresses_work() {
        let name = format!("gunicornd-test-{}-{}", std::process::id(), monotonic_usec());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let manager = UnixDatagram::bind_addr(&addr).unwrap();
        manager
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let notifier = Notifier::with_socket(OsStr::new(&format!("@{name}")), None);
        notifier.ready();
        let mut buf = [0u8; 64];
        let n = manager.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\n");
    }

    #[test]
    fn sending_never_blocks_when_the_manager_does_not_read() {
        let manager = FakeManager::new();
        let notifier = manager.notifier(None);
        let started = Instant::now();
        // Far more than a datagram queue holds (the default is 10-ish
        // datagrams per receiver); a blocking send would hang here.
        for _ in 0..1000 {
            notifier.status("filling the queue");
        }
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(manager.recv().starts_with("STATUS="));
    }

    #[test]
    fn a_vanished_manager_is_not_an_error() {
        let manager = FakeManager::new();
        let notifier = manager.notifier(None);
        drop(manager);
        notifier.ready();
        notifier.stopping();
    }

    #[test]
    fn disabled_notifier_sends_nothing() {
        let notifier = Notifier::disabled();
        assert!(!notifier.is_enabled());
        notifier.ready();
        assert_eq!(notifier.watchdog_interval(), None);
    }

    #[test]
    fn relative_or_empty_socket_paths_disable_notifications() {
        assert!(!Notifier::with_socket(OsStr::new("relative/notify"), None).is_enabled());
        assert!(!Notifier::with_socket(OsStr::new(""), None).is_enabled());
        assert!(!Notifier::with_socket(OsStr::new("vsock:2:1234"), None).is_enabled());
    }

    #[test]
    fn watchdog_interval_is_half_the_timeout() {
        let manager = FakeManager::new();
        let notifier = manager.notifier(Some(Duration::from_secs(30)));
        assert_eq!(notifier.watchdog_interval(), Some(Duration::from_secs(15)));
        assert_eq!(manager.notifier(None).watchdog_interval(), None);
    }

    #[test]
    fn watchdog_pid_must_name_us() {
        let us = 4242;
        assert_eq!(
            watchdog_from(Some("3000000"), None, us),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            watchdog_from(Some("3000000"), Some("4242"), us),
            Some(Duration::from_secs(3))
        );
        assert_eq!(watchdog_from(Some("3000000"), Some("4243"), us), None);
        assert_eq!(watchdog_from(Some("3000000"), Some("x"), us), None);
        assert_eq!(watchdog_from(Some("0"), None, us), None);
        assert_eq!(watchdog_from(Some("soon"), None, us), None);
        assert_eq!(watchdog_from(None, Some("4242"), us), None);
    }

    #[test]
    fn fd_names_pair_with_descriptors() {
        assert_eq!(fd_names(Some("web:admin"), 2), ["web", "admin"]);
        assert_eq!(fd_names(Some("web::x"), 3), ["web", "", "x"]);
        assert_eq!(fd_names(None, 2), ["unknown", "unknown"]);
        assert_eq!(fd_names(Some("web"), 2), ["unknown", "unknown"]);
        assert_eq!(fd_names(None, 0), Vec::<String>::new());
    }

    // The environment is process-global, so the functions reading it are
    // tested in a child: the test binary re-runs itself with one ignored
    // test selected and the variables set only in that child.

    const CHILD_MARKER: &str = "GUNICORND_SYSTEMD_TEST_CHILD";

    fn run_child_test(name: &str, setup: impl FnOnce(&mut Command)) -> String {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--ignored",
            "--exact",
            "--nocapture",
            "--test-threads=1",
            name,
        ])
        .env(CHILD_MARKER, "1")
        .env_remove(LISTEN_PID)
        .env_remove(LISTEN_FDS)
        .env_remove(LISTEN_FDNAMES)
        .env_remove(NOTIFY_SOCKET);
        setup(&mut cmd);
        let output = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "child test failed:\n{stdout}\n{stderr}"
        );
        assert!(
            stdout.contains("1 passed"),
            "child test did not run:\n{stdout}"
        );
        stdout
    }

    #[test]
    fn socket_activation_takes_fds_from_3_and_clears_the_environment() {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let unix = std::os::unix::net::UnixListener::bind(dir.path().join("s")).unwrap();
        let (tcp_fd, unix_fd) = (tcp.as_raw_fd(), unix.as_raw_fd());
        let stdout = run_child_test("systemd::tests::child_takes_listen_fds", |cmd| {
            cmd.env(LISTEN_FDS, "2").env(LISTEN_FDNAMES, "web:admin");
            // SAFETY: only fcntl and dup2, which are async-signal-safe, run
            // between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    // Move both out of the way first: either may sit on 3 or 4.
                    let high = [
                        libc::fcntl(tcp_fd, libc::F_DUPFD_CLOEXEC, 100),
                        libc::fcntl(unix_fd, libc::F_DUPFD_CLOEXEC, 100),
                    ];
                    for (from, to) in high.into_iter().zip([3, 4]) {
                        // dup2 leaves the copy without close-on-exec.
                        if from < 0 || libc::dup2(from, to) < 0 {
                            return Err(io::Error::last_os_error());
                        }
                    }
                    Ok(())
                });
            }
        });
        assert!(stdout.contains("listen fds ok"), "{stdout}");
    }

    #[test]
    #[ignore = "runs as a child of socket_activation_takes_fds_from_3_and_clears_the_environment"]
    fn child_takes_listen_fds() {
        if env::var_os(CHILD_MARKER).is_none() {
            return; // Only meaningful when run by its parent test.
        }
        // systemd sets LISTEN_PID to the pid it execs; the parent cannot
        // know ours before spawning, so set it here (single test thread).
        env::set_var(LISTEN_PID, std::process::id().to_string());
        let fds = listen_fds();
        let taken: Vec<(RawFd, &str)> = fds
            .iter()
            .map(|l| (l.fd.as_raw_fd(), l.name.as_str()))
            .collect();
        assert_eq!(taken, [(3, "web"), (4, "admin")]);
        for listen in &fds {
            let flags = nix::fcntl::fcntl(&listen.fd, nix::fcntl::FcntlArg::F_GETFD).unwrap();
            assert_ne!(flags & libc::FD_CLOEXEC, 0, "close-on-exec set");
        }
        for var in [LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES] {
            assert_eq!(env::var_os(var), None, "{var} removed");
        }
        // Called again (nothing left in the environment): no descriptors.
        assert!(listen_fds().is_empty());
        println!("listen fds ok");
    }

    #[test]
    fn socket_activation_for_another_pid_is_ignored() {
        let stdout = run_child_test("systemd::tests::child_ignores_foreign_listen_fds", |cmd| {
            cmd.env(LISTEN_PID, "1").env(LISTEN_FDS, "2");
        });
        assert!(stdout.contains("foreign fds ignored"), "{stdout}");
    }

    #[test]
    #[ignore = "runs as a child of socket_activation_for_another_pid_is_ignored"]
    fn child_ignores_foreign_listen_fds() {
        if env::var_os(CHILD_MARKER).is_none() {
            return; // Only meaningful when run by its parent test.
        }
        assert!(listen_fds().is_empty());
        assert_eq!(env::var_os(LISTEN_FDS), None);
        assert_eq!(env::var_os(LISTEN_PID), None);
        println!("foreign fds ignored");
    }

    #[test]
    fn notifier_from_env_uses_notify_socket_and_watchdog() {
        let manager = FakeManager::new();
        run_child_test("systemd::tests::child_notifies_from_env", |cmd| {
            cmd.env(NOTIFY_SOCKET, &manager.path)
                .env(WATCHDOG_USEC, "8000000")
                .env_remove(WATCHDOG_PID);
        });
        assert_eq!(manager.recv(), "READY=1\n");
    }

    #[test]
    #[ignore = "runs as a child of notifier_from_env_uses_notify_socket_and_watchdog"]
    fn child_notifies_from_env() {
        if env::var_os(CHILD_MARKER).is_none() {
            return; // Only meaningful when run by its parent test.
        }
        assert!(under_notify_socket());
        let notifier = Notifier::from_env();
        assert_eq!(notifier.watchdog_interval(), Some(Duration::from_secs(4)));
        notifier.ready();
        // Left in place for a re-executed master.
        assert!(under_notify_socket());
    }

    #[test]
    fn without_notify_socket_the_notifier_is_disabled() {
        run_child_test("systemd::tests::child_without_notify_socket", |_| {});
    }

    #[test]
    #[ignore = "runs as a child of without_notify_socket_the_notifier_is_disabled"]
    fn child_without_notify_socket() {
        if env::var_os(CHILD_MARKER).is_none() {
            return; // Only meaningful when run by its parent test.
        }
        assert!(!under_notify_socket());
        assert!(!Notifier::from_env().is_enabled());
    }
}
