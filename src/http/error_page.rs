//! Error responses in gunicorn's wire format (`write_error` in
//! `gunicorn/util.py`), and the [`HttpError`] constructors that carry
//! gunicorn's status, reason and message for each kind of bad request.

use std::io::{self, Write};

use super::text::{html_escape, push_decimal, py_bytes_repr, py_repr};
use super::HttpError;

/// Generic constructors, one per status the server answers on its own.
impl HttpError {
    /// `status` with its standard reason phrase.
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        HttpError {
            status,
            reason: super::status::reason_phrase(status),
            message: message.into(),
            bodiless: false,
        }
    }

    /// The same error, answered without the page's body (a HEAD request).
    pub fn without_body(mut self) -> Self {
        self.bodiless = true;
        self
    }

    /// The same error, as the answer to a request with this method: without
    /// a body for HEAD.
    pub fn for_method(self, method: &str) -> Self {
        if method == "HEAD" {
            self.without_body()
        } else {
            self
        }
    }

    /// 400 Bad Request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }

    /// 403 Forbidden.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, message)
    }

    /// 417 Expectation Failed.
    pub fn expectation_failed(message: impl Into<String>) -> Self {
        Self::new(417, message)
    }

    /// 431 Request Header Fields Too Large.
    pub fn header_fields_too_large(message: impl Into<String>) -> Self {
        Self::new(431, message)
    }

    /// 500 Internal Server Error (gunicorn shows an empty message).
    pub fn internal_server_error(message: impl Into<String>) -> Self {
        Self::new(500, message)
    }

    /// 501 Not Implemented. gunicorn sends "501 Bad Request" here (its reason
    /// phrase is never updated); we send the correct phrase.
    pub fn not_implemented(message: impl Into<String>) -> Self {
        Self::new(501, message)
    }
}

/// The gunicorn parse exceptions, with the page message `handle_error`
/// builds from each (texts kept verbatim, including the double-wrapped ones,
/// so clients and tests written against gunicorn see the same page).
impl HttpError {
    /// `InvalidRequestLine(line)`.
    pub fn invalid_request_line(line: &str) -> Self {
        Self::bad_request(format!(
            "Invalid Request Line 'Invalid HTTP request line: {}'",
            py_repr(line)
        ))
    }

    /// `InvalidRequestMethod(method)`.
    pub fn invalid_method(method: &str) -> Self {
        Self::bad_request(format!(
            "Invalid Method 'Invalid HTTP method: {}'",
            py_repr(method)
        ))
    }

    /// `InvalidHTTPVersion(version)` for a version token that is not `HTTP/d.d`.
    pub fn invalid_version(version: &str) -> Self {
        Self::bad_request(format!(
            "Invalid HTTP Version 'Invalid HTTP Version: {}'",
            py_repr(version)
        ))
    }

    /// `InvalidHTTPVersion((major, minor))` for a well-formed version outside
    /// [1.0, 2.0) (gunicorn shows the Python tuple).
    pub fn unsupported_version(major: u8, minor: u8) -> Self {
        Self::bad_request(format!(
            "Invalid HTTP Version 'Invalid HTTP Version: ({major}, {minor})'"
        ))
    }

    /// `InvalidHeader(what)`: a malformed line, or the upper-cased name of a
    /// field whose value or repetition is not acceptable.
    pub fn invalid_header(what: &str) -> Self {
        Self::bad_request(format!("Invalid HTTP Header: {}", py_repr(what)))
    }

    /// An HTTP/1.1 request without a Host field (RFC 9112 §3.2; gunicorn
    /// lets it through).
    pub fn missing_host() -> Self {
        Self::bad_request("Missing HTTP Header: 'HOST'")
    }

    /// `InvalidHeaderName(name)`.
    pub fn invalid_header_name(name: &str) -> Self {
        Self::bad_request(format!("Invalid HTTP header name: {}", py_repr(name)))
    }

    /// `ObsoleteFolding(name)`: a continuation line after field `name`.
    pub fn obsolete_folding(name: &str) -> Self {
        Self::bad_request(format!(
            "Obsolete line folding is unacceptable: {}",
            py_repr(name)
        ))
    }

    /// `LimitRequestLine(size, limit)`.
    pub fn request_line_too_large(size: usize, limit: usize) -> Self {
        Self::bad_request(format!("Request Line is too large ({size} > {limit})"))
    }

    /// `LimitRequestHeaders(what)`, e.g. `"limit request headers fields"`.
    pub fn limit_request_headers(what: &str) -> Self {
        Self::header_fields_too_large(format!("Error parsing headers: '{what}'"))
    }

    /// `ExpectationFailed(value)`.
    pub fn unmet_expectation(value: &str) -> Self {
        Self::expectation_failed(format!(
            "Unable to comply with expectation: {}",
            py_repr(value)
        ))
    }

    /// `UnsupportedTransferCoding(value)`.
    pub fn unsupported_transfer_coding(value: &str) -> Self {
        Self::not_implemented(format!("Unsupported transfer coding: {}", py_repr(value)))
    }

    /// `InvalidChunkSize(line)`.
    pub fn invalid_chunk_size(size: &[u8]) -> Self {
        Self::bad_request(format!("Invalid chunk size: {}", py_bytes_repr(size)))
    }

    /// `InvalidChunkExtension(ext)`.
    pub fn invalid_chunk_extension(ext: &[u8]) -> Self {
        Self::bad_request(format!("Invalid chunk extension: {}", py_bytes_repr(ext)))
    }

    /// `ChunkMissingTerminator(bytes)`: what came instead of the CRLF after
    /// a chunk's data.
    pub fn chunk_missing_terminator(found: &[u8]) -> Self {
        Self::bad_request(format!(
            "Invalid chunk terminator is not '\\r\\n': {}",
            py_bytes_repr(found)
        ))
    }
}

/// Writes `err` as gunicorn's `util.write_error` does: an HTTP/1.1 status
/// line, `Connection: close`, `Content-Type: text/html`, `Content-Length`
/// and a small HTML page; no `Server` or `Date`. One `write_all` call, so
/// the page normally leaves in a single segment. A [`bodiless`](HttpError::bodiless)
/// error sends the head only.
pub fn write_error<W: Write>(w: &mut W, err: &HttpError) -> io::Result<()> {
    w.write_all(&render_error(err))?;
    w.flush()
}

/// The complete error response, head and page.
pub fn render_error(err: &HttpError) -> Vec<u8> {
    let page = format!(
        "<html>\n  <head>\n    <title>{reason}</title>\n  </head>\n  <body>\n    \
         <h1><p>{reason}</p></h1>\n    {message}\n  </body>\n</html>\n",
        reason = err.reason,
        message = html_escape(&err.message),
    );
    // gunicorn encodes the page as latin-1; the message holds request bytes
    // decoded as latin-1, so this round-trips them. A char beyond latin-1
    // (only possible in a message built by hand) becomes '?'.
    let body: Vec<u8> = page
        .chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
        .collect();

    let mut out = Vec::with_capacity(body.len() + 128);
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(&mut out, u64::from(err.status));
    out.push(b' ');
    out.extend_from_slice(err.reason.as_bytes());
    out.extend_from_slice(b"\r\nConnection: close\r\nContent-Type: text/html\r\nContent-Length: ");
    push_decimal(&mut out, body.len() as u64);
    out.extend_from_slice(b"\r\n\r\n");
    if !err.bodiless {
        out.extend_from_slice(&body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts `write` calls so the single-write claim is checked.
    #[derive(Default)]
    struct CountingWriter {
        data: Vec<u8>,
        writes: usize,
    }

    impl Write for CountingWriter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.writes += 1;
            self.data.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn gunicorn_wire_format() {
        let err = HttpError::invalid_header("HOST");
        let mut w = CountingWriter::default();
        write_error(&mut w, &err).unwrap();
        let body = "<html>\n  <head>\n    <title>Bad Request</title>\n  </head>\n  <body>\n    \
                    <h1><p>Bad Request</p></h1>\n    Invalid HTTP Header: &#x27;HOST&#x27;\n  </body>\n</html>\n";
        let expected = format!(
            "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: text/html\r\n\
             Content-Length: {}\r\n\r\n{}",
            body.len(),
            body
        );
        assert_eq!(String::from_utf8(w.data).unwrap(), expected);
        assert_eq!(w.writes, 1);
    }

    #[test]
    fn head_requests_get_the_head_only() {
        let page = render_error(&HttpError::invalid_header("HOST"));
        let head_only = render_error(&HttpError::invalid_header("HOST").for_method("HEAD"));
        let end = head_only.len();
        assert!(head_only.ends_with(b"\r\n\r\n"));
        assert_eq!(
            &page[..end],
            &head_only[..],
            "the same head, with the page's length"
        );
        assert!(page.len() > end);
        assert!(!HttpError::invalid_header("HOST").for_method("GET").bodiless);
        assert!(
            !HttpError::invalid_header("HOST")
                .for_method("head")
                .bodiless
        );
    }

    #[test]
    fn message_is_escaped_and_latin1_encoded() {
        let err = HttpError::invalid_request_line("GET /<script>\u{e9}");
        let out = render_error(&err);
        let text: String = out.iter().map(|&b| char::from(b)).collect();
        assert!(text.contains(
            "Invalid Request Line &#x27;Invalid HTTP request line: &#x27;GET /&lt;script&gt;\u{e9}&#x27;&#x27;"
        ));
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.ends_with(&format!("Content-Length: {}", body.chars().count())));
        assert!(out.contains(&0xe9));
    }

    #[test]
    fn statuses_and_reasons() {
        let e = HttpError::limit_request_headers("limit request headers fields");
        assert_eq!(
            (e.status, e.reason),
            (431, "Request Header Fields Too Large")
        );
        assert_eq!(
            e.message,
            "Error parsing headers: 'limit request headers fields'"
        );
        let e = HttpError::unsupported_transfer_coding("br");
        assert_eq!((e.status, e.reason), (501, "Not Implemented"));
        assert_eq!(e.message, "Unsupported transfer coding: 'br'");
        let e = HttpError::unmet_expectation("bogus");
        assert_eq!((e.status, e.reason), (417, "Expectation Failed"));
        let e = HttpError::request_line_too_large(5014, 4094);
        assert_eq!(e.message, "Request Line is too large (5014 > 4094)");
        assert_eq!(HttpError::forbidden("x").reason, "Forbidden");
        assert_eq!(
            HttpError::unsupported_version(2, 0).message,
            "Invalid HTTP Version 'Invalid HTTP Version: (2, 0)'"
        );
    }
}
