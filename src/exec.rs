//! Fork and exec another program from the master, handing it a chosen set
//! of file descriptors and nothing else.
//!
//! Two things in gunicornd start a program other than itself: the binary
//! upgrade (the master starts a new gunicornd that inherits the listeners)
//! and `command` workers (a program that serves on the listeners). Both go
//! through [`spawn`], which takes an explicit [`ExecSpec`].
//!
//! # What crosses the exec
//!
//! - **fds 0, 1 and 2**, untouched (the new program logs where the master
//!   logs), unless [`ExecSpec::stdout`] or [`ExecSpec::stderr`] name an fd
//!   to put there instead (a worker program's output goes to a pipe the
//!   master reads).
//! - **the fds listed in [`ExecSpec::fds`]**, renumbered to 3, 4, ... in
//!   list order and without close-on-exec, so that the program finds its
//!   sockets by position (systemd's `LISTEN_FDS` convention, and what
//!   `GUNICORN_FD` names after an upgrade).
//! - **exactly the environment in [`ExecSpec::env`]**: the master's own
//!   environment is not inherited implicitly. A caller that wants it builds
//!   the list from [`std::env::vars_os`] and edits it; what the program sees
//!   is then visible in one place.
//! - **the program's own pid**, in the variable that [`ExecSpec::pid_var`]
//!   names, if any: systemd's socket activation wants `LISTEN_PID` to be the
//!   pid of the process that receives the fds, which the parent learns only
//!   from `fork`. It replaces any variable of the same name in
//!   [`ExecSpec::env`].
//! - **argv** as given, including `argv[0]`, and the working directory
//!   ([`ExecSpec::cwd`], or the master's own when `None`).
//! - **the user and groups** of [`ExecSpec::credentials`], when given: the
//!   child sets the supplementary groups, then the group, then the user
//!   (once the user is dropped the group can no longer change), and any
//!   failure is reported like a failed `execve`: a program must not run
//!   with more privileges than it was given.
//! - **a parent-death signal** ([`ExecSpec::parent_death_signal`]), set
//!   after the credentials (a change of credentials clears it); the child
//!   then checks that its parent is still the caller, so that a caller that
//!   died in between does not leave the program running unwatched.
//!
//! # What does not
//!
//! - **Every other fd**: the control socket, the signal pipe, the
//!   scoreboard, worker pipes, log files opened by the master. Most are
//!   close-on-exec already, but one fd without the flag (ours, or one a
//!   library opened) would otherwise keep a socket or pipe alive for the
//!   lifetime of the new program. The child closes them all explicitly.
//! - **The signal mask**: the parent blocks every signal across `fork` (see
//!   below), and a blocked mask survives `execve`; the child empties it.
//! - **Signal dispositions**: `execve` resets caught signals to their
//!   default, but ignored signals stay ignored. The Rust runtime ignores
//!   `SIGPIPE`, and the master may ignore others; a program started with
//!   `SIGPIPE` ignored behaves differently on a closed socket than it was
//!   written to. The child resets every signal to `SIG_DFL`, through the
//!   raw `rt_sigaction` call: the C library's `sigaction` refuses to touch
//!   the real-time signals it reserves for itself, and a process can inherit
//!   those ignored like any other.
//!
//! # The pre-exec command
//!
//! [`ExecSpec::pre_exec`] is gunicorn's `pre_exec` server hook, which
//! gunicorn runs in the forked child just before the exec. The child runs
//! the command to its end as the last thing before its own `execve`: after
//! the fds are placed, the others closed, the signals reset and the
//! directory changed, so the command runs in the program's directory with
//! the program's signal state. Its stdio is the child's fds 0 to 2; it gets
//! neither the passed fds (its own child closes fds 3 and up before
//! exec'ing it: a command that kept a listener open would keep the socket
//! alive after the program exits) nor the program's environment, only
//! [`PreExec::env`]. Like gunicorn, which ignores what its hook returns, the
//! program is exec'd whatever the command's exit status, and also when the
//! command cannot be started at all (no process, or a program that cannot
//! be exec'd: its own child exits with 127).
//!
//! The command may take as long as it likes, and the master must not wait
//! for it: the child therefore closes its report pipe (see below) just
//! before it starts the command, and [`spawn`] returns then. With a
//! pre-exec command, a failure of the final `execve` is no longer reported
//! by [`spawn`]: the child exits with 127 instead, which the caller sees
//! when it reaps the child, as for a program that died right away. Every
//! earlier step is still reported synchronously.
//!
//! # How
//!
//! Everything the child needs (C strings, the argv and envp pointer
//! arrays, the scratch space for moving fds, the room for the pid in the
//! [`pid_var`](ExecSpec::pid_var) entry) is allocated before `fork`; the
//! child writes its pid there in decimal with integer code. The pre-exec
//! command's process is started with the raw `clone` call rather than the
//! C library's `fork`, which runs `atfork` handlers and takes locks.
//! Between `fork` and `execve` the child runs only async-signal-safe libc
//! calls: no allocation, no locks, no logging, no panics. That keeps
//! [`spawn`] correct in a process with other threads (a test runner), whose
//! locks may be held by a thread that does not exist in the child.
//!
//! The parent blocks all signals across `fork` and restores its mask right
//! after; the child resets the dispositions while everything is still
//! blocked, so none of the master's handlers (which write to the master's
//! signal pipe) ever runs in the child.
//!
//! The fds are placed in two passes: first every source is copied above
//! the target range `3..3+n` (`F_DUPFD_CLOEXEC`), then each copy is
//! `dup2`ed down to its target. A source may already sit in the target
//! range, even at its own target, or at another source's target: after the
//! first pass no target holds anything still needed, and every `dup2` is
//! between two different numbers, so it always clears close-on-exec (a
//! `dup2` of an fd onto itself would leave the flag set). Then everything
//! from `3+n` up is closed with `close_range`, or where that call is
//! missing (kernels before 5.9) or refused (some container seccomp
//! filters) by listing `/proc/self/fd` with the raw `getdents64` call,
//! which does not allocate.
//!
//! A failure between `fork` and `execve`, including `execve` itself (up to
//! the pre-exec command, if there is one), is reported synchronously: the
//! child writes the failed step and `errno` to a
//! close-on-exec pipe and exits with 127. The parent reads that pipe until
//! end of file: end of file without a report means `execve` succeeded (the
//! pipe closed with it), and [`spawn`] returns the child's pid; a report
//! means the child failed, and [`spawn`] reaps it (no zombie) and returns an
//! [`ExecError`] naming the step and the error. Where another thread forks
//! at the same time (not in the single-threaded master, but in a test
//! runner), its child holds a copy of the pipe until it execs or exits, which
//! delays the answer but does not change it.
//!
//! A child that `spawn` returns successfully is the caller's to reap, like
//! any worker. If a signal kills the child in the instant after its mask is
//! emptied and before `execve`, the parent also sees end of file: the
//! caller then learns of it from the exit status, as for a program that
//! died right away.

use std::ffi::{CString, OsString};
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use libc::{c_char, c_int, c_uint};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult, Pid};

/// The first fd number that [`ExecSpec::fds`] fill.
const FIRST_PASSED_FD: c_int = 3;

/// What to run, with what: see the [module documentation](self) for what the
/// program inherits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecSpec {
    /// The path handed to `execve`: no `PATH` search. A relative path is
    /// resolved after the change to [`cwd`](Self::cwd).
    pub program: PathBuf,
    /// The whole argv, `argv[0]` included; it must not be empty.
    pub args: Vec<OsString>,
    /// The whole environment of the program, in this order. Names must be
    /// non-empty and free of `=`.
    pub env: Vec<(OsString, OsString)>,
    /// The working directory of the program; `None` keeps the caller's.
    pub cwd: Option<PathBuf>,
    /// Fds of the caller that the program receives as 3, 4, ... in this
    /// order. The caller's fds stay as they are (close-on-exec or not); the
    /// same fd may be listed twice.
    pub fds: Vec<RawFd>,
    /// The name of a variable that the program finds set to its own pid
    /// (decimal), e.g. `LISTEN_PID`. It wins over [`env`](Self::env): an
    /// entry of `env` with the same name is replaced in place (the first
    /// one; any later ones are dropped), and without one the variable comes
    /// last. The name must be non-empty and free of `=`.
    pub pid_var: Option<OsString>,
    /// A command the child runs to its end just before it execs the program
    /// (see [the module documentation](self#the-pre-exec-command)).
    pub pre_exec: Option<PreExec>,
    /// An fd of the caller that the program gets as its fd 1 (stdout);
    /// `None` leaves fd 1 as it is.
    pub stdout: Option<RawFd>,
    /// The same for fd 2 (stderr); it may be the same fd as `stdout`.
    pub stderr: Option<RawFd>,
    /// The user and groups the program runs as; `None` keeps the caller's.
    pub credentials: Option<Credentials>,
    /// The signal the program gets when the caller exits
    /// (`PR_SET_PDEATHSIG`).
    pub parent_death_signal: Option<Signal>,
}

/// Who the program runs as (see [`ExecSpec::credentials`]). Each part left
/// `None` stays as it is; changing the groups or the user takes privilege.
/// The groups are given, not looked up: the child cannot read the group
/// database (that would not be async-signal-safe), so the caller resolves
/// them (e.g. with `getgrouplist`) before calling [`spawn`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// The supplementary groups (`setgroups`), set first.
    pub groups: Option<Vec<u32>>,
    /// The real, effective and saved group (`setgid` as root).
    pub gid: Option<u32>,
    /// The real, effective and saved user (`setuid` as root), set last.
    pub uid: Option<u32>,
}

/// The command of [`ExecSpec::pre_exec`]: what to run, with what. It gets
/// the child's fds 0 to 2 and nothing else.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PreExec {
    /// The path handed to `execve`: no `PATH` search.
    pub program: PathBuf,
    /// The whole argv, `argv[0]` included; it must not be empty.
    pub args: Vec<OsString>,
    /// The whole environment of the command (the program's
    /// [`ExecSpec::env`] is not added). Names must be non-empty and free of
    /// `=`.
    pub env: Vec<(OsString, OsString)>,
}

impl PreExec {
    /// `/bin/sh -c COMMAND`, the way server hooks run (see
    /// [`crate::hooks`]), with exactly `env`.
    pub fn shell(command: &str, env: Vec<(OsString, OsString)>) -> PreExec {
        PreExec {
            program: "/bin/sh".into(),
            args: vec!["/bin/sh".into(), "-c".into(), command.into()],
            env,
        }
    }
}

/// The step of [`spawn`] that failed, as reported in an [`ExecError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The spec cannot be passed to `execve` (a NUL byte, an empty argv, an
    /// `=` in a variable name, a negative fd). Nothing was forked.
    Prepare,
    /// Creating the pipe on which the child reports failures.
    Pipe,
    /// `fork` itself.
    Fork,
    /// In the child: moving the listed fds to 3, 4, ...
    PlaceFds,
    /// In the child: closing the fds that are not passed.
    CloseFds,
    /// In the child: emptying the signal mask.
    SignalMask,
    /// In the child: changing to [`ExecSpec::cwd`].
    ChangeDir,
    /// In the child: `execve`.
    Exec,
    /// In the parent: reading the child's report. The child was killed
    /// and reaped.
    Report,
    /// In the child: putting [`ExecSpec::stdout`] and [`ExecSpec::stderr`]
    /// at fds 1 and 2.
    Stdio,
    /// In the child: switching to [`ExecSpec::credentials`].
    Credentials,
    /// In the child: setting [`ExecSpec::parent_death_signal`], or the
    /// caller was gone by then.
    ParentDeathSignal,
}

impl Step {
    /// Steps in the child travel through the report pipe as a number.
    const CHILD_STEPS: [Step; 8] = [
        Step::PlaceFds,
        Step::CloseFds,
        Step::SignalMask,
        Step::ChangeDir,
        Step::Exec,
        Step::Stdio,
        Step::Credentials,
        Step::ParentDeathSignal,
    ];

    fn code(self) -> u32 {
        Self::CHILD_STEPS
            .iter()
            .position(|s| *s == self)
            .map_or(u32::MAX, |i| i as u32)
    }

    fn from_code(code: u32) -> Option<Step> {
        Self::CHILD_STEPS.get(code as usize).copied()
    }
}

/// Why [`spawn`] failed: the program, the [`Step`] that failed and the
/// underlying error (an OS error with its errno for every step but
/// [`Step::Prepare`]).
///
/// Its `Display` is one line meant for the error log, e.g.
/// `cannot execute /usr/bin/x: No such file or directory (os error 2)` or
/// `cannot execute /usr/bin/x: cannot change to directory /srv/app: Permission denied (os error 13)`.
#[derive(Debug)]
pub struct ExecError {
    program: PathBuf,
    cwd: Option<PathBuf>,
    /// [`ExecSpec::credentials`] as words, for [`Step::Credentials`].
    credentials: String,
    step: Step,
    error: io::Error,
}

impl ExecError {
    fn new(spec: &ExecSpec, step: Step, error: io::Error) -> ExecError {
        ExecError {
            program: spec.program.clone(),
            cwd: spec.cwd.clone(),
            credentials: spec
                .credentials
                .as_ref()
                .map_or_else(String::new, Credentials::describe),
            step,
            error,
        }
    }

    /// The program that was to be executed.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// The step that failed.
    pub fn step(&self) -> Step {
        self.step
    }

    /// The errno of the failure, when it was an OS error.
    pub fn raw_os_error(&self) -> Option<i32> {
        self.error.raw_os_error()
    }
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let program = self.program.display();
        let error = &self.error;
        match self.step {
            Step::Prepare | Step::Exec => write!(f, "cannot execute {program}: {error}"),
            Step::Fork => write!(f, "cannot fork to execute {program}: {error}"),
            Step::Pipe => write!(
                f,
                "cannot execute {program}: cannot create the report pipe: {error}"
            ),
            Step::PlaceFds => write!(
                f,
                "cannot execute {program}: cannot place the passed fds at 3 and up: {error}"
            ),
            Step::CloseFds => write!(
                f,
                "cannot execute {program}: cannot close the fds that are not passed: {error}"
            ),
            Step::SignalMask => write!(
                f,
                "cannot execute {program}: cannot empty the signal mask: {error}"
            ),
            Step::ChangeDir => {
                let dir = self.cwd.as_deref().unwrap_or(Path::new("?"));
                write!(
                    f,
                    "cannot execute {program}: cannot change to directory {}: {error}",
                    dir.display()
                )
            }
            Step::Report => write!(
                f,
                "cannot execute {program}: cannot read the child's report: {error}"
            ),
            Step::Stdio => write!(
                f,
                "cannot execute {program}: cannot place its stdout and stderr: {error}"
            ),
            Step::Credentials => write!(
                f,
                "cannot execute {program}: cannot switch to {}: {error}",
                self.credentials
            ),
            Step::ParentDeathSignal => write!(
                f,
                "cannot execute {program}: cannot set the parent-death signal: {error}"
            ),
        }
    }
}

impl std::error::Error for ExecError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Fork, set the child up as [`ExecSpec`] says and exec the program.
///
/// Returns the pid of the running program once `execve` has succeeded; the
/// caller reaps it. On failure nothing is left behind: a child that could
/// not exec has been reaped. See the [module documentation](self).
pub fn spawn(spec: &ExecSpec) -> Result<Pid, ExecError> {
    let mut child = Prepared::new(spec).map_err(|e| ExecError::new(spec, Step::Prepare, e))?;
    let (report_read, report_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| ExecError::new(spec, Step::Pipe, e.into()))?;

    let mut old_mask = SigSet::empty();
    // Cannot fail with valid arguments.
    let _ = pthread_sigmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut old_mask),
    );
    // SAFETY: the child runs only `Prepared::exec`, which makes nothing but
    // async-signal-safe calls on memory allocated before the fork, so it is
    // sound even if other threads held locks at the time of the fork.
    let forked = unsafe { fork() };
    if let Ok(ForkResult::Child) = forked {
        // SAFETY: as above; it never returns.
        unsafe { child.exec(report_write.as_raw_fd()) }
    }
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old_mask), None);
    drop(report_write);
    let pid = match forked {
        Ok(ForkResult::Parent { child }) => child,
        Ok(ForkResult::Child) => unreachable!("the child execs or exits"),
        Err(e) => return Err(ExecError::new(spec, Step::Fork, e.into())),
    };
    match read_report(&report_read) {
        Ok(None) => Ok(pid),
        Ok(Some((step, errno))) => {
            reap(pid);
            Err(ExecError::new(
                spec,
                step,
                io::Error::from_raw_os_error(errno),
            ))
        }
        Err(e) => {
            // Whether the exec happened is unknown, and a caller that gets an
            // error does not track the pid: do not leave it running.
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            reap(pid);
            Err(ExecError::new(spec, Step::Report, e))
        }
    }
}

impl Credentials {
    /// `user 65534, group 65534, groups [65534]`: what the child was to
    /// switch to, for [`ExecError`].
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(uid) = self.uid {
            parts.push(format!("user {uid}"));
        }
        if let Some(gid) = self.gid {
            parts.push(format!("group {gid}"));
        }
        if let Some(groups) = &self.groups {
            parts.push(format!("groups {groups:?}"));
        }
        parts.join(", ")
    }
}

/// The size of the child's report: the step code and the errno.
const REPORT_LEN: usize = 8;

/// `None` on end of file with nothing written: the exec succeeded.
fn read_report(pipe: &OwnedFd) -> io::Result<Option<(Step, i32)>> {
    let mut buf = [0u8; REPORT_LEN];
    let mut got = 0;
    while got < REPORT_LEN {
        match nix::unistd::read(pipe, &mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            // The parent's signal handlers run again; a SIGCHLD is likely.
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    match got {
        0 => Ok(None),
        REPORT_LEN => {
            let code = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
            let errno = i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]);
            let step = Step::from_code(code).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unknown step {code} in the report"),
                )
            })?;
            Ok(Some((step, errno)))
        }
        n => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("a report of {n} bytes instead of {REPORT_LEN}"),
        )),
    }
}

/// Wait for a child that has exited or is about to.
fn reap(pid: Pid) {
    while let Err(Errno::EINTR) = waitpid(pid, None) {}
}

/// Everything the child uses, built before `fork` so that the child does not
/// allocate.
struct Prepared {
    program: CString,
    /// Owns the strings `argv` points to.
    _args: Vec<CString>,
    argv: Vec<*const c_char>,
    /// Owns the strings `envp` points to, but for the pid entry.
    _env: Vec<CString>,
    envp: Vec<*const c_char>,
    /// The [`ExecSpec::pid_var`] entry, which `envp` points to as well.
    pid_entry: Option<PidEntry>,
    cwd: Option<CString>,
    sources: Vec<c_int>,
    /// Scratch space for the sources' copies above the target range.
    moved: Vec<c_int>,
    /// `3 + sources.len()`: the first fd that is closed.
    first_closed: c_int,
    /// Where the last-resort close loop stops (the fd soft limit).
    fd_limit: c_int,
    last_signal: c_int,
    empty_mask: libc::sigset_t,
    pre_exec: Option<PreparedCommand>,
    /// fds 1 and 2 with their sources, and scratch space for the sources'
    /// copies (placed like the passed fds).
    stdio: [(c_int, Option<c_int>); 2],
    stdio_moved: [c_int; 2],
    groups: Option<Vec<libc::gid_t>>,
    gid: Option<libc::gid_t>,
    uid: Option<libc::uid_t>,
    parent_death_signal: Option<c_int>,
    /// The caller's pid, which the child's parent must still be once the
    /// parent-death signal is set.
    parent: libc::pid_t,
}

/// The most digits a pid has in decimal: `pid_t` is 32 bits.
const PID_DIGITS: usize = 10;

/// `NAME=` followed by room for any pid and its NUL, filled in by the child.
struct PidEntry {
    /// Its heap block is what `envp` points to; it never moves.
    bytes: Vec<u8>,
    /// Where the digits start: the length of `NAME=`.
    digits_at: usize,
}

impl PidEntry {
    fn new(name: &[u8]) -> PidEntry {
        let mut bytes = [name, b"="].concat();
        let digits_at = bytes.len();
        bytes.resize(digits_at + PID_DIGITS + 1, 0);
        PidEntry { bytes, digits_at }
    }

    /// The entry as `envp` holds it. `as_mut_ptr` creates no reference, so
    /// the pointer stays valid when [`set`](Self::set) writes through
    /// another one.
    fn as_ptr(&mut self) -> *const c_char {
        self.bytes.as_mut_ptr().cast_const().cast()
    }

    /// Write `pid` into the entry. Async-signal-safe: no allocation, and
    /// the digits always fit.
    fn set(&mut self, pid: u32) {
        let digits = decimal(pid);
        // SAFETY: `bytes` holds `digits_at + PID_DIGITS + 1` bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(
                digits.as_ptr(),
                self.bytes.as_mut_ptr().add(self.digits_at),
                digits.len(),
            );
        }
    }
}

/// `n` in decimal followed by NULs.
fn decimal(n: u32) -> [u8; PID_DIGITS + 1] {
    let mut len = 1;
    let mut rest = n / 10;
    while rest > 0 {
        len += 1;
        rest /= 10;
    }
    let mut out = [0u8; PID_DIGITS + 1];
    let mut rest = n;
    // `len` is at most 10, the digits of `u32::MAX`.
    for slot in out.iter_mut().take(len).rev() {
        *slot = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out
}

/// The [`PreExec`] command, ready for `execve`.
struct PreparedCommand {
    program: CString,
    _args: Vec<CString>,
    argv: Vec<*const c_char>,
    _env: Vec<CString>,
    envp: Vec<*const c_char>,
}

impl PreparedCommand {
    fn new(command: &PreExec) -> io::Result<PreparedCommand> {
        let program = c_string(command.program.as_os_str().as_bytes(), || {
            "the pre_exec program path".to_string()
        })?;
        let args = argv(&command.args, "pre_exec ")?;
        let env = environment(&command.env, None, "pre_exec ")?;
        Ok(PreparedCommand {
            program,
            argv: pointers(&args),
            _args: args,
            envp: pointers(&env),
            _env: env,
        })
    }
}

/// The kernel's `sigset_t` in bytes (`_NSIG / 8`), which `rt_sigaction`
/// insists on; the C library's `sigset_t` is larger.
#[cfg(any(
    target_arch = "mips",
    target_arch = "mips32r6",
    target_arch = "mips64",
    target_arch = "mips64r6"
))]
const KERNEL_SIGSET_BYTES: usize = 16;
#[cfg(not(any(
    target_arch = "mips",
    target_arch = "mips32r6",
    target_arch = "mips64",
    target_arch = "mips64r6"
)))]
const KERNEL_SIGSET_BYTES: usize = 8;

/// The kernel's `struct sigaction` for `SIG_DFL`: all zero (handler 0, no
/// flags, empty mask) whatever the architecture's field order, and larger
/// than any architecture's struct.
const DEFAULT_ACTION: [u64; 8] = [0; 8];

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what)
}

fn c_string(bytes: &[u8], what: impl FnOnce() -> String) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| invalid(format!("{} contains a NUL byte", what())))
}

/// A null-terminated array of pointers into `strings`.
fn pointers(strings: &[CString]) -> Vec<*const c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// Check a variable name: non-empty, no `=` (and no NUL, checked with the
/// entry).
fn check_name(name: &[u8], what: &str) -> io::Result<()> {
    if name.is_empty() || name.contains(&b'=') {
        return Err(invalid(format!(
            "{what}environment variable name {:?} is empty or contains '='",
            String::from_utf8_lossy(name)
        )));
    }
    Ok(())
}

/// `args` as C strings; `what` prefixes the errors.
fn argv(args: &[OsString], what: &str) -> io::Result<Vec<CString>> {
    if args.is_empty() {
        return Err(invalid(format!(
            "{what}argv is empty (argv[0] is required)"
        )));
    }
    args.iter()
        .enumerate()
        .map(|(i, a)| c_string(a.as_bytes(), || format!("{what}argv[{i}]")))
        .collect()
}

/// `NAME=value` entries of `env`, leaving out the variable `skip`; `what`
/// prefixes the errors.
fn environment(
    env: &[(OsString, OsString)],
    skip: Option<&[u8]>,
    what: &str,
) -> io::Result<Vec<CString>> {
    env.iter()
        .filter(|(name, _)| Some(name.as_bytes()) != skip)
        .map(|(name, value)| {
            let name = name.as_bytes();
            check_name(name, what)?;
            let entry = [name, b"=", value.as_bytes()].concat();
            c_string(&entry, || {
                format!(
                    "{what}environment variable {}",
                    String::from_utf8_lossy(name)
                )
            })
        })
        .collect()
}

impl Prepared {
    fn new(spec: &ExecSpec) -> io::Result<Prepared> {
        let program = c_string(spec.program.as_os_str().as_bytes(), || {
            "the program path".to_string()
        })?;
        let args = argv(&spec.args, "")?;
        let pid_name = spec.pid_var.as_ref().map(|name| name.as_bytes());
        if let Some(name) = pid_name {
            check_name(name, "pid_var ")?;
            c_string(name, || "the pid_var name".into())?;
        }
        let env = environment(&spec.env, pid_name, "")?;
        let mut envp = pointers(&env);
        let mut pid_entry = pid_name.map(PidEntry::new);
        if let (Some(name), Some(entry)) = (pid_name, pid_entry.as_mut()) {
            // Where the first variable of that name was, else last (before
            // the terminating null).
            let at = spec
                .env
                .iter()
                .take_while(|(other, _)| other.as_bytes() != name)
                .count();
            envp.insert(at, entry.as_ptr());
        }
        let cwd = spec
            .cwd
            .as_ref()
            .map(|dir| c_string(dir.as_os_str().as_bytes(), || "the directory".into()))
            .transpose()?;
        if let Some(fd) = spec
            .fds
            .iter()
            .chain(spec.stdout.iter())
            .chain(spec.stderr.iter())
            .find(|fd| **fd < 0)
        {
            return Err(invalid(format!("fd {fd} cannot be passed")));
        }
        let credentials = spec.credentials.clone().unwrap_or_default();
        let first_closed = c_int::try_from(spec.fds.len())
            .ok()
            .and_then(|n| n.checked_add(FIRST_PASSED_FD))
            .ok_or_else(|| invalid(format!("{} fds are too many", spec.fds.len())))?;
        let fd_limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map_or(c_int::MAX, |(soft, _)| {
                c_int::try_from(soft).unwrap_or(c_int::MAX)
            });
        // SAFETY: sigemptyset initialises the set it is given.
        let empty_mask = unsafe {
            let mut mask: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut mask);
            mask
        };
        let pre_exec = spec
            .pre_exec
            .as_ref()
            .map(PreparedCommand::new)
            .transpose()?;
        Ok(Prepared {
            program,
            argv: pointers(&args),
            _args: args,
            envp,
            _env: env,
            pid_entry,
            cwd,
            sources: spec.fds.clone(),
            moved: vec![-1; spec.fds.len()],
            first_closed,
            fd_limit,
            last_signal: libc::SIGRTMAX(),
            empty_mask,
            pre_exec,
            stdio: [(1, spec.stdout), (2, spec.stderr)],
            stdio_moved: [-1; 2],
            groups: credentials.groups,
            gid: credentials.gid,
            uid: credentials.uid,
            parent_death_signal: spec.parent_death_signal.map(|s| s as c_int),
            // SAFETY: getpid has no preconditions.
            parent: unsafe { libc::getpid() },
        })
    }

    /// The child's side: set up and exec, or report and exit.
    ///
    /// # Safety
    ///
    /// Call only in the child of a `fork`, with `report` the write end of the
    /// close-on-exec report pipe. Only async-signal-safe calls follow, and
    /// nothing here allocates or can panic.
    unsafe fn exec(&mut self, report: c_int) -> ! {
        if let Some(entry) = &mut self.pid_entry {
            // A pid is positive.
            entry.set(libc::getpid() as u32);
        }
        // Everything is still blocked: no signal can reach a handler
        // inherited from the parent before it is gone. SIGKILL and SIGSTOP
        // cannot be changed (EINVAL), and need not be.
        for signal in 1..=self.last_signal {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signal,
                DEFAULT_ACTION.as_ptr(),
                std::ptr::null_mut::<libc::c_void>(),
                KERNEL_SIGSET_BYTES,
            );
        }

        // The report pipe must survive the renumbering and the closing.
        let mut report = report;
        if report < self.first_closed {
            let high = libc::fcntl(report, libc::F_DUPFD_CLOEXEC, self.first_closed);
            if high < 0 {
                fail(report, Step::PlaceFds);
            }
            report = high;
        }
        for (source, copy) in self.sources.iter().zip(self.moved.iter_mut()) {
            *copy = libc::fcntl(*source, libc::F_DUPFD_CLOEXEC, self.first_closed);
            if *copy < 0 {
                fail(report, Step::PlaceFds);
            }
        }
        // stdout and stderr the same way: their sources may sit anywhere,
        // in the target range too, so they are copied out of it first.
        for ((_, source), copy) in self.stdio.iter().zip(self.stdio_moved.iter_mut()) {
            if let Some(source) = source {
                *copy = libc::fcntl(*source, libc::F_DUPFD_CLOEXEC, self.first_closed);
                if *copy < 0 {
                    fail(report, Step::Stdio);
                }
            }
        }
        for ((target, source), copy) in self.stdio.iter().zip(self.stdio_moved.iter()) {
            if source.is_some() && libc::dup2(*copy, *target) < 0 {
                fail(report, Step::Stdio);
            }
        }
        // Every copy sits at or above `first_closed`, above its target: the
        // dup2 makes a new fd, without close-on-exec.
        for (target, copy) in (FIRST_PASSED_FD..).zip(self.moved.iter()) {
            if libc::dup2(*copy, target) < 0 {
                fail(report, Step::PlaceFds);
            }
        }
        if let Err(errno) = close_from(self.first_closed, report, self.fd_limit) {
            fail_with(report, Step::CloseFds, errno);
        }

        if let Some(dir) = &self.cwd {
            if libc::chdir(dir.as_ptr()) < 0 {
                fail(report, Step::ChangeDir);
            }
        }
        // The groups before the group, the group before the user: once the
        // user is dropped, neither may change any more.
        if let Some(groups) = &self.groups {
            if libc::setgroups(groups.len(), groups.as_ptr()) < 0 {
                fail(report, Step::Credentials);
            }
        }
        if let Some(gid) = self.gid {
            if libc::setgid(gid) < 0 {
                fail(report, Step::Credentials);
            }
        }
        if let Some(uid) = self.uid {
            if libc::setuid(uid) < 0 {
                fail(report, Step::Credentials);
            }
        }
        // After the credentials: changing them clears this setting.
        if let Some(signal) = self.parent_death_signal {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) < 0 {
                fail(report, Step::ParentDeathSignal);
            }
            // The caller may have died before the setting took: the signal
            // then never comes, so do not run at all.
            if libc::getppid() != self.parent {
                fail_with(report, Step::ParentDeathSignal, libc::ESRCH);
            }
        }
        if libc::sigprocmask(libc::SIG_SETMASK, &self.empty_mask, std::ptr::null_mut()) < 0 {
            fail(report, Step::SignalMask);
        }
        if let Some(command) = &self.pre_exec {
            // The parent stops waiting here (see the module documentation):
            // a failed execve below is then only the exit status 127.
            libc::close(report);
            report = -1;
            run_to_end(command, self.fd_limit);
        }
        libc::execve(
            self.program.as_ptr(),
            self.argv.as_ptr(),
            self.envp.as_ptr(),
        );
        fail(report, Step::Exec)
    }
}

/// Run the pre-exec command and wait for it to end, whatever the outcome
/// (in the child). Async-signal-safe.
unsafe fn run_to_end(command: &PreparedCommand, fd_limit: c_int) {
    let pid = clone_process();
    if pid < 0 {
        // No process: the program is exec'd all the same.
        return;
    }
    if pid == 0 {
        // The passed fds are the program's, not the command's. If they
        // cannot all be closed, the command does not run.
        if close_from(FIRST_PASSED_FD, -1, fd_limit).is_ok() {
            libc::execve(
                command.program.as_ptr(),
                command.argv.as_ptr(),
                command.envp.as_ptr(),
            );
        }
        libc::_exit(127);
    }
    let mut status = 0;
    // Every signal is at its default here, so EINTR is unlikely, but it
    // would not mean the command has ended.
    while libc::waitpid(pid, &mut status, 0) < 0 && errno() == libc::EINTR {}
}

/// A `fork` by the raw `clone` call: the C library's `fork` runs `atfork`
/// handlers and takes locks, which is not async-signal-safe. The new
/// process shares nothing with this one and reports its end with SIGCHLD.
/// Returns the pid (0 in the new process) or -1.
unsafe fn clone_process() -> libc::pid_t {
    let flags = libc::SIGCHLD as libc::c_ulong;
    let no_stack: libc::c_ulong = 0;
    // A null stack means the new process goes on on a copy of this one's.
    // s390x takes the stack first, the flags second; the others the reverse.
    // SPARC's raw call returns the parent's pid in both processes (the C
    // library tells them apart by a second register), so it uses `fork`.
    #[cfg(target_arch = "s390x")]
    let pid = libc::syscall(libc::SYS_clone, no_stack, flags, 0, 0, 0) as libc::pid_t;
    #[cfg(any(target_arch = "sparc", target_arch = "sparc64"))]
    let pid = {
        let _ = (flags, no_stack);
        libc::fork()
    };
    #[cfg(not(any(target_arch = "s390x", target_arch = "sparc", target_arch = "sparc64")))]
    let pid = libc::syscall(libc::SYS_clone, flags, no_stack, 0, 0, 0) as libc::pid_t;
    pid
}

fn errno() -> c_int {
    // SAFETY: reads the calling thread's errno.
    unsafe { *libc::__errno_location() }
}

/// Report the current errno for `step` and exit (in the child).
unsafe fn fail(report: c_int, step: Step) -> ! {
    fail_with(report, step, errno())
}

unsafe fn fail_with(report: c_int, step: Step, errno: c_int) -> ! {
    let mut buf = [0u8; REPORT_LEN];
    let (code, err) = buf.split_at_mut(4);
    code.copy_from_slice(&step.code().to_ne_bytes());
    err.copy_from_slice(&errno.to_ne_bytes());
    // A pipe write this small is atomic; no handler is left to interrupt it.
    libc::write(report, buf.as_ptr().cast(), buf.len());
    libc::_exit(127)
}

/// Close every fd from `first` up, except `keep`. Async-signal-safe.
unsafe fn close_from(first: c_int, keep: c_int, fd_limit: c_int) -> Result<(), c_int> {
    // With valid arguments close_range fails only where it is missing
    // (ENOSYS) or refused by a seccomp filter (EPERM in some containers).
    match close_by_range(first, keep) {
        Err(_) => close_by_listing(first, keep, fd_limit),
        Ok(()) => Ok(()),
    }
}

/// `close_range(2)` (Linux 5.9), through `syscall` because not every C
/// library wraps it.
unsafe fn close_by_range(first: c_int, keep: c_int) -> Result<(), c_int> {
    let close_range = |low: c_int, high: c_uint| {
        if libc::syscall(libc::SYS_close_range, low as c_uint, high, 0 as c_uint) < 0 {
            Err(errno())
        } else {
            Ok(())
        }
    };
    if keep >= first {
        if keep > first {
            close_range(first, (keep - 1) as c_uint)?;
        }
        close_range(keep + 1, c_uint::MAX)
    } else {
        close_range(first, c_uint::MAX)
    }
}

/// Close what `/proc/self/fd` lists, read with the raw `getdents64` call
/// into a buffer on the stack (`opendir` would allocate). Closing entries
/// while reading is safe here: the kernel positions this directory by fd
/// number. Without `/proc`, fall back to [`close_up_to`].
unsafe fn close_by_listing(first: c_int, keep: c_int, fd_limit: c_int) -> Result<(), c_int> {
    let dir = libc::open(
        c"/proc/self/fd".as_ptr(),
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
    );
    if dir < 0 {
        close_up_to(first, keep, fd_limit);
        return Ok(());
    }
    // `linux_dirent64`: u64 inode, i64 offset, u16 record length, u8 type,
    // then the NUL-terminated name.
    const NAME_AT: usize = 19;
    let mut buf = [0u8; 2048];
    loop {
        let len = libc::syscall(libc::SYS_getdents64, dir, buf.as_mut_ptr(), buf.len());
        if len < 0 {
            let e = errno();
            libc::close(dir);
            return Err(e);
        }
        if len == 0 {
            break;
        }
        let Some(entries) = buf.get(..len as usize) else {
            break;
        };
        let mut rest = entries;
        while let (Some(&[lo, hi]), Some(name)) = (rest.get(16..18), rest.get(NAME_AT..)) {
            if let Some(fd) = parse_fd(name) {
                if fd >= first && fd != keep && fd != dir {
                    libc::close(fd);
                }
            }
            let record = usize::from(u16::from_ne_bytes([lo, hi]));
            match rest.get(record..) {
                Some(next) if record > 0 => rest = next,
                _ => break,
            }
        }
    }
    libc::close(dir);
    Ok(())
}

/// The fd number a `/proc/self/fd` entry names (`.` and `..` name none).
fn parse_fd(name: &[u8]) -> Option<c_int> {
    let digits = name.split(|b| *b == 0).next()?;
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0 as c_int, |fd, b| {
        if b.is_ascii_digit() {
            fd.checked_mul(10)?.checked_add(c_int::from(b - b'0'))
        } else {
            None
        }
    })
}

/// The last resort: try every number below the fd limit.
unsafe fn close_up_to(first: c_int, keep: c_int, fd_limit: c_int) {
    for fd in first..fd_limit {
        if fd != keep {
            libc::close(fd);
        }
    }
}

// The fallbacks for old kernels cannot be reached through `spawn` on a new
// one, so they are tested directly, each in a forked child (closing fds in
// the test process itself would break the test runner).
#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::wait::WaitStatus;

    fn is_open(fd: c_int) -> bool {
        // SAFETY: F_GETFD only queries.
        unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
    }

    /// Open fds, fork, close from the lowest but one with `close`, and have
    /// the child report by exit status whether exactly the right ones went.
    fn check_in_child(close: unsafe fn(c_int, c_int, c_int) -> Result<(), c_int>) {
        let files: Vec<std::fs::File> = (0..6)
            .map(|_| std::fs::File::open("/dev/null").unwrap())
            .collect();
        let mut fds: Vec<c_int> = files.iter().map(|f| f.as_raw_fd()).collect();
        fds.sort();
        let (first, keep) = (fds[1], fds[3]);
        let limit = fds[5] + 1;
        // SAFETY: the child makes only async-signal-safe calls and exits.
        match unsafe { fork() }.unwrap() {
            ForkResult::Child => unsafe {
                let closed = close(first, keep, limit).is_ok();
                let right = fds
                    .iter()
                    .all(|&fd| is_open(fd) == (fd < first || fd == keep));
                libc::_exit(if closed && right { 0 } else { 1 })
            },
            ForkResult::Parent { child } => {
                assert_eq!(waitpid(child, None).unwrap(), WaitStatus::Exited(child, 0));
            }
        }
    }

    #[test]
    fn listing_proc_closes_all_but_the_kept_fd() {
        check_in_child(close_by_listing);
    }

    #[test]
    fn the_close_loop_closes_all_but_the_kept_fd() {
        unsafe fn close(first: c_int, keep: c_int, limit: c_int) -> Result<(), c_int> {
            close_up_to(first, keep, limit);
            Ok(())
        }
        check_in_child(close);
    }

    #[test]
    fn close_range_closes_all_but_the_kept_fd() {
        unsafe fn close(first: c_int, keep: c_int, _: c_int) -> Result<(), c_int> {
            close_by_range(first, keep)
        }
        check_in_child(close);
    }

    #[test]
    fn fd_names_parse() {
        assert_eq!(parse_fd(b"17\0"), Some(17));
        assert_eq!(parse_fd(b"0\0\0\0"), Some(0));
        assert_eq!(parse_fd(b".\0"), None);
        assert_eq!(parse_fd(b"..\0"), None);
        assert_eq!(parse_fd(b"\0"), None);
        assert_eq!(parse_fd(b"99999999999\0"), None);
    }

    #[test]
    fn steps_round_trip_through_their_code() {
        for step in Step::CHILD_STEPS {
            assert_eq!(Step::from_code(step.code()), Some(step));
        }
        assert_eq!(Step::from_code(Step::Fork.code()), None);
    }

    #[test]
    fn an_invalid_spec_fails_before_forking() {
        let spec = ExecSpec {
            program: "/bin/true".into(),
            args: vec!["true".into(), "a\0b".into()],
            ..ExecSpec::default()
        };
        let err = spawn(&spec).unwrap_err();
        assert_eq!(err.step(), Step::Prepare);
        assert_eq!(
            err.to_string(),
            "cannot execute /bin/true: argv[1] contains a NUL byte"
        );
        let no_argv = ExecSpec {
            program: "/bin/true".into(),
            ..ExecSpec::default()
        };
        assert_eq!(spawn(&no_argv).unwrap_err().step(), Step::Prepare);
        let bad_name = ExecSpec {
            program: "/bin/true".into(),
            args: vec!["true".into()],
            env: vec![("A=B".into(), "c".into())],
            ..ExecSpec::default()
        };
        assert_eq!(spawn(&bad_name).unwrap_err().step(), Step::Prepare);
        let bad_pid_var = ExecSpec {
            program: "/bin/true".into(),
            args: vec!["true".into()],
            pid_var: Some("LISTEN=PID".into()),
            ..ExecSpec::default()
        };
        assert_eq!(
            spawn(&bad_pid_var).unwrap_err().to_string(),
            "cannot execute /bin/true: pid_var environment variable name \"LISTEN=PID\" is empty \
             or contains '='"
        );
        let bad_pre_exec = ExecSpec {
            program: "/bin/true".into(),
            args: vec!["true".into()],
            pre_exec: Some(PreExec {
                program: "/bin/true".into(),
                ..PreExec::default()
            }),
            ..ExecSpec::default()
        };
        assert_eq!(
            spawn(&bad_pre_exec).unwrap_err().to_string(),
            "cannot execute /bin/true: pre_exec argv is empty (argv[0] is required)"
        );
    }

    #[test]
    fn pids_fit_their_entry_in_decimal() {
        assert_eq!(&decimal(0), b"0\0\0\0\0\0\0\0\0\0\0");
        assert_eq!(&decimal(7)[..2], b"7\0");
        assert_eq!(&decimal(4_194_304)[..8], b"4194304\0");
        assert_eq!(&decimal(u32::MAX), b"4294967295\0");

        let mut entry = PidEntry::new(b"LISTEN_PID");
        let at = entry.as_ptr();
        entry.set(12345);
        // SAFETY: the entry is NUL-terminated.
        let text = unsafe { std::ffi::CStr::from_ptr(at) };
        assert_eq!(text.to_bytes(), b"LISTEN_PID=12345");
        entry.set(7);
        let text = unsafe { std::ffi::CStr::from_ptr(at) };
        assert_eq!(text.to_bytes(), b"LISTEN_PID=7");
    }
}
