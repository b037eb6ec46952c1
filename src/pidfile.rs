//! The master's pidfile (`-p/--pid FILE`).
//!
//! Behaviour follows gunicorn's `Pidfile` (`gunicorn/pidfile.py`), made
//! robust against crashes, pid reuse and upgrades:
//!
//! - The file is written atomically (temporary file in the same directory,
//!   then `rename(2)`), holds `"<pid>\n"` and has mode 0644 whatever the umask.
//! - A pidfile naming a live gunicornd refuses the start. A pidfile naming a
//!   dead process, or holding garbage, is replaced. A pidfile naming a live
//!   process that is *not* gunicornd (the pid was reused after a crash or a
//!   reboot) is replaced too, with a warning, instead of blocking the start
//!   forever as gunicorn does.
//! - The file is removed only by the process whose pid it holds, so an old
//!   master leaving after a binary upgrade never deletes its successor's file.
//!
//! There is deliberately no `Drop` implementation: workers are forked from
//! the master and carry a copy of its `Pidfile`; since the file holds the
//! master's pid, a worker dropping its copy would delete the master's file.
//! The master calls [`Pidfile::unlink`] explicitly on its way out.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use tracing::{debug, info, warn};

/// Mode of the pidfile: readable by everyone (init scripts and monitoring
/// often run as another user), writable by the owner only.
const PIDFILE_MODE: u32 = 0o644;

/// The name the checks in [`process_is_gunicornd`] look for.
const PROGRAM_NAME: &str = "gunicornd";

/// A pidfile written by this process. See the module documentation.
#[derive(Debug)]
pub struct Pidfile {
    path: PathBuf,
    pid: u32,
}

/// Why a pidfile could not be created.
#[derive(Debug)]
pub enum PidfileError {
    /// The directory that should hold the pidfile does not exist.
    MissingDirectory { dir: PathBuf, path: PathBuf },
    /// The pidfile names a gunicornd that is still running.
    AlreadyRunning { pid: u32, path: PathBuf },
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
    /// Writes `pid` to `path` after checking that no other gunicornd holds it.
    ///
    /// A relative `path` is used as given (relative to the current directory
    /// at the time of the call); the caller resolves it against `--chdir`.
    pub fn create(path: &Path, pid: u32) -> Result<Pidfile, PidfileError> {
        check_directory(path)?;
        match read_pid(path).map_err(|source| io_error(path, source))? {
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
                Probe::AliveGunicornd => {
                    return Err(PidfileError::AlreadyRunning {
                        pid: held,
                        path: path.to_path_buf(),
                    })
                }
            },
        }
        write_atomically(path, pid).map_err(|source| io_error(path, source))?;
        Ok(Pidfile {
            path: path.to_path_buf(),
            pid,
        })
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
    /// old master may have moved it already ([`hand_over`]).
    pub fn rename(&mut self, to: &Path) -> io::Result<()> {
        let moved_already = !self.path.exists()
            && matches!(read_pid(to), Ok(Holder::Pid(held)) if held == self.pid);
        if !moved_already {
            fs::rename(&self.path, to)?;
        }
        self.path = to.to_path_buf();
        Ok(())
    }

    /// Removes the file if it still holds our pid.
    ///
    /// Errors are logged at debug level and otherwise ignored: this runs on
    /// the way out, when there is nothing better to do about them.
    pub fn unlink(&self) {
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

/// Remove the pidfile at `path` if it holds `pid`: what a process that
/// died without cleaning up (a new master of an upgrade) left behind.
pub fn remove_if_held_by(path: &Path, pid: u32) {
    if let Ok(Holder::Pid(held)) = read_pid(path) {
        if held == pid {
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

/// Writes `"<pid>\n"` to a temporary file next to `path` and renames it over
/// `path`, so a reader never sees an empty or half-written pidfile.
fn write_atomically(path: &Path, pid: u32) -> io::Result<()> {
    let mut tmp = tempfile::Builder::new()
        .prefix(".gunicornd-pid.")
        .tempfile_in(parent_dir(path))?;
    writeln!(tmp, "{pid}")?;
    // Set explicitly: the temporary file is created 0600, and a umask must
    // not make the pidfile unreadable to init scripts either.
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(PIDFILE_MODE))?;
    tmp.persist(path).map_err(|err| err.error)?;
    Ok(())
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
