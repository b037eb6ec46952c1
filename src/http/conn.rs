//! A buffered client connection: reads the request head, then hands out the
//! body reader, with gunicorn's limits and framing rules
//! (`gunicorn/http/message.py`).

use std::io::{self, Read, Write};

use super::body::BodyReader;
use super::parse::{
    body_framing, parse_header_block, parse_request_line, EffectiveLimits, Section,
};
use super::text::{find_crlf, find_double_crlf};
use super::{HeadError, Limits, RequestHead};

/// Initial read buffer. Requests that fit (nearly all) never cause another
/// allocation; longer heads grow it, bounded by the limits.
const INITIAL_BUFFER: usize = 8 * 1024;

/// A connection with its read buffer.
///
/// The stream only needs `Read + Write` (writes are for `100 Continue`).
/// For sockets use a shared reference, `Connection::new(&stream)`:
/// `&TcpStream` and `&UnixStream` implement both traits, so the response can
/// be written through another `&stream` while the body reader borrows the
/// connection. See the module docs of [`crate::http`].
pub struct Connection<S: Read + Write> {
    stream: S,
    /// `buf[pos..end]` holds bytes read from the stream but not yet consumed.
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    /// The limits of the last `read_head`, which also bound the trailers.
    limits: EffectiveLimits,
}

impl<S: Read + Write> Connection<S> {
    pub fn new(stream: S) -> Self {
        Connection {
            stream,
            buf: vec![0; INITIAL_BUFFER],
            pos: 0,
            end: 0,
            limits: EffectiveLimits::default(),
        }
    }

    /// A connection whose first bytes were already read from the stream
    /// (by the worker's event loop, while it waited for the whole head).
    pub fn with_received(stream: S, received: &[u8]) -> Self {
        let mut conn = Connection::new(stream);
        if received.len() > conn.buf.len() {
            conn.buf.resize(received.len(), 0);
        }
        conn.buf[..received.len()].copy_from_slice(received);
        conn.end = received.len();
        conn
    }

    /// How many bytes are read from the stream but not consumed yet.
    pub fn buffered_len(&self) -> usize {
        self.end - self.pos
    }

    #[cfg(test)]
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The stream; bytes still buffered are lost.
    #[cfg(test)]
    pub fn into_inner(self) -> S {
        self.stream
    }

    /// Reads and validates the request line and header block.
    ///
    /// - `Ok(None)`: the peer closed before sending a byte (gunicorn logs
    ///   "Closing connection." at debug and closes).
    /// - `Err(HeadError::Io(_))`: the connection failed or the peer closed
    ///   mid-head (`UnexpectedEof`); no response is possible or useful.
    /// - `Err(HeadError::Invalid(e))`: answer with [`super::write_error`].
    pub fn read_head(&mut self, limits: &Limits) -> Result<Option<RequestHead>, HeadError> {
        let limits = EffectiveLimits::from(limits);
        self.limits = limits;
        if self.buffered().is_empty() && self.fill()? == 0 {
            return Ok(None);
        }

        let line_len = self.await_request_line(limits.request_line)?;
        let line = parse_request_line(&self.buffered()[..line_len])?;
        self.consume(line_len + 2);

        let block_len = self.await_header_block(limits.header_block)?;
        let block = match block_len {
            0 => Default::default(),
            n => parse_header_block(
                &self.buffered()[..n],
                Section::Head {
                    version: line.version,
                },
                &limits,
            )?,
        };
        // The block is followed by CRLFCRLF, an empty block by a lone CRLF.
        self.consume(if block_len == 0 { 2 } else { block_len + 4 });

        let framing = body_framing(&block.headers, line.version)?;
        Ok(Some(RequestHead {
            method: line.method,
            uri: line.uri,
            path: line.path,
            query: line.query,
            version: line.version,
            headers: block.headers,
            framing,
            expect_continue: block.expect_continue,
        }))
    }

    /// The request body (`Length(0)` bodies read as empty at once). See
    /// [`BodyReader`] for `100 Continue` and error reporting.
    pub fn body(&mut self, head: &RequestHead) -> BodyReader<'_, S> {
        BodyReader::new(self, head.framing, head.expect_continue)
    }

    /// Buffers until the request line's CRLF and returns the line's length,
    /// with gunicorn's `read_line` limit checks.
    fn await_request_line(&mut self, limit: usize) -> Result<usize, HeadError> {
        let mut scanned = 0;
        loop {
            let data = self.buffered();
            if let Some(idx) = find_crlf(data, scanned) {
                if idx > limit {
                    return Err(super::HttpError::request_line_too_large(idx, limit).into());
                }
                return Ok(idx);
            }
            // gunicorn compares the whole buffered length less the 2 bytes
            // a CRLF would take, and reports the buffered length.
            if data.len().saturating_sub(2) > limit {
                return Err(super::HttpError::request_line_too_large(data.len(), limit).into());
            }
            scanned = data.len().saturating_sub(1);
            self.fill_or_eof()?;
        }
    }

    /// Buffers until the end of the header block and returns the block's
    /// length without its terminator (0 for no headers).
    fn await_header_block(&mut self, max: usize) -> Result<usize, HeadError> {
        let mut scanned = 0;
        loop {
            let data = self.buffered();
            if data.starts_with(b"\r\n") {
                return Ok(0);
            }
            if let Some(idx) = find_double_crlf(data, scanned) {
                return Ok(idx);
            }
            if data.len() > max {
                return Err(super::HttpError::limit_request_headers("max buffer headers").into());
            }
            scanned = data.len().saturating_sub(3);
            self.fill_or_eof()?;
        }
    }

    /// Bytes read from the stream and not consumed yet.
    pub(crate) fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..self.end]
    }

    pub(crate) fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.end - self.pos);
        self.pos += n;
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
        }
    }

    pub(crate) fn buffer_capacity(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn limits(&self) -> &EffectiveLimits {
        &self.limits
    }

    /// Reads once from the stream into the buffer, making room first
    /// (compacting, or doubling when the buffer is full of unread bytes;
    /// callers check their limits between calls, which bounds the growth).
    /// Returns the number of bytes read, 0 at end of stream.
    pub(crate) fn fill(&mut self) -> io::Result<usize> {
        if self.end == self.buf.len() {
            if self.pos > 0 {
                self.buf.copy_within(self.pos..self.end, 0);
                self.end -= self.pos;
                self.pos = 0;
            } else {
                let doubled = self.buf.len() * 2;
                self.buf.resize(doubled, 0);
            }
        }
        let n = read_retrying(&mut self.stream, &mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }

    /// [`fill`](Self::fill), with end of stream as `UnexpectedEof`.
    pub(crate) fn fill_or_eof(&mut self) -> io::Result<()> {
        match self.fill()? {
            0 => Err(premature_eof()),
            _ => Ok(()),
        }
    }

    /// Reads straight into `out`, bypassing the (empty) buffer; for large
    /// body reads.
    pub(crate) fn read_direct(&mut self, out: &mut [u8]) -> io::Result<usize> {
        debug_assert!(self.buffered().is_empty());
        read_retrying(&mut self.stream, out)
    }

    pub(crate) fn write_all_to_peer(&mut self, data: &[u8]) -> io::Result<()> {
        self.stream.write_all(data)?;
        self.stream.flush()
    }
}

fn read_retrying<S: Read>(stream: &mut S, out: &mut [u8]) -> io::Result<usize> {
    loop {
        match stream.read(out) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            result => return result,
        }
    }
}

/// The client closed the connection in the middle of a request (gunicorn's
/// `NoMoreData`: logged at debug, no response).
pub(crate) fn premature_eof() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "client closed the connection mid-request",
    )
}
