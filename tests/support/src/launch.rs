//! How to start gunicornd: [`Launch`] says with which arguments, in which
//! directory and what "started" means; [`Launch::start`] returns the
//! running [`Server`].

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::fd::RawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use crate::binaries::gunicornd_bin;
use crate::procfs::process_alive;
use crate::server::{listening_addr_in, Server};
use crate::wait::{poll, wait_for, DEADLINE};

/// How long the control socket may take to appear once the server listens
/// (it is bound right after the listeners).
const SOCKET_DEADLINE: Duration = Duration::from_secs(20);

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

/// What the harness knows about the control socket.
enum SocketChoice {
    /// Nothing: the arguments say what they say, and start() does not wait
    /// for a socket.
    Unmanaged,
    /// `--control-socket DIR/ctl.sock`.
    Explicit,
    /// No flag; the daemon picks this path by its default rules.
    Default(PathBuf),
    /// `--no-control-socket`.
    Disabled,
}

/// How to start a server. Every launch runs in a fresh temporary directory
/// (or the one given to [`Launch::in_dir`]), with gunicornd's stdout and
/// stderr in `DIR/stderr.log`, in a process group of its own.
pub struct Launch {
    dir: tempfile::TempDir,
    args: Vec<OsString>,
    /// The app, put after every other argument ([`Launch::hello`]).
    app: Option<&'static str>,
    env: Vec<(String, OsString)>,
    /// start() waits for this many booted workers (0: does not wait).
    booted: usize,
    socket: SocketChoice,
    /// `--error-logfile DIR/NAME`.
    error_log: Option<String>,
    daemon: bool,
    /// Programs and arguments put in front of gunicornd (e.g. `unshare ...`).
    wrapper: Vec<String>,
    /// Variables set to gunicornd's own pid (`LISTEN_PID`, `WATCHDOG_PID`):
    /// the command runs as `sh -c 'export VAR=$$; exec ...'`, so `$$` is the
    /// pid gunicornd keeps after the exec.
    pid_env: Vec<String>,
    /// A descriptor handed to gunicornd as fd 3 (systemd socket activation).
    fd3: Option<RawFd>,
    /// Whether to wait for a TCP `Listening at:` line; guessed from the
    /// binds when `None`.
    expect_tcp: Option<bool>,
    /// The gunicornd binary to run, when not this build's.
    binary: Option<PathBuf>,
}

impl Launch {
    /// `gunicornd ARGS`, exactly these arguments. start() waits for the
    /// TCP listener when the binds suggest one, and for nothing else unless
    /// told ([`Launch::booted`]); a server that exits at once is returned
    /// as it is, for the test to look at.
    pub fn new(args: &[&str]) -> Self {
        Launch {
            dir: tempfile::tempdir().expect("tempdir"),
            args: args.iter().map(OsString::from).collect(),
            app: None,
            env: vec![],
            booted: 0,
            socket: SocketChoice::Unmanaged,
            error_log: None,
            daemon: false,
            wrapper: vec![],
            pid_env: vec![],
            fd3: None,
            expect_tcp: None,
            binary: None,
        }
    }

    /// Start from a `gunicornd.toml` with this content.
    pub fn from_config(toml: &str) -> Self {
        let launch = Launch::new(&[]);
        fs::write(launch.path("gunicornd.toml"), toml).unwrap();
        launch
    }

    /// `gunicornd -b 127.0.0.1:0 -w WORKERS --control-socket DIR/ctl.sock
    /// [args] builtin:hello`. start() waits until the control socket
    /// listens and `show workers` lists `workers` booted workers.
    pub fn hello(workers: usize) -> Self {
        let mut launch = Launch::new(&["-b", "127.0.0.1:0", "-w", &workers.to_string()]);
        launch.app = Some("builtin:hello");
        launch.socket = SocketChoice::Explicit;
        launch.booted = workers;
        launch
    }

    /// A path inside the test's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Run in `dir` instead of a directory of our own.
    pub fn in_dir(mut self, dir: tempfile::TempDir) -> Self {
        self.dir = dir;
        self
    }

    /// Let other users into the directory (it is 0700 by default), e.g. so
    /// that a client running under another uid can reach the socket.
    pub fn dir_mode(self, mode: u32) -> Self {
        fs::set_permissions(self.dir.path(), fs::Permissions::from_mode(mode)).unwrap();
        self
    }

    /// One more argument (before the app of [`Launch::hello`]).
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.to_string(), value.as_ref().to_os_string()));
        self
    }

    /// start() waits until `n` workers have booted.
    pub fn booted(mut self, n: usize) -> Self {
        self.booted = n;
        self
    }

    /// Give no `--control-socket`: the daemon's default rules put it at
    /// `expected`, and start() waits for it there.
    pub fn default_socket(mut self, expected: PathBuf) -> Self {
        self.socket = SocketChoice::Default(expected);
        self
    }

    /// `--control-socket DIR/ctl.sock` ([`Launch::hello`] has it already);
    /// start() waits until it listens.
    pub fn control_socket(mut self) -> Self {
        self.socket = SocketChoice::Explicit;
        self
    }

    /// Run `binary` (e.g. a copy of gunicornd somewhere else) instead of
    /// this build's gunicornd.
    pub fn binary(mut self, binary: impl Into<PathBuf>) -> Self {
        self.binary = Some(binary.into());
        self
    }

    /// `--no-control-socket`.
    pub fn no_control_socket(mut self) -> Self {
        self.socket = SocketChoice::Disabled;
        self
    }

    /// `--error-logfile DIR/NAME`; [`Server::log`] follows that file too.
    pub fn error_logfile(mut self, name: &str) -> Self {
        self.error_log = Some(name.to_string());
        self
    }

    /// `-D --pid DIR/app.pid`, logging to `DIR/error.log` unless told
    /// otherwise (a daemon's stderr goes nowhere). The launcher must exit 0
    /// once the daemon is ready; the master is found through the pidfile.
    pub fn daemon(mut self) -> Self {
        self.daemon = true;
        self
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

    fn socket_path(&self) -> Option<PathBuf> {
        match &self.socket {
            SocketChoice::Explicit => Some(self.path("ctl.sock")),
            SocketChoice::Default(p) => Some(p.clone()),
            SocketChoice::Unmanaged | SocketChoice::Disabled => None,
        }
    }

    fn error_log_path(&self) -> Option<PathBuf> {
        match (&self.error_log, self.daemon) {
            (Some(name), _) => Some(self.path(name)),
            (None, true) => Some(self.path("error.log")),
            (None, false) => None,
        }
    }

    /// gunicornd's arguments: ours, then what the builder methods add, the
    /// app last.
    fn gunicornd_args(&self) -> Vec<OsString> {
        let mut args = self.args.clone();
        let mut flag = |name: &str, value: Option<PathBuf>| {
            args.push(name.into());
            args.extend(value.map(OsString::from));
        };
        match &self.socket {
            SocketChoice::Explicit => flag("--control-socket", self.socket_path()),
            SocketChoice::Disabled => flag("--no-control-socket", None),
            SocketChoice::Unmanaged | SocketChoice::Default(_) => {}
        }
        if let Some(path) = self.error_log_path() {
            flag("--error-logfile", Some(path));
        }
        if self.daemon {
            flag("-D", None);
            flag("--pid", Some(self.path("app.pid")));
        }
        args.extend(self.app.map(OsString::from));
        args
    }

    /// argv: `[sh -c 'export V=$$; exec "$0" "$@"'] [wrapper...] gunicornd args...`.
    fn argv(&self) -> Vec<OsString> {
        let mut argv: Vec<OsString> = self.wrapper.iter().map(OsString::from).collect();
        argv.push(self.binary.clone().unwrap_or_else(gunicornd_bin).into());
        argv.extend(self.gunicornd_args());
        if self.pid_env.is_empty() {
            return argv;
        }
        let exports: Vec<String> = self.pid_env.iter().map(|v| format!("{v}=$$")).collect();
        let script = format!("export {}; exec \"$0\" \"$@\"", exports.join(" "));
        let mut sh: Vec<OsString> = vec!["/bin/sh".into(), "-c".into(), script.into()];
        sh.extend(argv);
        sh
    }

    /// Whether a TCP `Listening at:` line will come, from the binds unless
    /// told.
    fn expects_tcp(&self) -> bool {
        self.expect_tcp.unwrap_or_else(|| {
            let args: Vec<_> = self.args.iter().map(|a| a.to_string_lossy()).collect();
            let other_binds = args
                .iter()
                .any(|a| a.starts_with("unix:") || a.starts_with("fd://"));
            let tcp_binds = args
                .iter()
                .any(|a| a.starts_with("127.0.0.1:") || a.starts_with("[::1]:"));
            tcp_binds || !other_binds
        })
    }

    /// Starts gunicornd and waits for what this launch expects: its TCP
    /// listener, the control socket, booted workers.
    #[track_caller]
    pub fn start(self) -> Server {
        let stderr_log = self.path("stderr.log");
        let log = fs::File::create(&stderr_log).unwrap();
        let argv = self.argv();
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .process_group(0);
        without_inherited_settings(&mut cmd);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(fd) = self.fd3 {
            pass_as_fd3(&mut cmd, fd);
        }
        let child = cmd.spawn().expect("spawn gunicornd");
        let expects_tcp = self.expects_tcp();
        let socket = self.socket_path();
        let error_log = self.error_log_path();
        let (booted, daemon) = (self.booted, self.daemon);
        let mut srv = Server {
            pid: child.id() as i32,
            launcher: Mutex::new(Some(child)),
            launcher_status: Mutex::new(None),
            daemon,
            stderr_log,
            error_log,
            socket,
            addr: None,
            dir: self.dir,
        };
        if daemon {
            srv.pid = daemon_pid(&srv);
        }
        if expects_tcp {
            // A server that exits instead is returned as it is.
            let listening = wait_for(DEADLINE, || match listening_addr_in(&srv.log()) {
                Some(addr) => Some(Some(addr)),
                None if srv.exited() => Some(None),
                None => None,
            });
            match listening {
                Some(addr) => srv.addr = addr,
                None => panic!("no 'Listening at:' line within {DEADLINE:?}"),
            }
        }
        if let Some(path) = srv.socket.clone() {
            let line = format!("Control socket listening at {}", path.display());
            srv.poll_within(SOCKET_DEADLINE, &format!("the log line {line:?}"), |s| {
                s.log_contains(&line).then_some(())
            });
        }
        if booted > 0 {
            if srv.socket.is_some() {
                srv.wait_pool(booted);
            } else {
                srv.wait_booted(booted);
            }
        }
        srv
    }
}

/// Daemon mode: the launcher must exit 0 once the daemon is ready; the
/// master's pid is then in the pidfile.
#[track_caller]
fn daemon_pid(srv: &Server) -> i32 {
    let launcher = srv.pid;
    let status = poll("the -D launcher to exit once the daemon is ready", || {
        srv.launcher
            .lock()
            .unwrap()
            .as_mut()
            .and_then(|c| c.try_wait().unwrap())
    });
    *srv.launcher_status.lock().unwrap() = Some(status);
    assert!(
        status.success(),
        "the -D launcher exited with {status}; log:\n{}",
        srv.log()
    );
    let pidfile = srv.path("app.pid");
    let pid = poll("the pidfile to name a live process", || {
        let text = fs::read_to_string(&pidfile).ok()?;
        let pid: i32 = text.trim().parse().ok()?;
        process_alive(pid).then_some(pid)
    });
    assert_ne!(
        pid, launcher,
        "-D: the pidfile names the launcher, the master did not detach"
    );
    pid
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
    unsafe { cmd.pre_exec(hook) };
}
