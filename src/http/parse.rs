//! Pure parsing of a request line, a header (or trailer) block and the body
//! framing, following gunicorn's `gunicorn/http/message.py` rule by rule.
//!
//! Why not `httparse`: it accepts a bare LF as a line ending (a request
//! smuggling vector gunicorn closes by splitting on CRLF only), knows only
//! HTTP/1.0 and 1.1 (gunicorn accepts 1.x and reports 2.0 differently), and
//! its errors do not say which line or field was wrong, which gunicorn's
//! error pages do. The rules are simple byte checks, so they are written
//! out here, each next to the gunicorn rule it implements.

use super::text::{find_crlf, is_token, latin1, parse_decimal, trim_sp_htab};
use super::{BodyFraming, HttpError, Limits};

/// gunicorn's `MAX_REQUEST_LINE`: larger `limit_request_line` values clamp to it.
const MAX_REQUEST_LINE: usize = 8190;
/// gunicorn's `MAX_HEADERS`.
const MAX_HEADERS: usize = 32768;
/// gunicorn's `DEFAULT_MAX_HEADERFIELD_SIZE`.
const DEFAULT_FIELD_SIZE: usize = 8190;
/// `limit_request_line = 0` means "unlimited" in gunicorn's Python parser;
/// we still stop at 1 MiB (the cap of gunicorn's fast C parser) so a client
/// cannot make a worker buffer without end.
const UNLIMITED_REQUEST_LINE: usize = 1 << 20;

/// The limits as the parser applies them. Normalising again is harmless
/// (gunicorn's mapping is idempotent) and protects against a caller that
/// built `Limits` by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EffectiveLimits {
    pub request_line: usize,
    pub fields: usize,
    pub field_size: usize,
    /// gunicorn's `max_buffer_headers = fields * (field_size + 2) + 4`.
    pub header_block: usize,
}

impl From<&Limits> for EffectiveLimits {
    fn from(limits: &Limits) -> Self {
        let request_line = match limits.request_line {
            0 => UNLIMITED_REQUEST_LINE,
            n => n.min(MAX_REQUEST_LINE),
        };
        let fields = match limits.fields {
            0 => MAX_HEADERS,
            n => n.min(MAX_HEADERS),
        };
        let field_size = match limits.field_size {
            0 => DEFAULT_FIELD_SIZE,
            n => n,
        };
        let header_block = fields
            .saturating_mul(field_size.saturating_add(2))
            .saturating_add(4);
        EffectiveLimits {
            request_line,
            fields,
            field_size,
            header_block,
        }
    }
}

impl Default for EffectiveLimits {
    fn default() -> Self {
        EffectiveLimits::from(&Limits::default())
    }
}

/// The parts of a request line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestLine {
    pub method: String,
    pub uri: String,
    pub path: String,
    pub query: String,
    pub version: (u8, u8),
}

/// Parses a request line (without its CRLF), gunicorn's `parse_request_line`.
pub(crate) fn parse_request_line(line: &[u8]) -> Result<RequestLine, HttpError> {
    // Split on single SP into at most 3 parts: a double space yields an empty
    // part, and anything after the second SP belongs to the version.
    let mut parts = line.splitn(3, |&b| b == b' ');
    let (Some(method), Some(uri), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::invalid_request_line(&latin1(line)));
    };

    check_method(method)?;
    if uri.is_empty() {
        return Err(HttpError::invalid_request_line(&latin1(line)));
    }
    let (path, query) =
        split_target(method, uri).ok_or_else(|| HttpError::invalid_request_line(&latin1(line)))?;
    let version = parse_version(version)?;

    Ok(RequestLine {
        method: latin1(method),
        uri: latin1(uri),
        path: latin1(path),
        query: latin1(query),
        version,
    })
}

/// gunicorn's default method rules: no `[a-z#]`, 3 to 20 bytes, an RFC 9110 token.
fn check_method(method: &[u8]) -> Result<(), HttpError> {
    let conventional = (3..=20).contains(&method.len())
        && !method.iter().any(|&b| b.is_ascii_lowercase() || b == b'#');
    if conventional && is_token(method) {
        Ok(())
    } else {
        Err(HttpError::invalid_method(&latin1(method)))
    }
}

/// Checks the request-target form against the method and splits it into
/// path and query (the fragment, if a client sends one, is dropped).
/// `None` means an invalid target.
///
/// Stricter than gunicorn in two places, both to keep ambiguous bytes out of
/// `PATH_INFO`: control characters are rejected where Python's `urlsplit`
/// silently removes TAB/CR/LF, and an absolute-form target must begin with
/// a syntactically valid scheme.
fn split_target<'a>(method: &[u8], uri: &'a [u8]) -> Option<(&'a [u8], &'a [u8])> {
    if uri.iter().any(|&b| b < 0x21 || b == 0x7f) {
        return None;
    }
    if uri == b"*" {
        // asterisk-form: only for a server-wide OPTIONS.
        return (method == b"OPTIONS").then_some((uri, &uri[..0]));
    }
    if method == b"CONNECT" {
        // authority-form (host:port) is what CONNECT takes, and only CONNECT.
        return is_authority_form(uri).then_some((&uri[..0], &uri[..0]));
    }
    let path_and_query = if uri.starts_with(b"/") {
        uri
    } else {
        // absolute-form: scheme "://" authority [path] ["?" query]
        let sep = uri.windows(3).position(|w| w == b"://")?;
        if !is_scheme(&uri[..sep]) {
            return None;
        }
        let rest = &uri[sep + 3..];
        let authority_end = rest
            .iter()
            .position(|&b| matches!(b, b'/' | b'?' | b'#'))
            .unwrap_or(rest.len());
        // urlsplit raises ValueError ("Invalid IPv6 URL") for unbalanced brackets.
        let authority = &rest[..authority_end];
        if authority.contains(&b'[') != authority.contains(&b']') {
            return None;
        }
        &rest[authority_end..]
    };
    let without_fragment = match path_and_query.iter().position(|&b| b == b'#') {
        Some(i) => &path_and_query[..i],
        None => path_and_query,
    };
    Some(match without_fragment.iter().position(|&b| b == b'?') {
        Some(i) => (&without_fragment[..i], &without_fragment[i + 1..]),
        None => (without_fragment, &without_fragment[..0]),
    })
}

/// RFC 3986 `scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
fn is_scheme(s: &[u8]) -> bool {
    matches!(s.first(), Some(b) if b.is_ascii_alphabetic())
        && s.iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// `host ":" port` with a non-empty host (a bracketed IPv6 literal or a name
/// without path characters) and a decimal port.
fn is_authority_form(uri: &[u8]) -> bool {
    let Some(colon) = uri.iter().rposition(|&b| b == b':') else {
        return false;
    };
    let (host, port) = (&uri[..colon], &uri[colon + 1..]);
    let host_ok = if host.starts_with(b"[") {
        host.len() > 2 && host.ends_with(b"]")
    } else {
        !host.is_empty()
            && !host
                .iter()
                .any(|&b| matches!(b, b'/' | b'?' | b'#' | b'[' | b']' | b'@'))
    };
    host_ok && port.len() <= 5 && parse_decimal(port).is_some_and(|p| p <= 65535)
}

/// `HTTP/d.d` with (1,0) <= version < (2,0).
fn parse_version(token: &[u8]) -> Result<(u8, u8), HttpError> {
    match token {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            let version = (major - b'0', minor - b'0');
            if version.0 == 1 {
                Ok(version)
            } else {
                Err(HttpError::unsupported_version(version.0, version.1))
            }
        }
        _ => Err(HttpError::invalid_version(&latin1(token))),
    }
}

/// Which block is being parsed: the rules for a request's headers and for a
/// chunked body's trailers differ slightly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    /// The request's header block, for a request of this version.
    Head { version: (u8, u8) },
    /// Chunked-body trailers.
    Trailer,
}

/// What a header block yields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HeaderBlock {
    pub headers: Vec<(String, String)>,
    pub expect_continue: bool,
}

/// Fields that may appear only once in a request head (gunicorn 26.1).
const SINGLETON_FIELDS: [&str; 2] = ["host", "content-type"];

/// Fields that must not be sent as trailers: framing, routing and
/// credentials a proxy has already acted on.
const FORBIDDEN_TRAILERS: [&str; 6] = [
    "host",
    "content-length",
    "transfer-encoding",
    "trailer",
    "authorization",
    "te",
];

/// Parses a header block: the bytes between the request line's CRLF and the
/// empty line, without the final CRLFCRLF. gunicorn's `parse_headers`, with
/// `header_map = drop` and obsolete folding refused.
pub(crate) fn parse_header_block(
    block: &[u8],
    section: Section,
    limits: &EffectiveLimits,
) -> Result<HeaderBlock, HttpError> {
    let mut out = HeaderBlock::default();
    let mut lines = CrlfLines { rest: Some(block) }.peekable();
    while let Some(line) = lines.next() {
        // Checked before each line; dropped fields never got counted.
        if out.headers.len() >= limits.fields {
            return Err(HttpError::limit_request_headers(
                "limit request headers fields",
            ));
        }
        let colon = match line.iter().position(|&b| b == b':') {
            Some(i) if i > 0 => i,
            _ => return Err(HttpError::invalid_header(&latin1(line))),
        };
        let name = &line[..colon];
        // Whitespace before the colon (`Name :`) fails here, as it must
        // (RFC 9112 §5.1): some proxies would strip it and see another field.
        if !is_token(name) {
            return Err(HttpError::invalid_header_name(&latin1(name)));
        }
        if lines
            .peek()
            .is_some_and(|next| next.starts_with(b" ") || next.starts_with(b"\t"))
        {
            return Err(HttpError::obsolete_folding(&upper(name)));
        }
        let value = trim_sp_htab(&line[colon + 1..]);
        // HTAB and obs-text (0x80-0xFF) are fine; other controls are not.
        if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(HttpError::invalid_header(&upper(name)));
        }
        if line.len() + 2 > limits.field_size {
            return Err(HttpError::limit_request_headers(
                "limit request headers fields size",
            ));
        }
        let name_text = latin1(name);
        if section == Section::Trailer
            && FORBIDDEN_TRAILERS
                .iter()
                .any(|f| name_text.eq_ignore_ascii_case(f))
        {
            return Err(HttpError::invalid_header_name(&upper(name)));
        }
        // header_map = drop: `X_Foo` could be confused with `X-Foo` once both
        // become `HTTP_X_FOO` in a WSGI environ, so it is discarded silently.
        if name.contains(&b'_') {
            continue;
        }
        let value_text = latin1(value);
        if let Section::Head { version } = section {
            if SINGLETON_FIELDS
                .iter()
                .any(|f| name_text.eq_ignore_ascii_case(f))
                && out
                    .headers
                    .iter()
                    .any(|(n, _)| n.eq_ignore_ascii_case(&name_text))
            {
                return Err(HttpError::invalid_header(&upper(name)));
            }
            if name_text.eq_ignore_ascii_case("expect") {
                if !value_text.eq_ignore_ascii_case("100-continue") {
                    return Err(HttpError::unmet_expectation(&value_text));
                }
                // An HTTP/1.0 client cannot expect an interim response.
                out.expect_continue |= version >= (1, 1);
            }
        }
        out.headers.push((name_text, value_text));
    }
    Ok(out)
}

/// gunicorn upper-cases names after validating them and shows them so in
/// its messages.
fn upper(name: &[u8]) -> String {
    latin1(name).to_ascii_uppercase()
}

/// Splits on CRLF only, like Python's `bytes.split(b"\r\n")`: a bare CR or LF
/// stays inside its line, where the value or name check rejects it.
struct CrlfLines<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> Iterator for CrlfLines<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest?;
        match find_crlf(rest, 0) {
            Some(i) => {
                self.rest = Some(&rest[i + 2..]);
                Some(&rest[..i])
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }
}

/// Decides how the body is delimited (gunicorn's `set_body_reader`).
///
/// One deliberate difference: gunicorn rejects Content-Length only together
/// with `chunked`; we reject it together with any Transfer-Encoding (RFC 9112
/// §6.1 allows either), so no request leaves two framings for a proxy and
/// us to disagree about.
pub(crate) fn body_framing(
    headers: &[(String, String)],
    version: (u8, u8),
) -> Result<BodyFraming, HttpError> {
    let mut chunked = false;
    let mut has_transfer_encoding = false;
    let mut content_length: Option<&str> = None;

    for (name, value) in headers {
        if name.eq_ignore_ascii_case("content-length") {
            if content_length.is_some() {
                return Err(HttpError::invalid_header("CONTENT-LENGTH"));
            }
            content_length = Some(value);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            has_transfer_encoding = true;
            for coding in value
                .split(',')
                .map(|c| c.trim_matches(|c: char| c.is_whitespace()))
            {
                if coding.eq_ignore_ascii_case("chunked") {
                    // Stacked chunking is never intended.
                    if chunked {
                        return Err(HttpError::invalid_header("TRANSFER-ENCODING"));
                    }
                    chunked = true;
                } else if ["identity", "compress", "deflate", "gzip"]
                    .iter()
                    .any(|c| coding.eq_ignore_ascii_case(c))
                {
                    // Chunked must be the final coding; before it these are
                    // passed through (identity does nothing, the others are
                    // the app's business; the connection closes anyway).
                    if chunked {
                        return Err(HttpError::invalid_header("TRANSFER-ENCODING"));
                    }
                } else {
                    return Err(HttpError::unsupported_transfer_coding(value));
                }
            }
        }
    }

    if chunked && version < (1, 1) {
        return Err(HttpError::invalid_header("TRANSFER-ENCODING"));
    }
    if has_transfer_encoding && content_length.is_some() {
        return Err(HttpError::invalid_header("CONTENT-LENGTH"));
    }
    if chunked {
        return Ok(BodyFraming::Chunked);
    }
    match content_length {
        // ASCII digits only: no sign, no spaces inside, no list (`5, 5`).
        Some(value) => parse_decimal(value.as_bytes())
            .map(BodyFraming::Length)
            .ok_or_else(|| HttpError::invalid_header("CONTENT-LENGTH")),
        // A request without framing headers has no body.
        None => Ok(BodyFraming::Length(0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(s: &str) -> Result<RequestLine, HttpError> {
        parse_request_line(s.as_bytes())
    }

    fn head_block(s: &str) -> Result<HeaderBlock, HttpError> {
        parse_header_block(
            s.as_bytes(),
            Section::Head { version: (1, 1) },
            &EffectiveLimits::default(),
        )
    }

    fn framing(headers: &[(&str, &str)], version: (u8, u8)) -> Result<BodyFraming, HttpError> {
        let owned: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        body_framing(&owned, version)
    }

    #[test]
    fn effective_limits_follow_gunicorn_mapping() {
        let l = EffectiveLimits::from(&Limits {
            request_line: 0,
            fields: 0,
            field_size: 0,
        });
        assert_eq!(
            (l.request_line, l.fields, l.field_size),
            (UNLIMITED_REQUEST_LINE, 32768, 8190)
        );
        let l = EffectiveLimits::from(&Limits {
            request_line: 9000,
            fields: 40000,
            field_size: 100,
        });
        assert_eq!((l.request_line, l.fields, l.field_size), (8190, 32768, 100));
        assert_eq!(EffectiveLimits::default().header_block, 100 * 8192 + 4);
    }

    #[test]
    fn request_line_forms() {
        let r = line("GET /a/b?x=1&y=2#frag HTTP/1.1").unwrap();
        assert_eq!(
            (r.method.as_str(), r.uri.as_str()),
            ("GET", "/a/b?x=1&y=2#frag")
        );
        assert_eq!(
            (r.path.as_str(), r.query.as_str(), r.version),
            ("/a/b", "x=1&y=2", (1, 1))
        );
        let r = line("GET http://example.com:8080/p?q HTTP/1.0").unwrap();
        assert_eq!(
            (r.path.as_str(), r.query.as_str(), r.version),
            ("/p", "q", (1, 0))
        );
        let r = line("GET http://example.com HTTP/1.1").unwrap();
        assert_eq!(r.path, "");
        let r = line("GET //double HTTP/1.1").unwrap();
        assert_eq!(r.path, "//double");
        let r = line("OPTIONS * HTTP/1.1").unwrap();
        assert_eq!(r.path, "*");
        let r = line("CONNECT example.com:443 HTTP/1.1").unwrap();
        assert_eq!((r.uri.as_str(), r.path.as_str()), ("example.com:443", ""));
        assert!(line("CONNECT [::1]:443 HTTP/1.1").is_ok());
        let r = line("GET /caf\u{e9} HTTP/1.1");
        assert!(
            r.is_ok(),
            "multi-byte UTF-8 in the target is obs-text, accepted"
        );
        assert_eq!(line("PROPFIND / HTTP/1.2").unwrap().version, (1, 2));
    }

    #[test]
    fn request_line_rejections() {
        let bad_line = |s: &str| {
            let e = line(s).unwrap_err();
            assert_eq!(e.status, 400, "{s:?}");
            assert!(
                e.message.starts_with("Invalid Request Line"),
                "{s:?}: {}",
                e.message
            );
        };
        bad_line("GET /");
        bad_line("GET  / HTTP/1.1");
        bad_line("");
        bad_line("GET * HTTP/1.1");
        bad_line("CONNECT /path HTTP/1.1");
        bad_line("CONNECT example.com HTTP/1.1");
        bad_line("CONNECT :443 HTTP/1.1");
        bad_line("GET example.com HTTP/1.1");
        bad_line("GET 1http://x/ HTTP/1.1");
        bad_line("GET http://[::1/ HTTP/1.1");
        bad_line("GET /a\tb HTTP/1.1");
        bad_line("GET /a\x7fb HTTP/1.1");
        assert_eq!(
            line("GET").unwrap_err().message,
            "Invalid Request Line 'Invalid HTTP request line: 'GET''"
        );

        for m in ["get", "GE", "ABCDEFGHIJKLMNOPQRSTU", "G#T", "G(T", "GÉT"] {
            let e = line(&format!("{m} / HTTP/1.1")).unwrap_err();
            assert!(
                e.message.starts_with("Invalid Method"),
                "{m}: {}",
                e.message
            );
        }
        assert_eq!(
            line("get / HTTP/1.1").unwrap_err().message,
            "Invalid Method 'Invalid HTTP method: 'get''"
        );

        for v in [
            "HTTP/1.1 ",
            "HTTP/1",
            "HTTP/11.1",
            "http/1.1",
            "HTTP/1.x",
            "HTTP/1.1\n",
        ] {
            let e = line(&format!("GET / {v}")).unwrap_err();
            assert!(
                e.message.starts_with("Invalid HTTP Version"),
                "{v:?}: {}",
                e.message
            );
        }
        assert_eq!(
            line("GET / HTTP/2.0").unwrap_err().message,
            "Invalid HTTP Version 'Invalid HTTP Version: (2, 0)'"
        );
        assert_eq!(
            line("GET / HTTP/0.9").unwrap_err().message,
            "Invalid HTTP Version 'Invalid HTTP Version: (0, 9)'"
        );
    }

    #[test]
    fn header_block_basics() {
        let b =
            head_block("Host: example.com\r\nX-Empty:\r\nX-Pad: \t v a l \t\r\nX-Obs: caf\u{e9}")
                .unwrap();
        assert_eq!(
            b.headers,
            vec![
                ("Host".into(), "example.com".into()),
                ("X-Empty".into(), "".into()),
                ("X-Pad".into(), "v a l".into()),
                ("X-Obs".into(), "caf\u{c3}\u{a9}".into()),
            ]
        );
        assert!(!b.expect_continue);
    }

    #[test]
    fn header_block_rejections() {
        let err = |s: &str| head_block(s).unwrap_err();
        assert_eq!(err("NoColon").message, "Invalid HTTP Header: 'NoColon'");
        assert_eq!(err(": v").message, "Invalid HTTP Header: ': v'");
        assert_eq!(err("Name : v").message, "Invalid HTTP header name: 'Name '");
        assert_eq!(
            err("X-A: 1\r\n folded").message,
            "Obsolete line folding is unacceptable: 'X-A'"
        );
        assert_eq!(
            err("X-A: 1\r\n\tfolded").message,
            "Obsolete line folding is unacceptable: 'X-A'"
        );
        assert_eq!(err(" X-A: 1").message, "Invalid HTTP header name: ' X-A'");
        assert_eq!(err("X-A: a\0b").message, "Invalid HTTP Header: 'X-A'");
        assert_eq!(err("X-A: a\rb").message, "Invalid HTTP Header: 'X-A'");
        assert_eq!(err("X-A: a\x7f").message, "Invalid HTTP Header: 'X-A'");
        // A bare LF does not end a line: the smuggled "header" stays inside the value.
        assert_eq!(
            err("Host: a\nContent-Length: 5").message,
            "Invalid HTTP Header: 'HOST'"
        );
        assert_eq!(
            err("Host: a\r\nhost: b").message,
            "Invalid HTTP Header: 'HOST'"
        );
        assert_eq!(
            err("Content-Type: a\r\nContent-Type: b").message,
            "Invalid HTTP Header: 'CONTENT-TYPE'"
        );
        let e = err("Expect: bogus");
        assert_eq!(
            (e.status, e.message.as_str()),
            (417, "Unable to comply with expectation: 'bogus'")
        );
    }

    #[test]
    fn underscore_fields_are_dropped_and_not_counted() {
        let limits = EffectiveLimits::from(&Limits {
            fields: 2,
            ..Limits::default()
        });
        let block = "X_Foo: 1\r\nA: 1\r\nX_Bar: 2\r\nB: 2";
        let b = parse_header_block(block.as_bytes(), Section::Head { version: (1, 1) }, &limits)
            .unwrap();
        assert_eq!(
            b.headers,
            vec![("A".into(), "1".into()), ("B".into(), "2".into())]
        );
        let e = parse_header_block(
            b"A: 1\r\nB: 2\r\nC: 3",
            Section::Head { version: (1, 1) },
            &limits,
        )
        .unwrap_err();
        assert_eq!(
            (e.status, e.message.as_str()),
            (431, "Error parsing headers: 'limit request headers fields'")
        );
    }

    #[test]
    fn field_size_counts_the_crlf() {
        let limits = EffectiveLimits::from(&Limits {
            field_size: 10,
            ..Limits::default()
        });
        let section = Section::Head { version: (1, 1) };
        assert!(parse_header_block(b"Abc: 123", section, &limits).is_ok());
        let e = parse_header_block(b"Abc: 1234", section, &limits).unwrap_err();
        assert_eq!(
            e.message,
            "Error parsing headers: 'limit request headers fields size'"
        );
    }

    #[test]
    fn expect_continue_only_on_http11() {
        assert!(head_block("Expect: 100-Continue").unwrap().expect_continue);
        let b = parse_header_block(
            b"Expect: 100-continue",
            Section::Head { version: (1, 0) },
            &EffectiveLimits::default(),
        )
        .unwrap();
        assert!(!b.expect_continue);
    }

    #[test]
    fn trailer_rules() {
        let limits = EffectiveLimits::default();
        let b = parse_header_block(
            b"X-Checksum: abc\r\nExpect: whatever",
            Section::Trailer,
            &limits,
        )
        .unwrap();
        assert_eq!(b.headers.len(), 2);
        for name in [
            "Host",
            "Content-Length",
            "transfer-encoding",
            "Trailer",
            "Authorization",
            "TE",
        ] {
            let e = parse_header_block(format!("{name}: x").as_bytes(), Section::Trailer, &limits)
                .unwrap_err();
            assert_eq!(
                e.message,
                format!("Invalid HTTP header name: '{}'", name.to_ascii_uppercase())
            );
        }
    }

    #[test]
    fn framing_rules() {
        assert_eq!(framing(&[], (1, 1)), Ok(BodyFraming::Length(0)));
        assert_eq!(
            framing(&[("Content-Length", "0012")], (1, 0)),
            Ok(BodyFraming::Length(12))
        );
        assert_eq!(
            framing(&[("Transfer-Encoding", "chunked")], (1, 1)),
            Ok(BodyFraming::Chunked)
        );
        assert_eq!(
            framing(&[("Transfer-Encoding", "gzip, Chunked")], (1, 1)),
            Ok(BodyFraming::Chunked)
        );
        assert_eq!(
            framing(
                &[
                    ("Transfer-Encoding", "identity"),
                    ("Transfer-Encoding", "chunked")
                ],
                (1, 1)
            ),
            Ok(BodyFraming::Chunked)
        );
        assert_eq!(
            framing(&[("Transfer-Encoding", "gzip")], (1, 1)),
            Ok(BodyFraming::Length(0))
        );

        let invalid = |h: &[(&str, &str)], v, what: &str| {
            let e = framing(h, v).unwrap_err();
            assert_eq!(
                (e.status, e.message.clone()),
                (400, format!("Invalid HTTP Header: '{what}'")),
                "{h:?}"
            );
        };
        for cl in [
            "+5",
            "-1",
            "5, 5",
            "",
            "0x10",
            "1 0",
            "\u{b2}",
            "99999999999999999999999",
        ] {
            invalid(&[("Content-Length", cl)], (1, 1), "CONTENT-LENGTH");
        }
        invalid(
            &[("Content-Length", "5"), ("content-length", "5")],
            (1, 1),
            "CONTENT-LENGTH",
        );
        invalid(
            &[("Content-Length", "5"), ("Transfer-Encoding", "chunked")],
            (1, 1),
            "CONTENT-LENGTH",
        );
        invalid(
            &[("Transfer-Encoding", "chunked"), ("Content-Length", "5")],
            (1, 1),
            "CONTENT-LENGTH",
        );
        invalid(
            &[("Transfer-Encoding", "identity"), ("Content-Length", "5")],
            (1, 1),
            "CONTENT-LENGTH",
        );
        invalid(
            &[("Transfer-Encoding", "chunked, chunked")],
            (1, 1),
            "TRANSFER-ENCODING",
        );
        invalid(
            &[
                ("Transfer-Encoding", "chunked"),
                ("Transfer-Encoding", "chunked"),
            ],
            (1, 1),
            "TRANSFER-ENCODING",
        );
        invalid(
            &[("Transfer-Encoding", "chunked, identity")],
            (1, 1),
            "TRANSFER-ENCODING",
        );
        invalid(
            &[("Transfer-Encoding", "chunked, gzip")],
            (1, 1),
            "TRANSFER-ENCODING",
        );
        invalid(
            &[("Transfer-Encoding", "chunked")],
            (1, 0),
            "TRANSFER-ENCODING",
        );

        let e = framing(&[("Transfer-Encoding", "br, chunked")], (1, 1)).unwrap_err();
        assert_eq!(
            (e.status, e.reason, e.message.as_str()),
            (
                501,
                "Not Implemented",
                "Unsupported transfer coding: 'br, chunked'"
            )
        );
        assert_eq!(
            framing(&[("Transfer-Encoding", "chunked,")], (1, 1))
                .unwrap_err()
                .status,
            501
        );
    }
}
