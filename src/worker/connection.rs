//! One connection, one request (gunicorn's sync worker,
//! `gunicorn/workers/sync.py`).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant, SystemTime};

use crate::app::{App, Request};
use crate::http::{self, HeadError, HttpError, Limits, PeerAddr, ResponseWriter};
use crate::listeners::ListenAddr;

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

    fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        }
    }

    fn shutdown_write(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Write),
            Stream::Unix(s) => s.shutdown(Shutdown::Write),
        };
    }
}

impl Read for &Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => (&*s).read(buf),
            Stream::Unix(s) => (&*s).read(buf),
        }
    }
}

impl Write for &Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => (&*s).write(buf),
            Stream::Unix(s) => (&*s).write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Read one request, run the app, write the response, close.
pub fn serve(
    stream: Stream,
    peer: &PeerAddr,
    server: &ListenAddr,
    app: &mut dyn App,
    limits: &Limits,
) {
    let started = SystemTime::now();
    let clock = Instant::now();
    let mut conn = http::Connection::new(&stream);
    let head = match conn.read_head(limits) {
        Ok(Some(head)) => head,
        Ok(None) => {
            tracing::debug!("Closing connection.");
            return;
        }
        Err(HeadError::Io(e)) => {
            tracing::debug!("Ignored premature client disconnection. {e}");
            return;
        }
        Err(HeadError::Invalid(err)) => {
            tracing::warn!("Invalid request from ip={}: {}", peer.host(), err.message);
            let _ = http::write_error(&mut &stream, &err);
            log_access(peer, None, err.status, 0, &[], started, clock.elapsed());
            stream.shutdown_write();
            return;
        }
    };
    let mut out = &stream;
    let mut resp = ResponseWriter::new(&mut out, head.version, head.method == "HEAD")
        .with_sendfile(stream.raw_fd());
    let mut body = conn.body(&head);
    let req = Request {
        head: &head,
        peer,
        server,
        scheme: "http",
        body: &mut body,
    };
    let outcome = app.call(req, &mut resp).and_then(|()| {
        if !resp.started() {
            return Err(io::Error::other(
                "the app returned without starting a response",
            ));
        }
        resp.finish()
    });
    let mut status = resp.status().unwrap_or(500);
    let body_bytes = resp.body_bytes();
    let headers_sent = resp.headers_sent();
    let response_headers: Vec<(String, String)> = if crate::log::access_enabled() {
        resp.headers()
            .map(|(n, v)| (n.to_string(), v.into_owned()))
            .collect()
    } else {
        Vec::new()
    };
    drop(resp);
    if let Err(e) = outcome {
        match failure_response(&e, &head, peer) {
            Some(err) if !headers_sent => {
                status = err.status;
                let _ = http::write_error(&mut &stream, &err);
            }
            _ => {}
        }
    }
    // Read what the app left unread so that closing does not reset a client
    // that is still sending (the reset could destroy the response in flight).
    let _ = body.drain();
    log_access(
        peer,
        Some(&head),
        status,
        body_bytes,
        &response_headers,
        started,
        clock.elapsed(),
    );
    stream.shutdown_write();
}

/// What to answer when the app (or the body it read) failed, if anything:
/// nothing when the client went away, a 4xx for a malformed body, else 500.
fn failure_response(e: &io::Error, head: &http::RequestHead, peer: &PeerAddr) -> Option<HttpError> {
    use io::ErrorKind::*;
    if let Some(bad_body) = http::http_error(e) {
        tracing::warn!(
            "Invalid request from ip={}: {}",
            peer.host(),
            bad_body.message
        );
        return Some(bad_body.clone());
    }
    if matches!(
        e.kind(),
        BrokenPipe | ConnectionReset | ConnectionAborted | NotConnected | UnexpectedEof
    ) {
        tracing::debug!("Ignored premature client disconnection. {e}");
        return None;
    }
    if matches!(e.kind(), WouldBlock | TimedOut) {
        tracing::debug!("Client timed out: {e}");
        return None;
    }
    tracing::error!("Error handling request {} {}: {e}", head.method, head.uri);
    Some(HttpError::internal_server_error(""))
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
