//! Writing a response (gunicorn's `Response` in `gunicorn/http/wsgi.py`):
//! `Connection: close` unless the worker keeps the connection for another
//! request ([`ResponseWriter::with_keep_alive`]), framing chosen from the
//! request and the app's headers.

use std::borrow::Cow;
use std::cell::Cell;
use std::io::{self, IoSlice, Write};
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::status::reason_phrase;
use super::text::{find_crlf, is_token, latin1, parse_decimal, push_decimal, push_latin1};
use crate::app::ResponseSink;

/// Bodies parts up to this size are copied next to the pending head (or the
/// chunk framing) so they leave in one `write` call; larger ones go out with
/// one vectored write instead of being copied.
const COALESCE_LIMIT: usize = 16 * 1024;

/// Initial head buffer: room for a typical head plus a small body, so the
/// coalesced first write needs no reallocation.
const HEAD_CAPACITY: usize = 4 * 1024;

/// Connection-level fields (RFC 9110 §7.6.1, gunicorn's `util.is_hoppish`):
/// the server's alone. Dropped when an app passes them, as gunicorn does
/// (a WSGI app that sets one is refused before that: `python::objects`).
pub const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
];

/// Fields the server sets itself, dropped when an app passes them.
const SERVER_SET: [&str; 2] = ["server", "date"];

/// How the body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// HEAD, 1xx, 204, 304: whatever the app writes is dropped.
    NoBody,
    /// The app's Content-Length, with the number of bytes still to send.
    Length { left: u64 },
    /// HTTP/1.1 and later without Content-Length.
    Chunked,
    /// HTTP/1.0 without Content-Length: the body ends when we close.
    Close,
}

/// A socket that can take a file's bytes with `sendfile(2)`, waiting as
/// its own writes do.
pub trait SendFile {
    /// `len` bytes of `file` from `offset`; a file that ends early is an
    /// error (the framing already promised those bytes).
    fn send_file(&self, file: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<()>;
}

/// Writes one response; implements [`ResponseSink`] for the apps.
///
/// Nothing reaches the wire until the first non-empty [`write`](ResponseSink::write)
/// or [`finish`](Self::finish) (as PEP 3333 has it), and then the head goes
/// out together with that body part, so a small response is a single
/// `write(2)`. A chunked response also needs the terminating chunk, which
/// `finish` sends.
pub struct ResponseWriter<'a, W: Write> {
    out: &'a mut W,
    version: (u8, u8),
    is_head: bool,
    /// Status line and header block; kept after sending, for [`headers`](Self::headers).
    head: Vec<u8>,
    /// Where the app's fields start in `head`.
    app_fields_at: usize,
    status: Option<u16>,
    framing: Framing,
    content_length: Option<u64>,
    head_sent: bool,
    finished: bool,
    body_bytes: u64,
    truncated: bool,
    /// Reused for small chunks after the first one.
    scratch: Vec<u8>,
    /// The socket under `out`, when `sendfile(2)` may write to it directly.
    sendfile_to: Option<&'a dyn SendFile>,
    /// The worker offers to keep the connection after this response...
    keep_alive: bool,
    /// ...unless this is false when the head is built (the worker began
    /// to stop while the app ran).
    still_offered: Option<&'a AtomicBool>,
}

impl<'a, W: Write> ResponseWriter<'a, W> {
    /// A writer for the response to a request of `version` (which decides
    /// the framing: HTTP/1.0 gets no chunking; the status line always says
    /// `HTTP/1.1`); `is_head` for a HEAD request (headers only).
    pub fn new(out: &'a mut W, version: (u8, u8), is_head: bool) -> Self {
        ResponseWriter {
            out,
            version,
            is_head,
            head: Vec::new(),
            app_fields_at: 0,
            status: None,
            framing: Framing::NoBody,
            content_length: None,
            head_sent: false,
            finished: false,
            body_bytes: 0,
            truncated: false,
            scratch: Vec::new(),
            sendfile_to: None,
            keep_alive: false,
            still_offered: None,
        }
    }

    /// Offer to keep the connection open after this response, as long as
    /// `offered` is true when the head is built: it then says
    /// `Connection: keep-alive`, unless its body can only end with the
    /// connection (HTTP/1.0 without Content-Length). See [`keeps_alive`](Self::keeps_alive).
    pub fn with_keep_alive(mut self, offered: &'a AtomicBool) -> Self {
        self.keep_alive = true;
        self.still_offered = Some(offered);
        self
    }

    /// Whether the response said the connection stays open.
    pub fn keeps_alive(&self) -> bool {
        self.keep_alive && self.framing != Framing::Close
    }

    /// Let [`ResponseSink::send_file`] use `sendfile(2)` into `socket`, the
    /// descriptor `out` writes to (not for a stream that transforms what
    /// it is given, such as TLS).
    pub fn with_sendfile(mut self, socket: &'a dyn SendFile) -> Self {
        self.sendfile_to = Some(socket);
        self
    }

    /// The status the app started the response with.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// Body bytes put on the wire (without chunk framing): the access log's `%(b)s`.
    pub fn body_bytes(&self) -> u64 {
        self.body_bytes
    }

    /// Whether the app called `start` successfully.
    pub fn started(&self) -> bool {
        self.status.is_some()
    }

    /// Whether any byte of the response reached the wire. Until then the
    /// worker can still answer with an error page instead.
    pub fn headers_sent(&self) -> bool {
        self.head_sent
    }

    /// The Content-Length the app declared (absent for 1xx and 204).
    #[cfg(test)]
    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }

    /// Whether the app wrote more than its Content-Length (the excess was not sent).
    #[cfg(test)]
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// The fields the app set, as sent (server-owned and hop-by-hop ones
    /// removed), for the access log's `{name}o`.
    pub fn headers(&self) -> ResponseFields<'_> {
        let end = self.head.len().saturating_sub(2).max(self.app_fields_at);
        ResponseFields {
            rest: &self.head[self.app_fields_at..end],
        }
    }

    /// The first field the app set with this name (case-insensitive).
    #[cfg(test)]
    pub fn header(&self, name: &str) -> Option<Cow<'_, str>> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Completes the response: sends the head if nothing was written yet,
    /// the terminating chunk of a chunked body, and flushes. Idempotent.
    pub fn finish(&mut self) -> io::Result<()> {
        if self.finished {
            return Ok(());
        }
        if self.status.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "response finished before it was started",
            ));
        }
        if self.framing == Framing::Chunked {
            self.send(&[b"0\r\n\r\n"])?;
        } else if !self.head_sent {
            self.send(&[])?;
        }
        self.finished = true;
        self.out.flush()
    }

    fn build_head(&mut self, status: u16, fields: &[(String, String)]) -> io::Result<()> {
        let informational = (100..200).contains(&status);
        let body_allowed = !self.is_head && !informational && status != 204 && status != 304;
        // RFC 9110 §8.6: no Content-Length on 1xx and 204.
        let keep_length = !informational && status != 204;

        let content_length = declared_length(fields)?;
        self.framing = match content_length {
            _ if !body_allowed => Framing::NoBody,
            Some(left) => Framing::Length { left },
            None if self.version >= (1, 1) => Framing::Chunked,
            None => Framing::Close,
        };
        self.content_length = content_length.filter(|_| keep_length);

        if self
            .still_offered
            .is_some_and(|offered| !offered.load(Ordering::Relaxed))
        {
            self.keep_alive = false;
        }
        let connection: &[u8] = if self.keeps_alive() {
            b"\r\nConnection: keep-alive\r\n"
        } else {
            b"\r\nConnection: close\r\n"
        };
        let head = &mut self.head;
        head.clear();
        head.reserve(
            HEAD_CAPACITY.max(
                fields
                    .iter()
                    .map(|(n, v)| n.len() + v.len() + 4)
                    .sum::<usize>()
                    + 256,
            ),
        );
        // The version this server speaks, whatever the client's (RFC 9110
        // §6.2; gunicorn echoes the request's, `HTTP/1.0` or even `HTTP/1.2`).
        // The client's version still decides the framing.
        head.extend_from_slice(b"HTTP/1.1 ");
        push_decimal(head, u64::from(status));
        head.push(b' ');
        head.extend_from_slice(reason_phrase(status).as_bytes());
        head.extend_from_slice(b"\r\nServer: gunicornd\r\nDate: ");
        push_http_date(head);
        head.extend_from_slice(connection);
        if self.framing == Framing::Chunked {
            head.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
        }
        self.app_fields_at = head.len();

        for (name, value) in fields {
            if HOP_BY_HOP
                .iter()
                .chain(&SERVER_SET)
                .any(|h| name.eq_ignore_ascii_case(h))
                || (!keep_length && name.eq_ignore_ascii_case("content-length"))
            {
                continue;
            }
            if !is_token(name.as_bytes()) {
                return Err(bad_field("response header name is not a token", name));
            }
            head.extend_from_slice(name.as_bytes());
            head.extend_from_slice(b": ");
            // gunicorn: values must match `[ \t\x21-\x7e\x80-\xff]*`, and are
            // sent as latin-1.
            let valid = value.chars().all(|c| {
                c == '\t' || (' '..='~').contains(&c) || ('\u{80}'..='\u{ff}').contains(&c)
            });
            if !valid || !push_latin1(head, value) {
                return Err(bad_field(
                    "response header value has a control or non-latin-1 character",
                    name,
                ));
            }
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"\r\n");
        Ok(())
    }

    /// Writes `parts` (and the head first if it is still pending) with as
    /// few syscalls as possible: one `write_all` of a coalesced buffer for
    /// small data, one vectored write loop otherwise.
    fn send(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if !self.head_sent {
            // Mark first: if the write fails half-way, the worker must not
            // try to send an error page after a partial head.
            self.head_sent = true;
            let head_len = self.head.len();
            if total <= COALESCE_LIMIT {
                for part in parts {
                    self.head.extend_from_slice(part);
                }
                let result = self.out.write_all(&self.head);
                self.head.truncate(head_len);
                return result;
            }
            let mut all = Vec::with_capacity(parts.len() + 1);
            all.push(&self.head[..]);
            all.extend_from_slice(parts);
            return write_all_vectored(self.out, &mut all);
        }
        match parts {
            [single] => self.out.write_all(single),
            _ if total <= COALESCE_LIMIT => {
                self.scratch.clear();
                for part in parts {
                    self.scratch.extend_from_slice(part);
                }
                self.out.write_all(&self.scratch)
            }
            _ => write_all_vectored(self.out, &mut parts.to_vec()),
        }
    }
}

impl<W: Write> ResponseSink for ResponseWriter<'_, W> {
    fn start(&mut self, status: u16, headers: &[(String, String)]) -> io::Result<()> {
        if self.status.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "response already started",
            ));
        }
        if !(100..=999).contains(&status) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid status code {status}"),
            ));
        }
        if let Err(e) = self.build_head(status, headers) {
            self.head.clear();
            self.app_fields_at = 0;
            return Err(e);
        }
        self.status = Some(status);
        Ok(())
    }

    fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.check_writable()?;
        // An empty part flushes nothing (PEP 3333: headers wait for the first
        // non-empty body part), so it cannot end a chunked body either.
        if chunk.is_empty() {
            return Ok(());
        }
        match self.framing {
            Framing::NoBody => {
                if !self.is_head && !self.head_sent {
                    tracing::warn!(
                        status = self.status.unwrap_or(0),
                        "dropping the body of a response that cannot have one"
                    );
                }
                if !self.head_sent {
                    self.send(&[])?;
                }
                Ok(())
            }
            Framing::Length { left } => {
                let take = usize::try_from(left).map_or(chunk.len(), |left| left.min(chunk.len()));
                self.truncated |= take < chunk.len();
                if take == 0 && self.head_sent {
                    return Ok(());
                }
                self.send(&[&chunk[..take]])?;
                self.framing = Framing::Length {
                    left: left - take as u64,
                };
                self.body_bytes += take as u64;
                Ok(())
            }
            Framing::Chunked => {
                let (size_line, len) = chunk_size_line(chunk.len());
                self.send(&[&size_line[..len], chunk, b"\r\n"])?;
                self.body_bytes += chunk.len() as u64;
                Ok(())
            }
            Framing::Close => {
                self.send(&[chunk])?;
                self.body_bytes += chunk.len() as u64;
                Ok(())
            }
        }
    }

    fn send_file(&mut self, file: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<bool> {
        let Some(socket) = self.sendfile_to else {
            return Ok(false);
        };
        self.check_writable()?;
        // The framing decides how much goes out, as for write().
        let len = match self.framing {
            Framing::NoBody => 0,
            Framing::Length { left } => {
                self.truncated |= len > left;
                len.min(left)
            }
            Framing::Chunked | Framing::Close => len,
        };
        if len == 0 {
            if !self.head_sent {
                self.send(&[])?;
            }
            return Ok(true);
        }
        if self.framing == Framing::Chunked {
            let (size_line, n) = chunk_size_line(len as usize);
            self.send(&[&size_line[..n]])?;
        } else if !self.head_sent {
            self.send(&[])?;
        }
        self.out.flush()?;
        socket.send_file(file, offset, len)?;
        self.body_bytes += len;
        if let Framing::Length { left } = &mut self.framing {
            *left -= len;
        }
        if self.framing == Framing::Chunked {
            self.send(&[b"\r\n"])?;
        }
        Ok(true)
    }
}

impl<W: Write> ResponseWriter<'_, W> {
    fn check_writable(&self) -> io::Result<()> {
        if self.status.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "body written before the response was started",
            ));
        }
        if self.finished {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "body written after the response was finished",
            ));
        }
        Ok(())
    }
}

/// `HEX(len) CRLF` on the stack: the framing before each chunk.
fn chunk_size_line(len: usize) -> ([u8; 18], usize) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let digits = (usize::BITS - len.leading_zeros()).div_ceil(4).max(1) as usize;
    let mut line = [0u8; 18];
    for (i, slot) in line[..digits].iter_mut().enumerate() {
        *slot = HEX[(len >> (4 * (digits - 1 - i))) & 0xf];
    }
    line[digits..digits + 2].copy_from_slice(b"\r\n");
    (line, digits + 2)
}

/// The app's Content-Length, if any. Several fields, or one that is not a
/// plain decimal number, are an app error (gunicorn fails on `int(value)`).
fn declared_length(fields: &[(String, String)]) -> io::Result<Option<u64>> {
    let mut found = None;
    for (name, value) in fields {
        if !name.eq_ignore_ascii_case("content-length") {
            continue;
        }
        let n = parse_decimal(value.trim().as_bytes())
            .ok_or_else(|| bad_field("response Content-Length is not a number", value))?;
        if found.is_some() {
            return Err(bad_field(
                "response has more than one Content-Length",
                value,
            ));
        }
        found = Some(n);
    }
    Ok(found)
}

fn bad_field(what: &str, field: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("{what}: {field:?}"))
}

/// `write_all` over several buffers with `write_vectored`, which stable Rust
/// (at our MSRV) lacks.
fn write_all_vectored<W: Write>(out: &mut W, parts: &mut [&[u8]]) -> io::Result<()> {
    let mut first = 0;
    loop {
        while first < parts.len() && parts[first].is_empty() {
            first += 1;
        }
        if first == parts.len() {
            return Ok(());
        }
        let slices: Vec<IoSlice<'_>> = parts[first..].iter().map(|p| IoSlice::new(p)).collect();
        let mut written = match out.write_vectored(&slices) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "failed to write the whole response",
                ))
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        for part in parts[first..].iter_mut() {
            let step = written.min(part.len());
            *part = &part[step..];
            written -= step;
            if written == 0 {
                break;
            }
        }
    }
}

thread_local! {
    /// The `Date` value, formatted once per second.
    static DATE: Cell<(u64, [u8; 29])> = const { Cell::new((u64::MAX, [0; 29])) };
}

/// Appends the current IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn push_http_date(out: &mut Vec<u8>) {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (cached_secs, cached) = DATE.with(Cell::get);
    if cached_secs == secs {
        out.extend_from_slice(&cached);
        return;
    }
    let formatted = httpdate::fmt_http_date(now);
    out.extend_from_slice(formatted.as_bytes());
    // Dates after year 9999 are longer than 29 bytes: not cached.
    if let Ok(text) = <[u8; 29]>::try_from(formatted.as_bytes()) {
        DATE.with(|d| d.set((secs, text)));
    }
}

/// Iterator over the app's response fields: `(name, value)`, values decoded
/// from latin-1.
pub struct ResponseFields<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for ResponseFields<'a> {
    type Item = (&'a str, Cow<'a, str>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let line_end = find_crlf(self.rest, 0).unwrap_or(self.rest.len());
        let line = &self.rest[..line_end];
        self.rest = &self.rest[(line_end + 2).min(self.rest.len())..];
        // Every line was written by `build_head` as `token ": " latin-1`.
        let colon = line.iter().position(|&b| b == b':').unwrap_or(line.len());
        let name = std::str::from_utf8(&line[..colon]).unwrap_or_default();
        let value = line.get(colon + 2..).unwrap_or_default();
        let value = match std::str::from_utf8(value) {
            Ok(text) if value.is_ascii() => Cow::Borrowed(text),
            _ => Cow::Owned(latin1(value)),
        };
        Some((name, value))
    }
}
