//! HTTP/1.x for the sync worker: request heads, body readers, responses.
//!
//! Parsing follows gunicorn's rules and limits (reference §3); the types here
//! are what the worker and the apps exchange.

use std::net::SocketAddr;

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
/// (reference §2.6): status, reason phrase and the message shown in the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    pub status: u16,
    pub reason: &'static str,
    pub message: String,
}
