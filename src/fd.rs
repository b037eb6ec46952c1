//! Flags of file descriptors the master creates or inherits, and the
//! identity of the files it owns.

use std::fmt;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};

/// Switch the open file description to non-blocking. For a socket or pipe
/// shared with forked workers this changes it for them too.
pub fn set_nonblocking(fd: impl AsFd) -> nix::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(fd.as_fd(), FcntlArg::F_GETFL)?);
    fcntl(fd.as_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// Keep the descriptor from crossing an `execve` (hooks, exec'd programs).
pub fn set_cloexec(fd: impl AsFd) -> nix::Result<()> {
    fcntl(fd.as_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    Ok(())
}

/// Which file a name or a descriptor refers to: its device and inode. A
/// file is removed only while its path still names the file its owner
/// recorded (ARCHITECTURE.md, rule 4): a path alone may have been given to
/// someone else's file since, under any spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    /// What `path` itself names (a symlink is not followed); `None` when
    /// nothing is there (or it cannot be looked at).
    pub fn of_path(path: &Path) -> Option<FileId> {
        std::fs::symlink_metadata(path)
            .ok()
            .map(|m| FileId::of_metadata(&m))
    }

    /// The file open at `fd`.
    pub fn of_fd(fd: impl AsFd) -> nix::Result<FileId> {
        let st = nix::sys::stat::fstat(fd)?;
        Ok(FileId {
            dev: st.st_dev,
            ino: st.st_ino,
        })
    }

    pub fn of_metadata(meta: &std::fs::Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }

    /// The `DEV:INO` form of [`fmt::Display`], back (for the environment of
    /// a new master, which inherits files it may own later).
    pub fn parse(s: &str) -> Option<FileId> {
        let (dev, ino) = s.split_once(':')?;
        Some(FileId {
            dev: dev.parse().ok()?,
            ino: ino.parse().ok()?,
        })
    }
}

impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.dev, self.ino)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_ids_tell_files_apart_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::write(&a, "a").unwrap();
        std::fs::write(&b, "b").unwrap();
        let id = FileId::of_path(&a).unwrap();
        assert_ne!(Some(id), FileId::of_path(&b));
        let file = std::fs::File::open(&a).unwrap();
        assert_eq!(FileId::of_fd(&file).unwrap(), id);
        // Another spelling of the same path names the same file.
        let spelled = dir.path().join(".").join("a");
        assert_eq!(FileId::of_path(&spelled), Some(id));
        assert_eq!(FileId::parse(&id.to_string()), Some(id));
        assert_eq!(FileId::parse("3"), None);
        assert_eq!(FileId::of_path(&dir.path().join("missing")), None);
        // A symlink is a file of its own.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&a, &link).unwrap();
        assert_ne!(FileId::of_path(&link), Some(id));
    }
}
