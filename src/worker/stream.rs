//! An accepted client socket, non-blocking, read and written as if it
//! were blocking but with a progress deadline: a read or write that would
//! block waits in `poll(2)` for at most the stream's patience, and every
//! byte that moves counts as the worker's heartbeat.
//!
//! Non-blocking rather than `SO_RCVTIMEO`/`SO_SNDTIMEO`: the worker's event
//! loop (`super::clients`) reads the heads of many connections at once
//! with the same descriptors, and a fast request costs no `setsockopt`.
//!
//! On a TLS listener the stream holds the connection's `tls::Session` and
//! every read and write goes through it: the handshake happens inside the
//! first reads, under the same deadlines.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

use crate::scoreboard::Slot;
use crate::tls::{Session, TlsInfo};

/// An accepted connection (TCP or Unix).
pub struct Stream<'s> {
    fd: OwnedFd,
    /// How long one read or write may wait for the client.
    patience: Duration,
    /// Beaten whenever data moves.
    slot: &'s Slot,
    /// An absolute limit on any wait, whatever the progress (the head
    /// deadline while a long head is parsed).
    deadline: std::cell::Cell<Option<std::time::Instant>>,
    /// The TLS session, on a TLS listener.
    tls: Option<Box<RefCell<Session>>>,
    /// Set by every blocking-style read ([`Read`]): the event loop then
    /// cannot know whether the socket was drained.
    read_blocking: std::cell::Cell<bool>,
}

impl<'s> Stream<'s> {
    /// `fd` must be non-blocking.
    pub fn new(fd: OwnedFd, patience: Duration, slot: &'s Slot) -> Self {
        Stream {
            fd,
            patience,
            slot,
            deadline: std::cell::Cell::new(None),
            tls: None,
            read_blocking: std::cell::Cell::new(false),
        }
    }

    /// Speak TLS through `session` from now on.
    pub fn start_tls(&mut self, session: Session) {
        self.tls = Some(Box::new(RefCell::new(session)));
    }

    /// Bytes read before TLS began (after a PROXY header): the handshake
    /// reads them first. Without TLS they are the caller's to keep.
    pub fn push_tls_prefix(&self, bytes: &[u8]) {
        if let Some(tls) = &self.tls {
            tls.borrow_mut().push_prefix(bytes);
        }
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The connection's TLS parameters, once its handshake is done.
    pub fn tls_info(&self) -> Option<TlsInfo> {
        self.tls.as_ref().and_then(|t| t.borrow().info())
    }

    /// Read the socket itself, never through TLS (what comes before the
    /// handshake: a PROXY header). Never waits.
    pub fn read_raw_now_append(&self, buf: &mut Vec<u8>, max: usize) -> io::Result<Option<usize>> {
        self.read_plain_append(buf, max)
    }

    /// From now on no wait goes past `deadline` (`None`: only the
    /// patience applies).
    pub fn set_deadline(&self, deadline: Option<std::time::Instant>) {
        self.deadline.set(deadline);
    }

    /// Whether a blocking-style read ([`Read`]) happened since the last
    /// call. The event loop reads until a short read itself; after a
    /// request that read like this, it must look again before it waits
    /// for an edge (edge-triggered readiness, `super::gthread`).
    pub fn take_read_blocking(&self) -> bool {
        self.read_blocking.replace(false)
    }

    /// Whether a blocking-style read happened since the last
    /// [`Stream::take_read_blocking`] (which it does not reset).
    pub fn read_blocking(&self) -> bool {
        self.read_blocking.get()
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// One read that never waits: `Ok(None)` when nothing is there yet.
    pub fn read_now(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        if let Some(tls) = &self.tls {
            return tls.borrow_mut().read_now(self.fd.as_fd(), buf);
        }
        loop {
            // SAFETY: `buf` is a writable buffer of `buf.len()` bytes.
            let n = unsafe { libc::read(self.raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n >= 0 {
                return Ok(Some(n as usize));
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Ok(None),
                _ => return Err(e),
            }
        }
    }

    /// One read that never waits, appending up to `max` bytes to `buf`
    /// (into its spare capacity: nothing is zeroed first).
    pub fn read_now_append(&self, buf: &mut Vec<u8>, max: usize) -> io::Result<Option<usize>> {
        if self.tls.is_some() {
            let start = buf.len();
            buf.resize(start + max, 0);
            let read = self.read_now(&mut buf[start..]);
            let n = match &read {
                Ok(Some(n)) => *n,
                _ => 0,
            };
            buf.truncate(start + n);
            return read;
        }
        self.read_plain_append(buf, max)
    }

    fn read_plain_append(&self, buf: &mut Vec<u8>, max: usize) -> io::Result<Option<usize>> {
        buf.reserve(max);
        let spare = &mut buf.spare_capacity_mut()[..max];
        loop {
            // SAFETY: `spare` is writable memory of `spare.len()` bytes;
            // read(2) initialises the first `n` of them.
            let n = unsafe { libc::read(self.raw_fd(), spare.as_mut_ptr().cast(), spare.len()) };
            if n >= 0 {
                let n = n as usize;
                // SAFETY: the kernel wrote `n` bytes right after `len`.
                unsafe { buf.set_len(buf.len() + n) };
                return Ok(Some(n));
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Ok(None),
                _ => return Err(e),
            }
        }
    }

    /// One write that never waits: `Ok(None)` when the socket buffer is full.
    pub fn write_now(&self, buf: &[u8]) -> io::Result<Option<usize>> {
        if let Some(tls) = &self.tls {
            return tls.borrow_mut().write_now(self.fd.as_fd(), buf);
        }
        loop {
            // SAFETY: `buf` is a readable buffer of `buf.len()` bytes.
            let n = unsafe { libc::write(self.raw_fd(), buf.as_ptr().cast(), buf.len()) };
            if n >= 0 {
                return Ok(Some(n as usize));
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Ok(None),
                _ => return Err(e),
            }
        }
    }

    /// Wait until the socket is ready for `events`, for at most the
    /// stream's patience.
    fn wait(&self, events: libc::c_short) -> io::Result<()> {
        let mut pfd = libc::pollfd {
            fd: self.raw_fd(),
            events,
            revents: 0,
        };
        let mut wait = self.patience;
        if let Some(deadline) = self.deadline.get() {
            wait = wait.min(deadline.saturating_duration_since(std::time::Instant::now()));
        }
        let ms = wait.as_millis().min(i32::MAX as u128) as i32;
        loop {
            // SAFETY: one valid pollfd.
            match unsafe { libc::poll(&mut pfd, 1, ms) } {
                0 => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the client made no progress for {:?}", self.patience),
                    ))
                }
                n if n > 0 => return Ok(()),
                _ => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Half-close: the client sees the end of the response (with TLS,
    /// after `close_notify` and whatever was still buffered, waiting for
    /// the socket as a write would).
    pub fn shutdown_write(&self) {
        if let Some(tls) = &self.tls {
            tls.borrow_mut().close_notify();
            while let Ok(false) = self.flush_tls() {
                if self.wait(libc::POLLOUT).is_err() {
                    break;
                }
            }
        }
        // SAFETY: shutdown(2) on our own descriptor.
        unsafe { libc::shutdown(self.raw_fd(), libc::SHUT_WR) };
    }

    /// [`Stream::shutdown_write`] without waiting: what the socket does not
    /// take at once is dropped (for a client given up on).
    pub fn shutdown_write_now(&self) {
        if let Some(tls) = &self.tls {
            tls.borrow_mut().close_notify();
            let _ = self.flush_tls();
        }
        // SAFETY: shutdown(2) on our own descriptor.
        unsafe { libc::shutdown(self.raw_fd(), libc::SHUT_WR) };
    }

    /// Write out buffered TLS bytes without waiting; true when none is left
    /// (always, without TLS).
    fn flush_tls(&self) -> io::Result<bool> {
        match &self.tls {
            Some(tls) => tls.borrow_mut().flush_now(self.fd.as_fd()),
            None => Ok(true),
        }
    }

    /// What a read that found nothing waits for: the socket's readiness to
    /// read, and to write too while TLS has bytes to send (a handshake
    /// message the socket did not take).
    fn read_events(&self) -> libc::c_short {
        match &self.tls {
            Some(tls) if tls.borrow().wants_write() => libc::POLLIN | libc::POLLOUT,
            _ => libc::POLLIN,
        }
    }
}

impl Read for &Stream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_blocking.set(true);
        loop {
            if let Some(n) = self.read_now(buf)? {
                if n > 0 {
                    self.slot.beat();
                }
                return Ok(n);
            }
            if self.flush_tls().is_err() {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            self.wait(self.read_events())?;
        }
    }
}

impl Write for &Stream<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            if let Some(n) = self.write_now(buf)? {
                self.slot.beat();
                return Ok(n);
            }
            self.wait(libc::POLLOUT)?;
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        if let Some(tls) = &self.tls {
            loop {
                let written = tls.borrow_mut().write_vectored_now(self.fd.as_fd(), bufs)?;
                if let Some(n) = written {
                    self.slot.beat();
                    return Ok(n);
                }
                self.wait(libc::POLLOUT)?;
            }
        }
        loop {
            let count = bufs.len().min(libc::UIO_MAXIOV as usize) as libc::c_int;
            // SAFETY: IoSlice is ABI-compatible with iovec; `count` of them.
            let n = unsafe { libc::writev(self.raw_fd(), bufs.as_ptr().cast(), count) };
            if n >= 0 {
                self.slot.beat();
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock => self.wait(libc::POLLOUT)?,
                _ => return Err(e),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        while !self.flush_tls()? {
            self.wait(libc::POLLOUT)?;
        }
        Ok(())
    }
}

impl crate::http::SendFile for Stream<'_> {
    fn send_file(&self, file: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<()> {
        if self.tls.is_some() {
            return self.copy_file(file, offset, len);
        }
        let mut off = libc::off_t::try_from(offset).map_err(io::Error::other)?;
        let mut left = len;
        while left > 0 {
            let want = usize::try_from(left).unwrap_or(usize::MAX).min(1 << 30);
            // SAFETY: both descriptors are open; `off` is a live local.
            let n = unsafe { libc::sendfile(self.raw_fd(), file.as_raw_fd(), &mut off, want) };
            match n {
                0 => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("the file ended {left} bytes before the length sent"),
                    ))
                }
                n if n > 0 => {
                    left -= n as u64;
                    self.slot.beat();
                }
                _ => {
                    let e = io::Error::last_os_error();
                    match e.kind() {
                        io::ErrorKind::Interrupted => {}
                        io::ErrorKind::WouldBlock => self.wait(libc::POLLOUT)?,
                        _ => return Err(e),
                    }
                }
            }
        }
        Ok(())
    }
}

impl Stream<'_> {
    /// `sendfile(2)` for TLS, which must encrypt in user space: read the
    /// file a piece at a time and write it through the session.
    fn copy_file(&self, file: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut off = offset;
        let mut left = len;
        while left > 0 {
            let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
            let pos = libc::off_t::try_from(off).map_err(io::Error::other)?;
            // SAFETY: `buf` is writable memory of at least `want` bytes.
            let n = unsafe { libc::pread(file.as_raw_fd(), buf.as_mut_ptr().cast(), want, pos) };
            match n {
                0 => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("the file ended {left} bytes before the length sent"),
                    ))
                }
                n if n > 0 => {
                    let n = n as usize;
                    (&mut &*self).write_all(&buf[..n])?;
                    off += n as u64;
                    left -= n as u64;
                }
                _ => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }
}
