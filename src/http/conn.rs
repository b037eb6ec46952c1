//! A buffered client connection: reads the request head, then hands out the
//! body reader, with gunicorn's limits and framing rules
//! (`gunicorn/http/message.py`).

use std::io::{self, Read, Write};

use super::body::BodyReader;
use super::parse::{
    bare_lf_in_field, body_framing, parse_header_block, parse_request_line, reconcile_host,
    EffectiveLimits, RequestLine, Section,
};
use super::text::{find_line_end, find_section_end, latin1, line_with_bare_lf};
use super::{HeadError, HttpError, Limits, RequestHead};

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

    /// The bytes read from the stream but not consumed yet (a pipelined
    /// request's beginning, once a response is out).
    pub fn unread(&self) -> &[u8] {
        &self.buf[self.pos..self.end]
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

    /// Reads and validates the request line and header block, for a peer
    /// that is not trusted with the `--forwarder-headers` fields; see
    /// [`read_head_from`](Self::read_head_from). (The worker always says
    /// who the peer is; the tests and the fuzz targets use this.)
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn read_head(&mut self, limits: &Limits) -> Result<Option<RequestHead>, HeadError> {
        self.read_head_trusting(limits, false)
    }

    /// Reads and validates the request line and header block; `trusted`
    /// is whether the peer is a trusted front end (`--forwarded-allow-ips`,
    /// [`super::forwarded::AllowList::allows`]), which decides whether the
    /// `--forwarder-headers` fields are kept.
    ///
    /// - `Ok(None)`: the peer closed before sending a byte (gunicorn logs
    ///   "Closing connection." at debug and closes).
    /// - `Err(HeadError::Io(_))`: the connection failed or the peer closed
    ///   mid-head (`UnexpectedEof`); no response is possible or useful.
    /// - `Err(HeadError::Invalid(e))`: answer with [`super::write_error`].
    ///   A bare LF is refused as soon as it arrives, without waiting for
    ///   the rest of the head.
    pub fn read_head_trusting(
        &mut self,
        limits: &Limits,
        trusted: bool,
    ) -> Result<Option<RequestHead>, HeadError> {
        let effective = EffectiveLimits::from(limits);
        self.limits = effective;
        if self.buffered().is_empty() && self.fill()? == 0 {
            return Ok(None);
        }

        let line_len = self.await_request_line(effective.request_line)?;
        let line = parse_request_line(&self.buffered()[..line_len], &effective)?;
        self.consume(line_len + 2);

        // From here on the method is known: a HEAD gets its error page
        // without a body.
        let head_request = line.method == "HEAD";
        match self.read_fields(line, limits, &effective, trusted) {
            Ok(head) => Ok(Some(head)),
            Err(HeadError::Invalid(e)) if head_request => Err(e.without_body().into()),
            Err(e) => Err(e),
        }
    }

    /// The rest of the head after the request line: the header block, the
    /// Host rules and the body framing.
    fn read_fields(
        &mut self,
        line: RequestLine,
        limits: &Limits,
        effective: &EffectiveLimits,
        trusted: bool,
    ) -> Result<RequestHead, HeadError> {
        let block_len = self.await_header_block(effective.header_block)?;
        let forwarders: &[String] = if trusted {
            &limits.rules.forwarder_headers
        } else {
            &[]
        };
        let block = match block_len {
            0 => Default::default(),
            n => parse_header_block(
                &self.buffered()[..n],
                Section::Head {
                    version: line.version,
                    forwarders,
                },
                effective,
            )?,
        };
        // The block is followed by CRLFCRLF, an empty block by a lone CRLF.
        self.consume(if block_len == 0 { 2 } else { block_len + 4 });

        let mut headers = block.headers;
        reconcile_host(&line, &mut headers)?;
        let framing = body_framing(&headers, line.version)?;
        Ok(RequestHead {
            method: line.method,
            uri: line.uri,
            path: line.path,
            query: line.query,
            version: line.version,
            headers,
            framing,
            expect_continue: block.expect_continue,
        })
    }

    /// The request body (`Length(0)` bodies read as empty at once). See
    /// [`BodyReader`] for `100 Continue` and error reporting.
    pub fn body(&mut self, head: &RequestHead) -> BodyReader<'_, S> {
        BodyReader::new(
            self,
            head.framing,
            head.expects_continue(),
            head.method == "HEAD",
        )
    }

    /// Buffers until the request line's CRLF and returns the line's length,
    /// with gunicorn's `read_line` limit checks.
    fn await_request_line(&mut self, limit: usize) -> Result<usize, HeadError> {
        let mut scanned = 0;
        loop {
            let data = self.buffered();
            match find_line_end(data, scanned) {
                Ok(Some(idx)) if idx > limit => {
                    return Err(HttpError::request_line_too_large(idx, limit).into());
                }
                Ok(Some(idx)) => return Ok(idx),
                Err(lf) => {
                    return Err(HttpError::invalid_request_line(&latin1(&data[..=lf])).into())
                }
                Ok(None) => {}
            }
            // gunicorn compares the whole buffered length less the 2 bytes
            // a CRLF would take, and reports the buffered length.
            if data.len().saturating_sub(2) > limit {
                return Err(HttpError::request_line_too_large(data.len(), limit).into());
            }
            scanned = data.len();
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
            match find_section_end(data, scanned) {
                Ok(Some(idx)) => return Ok(idx),
                Err(lf) => return Err(bare_lf_in_field(line_with_bare_lf(data, lf)).into()),
                Ok(None) => {}
            }
            if data.len() > max {
                return Err(HttpError::limit_request_headers("max buffer headers").into());
            }
            scanned = data.len();
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
