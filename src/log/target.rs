//! Where log lines go: stdout, stderr, or an append-only file that can be
//! reopened in place.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;

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
    },
}

impl LogTarget {
    /// `"-"` means `dash` (stdout or stderr), anything else a file path.
    pub fn open(spec: &str, dash: LogTarget) -> Result<LogTarget, String> {
        if spec == "-" {
            return Ok(dash);
        }
        let path = PathBuf::from(spec);
        let fd = open_append(&path).map_err(|e| format!("cannot open log file {spec}: {e}"))?;
        Ok(LogTarget::File { path, fd })
    }

    /// Write `line` (which should end in `\n`) with a single `write(2)`,
    /// continuing only if the kernel took part of it (pipes, signals).
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
        let LogTarget::File { path, fd } = self else {
            return Ok(());
        };
        let fresh = open_append(path)
            .map_err(|e| format!("cannot reopen log file {}: {e}", path.display()))?;
        nix::unistd::dup3(&fresh, fd, OFlag::O_CLOEXEC)
            .map_err(|e| format!("cannot reopen log file {}: {e}", path.display()))
    }
}

fn open_append(path: &Path) -> io::Result<OwnedFd> {
    // std opens with O_CLOEXEC: log files must not leak into exec'd hooks or
    // a re-exec'd master (which opens its own).
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .open(path)
        .map(OwnedFd::from)
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

    #[test]
    fn dash_is_the_stream() {
        assert!(matches!(
            LogTarget::open("-", LogTarget::Stderr),
            Ok(LogTarget::Stderr)
        ));
        assert!(matches!(
            LogTarget::open("-", LogTarget::Stdout),
            Ok(LogTarget::Stdout)
        ));
    }

    #[test]
    fn appends_to_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        fs::write(&path, "old\n").unwrap();
        let target = LogTarget::open(path.to_str().unwrap(), LogTarget::Stderr).unwrap();
        target.write_line(b"one\n").unwrap();
        target.write_line(b"two\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "old\none\ntwo\n");
    }

    #[test]
    fn creates_with_mode_0644_under_umask() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.log");
        LogTarget::open(path.to_str().unwrap(), LogTarget::Stderr).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        // The test process's umask can only remove bits from 0644.
        assert_eq!(mode & !0o644, 0, "{mode:o}");
        assert_ne!(mode & 0o600, 0, "{mode:o}");
    }

    #[test]
    fn open_error_names_the_file_and_the_os_error() {
        let err = LogTarget::open("/nonexistent-dir/x.log", LogTarget::Stderr).unwrap_err();
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
        let mut target = LogTarget::open(path.to_str().unwrap(), LogTarget::Stderr).unwrap();
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
    fn failed_reopen_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("logs");
        fs::create_dir(&sub).unwrap();
        let path = sub.join("app.log");
        let mut target = LogTarget::open(path.to_str().unwrap(), LogTarget::Stderr).unwrap();
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
