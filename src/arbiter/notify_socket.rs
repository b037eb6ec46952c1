//! The master's `NOTIFY_SOCKET` for command workers: one datagram socket
//! that every exec'd worker is told about, read by the event loop like the
//! worker channel. A message counts for the worker whose pid the kernel
//! attaches to it (`SCM_CREDENTIALS`, [`crate::credentials`]); what the
//! pid is worth (one of this master's command workers, or nobody) is
//! `Pool::worker_notice`'s to judge.
//!
//! The socket is a file, `notify`, in a directory of its own made for this
//! master (mode 0700, or 0711 with the socket given to the workers' user
//! when they run as another one), so that no other user can send to it:
//! an abstract socket would take datagrams from anyone in the network
//! namespace, and a flood of those would delay the workers' own messages.
//!
//! A message is systemd's: newline-separated `NAME=value` assignments
//! (sd_notify(3)). [`Notice::parse`] keeps the ones a worker may use:
//! `READY=1`, `WATCHDOG=1` and `WATCHDOG=trigger`, `STATUS=`, `STOPPING=1`
//! and `EXTEND_TIMEOUT_USEC=`. Anything else (`RELOADING=1`, `MAINPID=`,
//! `FDSTORE=1`, ...) means nothing for a worker and is ignored; a datagram
//! that carries descriptors arrives without its sender and is dropped
//! whole.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::unistd::Pid;

use crate::credentials;

/// The longest message read; the rest of a longer one is cut (a complete
/// assignment is still used, the cut one is not).
const MESSAGE_MAX: usize = 4096;
/// The longest `STATUS=` text kept, in characters.
pub const STATUS_MAX: usize = 200;

/// What one sd_notify message from a worker says, as far as the master
/// acts on it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notice {
    /// `READY=1`: booted, now capacity.
    pub ready: bool,
    /// `WATCHDOG=1`: a heartbeat.
    pub watchdog: bool,
    /// `WATCHDOG=trigger`: treat the worker as hung at once.
    pub watchdog_trigger: bool,
    /// `STOPPING=1`: the worker leaves on its own.
    pub stopping: bool,
    /// `STATUS=`: free text for `gunicornctl workers`, one line, at most
    /// [`STATUS_MAX`] characters.
    pub status: Option<String>,
    /// `EXTEND_TIMEOUT_USEC=`: the deadline running now is pushed back to
    /// at least this far from now.
    pub extend_timeout: Option<Duration>,
}

impl Notice {
    /// The assignments of one datagram; `cut` says the datagram was longer
    /// than what was read, so its last line may be incomplete. Later
    /// assignments of the same name win, as in systemd.
    pub fn parse(datagram: &[u8], cut: bool) -> Notice {
        let mut notice = Notice::default();
        let mut lines: Vec<&[u8]> = datagram.split(|&b| b == b'\n').collect();
        if cut {
            lines.pop();
        }
        for line in lines {
            let Some(eq) = line.iter().position(|&b| b == b'=') else {
                continue;
            };
            let (name, value) = (&line[..eq], &line[eq + 1..]);
            match name {
                b"READY" => notice.ready = value == b"1",
                b"WATCHDOG" if value == b"1" => notice.watchdog = true,
                b"WATCHDOG" if value == b"trigger" => notice.watchdog_trigger = true,
                b"STOPPING" => notice.stopping = value == b"1",
                b"STATUS" => notice.status = Some(status_text(value)),
                b"EXTEND_TIMEOUT_USEC" => {
                    if let Some(usec) = std::str::from_utf8(value)
                        .ok()
                        .and_then(|v| v.trim().parse::<u64>().ok())
                    {
                        notice.extend_timeout = Some(Duration::from_micros(usec));
                    }
                }
                _ => {}
            }
        }
        notice
    }
}

/// A `STATUS=` value as it is shown: valid UTF-8 (lossy), control
/// characters as spaces, at most [`STATUS_MAX`] characters.
fn status_text(value: &[u8]) -> String {
    String::from_utf8_lossy(value)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(STATUS_MAX)
        .collect::<String>()
        .trim_end()
        .to_owned()
}

/// What one read of the socket gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// A message and the pid that sent it.
    Notice(Pid, Notice),
    /// A datagram whose sender the kernel did not name (it attached
    /// descriptors): ignored, the reason is for the log.
    Ignored(String),
}

/// The socket and the directory it lives in, both removed when dropped.
#[derive(Debug)]
pub struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
    /// Held for its drop, which removes it with the socket file.
    _dir: tempfile::TempDir,
}

impl NotifySocket {
    /// Make the directory in `parent` and bind the socket in it. `owner`:
    /// the workers' uid and gid when they run as another user, who must be
    /// able to send.
    pub fn bind(parent: &Path, owner: Option<(u32, u32)>) -> io::Result<NotifySocket> {
        let dir = tempfile::Builder::new()
            .prefix("gunicornd-notify-")
            .tempdir_in(parent)?;
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path)?;
        socket.set_nonblocking(true)?;
        credentials::pass_credentials(&socket)?;
        // Nobody else can write in the directory (made just now, 0700), so
        // the names in it are ours. The socket's mode came from the umask:
        // only its owner may send, whatever that was.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        if let Some((uid, gid)) = owner {
            // Given through the directory's descriptor all the same, never
            // following a link.
            let dir_fd = std::fs::File::open(dir.path())?;
            nix::unistd::fchownat(
                &dir_fd,
                "notify",
                Some(nix::unistd::Uid::from_raw(uid)),
                Some(nix::unistd::Gid::from_raw(gid)),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )?;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))?;
        }
        Ok(NotifySocket {
            socket,
            path,
            _dir: dir,
        })
    }

    /// Where workers send (their `NOTIFY_SOCKET`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next message, without waiting; `Ok(None)` when none is queued.
    pub fn receive(&self) -> io::Result<Option<Received>> {
        let mut buf = [0u8; MESSAGE_MAX];
        let Some(datagram) = credentials::receive(&self.socket, &mut buf)? else {
            return Ok(None);
        };
        let Some(sender) = datagram.sender else {
            return Ok(Some(Received::Ignored(
                "a NOTIFY_SOCKET message without its sender's credentials (did it attach \
                 descriptors?)"
                    .to_owned(),
            )));
        };
        let notice = Notice::parse(&buf[..datagram.len], datagram.truncated);
        Ok(Some(Received::Notice(sender.pid, notice)))
    }
}

impl AsFd for NotifySocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl AsRawFd for NotifySocket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.socket.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_are_parsed_as_systemd_reads_them() {
        let n = Notice::parse(b"READY=1\nSTATUS=serving 3 clients\nWATCHDOG=1\n", false);
        assert!(n.ready && n.watchdog && !n.stopping && !n.watchdog_trigger);
        assert_eq!(n.status.as_deref(), Some("serving 3 clients"));
        let n = Notice::parse(b"EXTEND_TIMEOUT_USEC=2500000\nSTOPPING=1", false);
        assert_eq!(n.extend_timeout, Some(Duration::from_millis(2500)));
        assert!(n.stopping && !n.ready);
        assert!(Notice::parse(b"WATCHDOG=trigger", false).watchdog_trigger);
        // Values other than 1 are no such state; unknown names and lines
        // without '=' mean nothing; the last assignment wins.
        assert_eq!(
            Notice::parse(
                b"READY=0\nRELOADING=1\nMAINPID=1\nnonsense\nWATCHDOG=2",
                false
            ),
            Notice::default()
        );
        assert!(!Notice::parse(b"READY=1\nREADY=0", false).ready);
        assert_eq!(
            Notice::parse(b"EXTEND_TIMEOUT_USEC=-5", false).extend_timeout,
            None
        );
    }

    #[test]
    fn status_is_one_bounded_line_and_a_cut_line_is_dropped() {
        let n = Notice::parse(b"STATUS=a\tb\x1b[31mc\xff \nREADY=1", false);
        assert_eq!(n.status.as_deref(), Some("a b [31mc\u{fffd}"));
        let long = format!("STATUS={}", "x".repeat(500));
        let n = Notice::parse(long.as_bytes(), false);
        assert_eq!(n.status.unwrap().chars().count(), STATUS_MAX);
        // The datagram was cut: its last (incomplete) line is not used.
        let n = Notice::parse(b"STATUS=ok\nREADY=1", true);
        assert_eq!(n.status.as_deref(), Some("ok"));
        assert!(!n.ready);
    }

    #[test]
    fn messages_come_with_the_sender_pid() {
        let parent = tempfile::tempdir().unwrap();
        let socket = NotifySocket::bind(parent.path(), None).unwrap();
        assert_eq!(socket.receive().unwrap(), None);
        let client = UnixDatagram::unbound().unwrap();
        client
            .send_to(b"READY=1\nSTATUS=up", socket.path())
            .unwrap();
        match socket.receive().unwrap() {
            Some(Received::Notice(pid, notice)) => {
                assert_eq!(pid, nix::unistd::getpid());
                assert!(notice.ready);
                assert_eq!(notice.status.as_deref(), Some("up"));
            }
            other => panic!("{other:?}"),
        }
        let dir = socket.path().parent().unwrap().to_path_buf();
        drop(socket);
        assert!(!dir.exists(), "the directory goes with the socket");
    }
}
