//! Harness for integration tests: start the real `gunicornd` in its own
//! process group, learn its port from the log, talk HTTP to it, send it
//! signals, look at its workers through `/proc`, and kill everything on drop.
//!
//! Synchronisation is always "poll a fact until a deadline" ([`wait_until`]).

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::RawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_gunicornd");

/// A loopback port nothing listens on right now (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Remove the variables gunicornd reads from the environment, so that the
/// test runner's environment never changes what a test server does.
pub fn without_inherited_settings(cmd: &mut Command) -> &mut Command {
    for var in [
        "GUNICORN_CMD_ARGS",
        "PORT",
        "WEB_CONCURRENCY",
        "XDG_RUNTIME_DIR",
        "NOTIFY_SOCKET",
        "LISTEN_FDS",
        "LISTEN_PID",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Poll `cond` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Like [`wait_until`] but panics with `what` on timeout.
#[track_caller]
pub fn expect_within(timeout: Duration, what: &str, cond: impl FnMut() -> bool) {
    assert!(
        wait_until(timeout, cond),
        "timed out after {timeout:?} waiting for: {what}"
    );
}

/// A running gunicornd.
pub struct Server {
    pub child: Option<Child>,
    pub pid: i32,
    pub dir: tempfile::TempDir,
    pub log_path: PathBuf,
    /// `127.0.0.1:PORT` of the first TCP listener, if any.
    pub addr: Option<String>,
    reaped: Option<std::process::ExitStatus>,
}

/// How to start a server.
pub struct Launch {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Wait for this many workers to answer (0: don't wait).
    pub wait_workers: usize,
    pub dir: Option<tempfile::TempDir>,
    /// Read the log from this file (relative to the dir) instead of stderr.
    pub log_file: Option<String>,
    /// Programs and arguments put in front of gunicornd (e.g. `unshare ...`).
    pub wrapper: Vec<String>,
    /// Variables set to gunicornd's own pid (`LISTEN_PID`, `WATCHDOG_PID`):
    /// the command runs as `sh -c 'export VAR=$$; exec ...'`, so `$$` is the
    /// pid gunicornd keeps after the exec.
    pub pid_env: Vec<String>,
    /// A descriptor handed to gunicornd as fd 3 (systemd socket activation).
    pub fd3: Option<RawFd>,
    /// Whether to wait for a TCP `Listening at:` line; guessed from the
    /// binds when `None`.
    pub expect_tcp: Option<bool>,
}

impl Launch {
    pub fn new(args: &[&str]) -> Self {
        Launch {
            args: args.iter().map(|s| s.to_string()).collect(),
            env: vec![],
            wait_workers: 0,
            dir: None,
            log_file: None,
            wrapper: vec![],
            pid_env: vec![],
            fd3: None,
            expect_tcp: None,
        }
    }

    /// Run gunicornd through `program` (e.g. `["unshare", "--pid", "--fork"]`).
    pub fn wrapper(mut self, program: &[&str]) -> Self {
        self.wrapper = program.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Set `var` to gunicornd's own pid in its environment.
    pub fn pid_env(mut self, var: &str) -> Self {
        self.pid_env.push(var.to_string());
        self
    }

    /// Hand `fd` to gunicornd as fd 3, without close-on-exec.
    pub fn fd3(mut self, fd: RawFd) -> Self {
        self.fd3 = Some(fd);
        self
    }

    /// Say whether a TCP listener will show up in the log.
    pub fn expect_tcp(mut self, yes: bool) -> Self {
        self.expect_tcp = Some(yes);
        self
    }

    /// argv: `[sh -c 'export V=$$; exec "$0" "$@"'] [wrapper...] BIN args...`.
    fn argv(&self) -> Vec<String> {
        let mut argv = self.wrapper.clone();
        argv.push(BIN.to_string());
        argv.extend(self.args.iter().cloned());
        if self.pid_env.is_empty() {
            return argv;
        }
        let exports: Vec<String> = self.pid_env.iter().map(|v| format!("{v}=$$")).collect();
        let script = format!("export {}; exec \"$0\" \"$@\"", exports.join(" "));
        let mut sh = vec!["/bin/sh".to_string(), "-c".to_string(), script];
        sh.extend(argv);
        sh
    }

    /// Start from a `gunicornd.toml` with this content, in a new directory.
    pub fn from_config(toml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("gunicornd.toml"), toml).unwrap();
        Launch::new(&[]).in_dir(dir)
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn workers(mut self, n: usize) -> Self {
        self.wait_workers = n;
        self
    }

    /// The server logs to `--error-logfile NAME`: follow that file.
    pub fn log_file(mut self, name: &str) -> Self {
        self.log_file = Some(name.to_string());
        self
    }

    pub fn in_dir(mut self, dir: tempfile::TempDir) -> Self {
        self.dir = Some(dir);
        self
    }

    pub fn start(mut self) -> Server {
        let dir = self
            .dir
            .take()
            .unwrap_or_else(|| tempfile::tempdir().unwrap());
        let log_path = dir.path().join("stderr.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let argv = self.argv();
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log));
        without_inherited_settings(&mut cmd);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        if let Some(fd) = self.fd3 {
            pass_as_fd3(&mut cmd, fd);
        }
        let child = cmd.spawn().expect("spawn gunicornd");
        let pid = child.id() as i32;
        let log_path = match &self.log_file {
            Some(name) => dir.path().join(name),
            None => log_path,
        };
        let mut server = Server {
            child: Some(child),
            pid,
            dir,
            log_path,
            addr: None,
            reaped: None,
        };
        let other_binds = self
            .args
            .iter()
            .any(|a| a.starts_with("unix:") || a.starts_with("fd://"));
        let tcp_binds = self
            .args
            .iter()
            .any(|a| a.starts_with("127.0.0.1:") || a.starts_with("[::1]:"));
        let expects_tcp = self.expect_tcp.unwrap_or(tcp_binds || !other_binds);
        if expects_tcp {
            expect_within(Duration::from_secs(15), "Listening at: in the log", || {
                server.addr = server.listening_addr();
                server.addr.is_some() || server.exited()
            });
        }
        if self.wait_workers > 0 {
            server.wait_booted(self.wait_workers);
        }
        server
    }
}

impl Server {
    pub fn start(args: &[&str]) -> Server {
        Launch::new(args).start()
    }

    /// Start with `-b 127.0.0.1:0` added and wait until `n` workers are up.
    pub fn start_with_workers(n: usize, args: &[&str]) -> Server {
        let mut all = vec!["-b", "127.0.0.1:0"];
        all.extend_from_slice(args);
        Launch::new(&all).workers(n).start()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn log_contains(&self, needle: &str) -> bool {
        self.log().contains(needle)
    }

    #[track_caller]
    pub fn expect_log(&self, needle: &str, timeout: Duration) {
        if !wait_until(timeout, || self.log_contains(needle)) {
            panic!("log never showed {needle:?}; log:\n{}", self.log());
        }
    }

    fn listening_addr(&self) -> Option<String> {
        listening_addr_in(&self.log())
    }

    pub fn addr(&self) -> &str {
        self.addr.as_deref().expect("server has a TCP listener")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2).
        unsafe { libc::kill(self.pid, sig) };
    }

    /// Send `sig` and wait until the kernel has handed it to the process
    /// (no longer pending), so that back-to-back signals are not merged by
    /// the kernel before the master's handler has seen each of them.
    pub fn signal_delivered(&self, sig: i32) {
        self.signal(sig);
        let bit = 1u64 << (sig - 1);
        expect_within(Duration::from_secs(5), "signal delivered", || {
            pending_signals(self.pid) & bit == 0
        });
    }

    pub fn exited(&mut self) -> bool {
        self.try_status().is_some()
    }

    pub fn try_status(&mut self) -> Option<std::process::ExitStatus> {
        if self.reaped.is_none() {
            if let Some(child) = self.child.as_mut() {
                self.reaped = child.try_wait().ok().flatten();
            }
        }
        self.reaped
    }

    /// Wait for the master to exit; returns its exit code.
    #[track_caller]
    pub fn wait_exit(&mut self, timeout: Duration) -> i32 {
        if !wait_until(timeout, || self.exited()) {
            panic!(
                "gunicornd did not exit within {timeout:?}; log:\n{}",
                self.log()
            );
        }
        self.reaped.unwrap().code().unwrap_or(-1)
    }

    /// Pids of the master's live (not zombie) children.
    pub fn worker_pids(&self) -> BTreeSet<i32> {
        children_of(self.pid)
    }

    /// Wait until exactly `n` workers run and `n` distinct workers answered.
    #[track_caller]
    pub fn wait_booted(&self, n: usize) {
        let ok = wait_until(Duration::from_secs(20), || {
            let pids = self.worker_pids();
            pids.len() == n && self.booted_count() >= n
        });
        if !ok {
            panic!(
                "expected {n} booted workers, have {:?}; log:\n{}",
                self.worker_pids(),
                self.log()
            );
        }
    }

    /// Workers that logged "Booting worker" and are still alive: an
    /// approximation of "booted" that needs no control socket.
    pub fn booted_count(&self) -> usize {
        let log = self.log();
        let alive = self.worker_pids();
        log.lines()
            .filter_map(|l| l.split("Booting worker with pid: ").nth(1))
            .filter_map(|p| p.trim().parse::<i32>().ok())
            .filter(|p| alive.contains(p))
            .count()
    }

    pub fn get(&self, path: &str) -> Response {
        http_request(
            self.addr(),
            &format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n"),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Kill the whole process group (master and workers), then reap.
        // SAFETY: plain kill(2) on our own child's process group.
        unsafe { libc::kill(-self.pid, libc::SIGKILL) };
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }
}

/// Make `fd` the child's fd 3, inheritable across exec.
fn pass_as_fd3(cmd: &mut Command, fd: RawFd) {
    let hook = move || {
        // SAFETY: only async-signal-safe calls between fork and exec.
        let ok = if fd == 3 {
            // dup2(3, 3) would keep close-on-exec: clear the flag instead.
            (unsafe { libc::fcntl(3, libc::F_SETFD, 0) }) == 0
        } else {
            (unsafe { libc::dup2(fd, 3) }) == 3
        };
        if ok {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    // SAFETY: the hook runs in the forked child and is async-signal-safe.
    unsafe { std::os::unix::process::CommandExt::pre_exec(cmd, hook) };
}

/// The first TCP address in a `Listening at:` line of `log`.
pub fn listening_addr_in(log: &str) -> Option<String> {
    let line = log.lines().find(|l| l.contains("Listening at: "))?;
    let rest = line.split("Listening at: ").nth(1)?;
    let first = rest.split([',', ' ']).next()?;
    first.strip_prefix("http://").map(|s| s.to_string())
}

/// One process seen in /proc: pid, state letter (`Z` for a zombie) and
/// command name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: i32,
    pub ppid: i32,
    pub state: char,
    pub comm: String,
}

/// What /proc says about `pid`, if it exists.
pub fn proc_info(pid: i32) -> Option<ProcInfo> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (head, rest) = stat.rsplit_once(')')?;
    let comm = head.split_once('(')?.1.to_string();
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some(ProcInfo {
        pid,
        ppid,
        state,
        comm,
    })
}

/// Every process in /proc (zombies included).
pub fn all_processes() -> Vec<ProcInfo> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .filter_map(proc_info)
        .collect()
}

/// All children of `ppid`, zombies included.
pub fn all_children_of(ppid: i32) -> Vec<ProcInfo> {
    all_processes()
        .into_iter()
        .filter(|p| p.ppid == ppid)
        .collect()
}

/// Inodes of the sockets listening on TCP `port` (IPv4 or IPv6), from
/// /proc/net/tcp{,6}.
pub fn listening_inodes(port: u16) -> Vec<u64> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let Some(local) = f.get(1) else { continue };
            let local_port = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            // State 0A is LISTEN; the inode is the tenth field.
            if local_port == Some(port) && f.get(3) == Some(&"0A") {
                if let Some(inode) = f.get(9).and_then(|i| i.parse().ok()) {
                    inodes.push(inode);
                }
            }
        }
    }
    inodes
}

/// Which of `pids` hold any of the sockets `inodes` open.
pub fn socket_holders(pids: &BTreeSet<i32>, inodes: &[u64]) -> Vec<i32> {
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    pids.iter()
        .copied()
        .filter(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
                fds.flatten().any(|fd| {
                    std::fs::read_link(fd.path())
                        .is_ok_and(|t| wanted.iter().any(|w| t.to_string_lossy() == *w))
                })
            })
        })
        .collect()
}

/// Bitmask of signals pending for the whole process (`ShdPnd` in /proc).
pub fn pending_signals(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let shd = status
        .lines()
        .find_map(|l| l.strip_prefix("ShdPnd:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let own = status
        .lines()
        .find_map(|l| l.strip_prefix("SigPnd:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    shd | own
}

/// Live (non-zombie) children of `ppid`, found by scanning /proc.
pub fn children_of(ppid: i32) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the ")" that closes the command name: state, ppid, ...
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("");
        let parent: i32 = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if parent == ppid && state != "Z" {
            out.insert(pid);
        }
    }
    out
}

/// True while `pid` is inside a sleep system call (the debug app's
/// `?sleep=`): a fact that says a request is in flight in that worker.
pub fn sleeping_in_app(pid: i32) -> bool {
    let sc = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
    let nr = sc.split_whitespace().next().unwrap_or("");
    // x86_64: nanosleep = 35, clock_nanosleep = 230; aarch64: 101 and 115.
    matches!(nr, "35" | "230" | "101" | "115")
}

pub fn process_alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, r)| r.trim_start().chars().next());
    state != Some('Z')
}

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("bad JSON ({e}): {}", self.text()))
    }
}

/// Send raw bytes, read until the server closes, parse the response.
pub fn http_request(addr: &str, raw: &str) -> Response {
    try_http_request(addr, raw.as_bytes())
        .unwrap_or_else(|e| panic!("request to {addr} failed: {e}"))
}

pub fn try_http_request(addr: &str, raw: &[u8]) -> std::io::Result<Response> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(raw)?;
    read_response(&mut s)
}

pub fn unix_request(path: &Path, raw: &str) -> Response {
    let mut s =
        UnixStream::connect(path).unwrap_or_else(|e| panic!("connect {}: {e}", path.display()));
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    read_response(&mut s).unwrap()
}

pub fn read_response(s: &mut impl Read) -> std::io::Result<Response> {
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    parse_response(&buf).ok_or_else(|| {
        std::io::Error::other(format!(
            "unparsable response: {:?}",
            String::from_utf8_lossy(&buf)
        ))
    })
}

pub fn parse_response(buf: &[u8]) -> Option<Response> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let raw_body = &buf[end + 4..];
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(raw_body)?
    } else {
        raw_body.to_vec()
    };
    Some(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(
            std::str::from_utf8(&b[..eol])
                .ok()?
                .split(';')
                .next()?
                .trim(),
            16,
        )
        .ok()?;
        b = &b[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

/// A load generator for "no request fails" tests: `conns` threads send
/// requests back to back until stopped, counting successes and failures.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<(u64, Vec<String>)>>,
}

impl Load {
    /// Start `conns` clients against `addr`, each bounded to `max_requests`.
    pub fn start(addr: &str, conns: usize, path: &str, max_requests: u64) -> Load {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = (0..conns)
            .map(|_| {
                let stop = stop.clone();
                let addr = addr.to_string();
                let raw = format!("GET {path} HTTP/1.1\r\nHost: load\r\n\r\n");
                std::thread::spawn(move || {
                    let mut ok = 0u64;
                    let mut failures = Vec::new();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed)
                        && ok + (failures.len() as u64) < max_requests
                    {
                        match try_http_request(&addr, raw.as_bytes()) {
                            Ok(r) if r.status == 200 => ok += 1,
                            Ok(r) => failures.push(format!("status {}", r.status)),
                            Err(e) => failures.push(e.to_string()),
                        }
                    }
                    (ok, failures)
                })
            })
            .collect();
        Load { stop, threads }
    }

    /// Stop the clients; returns (successes, failure descriptions).
    pub fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut ok = 0;
        let mut failures = Vec::new();
        for t in self.threads {
            let (o, f) = t.join().unwrap();
            ok += o;
            failures.extend(f);
        }
        (ok, failures)
    }
}
