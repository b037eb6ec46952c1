//! The master's pidfile (`-p/--pid FILE`).
//!
//! Behaviour follows gunicorn's `Pidfile` (`gunicorn/pidfile.py`), made
//! robust against crashes, pid reuse, races and upgrades:
//!
//! - The file is held with an exclusive `flock(2)` for the master's
//!   lifetime, so two masters started at once with the same pidfile cannot
//!   both run: the second finds the lock taken and refuses to start, naming
//!   the pid the file holds. A crash releases the lock with the process.
//! - The file is written atomically (temporary file in the same directory,
//!   locked before it is renamed over the path), holds `"<pid>\n"` and has
//!   mode 0644 whatever the umask. The path never names an unlocked file
//!   while the master runs.
//! - A pidfile that nobody has locked is stale and is replaced, unless it
//!   names a live gunicornd (a master of an earlier release, which does not
//!   lock): that refuses the start, as before. One naming a dead process,
//!   holding garbage, or naming a live process that is *not* gunicornd (the
//!   pid was reused after a crash or a reboot) is replaced, with a warning
//!   for the last, instead of blocking the start forever as gunicorn does.
//! - The file is removed only by its holder, and only while the path still
//!   names the file it locked (same device and inode) and holds its pid, so
//!   an old master leaving after a binary upgrade never deletes its
//!   successor's file.
//!
//! Binary upgrades: the new master locks `<pidfile>.2`, its own file; at
//! takeover that file is renamed over the pidfile, and the lock goes with
//! it (a lock belongs to the open file, not to the name).
//!
//! There is deliberately no `Drop` implementation: workers are forked from
//! the master and carry a copy of its `Pidfile`; since the file holds the
//! master's pid, a worker dropping its copy would delete the master's file.
//! The master calls [`Pidfile::unlink`] explicitly on its way out, and a
//! worker closes the descriptor ([`Pidfile::raw_fd`]) first thing, so that
//! workers outliving a killed master do not keep the lock.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use tracing::{debug, info, warn};

use crate::fd::FileId;

/// Mode of the pidfile: readable by everyone (init scripts and monitoring
/// often run as another user), writable by the owner only.
const PIDFILE_MODE: u32 = 0o644;

/// The name the checks in [`process_is_gunicornd`] look for.
const PROGRAM_NAME: &str = "gunicornd";

/// How long a start waits for a locked pidfile to name its holder: a
/// master that has just taken the lock on a stale file writes its own pid
/// within moments.
const HOLDER_WAIT: Duration = Duration::from_secs(2);

/// How long a start tries to put its pidfile in place while others keep
/// replacing the file under it.
const SETTLE: Duration = Duration::from_secs(5);

/// A pidfile written by this process. See the module documentation.
#[derive(Debug)]
pub struct Pidfile {
    path: PathBuf,
    pid: u32,
    /// The file, open and locked for as long as the master runs.
    file: File,
}

/// Why a pidfile could not be created.
#[derive(Debug)]
pub enum PidfileError {
    /// The directory that should hold the pidfile does not exist.
    MissingDirectory { dir: PathBuf, path: PathBuf },
    /// The pidfile names a gunicornd that is still running.
    AlreadyRunning { pid: u32, path: PathBuf },
    /// Another process holds the pidfile's lock but the file names no live
    /// process (it did not write its pid in time).
    Locked { path: PathBuf, content: String },
    /// Reading the existing pidfile or writing the new one failed.
    Io { path: PathBuf, source: io::Error },
}

impl fmt::Display for PidfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PidfileError::MissingDirectory { dir, path } => write!(
                f,
                "cannot create pidfile {}: directory {} does not exist",
                path.display(),
                dir.display()
            ),
            PidfileError::AlreadyRunning { pid, path } => {
                write!(
                    f,
                    "Already running on PID {pid} (pidfile {})",
                    path.display()
                )
            }
            PidfileError::Locked { path, content } => write!(
                f,
                "Already running: another process holds the lock on pidfile {} \
                 (which holds {content:?}, not a running process)",
                path.display()
            ),
            PidfileError::Io { path, source } => {
                write!(f, "cannot write pidfile {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for PidfileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PidfileError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl Pidfile {
    /// Writes `pid` to `path` and locks it, after checking that no other
    /// gunicornd holds it.
    ///
    /// A relative `path` is used as given (relative to the current directory
    /// at the time of the call); the caller resolves it against `--chdir`.
    /// May block for a moment (up to [`HOLDER_WAIT`]) when another master
    /// is starting at the same time: only call it at startup.
    pub fn create(path: &Path, pid: u32) -> Result<Pidfile, PidfileError> {
        check_directory(path)?;
        let io = |source| io_error(path, source);
        let started = Instant::now();
        loop {
            if started.elapsed() > SETTLE {
                return Err(io(io::Error::other(
                    "it keeps being replaced by another process",
                )));
            }
            let file = match open_existing(path) {
                Ok(file) => file,
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    // Nothing there: put ours there unless someone was quicker.
                    match place_if_absent(path, pid).map_err(io)? {
                        Some(file) => return Ok(Pidfile::held(path, pid, file)),
                        None => continue,
                    }
                }
                // A symlink: replaced by our file (the link itself, not
                // what it points to), as a stale file is.
                Err(err) if err.raw_os_error() == Some(libc::ELOOP) => {
                    warn!("Replacing the symlink at pidfile {}", path.display());
                    let file = place_over(path, pid).map_err(io)?;
                    if names(path, &file) {
                        return Ok(Pidfile::held(path, pid, file));
                    }
                    continue;
                }
                Err(err) => return Err(io(err)),
            };
            let locked = match try_lock(&file) {
                Ok(locked) => locked,
                Err(errno) if lock_unsupported(errno) => {
                    warn!(
                        "Cannot lock pidfile {} ({errno}): relying on the pid it holds alone",
                        path.display()
                    );
                    true
                }
                Err(errno) => return Err(io(errno.into())),
            };
            if !names(path, &file) {
                // Replaced between our open and our lock: look again.
                continue;
            }
            let holder = read_holder(&file).map_err(io)?;
            if !locked {
                // Its holder may not have written its own pid yet.
                match holder {
                    Holder::Pid(held) if probe_process(held) != Probe::Dead => {
                        return Err(PidfileError::AlreadyRunning {
                            pid: held,
                            path: path.to_path_buf(),
                        })
                    }
                    _ if started.elapsed() < HOLDER_WAIT => {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                    other => {
                        return Err(PidfileError::Locked {
                            path: path.to_path_buf(),
                            content: match other {
                                Holder::Pid(held) => held.to_string(),
                                Holder::Unparsable(content) => content,
                                Holder::Nobody => String::new(),
                            },
                        })
                    }
                }
            }
            check_stale(path, holder, pid)?;
            // We hold the old file's lock while ours replaces it, so the
            // path never names an unlocked file.
            let ours = place_over(path, pid).map_err(io)?;
            drop(file);
            if names(path, &ours) {
                return Ok(Pidfile::held(path, pid, ours));
            }
        }
    }

    fn held(path: &Path, pid: u32, file: File) -> Pidfile {
        Pidfile {
            path: path.to_path_buf(),
            pid,
            file,
        }
    }

    /// The locked descriptor, which a forked worker closes (see the module
    /// documentation).
    pub fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// The path the pidfile currently lives at.
    #[cfg(test)]
    fn path(&self) -> &Path {
        &self.path
    }

    /// The pid written in the file.
    #[cfg(test)]
    fn pid(&self) -> u32 {
        self.pid
    }

    /// Move the pidfile to `to` (a new master taking over the old one's
    /// pidfile after a binary upgrade); whatever was at `to` is replaced in
    /// one step, so readers see the old content or ours, never nothing. The
    /// lock moves with the file. The old master may have moved it already
    /// ([`hand_over`]).
    pub fn rename(&mut self, to: &Path) -> io::Result<()> {
        if !names(to, &self.file) {
            if !names(&self.path, &self.file) {
                return Err(io::Error::other(format!(
                    "{} is no longer the file this master wrote",
                    self.path.display()
                )));
            }
            fs::rename(&self.path, to)?;
        }
        self.path = to.to_path_buf();
        Ok(())
    }

    /// Removes the file if its path still names the file we locked and it
    /// still holds our pid.
    ///
    /// Errors are logged at debug level and otherwise ignored: this runs on
    /// the way out, when there is nothing better to do about them.
    pub fn unlink(&self) {
        if !names(&self.path, &self.file) {
            debug!(
                "pidfile {} is no longer the file this master wrote; leaving it",
                self.path.display()
            );
            return;
        }
        match read_pid(&self.path) {
            Ok(Holder::Pid(held)) if held == self.pid => {
                if let Err(err) = fs::remove_file(&self.path) {
                    debug!("cannot remove pidfile {}: {err}", self.path.display());
                }
            }
            Ok(_) => debug!(
                "pidfile {} no longer holds PID {}; leaving it",
                self.path.display(),
                self.pid
            ),
            Err(err) => debug!("cannot read pidfile {}: {err}", self.path.display()),
        }
    }
}

/// A pidfile nobody has locked: may it be replaced by `pid`'s?
fn check_stale(path: &Path, holder: Holder, pid: u32) -> Result<(), PidfileError> {
    match holder {
        Holder::Nobody => {}
        Holder::Unparsable(content) => warn!(
            "Replacing pidfile {} with unreadable content {:?}",
            path.display(),
            content
        ),
        Holder::Pid(held) if held == pid => {}
        Holder::Pid(held) => match probe_process(held) {
            Probe::Dead => info!(
                "Replacing stale pidfile {} (PID {held} is not running)",
                path.display()
            ),
            Probe::AliveOther => warn!(
                "Replacing stale pidfile {}: PID {held} is running but is not {PROGRAM_NAME} \
                 (the pid was reused)",
                path.display()
            ),
            // Unlocked but a live gunicornd: a master that does not lock
            // (an earlier release).
            Probe::AliveGunicornd => {
                return Err(PidfileError::AlreadyRunning {
                    pid: held,
                    path: path.to_path_buf(),
                })
            }
        },
    }
    Ok(())
}

/// Open the file at `path` to lock it, not following a symlink.
fn open_existing(path: &Path) -> io::Result<File> {
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Take the exclusive lock on `file` without waiting: `Ok(false)` if
/// another open file holds it.
fn try_lock(file: &File) -> Result<bool, Errno> {
    // SAFETY: flock on a descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    match Errno::result(rc) {
        Ok(_) => Ok(true),
        Err(Errno::EWOULDBLOCK) => Ok(false),
        Err(errno) => Err(errno),
    }
}

/// File systems without locks (some network file systems): the pidfile
/// works as before locks, by the pid it holds.
fn lock_unsupported(errno: Errno) -> bool {
    matches!(errno, Errno::ENOLCK | Errno::EOPNOTSUPP | Errno::EINVAL)
}

/// Whether `path` itself names the file open at `file`.
fn names(path: &Path, file: &File) -> bool {
    FileId::of_fd(file).is_ok_and(|id| FileId::of_path(path) == Some(id))
}

/// What the open pidfile says.
fn read_holder(mut file: &File) -> io::Result<Holder> {
    let mut content = String::new();
    file.rewind()?;
    file.read_to_string(&mut content)?;
    Ok(parse_pid(&content))
}

fn io_error(path: &Path, source: io::Error) -> PidfileError {
    PidfileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The directory of `path`, `.` for a bare file name.
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

fn check_directory(path: &Path) -> Result<(), PidfileError> {
    let dir = parent_dir(path);
    match fs::metadata(dir) {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Err(PidfileError::MissingDirectory {
            dir: dir.to_path_buf(),
            path: path.to_path_buf(),
        }),
        // Not a directory, permission denied, ...: the write reports it with
        // the OS's own words.
        Err(_) => Ok(()),
    }
}

/// The old master of an upgrade, exiting: move its successor's pidfile
/// (`from`, holding `pid`) over its own (`to`), so that the pidfile names
/// the new master before anyone is told it is the main process.
pub fn hand_over(from: &Path, to: &Path, pid: u32) {
    if let Ok(Holder::Pid(held)) = read_pid(from) {
        if held == pid {
            if let Err(err) = fs::rename(from, to) {
                warn!(
                    "cannot move pidfile {} to {}: {err}",
                    from.display(),
                    to.display()
                );
            }
        }
    }
}

/// Remove the pidfile at `path` if it holds `pid` and nobody holds its
/// lock: what a process that died without cleaning up (a new master of an
/// upgrade) left behind.
pub fn remove_if_held_by(path: &Path, pid: u32) {
    let Ok(file) = open_existing(path) else {
        return;
    };
    if try_lock(&file) == Ok(false) {
        debug!(
            "pidfile {} is locked by a live process; leaving it",
            path.display()
        );
        return;
    }
    if let Ok(Holder::Pid(held)) = read_holder(&file) {
        if held == pid && names(path, &file) {
            if let Err(err) = fs::remove_file(path) {
                debug!("cannot remove pidfile {}: {err}", path.display());
            }
        }
    }
}

/// What an existing pidfile says.
#[derive(Debug, PartialEq, Eq)]
enum Holder {
    /// No file.
    Nobody,
    /// A file that does not hold a usable pid.
    Unparsable(String),
    Pid(u32),
}

fn read_pid(path: &Path) -> io::Result<Holder> {
    match fs::read_to_string(path) {
        Ok(content) => Ok(parse_pid(&content)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(Holder::Nobody),
        Err(err) => Err(err),
    }
}

fn parse_pid(content: &str) -> Holder {
    match content.trim().parse::<i32>() {
        // kill(0, ..) and kill(-n, ..) address process groups: never probe them.
        Ok(pid) if pid > 0 => Holder::Pid(pid as u32),
        _ => Holder::Unparsable(content.chars().take(64).collect()),
    }
}

/// What the pid in a pidfile refers to.
#[derive(Debug, PartialEq, Eq)]
enum Probe {
    Dead,
    AliveOther,
    AliveGunicornd,
}

fn probe_process(pid: u32) -> Probe {
    let Ok(raw) = i32::try_from(pid) else {
        return Probe::Dead;
    };
    if !is_alive(kill(Pid::from_raw(raw), None)) {
        return Probe::Dead;
    }
    if process_is_gunicornd(pid) {
        Probe::AliveGunicornd
    } else {
        Probe::AliveOther
    }
}

/// Interprets `kill(pid, 0)`: EPERM means the process exists but belongs to
/// another user, so it counts as alive.
fn is_alive(result: nix::Result<()>) -> bool {
    !matches!(result, Err(Errno::ESRCH))
}

/// Whether the live process `pid` is a gunicornd, judged from `/proc`.
///
/// Three indicators are read: the executable (`/proc/PID/exe`, readable only
/// with ptrace access to the process), `argv[0]` (`/proc/PID/cmdline`, which
/// also reflects a process title set by the master) and the command name
/// (`/proc/PID/comm`). Any one naming gunicornd is enough. When none of them
/// can be read (no `/proc`, `hidepid`), the process is assumed to be a
/// gunicornd: refusing to start is safer than running two masters.
pub(crate) fn process_is_gunicornd(pid: u32) -> bool {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let exe = fs::read_link(proc_dir.join("exe")).ok();
    let cmdline = fs::read(proc_dir.join("cmdline")).ok();
    let comm = fs::read_to_string(proc_dir.join("comm")).ok();
    names_gunicornd(exe.as_deref(), cmdline.as_deref(), comm.as_deref()).unwrap_or(true)
}

/// `Some(true)` if any readable indicator names gunicornd, `Some(false)` if
/// some were readable and none did, `None` if nothing could be read.
fn names_gunicornd(exe: Option<&Path>, cmdline: Option<&[u8]>, comm: Option<&str>) -> Option<bool> {
    // A deleted executable (replaced by a package upgrade) reads as
    // "/path/gunicornd (deleted)": the name check below still matches it.
    let exe_name = exe
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned());
    let argv0_name = cmdline.and_then(argv0_name);
    let comm_name = comm.map(|c| c.trim_end().to_string());
    let readable: Vec<String> = [exe_name, argv0_name, comm_name]
        .into_iter()
        .flatten()
        .collect();
    if readable.is_empty() {
        return None;
    }
    Some(readable.iter().any(|name| name.contains(PROGRAM_NAME)))
}

/// The program name in `argv[0]`: its first word (a process title like
/// `gunicornd: master [static:/srv/www]` may contain slashes later on), then
/// the part after the last slash.
fn argv0_name(cmdline: &[u8]) -> Option<String> {
    let argv0 = cmdline.split(|&b| b == 0).next()?;
    let argv0 = String::from_utf8_lossy(argv0);
    let first_word = argv0.split_whitespace().next()?;
    let name = first_word.rsplit('/').next()?;
    (!name.is_empty()).then(|| name.to_string())
}

/// Writes `"<pid>\n"` to a temporary file next to `path` and locks it, to
/// be renamed to `path` ([`place_over`], [`place_if_absent`]): a reader
/// never sees an empty or half-written pidfile, nor an unlocked one of ours.
fn locked_temporary(path: &Path, pid: u32) -> io::Result<tempfile::NamedTempFile> {
    let mut tmp = tempfile::Builder::new()
        .prefix(".gunicornd-pid.")
        .tempfile_in(parent_dir(path))?;
    writeln!(tmp, "{pid}")?;
    // Set explicitly: the temporary file is created 0600, and a umask must
    // not make the pidfile unreadable to init scripts either.
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(PIDFILE_MODE))?;
    match try_lock(tmp.as_file()) {
        Ok(true) => Ok(tmp),
        Err(errno) if lock_unsupported(errno) => Ok(tmp),
        Ok(false) => Err(io::Error::other("a new temporary file is locked")),
        Err(errno) => Err(errno.into()),
    }
}

/// Our pidfile at `path`, over whatever is there.
fn place_over(path: &Path, pid: u32) -> io::Result<File> {
    locked_temporary(path, pid)?
        .persist(path)
        .map_err(|err| err.error)
}

/// Our pidfile at `path` if nothing is there; `None` if something is.
fn place_if_absent(path: &Path, pid: u32) -> io::Result<Option<File>> {
    match locked_temporary(path, pid)?.persist_noclobber(path) {
        Ok(file) => Ok(Some(file)),
        Err(err) if err.error.kind() == io::ErrorKind::AlreadyExists => Ok(None),
        Err(err) => Err(err.error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::process::{Child, Command};
    use std::time::{Duration, Instant};

    /// Kills and reaps a child process when dropped, even if the test fails.
    struct ChildGuard(Child);

    impl ChildGuard {
        fn pid(&self) -> u32 {
            self.0.id()
        }
    }

    impl Drop for ChildGuard {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn spawn_sleep(program: &Path, arg0: Option<&str>) -> ChildGuard {
        let mut cmd = Command::new(program);
        cmd.arg("60");
        if let Some(arg0) = arg0 {
            std::os::unix::process::CommandExt::arg0(&mut cmd, arg0);
        }
        // A freshly copied executable can be briefly "busy" (ETXTBSY) while
        // another test thread's fork still holds the copy's write descriptor.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match cmd.spawn() {
                Ok(child) => return wait_until_execed(ChildGuard(child), program),
                Err(err)
                    if err.raw_os_error() == Some(libc::ETXTBSY) && Instant::now() < deadline =>
                {
                    std::thread::yield_now()
                }
                Err(err) => panic!("cannot spawn {}: {err}", program.display()),
            }
        }
    }

    /// `spawn` returns once exec succeeded, but poll /proc anyway so the
    /// checks never look at the pre-exec copy of the test runner.
    fn wait_until_execed(child: ChildGuard, program: &Path) -> ChildGuard {
        let deadline = Instant::now() + Duration::from_secs(10);
        let cmdline = format!("/proc/{}/cmdline", child.pid());
        while Instant::now() < deadline {
            if let Ok(content) = fs::read(&cmdline) {
                if content.ends_with(b"60\0") {
                    return child;
                }
            }
            std::thread::yield_now();
        }
        panic!("{} did not start", program.display());
    }

    fn dead_pid() -> u32 {
        let mut child = Command::new("true").spawn().expect("spawn true");
        let pid = child.id();
        child.wait().expect("wait true");
        pid
    }

    fn sleep_binary() -> PathBuf {
        ["/bin/sleep", "/usr/bin/sleep"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .expect("sleep binary")
    }

    fn our_pid() -> u32 {
        std::process::id()
    }

    #[test]
    fn writes_pid_and_newline_with_mode_0644() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.pid");
        let pidfile = Pidfile::create(&path, 4242).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "4242\n");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        assert_eq!(pidfile.path(), path);
        assert_eq!(pidfile.pid(), 4242);
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn missing_directory_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = Pidfile::create(&missing.join("g.pid"), our_pid()).unwrap_err();
        assert!(
            matches!(err, PidfileError::MissingDirectory { .. }),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains(&missing.display().to_string()),
            "{message}"
        );
        assert!(message.contains("does not exist"), "{message}");
    }

    #[test]
    fn stale_pidfile_of_a_dead_process_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.pid");
        fs::write(&path, format!("{}\n", dead_pid())).unwrap();
        Pidfile::create(&path, our_pid()).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("{}\n", our_pid())
        );
    }

    #[test]
    fn garbage_and_non_positive_pids_are_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.pid");
        for content in ["", "abc\n", "0\n", "-1\n", "99999999999\n"] {
            fs::write(&path, content).unwrap();
            Pidfile::create(&path, our_pid()).unwrap();
            assert_eq!(
                fs::read_to_string(&path).unwrap(),
                format!("{}\n", our_pid())
            );
        }
    }

    #[test]
    fn pidfile_holding_our_own_pid_is_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.pid");
        fs::write(&path, format!("{}", our_pid())).unwrap();
        Pidfile::create(&path, our_pid()).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("{}\n", our_pid())
        );
    }

    #[test]
    fn live_process_that_is_not_gunicornd_is_treated_as_stale() {
        let sleeper = spawn_sleep(&sleep_binary(), None);
        assert!(!process_is_gunicornd(sleeper.pid()));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.pid");
        fs::write(&path, format!("{}\n", sleeper.pid())).unwrap();
        Pidfile::create(&path, our_pid()).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("{}\n", our_pid())
        );
    }

    fn assert_refused_by(sleeper: &ChildGuard) {
        assert!(process_is_gunicornd(sleeper.pid()));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.pid");
        fs::write(&path, format!("{}\n", sleeper.pid())).unwrap();
        let err = Pidfile::create(&path, our_pid()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "Already running on PID {} (pidfile {})",
                sleeper.pid(),
                path.display()
            )
        );
        // The file is left alone.
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("{}\n", sleeper.pid())
        );
    }

    #[test]
    fn live_gunicornd_started_through_a_symlink_refuses_the_start() {
        // exe resolves to the real sleep; argv[0] and comm say gunicornd.
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("gunicornd");
        symlink(sleep_binary(), &link).unwrap();
        let sleeper = spawn_sleep(&link, None);
        assert_refused_by(&sleeper);
    }

    #[test]
    fn live_gunicornd_executable_refuses_the_start() {
        // exe is named gunicornd; argv[0] and comm are made to say otherwise.
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("gunicornd");
        fs::copy(sleep_binary(), &copy).unwrap();
        let sleeper = spawn_sleep(&copy, Some("sleep"));
        let exe = fs::read_link(format!("/proc/{}/exe", sleeper.pid())).unwrap();
        assert_eq!(exe.file_name().unwrap(), "gunicornd");
        assert_refused_by(&sleeper);
    }

    #[test]
    fn process_title_naming_gunicornd_refuses_the_start() {
        let sleeper = spawn_sleep(&sleep_binary(), Some("gunicornd: master [static:/srv/www]"));
        assert_refused_by(&sleeper);
    }

    #[test]
    fn indicators_are_combined() {
        let exe = Path::new("/usr/local/bin/gunicornd (deleted)");
        assert_eq!(names_gunicornd(Some(exe), None, None), Some(true));
        assert_eq!(
            names_gunicornd(Some(Path::new("/usr/bin/sleep")), None, None),
            Some(false)
        );
        assert_eq!(
            names_gunicornd(
                None,
                Some(b"/opt/x/gunicornd\0-b\x00127.0.0.1:8000\0"),
                None
            ),
            Some(true)
        );
        assert_eq!(
            names_gunicornd(None, Some(b"python3\0/opt/gunicornd.py\0"), None),
            Some(false)
        );
        assert_eq!(
            names_gunicornd(None, Some(b""), Some("gunicornd\n")),
            Some(true)
        );
        assert_eq!(
            names_gunicornd(
                Some(Path::new("/usr/bin/sleep")),
                Some(b"sleep\0"),
                Some("sleep\n")
            ),
            Some(false)
        );
        assert_eq!(names_gunicornd(None, None, None), None);
    }

    #[test]
    fn eperm_counts_as_alive() {
        assert!(is_alive(Ok(())));
        assert!(is_alive(Err(Errno::EPERM)));
        assert!(!is_alive(Err(Errno::ESRCH)));
    }

    #[test]
    fn unlink_removes_only_a_file_holding_our_pid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.pid");
        let pidfile = Pidfile::create(&path, our_pid()).unwrap();
        fs::write(&path, "1234567\n").unwrap();
        pidfile.unlink();
        assert_eq!(fs::read_to_string(&path).unwrap(), "1234567\n");

        fs::write(&path, format!("{}\n", our_pid())).unwrap();
        pidfile.unlink();
        assert!(!path.exists());
        // Unlinking again (file gone) is harmless.
        pidfile.unlink();
    }

    #[test]
    fn a_held_pidfile_refuses_a_second_master_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.pid");
        let held = Pidfile::create(&path, our_pid()).unwrap();
        // Even a file that no longer names a gunicornd: the lock decides.
        let err = Pidfile::create(&path, dead_pid()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "Already running on PID {} (pidfile {})",
                our_pid(),
                path.display()
            )
        );
        held.unlink();
        drop(held);
        Pidfile::create(&path, dead_pid()).unwrap();
    }

    #[test]
    fn of_masters_racing_for_one_pidfile_exactly_one_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.pid");
        let barrier = std::sync::Barrier::new(8);
        let results: Vec<Result<Pidfile, PidfileError>> = std::thread::scope(|s| {
            let racers: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        Pidfile::create(&path, our_pid())
                    })
                })
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        let held = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(held, 1, "{results:?}");
        for r in &results {
            if let Err(e) = r {
                assert!(
                    matches!(e, PidfileError::AlreadyRunning { pid, .. } if *pid == our_pid()),
                    "{e}"
                );
            }
        }
    }

    #[test]
    fn a_file_locked_by_a_process_that_has_not_written_its_pid_is_still_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.pid");
        fs::write(&path, format!("{}\n", dead_pid())).unwrap();
        let file = open_existing(&path).unwrap();
        assert_eq!(try_lock(&file), Ok(true));
        let started = Instant::now();
        let err = Pidfile::create(&path, our_pid()).unwrap_err();
        assert!(matches!(err, PidfileError::Locked { .. }), "{err:?}");
        assert!(started.elapsed() >= HOLDER_WAIT);
        assert!(err.to_string().starts_with("Already running"), "{err}");
    }

    #[test]
    fn unlink_leaves_a_successor_file_even_with_the_same_pid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.pid");
        let pidfile = Pidfile::create(&path, our_pid()).unwrap();
        let successor = dir.path().join("g.pid.2");
        fs::write(&successor, format!("{}\n", our_pid())).unwrap();
        fs::rename(&successor, &path).unwrap();
        pidfile.unlink();
        assert!(path.exists(), "another file at the path is not ours");
    }

    #[test]
    fn the_lock_moves_with_a_renamed_pidfile() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.pid");
        let second = dir.path().join("g.pid.2");
        let mut pidfile = Pidfile::create(&second, our_pid()).unwrap();
        pidfile.rename(&path).unwrap();
        assert!(!second.exists());
        assert!(matches!(
            Pidfile::create(&path, dead_pid()),
            Err(PidfileError::AlreadyRunning { .. })
        ));
        // Moved already (the old master's hand_over): nothing to do.
        pidfile.rename(&path).unwrap();
        assert_eq!(pidfile.path(), path);
        // A locked file is not what a dead process left behind.
        remove_if_held_by(&path, our_pid());
        assert!(path.exists());
        pidfile.unlink();
        assert!(!path.exists());
    }

    #[test]
    fn a_symlink_at_the_path_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        fs::write(&target, "keep\n").unwrap();
        let path = dir.path().join("g.pid");
        symlink(&target, &path).unwrap();
        Pidfile::create(&path, our_pid()).unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep\n");
        assert!(!fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("{}\n", our_pid())
        );
    }

    #[test]
    fn unreadable_pidfile_path_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: reading fails with EISDIR.
        let path = dir.path().join("g.pid");
        fs::create_dir(&path).unwrap();
        let err = Pidfile::create(&path, our_pid()).unwrap_err();
        assert!(matches!(err, PidfileError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains(&path.display().to_string()));
    }
}
