//! Listening sockets: creation from bind addresses, adoption of inherited
//! file descriptors (`fd://N`, `GUNICORN_FD`, systemd's `LISTEN_FDS`), and
//! removal of unix socket files by their owner.
//!
//! A unix socket file is never taken from whoever serves on it: binding a
//! path whose socket answers fails with "address in use", as a TCP port in
//! use does; only a stale one (nobody listens: `ECONNREFUSED`) is replaced.
//! The master records the device and inode of each socket file it creates
//! and removes the file only while its path still names that file, so a
//! socket that someone else has put at the path since (another server, a
//! later bind under another spelling of the path) is left alone. Sockets
//! it inherited (`fd://N`, `GUNICORN_FD`, `LISTEN_FDS`) belong to whoever
//! created them and are never removed, except the ones a binary upgrade's
//! old master hands over as its own ([`Listener::claim_path`]).
//!
//! The master creates every listener before forking; workers inherit them and
//! accept on them. Listeners are left *blocking* in the master's view but are
//! switched to non-blocking once before the first fork: `O_NONBLOCK` lives in
//! the shared open file description, and the workers want non-blocking
//! accepts (several workers race for one connection).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::socket::{
    self, bind, getsockname, listen, setsockopt, sockopt, AddressFamily, Backlog, SockFlag,
    SockType, SockaddrLike, SockaddrStorage, UnixAddr,
};
use nix::sys::stat::{umask, Mode};

use crate::config::{BindAddr, Settings};
use crate::fd::FileId;

/// How many times a bind is attempted before giving up, like gunicorn.
pub const BIND_ATTEMPTS: u32 = 5;

/// What kind of socket a listener is, and where it listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// One listening socket owned by the master.
#[derive(Debug)]
pub struct Listener {
    fd: OwnedFd,
    addr: ListenAddr,
    /// The unix socket file we created (or took over from the master that
    /// did), by identity: ours to remove while the path still names it.
    socket_file: Option<FileId>,
}

impl Listener {
    pub fn addr(&self) -> &ListenAddr {
        &self.addr
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The unix socket file that is ours to remove (we created it, or took
    /// it over from the master that did), by identity.
    pub fn socket_file(&self) -> Option<FileId> {
        self.socket_file
    }

    /// Take the unix socket file as ours (to remove at exit): a new master
    /// of an upgrade, once the old master that created it is gone. `id` is
    /// the file the old master created; without it (an old master of an
    /// earlier release does not say) the file the path names now is taken.
    pub fn claim_path(&mut self, id: Option<FileId>) {
        if let ListenAddr::Unix(path) = &self.addr {
            self.socket_file = id.or_else(|| FileId::of_path(path));
        }
    }

    /// Switch the shared open file description to non-blocking (see module doc).
    pub fn set_nonblocking(&self) -> nix::Result<()> {
        crate::fd::set_nonblocking(&self.fd)
    }

    /// Close the socket; remove its file if `unlink` is set and the path
    /// still names the socket file we created.
    pub fn close(self, unlink: bool) {
        if let (true, Some(id), ListenAddr::Unix(path)) = (unlink, self.socket_file, &self.addr) {
            remove_socket_file(path, id);
        }
        drop(self.fd);
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl fmt::Display for Listener {
    /// gunicorn's form: `http://127.0.0.1:8000`, `http://[::1]:8000`, `unix:/path`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.show(f, "http")
    }
}

impl Listener {
    fn show(&self, f: &mut fmt::Formatter<'_>, scheme: &str) -> fmt::Result {
        match &self.addr {
            ListenAddr::Tcp(SocketAddr::V4(a)) => write!(f, "{scheme}://{}:{}", a.ip(), a.port()),
            ListenAddr::Tcp(SocketAddr::V6(a)) => write!(f, "{scheme}://[{}]:{}", a.ip(), a.port()),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }

    /// As `Display` shows it, with `https://` for a TLS listener.
    pub fn shown(&self, tls: &crate::tls::ListenerTls) -> String {
        struct Shown<'a>(&'a Listener, &'static str);
        impl fmt::Display for Shown<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.show(f, self.1)
            }
        }
        let scheme = if tls.is_tls(&self.addr) {
            "https"
        } else {
            "http"
        };
        Shown(self, scheme).to_string()
    }
}

/// What the listeners are made from.
pub struct ListenerSpec<'a> {
    pub binds: &'a [BindAddr],
    pub backlog: i32,
    pub umask: u32,
    /// Owner to give unix socket files (the workers' uid/gid).
    pub owner: (Option<u32>, Option<u32>),
}

impl<'a> ListenerSpec<'a> {
    /// `binds` with the socket settings of `settings`.
    pub fn new(settings: &Settings, binds: &'a [BindAddr]) -> ListenerSpec<'a> {
        ListenerSpec {
            binds,
            backlog: settings.backlog,
            umask: settings.umask,
            owner: (settings.user, settings.group),
        }
    }
}

/// Make every listener non-blocking before the first fork (module doc).
pub fn set_all_nonblocking(listeners: &[Listener]) -> Result<(), String> {
    for l in listeners {
        l.set_nonblocking().map_err(|e| format!("{l}: {e}"))?;
    }
    Ok(())
}

/// The "Listening at" line, after startup and after every rebind
/// (`https://` for the listeners `tls` makes TLS ones).
pub fn log_listening(listeners: &[Listener], pid: nix::unistd::Pid, tls: &crate::tls::ListenerTls) {
    let shown: Vec<String> = listeners.iter().map(|l| l.shown(tls)).collect();
    tracing::info!("Listening at: {} ({})", shown.join(","), pid);
}

/// Create every listener: inherited fds (from `fd://N` binds or `inherited`)
/// take precedence over addresses, as in gunicorn (`gunicorn/sock.py`).
///
/// Blocking: binding retries sleep a second between attempts. Only call it
/// before the event loop starts (or accept one attempt on reload via
/// `attempts = 1`).
pub fn create_all(
    spec: &ListenerSpec<'_>,
    inherited: &[RawFd],
    attempts: u32,
) -> Result<Vec<Listener>, String> {
    let mut fds: Vec<RawFd> = spec
        .binds
        .iter()
        .filter_map(|b| match b {
            BindAddr::Fd(n) => Some(*n),
            _ => None,
        })
        .collect();
    fds.extend_from_slice(inherited);
    // `fd://3` and `GUNICORN_FD=3` name one socket, adopted once.
    let mut seen = Vec::with_capacity(fds.len());
    fds.retain(|fd| {
        let first = !seen.contains(fd);
        seen.push(*fd);
        first
    });
    if !fds.is_empty() {
        return fds.iter().map(|&fd| adopt_fd(fd, spec.backlog)).collect();
    }
    let mut listeners = Vec::with_capacity(spec.binds.len());
    for bind_addr in spec.binds {
        listeners.push(bind_with_retries(bind_addr, spec, attempts)?);
    }
    Ok(listeners)
}

/// Wrap a listening socket we inherited (fd://N, GUNICORN_FD, LISTEN_FDS).
/// Its file, if it is a unix socket, belongs to whoever created it.
pub fn adopt_fd(fd: RawFd, backlog: i32) -> Result<Listener, String> {
    // SAFETY: fcntl(F_GETFD) only checks that the descriptor number is open.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(format!("fd://{fd}: no such open file descriptor"));
    }
    // SAFETY: the fd is open (checked above) and handed to us to own.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let kind: SockType = socket::getsockopt(&owned, sockopt::SockType)
        .map_err(|e| format!("fd://{fd} is not a socket: {e}"))?;
    if kind != SockType::Stream {
        return Err(format!("fd://{fd} is not a stream socket"));
    }
    if !socket::getsockopt(&owned, sockopt::AcceptConn).unwrap_or(false) {
        return Err(format!("fd://{fd} is a socket but is not listening"));
    }
    let addr = local_addr(owned.as_raw_fd()).map_err(|e| format!("fd://{fd}: {e}"))?;
    let _ = crate::fd::set_cloexec(&owned);
    // Re-listen like gunicorn so the configured backlog applies.
    listen(&owned, backlog_of(backlog)).map_err(|e| format!("fd://{fd}: listen: {e}"))?;
    if matches!(addr, ListenAddr::Tcp(_)) {
        defer_accept(&owned);
    }
    Ok(Listener {
        fd: owned,
        addr,
        socket_file: None,
    })
}

fn bind_with_retries(
    bind_addr: &BindAddr,
    spec: &ListenerSpec<'_>,
    attempts: u32,
) -> Result<Listener, String> {
    let shown = describe(bind_addr);
    let mut last_err = String::new();
    for attempt in 1..=attempts.max(1) {
        match bind_one(bind_addr, spec) {
            Ok(l) => return Ok(l),
            Err(e) => {
                if e.0 == nix::errno::Errno::EADDRINUSE {
                    tracing::error!("Connection in use: {shown}");
                } else if e.0 == nix::errno::Errno::EADDRNOTAVAIL {
                    tracing::error!("Invalid address: {shown}");
                }
                tracing::error!("connection to {shown} failed: {}", e.1);
                last_err = e.1;
                if attempt < attempts {
                    tracing::debug!("Retrying in 1 second.");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }
    Err(format!("Can't connect to {shown}: {last_err}"))
}

fn describe(b: &BindAddr) -> String {
    match b {
        BindAddr::Tcp { host, port } if host.contains(':') => format!("[{host}]:{port}"),
        BindAddr::Tcp { host, port } => format!("{host}:{port}"),
        BindAddr::Unix(p) => format!("unix:{}", p.display()),
        BindAddr::Fd(n) => format!("fd://{n}"),
    }
}

type BindError = (nix::errno::Errno, String);

fn bind_one(b: &BindAddr, spec: &ListenerSpec<'_>) -> Result<Listener, BindError> {
    match b {
        BindAddr::Tcp { host, port } => bind_tcp(host, *port, spec.backlog),
        BindAddr::Unix(path) => bind_unix(path, spec),
        BindAddr::Fd(_) => unreachable!("fd binds are adopted, not bound"),
    }
}

pub fn resolve(host: &str, port: u16) -> Result<SocketAddr, BindError> {
    use std::net::ToSocketAddrs;
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    (host, port)
        .to_socket_addrs()
        .map_err(|e| {
            (
                nix::errno::Errno::EADDRNOTAVAIL,
                format!("cannot resolve {host}: {e}"),
            )
        })?
        .next()
        .ok_or_else(|| {
            (
                nix::errno::Errno::EADDRNOTAVAIL,
                format!("{host} has no address"),
            )
        })
}

/// Seconds a TCP connection may wait in the kernel for its first bytes
/// before it is handed to `accept` anyway (`TCP_DEFER_ACCEPT`).
const DEFER_ACCEPT_SECS: libc::c_int = 1;

/// Have the kernel hand over a TCP connection once its first bytes are
/// there, so that a worker's first read finds the request (no wait in the
/// worker's event loop, no extra system calls); a connection that sends
/// nothing is still accepted after about [`DEFER_ACCEPT_SECS`] and meets
/// the worker's head deadline. Best effort: a failure changes only speed.
fn defer_accept(fd: &OwnedFd) {
    // SAFETY: setsockopt with a pointer to a live c_int and its size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&DEFER_ACCEPT_SECS as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::debug!(
            "TCP_DEFER_ACCEPT not set: {}",
            std::io::Error::last_os_error()
        );
    }
}

fn bind_tcp(host: &str, port: u16, backlog: i32) -> Result<Listener, BindError> {
    let addr = resolve(host, port)?;
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let err = |e: nix::errno::Errno| (e, e.desc().to_string());
    let fd = socket::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).map_err(err)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(err)?;
    if addr.is_ipv6() {
        // Listen on IPv6 only, as an explicit [::] bind asks; 0.0.0.0 is separate.
        let _ = setsockopt(&fd, sockopt::Ipv6V6Only, &true);
    }
    setsockopt(&fd, sockopt::TcpNoDelay, &true).map_err(err)?;
    bind(fd.as_raw_fd(), &SockaddrStorage::from(addr)).map_err(err)?;
    listen(&fd, backlog_of(backlog)).map_err(err)?;
    defer_accept(&fd);
    let actual = local_addr(fd.as_raw_fd()).map_err(|e| (nix::errno::Errno::EINVAL, e))?;
    Ok(Listener {
        fd,
        addr: actual,
        socket_file: None,
    })
}

fn bind_unix(path: &Path, spec: &ListenerSpec<'_>) -> Result<Listener, BindError> {
    let err = |e: nix::errno::Errno| (e, e.desc().to_string());
    clear_stale_socket(path)?;
    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(err)?;
    let addr = UnixAddr::new(path).map_err(err)?;
    // The socket file's mode comes from the umask in force at bind time:
    // it never exists with a wider mode, and no chmod by path follows.
    let old = umask(Mode::from_bits_truncate(spec.umask as libc::mode_t));
    let bound = bind(fd.as_raw_fd(), &addr);
    umask(old);
    // EADDRINUSE here: someone bound the path since the check.
    bound.map_err(err)?;
    // A file that is not ours (swapped in since the bind) is left alone;
    // once it is known to be ours, a failure removes it.
    let (file, id) = socket_file_bound_at(path)?;
    if let Err(e) = give_to_owner(&file, path, spec.owner) {
        remove_socket_file(path, id);
        return Err(e);
    }
    if let Err(e) = listen(&fd, backlog_of(spec.backlog)) {
        remove_socket_file(path, id);
        return Err(err(e));
    }
    Ok(Listener {
        fd,
        addr: ListenAddr::Unix(path.to_path_buf()),
        socket_file: Some(id),
    })
}

/// Make way for a bind at `path`: nothing there is fine; a socket file
/// nobody listens on is removed; one that answers is in use
/// (`EADDRINUSE`, the TCP error); anything else is refused.
fn clear_stale_socket(path: &Path) -> Result<(), BindError> {
    use nix::errno::Errno;
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match probe_socket(path) {
            Probe::Answers => Err((Errno::EADDRINUSE, Errno::EADDRINUSE.desc().to_string())),
            Probe::Unknown(e) => Err((
                e,
                format!(
                    "cannot tell whether {} is in use: {}",
                    path.display(),
                    e.desc()
                ),
            )),
            Probe::Gone => Ok(()),
            Probe::Stale => match std::fs::remove_file(path) {
                Ok(()) => {
                    tracing::debug!("Removed the stale socket file {}", path.display());
                    Ok(())
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err((
                    Errno::EACCES,
                    format!("cannot replace {}: {e}", path.display()),
                )),
            },
        },
        Ok(_) => Err((Errno::EEXIST, format!("{} is not a socket", path.display()))),
        // Missing, or not reachable: the bind says which.
        Err(_) => Ok(()),
    }
}

/// What connecting to an existing socket file says about it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Probe {
    /// Something listens there (or a full backlog makes us wait).
    Answers,
    /// Nobody listens: what a server that crashed leaves behind.
    Stale,
    /// The file went away meanwhile.
    Gone,
    /// Cannot tell (no permission to connect, ...): not ours to replace.
    Unknown(nix::errno::Errno),
}

pub(crate) fn probe_socket(path: &Path) -> Probe {
    use nix::errno::Errno;
    let Ok(addr) = UnixAddr::new(path) else {
        return Probe::Unknown(Errno::ENAMETOOLONG);
    };
    // Non-blocking: a listener with a full backlog must not stall us.
    let probe = match socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    ) {
        Ok(fd) => fd,
        Err(e) => return Probe::Unknown(e),
    };
    match socket::connect(probe.as_raw_fd(), &addr) {
        Ok(()) | Err(Errno::EAGAIN) | Err(Errno::EINPROGRESS) => Probe::Answers,
        // A datagram or seqpacket socket is bound there: in use all the same.
        Err(Errno::EPROTOTYPE) => Probe::Answers,
        Err(Errno::ECONNREFUSED) => Probe::Stale,
        Err(Errno::ENOENT) => Probe::Gone,
        Err(e) => Probe::Unknown(e),
    }
}

/// The socket file we just bound at `path`, opened `O_PATH | O_NOFOLLOW`
/// (so a symlink put in its place is never followed), and its identity,
/// after checking that it is a socket this process owns, not something
/// swapped in since the bind.
fn socket_file_bound_at(path: &Path) -> Result<(OwnedFd, FileId), BindError> {
    use nix::fcntl::OFlag;
    let swapped = |what: &str| {
        (
            nix::errno::Errno::EEXIST,
            format!(
                "{} was replaced while binding it ({what}); refusing to use it",
                path.display()
            ),
        )
    };
    let file = nix::fcntl::open(
        path,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| swapped(e.desc()))?;
    let st = nix::sys::stat::fstat(&file).map_err(|e| (e, e.desc().to_string()))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(swapped("not a socket"));
    }
    if st.st_uid != nix::unistd::geteuid().as_raw() {
        return Err(swapped("not created by this process"));
    }
    let id = FileId::of_fd(&file).map_err(|e| (e, e.desc().to_string()))?;
    Ok((file, id))
}

/// Give the socket file open at `file` (`O_PATH`) to the workers' user and
/// group, if configured: through the descriptor (`AT_EMPTY_PATH`), never
/// by path, so nothing else can be changed in its place.
fn give_to_owner(
    file: &OwnedFd,
    path: &Path,
    owner: (Option<u32>, Option<u32>),
) -> Result<(), BindError> {
    if owner == (None, None) {
        return Ok(());
    }
    let uid = owner.0.map(nix::unistd::Uid::from_raw);
    let gid = owner.1.map(nix::unistd::Gid::from_raw);
    nix::unistd::fchownat(file, "", uid, gid, nix::fcntl::AtFlags::AT_EMPTY_PATH).map_err(|e| {
        (
            e,
            format!(
                "cannot change the owner of {}: {}",
                path.display(),
                e.desc()
            ),
        )
    })
}

/// Remove the socket file at `path` if the path still names `id`.
fn remove_socket_file(path: &Path, id: FileId) {
    match FileId::of_path(path) {
        // Removed already (by hand, or by a tmp cleaner).
        None => return,
        Some(there) if there != id => {
            tracing::info!(
                "Leaving {}: it is no longer the socket file this master created",
                path.display()
            );
            return;
        }
        Some(_) => {}
    }
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!("Could not remove {}: {}", path.display(), e);
        }
    }
}

fn backlog_of(n: i32) -> Backlog {
    Backlog::new(n.clamp(1, libc::SOMAXCONN.max(65535))).unwrap_or(Backlog::MAXCONN)
}

/// The address a socket is bound to.
fn local_addr(fd: RawFd) -> Result<ListenAddr, String> {
    let ss: SockaddrStorage = getsockname(fd).map_err(|e| format!("getsockname: {e}"))?;
    if let Some(v4) = ss.as_sockaddr_in() {
        return Ok(ListenAddr::Tcp(SocketAddr::from(*v4)));
    }
    if let Some(v6) = ss.as_sockaddr_in6() {
        return Ok(ListenAddr::Tcp(SocketAddr::from(*v6)));
    }
    if let Some(un) = ss.as_unix_addr() {
        let path = un.path().map(Path::to_path_buf).unwrap_or_default();
        return Ok(ListenAddr::Unix(path));
    }
    Err(format!("unsupported address family {:?}", ss.family()))
}

/// Whether `listener` already serves `bind` (so a reload can keep it
/// instead of binding the address a second time). A host name is resolved
/// here, which can wait on DNS: only on reload, and only for host names
/// (IP literals, the usual case, resolve without I/O).
/// An ephemeral port (`:0`)
/// never matches: each such bind asks for a new port.
pub fn serves(listener: &Listener, bind: &BindAddr) -> bool {
    match (bind, listener.addr()) {
        (BindAddr::Tcp { port: 0, .. }, _) => false,
        (BindAddr::Tcp { host, port }, ListenAddr::Tcp(addr)) => {
            resolve(host, *port).is_ok_and(|wanted| wanted == *addr)
        }
        // Another spelling of the path (`/run/./app.sock`, a symlinked
        // directory) still names the same socket file.
        (BindAddr::Unix(path), ListenAddr::Unix(bound)) => {
            path == bound
                || match listener.socket_file {
                    Some(id) => FileId::of_path(path) == Some(id),
                    None => {
                        FileId::of_path(path).is_some_and(|id| FileId::of_path(bound) == Some(id))
                    }
                }
        }
        (BindAddr::Fd(fd), _) => *fd == listener.raw_fd(),
        _ => false,
    }
}

/// Parse `GUNICORN_FD` (comma-separated fd numbers).
pub fn parse_fd_list(s: &str) -> Result<Vec<RawFd>, String> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            p.trim()
                .parse::<RawFd>()
                .map_err(|_| format!("GUNICORN_FD: bad fd '{p}'"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_listener_on_ephemeral_port_displays_like_gunicorn() {
        let spec = ListenerSpec {
            binds: &[BindAddr::Tcp {
                host: "127.0.0.1".into(),
                port: 0,
            }],
            backlog: 16,
            umask: 0,
            owner: (None, None),
        };
        let ls = create_all(&spec, &[], 1).unwrap();
        let shown = ls[0].to_string();
        assert!(shown.starts_with("http://127.0.0.1:"), "{shown}");
        assert_ne!(shown, "http://127.0.0.1:0");
    }

    #[test]
    fn unix_listener_replaces_stale_socket_and_refuses_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let spec_binds = [BindAddr::Unix(path.clone())];
        let spec = ListenerSpec {
            binds: &spec_binds,
            backlog: 16,
            umask: 0o077,
            owner: (None, None),
        };
        let first = create_all(&spec, &[], 1).unwrap();
        drop(first); // leaves a stale socket file behind
        let second = create_all(&spec, &[], 1).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "socket created under the umask");
        second.into_iter().for_each(|l| l.close(true));
        assert!(!path.exists(), "owner removes its socket file");

        std::fs::write(&path, b"data").unwrap();
        let err = create_all(&spec, &[], 1).unwrap_err();
        assert!(err.contains("is not a socket"), "{err}");
    }

    fn unix_spec(binds: &[BindAddr]) -> ListenerSpec<'_> {
        ListenerSpec {
            binds,
            backlog: 16,
            umask: 0,
            owner: (None, None),
        }
    }

    #[test]
    fn a_socket_file_that_answers_is_not_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let theirs = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let binds = [BindAddr::Unix(path.clone())];
        let err = create_all(&unix_spec(&binds), &[], 1).unwrap_err();
        assert_eq!(
            err,
            format!(
                "Can't connect to unix:{}: Address already in use",
                path.display()
            )
        );
        // Their socket still has its file and still answers.
        std::os::unix::net::UnixStream::connect(&path).unwrap();
        theirs.accept().unwrap();
    }

    #[test]
    fn a_socket_file_is_removed_only_while_it_is_still_ours() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let binds = [BindAddr::Unix(path.clone())];
        let ours = create_all(&unix_spec(&binds), &[], 1).unwrap();
        assert_eq!(ours[0].socket_file(), FileId::of_path(&path));
        // Someone else's file now has the path.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "theirs").unwrap();
        ours.into_iter().for_each(|l| l.close(true));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "theirs");
    }

    #[test]
    fn another_spelling_of_the_path_is_the_same_listener() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let binds = [BindAddr::Unix(path.clone())];
        let ours = create_all(&unix_spec(&binds), &[], 1).unwrap();
        let spelled = BindAddr::Unix(dir.path().join(".").join("s.sock"));
        assert!(serves(&ours[0], &spelled));
        assert!(!serves(
            &ours[0],
            &BindAddr::Unix(dir.path().join("other.sock"))
        ));
        // Its file is still its own, under either name.
        ours.into_iter().for_each(|l| l.close(true));
        assert!(!path.exists());
    }

    #[test]
    fn inherited_unix_sockets_are_never_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let theirs = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let fd = std::os::fd::IntoRawFd::into_raw_fd(theirs);
        let adopted = adopt_fd(fd, 16).unwrap();
        assert_eq!(adopted.socket_file(), None);
        adopted.close(true);
        assert!(path.exists());
    }

    #[test]
    fn fd_lists_round_trip() {
        assert_eq!(parse_fd_list("3,4, 5").unwrap(), vec![3, 4, 5]);
        assert!(parse_fd_list("3,x").is_err());
    }
}
