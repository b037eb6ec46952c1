//! One connection's TLS, over a non-blocking socket: every call does what
//! it can now and says when it would have to wait, so that the caller (the
//! worker's loop, or `worker/stream.rs` with its deadlines) decides how
//! long a client may take.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::Arc;

use rustls::{ServerConfig, ServerConnection};

use super::TlsInfo;

/// A server-side TLS connection.
pub struct Session {
    conn: ServerConnection,
    /// Bytes read off the socket before TLS began (what followed a PROXY
    /// header in the same read): the first bytes of the handshake.
    prefix: Vec<u8>,
    /// The client closed its side (or ended the TLS session).
    eof: bool,
}

/// `read(2)`/`write(2)` on a socket, as `Read`/`Write` for rustls (a full
/// buffer or an empty one is `WouldBlock`).
struct Socket<'a>(BorrowedFd<'a>);

impl Read for Socket<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is writable memory of `buf.len()` bytes.
        let n = unsafe { libc::read(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

impl Write for Socket<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // MSG_NOSIGNAL: a client gone away is an error, not a SIGPIPE.
        // SAFETY: `buf` is readable memory of `buf.len()` bytes.
        let n = unsafe {
            libc::send(
                self.0.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Session {
    pub(super) fn new(config: Arc<ServerConfig>) -> io::Result<Session> {
        Ok(Session {
            conn: ServerConnection::new(config).map_err(io::Error::other)?,
            prefix: Vec::new(),
            eof: false,
        })
    }

    /// Bytes that were read off the socket before TLS began; they are the
    /// first the handshake reads.
    pub fn push_prefix(&mut self, bytes: &[u8]) {
        self.prefix.extend_from_slice(bytes);
    }

    /// Whether the handshake is still going on.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Whether encrypted bytes wait to be written (the caller then also
    /// waits for the socket to take them).
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Decrypted bytes into `buf`, without waiting: `Ok(None)` when none
    /// are there yet (the handshake may have progressed), `Ok(Some(0))` at
    /// the client's end. A failed handshake or a corrupt record is an
    /// `InvalidData` error (after the alert was sent, if the socket took it).
    pub fn read_now(&mut self, fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Option<usize>> {
        if buf.is_empty() {
            return Ok(Some(0));
        }
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(Some(n)),
                // A close without close_notify: the end as well.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(Some(0)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if self.eof {
                return Ok(Some(0));
            }
            let read = if self.prefix.is_empty() {
                self.conn.read_tls(&mut Socket(fd))
            } else {
                let mut prefix: &[u8] = &self.prefix;
                let read = self.conn.read_tls(&mut prefix);
                let used = self.prefix.len() - prefix.len();
                self.prefix.drain(..used);
                read
            };
            match read {
                Ok(0) => self.eof = true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // What the handshake has to say goes out now; what the
                    // socket does not take waits for the next call.
                    self.flush_now(fd)?;
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
            if let Err(e) = self.conn.process_new_packets() {
                // The alert, if the socket takes it; the caller logs.
                let _ = self.flush_now(fd);
                let what = if self.conn.is_handshaking() {
                    "TLS handshake failed"
                } else {
                    "TLS error"
                };
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{what}: {e}"),
                ));
            }
            if self.conn.wants_write() {
                self.flush_now(fd)?;
            }
        }
    }

    /// Encrypt what it can of `buf` and write it out, without waiting:
    /// `Ok(None)` while earlier bytes still wait for the socket. Bytes
    /// accepted may still be buffered: [`Session::flush_now`] until true
    /// before the socket closes.
    pub fn write_now(&mut self, fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<Option<usize>> {
        if !self.flush_now(fd)? {
            return Ok(None);
        }
        let n = self.conn.writer().write(buf)?;
        self.flush_now(fd)?;
        Ok(Some(n))
    }

    /// [`Session::write_now`] for several buffers at once.
    pub fn write_vectored_now(
        &mut self,
        fd: BorrowedFd<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> io::Result<Option<usize>> {
        if !self.flush_now(fd)? {
            return Ok(None);
        }
        let n = self.conn.writer().write_vectored(bufs)?;
        self.flush_now(fd)?;
        Ok(Some(n))
    }

    /// Write out the encrypted bytes waiting, without waiting; true once
    /// none is left.
    pub fn flush_now(&mut self, fd: BorrowedFd<'_>) -> io::Result<bool> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut Socket(fd)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// End the TLS session (`close_notify`), to be flushed before the
    /// socket's write side is shut.
    pub fn close_notify(&mut self) {
        self.conn.send_close_notify();
    }

    /// The protocol, cipher and client certificate, once the handshake is
    /// done.
    pub fn info(&self) -> Option<TlsInfo> {
        if self.conn.is_handshaking() {
            return None;
        }
        let version = match self.conn.protocol_version()? {
            rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_owned(),
            rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_owned(),
            other => format!("{other:?}"),
        };
        let cipher = format!("{:?}", self.conn.negotiated_cipher_suite()?.suite());
        let client_subject = self
            .conn
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|cert| {
                x509_parser::parse_x509_certificate(cert)
                    .ok()
                    .map(|(_, cert)| cert.subject().to_string())
            });
        let alpn = self
            .conn
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned());
        Some(TlsInfo {
            version,
            cipher,
            client_subject,
            alpn,
        })
    }
}
