//! `gunicornd::exec::spawn` seen from the program it starts: a shell that
//! writes down its fds, signal state, environment and directory, and writes
//! a letter into each pipe it is told to.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use gunicornd::exec::{spawn, ExecSpec, PreExec, Step};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{
    pthread_sigmask, sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal,
};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Tests take turns, so that while one runs, the only children of this
/// process are its own: the zombie checks look at all of them.
static TURN: Mutex<()> = Mutex::new(());

fn turn() -> MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

const PATH: &str = "/usr/bin:/bin";

/// Run by `/bin/sh -c` with the output directory and then `LETTER:FD` pairs.
/// The observations look at the shell's own `/proc` entries, which are what
/// `execve` produced: dash opens nothing of its own before running a
/// command. Each runs in a subshell because dash applies the redirection of
/// a simple command in the shell itself before forking (it would show up in
/// the fd list), but that of a subshell only in the subshell. Pipes are
/// written through `/proc/$$/fd/N` because dash redirects only fds 0 to 9.
const OBSERVE: &str = r#"set -e
out=$1; shift
(ls -l /proc/$$/fd) > "$out/fds"
(grep -E 'SigBlk|SigIgn' /proc/$$/status) > "$out/signals"
(tr '\0' '\n' < /proc/$$/environ) > "$out/env"
(pwd -P) > "$out/cwd"
for write in "$@"; do
    printf '%s' "${write%%:*}" > "/proc/$$/fd/${write#*:}"
done
"#;

/// A spec that runs [`OBSERVE`] writing into `out`, with only `PATH` set.
fn observer(out: &Path, writes: &[(&str, RawFd)]) -> ExecSpec {
    let mut args: Vec<OsString> = ["sh", "-c", OBSERVE, "sh"]
        .iter()
        .map(OsString::from)
        .collect();
    args.push(out.into());
    args.extend(
        writes
            .iter()
            .map(|(letter, fd)| format!("{letter}:{fd}").into()),
    );
    ExecSpec {
        program: "/bin/sh".into(),
        args,
        env: vec![("PATH".into(), PATH.into())],
        ..ExecSpec::default()
    }
}

/// `/bin/sh -c SCRIPT sh ARGS...` with only `PATH` set.
fn shell(script: &str, args: &[&Path]) -> ExecSpec {
    let mut argv: Vec<OsString> = ["sh", "-c", script, "sh"]
        .iter()
        .map(OsString::from)
        .collect();
    argv.extend(args.iter().map(|arg| arg.as_os_str().to_owned()));
    ExecSpec {
        program: "/bin/sh".into(),
        args: argv,
        env: vec![("PATH".into(), PATH.into())],
        ..ExecSpec::default()
    }
}

struct Observed {
    pid: Pid,
    /// fd number to what `/proc` says it is (`pipe:[123]`, `/dev/null`).
    fds: BTreeMap<RawFd, String>,
    /// `SigBlk`/`SigIgn` to their hex masks.
    signals: BTreeMap<String, String>,
    env: Vec<String>,
    cwd: PathBuf,
}

fn read(out: &Path, name: &str) -> String {
    fs::read_to_string(out.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Spawn the observer, wait for it to succeed and read what it wrote.
fn observe(spec: &ExecSpec, out: &Path) -> Observed {
    let pid = spawn(spec).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(wait(pid), 0, "the observer failed");
    Observed {
        pid,
        fds: fd_list(&read(out, "fds")),
        signals: signal_masks(&read(out, "signals")),
        env: read(out, "env").lines().map(String::from).collect(),
        cwd: read(out, "cwd").trim_end().into(),
    }
}

/// `ls -l /proc/PID/fd` as fd number to target.
fn fd_list(listing: &str) -> BTreeMap<RawFd, String> {
    listing
        .lines()
        .filter_map(|line| {
            let (left, target) = line.split_once(" -> ")?;
            let fd = left.split_whitespace().last()?.parse().ok()?;
            Some((fd, target.to_string()))
        })
        .collect()
}

/// `SigBlk`/`SigIgn` lines of `/proc/PID/status` as name to mask.
fn signal_masks(lines: &str) -> BTreeMap<String, String> {
    lines
        .lines()
        .filter_map(|line| {
            let (name, mask) = line.split_once(':')?;
            Some((name.to_string(), mask.trim().to_string()))
        })
        .collect()
}

/// Reap `pid` and return its exit code.
fn wait(pid: Pid) -> i32 {
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(other) => panic!("child {pid}: {other:?}"),
            Err(Errno::EINTR) => continue,
            Err(e) => panic!("waitpid {pid}: {e}"),
        }
    }
}

/// What this process's `fd` is, as `/proc` names it.
fn link(fd: RawFd) -> String {
    fs::read_link(format!("/proc/self/fd/{fd}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn close_on_exec(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only queries.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    assert!(flags >= 0, "fd {fd} is not open");
    flags & libc::FD_CLOEXEC != 0
}

fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap()
}

fn read_all(fd: OwnedFd) -> String {
    let mut text = String::new();
    fs::File::from(fd).read_to_string(&mut text).unwrap();
    text
}

/// Pids whose parent is this process, from `/proc`.
fn children() -> Vec<i32> {
    let me = std::process::id().to_string();
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            let pid: i32 = name.parse().ok()?;
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // `pid (comm) state ppid ...`; comm may hold spaces.
            let after_comm = &stat[stat.rfind(')')? + 1..];
            let ppid = after_comm.split_whitespace().nth(1)?;
            (ppid == me).then_some(pid)
        })
        .collect()
}

fn assert_no_children() {
    assert_eq!(children(), Vec::<i32>::new(), "children left behind");
    assert_eq!(
        waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)),
        Err(Errno::ECHILD)
    );
}

#[test]
fn only_stdio_crosses_when_no_fds_are_passed() {
    let _turn = turn();
    let out = tempfile::tempdir().unwrap();
    // An fd without close-on-exec would survive a bare execve.
    let (stray_read, stray_write) = nix::unistd::pipe().unwrap();
    assert!(!close_on_exec(stray_write.as_raw_fd()));
    let seen = observe(&observer(out.path(), &[]), out.path());
    let stdio: BTreeMap<RawFd, String> = (0..3).map(|fd| (fd, link(fd))).collect();
    assert_eq!(seen.fds, stdio);
    drop((stray_read, stray_write));
}

#[test]
fn passed_fds_land_at_3_in_order_even_where_they_collide() {
    let _turn = turn();
    let out = tempfile::tempdir().unwrap();
    let filler = fs::File::open("/dev/null").unwrap();
    let (a_read, a_write) = pipe();
    let (b_read, b_write) = pipe();
    let (c_read, c_write) = pipe();
    let (a, b, c) = (
        a_write.as_raw_fd(),
        b_write.as_raw_fd(),
        c_write.as_raw_fd(),
    );
    // Targets 3..=top cover every source: a and b trade places, c stays
    // where it is (a dup2 onto itself would keep close-on-exec), the rest
    // of the range is /dev/null.
    let top = a.max(b).max(c).max(filler.as_raw_fd());
    let mut fds = vec![filler.as_raw_fd(); (top - 2) as usize];
    fds[(b - 3) as usize] = a;
    fds[(a - 3) as usize] = b;
    fds[(c - 3) as usize] = c;
    assert!(fds.iter().all(|fd| close_on_exec(*fd)));
    let expected: BTreeMap<RawFd, String> = (0..3)
        .map(|fd| (fd, link(fd)))
        .chain((3..).zip(fds.iter().map(|fd| link(*fd))))
        .collect();

    // The observer writes each letter to where its pipe should be.
    let mut spec = observer(out.path(), &[("a", b), ("b", a), ("c", c)]);
    spec.fds = fds;
    let seen = observe(&spec, out.path());
    assert_eq!(seen.fds, expected);

    drop((a_write, b_write, c_write));
    assert_eq!(read_all(a_read), "a");
    assert_eq!(read_all(b_read), "b");
    assert_eq!(read_all(c_read), "c");
}

/// `SigBlk` and `SigIgn` of this thread.
fn own_signal_masks() -> BTreeMap<String, String> {
    fs::read_to_string("/proc/thread-self/status")
        .unwrap()
        .lines()
        .filter_map(|line| {
            let (name, mask) = line.split_once(':')?;
            matches!(name, "SigBlk" | "SigIgn").then(|| (name.to_string(), mask.trim().to_string()))
        })
        .collect()
}

#[test]
fn signals_start_unblocked_and_at_their_defaults() {
    let _turn = turn();
    let out = tempfile::tempdir().unwrap();
    // The Rust runtime ignores SIGPIPE; make sure of it, and ignore SIGUSR2
    // as the master might.
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    // SAFETY: ignoring a signal installs no handler.
    let old_pipe = unsafe { sigaction(Signal::SIGPIPE, &ignore) }.unwrap();
    let old_usr2 = unsafe { sigaction(Signal::SIGUSR2, &ignore) }.unwrap();
    let mut blocked = SigSet::empty();
    blocked.add(Signal::SIGUSR1);
    blocked.add(Signal::SIGTERM);
    let mut old_mask = SigSet::empty();
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&blocked), Some(&mut old_mask)).unwrap();
    let before = own_signal_masks();

    let result = std::panic::catch_unwind(|| observe(&observer(out.path(), &[]), out.path()));
    let mut mask_after = SigSet::empty();
    pthread_sigmask(
        SigmaskHow::SIG_SETMASK,
        Some(&old_mask),
        Some(&mut mask_after),
    )
    .unwrap();
    // SAFETY: restores what was there.
    unsafe {
        sigaction(Signal::SIGPIPE, &old_pipe).unwrap();
        sigaction(Signal::SIGUSR2, &old_usr2).unwrap();
    }
    let seen = result.unwrap();

    assert!(
        before.values().all(|mask| mask != "0000000000000000"),
        "the test sets nothing up: {before:?}"
    );
    assert!(mask_after.contains(Signal::SIGUSR1) && mask_after.contains(Signal::SIGTERM));
    assert!(
        !mask_after.contains(Signal::SIGINT),
        "spawn did not restore the mask"
    );
    let zero = "0000000000000000".to_string();
    let expected: BTreeMap<String, String> = ["SigBlk", "SigIgn"]
        .into_iter()
        .map(|name| (name.to_string(), zero.clone()))
        .collect();
    assert_eq!(seen.signals, expected);
}

#[test]
fn the_environment_is_exactly_the_given_one() {
    let _turn = turn();
    let out = tempfile::tempdir().unwrap();
    let mut spec = observer(out.path(), &[]);
    spec.env.extend([
        ("GUNICORND_EXEC_TEST".into(), "1".into()),
        ("WITH_SPACES".into(), "a b = c".into()),
        ("EMPTY".into(), "".into()),
    ]);
    let given: BTreeSet<OsString> = spec.env.iter().map(|(name, _)| name.clone()).collect();
    assert!(
        std::env::vars_os().any(|(name, _)| !given.contains(&name)),
        "the test process should have variables of its own"
    );
    let seen = observe(&spec, out.path());
    assert_eq!(
        seen.env,
        [
            format!("PATH={PATH}"),
            "GUNICORND_EXEC_TEST=1".into(),
            "WITH_SPACES=a b = c".into(),
            "EMPTY=".into()
        ]
    );
}

#[test]
fn the_program_runs_in_the_given_directory_or_ours() {
    let _turn = turn();
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("work dir");
    fs::create_dir(&dir).unwrap();
    let mut spec = observer(out.path(), &[]);
    spec.cwd = Some(dir.clone());
    assert_eq!(observe(&spec, out.path()).cwd, dir.canonicalize().unwrap());

    spec.cwd = None;
    let ours = std::env::current_dir().unwrap().canonicalize().unwrap();
    assert_eq!(observe(&spec, out.path()).cwd, ours);
}

#[test]
fn a_program_that_cannot_be_executed_is_an_error_naming_it_and_leaves_no_zombie() {
    let _turn = turn();
    let missing = ExecSpec {
        program: "/nonexistent/gunicornd-exec-test".into(),
        args: vec!["x".into()],
        ..ExecSpec::default()
    };
    let err = spawn(&missing).unwrap_err();
    assert_eq!(err.step(), Step::Exec);
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    assert_eq!(
        err.to_string(),
        "cannot execute /nonexistent/gunicornd-exec-test: No such file or directory (os error 2)"
    );
    assert_no_children();

    // Not even root may execute a file without any execute bit.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("script");
    fs::write(&script, "#!/bin/sh\n").unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o644)).unwrap();
    let not_executable = ExecSpec {
        program: script.clone(),
        args: vec!["script".into()],
        ..ExecSpec::default()
    };
    let err = spawn(&not_executable).unwrap_err();
    assert_eq!(err.step(), Step::Exec);
    assert_eq!(err.raw_os_error(), Some(libc::EACCES));
    assert_no_children();
}

#[test]
fn failed_setup_steps_are_reported_with_their_step() {
    let _turn = turn();
    let mut spec = ExecSpec {
        program: "/bin/true".into(),
        args: vec!["true".into()],
        cwd: Some("/nonexistent/gunicornd-exec-dir".into()),
        ..ExecSpec::default()
    };
    let err = spawn(&spec).unwrap_err();
    assert_eq!(err.step(), Step::ChangeDir);
    assert_eq!(
        err.to_string(),
        "cannot execute /bin/true: cannot change to directory /nonexistent/gunicornd-exec-dir: \
         No such file or directory (os error 2)"
    );
    assert_no_children();

    // No process has this fd open.
    spec.cwd = None;
    spec.fds = vec![libc::c_int::MAX - 1];
    let err = spawn(&spec).unwrap_err();
    assert_eq!(err.step(), Step::PlaceFds);
    assert_eq!(err.raw_os_error(), Some(libc::EBADF));
    assert_no_children();
}

#[test]
fn the_pid_variable_holds_the_programs_own_pid() {
    let _turn = turn();
    let out = tempfile::tempdir().unwrap();
    let pids = out.path().join("pids");
    let mut spec = shell(r#"echo "$LISTEN_PID $$" > "$1""#, &[&pids]);
    spec.pid_var = Some("LISTEN_PID".into());
    let pid = spawn(&spec).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(wait(pid), 0);
    assert_eq!(fs::read_to_string(&pids).unwrap(), format!("{pid} {pid}\n"));
}

#[test]
fn the_pid_variable_replaces_one_of_that_name_in_place_or_comes_last() {
    let _turn = turn();
    let out = tempfile::tempdir().unwrap();
    let mut spec = observer(out.path(), &[]);
    spec.env.extend([
        ("A".into(), "1".into()),
        ("LISTEN_PID".into(), "1".into()),
        ("B".into(), "2".into()),
        ("LISTEN_PID".into(), "again".into()),
    ]);
    spec.pid_var = Some("LISTEN_PID".into());
    let seen = observe(&spec, out.path());
    assert_eq!(
        seen.env,
        [
            format!("PATH={PATH}"),
            "A=1".into(),
            format!("LISTEN_PID={}", seen.pid),
            "B=2".into(),
        ]
    );

    let mut spec = observer(out.path(), &[]);
    spec.env.push(("A".into(), "1".into()));
    spec.pid_var = Some("MY_PID".into());
    let seen = observe(&spec, out.path());
    assert_eq!(
        seen.env,
        [
            format!("PATH={PATH}"),
            "A=1".into(),
            format!("MY_PID={}", seen.pid),
        ]
    );
}

/// [`PreExec::shell`] with `PATH` and `vars`.
fn hook(command: &str, vars: &[(&str, &Path)]) -> PreExec {
    let mut env: Vec<(OsString, OsString)> = vec![("PATH".into(), PATH.into())];
    env.extend(
        vars.iter()
            .map(|(name, value)| (OsString::from(name), value.as_os_str().to_owned())),
    );
    PreExec::shell(command, env)
}

#[test]
fn the_pre_exec_command_runs_to_its_end_before_the_program() {
    let _turn = turn();
    let out = tempfile::tempdir().unwrap();
    let log = out.path().join("log");
    // The hook's last line comes from a process of its own, after the
    // program could have started if the child did not wait.
    let mut spec = shell(r#"echo program >> "$1""#, &[&log]);
    spec.pre_exec = Some(hook(
        r#"echo start >> "$LOG"; sh -c 'echo middle >> "$LOG"'; sh -c 'echo end >> "$LOG"'"#,
        &[("LOG", &log)],
    ));
    let pid = spawn(&spec).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(wait(pid), 0);
    assert_eq!(
        fs::read_to_string(&log).unwrap(),
        "start\nmiddle\nend\nprogram\n"
    );
    assert_no_children();
}

#[test]
fn the_pre_exec_command_gets_its_env_and_stdio_but_not_the_passed_fds() {
    let _turn = turn();
    let out = tempfile::tempdir().unwrap();
    let (a_read, a_write) = pipe();
    let (b_read, b_write) = pipe();
    let fds = vec![a_write.as_raw_fd(), b_write.as_raw_fd()];
    // $PPID is the child about to exec the program.
    const HOOK: &str = r#"set -e
(ls -l /proc/$$/fd) > "$OUT/hook-fds"
(ls -l /proc/$PPID/fd) > "$OUT/child-fds"
(tr '\0' '\n' < /proc/$$/environ) > "$OUT/hook-env"
(grep -E 'SigBlk|SigIgn' /proc/$$/status) > "$OUT/hook-signals"
"#;
    let mut spec = observer(out.path(), &[("a", 3), ("b", 4)]);
    spec.fds = fds.clone();
    spec.pid_var = Some("LISTEN_PID".into());
    spec.pre_exec = Some(hook(HOOK, &[("OUT", out.path())]));
    let seen = observe(&spec, out.path());

    let stdio: BTreeMap<RawFd, String> = (0..3).map(|fd| (fd, link(fd))).collect();
    let passed: BTreeMap<RawFd, String> = stdio
        .clone()
        .into_iter()
        .chain((3..).zip(fds.iter().map(|fd| link(*fd))))
        .collect();
    assert_eq!(fd_list(&read(out.path(), "hook-fds")), stdio);
    assert_eq!(fd_list(&read(out.path(), "child-fds")), passed);
    assert_eq!(seen.fds, passed);
    assert_eq!(
        read(out.path(), "hook-env").lines().collect::<Vec<_>>(),
        [
            format!("PATH={PATH}"),
            format!("OUT={}", out.path().display())
        ]
    );
    assert!(seen.env.contains(&format!("LISTEN_PID={}", seen.pid)));
    let zero = "0000000000000000".to_string();
    let expected: BTreeMap<String, String> = ["SigBlk", "SigIgn"]
        .into_iter()
        .map(|name| (name.to_string(), zero.clone()))
        .collect();
    assert_eq!(signal_masks(&read(out.path(), "hook-signals")), expected);

    drop((a_write, b_write));
    assert_eq!(read_all(a_read), "a");
    assert_eq!(read_all(b_read), "b");
}

#[test]
fn a_failing_or_missing_pre_exec_command_does_not_stop_the_exec() {
    let _turn = turn();
    let out = tempfile::tempdir().unwrap();
    let ran = out.path().join("ran");
    let missing = PreExec {
        program: "/nonexistent/gunicornd-pre-exec".into(),
        args: vec!["pre-exec".into()],
        env: Vec::new(),
    };
    for command in [hook("exit 3", &[]), hook("kill -KILL $$", &[]), missing] {
        let mut spec = shell(r#"echo ran > "$1""#, &[&ran]);
        spec.pre_exec = Some(command.clone());
        let pid = spawn(&spec).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(wait(pid), 0, "{command:?}");
        assert_eq!(fs::read_to_string(&ran).unwrap(), "ran\n", "{command:?}");
        fs::remove_file(&ran).unwrap();
        assert_no_children();
    }
}

#[test]
fn spawn_returns_while_the_pre_exec_command_runs() {
    let _turn = turn();
    let out = tempfile::tempdir().unwrap();
    // The hook waits for a file that the test creates only once spawn has
    // returned; if spawn waited for the hook, the hook's deadline would
    // pass first.
    const HOOK: &str = r#"i=0
while [ ! -e "$OUT/go" ]; do
    i=$((i + 1))
    if [ "$i" -gt 2000 ]; then echo timeout > "$OUT/hook"; exit 1; fi
    sleep 0.01
done
echo go > "$OUT/hook"
"#;
    let mut spec = shell(r#"cat "$1/hook" > "$1/program""#, &[out.path()]);
    spec.pre_exec = Some(hook(HOOK, &[("OUT", out.path())]));
    let pid = spawn(&spec).unwrap_or_else(|e| panic!("{e}"));
    fs::write(out.path().join("go"), "").unwrap();
    assert_eq!(wait(pid), 0);
    assert_eq!(read(out.path(), "program"), "go\n");
    assert_no_children();
}

#[test]
fn with_a_pre_exec_command_a_failed_exec_is_the_exit_status_127() {
    let _turn = turn();
    let out = tempfile::tempdir().unwrap();
    let ran = out.path().join("hook ran");
    let spec = ExecSpec {
        program: "/nonexistent/gunicornd-exec-test".into(),
        args: vec!["x".into()],
        pre_exec: Some(hook(r#"touch "$RAN""#, &[("RAN", &ran)])),
        ..ExecSpec::default()
    };
    let pid = spawn(&spec).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(wait(pid), 127);
    assert!(ran.exists());
    assert_no_children();
}

#[test]
fn stdout_and_stderr_go_to_the_given_fds_and_stdin_stays() {
    let _turn = turn();
    let out = tempfile::tempdir().unwrap();
    let (output_read, output_write) = pipe();
    let mut spec = observer(out.path(), &[]);
    spec.stdout = Some(output_write.as_raw_fd());
    spec.stderr = Some(output_write.as_raw_fd());
    let seen = observe(&spec, out.path());
    let output = link(output_write.as_raw_fd());
    assert_eq!(seen.fds.get(&0), Some(&link(0)));
    assert_eq!(seen.fds.get(&1), Some(&output));
    assert_eq!(seen.fds.get(&2), Some(&output));
    assert_eq!(seen.fds.len(), 3, "{:?}", seen.fds);

    // Both streams, in the order written; and a source that sits where a
    // passed fd goes (fd 3) still reaches fd 2.
    let (order_read, order_write) = pipe();
    let mut spec = shell("echo out; echo err >&2; echo three >&3", &[]);
    spec.stdout = Some(order_write.as_raw_fd());
    spec.stderr = Some(order_write.as_raw_fd());
    spec.fds = vec![order_write.as_raw_fd()];
    let pid = spawn(&spec).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(wait(pid), 0);
    drop((spec, order_write, output_write, output_read));
    assert_eq!(read_all(order_read), "out\nerr\nthree\n");
}

#[test]
fn the_program_runs_with_the_given_credentials() {
    let _turn = turn();
    let (facts_read, facts_write) = pipe();
    let mut spec = shell("grep -E '^(Uid|Gid|Groups):' /proc/$$/status >&3", &[]);
    spec.fds = vec![facts_write.as_raw_fd()];
    let root = nix::unistd::geteuid().is_root();
    let (uid, gid) = if root {
        (65534, 65534)
    } else {
        (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        )
    };
    spec.credentials = Some(gunicornd::exec::Credentials {
        // Only root may set the supplementary groups.
        groups: root.then(|| vec![gid, 4242]),
        gid: Some(gid),
        uid: Some(uid),
    });
    let pid = spawn(&spec).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(wait(pid), 0);
    drop((spec, facts_write));
    let facts = read_all(facts_read);
    let field = |name: &str| {
        facts
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {facts}"))
            .split_whitespace()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(field("Uid:"), vec![uid.to_string(); 4]);
    assert_eq!(field("Gid:"), vec![gid.to_string(); 4]);
    if root {
        // The kernel keeps them sorted.
        assert_eq!(field("Groups:"), ["4242".to_string(), gid.to_string()]);
    }
}

#[test]
fn a_refused_credential_change_is_reported_and_nothing_runs() {
    let _turn = turn();
    let out = tempfile::tempdir().unwrap();
    let ran = out.path().join("ran");
    let mut spec = shell(r#"touch "$1""#, &[&ran]);
    // (gid_t)-1 is no group: setgid refuses it whoever asks.
    spec.credentials = Some(gunicornd::exec::Credentials {
        gid: Some(u32::MAX),
        ..Default::default()
    });
    let err = spawn(&spec).unwrap_err();
    assert_eq!(err.step(), Step::Credentials);
    assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
    assert_eq!(
        err.to_string(),
        "cannot execute /bin/sh: cannot switch to group 4294967295: Invalid argument (os error 22)"
    );
    assert!(!ran.exists());
    assert_no_children();
}

#[test]
fn a_parent_death_signal_is_accepted() {
    let _turn = turn();
    let mut spec = shell("exit 0", &[]);
    spec.parent_death_signal = Some(Signal::SIGTERM);
    let pid = spawn(&spec).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(wait(pid), 0);
}
