//! The control socket of the real gunicornd (issue 5), driven three ways:
//! raw frames (reply shapes, bad input, many or greedy clients, other
//! users), gunicornctl (every subcommand, checked by its effect in /proc
//! and the log), and Python gunicorn's own `gunicornc`.
//!
//! Each test starts its own gunicornd (`Launch::hello`) with the socket in
//! a temporary directory, waits for facts with deadlines and kills what it
//! started on drop, printing the server log if it failed.

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use gunicornd_protocol::{
    read_frame, write_frame, Arg, ConfigReply, DirtyReply, EventKind, EventsReply, HelpReply,
    ListenersReply, PingReply, ProtocolError, ReloadReply, Request, Response, ScaleReply,
    ShowAllReply, ShutdownMode, ShutdownReply, StatsReply, StatusReply, VersionReply,
    WorkerAddReply, WorkerKillReply, WorkerRemoveReply, WorkersReply, MAX_FRAME,
};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, setgid, setgroups, setuid, ForkResult, Gid, Pid, Uid};
use serde_json::Value;

use gunicornd_test_support::{
    ctl, ctl_command, ctl_json, ctl_ok, gunicorn_python, http_get_status, pair, poll, proc_info,
    process_alive, stderr, stdout, Background, Conn, Launch, DEADLINE,
};

/// A uid that is neither root nor the master's (the tests run as root).
const NOBODY: u32 = 65534;

fn pid_set(pids: impl IntoIterator<Item = i32>) -> BTreeSet<i32> {
    pids.into_iter().collect()
}

/// Whether `n` appears in `line` as a whole number (not inside another).
fn mentions_number(line: &str, n: &str) -> bool {
    line.split(|c: char| !c.is_ascii_digit())
        .any(|word| word == n)
}

fn json_pids(list: &Value) -> BTreeSet<i32> {
    list.as_array()
        .unwrap_or_else(|| panic!("expected a list of pids: {list}"))
        .iter()
        .map(|p| p.as_i64().unwrap() as i32)
        .collect()
}

/// One request frame: a big-endian length, then the JSON payload.
fn frame(id: u64, command: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    write_frame(&mut bytes, &Request::new(id, command)).unwrap();
    bytes
}

/// Time for one `ping` on a fresh connection, or why it failed.
fn ping_latency(socket: &Path) -> Result<Duration, String> {
    let started = Instant::now();
    let mut stream = UnixStream::connect(socket).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
        .write_all(&frame(1, "ping"))
        .map_err(|e| format!("send: {e}"))?;
    match read_frame::<_, Response>(&mut stream) {
        Ok(Response::Ok { .. }) => Ok(started.elapsed()),
        other => Err(format!("ping answered {other:?}")),
    }
}

// ---------------------------------------------------------------------------
// Where the socket lives, its mode, its lifetime

#[test]
fn socket_mode_defaults_to_0600_and_follows_the_flag() {
    let srv = Launch::hello(1).start();
    let meta = fs::symlink_metadata(srv.socket.as_ref().unwrap()).unwrap();
    assert!(meta.file_type().is_socket(), "{}", srv.sock());
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "default mode of {}",
        srv.sock()
    );

    let srv = Launch::hello(1)
        .arg("--control-socket-mode")
        .arg("0660")
        .start();
    let mode = fs::metadata(srv.socket.as_ref().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o660, "--control-socket-mode 0660");
}

#[test]
fn default_socket_is_beside_the_pidfile() {
    let launch = Launch::hello(1);
    let pidfile = launch.path("app.pid");
    let expected = launch.path("app.pid.ctl");
    let srv = launch
        .arg("--pid")
        .arg(&pidfile)
        .default_socket(expected)
        .start();
    // gunicornctl applies the same rule to the same --pid.
    let status = ctl_json(&["--pid", pidfile.to_str().unwrap(), "status"]);
    assert_eq!(status["master_pid"], srv.pid, "{status}");
}

#[test]
fn default_socket_is_in_xdg_runtime_dir_even_with_a_pidfile() {
    let launch = Launch::hello(1);
    let runtime = launch.path("runtime");
    fs::create_dir(&runtime).unwrap();
    fs::set_permissions(&runtime, fs::Permissions::from_mode(0o700)).unwrap();
    let pidfile = launch.path("app.pid");
    let srv = launch
        .env("XDG_RUNTIME_DIR", &runtime)
        .arg("--pid")
        .arg(&pidfile)
        .default_socket(runtime.join("gunicornd.ctl"))
        .start();
    assert!(
        !srv.path("app.pid.ctl").exists(),
        "XDG_RUNTIME_DIR wins over --pid"
    );
    let out = ctl_command(&["status", "--json"])
        .env("XDG_RUNTIME_DIR", &runtime)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["master_pid"], srv.pid, "{status}");
}

#[test]
fn no_control_socket_disables_it() {
    let launch = Launch::hello(1);
    let runtime = launch.path("runtime");
    fs::create_dir(&runtime).unwrap();
    let srv = launch
        .env("XDG_RUNTIME_DIR", &runtime)
        .no_control_socket()
        .start();
    // A fact that proves startup is over: the event loop handles TTIN.
    kill(Pid::from_raw(srv.pid), Signal::SIGTTIN).unwrap();
    srv.wait_booted(2);
    let entries: Vec<_> = fs::read_dir(&runtime).unwrap().flatten().collect();
    assert!(
        entries.is_empty(),
        "--no-control-socket, yet {runtime:?} holds {entries:?}"
    );
    assert!(
        !srv.log().contains("Control socket listening"),
        "--no-control-socket, yet the log says it listens"
    );
    assert_eq!(http_get_status(srv.addr()), Some(200));
}

#[test]
fn stop_exits_0_and_removes_the_socket() {
    let srv = Launch::hello(2).start();
    let path = srv.socket.clone().unwrap();
    let workers = srv.worker_pids();
    assert_eq!(
        ctl_ok(&["-s", srv.sock(), "stop"]),
        "shutting down (graceful)\n"
    );
    assert_eq!(srv.wait_exit(DEADLINE), 0, "exit status of a graceful stop");
    assert!(
        fs::symlink_metadata(&path).is_err(),
        "{} is left behind after exit",
        path.display()
    );
    for pid in workers {
        poll(&format!("worker {pid} to be gone"), || {
            (!process_alive(pid)).then_some(())
        });
    }
}

#[test]
fn stop_quick_exits_0() {
    let srv = Launch::hello(2).start();
    let workers = srv.worker_pids();
    let reply = ctl_json(&["-s", srv.sock(), "stop", "--quick"]);
    assert_eq!(reply["status"], "shutting_down", "{reply}");
    assert_eq!(reply["mode"], "quick", "{reply}");
    assert_eq!(srv.wait_exit(DEADLINE), 0, "exit status of a quick stop");
    assert!(!srv.socket.as_ref().unwrap().exists());
    for pid in workers {
        poll(&format!("worker {pid} to be gone"), || {
            (!process_alive(pid)).then_some(())
        });
    }
}

#[test]
fn shutdown_over_the_protocol() {
    let srv = Launch::hello(1).start();
    let mut conn = Conn::open(srv.socket.as_ref().unwrap());
    let reply: ShutdownReply = conn.ok("shutdown graceful");
    assert_eq!(reply, ShutdownReply::new(ShutdownMode::Graceful));
    assert_eq!(srv.wait_exit(DEADLINE), 0);
}

// ---------------------------------------------------------------------------
// Who may talk to the master

/// What a client running under another uid saw.
enum Probe {
    /// Connected; the bytes it received until the first complete frame or
    /// the end of the connection.
    Received(Vec<u8>),
    /// connect(2) failed with this errno.
    ConnectFailed(i32),
}

/// Connects to `socket` from a forked child running as `uid`/`gid` with no
/// supplementary groups (the peer credentials are taken at connect time, so
/// the connection must be made after the switch), sends `request` and
/// reports what came back.
fn probe_as(uid: u32, socket: &Path, request: &[u8]) -> Probe {
    let (mut from_child, to_parent) = UnixStream::pair().unwrap();
    // SAFETY: the test harness may run other threads, so the child only
    // makes system calls on memory prepared before the fork (no allocation,
    // no locks) and leaves with _exit.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            drop(from_child);
            let code = probe_child(uid, socket, request, to_parent);
            // SAFETY: ends the forked child without running the parent's
            // exit handlers.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(to_parent);
            from_child.set_read_timeout(Some(DEADLINE)).unwrap();
            let mut report = Vec::new();
            let read = from_child.read_to_end(&mut report);
            let status = waitpid(child, None).expect("waitpid");
            read.unwrap_or_else(|e| panic!("no report from the uid {uid} child ({status:?}): {e}"));
            match report.split_first() {
                Some((b'R', rest)) => Probe::Received(rest.to_vec()),
                Some((b'E', errno)) if errno.len() == 4 => {
                    Probe::ConnectFailed(i32::from_be_bytes(errno.try_into().unwrap()))
                }
                _ => panic!(
                    "the uid {uid} child failed before connecting ({status:?}; 2 = setgroups, 3 = setgid, 4 = setuid)"
                ),
            }
        }
    }
}

/// The forked child's side of [`probe_as`]; returns its exit code. Writes
/// `E<errno>` or `R<bytes received>` to `report`.
fn probe_child(uid: u32, socket: &Path, request: &[u8], mut report: UnixStream) -> i32 {
    if setgroups(&[]).is_err() {
        return 2;
    }
    if setgid(Gid::from_raw(uid)).is_err() {
        return 3;
    }
    if setuid(Uid::from_raw(uid)).is_err() {
        return 4;
    }
    let mut conn = match UnixStream::connect(socket) {
        Ok(conn) => conn,
        Err(e) => {
            let errno = e.raw_os_error().unwrap_or(0).to_be_bytes();
            let _ = report.write_all(b"E");
            let _ = report.write_all(&errno);
            return 0;
        }
    };
    let _ = report.write_all(b"R");
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    // The server may answer and close before reading: a failed write is
    // not the test's business, what comes back is.
    let _ = conn.write_all(request);
    let mut buf = [0u8; 65536];
    let mut filled = 0;
    loop {
        let n = match conn.read(&mut buf[filled..]) {
            Ok(0) | Err(_) => return 0,
            Ok(n) => n,
        };
        if report.write_all(&buf[filled..filled + n]).is_err() {
            return 5;
        }
        filled += n;
        if filled >= 4 {
            let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            if filled >= 4 + len || filled == buf.len() {
                return 0;
            }
        }
    }
}

#[test]
fn clients_of_another_uid_are_refused_and_logged() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: needs root to run a client under another uid");
        return;
    }
    // The directory and the socket let anyone connect: what refuses uid
    // 65534 must be the master's peer-credential check.
    let srv = Launch::hello(1)
        .dir_mode(0o755)
        .arg("--control-socket-mode")
        .arg("0666")
        .start();
    let socket = srv.socket.clone().unwrap();
    let mode = fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o666);

    let request = gunicornd_protocol::encode_frame(&Request::new(1, "show stats")).expect("encode");
    let received = match probe_as(NOBODY, &socket, &request) {
        Probe::Received(bytes) => bytes,
        Probe::ConnectFailed(errno) => panic!(
            "uid {NOBODY} could not even connect (errno {errno}); the socket is mode 0666 in a 0755 directory"
        ),
    };
    let reply: Result<Response, _> = read_frame(&mut received.as_slice());
    match reply {
        Ok(Response::Error { error, .. }) => {
            let lower = error.to_lowercase();
            assert!(
                lower.contains("not allowed") || lower.contains("permission"),
                "the refusal should say why: {error:?}"
            );
        }
        Ok(other) => panic!("uid {NOBODY} was served: {other:?}"),
        Err(e) => panic!(
            "uid {NOBODY} got no error reply ({e}); received {:?}",
            String::from_utf8_lossy(&received)
        ),
    }
    srv.poll("a WARNING naming the refused uid 65534", |s| {
        s.log()
            .lines()
            .any(|l| l.contains("WARNING") && mentions_number(l, &NOBODY.to_string()))
            .then_some(())
    });
    // Root (the master's uid) is still served.
    let status = ctl_json(&["-s", srv.sock(), "status"]);
    assert_eq!(status["master_pid"], srv.pid);
}

#[test]
fn changes_are_logged_with_the_peers_pid_and_uid() {
    let srv = Launch::hello(1).start();
    let uid = nix::unistd::geteuid().as_raw().to_string();

    // From this process, over a raw connection.
    let mut conn = Conn::open(srv.socket.as_ref().unwrap());
    let _: WorkerAddReply = conn.ok("worker add 1");
    let me = std::process::id().to_string();
    srv.poll(
        &format!("a log line for 'worker add' with pid {me} and uid {uid}"),
        |s| {
            s.log()
                .lines()
                .any(|l| {
                    l.contains("worker add") && mentions_number(l, &me) && mentions_number(l, &uid)
                })
                .then_some(())
        },
    );

    // From gunicornctl, whose pid we know.
    let child = ctl_command(&["-s", srv.sock(), "scale", "+1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ctl_pid = child.id().to_string();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    srv.poll(
        &format!("a log line for 'scale' with pid {ctl_pid} and uid {uid}"),
        |s| {
            s.log()
                .lines()
                .any(|l| {
                    l.contains("scale") && mentions_number(l, &ctl_pid) && mentions_number(l, &uid)
                })
                .then_some(())
        },
    );
    srv.wait_pool(3);
}

// ---------------------------------------------------------------------------
// Bad and difficult clients

#[test]
fn malformed_frames_get_an_error_and_the_connection_goes_on() {
    let srv = Launch::hello(1).start();
    let mut conn = Conn::open(srv.socket.as_ref().unwrap());
    let garbage: [&[u8]; 6] = [
        b"this is not json",
        b"",
        b"\xff\xfe\xfd",
        b"[1, 2, 3]",
        br#"{"id": 3}"#,
        br#"{"command": "show stats", "args": {"a": 1}}"#,
    ];
    for payload in garbage {
        conn.send_payload(payload);
        match conn.read() {
            Ok(Response::Error { error, .. }) => assert!(!error.is_empty()),
            other => panic!(
                "payload {:?}: expected an error reply, got {other:?}",
                String::from_utf8_lossy(payload)
            ),
        }
    }
    // The id is echoed when it can be read.
    conn.send_payload(br#"{"id": 7, "command": 5}"#);
    match conn.read() {
        Ok(Response::Error { id, error }) => {
            assert_eq!(id, 7, "{error}");
            assert!(error.contains("command"), "{error}");
        }
        other => panic!("expected an error reply, got {other:?}"),
    }
    let error = conn.error("frobnicate");
    assert!(error.contains("unknown command 'frobnicate'"), "{error}");
    let error = conn.error("show 'workers");
    assert!(error.contains("unbalanced quotes"), "{error}");

    // Still the same connection, still usable.
    let pong: PingReply = conn.ok("ping");
    assert!(pong.pong);
    assert_eq!(pong.pid, srv.pid);
    let stats: StatsReply = conn.ok("show stats");
    assert_eq!(stats.pid, srv.pid);
}

#[test]
fn an_oversized_frame_gets_an_error_then_the_connection_closes() {
    let srv = Launch::hello(1).start();
    let socket = srv.socket.clone().unwrap();
    for announced in [MAX_FRAME as u32 + 1, u32::MAX] {
        let mut conn = Conn::open(&socket);
        conn.send_bytes(&announced.to_be_bytes());
        match conn.read() {
            Ok(Response::Error { error, .. }) => assert!(
                error.contains(&announced.to_string())
                    || error.contains(&MAX_FRAME.to_string())
                    || error.to_lowercase().contains("too large"),
                "the error should name the size or the limit: {error}"
            ),
            other => panic!("length {announced}: expected an error reply, got {other:?}"),
        }
        match conn.read() {
            Err(ProtocolError::Closed) => {}
            Err(ProtocolError::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("length {announced}: the connection stayed open after the error reply")
            }
            other => panic!("length {announced}: expected the connection to close, got {other:?}"),
        }
    }
    let pong: PingReply = Conn::open(&socket).ok("ping");
    assert_eq!(pong.pid, srv.pid);
}

#[test]
fn idle_and_half_sent_clients_do_not_stall_the_master() {
    let srv = Launch::hello(2).start();
    let socket = srv.socket.clone().unwrap();
    // Connected and silent; half a length prefix; a prefix and part of the
    // payload. All stay open for the whole test.
    let _idle = Conn::open(&socket);
    let mut half_prefix = Conn::open(&socket);
    half_prefix.send_bytes(&[0, 0]);
    let mut half_payload = Conn::open(&socket);
    half_payload.send_bytes(&[0, 0, 0, 60, b'{', b'"']);

    for _ in 0..20 {
        assert_eq!(
            http_get_status(srv.addr()),
            Some(200),
            "HTTP while clients hang"
        );
    }
    let pong: PingReply = Conn::open(&socket).ok("ping");
    assert_eq!(pong.pid, srv.pid);
    assert_eq!(
        ctl_ok(&["-s", srv.sock(), "scale", "+1"]),
        "workers target 2 -> 3\n"
    );
    srv.wait_pool(3);
}

#[test]
fn two_hundred_concurrent_clients_are_all_answered() {
    const CLIENTS: usize = 200;
    let srv = Launch::hello(1).start();
    let socket = srv.socket.clone().unwrap();
    let barrier = Barrier::new(CLIENTS);
    let results: Vec<Result<StatsReply, String>> = thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS as u64)
            .map(|id| {
                let (socket, barrier) = (&socket, &barrier);
                s.spawn(move || {
                    let stream = UnixStream::connect(socket);
                    // Everyone connects first, then all ask at once; every
                    // thread reaches the barrier, even after a failure.
                    barrier.wait();
                    let mut stream = stream.map_err(|e| format!("client {id}: connect: {e}"))?;
                    stream.set_read_timeout(Some(DEADLINE)).unwrap();
                    write_frame(&mut stream, &Request::new(id, "show stats"))
                        .map_err(|e| format!("client {id}: send: {e}"))?;
                    match read_frame(&mut stream) {
                        Ok(Response::Ok { id: got, data }) if got == id => {
                            serde_json::from_value(data).map_err(|e| format!("client {id}: {e}"))
                        }
                        Ok(other) => Err(format!("client {id}: {other:?}")),
                        Err(e) => Err(format!("client {id}: no reply: {e}")),
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let failures: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {CLIENTS} clients were not answered: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    for stats in results.iter().flatten() {
        assert_eq!(stats.pid, srv.pid);
    }
}

/// One client pipelining 20 000 requests must not delay another client's
/// ping past 500 ms; guards against the master serving one connection's
/// whole backlog before it looks at the others.
#[test]
fn a_pipelining_client_does_not_delay_another_clients_ping() {
    const REQUESTS: usize = 20_000;
    let srv = Launch::hello(8).start();
    let socket = srv.socket.clone().unwrap();
    let idle = ping_latency(&socket).unwrap();

    let flood = UnixStream::connect(&socket).unwrap();
    flood
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let sent = Arc::new(AtomicUsize::new(0));
    let replies = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicBool::new(false));
    let writer = {
        let mut stream = flood.try_clone().unwrap();
        let sent = sent.clone();
        thread::spawn(move || {
            let one = frame(1, "show workers");
            let batch: Vec<u8> = one.repeat(500);
            for _ in 0..REQUESTS / 500 {
                if stream.write_all(&batch).is_err() {
                    return;
                }
                sent.fetch_add(500, Ordering::Relaxed);
            }
        })
    };
    let reader = {
        let mut stream = BufReader::new(flood.try_clone().unwrap());
        let replies = replies.clone();
        let finished = finished.clone();
        thread::spawn(move || {
            // Only count whole frames: the contents do not matter here.
            let mut len = [0u8; 4];
            let mut payload = Vec::new();
            while replies.load(Ordering::Relaxed) < REQUESTS {
                if stream.read_exact(&mut len).is_err() {
                    break;
                }
                payload.resize(u32::from_be_bytes(len) as usize, 0);
                if stream.read_exact(&mut payload).is_err() {
                    break;
                }
                replies.fetch_add(1, Ordering::Relaxed);
            }
            finished.store(true, Ordering::Relaxed);
        })
    };

    poll("the flood to start", || {
        (sent.load(Ordering::Relaxed) > 0).then_some(())
    });
    let started = Instant::now();
    let mut worst = Duration::ZERO;
    let mut pings = 0;
    while !finished.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(15) {
        let took = ping_latency(&socket).unwrap();
        worst = worst.max(took);
        pings += 1;
    }
    let answered = replies.load(Ordering::Relaxed);
    let _ = flood.shutdown(Shutdown::Both);
    let _ = writer.join();
    let _ = reader.join();
    assert!(
        worst < Duration::from_millis(500),
        "a ping took {worst:?} (idle: {idle:?}) while another client pipelined {REQUESTS} \
         'show workers' ({answered} answered, {pings} pings measured)"
    );
    assert!(pings > 0, "no ping was measured during the flood");
    eprintln!("flood of {REQUESTS}: {answered} answered, {pings} pings, worst {worst:?}");
}

/// A client that sends its request and half-closes (shutdown(SHUT_WR)), the
/// master reading both at once, still gets its reply; guards against the
/// master dropping a connection whose end of stream came with a request.
#[test]
fn a_half_closed_client_still_gets_its_reply() {
    let srv = Launch::hello(1).start();
    let mut conn = Conn::open(srv.socket.as_ref().unwrap());
    conn.stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // The master must find the request and the end of stream together, in
    // one read: hold it stopped while both are sent.
    let master = Pid::from_raw(srv.pid);
    kill(master, Signal::SIGSTOP).unwrap();
    poll("the master to stop", || {
        (proc_info(srv.pid).is_some_and(|p| p.state == 'T')).then_some(())
    });
    conn.send_bytes(&frame(7, "ping"));
    conn.stream.shutdown(Shutdown::Write).unwrap();
    kill(master, Signal::SIGCONT).unwrap();
    match conn.read() {
        Ok(Response::Ok { id, data }) => {
            assert_eq!(id, 7, "{data}");
            let pong: PingReply = serde_json::from_value(data).unwrap();
            assert!(pong.pong);
            assert_eq!(pong.pid, srv.pid);
        }
        other => panic!("after 'ping' and shutdown(SHUT_WR): {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Every command over raw frames: gunicorn's reply shapes

#[test]
fn show_commands_have_gunicorns_shapes_and_match_proc() {
    let srv = Launch::hello(2).start();
    let running = srv.worker_pids();
    let mut conn = Conn::open(srv.socket.as_ref().unwrap());

    let workers: WorkersReply = conn.ok("show workers");
    assert_eq!(workers.count, 2);
    assert_eq!(pid_set(workers.workers.iter().map(|w| w.pid)), running);
    for w in &workers.workers {
        assert!(w.booted && !w.aborted, "{w:?}");
        assert_eq!(w.generation, Some(1), "{w:?}");
    }
    let ages: BTreeSet<u64> = workers.workers.iter().map(|w| w.age).collect();
    assert_eq!(
        ages.len(),
        2,
        "ages are spawn order, so distinct: {workers:?}"
    );

    let all: ShowAllReply = conn.ok("show all");
    assert_eq!(all.arbiter.pid, srv.pid);
    assert_eq!(
        (all.arbiter.kind.as_str(), all.arbiter.role.as_str()),
        ("arbiter", "master")
    );
    assert_eq!(all.web_worker_count, 2);
    assert_eq!(pid_set(all.web_workers.iter().map(|w| w.pid)), running);
    assert!(all
        .web_workers
        .iter()
        .all(|w| w.kind.as_deref() == Some("web")));

    let stats: StatsReply = conn.ok("show stats");
    assert_eq!(stats.pid, srv.pid);
    assert_eq!((stats.workers_current, stats.workers_target), (2, 2));
    assert_eq!(stats.workers_booted, Some(2));
    assert!(stats.workers_spawned >= 2, "{stats:?}");
    assert_eq!(stats.reloads, 0);
    assert_eq!(stats.dirty_arbiter_pid, None);
    assert!(stats.uptime.is_some_and(|u| u >= 0.0), "{stats:?}");

    let listeners: ListenersReply = conn.ok("show listeners");
    assert_eq!(listeners.count, 1);
    assert_eq!(listeners.listeners[0].address, srv.addr());
    assert_eq!(listeners.listeners[0].kind, "tcp");

    let config: ConfigReply = conn.ok("show config");
    assert_eq!(config.0.get("workers"), Some(&Value::from(2)), "{config:?}");

    let dirty: DirtyReply = conn.ok("show dirty");
    assert!(!dirty.enabled);

    let help: HelpReply = conn.ok("help");
    assert_eq!(help, HelpReply::gunicornd());
    let pong: PingReply = conn.ok("ping");
    assert_eq!(
        pong,
        PingReply {
            pong: true,
            pid: srv.pid
        }
    );
    let version: VersionReply = conn.ok("version");
    assert_eq!(version, VersionReply::current());

    // Keywords are case-insensitive and the text is split like a shell;
    // args are appended to the words.
    let stats: StatsReply = conn.ok("SHOW 'stats'");
    assert_eq!(stats.pid, srv.pid);
    write_frame(
        &mut conn.stream,
        &Request {
            id: 99,
            command: "show".into(),
            args: vec![Arg::from("workers")],
        },
    )
    .unwrap();
    match conn.read().unwrap() {
        Response::Ok { id: 99, data } => {
            let reply: WorkersReply = serde_json::from_value(data).unwrap();
            assert_eq!(reply.count, 2);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn worker_commands_change_the_pool() {
    let srv = Launch::hello(2).start();
    let mut conn = Conn::open(srv.socket.as_ref().unwrap());

    let add: WorkerAddReply = conn.ok("worker add 2");
    assert_eq!(
        add,
        WorkerAddReply {
            added: 2,
            previous: 2,
            total: 4
        }
    );
    srv.wait_pool(4);
    let remove: WorkerRemoveReply = conn.ok("worker remove");
    assert_eq!(
        remove,
        WorkerRemoveReply {
            removed: 1,
            previous: 4,
            total: 3
        }
    );
    srv.wait_pool(3);
    // Never below one worker.
    let remove: WorkerRemoveReply = conn.ok("worker remove 10");
    assert_eq!(
        remove,
        WorkerRemoveReply {
            removed: 2,
            previous: 3,
            total: 1
        }
    );
    srv.wait_pool(1);
    let scale: ScaleReply = conn.ok("scale 3");
    assert_eq!(
        scale,
        ScaleReply {
            previous: 1,
            total: 3
        }
    );
    let before = srv.wait_pool(3);

    let victim = *before.iter().next().unwrap();
    let killed: WorkerKillReply = conn.ok(&format!("worker kill {victim}"));
    assert!(killed.success, "{killed:?}");
    assert_eq!(killed.killed, Some(victim));
    srv.poll(&format!("worker {victim} to be replaced"), |s| {
        let now = s.worker_pids();
        (now.len() == 3 && !now.contains(&victim)).then_some(())
    });
    let before = srv.wait_pool(3);
    match conn.request("worker kill 999999") {
        Response::Ok { data, .. } => {
            let reply: WorkerKillReply = serde_json::from_value(data).unwrap();
            assert!(!reply.success, "killed a pid that is no worker: {reply:?}");
        }
        Response::Error { error, .. } => assert!(error.contains("999999"), "{error}"),
        other => panic!("{other:?}"),
    }

    let reload: ReloadReply = conn.ok("reload");
    assert_eq!(reload.status, "reloading");
    assert_eq!(reload.generation, Some(2));
    srv.poll("every worker replaced after 'reload'", |s| {
        let now = s.worker_pids();
        (now.len() == 3 && now.is_disjoint(&before)).then_some(())
    });
    srv.wait_pool(3);
    let workers: WorkersReply = conn.ok("show workers");
    assert!(workers.workers.iter().all(|w| w.generation == Some(2)));
    let stats: StatsReply = conn.ok("show stats");
    assert_eq!(stats.reloads, 1);

    let reopen: StatusReply = conn.ok("reopen");
    assert_eq!(reopen, StatusReply::reopening());
}

/// `worker remove 1` once every worker has stopped (daemon mode,
/// `stop-workers`): the master must keep running and answer; guards against
/// the worker count going below zero and taking the master down.
#[test]
fn worker_remove_with_no_workers_keeps_the_daemon() {
    let srv = Launch::hello(2).daemon().start();
    let sock = srv.sock().to_string();
    ctl_ok(&["-s", &sock, "stop-workers"]);
    srv.poll("every worker to stop", |s| {
        s.worker_pids().is_empty().then_some(())
    });
    let mut conn = Conn::open(srv.socket.as_ref().unwrap());
    conn.send_bytes(&frame(1, "worker remove 1"));
    let reply = conn.read();
    // The master must still be there to answer, whatever it replied.
    let ping = ping_latency(srv.socket.as_ref().unwrap());
    assert!(
        ping.is_ok(),
        "after 'worker remove 1' with no workers (reply: {reply:?}) the master \
         does not answer ping: {ping:?}"
    );
    match reply {
        Ok(Response::Ok { data, .. }) => {
            let removed = data.get("removed").and_then(|n| n.as_u64());
            assert!(
                removed.is_some_and(|n| n <= 1),
                "'worker remove 1' with no workers reported removing {:?}: {data}",
                data.get("removed")
            );
        }
        // Refusing to go below zero is an answer too.
        Ok(Response::Error { .. }) => {}
        other => panic!("no reply to 'worker remove 1' with no workers: {other:?}"),
    }
    let pong: PingReply = Conn::open(srv.socket.as_ref().unwrap()).ok("ping");
    assert!(pong.pong);
    assert_eq!(pong.pid, srv.pid);
    assert!(process_alive(srv.pid), "the master keeps running");
    ctl_ok(&["-s", &sock, "stop"]);
    srv.wait_gone(DEADLINE);
}

#[test]
fn a_second_upgrade_request_is_refused_with_its_reason() {
    let srv = Launch::hello(1).start();
    let socket = srv.socket.clone().unwrap();
    let started: serde_json::Value = Conn::open(&socket).ok("upgrade");
    let new_pid = started["pid"].as_i64().expect("the new master's pid") as i32;
    assert_eq!(started["old_pid"].as_i64(), Some(srv.pid as i64));
    assert_eq!(
        started["control_socket"].as_str(),
        Some(format!("{}.2", socket.display()).as_str())
    );
    let before = srv.worker_pids();
    let error = Conn::open(&socket).error("upgrade");
    assert!(
        error.contains(&format!("a new master (pid {new_pid}) is already running")),
        "{error}"
    );
    let out = ctl(&["-s", srv.sock(), "raw", "upgrade"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("already running"), "{}", stderr(&out));
    assert!(
        srv.worker_pids().is_superset(&before),
        "old workers untouched"
    );
    assert!(process_alive(new_pid));
}

#[test]
fn status_shows_both_masters_and_the_upgrade_phase() {
    let srv = Launch::hello(1).start();
    let socket = srv.socket.clone().unwrap();
    let started: serde_json::Value = Conn::open(&socket).ok("upgrade");
    let new = started["pid"].as_i64().unwrap();
    poll("the new master ready", || {
        let stats: serde_json::Value = Conn::open(&socket).ok("show stats");
        (stats["upgrade"]["phase"] == "ready").then_some(())
    });
    let out = ctl(&["-s", srv.sock(), "status"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "ready: new master {new} serves beside this one (old master {})",
            srv.pid
        )),
        "{text}"
    );
    let second = format!("{}.2", socket.display());
    let out = ctl(&["-s", &second, "status"]);
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "waiting: this is the new master {new}, not yet promoted; old master {} still runs",
            srv.pid
        )),
        "{text}"
    );
    let out = ctl(&["-s", srv.sock(), "--json", "status"]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["upgrade"]["pid"].as_i64(), Some(new));
}

#[test]
fn events_stream_reports_scaling_and_new_workers() {
    let srv = Launch::hello(1).start();
    let socket = srv.socket.clone().unwrap();
    let mut events = Conn::open(&socket);
    let ack: EventsReply = events.ok("events");
    assert!(ack.subscribed);
    let events_id = 1;

    let scale: ScaleReply = Conn::open(&socket).ok("scale +1");
    assert_eq!(
        scale,
        ScaleReply {
            previous: 1,
            total: 2
        }
    );
    let mut seen = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    let booted = loop {
        assert!(
            Instant::now() < deadline,
            "no worker_booted event within {DEADLINE:?}; events so far: {seen:?}"
        );
        let frame = events
            .read()
            .unwrap_or_else(|e| panic!("event stream broke ({e}); events so far: {seen:?}"));
        let Response::Event { id, data } = frame else {
            panic!("expected an event frame, got {frame:?}");
        };
        assert_eq!(id, events_id, "event frames carry the request's id");
        assert!(
            data.time > 1.0e9,
            "time is seconds since the epoch: {data:?}"
        );
        if let EventKind::WorkerBooted { pid, .. } = data.kind {
            break pid;
        }
        seen.push(data.kind);
    };
    assert!(
        seen.contains(&EventKind::ScaleChanged {
            previous: 1,
            target: 2
        }),
        "scale_changed 1 -> 2 before the boot: {seen:?}"
    );
    assert!(
        seen.iter()
            .any(|k| matches!(k, EventKind::WorkerSpawned { pid, .. } if *pid == booted)),
        "worker_spawned for {booted} before it booted: {seen:?}"
    );
    assert!(
        srv.worker_pids().contains(&booted),
        "{booted} is a running worker"
    );
}

// ---------------------------------------------------------------------------
// gunicornctl against gunicornd

#[test]
fn ctl_status_workers_stats_listeners_config() {
    let srv = Launch::hello(2).start();
    let sock = srv.sock();
    let running = srv.worker_pids();
    let master = srv.pid.to_string();

    let text = ctl_ok(&["-s", sock, "status"]);
    assert_eq!(pair(&text, "master"), Some(master.as_str()), "{text}");
    assert_eq!(
        pair(&text, "workers"),
        Some("2 booted / 2 target"),
        "{text}"
    );
    assert_eq!(pair(&text, "listeners"), Some(srv.addr()), "{text}");
    assert!(
        pair(&text, "server").is_some_and(|s| s.starts_with("gunicornd ")),
        "{text}"
    );
    let status = ctl_json(&["-s", sock, "status"]);
    assert_eq!(status["master_pid"], srv.pid, "{status}");
    assert_eq!(status["workers_booted"], 2, "{status}");
    assert_eq!(status["workers_current"], 2, "{status}");
    assert_eq!(status["workers_target"], 2, "{status}");
    assert_eq!(status["generation"], 1, "{status}");
    assert_eq!(status["listeners"][0]["address"], srv.addr(), "{status}");

    let text = ctl_ok(&["-s", sock, "workers"]);
    let mut lines = text.lines();
    assert!(lines.next().unwrap().starts_with("PID "), "{text}");
    let rows: Vec<&str> = lines.collect();
    let listed = pid_set(rows.iter().map(|row| {
        row.split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("row without a pid: {row:?}"))
    }));
    assert_eq!(listed, running, "{text}");
    assert!(rows.iter().all(|r| r.contains(" booted ")), "{text}");
    let workers = ctl_json(&["-s", sock, "workers"]);
    let listed = pid_set(
        workers["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["pid"].as_i64().unwrap() as i32),
    );
    assert_eq!(listed, running, "{workers}");
    for w in workers["workers"].as_array().unwrap() {
        assert!(w["rss_kb"].as_u64().is_some_and(|kb| kb > 0), "{w}");
    }

    let text = ctl_ok(&["-s", sock, "stats"]);
    assert_eq!(pair(&text, "master"), Some(master.as_str()), "{text}");
    assert_eq!(pair(&text, "workers current"), Some("2"), "{text}");
    assert_eq!(pair(&text, "workers target"), Some("2"), "{text}");
    assert_eq!(pair(&text, "workers booted"), Some("2"), "{text}");
    assert_eq!(pair(&text, "reloads"), Some("0"), "{text}");
    let stats = ctl_json(&["-s", sock, "stats"]);
    assert_eq!(stats["pid"], srv.pid, "{stats}");
    assert_eq!(stats["workers_target"], 2, "{stats}");
    assert!(stats["workers_spawned"].as_u64() >= Some(2), "{stats}");

    let text = ctl_ok(&["-s", sock, "listeners"]);
    let row = text
        .lines()
        .find(|l| l.starts_with(srv.addr()))
        .unwrap_or_else(|| panic!("{} not listed: {text}", srv.addr()));
    assert_eq!(row.split_whitespace().nth(1), Some("tcp"), "{text}");
    let listeners = ctl_json(&["-s", sock, "listeners"]);
    assert_eq!(listeners["count"], 1, "{listeners}");
    assert_eq!(listeners["listeners"][0]["address"], srv.addr());

    let text = ctl_ok(&["-s", sock, "config"]);
    assert_eq!(pair(&text, "workers"), Some("2"), "{text}");
    let config = ctl_json(&["-s", sock, "config"]);
    assert_eq!(config["workers"], 2, "{config}");
    assert!(
        config["bind"].to_string().contains("127.0.0.1"),
        "bind in {config}"
    );
}

#[test]
fn ctl_scale_to_and_by() {
    let srv = Launch::hello(2).start();
    let sock = srv.sock().to_string();
    assert_eq!(
        ctl_ok(&["-s", &sock, "scale", "4"]),
        "workers target 2 -> 4\n"
    );
    srv.wait_pool(4);
    let reply = ctl_json(&["-s", &sock, "scale", "+1"]);
    assert_eq!(
        (reply["previous"].as_u64(), reply["total"].as_u64()),
        (Some(4), Some(5))
    );
    srv.wait_pool(5);
    assert_eq!(
        ctl_ok(&["-s", &sock, "scale", "-3"]),
        "workers target 5 -> 2\n"
    );
    srv.wait_pool(2);
    assert_eq!(
        ctl_ok(&["-s", &sock, "scale", "-5"]),
        "workers target 2 -> 1\n",
        "never below one worker"
    );
    srv.wait_pool(1);
}

#[test]
fn ctl_scale_wait_returns_with_every_worker_booted() {
    let srv = Launch::hello(2).start();
    let text = ctl_ok(&["-s", srv.sock(), "scale", "6", "--wait"]);
    // Checked once, right after the return: --wait promised it.
    let running = srv.worker_pids();
    assert_eq!(
        running.len(),
        6,
        "workers right after scale --wait: {running:?}"
    );
    assert!(
        text.starts_with("workers target 2 -> 6: 6 booted in "),
        "{text}"
    );
    let listed: WorkersReply = Conn::open(srv.socket.as_ref().unwrap()).ok("show workers");
    assert!(listed.workers.iter().all(|w| w.booted), "{listed:?}");
    assert_eq!(pid_set(listed.workers.iter().map(|w| w.pid)), running);
}

#[test]
fn ctl_reload_wait_returns_after_every_worker_is_replaced() {
    let srv = Launch::hello(3).start();
    let before = srv.worker_pids();
    let result = ctl_json(&["-s", srv.sock(), "reload", "--wait"]);
    // Checked once, right after the return.
    let after = srv.worker_pids();
    assert_eq!(
        after.len(),
        3,
        "workers right after reload --wait: {after:?}"
    );
    assert!(
        after.is_disjoint(&before),
        "old workers still running after reload --wait: before {before:?}, after {after:?}"
    );
    assert_eq!(result["status"], "reloaded", "{result}");
    assert_eq!(result["generation"], 2, "{result}");
    assert_eq!(json_pids(&result["workers"]), after, "{result}");
    assert_eq!(json_pids(&result["retired"]), before, "{result}");

    // Without --wait it only starts the reload.
    let text = ctl_ok(&["-s", srv.sock(), "reload"]);
    assert_eq!(text, "reloading (new generation 3)\n");
    srv.poll("every worker replaced after the second reload", |s| {
        let now = s.worker_pids();
        (now.len() == 3 && now.is_disjoint(&after)).then_some(())
    });
}

#[test]
fn ctl_reopen_recreates_a_log_file_renamed_away() {
    let srv = Launch::hello(1).error_logfile("error.log").start();
    let log = srv.path("error.log");
    fs::rename(&log, srv.path("error.log.1")).unwrap();
    assert_eq!(
        ctl_ok(&["-s", srv.sock(), "reopen"]),
        "reopening log files\n"
    );
    poll("error.log to be created again", || {
        log.exists().then_some(())
    });
    let reply = ctl_json(&["-s", srv.sock(), "reopen"]);
    assert_eq!(reply["status"], "reopening", "{reply}");
}

#[test]
fn ctl_kill_replaces_that_worker() {
    let srv = Launch::hello(2).start();
    let before = srv.worker_pids();
    let victim = *before.iter().next().unwrap();
    let survivor = *before.iter().nth(1).unwrap();
    assert_eq!(
        ctl_ok(&["-s", srv.sock(), "kill", &victim.to_string()]),
        format!("worker {victim} is stopping\n")
    );
    srv.poll(&format!("worker {victim} to be replaced"), |s| {
        let now = s.worker_pids();
        (now.len() == 2 && !now.contains(&victim)).then_some(())
    });
    let after = srv.wait_pool(2);
    assert!(
        after.contains(&survivor),
        "only {victim} was to stop: {after:?}"
    );

    let out = ctl(&["-s", srv.sock(), "kill", "999999"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("999999"), "{}", stderr(&out));
}

#[test]
fn ctl_stop_workers_in_the_foreground_is_refused_or_done() {
    let srv = Launch::hello(2).start();
    let before = srv.worker_pids();
    let out = ctl(&["-s", srv.sock(), "stop-workers"]);
    match out.status.code() {
        // Refused: it must say that daemon mode is needed, and change nothing.
        Some(1) => {
            assert!(
                stderr(&out).contains("daemon"),
                "the refusal should say it needs daemon mode: {}",
                stderr(&out)
            );
            assert_eq!(srv.worker_pids(), before);
        }
        // Done: every worker stops, the master stays.
        Some(0) => {
            srv.poll("every worker to stop", |s| {
                s.worker_pids().is_empty().then_some(())
            });
            assert!(process_alive(srv.pid));
        }
        _ => panic!(
            "stop-workers: {:?}\n{}{}",
            out.status,
            stdout(&out),
            stderr(&out)
        ),
    }
}

#[test]
fn ctl_stop_workers_in_daemon_mode_keeps_the_master() {
    let srv = Launch::hello(2).daemon().start();
    let sock = srv.sock().to_string();
    assert_eq!(
        ctl_ok(&["-s", &sock, "stop-workers"]),
        "stopping 2 worker(s); the master keeps running\n"
    );
    srv.poll("every worker to stop", |s| {
        s.worker_pids().is_empty().then_some(())
    });
    assert!(process_alive(srv.pid), "the master keeps running");
    let status = ctl_json(&["-s", &sock, "status"]);
    assert_eq!(status["workers_current"], 0, "{status}");
    assert_eq!(status["workers_target"], 0, "{status}");
    // The master can bring workers back.
    ctl_ok(&["-s", &sock, "scale", "2"]);
    srv.wait_pool(2);
    assert_eq!(http_get_status(srv.addr()), Some(200));
    ctl_ok(&["-s", &sock, "stop"]);
    srv.wait_gone(DEADLINE);
    assert!(!Path::new(&sock).exists(), "socket removed at exit");
}

/// `gunicornctl events --json` in the background, its lines on a channel.
fn follow_events(sock: &str) -> (Background, mpsc::Receiver<std::io::Result<String>>) {
    let mut child = ctl_command(&["-s", sock, "events", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (Background { child }, rx)
}

#[test]
fn ctl_events_prints_scaling_as_json_lines() {
    let srv = Launch::hello(1).start();
    let sock = srv.sock().to_string();
    let (events, lines) = follow_events(&sock);
    let mut seen: Vec<Value> = Vec::new();
    // When gunicornctl's subscription is in place cannot be seen from
    // outside, so scale up again until an event arrives; each round waits
    // a moment for lines, never longer.
    let scale = poll(
        "a scale_changed line from 'gunicornctl events --json'",
        || {
            ctl_ok(&["-s", &sock, "scale", "+1"]);
            loop {
                match lines.recv_timeout(Duration::from_secs(2)) {
                    Ok(line) => {
                        let line = line.expect("read gunicornctl events output");
                        let event: Value = serde_json::from_str(&line)
                            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
                        assert!(event["time"].is_f64(), "{event}");
                        let is_scale = event["event"] == "scale_changed";
                        seen.push(event.clone());
                        if is_scale {
                            return Some(event);
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => return None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        panic!("gunicornctl events ended; lines so far: {seen:?}")
                    }
                }
            }
        },
    );
    let previous = scale["previous"].as_u64().unwrap();
    assert_eq!(scale["target"].as_u64(), Some(previous + 1), "{scale}");
    // The new worker's boot follows.
    let booted = poll("a worker_booted line", || {
        if let Some(e) = seen.iter().find(|e| e["event"] == "worker_booted") {
            return Some(e.clone());
        }
        match lines.recv_timeout(Duration::from_secs(1)) {
            Ok(line) => {
                seen.push(serde_json::from_str(&line.unwrap()).unwrap());
                None
            }
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!("gunicornctl events ended"),
        }
    });
    let pid = booted["pid"].as_i64().unwrap() as i32;
    srv.wait_pool(previous as usize + 1);
    assert!(srv.worker_pids().contains(&pid), "{booted}");
    drop(events);
}

#[test]
fn ctl_raw_sends_any_command() {
    let srv = Launch::hello(1).start();
    let sock = srv.sock();
    let master = srv.pid.to_string();
    for args in [
        &["-s", sock, "raw", "show stats"][..],
        &["-s", sock, "raw", "show", "stats"],
    ] {
        let text = ctl_ok(args);
        assert_eq!(
            pair(&text, "master"),
            Some(master.as_str()),
            "{args:?}: {text}"
        );
    }
    // Options go before the command: after it they are part of it.
    let text = ctl_ok(&["-s", sock, "--json", "raw", "show stats"]);
    let stats: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(stats["pid"], srv.pid, "{stats}");
    let out = ctl(&["-s", sock, "raw", "frobnicate"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("unknown command"), "{}", stderr(&out));
}

// ---------------------------------------------------------------------------
// Python gunicorn's gunicornc against gunicornd

/// Runs gunicornc (`python -m gunicorn.ctl.cli`, which survives the venv
/// being renamed into place, unlike the console script's shebang).
fn gunicornc(python: &Path, sock: &str, command: &str) -> Output {
    Command::new(python)
        .args(["-m", "gunicorn.ctl.cli", "-s", sock, "-c", command])
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .expect("run gunicornc")
}

#[track_caller]
fn gunicornc_ok(python: &Path, sock: &str, command: &str) -> String {
    let out = gunicornc(python, sock, command);
    assert_eq!(
        out.status.code(),
        Some(0),
        "gunicornc -c {command:?}: {}{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

#[test]
fn gunicornc_drives_gunicornd() {
    let Some(python) = gunicorn_python() else {
        return;
    };
    let srv = Launch::hello(2).start();
    let sock = srv.sock().to_string();

    let text = gunicornc_ok(&python, &sock, "show workers");
    for pid in srv.worker_pids() {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{pid} "))),
            "worker {pid} missing: {text}"
        );
    }
    assert!(text.contains("Total: 2 workers"), "{text}");

    // Other commands print the reply's data as JSON.
    let text = gunicornc_ok(&python, &sock, "worker add 1");
    let added: WorkerAddReply =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("gunicornc printed {text:?}: {e}"));
    assert_eq!(
        added,
        WorkerAddReply {
            added: 1,
            previous: 2,
            total: 3
        }
    );
    let before = srv.wait_pool(3);

    let text = gunicornc_ok(&python, &sock, "reload");
    let reload: ReloadReply =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("gunicornc printed {text:?}: {e}"));
    assert_eq!(reload.status, "reloading");
    srv.poll("every worker replaced after gunicornc's reload", |s| {
        let now = s.worker_pids();
        (now.len() == 3 && now.is_disjoint(&before)).then_some(())
    });
    srv.wait_pool(3);

    let text = gunicornc_ok(&python, &sock, "show stats");
    assert!(
        text.contains(&format!("PID:              {}", srv.pid)),
        "{text}"
    );
    assert!(text.contains("Workers target:   3"), "{text}");
}
