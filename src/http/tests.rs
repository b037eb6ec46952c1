//! Connection-level tests: whole requests through `Connection` and
//! `BodyReader` over scripted streams, and responses through `ResponseWriter`.

use std::io::{self, IoSlice, Read, Write};

use super::body::DRAIN_LIMIT;
use super::*;
use crate::app::ResponseSink;

/// What a scripted stream saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Read(Vec<u8>),
    Write(Vec<u8>),
}

/// A stream that serves `input` in reads of at most `max_read` bytes, then
/// end of stream, optionally failing every other read with `Interrupted`,
/// and records what is written to it.
struct Script {
    input: Vec<u8>,
    pos: usize,
    max_read: usize,
    interrupt: bool,
    interrupted_last: bool,
    events: Vec<Event>,
}

impl Script {
    fn new(input: &[u8]) -> Self {
        Script {
            input: input.to_vec(),
            pos: 0,
            max_read: usize::MAX,
            interrupt: false,
            interrupted_last: false,
            events: Vec::new(),
        }
    }

    /// One byte per read: the most fragmented a client can be.
    fn trickle(input: &[u8]) -> Self {
        Script {
            max_read: 1,
            ..Script::new(input)
        }
    }

    fn written(&self) -> Vec<u8> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Write(w) => Some(w.clone()),
                Event::Read(_) => None,
            })
            .collect::<Vec<_>>()
            .concat()
    }
}

impl Read for Script {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.interrupt {
            self.interrupted_last = !self.interrupted_last;
            if self.interrupted_last {
                return Err(io::Error::from(io::ErrorKind::Interrupted));
            }
        }
        let n = buf
            .len()
            .min(self.max_read)
            .min(self.input.len() - self.pos);
        buf[..n].copy_from_slice(&self.input[self.pos..self.pos + n]);
        self.pos += n;
        self.events.push(Event::Read(buf[..n].to_vec()));
        Ok(n)
    }
}

impl Write for Script {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.events.push(Event::Write(buf.to_vec()));
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn read_head_from(script: Script, limits: &Limits) -> Result<Option<RequestHead>, HeadError> {
    Connection::new(script).read_head(limits)
}

/// Parses `raw` whole and byte by byte, checks both agree, returns the result.
fn parse(raw: &[u8]) -> Result<Option<RequestHead>, HeadError> {
    parse_with(raw, &Limits::default())
}

fn parse_with(raw: &[u8], limits: &Limits) -> Result<Option<RequestHead>, HeadError> {
    let whole = read_head_from(Script::new(raw), limits);
    let trickled = read_head_from(Script::trickle(raw), limits);
    assert_eq!(
        format!("{whole:?}"),
        format!("{trickled:?}"),
        "fragmentation changed the outcome for {raw:?}"
    );
    whole
}

fn rejected(raw: &[u8]) -> HttpError {
    match parse(raw) {
        Err(HeadError::Invalid(e)) => e,
        other => panic!("expected a rejection for {raw:?}, got {other:?}"),
    }
}

fn assert_rejected(raw: &[u8], status: u16, message: &str) {
    let e = rejected(raw);
    assert_eq!(
        (e.status, e.message.as_str()),
        (status, message),
        "{}",
        String::from_utf8_lossy(raw)
    );
}

/// Reads the whole body of the single request in `raw`.
fn body_of(script: Script) -> (io::Result<Vec<u8>>, Vec<(String, String)>, Script) {
    let mut conn = Connection::new(script);
    let head = conn
        .read_head(&Limits::default())
        .expect("valid head")
        .expect("a request");
    let mut body = conn.body(&head);
    let mut data = Vec::new();
    let result = body.read_to_end(&mut data).map(|_| data);
    let trailers = body.trailers().to_vec();
    (result, trailers, conn.into_inner())
}

fn body_error(raw: &[u8]) -> io::Error {
    let (result, _, _) = body_of(Script::new(raw));
    let whole = result.expect_err("body should fail");
    let (result, _, _) = body_of(Script::trickle(raw));
    let trickled = result.expect_err("body should fail when fragmented");
    assert_eq!(whole.kind(), trickled.kind());
    assert_eq!(http_error(&whole), http_error(&trickled));
    whole
}

// ----- request heads -----

#[test]
fn simple_get() {
    let head = parse(b"GET /index.html?a=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(head.method, "GET");
    assert_eq!(head.uri, "/index.html?a=1");
    assert_eq!(head.path, "/index.html");
    assert_eq!(head.query, "a=1");
    assert_eq!(head.version, (1, 1));
    assert_eq!(head.header("host"), Some("example.com"));
    assert_eq!(head.headers.len(), 2);
    assert_eq!(head.framing, BodyFraming::Length(0));
    assert!(!head.expect_continue);
}

#[test]
fn request_without_headers() {
    let head = parse(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
    assert_eq!((head.version, head.headers.len()), ((1, 0), 0));
}

#[test]
fn valid_corpus() {
    let corpus: &[&[u8]] = &[
        b"POST /submit HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET http://example.com/x HTTP/1.1\r\nHost: h\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET https://[::1]:8443/x HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n",
        b"DELETE /r HTTP/1.9\r\nHost: h\r\nX-Tab:\tv\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nX-Latin: caf\xe9\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nEmpty:\r\n\r\n",
    ];
    for raw in corpus {
        assert!(
            matches!(parse(raw), Ok(Some(_))),
            "{}",
            String::from_utf8_lossy(raw)
        );
    }
}

#[test]
fn latin1_header_values_are_decoded_per_byte() {
    let head = parse(b"GET / HTTP/1.1\r\nHost: h\r\nX-Latin: caf\xe9\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(head.header("x-latin"), Some("caf\u{e9}"));
}

#[test]
fn underscore_headers_are_dropped() {
    let head = parse(b"GET / HTTP/1.0\r\nX_Foo: 1\r\nX-Foo: 2\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(head.headers, vec![("X-Foo".to_string(), "2".to_string())]);
}

#[test]
fn smuggling_corpus_is_rejected() {
    let bad_cl = "Invalid HTTP Header: 'CONTENT-LENGTH'";
    let bad_te = "Invalid HTTP Header: 'TRANSFER-ENCODING'";
    assert_rejected(
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        400,
        bad_cl,
    );
    assert_rejected(
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        400,
        bad_cl,
    );
    assert_rejected(
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
        400,
        bad_cl,
    );
    assert_rejected(
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n",
        400,
        bad_cl,
    );
    assert_rejected(
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n",
        400,
        bad_cl,
    );
    assert_rejected(
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
        400,
        bad_cl,
    );
    assert_rejected(
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
        400,
        bad_te,
    );
    assert_rejected(
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        400,
        bad_te,
    );
    assert_rejected(
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        400,
        bad_te,
    );
    assert_rejected(
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n",
        501,
        "Unsupported transfer coding: 'xchunked'",
    );
    // `chunked` on a second line, after a coding a proxy may take as final.
    assert_rejected(
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n\r\n",
        400,
        bad_te,
    );
    assert_rejected(
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n",
        400,
        bad_te,
    );
    // NBSP (a latin-1 0xA0) is not whitespace to a strict proxy.
    assert_rejected(
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\xa0\r\n\r\n",
        501,
        "Unsupported transfer coding: 'chunked\\xa0'",
    );
    assert_rejected(
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\x0b\r\n\r\n",
        400,
        "Invalid HTTP Header: 'TRANSFER-ENCODING'",
    );
    assert_rejected(
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n chunked\r\n\r\n",
        400,
        "Obsolete line folding is unacceptable: 'TRANSFER-ENCODING'",
    );
    // Bare LF is not a line ending: the "second header" stays in the value.
    assert_rejected(
        b"GET / HTTP/1.1\r\nHost: a\nContent-Length: 5\r\n\r\n",
        400,
        "Invalid HTTP Header: 'HOST'",
    );
    assert_rejected(
        b"GET / HTTP/1.1\nHost: a\r\n\r\n",
        400,
        "Invalid Request Line 'Invalid HTTP request line: 'GET / HTTP/1.1\\n''",
    );
    assert_rejected(
        b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n b\r\n\r\n",
        400,
        "Obsolete line folding is unacceptable: 'X-A'",
    );
    assert_rejected(
        b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\0b\r\n\r\n",
        400,
        "Invalid HTTP Header: 'X-A'",
    );
    assert_rejected(
        b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n",
        400,
        "Invalid HTTP Header: 'X-A'",
    );
    assert_rejected(
        b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
        400,
        "Invalid HTTP header name: 'Host '",
    );
    assert_rejected(
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        400,
        "Invalid HTTP Header: 'HOST'",
    );
    assert_rejected(
        b"GET / HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\n\r\n",
        417,
        "Unable to comply with expectation: '200-ok'",
    );
}

#[test]
fn bare_lf_is_answered_without_waiting_for_more() {
    // Each input ends right after the bare LF: had the parser waited for a
    // CRLF, it would have met the end of the stream instead.
    assert_rejected(
        b"GET / HTTP/1.1\n",
        400,
        "Invalid Request Line 'Invalid HTTP request line: 'GET / HTTP/1.1\\n''",
    );
    assert_rejected(
        b"\n",
        400,
        "Invalid Request Line 'Invalid HTTP request line: '\\n''",
    );
    assert_rejected(
        b"GET / HTTP/1.1\r\nHost: a\n",
        400,
        "Invalid HTTP Header: 'HOST'",
    );
    assert_rejected(
        b"GET / HTTP/1.1\r\nHost: a\r\n\n",
        400,
        "Invalid HTTP Header: '\\n'",
    );
    assert_rejected(b"GET / HTTP/1.1\r\n\n", 400, "Invalid HTTP Header: '\\n'");
    let prefix = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (rest, message) in [
        ("5\n", "Invalid chunk size: b'5\\n'"),
        ("0\r\nX-A: 1\n", "Invalid HTTP Header: 'X-A'"),
        ("0\n", "Invalid chunk size: b'0\\n'"),
    ] {
        let e = body_error(format!("{prefix}{rest}").as_bytes());
        assert_eq!(
            http_error(&e).map(|h| h.message.as_str()),
            Some(message),
            "{rest:?}"
        );
    }
}

#[test]
fn http11_needs_a_valid_host() {
    assert_rejected(
        b"GET / HTTP/1.1\r\n\r\n",
        400,
        "Missing HTTP Header: 'HOST'",
    );
    assert_rejected(
        b"OPTIONS * HTTP/1.1\r\nUser-Agent: x\r\n\r\n",
        400,
        "Missing HTTP Header: 'HOST'",
    );
    assert_rejected(
        b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
        400,
        "Invalid HTTP Header: 'HOST'",
    );
    assert_rejected(
        b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
        400,
        "Invalid HTTP Header: 'HOST'",
    );
    assert!(parse(b"GET / HTTP/1.0\r\n\r\n").unwrap().is_some());
    let head = parse(b"GET / HTTP/1.1\r\nHost:\r\n\r\n").unwrap().unwrap();
    assert_eq!(head.header("host"), Some(""));
}

#[test]
fn absolute_form_target_wins_over_host() {
    let head =
        parse(b"GET http://target.example:8080/p?q=1 HTTP/1.1\r\nHost: other\r\nX: y\r\n\r\n")
            .unwrap()
            .unwrap();
    assert_eq!((head.path.as_str(), head.query.as_str()), ("/p", "q=1"));
    assert_eq!(head.uri, "http://target.example:8080/p?q=1");
    assert_eq!(
        head.headers,
        vec![
            ("Host".to_string(), "target.example:8080".to_string()),
            ("X".to_string(), "y".to_string())
        ]
    );
    let head = parse(b"GET http://target.example/ HTTP/1.0\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(head.header("Host"), Some("target.example"));
    assert_rejected(
        b"GET http://u@target.example/ HTTP/1.1\r\nHost: target.example\r\n\r\n",
        400,
        "Invalid Request Line 'Invalid HTTP request line: 'GET http://u@target.example/ HTTP/1.1''",
    );
}

#[test]
fn connect_is_refused() {
    assert_rejected(
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        400,
        "Invalid Method 'Invalid HTTP method: 'CONNECT''",
    );
}

#[test]
fn head_requests_get_error_pages_without_a_body() {
    for raw in [
        &b"HEAD / HTTP/1.1\r\n\r\n"[..],
        b"HEAD / HTTP/1.1\r\nHost: h\r\nX-A: a\0\r\n\r\n",
        b"HEAD / HTTP/1.1\r\nHost: h\r\nContent-Length: x\r\n\r\n",
        b"HEAD / HTTP/2.0\r\n\r\n",
    ] {
        assert!(rejected(raw).bodiless, "{}", String::from_utf8_lossy(raw));
    }
    assert!(!rejected(b"GET / HTTP/1.1\r\n\r\n").bodiless);
    // A malformed body of a HEAD request too.
    let e = body_error(b"HEAD / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
    assert!(http_error(&e).unwrap().bodiless);
    let e = body_error(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
    assert!(!http_error(&e).unwrap().bodiless);
}

#[test]
fn rules_reach_the_parser_through_limits() {
    let permissive = Limits {
        rules: Rules {
            permit_unconventional_method: true,
            casefold_method: true,
            permit_unconventional_version: true,
            permit_obsolete_folding: true,
            header_map: HeaderMap::Dangerous,
            ..Rules::default()
        },
        ..Limits::default()
    };
    let head = parse_with(
        b"m-search / HTTP/2.0\r\nHost: h\r\nX_Foo: 1\r\nX-Long: a\r\n b\r\n\r\n",
        &permissive,
    )
    .unwrap()
    .unwrap();
    assert_eq!((head.method.as_str(), head.version), ("M-SEARCH", (2, 0)));
    assert_eq!(
        head.headers,
        vec![
            ("Host".to_string(), "h".to_string()),
            ("X_Foo".to_string(), "1".to_string()),
            ("X-Long".to_string(), "a b".to_string())
        ]
    );
    let refuse = Limits {
        rules: Rules {
            header_map: HeaderMap::Refuse,
            ..Rules::default()
        },
        ..Limits::default()
    };
    match parse_with(b"GET / HTTP/1.1\r\nHost: h\r\nX_Foo: 1\r\n\r\n", &refuse) {
        Err(HeadError::Invalid(e)) => {
            assert_eq!(e.message, "Invalid HTTP header name: 'X_FOO'")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn forwarder_fields_depend_on_the_peer() {
    let raw = b"GET /app/x HTTP/1.1\r\nHost: h\r\nSCRIPT_NAME: /app\r\nX_Other: 1\r\n\r\n";
    let from = |peer: &PeerAddr| {
        Connection::new(Script::new(raw))
            .read_head_trusting(
                &Limits::default(),
                super::forwarded::AllowList::loopback().allows(peer),
            )
            .unwrap()
            .unwrap()
            .headers
    };
    let kept = vec![
        ("Host".to_string(), "h".to_string()),
        ("SCRIPT_NAME".to_string(), "/app".to_string()),
    ];
    let dropped = vec![("Host".to_string(), "h".to_string())];
    let tcp = |a: &str| PeerAddr::Tcp(a.parse().unwrap());
    assert_eq!(from(&PeerAddr::Unix), kept);
    assert_eq!(from(&tcp("127.0.0.1:5000")), kept);
    assert_eq!(from(&tcp("[::1]:5000")), kept);
    assert_eq!(from(&tcp("[::ffff:127.0.0.1]:5000")), kept);
    assert_eq!(from(&tcp("127.0.0.2:5000")), dropped);
    assert_eq!(from(&tcp("192.0.2.1:5000")), dropped);
    // Without a peer, nobody is trusted.
    assert_eq!(parse(raw).unwrap().unwrap().headers, dropped);
}

#[test]
fn request_line_corpus_is_rejected() {
    for raw in [
        &b"\r\n"[..],
        b"GET  / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1 \r\n\r\n",
        b"get / HTTP/1.1\r\n\r\n",
        b"GET * HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET / HTTP/2.0\r\n\r\n",
        b"GET / HTTP/1.10\r\n\r\n",
        b"GET noslash HTTP/1.1\r\nHost: h\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
    ] {
        let e = rejected(raw);
        assert_eq!(e.status, 400, "{raw:?}");
    }
}

#[test]
fn request_line_limit() {
    // A 5014-byte request line, as in gunicorn's example.
    let mut raw = b"GET /".to_vec();
    raw.resize(5014 - b" HTTP/1.1".len(), b'a');
    raw.extend_from_slice(b" HTTP/1.1\r\n\r\n");
    // All in one read: the CRLF is found at 5014 (gunicorn's example).
    let e = match read_head_from(Script::new(&raw), &Limits::default()) {
        Err(HeadError::Invalid(e)) => e,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        (e.status, e.message.as_str()),
        (400, "Request Line is too large (5014 > 4094)")
    );
    // Byte by byte: stopped as soon as the line cannot fit any more.
    let e = match read_head_from(Script::trickle(&raw), &Limits::default()) {
        Err(HeadError::Invalid(e)) => e,
        other => panic!("{other:?}"),
    };
    assert_eq!(e.message, "Request Line is too large (4097 > 4094)");
    // At the limit exactly it passes.
    let mut ok = b"GET /".to_vec();
    ok.resize(4094 - 9, b'a');
    ok.extend_from_slice(b" HTTP/1.0\r\n\r\n");
    assert!(parse(&ok).unwrap().is_some());
}

#[test]
fn header_limits() {
    let mut long = b"GET / HTTP/1.1\r\nHost: h\r\nX-Long: ".to_vec();
    long.resize(long.len() + 8190, b'v');
    long.extend_from_slice(b"\r\n\r\n");
    assert_rejected(
        &long,
        431,
        "Error parsing headers: 'limit request headers fields size'",
    );

    let mut many = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
    for i in 0..101 {
        many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert_rejected(
        &many,
        431,
        "Error parsing headers: 'limit request headers fields'",
    );

    let tight = Limits {
        request_line: 4094,
        fields: 2,
        field_size: 10,
        ..Limits::default()
    };
    // Like gunicorn, which check fires depends on how much arrived at once:
    // the whole block in one read is parsed and the third field is one too
    // many; a trickling client hits the buffer cap, fields * (field_size +
    // 2) + 4 = 28 bytes, first.
    let raw = b"GET / HTTP/1.0\r\nA: 1\r\nB: 2\r\nC: 3333333333333333\r\n\r\n";
    let outcomes = [
        (Script::new(raw), "limit request headers fields"),
        (Script::trickle(raw), "max buffer headers"),
    ];
    for (script, what) in outcomes {
        match read_head_from(script, &tight) {
            Err(HeadError::Invalid(e)) => {
                assert_eq!(
                    (e.status, e.message),
                    (431, format!("Error parsing headers: '{what}'"))
                )
            }
            other => panic!("{other:?}"),
        }
    }
    // Underscore fields do not count towards the field limit.
    assert!(
        parse_with(b"GET / HTTP/1.0\r\nA: 1\r\nX_Y: 1\r\nB: 2\r\n\r\n", &tight)
            .unwrap()
            .is_some()
    );
}

#[test]
fn peer_closing_early() {
    assert!(matches!(parse(b""), Ok(None)));
    for partial in [
        &b"G"[..],
        b"GET / HTTP/1.1",
        b"GET / HTTP/1.1\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r",
    ] {
        match parse(partial) {
            Err(HeadError::Io(e)) => {
                assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{partial:?}")
            }
            other => panic!("{partial:?}: {other:?}"),
        }
    }
}

#[test]
fn interrupted_reads_are_retried() {
    let raw = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc";
    let script = Script {
        interrupt: true,
        ..Script::trickle(raw)
    };
    let (body, _, _) = body_of(script);
    assert_eq!(body.unwrap(), b"abc");
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A small deterministic generator: a fixed seed keeps failures reproducible.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let alphabet: &[u8] = b"GET POST / HTTP/1.1\r\n:;,\t 0123456789abcdefxX_-\0\x7f\xe9Content-Length: Transfer-Encoding: chunked";
    for _ in 0..2000 {
        let len = (next() % 200) as usize;
        let mut raw: Vec<u8> = (0..len)
            .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
            .collect();
        if next() % 2 == 0 {
            let mut prefixed =
                b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            prefixed.append(&mut raw);
            raw = prefixed;
        }
        let max_read = 1 + (next() % 16) as usize;
        let mut conn = Connection::new(Script {
            max_read,
            ..Script::new(&raw)
        });
        if let Ok(Some(head)) = conn.read_head(&Limits::default()) {
            let mut body = conn.body(&head);
            let _ = io::copy(&mut body, &mut io::sink());
            let _ = body.drain();
        }
    }
}

// ----- request bodies -----

#[test]
fn length_body_including_large_direct_reads() {
    let (body, _, _) = body_of(Script::new(
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloEXTRA",
    ));
    assert_eq!(body.unwrap(), b"hello");

    let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let mut raw = format!(
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
        payload.len()
    )
    .into_bytes();
    raw.extend_from_slice(&payload);
    let mut conn = Connection::new(Script::new(&raw));
    let head = conn.read_head(&Limits::default()).unwrap().unwrap();
    let mut body = conn.body(&head);
    let mut got = Vec::new();
    let mut big = vec![0u8; 32 * 1024];
    loop {
        match body.read(&mut big).unwrap() {
            0 => break,
            n => got.extend_from_slice(&big[..n]),
        }
    }
    assert_eq!(got, payload);
    assert!(body.is_complete());
}

#[test]
fn length_body_cut_short() {
    let e = body_error(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nhello");
    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    assert!(http_error(&e).is_none());
}

#[test]
fn chunked_body_with_extensions_and_trailers() {
    let raw = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
                5;name=value\r\nhello\r\n\
                6 ; quoted=\"x\"\r\n world\r\n\
                A\r\n0123456789\r\n\
                0\r\nX-Checksum: abc\r\nX-More: 1\r\n\r\n";
    for script in [Script::new(raw), Script::trickle(raw)] {
        let (body, trailers, _) = body_of(script);
        assert_eq!(body.unwrap(), b"hello world0123456789");
        assert_eq!(
            trailers,
            vec![
                ("X-Checksum".to_string(), "abc".to_string()),
                ("X-More".to_string(), "1".to_string())
            ]
        );
    }
}

#[test]
fn chunked_body_errors() {
    let prefix = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    let fails = |rest: &str, message: &str| {
        let e = body_error(format!("{prefix}{rest}").as_bytes());
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{rest:?}");
        let http = http_error(&e).expect("carries an HttpError");
        assert_eq!(
            (http.status, http.message.as_str()),
            (400, message),
            "{rest:?}"
        );
    };
    fails("0x10\r\n", "Invalid chunk size: b'0x10'");
    fails("\r\nhello\r\n0\r\n\r\n", "Invalid chunk size: b''");
    fails("-5\r\n", "Invalid chunk size: b'-5'");
    fails(
        "5\r\nhelloXX0\r\n\r\n",
        "Invalid chunk terminator is not '\\r\\n': b'XX'",
    );
    fails(
        "5\r\nhello\n0\r\n\r\n",
        "Invalid chunk terminator is not '\\r\\n': b'\\n0'",
    );
    fails(
        "5;a\nb\r\nhello\r\n0\r\n\r\n",
        "Invalid chunk extension: b'a\\n'",
    );
    fails(
        "0\r\nHost: evil\r\n\r\n",
        "Invalid HTTP header name: 'HOST'",
    );
    fails(
        "0\r\nContent-Length: 5\r\n\r\n",
        "Invalid HTTP header name: 'CONTENT-LENGTH'",
    );
    fails(
        "0\r\nX-A: 1\r\n folded\r\n\r\n",
        "Obsolete line folding is unacceptable: 'X-A'",
    );

    for cut in [
        "5\r\nhel",
        "5\r\nhello",
        "5\r\nhello\r\n",
        "0\r\n",
        "0\r\nX-A: 1\r\n",
        "5",
    ] {
        let e = body_error(format!("{prefix}{cut}").as_bytes());
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{cut:?}");
    }
}

#[test]
fn body_errors_are_sticky() {
    let raw = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n5\r\nhello\r\n0\r\n\r\n";
    let mut conn = Connection::new(Script::new(raw));
    let head = conn.read_head(&Limits::default()).unwrap().unwrap();
    let mut body = conn.body(&head);
    let mut buf = [0u8; 16];
    let first = body.read(&mut buf).unwrap_err();
    let second = body.read(&mut buf).unwrap_err();
    assert_eq!(http_error(&first), http_error(&second));
}

#[test]
fn continue_is_sent_before_the_first_body_read() {
    let head_bytes =
        b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n";
    let mut raw = head_bytes.to_vec();
    raw.extend_from_slice(b"hello");
    // The client sends the head, waits, then the body: model that with
    // reads that end exactly at the head.
    let mut conn = Connection::new(Script {
        max_read: head_bytes.len(),
        ..Script::new(&raw)
    });
    let head = conn.read_head(&Limits::default()).unwrap().unwrap();
    assert!(head.expect_continue);
    assert!(
        conn.get_ref().written().is_empty(),
        "nothing is written before the app reads"
    );
    let mut body = conn.body(&head);
    let mut data = Vec::new();
    body.read_to_end(&mut data).unwrap();
    assert_eq!(data, b"hello");
    let events = &conn.get_ref().events;
    let write_at = events
        .iter()
        .position(|e| *e == Event::Write(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()))
        .unwrap();
    let body_read_at = events
        .iter()
        .position(|e| *e == Event::Read(b"hello".to_vec()))
        .unwrap();
    assert!(write_at < body_read_at);
    assert_eq!(conn.get_ref().written(), b"HTTP/1.1 100 Continue\r\n\r\n");
}

#[test]
fn continue_is_not_sent_when_not_needed() {
    // Body already buffered with the head.
    let raw =
        b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello";
    let (body, _, script) = body_of(Script::new(raw));
    assert_eq!(body.unwrap(), b"hello");
    assert!(script.written().is_empty());

    // Draining a body the client has not been told to send.
    let raw = b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n";
    let mut conn = Connection::new(Script::new(raw));
    let head = conn.read_head(&Limits::default()).unwrap().unwrap();
    let mut body = conn.body(&head);
    assert_eq!(body.drain().unwrap(), 0);
    assert!(conn.get_ref().written().is_empty());

    // Draining a body that arrived early, whole or in part.
    let raw =
        b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello";
    let mut conn = Connection::new(Script::new(raw));
    let head = conn.read_head(&Limits::default()).unwrap().unwrap();
    let mut body = conn.body(&head);
    assert_eq!(body.drain().unwrap(), 5);
    assert!(body.is_complete());
    assert!(conn.get_ref().written().is_empty());
    let raw =
        b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel";
    let mut conn = Connection::new(Script::new(raw));
    let head = conn.read_head(&Limits::default()).unwrap().unwrap();
    let mut body = conn.body(&head);
    assert_eq!(body.drain().unwrap(), 3);
    assert!(!body.is_complete());
    assert_eq!(
        body.read(&mut [0; 8]).unwrap_err().kind(),
        io::ErrorKind::UnexpectedEof
    );
    assert!(conn.get_ref().written().is_empty());

    // HTTP/1.0 cannot expect it.
    let raw = b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n";
    assert!(!parse(raw).unwrap().unwrap().expect_continue);
}

#[test]
fn drain_is_bounded() {
    let small = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello";
    let mut conn = Connection::new(Script::new(small));
    let head = conn.read_head(&Limits::default()).unwrap().unwrap();
    let mut body = conn.body(&head);
    assert_eq!(body.drain().unwrap(), 5);
    assert!(body.is_complete());

    let mut big = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1000000\r\n\r\n".to_vec();
    big.resize(big.len() + 1_000_000, b'x');
    let mut conn = Connection::new(Script::new(&big));
    let head = conn.read_head(&Limits::default()).unwrap().unwrap();
    let mut body = conn.body(&head);
    assert_eq!(body.drain().unwrap(), DRAIN_LIMIT);
    assert!(!body.is_complete());
}

// ----- responses -----

/// Counts write calls (plain and vectored), optionally accepting only a few
/// bytes per call to exercise partial writes.
#[derive(Default)]
struct Wire {
    data: Vec<u8>,
    calls: usize,
    max_write: Option<usize>,
}

impl Write for Wire {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.calls += 1;
        let n = self.max_write.map_or(buf.len(), |m| m.min(buf.len()));
        self.data.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.calls += 1;
        let mut budget = self.max_write.unwrap_or(usize::MAX);
        let mut n = 0;
        for b in bufs {
            let take = budget.min(b.len());
            self.data.extend_from_slice(&b[..take]);
            budget -= take;
            n += take;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn fields(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// Splits a response into its head lines (Date checked and removed) and body.
fn split_response(data: &[u8]) -> (Vec<String>, Vec<u8>) {
    let end = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("complete head");
    let head: String = data[..end].iter().map(|&b| char::from(b)).collect();
    let lines: Vec<String> = head
        .split("\r\n")
        .filter(|line| match line.strip_prefix("Date: ") {
            Some(date) => {
                assert!(httpdate::parse_http_date(date).is_ok(), "bad Date {date:?}");
                false
            }
            None => true,
        })
        .map(str::to_string)
        .collect();
    (lines, data[end + 4..].to_vec())
}

fn respond(
    version: (u8, u8),
    is_head: bool,
    status: u16,
    headers: &[(&str, &str)],
    body: &[&[u8]],
) -> (Vec<String>, Vec<u8>, usize, u64) {
    let mut wire = Wire::default();
    let mut resp = ResponseWriter::new(&mut wire, version, is_head);
    resp.start(status, &fields(headers)).unwrap();
    for part in body {
        resp.write(part).unwrap();
    }
    resp.finish().unwrap();
    let sent = resp.body_bytes();
    let (lines, body) = split_response(&wire.data);
    (lines, body, wire.calls, sent)
}

#[test]
fn content_length_response_is_one_write() {
    let (lines, body, calls, sent) = respond(
        (1, 1),
        false,
        200,
        &[("Content-Type", "text/plain"), ("Content-Length", "5")],
        &[b"hello"],
    );
    assert_eq!(
        lines,
        [
            "HTTP/1.1 200 OK",
            "Server: gunicornd",
            "Connection: close",
            "Content-Type: text/plain",
            "Content-Length: 5"
        ]
    );
    assert_eq!(body, b"hello");
    assert_eq!((calls, sent), (1, 5));
}

#[test]
fn chunked_response() {
    let (lines, body, calls, sent) = respond(
        (1, 1),
        false,
        201,
        &[("X-A", "1")],
        &[b"hello", b"", b" world!"],
    );
    assert_eq!(
        lines,
        [
            "HTTP/1.1 201 Created",
            "Server: gunicornd",
            "Connection: close",
            "Transfer-Encoding: chunked",
            "X-A: 1"
        ]
    );
    assert_eq!(body, b"5\r\nhello\r\n7\r\n world!\r\n0\r\n\r\n");
    // Head + first chunk, second chunk, terminator.
    assert_eq!((calls, sent), (3, 12));

    let (_, body, calls, _) = respond((1, 1), false, 200, &[], &[]);
    assert_eq!((body.as_slice(), calls), (&b"0\r\n\r\n"[..], 1));
}

#[test]
fn http10_body_is_close_delimited_and_the_status_line_says_http11() {
    let (lines, body, calls, _) = respond((1, 0), false, 200, &[], &[b"abc", b"def"]);
    assert_eq!(
        lines,
        ["HTTP/1.1 200 OK", "Server: gunicornd", "Connection: close"]
    );
    assert_eq!((body.as_slice(), calls), (&b"abcdef"[..], 2));

    for version in [(1, 2), (2, 0), (0, 9)] {
        let (lines, _, _, _) = respond(version, false, 299, &[("Content-Length", "0")], &[]);
        assert_eq!(lines[0], "HTTP/1.1 299 ");
    }
}

#[test]
fn keep_alive_is_offered_unless_the_body_ends_with_the_connection() {
    let offered = std::sync::atomic::AtomicBool::new(true);
    let keep = |version, headers: &[(&str, &str)]| {
        let mut wire = Wire::default();
        let mut resp = ResponseWriter::new(&mut wire, version, false).with_keep_alive(&offered);
        resp.start(200, &fields(headers)).unwrap();
        resp.write(b"abc").unwrap();
        resp.finish().unwrap();
        let kept = resp.keeps_alive();
        let (lines, _) = split_response(&wire.data);
        (kept, lines[2].clone())
    };
    let alive = (true, "Connection: keep-alive".to_string());
    let close = (false, "Connection: close".to_string());
    assert_eq!(keep((1, 1), &[]), alive);
    assert_eq!(keep((1, 1), &[("Content-Length", "3")]), alive);
    assert_eq!(keep((1, 0), &[("Content-Length", "3")]), alive);
    // HTTP/1.0 has no chunking: the end of the body is the close.
    assert_eq!(keep((1, 0), &[]), close);
    // An app's own Connection field is the server's to set.
    assert_eq!(keep((1, 1), &[("Connection", "close")]), alive);
    // Withdrawn before the head is built (the worker began to stop).
    offered.store(false, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(keep((1, 1), &[("Content-Length", "3")]), close);
}

#[test]
fn responses_without_body() {
    // HEAD keeps the length of what GET would send, sends no body.
    let (lines, body, calls, sent) =
        respond((1, 1), true, 200, &[("Content-Length", "5")], &[b"hello"]);
    assert!(lines.contains(&"Content-Length: 5".to_string()));
    assert_eq!((body.len(), calls, sent), (0, 1, 0));
    // HEAD without a length is not chunked.
    let (lines, body, _, _) = respond((1, 1), true, 200, &[], &[b"hello"]);
    assert!(!lines.iter().any(|l| l.starts_with("Transfer-Encoding")));
    assert!(body.is_empty());
    // 204 and 1xx lose their Content-Length; 304 keeps it.
    let (lines, body, _, _) = respond((1, 1), false, 204, &[("Content-Length", "5")], &[b"hello"]);
    assert!(!lines
        .iter()
        .any(|l| l.starts_with("Content-Length") || l.starts_with("Transfer-Encoding")));
    assert!(body.is_empty());
    let (lines, body, _, _) = respond(
        (1, 1),
        false,
        304,
        &[("Content-Length", "5"), ("ETag", "\"x\"")],
        &[b"hello"],
    );
    assert!(lines.contains(&"Content-Length: 5".to_string()));
    assert!(lines.contains(&"ETag: \"x\"".to_string()));
    assert!(body.is_empty());
}

#[test]
fn writes_never_exceed_content_length() {
    let mut wire = Wire::default();
    let mut resp = ResponseWriter::new(&mut wire, (1, 1), false);
    resp.start(200, &fields(&[("Content-Length", "3")]))
        .unwrap();
    resp.write(b"he").unwrap();
    resp.write(b"llo").unwrap();
    resp.write(b"more").unwrap();
    resp.finish().unwrap();
    assert!(resp.truncated());
    assert_eq!((resp.body_bytes(), resp.content_length()), (3, Some(3)));
    let (_, body) = split_response(&wire.data);
    assert_eq!(body, b"hel");
}

#[test]
fn hop_by_hop_fields_are_dropped_and_app_fields_kept_for_the_log() {
    let mut wire = Wire::default();
    let mut resp = ResponseWriter::new(&mut wire, (1, 1), false);
    let app = fields(&[
        ("Connection", "keep-alive"),
        ("Keep-Alive", "timeout=5"),
        ("Transfer-Encoding", "chunked"),
        ("Server", "app"),
        ("Date", "yesterday"),
        ("Upgrade", "h2c"),
        ("X-Request-Id", "42"),
        ("Set-Cookie", "a=b"),
        ("X-Latin", "caf\u{e9}"),
        ("Content-Length", "0"),
    ]);
    resp.start(200, &app).unwrap();
    resp.finish().unwrap();
    let logged: Vec<(String, String)> = resp
        .headers()
        .map(|(n, v)| (n.to_string(), v.into_owned()))
        .collect();
    assert_eq!(
        logged,
        fields(&[
            ("X-Request-Id", "42"),
            ("Set-Cookie", "a=b"),
            ("X-Latin", "caf\u{e9}"),
            ("Content-Length", "0")
        ])
    );
    assert_eq!(resp.header("x-request-id").as_deref(), Some("42"));
    assert_eq!(resp.header("server"), None);
    let (lines, _) = split_response(&wire.data);
    assert_eq!(
        lines,
        [
            "HTTP/1.1 200 OK",
            "Server: gunicornd",
            "Connection: close",
            "X-Request-Id: 42",
            "Set-Cookie: a=b",
            "X-Latin: caf\u{e9}",
            "Content-Length: 0"
        ]
    );
    assert!(
        wire.data.windows(8).any(|w| w == b"caf\xe9\r\nCo"),
        "latin-1 on the wire"
    );
}

#[test]
fn invalid_app_fields_are_refused() {
    for bad in [
        ("Bad Name", "v"),
        ("X-A", "a\r\nInjected: 1"),
        ("X-A", "nul\0"),
        ("X-A", "snow\u{2603}"),
        ("Content-Length", "-1"),
    ] {
        let mut wire = Wire::default();
        let mut resp = ResponseWriter::new(&mut wire, (1, 1), false);
        let e = resp.start(200, &fields(&[bad])).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        assert!(!resp.started());
        assert_eq!(resp.headers().count(), 0);
        assert!(wire.data.is_empty());
    }
}

#[test]
fn misuse_is_an_error() {
    let mut wire = Wire::default();
    let mut resp = ResponseWriter::new(&mut wire, (1, 1), false);
    assert!(resp.write(b"x").is_err());
    assert!(resp.finish().is_err());
    assert!(resp.start(42, &[]).is_err());
    resp.start(200, &[]).unwrap();
    assert!(resp.start(200, &[]).is_err());
    resp.finish().unwrap();
    resp.finish().unwrap();
    assert!(resp.write(b"x").is_err());
}

#[test]
fn head_is_held_until_the_first_non_empty_write() {
    let mut wire = Wire::default();
    let mut resp = ResponseWriter::new(&mut wire, (1, 1), false);
    resp.start(200, &fields(&[("Content-Length", "2")]))
        .unwrap();
    resp.write(b"").unwrap();
    assert!(!resp.headers_sent());
    resp.write(b"ok").unwrap();
    assert!(resp.headers_sent());
    resp.finish().unwrap();
    assert_eq!(wire.calls, 1);
}

#[test]
fn large_bodies_use_one_vectored_write_and_survive_partial_writes() {
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    let length = payload.len().to_string();
    let (_, body, calls, _) = respond(
        (1, 1),
        false,
        200,
        &[("Content-Length", &length)],
        &[&payload],
    );
    assert_eq!((body.len(), calls), (payload.len(), 1));
    assert_eq!(body, payload);

    let mut wire = Wire {
        max_write: Some(777),
        ..Wire::default()
    };
    let mut resp = ResponseWriter::new(&mut wire, (1, 1), false);
    resp.start(200, &[]).unwrap();
    resp.write(&payload).unwrap();
    resp.write(&payload[..10]).unwrap();
    resp.finish().unwrap();
    let (_, body) = split_response(&wire.data);
    let mut expected = format!("{:X}\r\n", payload.len()).into_bytes();
    expected.extend_from_slice(&payload);
    expected.extend_from_slice(b"\r\nA\r\n");
    expected.extend_from_slice(&payload[..10]);
    expected.extend_from_slice(b"\r\n0\r\n\r\n");
    assert_eq!(body, expected);
}

// ----- over a real socket -----

#[test]
fn loopback_round_trip_with_continue() {
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let client = std::thread::spawn(move || {
        let mut sock = TcpStream::connect(addr).unwrap();
        // A safety net against a hang, not a synchronisation.
        sock.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        sock.write_all(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
        )
        .unwrap();
        let mut interim = [0u8; 25];
        sock.read_exact(&mut interim).unwrap();
        assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
        sock.write_all(b"hello").unwrap();
        let mut response = Vec::new();
        sock.read_to_end(&mut response).unwrap();
        response
    });

    let (stream, _) = listener.accept().unwrap();
    let mut conn = Connection::new(&stream);
    let head = conn.read_head(&Limits::default()).unwrap().unwrap();
    let mut out = &stream;
    let mut resp = ResponseWriter::new(&mut out, head.version, head.method == "HEAD");
    let mut body = conn.body(&head);
    let mut data = Vec::new();
    body.read_to_end(&mut data).unwrap();
    resp.start(200, &fields(&[("Content-Length", "5")]))
        .unwrap();
    resp.write(&data).unwrap();
    resp.finish().unwrap();
    assert_eq!(body.drain().unwrap(), 0);
    drop(conn);
    drop(stream);

    let response = client.join().unwrap();
    let (lines, body) = split_response(&response);
    assert_eq!(lines[0], "HTTP/1.1 200 OK");
    assert_eq!(body, b"hello");
}
