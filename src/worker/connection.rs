//! One connection, one request (gunicorn's sync worker, reference §2.5).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant, SystemTime};

use crate::app::{App, Request};
use crate::http::{self, Limits, PeerAddr};

/// An accepted client socket.
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    pub fn new(fd: OwnedFd, unix: bool) -> Self {
        if unix {
            Stream::Unix(UnixStream::from(fd))
        } else {
            Stream::Tcp(TcpStream::from(fd))
        }
    }

    pub fn set_timeouts(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => {
                s.set_read_timeout(t)?;
                s.set_write_timeout(t)
            }
            Stream::Unix(s) => {
                s.set_read_timeout(t)?;
                s.set_write_timeout(t)
            }
        }
    }

    fn shutdown_write(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Write),
            Stream::Unix(s) => s.shutdown(Shutdown::Write),
        };
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Read one request, run the app, write the response, close.
pub fn serve(stream: Stream, peer: &PeerAddr, app: &mut dyn App, limits: &Limits) {
    let started = SystemTime::now();
    let clock = Instant::now();
    let mut conn = http::Connection::new(stream);
    let head = match conn.read_head(limits) {
        Ok(Some(head)) => head,
        Ok(None) => {
            tracing::debug!("Closing connection.");
            return;
        }
        Err(err) if err.status == 0 => {
            tracing::debug!("Ignored premature client disconnection. {}", err.message);
            return;
        }
        Err(err) => {
            tracing::warn!("Invalid request from ip={}: {}", peer.host(), err.message);
            let _ = http::write_error(conn.get_mut(), &err);
            log_access(peer, None, err.status, 0, &[], started, clock.elapsed());
            conn.get_ref().shutdown_write();
            return;
        }
    };
    todo_serve_request(conn, head, peer, app, started, clock);
}

fn log_access(
    peer: &PeerAddr,
    head: Option<&http::RequestHead>,
    status: u16,
    body_bytes: u64,
    response_headers: &[(String, String)],
    started: SystemTime,
    duration: Duration,
) {
    crate::log::access(&crate::log::AccessRecord {
        peer,
        head,
        status,
        body_bytes,
        response_headers,
        started,
        duration,
    });
}
