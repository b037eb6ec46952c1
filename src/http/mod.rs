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
//! use gunicornd::http::{write_error, Connection, HeadError, Limits, PeerAddr, ResponseWriter};
//!
//! fn serve(stream: &TcpStream, peer: &PeerAddr, limits: &Limits) -> std::io::Result<()> {
//!     let mut conn = Connection::new(stream);
//!     let trusted = gunicornd::http::forwarded::AllowList::loopback().allows(peer);
//!     let head = match conn.read_head_trusting(limits, trusted) {
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
pub mod forwarded;
mod parse;
pub mod proxy;
mod response;
mod status;
#[cfg(test)]
mod tests;
mod text;

pub use body::{http_error, CONTINUE};
pub use conn::Connection;
pub use error_page::write_error;
#[cfg(feature = "python")]
pub use response::HOP_BY_HOP;
pub use response::{ResponseWriter, SendFile};
pub(crate) use text::is_token;

/// What the parser accepts: the `--limit-request-*` sizes, already
/// normalised by the config (0 / out-of-range values mapped the way gunicorn
/// maps them), and the [`Rules`] that relax gunicorn's strict parsing or say
/// which underscore fields get through. The worker builds one from the
/// settings and hands it to every [`Connection::read_head`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line in bytes (without CRLF); 0 = unlimited.
    pub request_line: usize,
    /// Most header fields accepted.
    pub fields: usize,
    /// Longest header line in bytes (with CRLF).
    pub field_size: usize,
    /// The parsing switches.
    pub rules: Rules,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_line: 4094,
            fields: 100,
            field_size: 8190,
            rules: Rules::default(),
        }
    }
}

/// gunicorn's parsing switches, each off by default (as in gunicorn): the
/// strict rules are the ones a front end and this server agree on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// `--permit-unconventional-http-method`: any token is a method, not only
    /// 3 to 20 bytes without `[a-z#]`.
    pub permit_unconventional_method: bool,
    /// `--casefold-http-method`: the method is upper-cased after it passed
    /// the checks (so without `permit_unconventional_method` a lower-case
    /// method is still refused, as in gunicorn).
    pub casefold_method: bool,
    /// `--permit-unconventional-http-version`: any `HTTP/d.d`, not only
    /// 1.0 to 1.9.
    pub permit_unconventional_version: bool,
    /// `--permit-obsolete-folding`: continuation lines are joined to their
    /// field with one SP instead of refused (never for Transfer-Encoding or
    /// Content-Length, whose folding stays refused: it is a smuggling vector).
    pub permit_obsolete_folding: bool,
    /// `--header-map`: what happens to a field whose name has an underscore.
    pub header_map: HeaderMap,
    /// `--forwarder-headers`: underscore field names (upper case, `*` for
    /// any) that a trusted front end (`--forwarded-allow-ips`, [`forwarded::AllowList`]) may send
    /// whatever `header_map` says.
    pub forwarder_headers: Vec<String>,
}

/// gunicorn's default `forwarder_headers`.
pub const DEFAULT_FORWARDER_HEADERS: [&str; 2] = ["SCRIPT_NAME", "PATH_INFO"];

impl Default for Rules {
    fn default() -> Self {
        Rules {
            permit_unconventional_method: false,
            casefold_method: false,
            permit_unconventional_version: false,
            permit_obsolete_folding: false,
            header_map: HeaderMap::Drop,
            forwarder_headers: DEFAULT_FORWARDER_HEADERS.map(String::from).to_vec(),
        }
    }
}

/// gunicorn's `header_map`: `X_Foo` and `X-Foo` both become `HTTP_X_FOO` in a
/// WSGI environ, so a field with an underscore could pass for another one
/// (a front end that checked `X-Foo` did not check `X_Foo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HeaderMap {
    /// Discard the field silently (it does not count towards
    /// `limit_request_fields` either).
    Drop,
    /// Answer 400.
    Refuse,
    /// Pass it on like any other field.
    Dangerous,
}

impl HeaderMap {
    /// The setting's values, as written in the config.
    pub const NAMES: [&str; 3] = ["drop", "refuse", "dangerous"];

    /// The value named `name` (case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "drop" => Some(HeaderMap::Drop),
            "refuse" => Some(HeaderMap::Refuse),
            "dangerous" => Some(HeaderMap::Dangerous),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            HeaderMap::Drop => "drop",
            HeaderMap::Refuse => "refuse",
            HeaderMap::Dangerous => "dangerous",
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
    /// Whether the client waits for `100 Continue` before it sends the body
    /// (`Expect: 100-continue` on HTTP/1.1 or later; any other expectation
    /// was already refused with 417).
    pub fn expects_continue(&self) -> bool {
        self.expect_continue
    }

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
    /// The request was a HEAD: the page goes out as its head only, whose
    /// Content-Length is the page's (RFC 9110 §9.3.2). Set by the parser
    /// once it knows the method; see [`HttpError::for_method`].
    pub bodiless: bool,
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
