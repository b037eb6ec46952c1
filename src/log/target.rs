//! Where log lines go: stdout, stderr, or an append-only file that can be
//! reopened in place.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;

/// Who a log file is given to (the workers' uid and gid); `(None, None)`
/// leaves files as they are.
pub(crate) type Owner = (Option<u32>, Option<u32>);

/// One log destination.
#[derive(Debug)]
pub(crate) enum LogTarget {
    Stdout,
    Stderr,
    /// A file opened `O_WRONLY|O_APPEND|O_CREAT|O_CLOEXEC`, mode 0644 less
    /// the umask. With `O_APPEND` each `write(2)` lands at the end of the
    /// file as one piece, so lines from the master and the workers (which
    /// share the file through fork) do not interleave.
    File {
        path: PathBuf,
        fd: OwnedFd,
        /// Given the file on every open (the module documentation of
        /// `log` says why).
        owner: Owner,
    },
}

impl LogTarget {
    /// `"-"` means `dash` (stdout or stderr), anything else a file path,
    /// which is given to `owner`.
    pub fn open(spec: &str, dash: LogTarget, owner: Owner) -> Result<LogTarget, String> {
        if spec == "-" {
            return Ok(dash);
        }
        let path = PathBuf::from(spec);
        let fd =
            open_append(&path, owner).map_err(|e| format!("cannot open log file {spec}: {e}"))?;
        Ok(LogTarget::File { path, fd, owner })
    }

    /// Write `line` (which should end in `\n`) with a single `write(2)`,
    /// continuing only if the kernel took part of it (pipes, signals).
    /// Whether a write of up to `PIPE_BUF` bytes would not block now.
    pub fn ready(&self) -> bool {
        let fd = match self {
            LogTarget::Stdout => libc::STDOUT_FILENO,
            LogTarget::Stderr => libc::STDERR_FILENO,
            LogTarget::File { fd, .. } => std::os::fd::AsRawFd::as_raw_fd(fd),
        };
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no wait.
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        n == 1 && pfd.revents & libc::POLLOUT != 0
    }

    pub fn write_line(&self, line: &[u8]) -> io::Result<()> {
        match self {
            LogTarget::Stdout => write_all(io::stdout().as_fd(), line),
            LogTarget::Stderr => write_all(io::stderr().as_fd(), line),
            LogTarget::File { fd, .. } => write_all(fd.as_fd(), line),
        }
    }

    /// Open the file again by path (creating it if it was rotated away) and
    /// put the new open file under the old descriptor number with `dup3`, so
    /// anything holding that number writes to the new file. Streams are left
    /// alone. On failure the old file stays in use.
    pub fn reopen(&mut self) -> Result<(), String> {
        let LogTarget::File { path, fd, owner } = self else {
            return Ok(());
        };
        let fresh = open_append(path, *owner)
            .map_err(|e| format!("cannot reopen log file {}: {e}", path.display()))?;
        nix::unistd::dup3(&fresh, fd, OFlag::O_CLOEXEC)
            .map_err(|e| format!("cannot reopen log file {}: {e}", path.display()))
    }
}

/// Open `path` for appending, creating it if needed, and give it to
/// `owner` when it is a plain file of ours to give: reached without a
/// symlink (`O_NOFOLLOW`) and with a single link. A symlink (`/dev/stdout`,
/// a link an administrator made) is followed as before but its target is
/// never given away.
fn open_append(path: &Path, owner: Owner) -> io::Result<OwnedFd> {
    // std opens with O_CLOEXEC: log files must not leak into exec'd hooks or
    // a re-exec'd master (which opens its own).
    let open = |flags: libc::c_int| {
        OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o644)
            .custom_flags(flags)
            .open(path)
    };
    match open(libc::O_NOFOLLOW) {
        Ok(file) => {
            give_to(&file, owner);
            Ok(OwnedFd::from(file))
        }
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => open(0).map(OwnedFd::from),
        Err(e) => Err(e),
    }
}

/// `fchown` the open log file to `owner` if it is a regular file with one
/// link that `owner` does not have yet. A failure is ignored, as gunicorn
/// ignores it: a file system without owners, or a master that may not
/// give files away (it is not root, and then its workers cannot switch
/// users either).
fn give_to(file: &File, owner: Owner) {
    let (uid, gid) = owner;
    if uid.is_none() && gid.is_none() {
        return;
    }
    let Ok(meta) = file.metadata() else { return };
    let differs = uid.is_some_and(|u| u != meta.uid()) || gid.is_some_and(|g| g != meta.gid());
    if !meta.is_file() || meta.nlink() != 1 || !differs {
        return;
    }
    let _ = nix::unistd::fchown(
        file,
        uid.map(nix::unistd::Uid::from_raw),
        gid.map(nix::unistd::Gid::from_raw),
    );
}

fn write_all(fd: std::os::fd::BorrowedFd<'_>, mut rest: &[u8]) -> io::Result<()> {
    while !rest.is_empty() {
        match nix::unistd::write(fd, rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => rest = &rest[n..],
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// No owner to give files to.
    const NO_OWNER: Owner = (None, None);

    #[test]
    fn dash_is_the_stream() {
        assert!(matches!(
            LogTarget::open("-", LogTarget::Stderr, NO_OWNER),
            Ok(LogTarget::Stderr)
        ));
        assert!(matches!(
            LogTarget::open("-", LogTarget::Stdout, NO_OWNER),
            Ok(LogTarget::Stdout)
        ));
    }

    #[test]
    fn appends_to_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        fs::write(&path, "old\n").unwrap();
        let target = LogTarget::open(path.to_str().unwrap(), LogTarget::Stderr, NO_OWNER).unwrap();
        target.write_line(b"one\n").unwrap();
        target.write_line(b"two\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "old\none\ntwo\n");
    }

    #[test]
    fn creates_with_mode_0644_under_umask() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.log");
        LogTarget::open(path.to_str().unwrap(), LogTarget::Stderr, NO_OWNER).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        // The test process's umask can only remove bits from 0644.
        assert_eq!(mode & !0o644, 0, "{mode:o}");
        assert_ne!(mode & 0o600, 0, "{mode:o}");
    }

    #[test]
    fn open_error_names_the_file_and_the_os_error() {
        let err =
            LogTarget::open("/nonexistent-dir/x.log", LogTarget::Stderr, NO_OWNER).unwrap_err();
        assert_eq!(
            err,
            "cannot open log file /nonexistent-dir/x.log: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn reopen_recreates_a_rotated_file_under_the_same_fd() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let rotated = dir.path().join("app.log.1");
        let mut target =
            LogTarget::open(path.to_str().unwrap(), LogTarget::Stderr, NO_OWNER).unwrap();
        let LogTarget::File { fd, .. } = &target else {
            unreachable!()
        };
        let fd_number = fd.as_raw_fd();
        target.write_line(b"before\n").unwrap();
        fs::rename(&path, &rotated).unwrap();
        target.write_line(b"still old\n").unwrap();

        target.reopen().unwrap();
        target.write_line(b"after\n").unwrap();

        assert_eq!(fs::read_to_string(&rotated).unwrap(), "before\nstill old\n");
        assert_eq!(fs::read_to_string(&path).unwrap(), "after\n");
        let LogTarget::File { fd, .. } = &target else {
            unreachable!()
        };
        assert_eq!(fd.as_raw_fd(), fd_number);
        let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert_ne!(
            flags & libc::FD_CLOEXEC,
            0,
            "reopened fd lost close-on-exec"
        );
    }

    #[test]
    fn files_are_given_to_the_owner_unless_reached_through_a_link() {
        // Giving files away needs root; the tests run as root in CI.
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED: needs root");
            return;
        }
        let owner: Owner = (Some(65534), Some(65534));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let mut target = LogTarget::open(path.to_str().unwrap(), LogTarget::Stderr, owner).unwrap();
        let owned = |p: &Path| {
            let m = fs::symlink_metadata(p).unwrap();
            (m.uid(), m.gid())
        };
        assert_eq!(owned(&path), (65534, 65534));
        // Rotated away: the reopened (new) file is given too.
        fs::rename(&path, dir.path().join("app.log.1")).unwrap();
        target.reopen().unwrap();
        assert_eq!(owned(&path), (65534, 65534));

        // A symlink at the path is followed, but its target keeps its owner.
        let secret = dir.path().join("secret");
        fs::write(&secret, "").unwrap();
        let link = dir.path().join("link.log");
        std::os::unix::fs::symlink(&secret, &link).unwrap();
        LogTarget::open(link.to_str().unwrap(), LogTarget::Stderr, owner).unwrap();
        assert_eq!(owned(&secret), (0, 0));
        // So does a file with a second name (a hard link planted there).
        let linked = dir.path().join("hard.log");
        fs::hard_link(&secret, &linked).unwrap();
        LogTarget::open(linked.to_str().unwrap(), LogTarget::Stderr, owner).unwrap();
        assert_eq!(owned(&secret), (0, 0));
    }

    #[test]
    fn failed_reopen_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("logs");
        fs::create_dir(&sub).unwrap();
        let path = sub.join("app.log");
        let mut target =
            LogTarget::open(path.to_str().unwrap(), LogTarget::Stderr, NO_OWNER).unwrap();
        fs::rename(&sub, dir.path().join("gone")).unwrap();
        let err = target.reopen().unwrap_err();
        assert!(err.starts_with("cannot reopen log file"), "{err}");
        target.write_line(b"kept\n").unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("gone/app.log")).unwrap(),
            "kept\n"
        );
    }
}
