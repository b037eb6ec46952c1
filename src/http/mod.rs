//! HTTP/1.x for the sync worker: request heads, body readers, responses.
//!
//! Parsing follows gunicorn's rules and limits (`gunicorn/http/`); the types
//! here are what the worker and the apps exchange.
//!
//! # Serving one request
//!
//! [`Connection`] reads through a buffer; the response is written straight
//! to the socket. Both need the stream at once while the app runs (the body
//! reader borrows the connection mutably), so the connection is built over
//! a *shared reference* to the socket: `&TcpStream` and `&UnixStream`
//! implement `Read` and `Write`, so no `try_clone` (a `dup(2)`) is needed.
//! (A stream that cannot be shared this way, such as a TLS session, can be
//! put in a `RefCell` behind a small `Read + Write` handle.)
//!
//! ```no_run
//! use std::io::Read;
//! use std::net::TcpStream;
//! use gunicornd::app::ResponseSink;
//! use gunicornd::http::{write_error, Connection, HeadError, Limits, ResponseWriter};
//!
//! fn serve(stream: &TcpStream, limits: &Limits) -> std::io::Result<()> {
//!     let mut conn = Connection::new(stream);
//!     let head = match conn.read_head(limits) {
//!         Ok(Some(head)) => head,
//!         Ok(None) => return Ok(()), // closed before sending anything
//!         Err(HeadError::Invalid(e)) => return write_error(&mut conn.get_mut(), &e),
//!         Err(HeadError::Io(e)) => return Err(e), // log at debug, no response
//!     };
//!     let mut out = stream;
//!     let mut resp = ResponseWriter::new(&mut out, head.version, head.method == "HEAD");
//!     let mut body = conn.body(&head);
//!     let mut data = Vec::new();
//!     body.read_to_end(&mut data)?; // an app would get `&mut body` as `Request::body`
//!     resp.start(200, &[("Content-Type".into(), "text/plain".into())])?;
//!     resp.write(&data)?;
//!     resp.finish()?;
//!     body.drain()?; // discard what the app left unread, before closing
//!     Ok(())
//! }
//! ```

use std::fmt;
use std::io;
use std::net::SocketAddr;

mod body;
mod conn;
mod error_page;
mod parse;
mod response;
mod status;
#[cfg(test)]
mod tests;
mod text;

pub use body::http_error;
pub use conn::Connection;
pub use error_page::write_error;
#[cfg(feature = "python")]
pub use response::HOP_BY_HOP;
pub use response::{ResponseWriter, SendFile};

/// The `--limit-request-*` settings, already normalised by the config
/// (0 / out-of-range values mapped the way gunicorn maps them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line in bytes (without CRLF); 0 = unlimited.
    pub request_line: usize,
    /// Most header fields accepted.
    pub fields: usize,
    /// Longest header line in bytes (with CRLF).
    pub field_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_line: 4094,
            fields: 100,
            field_size: 8190,
        }
    }
}

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// `Content-Length: N` (N may be 0; also used when the request has no body).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Who is on the other end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerAddr {
    Tcp(SocketAddr),
    /// A unix-socket peer (no address to report).
    Unix,
}

impl PeerAddr {
    /// The host part, as gunicorn's `REMOTE_ADDR` (`%(h)s`) shows it.
    pub fn host(&self) -> String {
        match self {
            PeerAddr::Tcp(a) => a.ip().to_string(),
            PeerAddr::Unix => String::new(),
        }
    }
}

/// A parsed request line and header block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// Method as sent (already validated as a token).
    pub method: String,
    /// The raw request target, as in gunicorn's `RAW_URI`.
    pub uri: String,
    /// Path part of the target (not percent-decoded).
    pub path: String,
    /// Query string without the `?` (empty when absent).
    pub query: String,
    /// `(major, minor)`, e.g. `(1, 1)`.
    pub version: (u8, u8),
    /// Header fields in the order received, names with their original case,
    /// values with surrounding whitespace trimmed, bytes decoded as latin-1.
    pub headers: Vec<(String, String)>,
    /// How the body is delimited.
    pub framing: BodyFraming,
    /// `Expect: 100-continue` on HTTP/1.1.
    pub expect_continue: bool,
}

impl RequestHead {
    /// First header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A request that cannot be served, with the answer gunicorn gives for it
/// (`handle_error` in `gunicorn/workers/base.py`): status, reason phrase and
/// the message shown in the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    pub status: u16,
    pub reason: &'static str,
    pub message: String,
}

impl fmt::Display for HttpError {
    /// The page message, which is also what gets logged.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HttpError {}

/// An `InvalidData` I/O error carrying the [`HttpError`], the form in which
/// body readers report a malformed body; [`http_error`] gets it back.
impl From<HttpError> for io::Error {
    fn from(e: HttpError) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// Why [`Connection::read_head`] produced no request.
#[derive(Debug)]
pub enum HeadError {
    /// The connection failed, or the client closed it in the middle of the
    /// head (`UnexpectedEof`): gunicorn logs this at debug and closes
    /// without a response.
    Io(io::Error),
    /// A malformed or refused request: answer with [`write_error`].
    Invalid(HttpError),
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadError::Io(e) => write!(f, "{e}"),
            HeadError::Invalid(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for HeadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HeadError::Io(e) => Some(e),
            HeadError::Invalid(e) => Some(e),
        }
    }
}

impl From<io::Error> for HeadError {
    fn from(e: io::Error) -> Self {
        HeadError::Io(e)
    }
}

impl From<HttpError> for HeadError {
    fn from(e: HttpError) -> Self {
        HeadError::Invalid(e)
    }
}
