//! Pure parsing of a request line, a header (or trailer) block and the body
//! framing, following gunicorn's `gunicorn/http/message.py` rule by rule,
//! and RFC 9112 where gunicorn is lax (each such place says so).
//!
//! Why not `httparse`: it accepts a bare LF as a line ending (a request
//! smuggling vector gunicorn closes by splitting on CRLF only), knows only
//! HTTP/1.0 and 1.1 (gunicorn accepts 1.x and reports 2.0 differently), and
//! its errors do not say which line or field was wrong, which gunicorn's
//! error pages do. The rules are simple byte checks, so they are written
//! out here, each next to the gunicorn rule it implements.

use super::text::{find_crlf, is_token, latin1, parse_decimal, trim_sp_htab};
use super::{BodyFraming, HeaderMap, HttpError, Limits};

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

/// The limits and the `Copy` part of the rules, as the parser applies them
/// (the forwarder list is passed with [`Section::Head`], since it depends
/// on the peer). Normalising again is harmless (gunicorn's mapping is
/// idempotent) and protects against a caller that built `Limits` by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EffectiveLimits {
    pub request_line: usize,
    pub fields: usize,
    pub field_size: usize,
    /// gunicorn's `max_buffer_headers = fields * (field_size + 2) + 4`.
    pub header_block: usize,
    pub permit_unconventional_method: bool,
    pub casefold_method: bool,
    pub permit_unconventional_version: bool,
    pub permit_obsolete_folding: bool,
    pub header_map: HeaderMap,
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
        let rules = &limits.rules;
        EffectiveLimits {
            request_line,
            fields,
            field_size,
            header_block,
            permit_unconventional_method: rules.permit_unconventional_method,
            casefold_method: rules.casefold_method,
            permit_unconventional_version: rules.permit_unconventional_version,
            permit_obsolete_folding: rules.permit_obsolete_folding,
            header_map: rules.header_map,
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
    /// As sent, or upper-cased with `casefold_method`.
    pub method: String,
    pub uri: String,
    pub path: String,
    pub query: String,
    pub version: (u8, u8),
    /// The `host[:port]` of an absolute-form target, which wins over the
    /// Host field ([`reconcile_host`]).
    pub authority: Option<String>,
}

/// Parses a request line (without its CRLF), gunicorn's `parse_request_line`.
/// Errors after the method was read carry it ([`HttpError::for_method`]).
pub(crate) fn parse_request_line(
    line: &[u8],
    limits: &EffectiveLimits,
) -> Result<RequestLine, HttpError> {
    // Split on single SP into at most 3 parts: a double space yields an empty
    // part, and anything after the second SP belongs to the version.
    let mut parts = line.splitn(3, |&b| b == b' ');
    let (Some(method), Some(uri), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::invalid_request_line(&latin1(line)));
    };

    let method = check_method(method, limits)?;
    let target = split_target(&method, uri)
        .ok_or_else(|| HttpError::invalid_request_line(&latin1(line)).for_method(&method))?;
    let version = parse_version(version, limits.permit_unconventional_version)
        .map_err(|e| e.for_method(&method))?;
    Ok(RequestLine {
        method,
        uri: latin1(uri),
        path: latin1(target.path),
        query: latin1(target.query),
        version,
        authority: target.authority.map(latin1),
    })
}

/// gunicorn's method rules: an RFC 9110 token, and unless
/// `permit_unconventional_method` no `[a-z#]` and 3 to 20 bytes; then
/// upper-cased with `casefold_method`.
///
/// CONNECT is refused with 400 like an invalid method (as gunicorn's
/// proposed fix for CONNECT does): this server opens no tunnels, and a
/// front end that took the request for one would treat what follows the
/// head differently from us. Checked after case-folding, so `connect`
/// cannot slip through.
fn check_method(method: &[u8], limits: &EffectiveLimits) -> Result<String, HttpError> {
    let conventional = (3..=20).contains(&method.len())
        && !method.iter().any(|&b| b.is_ascii_lowercase() || b == b'#');
    if !(conventional || limits.permit_unconventional_method) || !is_token(method) {
        return Err(HttpError::invalid_method(&latin1(method)));
    }
    // A token is ASCII: its latin-1 text is the same bytes.
    let mut text = latin1(method);
    if limits.casefold_method {
        text.make_ascii_uppercase();
    }
    if text == "CONNECT" {
        return Err(HttpError::invalid_method(&text).for_method(&text));
    }
    Ok(text)
}

/// A request target split into what the request needs.
struct Target<'a> {
    path: &'a [u8],
    query: &'a [u8],
    authority: Option<&'a [u8]>,
}

/// Checks the request-target form against the method and splits it into
/// path and query (the fragment, if a client sends one, is dropped).
/// `None` means an invalid target.
///
/// Stricter than gunicorn, to keep ambiguous bytes out of `PATH_INFO` and
/// out of the Host: control characters are rejected where Python's
/// `urlsplit` silently removes TAB/CR/LF; an absolute-form target must
/// begin with a valid scheme and name a valid host (RFC 9110 §4.2.1), and
/// carries no userinfo (RFC 9110 §4.2.4: a recipient should treat it as an
/// error). Authority-form is CONNECT's, and CONNECT is refused before this.
fn split_target<'a>(method: &str, uri: &'a [u8]) -> Option<Target<'a>> {
    if uri.is_empty() || uri.iter().any(|&b| b < 0x21 || b == 0x7f) {
        return None;
    }
    let empty = &uri[..0];
    if uri == b"*" {
        // asterisk-form: only for a server-wide OPTIONS.
        return (method == "OPTIONS").then_some(Target {
            path: uri,
            query: empty,
            authority: None,
        });
    }
    let (authority, path_and_query) = if uri.starts_with(b"/") {
        (None, uri)
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
        let authority = &rest[..authority_end];
        if authority.is_empty() || !is_authority(authority) {
            return None;
        }
        (Some(authority), &rest[authority_end..])
    };
    let without_fragment = match path_and_query.iter().position(|&b| b == b'#') {
        Some(i) => &path_and_query[..i],
        None => path_and_query,
    };
    let (path, query) = match without_fragment.iter().position(|&b| b == b'?') {
        Some(i) => (&without_fragment[..i], &without_fragment[i + 1..]),
        None => (without_fragment, &without_fragment[..0]),
    };
    Some(Target {
        path,
        query,
        authority,
    })
}

/// RFC 3986 `scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
fn is_scheme(s: &[u8]) -> bool {
    matches!(s.first(), Some(b) if b.is_ascii_alphabetic())
        && s.iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// RFC 3986 `unreserved / sub-delims`, the bytes a reg-name is made of
/// besides `%XX`.
fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b)
}

/// `uri-host [ ":" port ]` (RFC 9110 §7.2, RFC 3986 §3.2.2) with a
/// non-empty host: an IP literal in brackets, or a reg-name (an IPv4
/// address is one too); a port of at most 5 digits up to 65535, or empty.
/// No userinfo, no path characters, no whitespace, no obs-text.
fn is_authority(authority: &[u8]) -> bool {
    let (host_ok, port) = if let Some(inner) = authority.strip_prefix(b"[") {
        let Some(close) = inner.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = &inner[..close];
        let ok = !literal.is_empty() && literal.iter().all(|&b| is_name_byte(b) || b == b':');
        (ok, &inner[close + 1..])
    } else {
        let end = authority
            .iter()
            .position(|&b| b == b':')
            .unwrap_or(authority.len());
        (is_reg_name(&authority[..end]), &authority[end..])
    };
    let port_ok = match port {
        [] => true,
        [b':', digits @ ..] => {
            digits.is_empty()
                || (digits.len() <= 5 && parse_decimal(digits).is_some_and(|p| p <= 65535))
        }
        _ => false,
    };
    host_ok && port_ok
}

/// A non-empty reg-name: name bytes and well-formed `%XX` escapes.
fn is_reg_name(name: &[u8]) -> bool {
    let mut i = 0;
    while i < name.len() {
        match name[i] {
            b'%' => {
                let escape = name.get(i + 1..i + 3);
                if !escape.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                    return false;
                }
                i += 3;
            }
            b if is_name_byte(b) => i += 1,
            _ => return false,
        }
    }
    !name.is_empty()
}

/// `HTTP/d.d` with (1,0) <= version < (2,0), any `HTTP/d.d` with
/// `permit_unconventional_version`.
fn parse_version(token: &[u8], permit_unconventional: bool) -> Result<(u8, u8), HttpError> {
    match token {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            let version = (major - b'0', minor - b'0');
            if version.0 == 1 || permit_unconventional {
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
pub(crate) enum Section<'a> {
    /// The request's header block, for a request of this version.
    /// `forwarders` are the underscore names this peer may send (the
    /// `--forwarder-headers` list for a trusted peer, else none).
    Head {
        version: (u8, u8),
        forwarders: &'a [String],
    },
    /// Chunked-body trailers (forwarder names never apply there).
    Trailer,
}

/// What a header block yields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HeaderBlock {
    pub headers: Vec<(String, String)>,
    pub expect_continue: bool,
}

/// Fields that may appear only once in a request head (gunicorn 26.1;
/// Transfer-Encoding is refused twice by [`body_framing`]).
const SINGLETON_FIELDS: [&str; 2] = ["host", "content-type"];

/// Fields whose folding stays refused with `permit_obsolete_folding`: the
/// framing, on which every hop must agree.
const UNFOLDABLE_FIELDS: [&str; 2] = ["transfer-encoding", "content-length"];

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
/// empty line, without the final CRLFCRLF. gunicorn's `parse_headers`.
pub(crate) fn parse_header_block(
    block: &[u8],
    section: Section<'_>,
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
        let name_text = latin1(name);
        let is = |fields: &[&str]| fields.iter().any(|f| name_text.eq_ignore_ascii_case(f));
        let mut value = trim_sp_htab(&line[colon + 1..]).to_vec();
        let mut field_len = line.len() + 2;
        while let Some(next) = lines.next_if(|l| l.starts_with(b" ") || l.starts_with(b"\t")) {
            if !limits.permit_obsolete_folding || is(&UNFOLDABLE_FIELDS) {
                return Err(HttpError::obsolete_folding(&upper(name)));
            }
            // RFC 9112 §5.2: each obs-fold becomes one SP.
            field_len += next.len() + 2;
            if field_len > limits.field_size {
                return Err(HttpError::limit_request_headers(
                    "limit request headers fields size",
                ));
            }
            value.push(b' ');
            value.extend_from_slice(trim_sp_htab(next));
        }
        // HTAB and obs-text (0x80-0xFF) are fine; other controls are not.
        if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(HttpError::invalid_header(&upper(name)));
        }
        if field_len > limits.field_size {
            return Err(HttpError::limit_request_headers(
                "limit request headers fields size",
            ));
        }
        if section == Section::Trailer && is(&FORBIDDEN_TRAILERS) {
            return Err(HttpError::invalid_header_name(&upper(name)));
        }
        if name.contains(&b'_') {
            let forwarded = match section {
                Section::Head { forwarders, .. } => {
                    forwarders.iter().any(|f| f == "*" || is(&[f.as_str()]))
                }
                Section::Trailer => false,
            };
            if !forwarded {
                match limits.header_map {
                    HeaderMap::Dangerous => {}
                    // `X_Foo` could be confused with `X-Foo` once both become
                    // `HTTP_X_FOO` in a WSGI environ: discarded silently.
                    HeaderMap::Drop => continue,
                    HeaderMap::Refuse => return Err(HttpError::invalid_header_name(&upper(name))),
                }
            }
        }
        let value_text = latin1(&value);
        if let Section::Head { version, .. } = section {
            if is(&SINGLETON_FIELDS)
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

/// The error for a field line that holds a bare LF (`line` runs through
/// it): gunicorn's message for a control character in the value of a
/// well-formed field, or for a malformed line.
pub(crate) fn bare_lf_in_field(line: &[u8]) -> HttpError {
    match line.iter().position(|&b| b == b':') {
        Some(colon) if colon > 0 && is_token(&line[..colon]) => {
            HttpError::invalid_header(&upper(&line[..colon]))
        }
        _ => HttpError::invalid_header(&latin1(line)),
    }
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

/// The Host rules gunicorn leaves out (RFC 9112 §3.2), checked once the
/// head is parsed: an HTTP/1.1 (or later) request must have a Host field;
/// its value must be a valid `host[:port]` or empty; and the authority of
/// an absolute-form target replaces it (RFC 9112 §3.2.2: the target's host
/// wins), or is added as one for HTTP/1.0, so that the app, the access log
/// and every other reader of Host see the host that was asked for.
pub(crate) fn reconcile_host(
    line: &RequestLine,
    headers: &mut Vec<(String, String)>,
) -> Result<(), HttpError> {
    let host = headers
        .iter()
        .position(|(n, _)| n.eq_ignore_ascii_case("host"));
    match host {
        None if line.version >= (1, 1) => return Err(HttpError::missing_host()),
        Some(i) if !headers[i].1.is_empty() && !is_authority(headers[i].1.as_bytes()) => {
            return Err(HttpError::invalid_header("HOST"))
        }
        _ => {}
    }
    if let Some(authority) = &line.authority {
        match host {
            Some(i) => headers[i].1.clone_from(authority),
            None => headers.push(("Host".to_owned(), authority.clone())),
        }
    }
    Ok(())
}

/// Decides how the body is delimited (gunicorn's `set_body_reader`), with
/// RFC 9112 §6 where gunicorn is lax:
/// - Content-Length is refused together with any Transfer-Encoding (gunicorn
///   only with `chunked`; RFC 9112 §6.1 allows either), so no request leaves
///   two framings for a proxy and us to disagree about;
/// - codings are trimmed of SP and HTAB only (gunicorn's `str.strip()` also
///   removes NBSP, `\x85` and other Unicode spaces a proxy does not, so
///   `chunked\xa0` is not `chunked` here: it is an unknown coding);
/// - a Transfer-Encoding whose final coding is not `chunked` is refused
///   (gunicorn reads such a body as empty; RFC 9112 §6.3 says 400).
///   `identity` does nothing, before `chunked` or alone, as in gunicorn.
pub(crate) fn body_framing(
    headers: &[(String, String)],
    version: (u8, u8),
) -> Result<BodyFraming, HttpError> {
    let mut chunked = false;
    // Whether there was a Transfer-Encoding, and a coding in it other than
    // `identity`.
    let mut transfer_encoding: Option<bool> = None;
    let mut content_length: Option<&str> = None;
    let invalid_te = || HttpError::invalid_header("TRANSFER-ENCODING");

    for (name, value) in headers {
        if name.eq_ignore_ascii_case("content-length") {
            if content_length.is_some() {
                return Err(HttpError::invalid_header("CONTENT-LENGTH"));
            }
            content_length = Some(value);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // RFC 9112 allows the list over several lines, but a front end
            // that reads only one of them frames the body differently.
            if transfer_encoding.is_some() {
                return Err(invalid_te());
            }
            let mut coded = false;
            for coding in value
                .split(',')
                .map(|c| c.trim_matches(|c: char| c == ' ' || c == '\t'))
            {
                if coding.eq_ignore_ascii_case("chunked") {
                    // Stacked chunking is never intended.
                    if chunked {
                        return Err(invalid_te());
                    }
                    chunked = true;
                    coded = true;
                } else if coding.eq_ignore_ascii_case("identity") {
                    // Does nothing, but after `chunked` a proxy may see it as
                    // the final coding.
                    if chunked {
                        return Err(invalid_te());
                    }
                } else if ["compress", "deflate", "gzip"]
                    .iter()
                    .any(|c| coding.eq_ignore_ascii_case(c))
                {
                    // Chunked must be the final coding; before it these are
                    // the app's business.
                    if chunked {
                        return Err(invalid_te());
                    }
                    coded = true;
                } else {
                    return Err(HttpError::unsupported_transfer_coding(value));
                }
            }
            transfer_encoding = Some(coded);
        }
    }

    if let Some(coded) = transfer_encoding {
        if content_length.is_some() {
            return Err(HttpError::invalid_header("CONTENT-LENGTH"));
        }
        // Only `identity`: nothing to decode, and no body (a request
        // without framing has none).
        if !coded {
            return Ok(BodyFraming::Length(0));
        }
        if !chunked || version < (1, 1) {
            return Err(invalid_te());
        }
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
    use crate::http::Rules;

    const HEAD_11: Section<'static> = Section::Head {
        version: (1, 1),
        forwarders: &[],
    };

    fn line(s: &str) -> Result<RequestLine, HttpError> {
        parse_request_line(s.as_bytes(), &EffectiveLimits::default())
    }

    fn line_with(s: &str, rules: Rules) -> Result<RequestLine, HttpError> {
        let limits = Limits {
            rules,
            ..Limits::default()
        };
        parse_request_line(s.as_bytes(), &EffectiveLimits::from(&limits))
    }

    fn head_block(s: &str) -> Result<HeaderBlock, HttpError> {
        parse_header_block(s.as_bytes(), HEAD_11, &EffectiveLimits::default())
    }

    fn head_block_with(s: &str, rules: Rules) -> Result<HeaderBlock, HttpError> {
        let limits = Limits {
            rules,
            ..Limits::default()
        };
        parse_header_block(s.as_bytes(), HEAD_11, &EffectiveLimits::from(&limits))
    }

    fn framing(headers: &[(&str, &str)], version: (u8, u8)) -> Result<BodyFraming, HttpError> {
        body_framing(&owned(headers), version)
    }

    fn owned(headers: &[(&str, &str)]) -> Vec<(String, String)> {
        headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn effective_limits_follow_gunicorn_mapping() {
        let l = EffectiveLimits::from(&Limits {
            request_line: 0,
            fields: 0,
            field_size: 0,
            rules: Rules::default(),
        });
        assert_eq!(
            (l.request_line, l.fields, l.field_size),
            (UNLIMITED_REQUEST_LINE, 32768, 8190)
        );
        let l = EffectiveLimits::from(&Limits {
            request_line: 9000,
            fields: 40000,
            field_size: 100,
            rules: Rules::default(),
        });
        assert_eq!((l.request_line, l.fields, l.field_size), (8190, 32768, 100));
        assert_eq!(EffectiveLimits::default().header_block, 100 * 8192 + 4);
        let d = EffectiveLimits::default();
        assert!(!d.permit_unconventional_method && !d.casefold_method);
        assert!(!d.permit_unconventional_version && !d.permit_obsolete_folding);
        assert_eq!(d.header_map, HeaderMap::Drop);
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
        assert_eq!(r.authority, None);
        let r = line("GET http://example.com:8080/p?q HTTP/1.0").unwrap();
        assert_eq!(
            (r.path.as_str(), r.query.as_str(), r.version),
            ("/p", "q", (1, 0))
        );
        assert_eq!(r.authority.as_deref(), Some("example.com:8080"));
        let r = line("GET http://example.com HTTP/1.1").unwrap();
        assert_eq!(
            (r.path.as_str(), r.authority.as_deref()),
            ("", Some("example.com"))
        );
        let r = line("GET https://[::1]:8443?x HTTP/1.1").unwrap();
        assert_eq!(
            (r.path.as_str(), r.query.as_str(), r.authority.as_deref()),
            ("", "x", Some("[::1]:8443"))
        );
        let r = line("GET //double HTTP/1.1").unwrap();
        assert_eq!(r.path, "//double");
        let r = line("OPTIONS * HTTP/1.1").unwrap();
        assert_eq!(r.path, "*");
        let r = line("GET /caf\u{e9} HTTP/1.1");
        assert!(
            r.is_ok(),
            "multi-byte UTF-8 in the target is obs-text, accepted"
        );
        assert_eq!(line("PROPFIND / HTTP/1.2").unwrap().version, (1, 2));
        assert_eq!(line("M-SEARCH * HTTP/1.1").unwrap_err().status, 400);
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
        bad_line("GET example.com HTTP/1.1");
        bad_line("GET example.com:443 HTTP/1.1");
        bad_line("GET 1http://x/ HTTP/1.1");
        bad_line("GET http://[::1/ HTTP/1.1");
        bad_line("GET http:///path HTTP/1.1");
        bad_line("GET http://user@example.com/ HTTP/1.1");
        bad_line("GET http://user:pw@example.com/ HTTP/1.1");
        bad_line("GET http://exa%zzmple/ HTTP/1.1");
        bad_line("GET http://example.com:99999/ HTTP/1.1");
        bad_line("GET http://example.com:8x/ HTTP/1.1");
        bad_line("GET http://[]/ HTTP/1.1");
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
    fn connect_is_refused_in_every_form() {
        for l in [
            "CONNECT example.com:443 HTTP/1.1",
            "CONNECT [::1]:443 HTTP/1.1",
            "CONNECT / HTTP/1.1",
        ] {
            assert_eq!(
                line(l).unwrap_err().message,
                "Invalid Method 'Invalid HTTP method: 'CONNECT''",
                "{l}"
            );
        }
        let folding = Rules {
            permit_unconventional_method: true,
            casefold_method: true,
            ..Rules::default()
        };
        let e = line_with("connect example.com:443 HTTP/1.1", folding).unwrap_err();
        assert_eq!(e.message, "Invalid Method 'Invalid HTTP method: 'CONNECT''");
    }

    #[test]
    fn errors_after_a_head_method_carry_it() {
        assert!(line("HEAD * HTTP/1.1").unwrap_err().bodiless);
        assert!(line("HEAD / HTTP/3.0").unwrap_err().bodiless);
        assert!(!line("GET * HTTP/1.1").unwrap_err().bodiless);
        // Before the method is known there is nothing to go by.
        assert!(!line("HEAD /").unwrap_err().bodiless);
    }

    #[test]
    fn unconventional_methods_when_permitted() {
        let permit = Rules {
            permit_unconventional_method: true,
            ..Rules::default()
        };
        for m in ["get", "GE", "ABCDEFGHIJKLMNOPQRSTU", "G#T", "-blargh", "x"] {
            let r = line_with(&format!("{m} / HTTP/1.1"), permit.clone()).unwrap();
            assert_eq!(r.method, m, "kept as sent");
        }
        // Still a token.
        for m in ["G(T", "GÉT", "G\"T"] {
            let e = line_with(&format!("{m} / HTTP/1.1"), permit.clone()).unwrap_err();
            assert!(e.message.starts_with("Invalid Method"), "{m}");
        }
        let fold = Rules {
            casefold_method: true,
            ..permit
        };
        assert_eq!(
            line_with("-blargh / HTTP/1.1", fold.clone())
                .unwrap()
                .method,
            "-BLARGH"
        );
        assert_eq!(line_with("options * HTTP/1.1", fold).unwrap().path, "*");
        // Case-folding alone does not let a lower-case method in (gunicorn's
        // order: the checks, then the folding).
        let fold_only = Rules {
            casefold_method: true,
            ..Rules::default()
        };
        assert!(line_with("get / HTTP/1.1", fold_only.clone()).is_err());
        assert_eq!(
            line_with("GET / HTTP/1.1", fold_only).unwrap().method,
            "GET"
        );
    }

    #[test]
    fn unconventional_versions_when_permitted() {
        let permit = Rules {
            permit_unconventional_version: true,
            ..Rules::default()
        };
        for (v, parsed) in [
            ("HTTP/0.9", (0, 9)),
            ("HTTP/2.0", (2, 0)),
            ("HTTP/9.9", (9, 9)),
        ] {
            let r = line_with(&format!("GET / {v}"), permit.clone()).unwrap();
            assert_eq!(r.version, parsed);
        }
        // The form stays `HTTP/d.d`.
        for v in ["HTTP/11.1", "HTTP/2", "HTTP/1.1 "] {
            assert!(
                line_with(&format!("GET / {v}"), permit.clone()).is_err(),
                "{v}"
            );
        }
    }

    #[test]
    fn authorities() {
        for ok in [
            "example.com",
            "example.com:80",
            "example.com:",
            "EXAMPLE.com:65535",
            "127.0.0.1:8000",
            "[::1]",
            "[::1]:8080",
            "[v1.fe80::a+en1]",
            "my_host.local",
            "xn--caf-dma.example",
            "caf%C3%A9.example",
        ] {
            assert!(is_authority(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            ":80",
            "a b",
            "example.com:65536",
            "example.com:123456",
            "example.com:80:80",
            "example.com:-1",
            "user@example.com",
            "example.com/",
            "exa\tmple",
            "[::1",
            "[::1]x",
            "[]",
            "caf\u{e9}",
            "%4",
            "a%zz",
        ] {
            assert!(!is_authority(bad.as_bytes()), "{bad:?}");
        }
    }

    #[test]
    fn host_is_required_checked_and_reconciled() {
        let reconcile = |l: &str, headers: &[(&str, &str)]| {
            let line = line(l).unwrap();
            let mut headers = owned(headers);
            reconcile_host(&line, &mut headers).map(|()| headers)
        };
        assert_eq!(
            reconcile("GET / HTTP/1.1", &[]).unwrap_err().message,
            "Missing HTTP Header: 'HOST'"
        );
        assert_eq!(reconcile("GET / HTTP/1.0", &[]), Ok(vec![]));
        assert_eq!(
            reconcile("GET / HTTP/1.1", &[("Host", "")]).unwrap().len(),
            1
        );
        for bad in ["a b", "example.com/x", "u@example.com", "caf\u{e9}"] {
            assert_eq!(
                reconcile("GET / HTTP/1.1", &[("Host", bad)])
                    .unwrap_err()
                    .message,
                "Invalid HTTP Header: 'HOST'",
                "{bad:?}"
            );
        }
        // The target's host wins, in the Host field's place.
        assert_eq!(
            reconcile(
                "GET http://target.example:81/x HTTP/1.1",
                &[("A", "1"), ("host", "other.example"), ("B", "2")]
            ),
            Ok(owned(&[
                ("A", "1"),
                ("host", "target.example:81"),
                ("B", "2")
            ]))
        );
        // HTTP/1.0 without Host: the target's becomes one.
        assert_eq!(
            reconcile("GET http://target.example/ HTTP/1.0", &[]),
            Ok(owned(&[("Host", "target.example")]))
        );
        // Even in absolute form, HTTP/1.1 needs a Host field.
        assert!(reconcile("GET http://target.example/ HTTP/1.1", &[]).is_err());
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
        assert_eq!(err("Expect: 100-continue, x").status, 417);
    }

    #[test]
    fn obsolete_folding_when_permitted() {
        let permit = Rules {
            permit_obsolete_folding: true,
            ..Rules::default()
        };
        let b =
            head_block_with("X-A: one \r\n  two\t\r\n\tthree\r\nX-B: 4", permit.clone()).unwrap();
        assert_eq!(
            b.headers,
            vec![
                ("X-A".into(), "one two three".into()),
                ("X-B".into(), "4".into())
            ]
        );
        // The framing fields are never folded, nor a first line.
        for block in [
            "Transfer-Encoding: gzip\r\n chunked",
            "transfer-encoding:\r\n chunked",
            "Content-Length: 1\r\n 0",
        ] {
            let e = head_block_with(block, permit.clone()).unwrap_err();
            assert!(e.message.starts_with("Obsolete line folding"), "{block:?}");
        }
        assert_eq!(
            head_block_with(" X-A: 1", permit.clone())
                .unwrap_err()
                .message,
            "Invalid HTTP header name: ' X-A'"
        );
        // Continuation lines count towards the field's size, and are checked
        // for control characters like the rest.
        let limits = EffectiveLimits::from(&Limits {
            // 10 + 2 for the first line, 4 + 2 for the continuation.
            field_size: 18,
            rules: permit.clone(),
            ..Limits::default()
        });
        assert!(parse_header_block(b"X-A: 12345\r\n 123", HEAD_11, &limits).is_ok());
        assert_eq!(
            parse_header_block(b"X-A: 12345\r\n 1234", HEAD_11, &limits)
                .unwrap_err()
                .status,
            431
        );
        assert_eq!(
            head_block_with("X-A: 1\r\n a\0b", permit)
                .unwrap_err()
                .message,
            "Invalid HTTP Header: 'X-A'"
        );
    }

    #[test]
    fn underscore_fields_are_dropped_and_not_counted() {
        let limits = EffectiveLimits::from(&Limits {
            fields: 2,
            ..Limits::default()
        });
        let block = "X_Foo: 1\r\nA: 1\r\nX_Bar: 2\r\nB: 2";
        let b = parse_header_block(block.as_bytes(), HEAD_11, &limits).unwrap();
        assert_eq!(
            b.headers,
            vec![("A".into(), "1".into()), ("B".into(), "2".into())]
        );
        let e = parse_header_block(b"A: 1\r\nB: 2\r\nC: 3", HEAD_11, &limits).unwrap_err();
        assert_eq!(
            (e.status, e.message.as_str()),
            (431, "Error parsing headers: 'limit request headers fields'")
        );
    }

    #[test]
    fn header_map_refuse_and_dangerous() {
        let with = |header_map| Rules {
            header_map,
            ..Rules::default()
        };
        let e = head_block_with("A: 1\r\nX_Foo: 1", with(HeaderMap::Refuse)).unwrap_err();
        assert_eq!(
            (e.status, e.message.as_str()),
            (400, "Invalid HTTP header name: 'X_FOO'")
        );
        let b = head_block_with("X_Foo: 1\r\nX-Foo: 2", with(HeaderMap::Dangerous)).unwrap();
        assert_eq!(
            b.headers,
            vec![("X_Foo".into(), "1".into()), ("X-Foo".into(), "2".into())]
        );
    }

    #[test]
    fn forwarder_fields_from_a_trusted_peer() {
        let forwarders = ["SCRIPT_NAME".to_owned(), "PATH_INFO".to_owned()];
        let trusted = Section::Head {
            version: (1, 1),
            forwarders: &forwarders,
        };
        let block = b"Script_Name: /app\r\nX_Other: 1\r\nPATH_INFO: /p";
        let b = parse_header_block(block, trusted, &EffectiveLimits::default()).unwrap();
        assert_eq!(
            b.headers,
            vec![
                ("Script_Name".into(), "/app".into()),
                ("PATH_INFO".into(), "/p".into())
            ]
        );
        // Untrusted, they are like any other underscore field.
        let b = parse_header_block(block, HEAD_11, &EffectiveLimits::default()).unwrap();
        assert!(b.headers.is_empty());
        let refuse = EffectiveLimits::from(&Limits {
            rules: Rules {
                header_map: HeaderMap::Refuse,
                ..Rules::default()
            },
            ..Limits::default()
        });
        assert!(parse_header_block(b"SCRIPT_NAME: /app", trusted, &refuse).is_ok());
        assert!(parse_header_block(b"SCRIPT_NAME: /app", HEAD_11, &refuse).is_err());
        assert!(parse_header_block(b"X_Other: 1", trusted, &refuse).is_err());
        let any = ["*".to_owned()];
        let everything = Section::Head {
            version: (1, 1),
            forwarders: &any,
        };
        let b = parse_header_block(b"X_Other: 1", everything, &refuse).unwrap();
        assert_eq!(b.headers.len(), 1);
        // Trailers never take them.
        assert!(parse_header_block(b"SCRIPT_NAME: /x", Section::Trailer, &refuse).is_err());
    }

    #[test]
    fn bare_lf_messages() {
        assert_eq!(
            bare_lf_in_field(b"Host: a\n").message,
            "Invalid HTTP Header: 'HOST'"
        );
        assert_eq!(
            bare_lf_in_field(b"junk\n").message,
            "Invalid HTTP Header: 'junk\\n'"
        );
        assert_eq!(
            bare_lf_in_field(b"Bad Name: x\n").message,
            "Invalid HTTP Header: 'Bad Name: x\\n'"
        );
    }

    #[test]
    fn field_size_counts_the_crlf() {
        let limits = EffectiveLimits::from(&Limits {
            field_size: 10,
            ..Limits::default()
        });
        assert!(parse_header_block(b"Abc: 123", HEAD_11, &limits).is_ok());
        let e = parse_header_block(b"Abc: 1234", HEAD_11, &limits).unwrap_err();
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
            Section::Head {
                version: (1, 0),
                forwarders: &[],
            },
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
            framing(&[("Transfer-Encoding", "identity, \tchunked\t ")], (1, 1)),
            Ok(BodyFraming::Chunked)
        );
        assert_eq!(
            framing(&[("Transfer-Encoding", "chunked")], (2, 0)),
            Ok(BodyFraming::Chunked)
        );
        // `identity` alone does nothing: no body, as in gunicorn.
        assert_eq!(
            framing(&[("Transfer-Encoding", "identity")], (1, 1)),
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
        for te in [
            "chunked, chunked",
            "chunked, identity",
            "chunked, gzip",
            // The final coding must be chunked (RFC 9112 §6.3).
            "gzip",
            "identity, deflate",
            "compress",
        ] {
            invalid(&[("Transfer-Encoding", te)], (1, 1), "TRANSFER-ENCODING");
        }
        // One Transfer-Encoding line only, whatever is on the second.
        for second in ["chunked", "identity", "gzip"] {
            invalid(
                &[
                    ("Transfer-Encoding", "identity"),
                    ("Transfer-Encoding", second),
                ],
                (1, 1),
                "TRANSFER-ENCODING",
            );
        }
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
        // Only SP and HTAB are trimmed: NBSP, NEL, VT and friends make an
        // unknown coding, never `chunked`.
        for te in [
            "chunked,",
            "chunked\u{a0}",
            "\u{a0}chunked",
            "chunked\u{85}",
            "chunked\u{b}",
            "chunked\u{c}",
            "chunked\u{1c}",
            "chunked\r",
        ] {
            let e = framing(&[("Transfer-Encoding", te)], (1, 1)).unwrap_err();
            assert_eq!(e.status, 501, "{te:?}");
        }
    }
}
