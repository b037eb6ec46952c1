//! The master faces local users: its control socket refuses peers of other
//! uids as they connect, closes a frame that never ends, caps its clients
//! and keeps reloading under a flood of connections; gunicornctl talks only
//! to a socket of root or of its own user; and a worker message counts only
//! when the worker itself sent it.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::{Duration, Instant};

use gunicornd_protocol::{encode_frame, read_frame, PingReply, Request, Response};
use gunicornd_test_support::*;
use nix::sys::socket::{getsockopt, sockopt, MsgFlags, SockType};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, setgid, setgroups, setuid, ForkResult, Gid, Uid};

/// The uid (and gid) of `nobody` on Debian.
const NOBODY: u32 = 65534;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Open-files limit of this process raised to at least `n` (the servers it
/// starts inherit it).
fn raise_open_files(n: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft >= n {
        return;
    }
    // Root may raise the hard limit too.
    let hard = if hard >= n || !is_root() { hard } else { n };
    setrlimit(Resource::RLIMIT_NOFILE, n.min(hard), hard).unwrap();
    let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    assert!(
        soft >= n,
        "cannot raise the open-files limit to {n} (it is {soft})"
    );
}

fn open_fds(pid: i32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// Many clients, slow clients

#[test]
fn two_thousand_idle_connections_do_not_stop_a_reload() {
    const IDLE: usize = 2000;
    raise_open_files(IDLE as u64 + 500);
    let srv = Launch::hello(1).start();
    let socket = srv.socket.clone().unwrap();
    let started = Instant::now();
    let idle: Vec<UnixStream> = (0..IDLE)
        .map(|i| {
            UnixStream::connect(&socket).unwrap_or_else(|e| panic!("connection {i} of {IDLE}: {e}"))
        })
        .collect();
    assert_eq!(idle.len(), IDLE);

    // The master holds at most its client cap (256 by default) of them,
    // far below its open-files limit.
    srv.poll("the master to have dealt with every connection", |s| {
        let fds = open_fds(s.pid);
        (fds > 0 && fds < 256 + 64).then_some(())
    });
    let out = ctl(&["-s", srv.sock(), "reload", "--wait", "--timeout", "30"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "reload --wait under {IDLE} idle connections: {}{}",
        stdout(&out),
        stderr(&out)
    );
    srv.wait_pool(1);
    // Log reopening and requests too.
    srv.signal(libc::SIGUSR1);
    srv.expect_log("Log files reopened", DEADLINE);
    assert_eq!(srv.get("/").status, 200);
    assert!(
        open_fds(srv.pid) < 256 + 64,
        "the master holds {} descriptors",
        open_fds(srv.pid)
    );
    // One warning about the full server, not one per connection.
    let warnings = srv
        .log()
        .lines()
        .filter(|l| l.contains("clients connected"))
        .count();
    assert!(
        (1..=(started.elapsed().as_secs() as usize / 10 + 2)).contains(&warnings),
        "{warnings} warnings about the full server:\n{}",
        srv.log()
    );
    drop(idle);
}

#[test]
fn a_frame_that_never_ends_is_closed_after_the_deadline() {
    let srv = Launch::hello(1).start();
    let socket = srv.socket.clone().unwrap();
    let mut idle = Conn::open(&socket);
    let mut slow = Conn::open(&socket);
    // A length prefix announcing 60 bytes, and two of them.
    slow.send_bytes(&[0, 0, 0, 60, b'{', b'"']);
    let sent = Instant::now();
    let mut rest = Vec::new();
    slow.stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let read = slow.stream.read_to_end(&mut rest);
    let waited = sent.elapsed();
    assert!(
        read.is_ok() && rest.is_empty(),
        "expected the master to close the connection: {read:?}, {rest:?}"
    );
    assert!(
        waited >= Duration::from_secs(4),
        "closed after {waited:?}, before the 5 s deadline"
    );
    srv.expect_log("did not finish a frame within 5s", DEADLINE);
    // A client that sent nothing is not sending a frame: it stays.
    let pong: PingReply = idle.ok("ping");
    assert_eq!(pong.pid, srv.pid);
}

// ---------------------------------------------------------------------------
// Other users

/// What a client running as another uid (no supplementary groups) that
/// sends `request` receives: until the master closes the connection, or,
/// for a request, until one whole frame.
fn exchange_as(uid: u32, socket: &Path, request: &[u8]) -> Vec<u8> {
    let (mut from_child, mut to_parent) = UnixStream::pair().unwrap();
    // SAFETY: the child makes system calls on memory prepared before the
    // fork (no allocation, no locks) and leaves with _exit.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            drop(from_child);
            let code = (|| {
                if setgroups(&[]).is_err()
                    || setgid(Gid::from_raw(uid)).is_err()
                    || setuid(Uid::from_raw(uid)).is_err()
                {
                    return 2;
                }
                let Ok(mut conn) = UnixStream::connect(socket) else {
                    return 3;
                };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(20)));
                // The master may refuse before it reads: a failed write is
                // not the test's business, what comes back is.
                let _ = conn.write_all(request);
                let mut buf = [0u8; 4096];
                loop {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return 0,
                        Ok(n) => {
                            if to_parent.write_all(&buf[..n]).is_err() {
                                return 4;
                            }
                            // One whole frame is the answer to a request.
                            if !request.is_empty() && n >= 4 {
                                let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
                                if n >= 4 + len as usize {
                                    return 0;
                                }
                            }
                        }
                    }
                }
            })();
            // SAFETY: ends the forked child without the parent's exit
            // handlers.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(to_parent);
            from_child.set_read_timeout(Some(DEADLINE)).unwrap();
            let mut received = Vec::new();
            let read = from_child.read_to_end(&mut received);
            let status = waitpid(child, None).expect("waitpid");
            assert!(
                matches!(status, nix::sys::wait::WaitStatus::Exited(_, 0)) && read.is_ok(),
                "the uid {uid} client failed ({status:?}, {read:?}; 2 = switching users, 3 = \
                 connecting)"
            );
            received
        }
    }
}

#[test]
fn a_peer_of_another_uid_is_refused_as_it_connects_unless_allowed() {
    if !is_root() {
        eprintln!("SKIPPED: needs root to run a client under another uid");
        return;
    }
    // The directory and the socket let anyone connect: what refuses uid
    // 65534 is the master's peer-credential check, before any request.
    let srv = Launch::hello(1)
        .dir_mode(0o755)
        .arg("--control-socket-mode")
        .arg("0666")
        .start();
    let received = exchange_as(NOBODY, srv.socket.as_ref().unwrap(), b"");
    match read_frame::<_, Response>(&mut received.as_slice()) {
        Ok(Response::Error { error, .. }) => assert!(
            error.starts_with(&format!(
                "permission denied: uid {NOBODY} is not allowed to control this server"
            )),
            "{error}"
        ),
        other => panic!("uid {NOBODY}, silent, got {other:?} ({received:?})"),
    }
    srv.expect_log("Control socket: refusing pid", Duration::from_secs(10));
    assert!(
        srv.log().contains(&format!("uid {NOBODY}: only root")),
        "{}",
        srv.log()
    );

    // control_socket_allow lets that user in.
    let allowed = Launch::hello(1)
        .dir_mode(0o755)
        .arg("--control-socket-mode")
        .arg("0666")
        .arg("--control-socket-allow")
        .arg(NOBODY.to_string())
        .start();
    let ping = encode_frame(&Request::new(7, "ping")).unwrap();
    let received = exchange_as(NOBODY, allowed.socket.as_ref().unwrap(), &ping);
    match read_frame::<_, Response>(&mut received.as_slice()) {
        Ok(Response::Ok { id: 7, data }) => assert_eq!(data["pid"], allowed.pid),
        other => panic!("an allowed uid {NOBODY} got {other:?}"),
    }
}

#[test]
fn gunicornctl_refuses_a_socket_of_another_user() {
    if !is_root() {
        eprintln!("SKIPPED: needs root to give a socket to another user");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ctl.sock");
    let listener = UnixListener::bind(&path).unwrap();
    listener.set_nonblocking(true).unwrap();
    let sock = path.to_str().unwrap();
    let nothing_connected = |listener: &UnixListener| matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);

    std::os::unix::fs::chown(&path, Some(NOBODY), None).unwrap();
    let out = ctl(&["-s", sock, "status"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!(
            "gunicornctl: refusing to use the control socket {sock}: it belongs to uid {NOBODY}"
        )),
        "{err}"
    );
    assert!(err.contains("run gunicornctl as that user"), "{err}");
    assert!(nothing_connected(&listener), "gunicornctl connected anyway");

    // The socket is root's, but another user owns its directory.
    std::os::unix::fs::chown(&path, Some(0), None).unwrap();
    std::os::unix::fs::chown(dir.path(), Some(NOBODY), None).unwrap();
    let out = ctl(&["-s", sock, "reload"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let canonical = fs::canonicalize(dir.path()).unwrap();
    assert!(
        stderr(&out).contains(&format!(
            "its directory {} belongs to uid {NOBODY}",
            canonical.display()
        )),
        "{}",
        stderr(&out)
    );
    assert!(nothing_connected(&listener), "gunicornctl connected anyway");

    // Or anyone may write to it.
    std::os::unix::fs::chown(dir.path(), Some(0), None).unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let out = ctl(&["-s", sock, "stop"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("(mode 0777) lets other users replace the socket"),
        "{}",
        stderr(&out)
    );
    assert!(nothing_connected(&listener), "gunicornctl connected anyway");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
}

// ---------------------------------------------------------------------------
// Worker messages

/// A copy of descriptor `fd` of process `pid` (pidfd_getfd(2); root, or
/// the right to ptrace it).
fn steal_fd(pid: i32, fd: RawFd) -> Option<OwnedFd> {
    // SAFETY: plain system calls; a returned descriptor is ours to own.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0);
        if pidfd < 0 {
            return None;
        }
        let pidfd = OwnedFd::from_raw_fd(pidfd as RawFd);
        let copy = libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0);
        (copy >= 0).then(|| OwnedFd::from_raw_fd(copy as RawFd))
    }
}

/// The worker's end of the worker channel: its one datagram socket.
fn worker_channel_of(worker: i32) -> Option<OwnedFd> {
    let entries = fs::read_dir(format!("/proc/{worker}/fd")).ok()?;
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<RawFd>().ok())
        .filter_map(|fd| steal_fd(worker, fd))
        .find(|copy| getsockopt(copy, sockopt::SockType).is_ok_and(|t| t == SockType::Datagram))
}

#[test]
fn a_worker_message_from_another_process_is_ignored() {
    if !is_root() {
        eprintln!("SKIPPED: needs root to take a copy of a worker's descriptor");
        return;
    }
    let srv = Launch::hello(1).start();
    let workers = srv.wait_pool(1);
    let worker = *workers.first().unwrap();
    let Some(channel) = worker_channel_of(worker) else {
        panic!("cannot find the worker channel of worker {worker}");
    };
    let send = |bytes: &[u8]| {
        nix::sys::socket::send(channel.as_raw_fd(), bytes, MsgFlags::empty()).unwrap()
    };
    // A "recycle me", sent by this process on the worker's own channel;
    // and the same in the old record format, which named the worker.
    send(&2u32.to_le_bytes());
    let mut named = (worker as u32).to_le_bytes().to_vec();
    named.extend_from_slice(&2u32.to_le_bytes());
    send(&named);
    let me = std::process::id();
    srv.expect_log(
        &format!(
            "Ignoring a worker message (Recycle) from pid {me}, which is not one of this master's workers"
        ),
        DEADLINE,
    );
    srv.expect_log(
        &format!("Ignoring a malformed worker message from pid {me}"),
        DEADLINE,
    );
    // Handled in order, so by now the worker would be marked to make way.
    let listed = gunicornd_test_support::control::booted_workers(srv.socket.as_ref().unwrap());
    assert_eq!(listed, Some(workers.clone()), "the worker is not replaced");
    assert_eq!(srv.worker_pids(), workers, "no worker was started");
}

#[test]
fn the_control_socket_gets_its_mode_at_bind_and_a_replaced_file_is_left_alone() {
    use std::os::unix::fs::PermissionsExt;
    let srv = Launch::hello(1).start();
    let socket = srv.socket.clone().unwrap();
    let mode = std::fs::symlink_metadata(&socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the default control_socket_mode");
    // Someone else's file now has the path: the master must not remove it.
    std::fs::rename(&socket, socket.with_extension("moved")).unwrap();
    std::fs::write(&socket, "not ours").unwrap();
    srv.signal(libc::SIGTERM);
    srv.wait_gone(DEADLINE);
    assert_eq!(std::fs::read_to_string(&socket).unwrap(), "not ours");
}
