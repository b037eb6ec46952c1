//! Request body readers: Content-Length and chunked (gunicorn's
//! `gunicorn/http/body.py`).

use std::io::{self, Read, Write};

use super::conn::{premature_eof, Connection};
use super::parse::{bare_lf_in_field, parse_header_block, Section};
use super::text::{find_line_end, find_section_end, line_with_bare_lf};
use super::{BodyFraming, HttpError};

/// The interim response sent before the first body byte is read from the
/// socket when the client asked for it.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// How much [`BodyReader::drain`] discards at most. Past it the worker just
/// closes (it always does after one request); this bounds the time a slow
/// or hostile client can keep a sync worker busy after the app is done.
#[cfg(test)]
pub const DRAIN_LIMIT: u64 = 64 * 1024;

/// Where the decoder is in the body.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Content-Length body with this many bytes left.
    Length(u64),
    /// Expecting a chunk-size line.
    ChunkSize,
    /// Inside a chunk with this many data bytes left.
    ChunkData(u64),
    /// Expecting the CRLF after a chunk's data.
    ChunkEnd,
    /// After the last chunk: expecting trailers or the final CRLF.
    Trailers,
    Done,
    /// A framing error; every later read reports it again.
    Failed(HttpError),
    /// The client closed mid-body; every later read reports it again.
    Eof,
}

/// Reads a request body, de-chunked; returns 0 at its end.
///
/// Errors:
/// - a malformed chunked body gives an `io::Error` of kind `InvalidData`
///   whose inner error is the [`HttpError`] to answer with (get it back
///   with [`http_error`]);
/// - the client closing before the end gives `UnexpectedEof`
///   (gunicorn's `NoMoreData`: log at debug, no response);
/// - socket errors are passed through.
///
/// If the request carried `Expect: 100-continue`, `HTTP/1.1 100 Continue`
/// is written to the connection's stream right before the first read from
/// the socket (not if the body is already buffered, and never by
/// [`drain`](Self::drain)). An app that starts its response before reading
/// the body should not read it afterwards: the interim response would then
/// follow the final one.
pub struct BodyReader<'c, S: Read + Write> {
    conn: &'c mut Connection<S>,
    state: State,
    continue_pending: bool,
    /// Set by `drain` when the client still waits for `100 Continue`: it has
    /// not sent the body and will not be asked to, so the socket is not read.
    withheld: bool,
    /// The request is a HEAD: a malformed body is answered without a page.
    head_request: bool,
    trailers: Vec<(String, String)>,
}

impl<'c, S: Read + Write> BodyReader<'c, S> {
    pub(crate) fn new(
        conn: &'c mut Connection<S>,
        framing: BodyFraming,
        expect_continue: bool,
        head_request: bool,
    ) -> Self {
        let state = match framing {
            BodyFraming::Length(0) => State::Done,
            BodyFraming::Length(n) => State::Length(n),
            BodyFraming::Chunked => State::ChunkSize,
        };
        let continue_pending = expect_continue && state != State::Done;
        BodyReader {
            conn,
            state,
            continue_pending,
            withheld: false,
            head_request,
            trailers: Vec::new(),
        }
    }

    /// Whether the whole body, trailers included, has been read.
    pub fn is_complete(&self) -> bool {
        self.state == State::Done
    }

    /// Trailer fields of a chunked body, once it has been read to the end
    /// (same rules and limits as header fields; framing and credential
    /// fields are refused). Apps do not see them (neither do gunicorn's);
    /// the tests read them.
    #[cfg(test)]
    pub fn trailers(&self) -> &[(String, String)] {
        &self.trailers
    }

    /// Reads and discards what is left of the body, up to [`DRAIN_LIMIT`]
    /// bytes, so that closing the socket does not reset a connection whose
    /// client is still sending. Returns the number of bytes discarded; check
    /// [`is_complete`](Self::is_complete) to know whether the end was
    /// reached. When the client is still waiting for `100 Continue` it has
    /// not sent the body: nothing is read from the socket then. (The
    /// worker does not drain: it closes with a lingering close, in its
    /// event loop, `crate::worker::clients`.)
    #[cfg(test)]
    pub fn drain(&mut self) -> io::Result<u64> {
        if self.continue_pending {
            // The client waits for our go-ahead before sending the body:
            // discard only what it sent early; later reads report the body
            // as cut short.
            self.continue_pending = false;
            self.withheld = true;
        }
        let mut discarded = 0;
        let mut scratch = [0u8; 8 * 1024];
        while discarded < DRAIN_LIMIT && !self.is_complete() {
            let want = scratch.len().min((DRAIN_LIMIT - discarded) as usize);
            match self.read(&mut scratch[..want]) {
                Ok(0) => break,
                Ok(n) => discarded += n as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if self.withheld && e.kind() == io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e),
            }
        }
        Ok(discarded)
    }

    /// Makes bytes available in the connection buffer: one socket read,
    /// preceded by `100 Continue` the first time. End of stream is an error
    /// here, since every caller is inside the body.
    fn fill(&mut self) -> io::Result<()> {
        self.before_socket_read()?;
        self.conn.fill_or_eof()
    }

    /// Sends `100 Continue` the first time the body is read from the socket;
    /// refuses to read once the body was abandoned by `drain`.
    fn before_socket_read(&mut self) -> io::Result<()> {
        if self.withheld {
            return Err(premature_eof());
        }
        if self.continue_pending {
            self.continue_pending = false;
            self.conn.write_all_to_peer(CONTINUE)?;
        }
        Ok(())
    }

    /// Copies up to `min(out.len(), left)` body bytes into `out`. Reads that
    /// are at least a buffer long go straight to the caller's memory.
    fn read_data(&mut self, out: &mut [u8], left: u64) -> io::Result<usize> {
        let want = usize::try_from(left).map_or(out.len(), |left| left.min(out.len()));
        if self.conn.buffered().is_empty() {
            if want >= self.conn.buffer_capacity() {
                self.before_socket_read()?;
                return match self.conn.read_direct(&mut out[..want])? {
                    0 => Err(premature_eof()),
                    n => Ok(n),
                };
            }
            self.fill()?;
        }
        let available = self.conn.buffered();
        let n = want.min(available.len());
        out[..n].copy_from_slice(&available[..n]);
        self.conn.consume(n);
        Ok(n)
    }

    /// Parses the next chunk-size line, buffering until its CRLF; a bare LF
    /// is refused as soon as it arrives.
    fn read_chunk_size(&mut self) -> io::Result<u64> {
        let max_line = self.conn.limits().field_size;
        let mut scanned = 0;
        let len = loop {
            let data = self.conn.buffered();
            match find_line_end(data, scanned) {
                Ok(Some(i)) => break i,
                Err(lf) => {
                    // The LF is in the size or in an extension: say which.
                    let line = &data[..=lf];
                    let e = parse_chunk_size_line(line)
                        .err()
                        .unwrap_or_else(|| HttpError::invalid_chunk_size(line));
                    return Err(invalid(e));
                }
                Ok(None) => {}
            }
            // gunicorn has no cap here; a size line longer than a header
            // field is not one any client sends.
            if data.len() > max_line {
                let line = &data[..max_line.min(64)];
                return Err(invalid(HttpError::invalid_chunk_size(line)));
            }
            scanned = data.len();
            self.fill()?;
        };
        let size = parse_chunk_size_line(&self.conn.buffered()[..len]).map_err(invalid)?;
        self.conn.consume(len + 2);
        Ok(size)
    }

    /// Checks the CRLF that must follow each chunk's data.
    fn read_chunk_end(&mut self) -> io::Result<()> {
        while self.conn.buffered().len() < 2 {
            self.fill()?;
        }
        let found = &self.conn.buffered()[..2];
        if found != b"\r\n" {
            return Err(invalid(HttpError::chunk_missing_terminator(found)));
        }
        self.conn.consume(2);
        Ok(())
    }

    /// Reads the trailer section after the last chunk, through its final
    /// CRLF; a bare LF is refused as soon as it arrives.
    fn read_trailers(&mut self) -> io::Result<()> {
        let limits = *self.conn.limits();
        let mut scanned = 0;
        loop {
            let data = self.conn.buffered();
            if data.starts_with(b"\r\n") {
                self.conn.consume(2);
                return Ok(());
            }
            match find_section_end(data, scanned) {
                Ok(Some(end)) => {
                    let block = parse_header_block(&data[..end], Section::Trailer, &limits)
                        .map_err(invalid)?;
                    self.trailers = block.headers;
                    self.conn.consume(end + 4);
                    return Ok(());
                }
                Err(lf) => return Err(invalid(bare_lf_in_field(line_with_bare_lf(data, lf)))),
                Ok(None) => {}
            }
            // gunicorn leaves trailers unbounded; we apply the header block cap.
            if data.len() > limits.header_block {
                return Err(invalid(HttpError::limit_request_headers(
                    "max buffer headers",
                )));
            }
            scanned = data.len();
            self.fill()?;
        }
    }

    /// One step of the decoder that produces data or reaches the end.
    fn read_body(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.state {
                State::Done => return Ok(0),
                State::Failed(ref e) => return Err(invalid(e.clone())),
                State::Eof => return Err(premature_eof()),
                State::Length(left) => {
                    let n = self.read_data(out, left)?;
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::Done
                    } else {
                        State::Length(left)
                    };
                    return Ok(n);
                }
                State::ChunkSize => {
                    self.state = match self.read_chunk_size()? {
                        0 => State::Trailers,
                        size => State::ChunkData(size),
                    }
                }
                State::ChunkData(left) => {
                    let n = self.read_data(out, left)?;
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::ChunkEnd
                    } else {
                        State::ChunkData(left)
                    };
                    return Ok(n);
                }
                State::ChunkEnd => {
                    self.read_chunk_end()?;
                    self.state = State::ChunkSize;
                }
                State::Trailers => {
                    self.read_trailers()?;
                    self.state = State::Done;
                }
            }
        }
    }
}

impl<S: Read + Write> Read for BodyReader<'_, S> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        let result = self.read_body(out).map_err(|e| match http_error(&e) {
            Some(bad) if self.head_request && !bad.bodiless => invalid(bad.clone().without_body()),
            _ => e,
        });
        if let Err(e) = &result {
            // Remember protocol failures so a retrying caller cannot read
            // past them into bytes of unknown meaning.
            if let Some(http) = http_error(e) {
                self.state = State::Failed(http.clone());
            } else if e.kind() == io::ErrorKind::UnexpectedEof {
                self.state = State::Eof;
            }
        }
        result
    }
}

/// The [`HttpError`] inside an `io::Error` returned by a [`BodyReader`]
/// (or converted with `io::Error::from`), if there is one.
pub fn http_error(e: &io::Error) -> Option<&HttpError> {
    e.get_ref()?.downcast_ref::<HttpError>()
}

/// An [`HttpError`] as the `io::Error` a body read returns.
fn invalid(e: HttpError) -> io::Error {
    io::Error::from(e)
}

/// Parses a chunk-size line without its CRLF (gunicorn's `parse_chunk_size`):
/// hex digits only (no sign, `0x` or inner spaces), optionally followed by
/// SP/HTAB and a `;` extension.
///
/// Why not `httparse::parse_chunk_size`: it accepts an empty size as 0 (which
/// would end the body early: a smuggling vector) and trailing whitespace
/// without an extension, both of which gunicorn refuses.
fn parse_chunk_size_line(line: &[u8]) -> Result<u64, HttpError> {
    let (size, extension) = match line.iter().position(|&b| b == b';') {
        Some(i) => {
            // RFC 9112 §7.1.1: BWS is allowed before `;`, and only there.
            let size = &line[..i];
            let end = size
                .iter()
                .rposition(|&b| b != b' ' && b != b'\t')
                .map_or(0, |p| p + 1);
            (&size[..end], Some(&line[i + 1..]))
        }
        None => (line, None),
    };
    // gunicorn refuses a bare CR in an extension; we refuse every control
    // byte but HTAB, so that a bare LF cannot be read as a line end by a
    // front end that is laxer than us.
    if let Some(ext) = extension {
        if ext.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(HttpError::invalid_chunk_extension(ext));
        }
    }
    if size.is_empty() {
        return Err(HttpError::invalid_chunk_size(size));
    }
    size.iter().try_fold(0u64, |acc, &b| {
        let digit = char::from(b)
            .to_digit(16)
            .ok_or_else(|| HttpError::invalid_chunk_size(size))?;
        acc.checked_mul(16)
            .and_then(|v| v.checked_add(u64::from(digit)))
            .ok_or_else(|| HttpError::invalid_chunk_size(size))
    })
}

#[cfg(test)]
mod tests {
    use super::parse_chunk_size_line;

    #[test]
    fn chunk_size_lines() {
        assert_eq!(parse_chunk_size_line(b"1a"), Ok(26));
        assert_eq!(parse_chunk_size_line(b"00FF"), Ok(255));
        assert_eq!(parse_chunk_size_line(b"5;name=value"), Ok(5));
        assert_eq!(parse_chunk_size_line(b"5 \t;name=\"quoted\""), Ok(5));
        assert_eq!(parse_chunk_size_line(b"0"), Ok(0));
        assert_eq!(parse_chunk_size_line(b"ffffffffffffffff"), Ok(u64::MAX));
        for bad in [
            &b""[..],
            b"0x10",
            b"+5",
            b"-5",
            b"5 ",
            b" 5",
            b"1_0",
            b"g",
            b";ext",
            b"10000000000000000",
        ] {
            let e = parse_chunk_size_line(bad).unwrap_err();
            assert!(
                e.message.starts_with("Invalid chunk size"),
                "{bad:?}: {}",
                e.message
            );
        }
        assert_eq!(
            parse_chunk_size_line(b"0x10").unwrap_err().message,
            "Invalid chunk size: b'0x10'"
        );
        for bad in [&b"5;a\rb"[..], b"5;a\nb", b"5;\0"] {
            let e = parse_chunk_size_line(bad).unwrap_err();
            assert!(
                e.message.starts_with("Invalid chunk extension"),
                "{bad:?}: {}",
                e.message
            );
        }
    }
}
