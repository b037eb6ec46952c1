//! Datagrams with their sender's credentials, as the kernel records them
//! (`SO_PASSCRED` / `SCM_CREDENTIALS` on Unix sockets).
//!
//! A message that names its sender can lie; the credentials the kernel
//! attaches cannot, short of privilege: a process may present another pid
//! only with `CAP_SYS_ADMIN`, another uid or gid only with `CAP_SETUID` or
//! `CAP_SETGID` (unix(7)). So whoever reads a socket shared by several
//! processes (the worker channel, `worker/notify.rs`) learns from here who
//! sent each datagram, and trusts nothing the datagram says about that.
//!
//! Descriptors a sender attaches (`SCM_RIGHTS`) are never installed: the
//! control buffer has room for the credentials alone, and the kernel
//! discards what does not fit (unix(7), "MSG_CTRUNC"). Such a datagram
//! comes back without a sender, like any whose control data was cut.

use std::io::{self, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd};

use nix::errno::Errno;
use nix::sys::socket::{
    recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, UnixCredentials,
};
use nix::unistd::Pid;

/// Who sent a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sender {
    /// In this process's pid namespace (0 if the sender is not visible
    /// from it).
    pub pid: Pid,
    pub uid: u32,
    pub gid: u32,
}

/// One received datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram {
    /// Bytes stored in the buffer.
    pub len: usize,
    /// `None` when the kernel gave no credentials or the control data was
    /// cut (the sender attached something besides them): then nobody can
    /// say who sent it.
    pub sender: Option<Sender>,
    /// The datagram was longer than the buffer; the rest is lost.
    pub truncated: bool,
}

/// Ask the kernel to attach the sender's credentials to every datagram
/// `socket` receives from now on (set it before anyone may send).
pub fn pass_credentials(socket: &impl AsFd) -> io::Result<()> {
    setsockopt(socket, sockopt::PassCred, &true).map_err(io::Error::from)
}

/// Receive one datagram into `buf` without waiting: `Ok(None)` when none is
/// queued. The socket must have [`pass_credentials`] set.
pub fn receive(socket: &impl AsFd, buf: &mut [u8]) -> io::Result<Option<Datagram>> {
    let mut iov = [IoSliceMut::new(buf)];
    // Exactly one SCM_CREDENTIALS fits: see the module comment.
    let mut control = nix::cmsg_space!(UnixCredentials);
    let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC;
    let msg = loop {
        match recvmsg::<()>(
            socket.as_fd().as_raw_fd(),
            &mut iov,
            Some(&mut control),
            flags,
        ) {
            Ok(msg) => break msg,
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    };
    let mut sender = None;
    // Err: the control data was cut (MSG_CTRUNC); the sender stays unknown.
    if let Ok(messages) = msg.cmsgs() {
        for message in messages {
            match message {
                ControlMessageOwned::ScmCredentials(c) => {
                    sender = Some(Sender {
                        pid: Pid::from_raw(c.pid()),
                        uid: c.uid(),
                        gid: c.gid(),
                    });
                }
                ControlMessageOwned::ScmRights(fds) => {
                    // Cannot fit (see above); closed all the same should a
                    // kernel ever deliver one.
                    for fd in fds {
                        let _ = nix::unistd::close(fd);
                    }
                }
                _ => {}
            }
        }
    }
    Ok(Some(Datagram {
        len: msg.bytes,
        sender,
        truncated: msg.flags.contains(MsgFlags::MSG_TRUNC),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{
        sendmsg, socketpair, AddressFamily, ControlMessage, SockFlag, SockType,
    };
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult};
    use std::io::IoSlice;
    use std::os::fd::OwnedFd;

    fn pair() -> (OwnedFd, OwnedFd) {
        let (reader, writer) = socketpair(
            AddressFamily::Unix,
            SockType::Datagram,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        pass_credentials(&reader).unwrap();
        (reader, writer)
    }

    fn open_fds() -> usize {
        std::fs::read_dir("/proc/self/fd").unwrap().count()
    }

    /// Runs `child` in a forked process (which exits with what it returns)
    /// and returns its pid once it has exited 0.
    fn in_child(child: impl FnOnce() -> i32) -> Pid {
        // SAFETY: the child makes system calls on memory prepared before
        // the fork and leaves with _exit.
        match unsafe { fork() }.unwrap() {
            ForkResult::Child => {
                let code = child();
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => {
                assert_eq!(waitpid(child, None).unwrap(), WaitStatus::Exited(child, 0));
                child
            }
        }
    }

    #[test]
    fn the_sender_is_the_process_that_sent() {
        let (reader, writer) = pair();
        let mut buf = [0u8; 16];
        assert_eq!(receive(&reader, &mut buf).unwrap(), None, "nothing queued");
        let child = in_child(|| {
            match nix::sys::socket::send(writer.as_raw_fd(), b"hello", MsgFlags::empty()) {
                Ok(5) => 0,
                _ => 1,
            }
        });
        let got = receive(&reader, &mut buf).unwrap().expect("a datagram");
        assert_eq!(&buf[..got.len], b"hello");
        assert!(!got.truncated);
        let sender = got.sender.expect("credentials");
        assert_eq!(sender.pid, child);
        assert_eq!(sender.uid, nix::unistd::getuid().as_raw());
        assert_eq!(sender.gid, nix::unistd::getgid().as_raw());
    }

    #[test]
    fn a_long_datagram_is_reported_truncated() {
        let (reader, writer) = pair();
        nix::sys::socket::send(writer.as_raw_fd(), &[7u8; 32], MsgFlags::empty()).unwrap();
        let mut buf = [0u8; 8];
        let got = receive(&reader, &mut buf).unwrap().unwrap();
        assert_eq!(got.len, 8);
        assert!(got.truncated);
        assert!(got.sender.is_some());
    }

    #[test]
    fn attached_descriptors_are_never_installed() {
        let (reader, writer) = pair();
        let passed = std::fs::File::open("/dev/null").unwrap();
        let fds = [passed.as_raw_fd(); 4];
        let before = open_fds();
        sendmsg::<()>(
            writer.as_raw_fd(),
            &[IoSlice::new(b"x")],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        let mut buf = [0u8; 8];
        let got = receive(&reader, &mut buf).unwrap().unwrap();
        assert_eq!(got.len, 1);
        assert_eq!(got.sender, None, "cut control data: the sender is unknown");
        assert_eq!(open_fds(), before, "no descriptor was installed");
    }

    /// Without privilege a process cannot present another pid: the kernel
    /// refuses the send (EPERM). Run as root, the child first gives up
    /// root, as a worker started with --user does.
    #[test]
    fn an_unprivileged_sender_cannot_claim_another_pid() {
        let (reader, writer) = pair();
        let claimed = libc::ucred {
            pid: nix::unistd::getpid().as_raw(),
            uid: 65534,
            gid: 65534,
        };
        let creds = UnixCredentials::from(claimed);
        let is_root = nix::unistd::geteuid().is_root();
        in_child(|| {
            if is_root
                && (nix::unistd::setgid(nix::unistd::Gid::from_raw(65534)).is_err()
                    || nix::unistd::setuid(nix::unistd::Uid::from_raw(65534)).is_err())
            {
                return 2;
            }
            match sendmsg::<()>(
                writer.as_raw_fd(),
                &[IoSlice::new(b"forged")],
                &[ControlMessage::ScmCredentials(&creds)],
                MsgFlags::empty(),
                None,
            ) {
                Err(Errno::EPERM) => 0,
                _ => 1,
            }
        });
        let mut buf = [0u8; 8];
        assert_eq!(receive(&reader, &mut buf).unwrap(), None, "nothing arrived");
    }
}
