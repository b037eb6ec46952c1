//! The request corpus: raw requests written from the parsing rules
//! (ARCHITECTURE.md, "HTTP parsing"), sent through real sockets to
//! `builtin:echo`.
//!
//! - Every valid request is sent whole, byte by byte and in random-sized
//!   pieces (a fixed-seed generator, so a failure replays), and the echo
//!   must show the same parse each time: method, target, version, header
//!   fields in order, de-chunked body.
//! - Every invalid request gets its status, on a status line that says
//!   `HTTP/1.1`, and the connection closes.
//! - Smuggling attempts are refused, and the same worker then serves the
//!   next connection as if nothing had happened.
//!
//! A few servers cover the settings: the defaults ([`Profile::Strict`]),
//! every relaxing switch ([`Profile::Lenient`]) and `--header-map refuse`.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use gunicornd_test_support::{read_response, Response, Server};
use serde_json::{json, Value};

/// Which server a case is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Profile {
    /// The defaults.
    Strict,
    /// Every switch that relaxes a rule.
    Lenient,
    /// `--header-map refuse`.
    Refuse,
}

impl Profile {
    const ALL: [Profile; 3] = [Profile::Strict, Profile::Lenient, Profile::Refuse];

    fn args(self) -> &'static [&'static str] {
        match self {
            Profile::Strict => &[],
            Profile::Lenient => &[
                "--permit-unconventional-http-method",
                "--casefold-http-method",
                "--permit-unconventional-http-version",
                "--permit-obsolete-folding",
                "--header-map",
                "dangerous",
            ],
            Profile::Refuse => &["--header-map", "refuse"],
        }
    }
}

/// One server per profile, started together.
struct Servers {
    servers: Vec<(Profile, Server)>,
}

impl Servers {
    fn start(profiles: &[Profile]) -> Servers {
        let servers = thread::scope(|scope| {
            let started: Vec<_> = profiles
                .iter()
                .map(|&p| {
                    scope.spawn(move || {
                        let mut args = p.args().to_vec();
                        args.push("builtin:echo");
                        (p, Server::start_with_workers(1, &args))
                    })
                })
                .collect();
            started.into_iter().map(|h| h.join().unwrap()).collect()
        });
        Servers { servers }
    }

    fn get(&self, profile: Profile) -> &Server {
        &self
            .servers
            .iter()
            .find(|(p, _)| *p == profile)
            .expect("a server for the profile")
            .1
    }
}

// ---------------------------------------------------------------------------
// The client

/// How a request goes on the wire.
#[derive(Debug, Clone, Copy)]
enum Cut {
    Whole,
    /// One `write` (and, with Nagle off, one segment) per byte.
    Bytes,
    /// Pieces of 1 to 16 bytes, sizes drawn from this seed.
    Random(u64),
}

/// xorshift64: small, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn pieces(raw: &[u8], cut: Cut) -> Vec<&[u8]> {
    match cut {
        Cut::Whole => vec![raw],
        Cut::Bytes => raw.chunks(1).collect(),
        Cut::Random(seed) => {
            let mut rng = Rng(seed | 1);
            let mut out = Vec::new();
            let mut rest = raw;
            while !rest.is_empty() {
                let n = (1 + rng.next() % 16) as usize;
                let (piece, tail) = rest.split_at(n.min(rest.len()));
                out.push(piece);
                rest = tail;
            }
            out
        }
    }
}

/// Sends `raw` cut as told and returns everything the server sent until it
/// closed.
fn exchange(server: &Server, raw: &[u8], cut: Cut) -> Vec<u8> {
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.set_nodelay(true).unwrap();
    // A safety net against a hang, not a synchronisation.
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    for piece in pieces(raw, cut) {
        s.write_all(piece)
            .unwrap_or_else(|e| panic!("{cut:?} write of {}: {e}", show(raw)));
    }
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)
        .unwrap_or_else(|e| panic!("{cut:?} read for {}: {e}", show(raw)));
    answer
}

/// The final response in `answer`, after any interim (1xx) ones, which
/// must say `HTTP/1.1` like the final one.
fn final_response(answer: &[u8], raw: &[u8]) -> Response {
    let mut rest = answer;
    loop {
        assert!(
            rest.starts_with(b"HTTP/1.1 "),
            "a status line that says HTTP/1.1 for {}: {}",
            show(raw),
            show(answer)
        );
        if !rest.starts_with(b"HTTP/1.1 1") {
            break;
        }
        let end = rest
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a complete interim response");
        rest = &rest[end + 4..];
    }
    read_response(&mut &rest[..]).unwrap_or_else(|e| panic!("response to {}: {e}", show(raw)))
}

fn show(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// Bytes as the string of the same code points (latin-1), as the parser
/// decodes them.
fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

// ---------------------------------------------------------------------------
// Valid requests

struct Valid {
    profile: Profile,
    raw: Vec<u8>,
    /// The echo document without `peer`, `scheme` and `body_length`.
    expect: Value,
}

/// A valid request and what echo must show for it; `uri` is the request
/// target exactly as sent.
#[expect(
    clippy::too_many_arguments,
    reason = "one argument per column of the table"
)]
fn ok(
    profile: Profile,
    raw: impl Into<Vec<u8>>,
    method: &str,
    path: &str,
    query: &str,
    version: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Valid {
    let raw = raw.into();
    let line_end = raw.windows(2).position(|w| w == b"\r\n").unwrap();
    let target = raw[..line_end].split(|&b| b == b' ').nth(1).unwrap();
    let headers: Vec<Value> = headers.iter().map(|(n, v)| json!([n, v])).collect();
    Valid {
        profile,
        expect: json!({
            "method": method,
            "path": path,
            "query": query,
            "uri": latin1(target),
            "version": version,
            "headers": headers,
            "body": body,
        }),
        raw,
    }
}

// One case per line, so that the table reads as one.
#[rustfmt::skip]
fn valid_corpus() -> Vec<Valid> {
    use Profile::*;
    let v11 = "HTTP/1.1";
    let h = [("Host", "h")];
    let long_value = "v".repeat(8000);
    let long_field = format!("GET / HTTP/1.1\r\nHost: h\r\nX-Long: {long_value}\r\n\r\n");
    let long_path = format!("/{}", "p".repeat(4094 - "GET / HTTP/1.1".len()));
    let long_line = format!("GET {long_path} HTTP/1.1\r\nHost: h\r\n\r\n");
    let many: Vec<(String, String)> = (0..99).map(|i| (format!("X-{i}"), i.to_string())).collect();
    let many_raw = format!(
        "GET / HTTP/1.1\r\nHost: h\r\n{}\r\n",
        many.iter()
            .map(|(n, v)| format!("{n}: {v}\r\n"))
            .collect::<String>()
    );
    let mut many_expected = vec![("Host", "h")];
    many_expected.extend(many.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    let big_body = "b".repeat(20_000);
    let big_raw =
        format!("POST /big HTTP/1.1\r\nHost: h\r\nContent-Length: 20000\r\n\r\n{big_body}");
    let big_chunks = format!(
        "POST /big HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
         2710\r\n{}\r\n2710\r\n{}\r\n0\r\n\r\n",
        &big_body[..10_000],
        &big_body[10_000..]
    );

    vec![
        // --- request lines ---
        ok(Strict, "GET / HTTP/1.1\r\nHost: h\r\n\r\n", "GET", "/", "", v11, &h, ""),
        ok(Strict, "GET /index.html?a=1&b=2 HTTP/1.1\r\nHost: h\r\n\r\n", "GET", "/index.html", "a=1&b=2", v11, &h, ""),
        ok(Strict, "GET /path#frag HTTP/1.1\r\nHost: h\r\n\r\n", "GET", "/path", "", v11, &h, ""),
        ok(Strict, "GET /p?q=1#f?x HTTP/1.1\r\nHost: h\r\n\r\n", "GET", "/p", "q=1", v11, &h, ""),
        ok(Strict, "GET //double//slash HTTP/1.1\r\nHost: h\r\n\r\n", "GET", "//double//slash", "", v11, &h, ""),
        ok(Strict, "GET /%7Euser/a%20b%2F HTTP/1.1\r\nHost: h\r\n\r\n", "GET", "/%7Euser/a%20b%2F", "", v11, &h, ""),
        ok(Strict, &b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n"[..], "GET", "/caf\u{c3}\u{a9}", "", v11, &h, ""),
        ok(Strict, "GET /a;b=c/d HTTP/1.1\r\nHost: h\r\n\r\n", "GET", "/a;b=c/d", "", v11, &h, ""),
        ok(Strict, "GET /a*b@c:d!$&'()+,= HTTP/1.1\r\nHost: h\r\n\r\n", "GET", "/a*b@c:d!$&'()+,=", "", v11, &h, ""),
        ok(Strict, "GET /? HTTP/1.1\r\nHost: h\r\n\r\n", "GET", "/", "", v11, &h, ""),
        ok(Strict, "GET /??x=? HTTP/1.1\r\nHost: h\r\n\r\n", "GET", "/", "?x=?", v11, &h, ""),
        ok(Strict, "GET /s?a=%20&b=+&c HTTP/1.1\r\nHost: h\r\n\r\n", "GET", "/s", "a=%20&b=+&c", v11, &h, ""),
        ok(Strict, "GET /back\\slash HTTP/1.1\r\nHost: h\r\n\r\n", "GET", "/back\\slash", "", v11, &h, ""),
        ok(Strict, long_line.as_str(), "GET", &long_path, "", v11, &h, ""),
        ok(Strict, "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", "OPTIONS", "*", "", v11, &h, ""),
        ok(Strict, "OPTIONS /x HTTP/1.1\r\nHost: h\r\n\r\n", "OPTIONS", "/x", "", v11, &h, ""),
        ok(Strict, "DELETE /r/1 HTTP/1.1\r\nHost: h\r\n\r\n", "DELETE", "/r/1", "", v11, &h, ""),
        ok(Strict, "PATCH /r HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n{}", "PATCH", "/r", "", v11, &[("Host", "h"), ("Content-Length", "2")], "{}"),
        ok(Strict, "PROPFIND /dav HTTP/1.1\r\nHost: h\r\nDepth: 1\r\n\r\n", "PROPFIND", "/dav", "", v11, &[("Host", "h"), ("Depth", "1")], ""),
        ok(Strict, "M-SEARCH /ssdp HTTP/1.1\r\nHost: h\r\n\r\n", "M-SEARCH", "/ssdp", "", v11, &h, ""),
        ok(Strict, "ABC / HTTP/1.1\r\nHost: h\r\n\r\n", "ABC", "/", "", v11, &h, ""),
        ok(Strict, "ABCDEFGHIJKLMNOPQRST / HTTP/1.1\r\nHost: h\r\n\r\n", "ABCDEFGHIJKLMNOPQRST", "/", "", v11, &h, ""),
        ok(Strict, "X.Y_Z!~ / HTTP/1.1\r\nHost: h\r\n\r\n", "X.Y_Z!~", "/", "", v11, &h, ""),
        ok(Strict, "GET / HTTP/1.0\r\n\r\n", "GET", "/", "", "HTTP/1.0", &[], ""),
        ok(Strict, "GET / HTTP/1.0\r\nHost: h\r\n\r\n", "GET", "/", "", "HTTP/1.0", &h, ""),
        ok(Strict, "GET / HTTP/1.2\r\nHost: h\r\n\r\n", "GET", "/", "", "HTTP/1.2", &h, ""),
        ok(Strict, "GET / HTTP/1.9\r\nHost: h\r\n\r\n", "GET", "/", "", "HTTP/1.9", &h, ""),
        ok(Strict, "POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc", "POST", "/", "", "HTTP/1.0", &[("Content-Length", "3")], "abc"),
        // --- absolute form: the target's host wins ---
        ok(Strict, "GET http://example.com/x?y HTTP/1.1\r\nHost: example.com\r\n\r\n", "GET", "/x", "y", v11, &[("Host", "example.com")], ""),
        ok(Strict, "GET http://target.example/x HTTP/1.1\r\nHost: other.example\r\nX: 1\r\n\r\n", "GET", "/x", "", v11, &[("Host", "target.example"), ("X", "1")], ""),
        ok(Strict, "GET https://example.com:8443/s HTTP/1.1\r\nhost: example.com:8443\r\n\r\n", "GET", "/s", "", v11, &[("host", "example.com:8443")], ""),
        ok(Strict, "GET http://[::1]:8000/v6 HTTP/1.1\r\nHost: x\r\n\r\n", "GET", "/v6", "", v11, &[("Host", "[::1]:8000")], ""),
        ok(Strict, "GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n", "GET", "", "", v11, &[("Host", "example.com")], ""),
        ok(Strict, "GET http://example.com?q HTTP/1.1\r\nHost: example.com\r\n\r\n", "GET", "", "q", v11, &[("Host", "example.com")], ""),
        ok(Strict, "GET http://target.example/old HTTP/1.0\r\nX: 1\r\n\r\n", "GET", "/old", "", "HTTP/1.0", &[("X", "1"), ("Host", "target.example")], ""),
        // --- Host ---
        ok(Strict, "GET / HTTP/1.1\r\nHost: example.com:8000\r\n\r\n", "GET", "/", "", v11, &[("Host", "example.com:8000")], ""),
        ok(Strict, "GET / HTTP/1.1\r\nHost: [::1]:8000\r\n\r\n", "GET", "/", "", v11, &[("Host", "[::1]:8000")], ""),
        ok(Strict, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "GET", "/", "", v11, &[("Host", "127.0.0.1")], ""),
        ok(Strict, "GET / HTTP/1.1\r\nHost:\r\n\r\n", "GET", "/", "", v11, &[("Host", "")], ""),
        ok(Strict, "GET / HTTP/1.1\r\nHost: my_host.local\r\n\r\n", "GET", "/", "", v11, &[("Host", "my_host.local")], ""),
        ok(Strict, "GET / HTTP/1.1\r\nHost: EXAMPLE.com\r\n\r\n", "GET", "/", "", v11, &[("Host", "EXAMPLE.com")], ""),
        ok(Strict, "GET / HTTP/1.1\r\nX-First: 1\r\nhOsT: late.example\r\n\r\n", "GET", "/", "", v11, &[("X-First", "1"), ("hOsT", "late.example")], ""),
        // --- header fields ---
        ok(Strict, "GET / HTTP/1.1\r\nHost: h\r\nX-Empty:\r\n\r\n", "GET", "/", "", v11, &[("Host", "h"), ("X-Empty", "")], ""),
        ok(Strict, "GET / HTTP/1.1\r\nHost: h\r\nX-Blank: \t  \r\n\r\n", "GET", "/", "", v11, &[("Host", "h"), ("X-Blank", "")], ""),
        ok(Strict, "GET / HTTP/1.1\r\nHost: h\r\nX-Pad: \t a  b \t\r\n\r\n", "GET", "/", "", v11, &[("Host", "h"), ("X-Pad", "a  b")], ""),
        ok(Strict, "GET / HTTP/1.1\r\nHost:h\r\nX-Tight:v\r\n\r\n", "GET", "/", "", v11, &[("Host", "h"), ("X-Tight", "v")], ""),
        ok(Strict, &b"GET / HTTP/1.1\r\nHost: h\r\nX-Latin: caf\xe9 \xff\r\n\r\n"[..], "GET", "/", "", v11, &[("Host", "h"), ("X-Latin", "caf\u{e9} \u{ff}")], ""),
        ok(Strict, "GET / HTTP/1.1\r\nHost: h\r\nX-Tab: a\tb\r\n\r\n", "GET", "/", "", v11, &[("Host", "h"), ("X-Tab", "a\tb")], ""),
        ok(Strict, "GET / HTTP/1.1\r\nhost: h\r\nx-lower: 1\r\nX-UPPER: 2\r\n\r\n", "GET", "/", "", v11, &[("host", "h"), ("x-lower", "1"), ("X-UPPER", "2")], ""),
        ok(Strict, "GET / HTTP/1.1\r\nHost: h\r\nX-Dup: 1\r\nx-dup: 2\r\nX-Dup: 3\r\n\r\n", "GET", "/", "", v11, &[("Host", "h"), ("X-Dup", "1"), ("x-dup", "2"), ("X-Dup", "3")], ""),
        ok(Strict, "GET / HTTP/1.1\r\nHost: h\r\nX!#$%&'*+-.^`|~: tchars\r\n\r\n", "GET", "/", "", v11, &[("Host", "h"), ("X!#$%&'*+-.^`|~", "tchars")], ""),
        ok(Strict, "GET / HTTP/1.1\r\nHost: h\r\nX-Time: 12:00:00\r\n\r\n", "GET", "/", "", v11, &[("Host", "h"), ("X-Time", "12:00:00")], ""),
        ok(Strict, "GET / HTTP/1.1\r\nHost: h\r\nAccept: text/html, application/json;q=0.9, */*;q=0.1\r\n\r\n", "GET", "/", "", v11, &[("Host", "h"), ("Accept", "text/html, application/json;q=0.9, */*;q=0.1")], ""),
        ok(Strict, "GET / HTTP/1.1\r\nHost: h\r\nCookie: a=1; b=\"two\"\r\nAuthorization: Basic dTpw\r\n\r\n", "GET", "/", "", v11, &[("Host", "h"), ("Cookie", "a=1; b=\"two\""), ("Authorization", "Basic dTpw")], ""),
        ok(Strict, "GET / HTTP/1.1\r\nHost: h\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nAccept-Encoding: gzip, br\r\nConnection: close\r\n\r\n", "GET", "/", "", v11, &[("Host", "h"), ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64)"), ("Accept-Encoding", "gzip, br"), ("Connection", "close")], ""),
        ok(Strict, "GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n", "GET", "/", "", v11, &[("Host", "h"), ("Connection", "keep-alive")], ""),
        ok(Strict, "GET / HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n", "GET", "/", "", v11, &[("Host", "h"), ("Content-Type", "text/plain; charset=utf-8")], ""),
        ok(Strict, "GET / HTTP/1.1\r\nHost: h\r\nX_Foo: dropped\r\nX-Foo: kept\r\n\r\n", "GET", "/", "", v11, &[("Host", "h"), ("X-Foo", "kept")], ""),
        ok(Strict, "GET / HTTP/1.1\r\nX_A: 1\r\nHost: h\r\nX_B: 2\r\n\r\n", "GET", "/", "", v11, &h, ""),
        ok(Strict, long_field.as_str(), "GET", "/", "", v11, &[("Host", "h"), ("X-Long", &long_value)], ""),
        ok(Strict, many_raw.as_str(), "GET", "/", "", v11, &many_expected, ""),
        ok(Strict, "GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n", "GET", "/", "", v11, &[("Host", "h"), ("Expect", "100-continue")], ""),
        // --- bodies ---
        ok(Strict, "POST /f HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello", "POST", "/f", "", v11, &[("Host", "h"), ("Content-Length", "5")], "hello"),
        ok(Strict, "POST /f HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", "POST", "/f", "", v11, &[("Host", "h"), ("Content-Length", "0")], ""),
        ok(Strict, "PUT /f HTTP/1.1\r\nHost: h\r\nContent-Length: 007\r\n\r\nseven!!", "PUT", "/f", "", v11, &[("Host", "h"), ("Content-Length", "007")], "seven!!"),
        ok(Strict, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\n\r\nline\r\nline\r\n", "POST", "/", "", v11, &[("Host", "h"), ("Content-Length", "12")], "line\r\nline\r\n"),
        ok(Strict, &b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\na\xffb"[..], "POST", "/", "", v11, &[("Host", "h"), ("Content-Length", "3")], "a\u{fffd}b"),
        ok(Strict, big_raw.as_str(), "POST", "/big", "", v11, &[("Host", "h"), ("Content-Length", "20000")], &big_body),
        ok(Strict, "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "POST", "/c", "", v11, &[("Host", "h"), ("Transfer-Encoding", "chunked")], "hello"),
        ok(Strict, "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "POST", "/c", "", v11, &[("Host", "h"), ("Transfer-Encoding", "chunked")], ""),
        ok(Strict, "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n1\r\nd\r\nA\r\n0123456789\r\n0\r\n\r\n", "POST", "/c", "", v11, &[("Host", "h"), ("Transfer-Encoding", "chunked")], "abcd0123456789"),
        ok(Strict, "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n00005\r\nhello\r\n000\r\n\r\n", "POST", "/c", "", v11, &[("Host", "h"), ("Transfer-Encoding", "chunked")], "0123456789hello"),
        ok(Strict, "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;name=value\r\nhello\r\n6 ;q=\"a;b\"\r\n world\r\n0;last\r\n\r\n", "POST", "/c", "", v11, &[("Host", "h"), ("Transfer-Encoding", "chunked")], "hello world"),
        ok(Strict, "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-More: 1\r\n\r\n", "POST", "/c", "", v11, &[("Host", "h"), ("Transfer-Encoding", "chunked")], "hello"),
        ok(Strict, "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", "POST", "/c", "", v11, &[("Host", "h"), ("Transfer-Encoding", "Chunked")], "ok"),
        ok(Strict, "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nzz\r\n0\r\n\r\n", "POST", "/c", "", v11, &[("Host", "h"), ("Transfer-Encoding", "gzip, chunked")], "zz"),
        ok(Strict, "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity,chunked\r\n\r\n2\r\nid\r\n0\r\n\r\n", "POST", "/c", "", v11, &[("Host", "h"), ("Transfer-Encoding", "identity,chunked")], "id"),
        ok(Strict, "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: deflate ,\tchunked\r\n\r\n1\r\nx\r\n0\r\n\r\n", "POST", "/c", "", v11, &[("Host", "h"), ("Transfer-Encoding", "deflate ,\tchunked")], "x"),
        ok(Strict, "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n", "POST", "/c", "", v11, &[("Host", "h"), ("Transfer-Encoding", "identity")], ""),
        ok(Strict, big_chunks.as_str(), "POST", "/big", "", v11, &[("Host", "h"), ("Transfer-Encoding", "chunked")], &big_body),
        ok(Strict, "POST /e HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\nbody", "POST", "/e", "", v11, &[("Host", "h"), ("Expect", "100-continue"), ("Content-Length", "4")], "body"),
        ok(Strict, "POST /e HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbody\r\n0\r\n\r\n", "POST", "/e", "", v11, &[("Host", "h"), ("Expect", "100-Continue"), ("Transfer-Encoding", "chunked")], "body"),
        ok(Strict, "POST /e HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok", "POST", "/e", "", "HTTP/1.0", &[("Expect", "100-continue"), ("Content-Length", "2")], "ok"),
        // --- the relaxing switches ---
        ok(Lenient, "get / HTTP/1.1\r\nHost: h\r\n\r\n", "GET", "/", "", v11, &h, ""),
        ok(Lenient, "-blargh /foo HTTP/1.1\r\nHost: h\r\n\r\n", "-BLARGH", "/foo", "", v11, &h, ""),
        ok(Lenient, "M#T / HTTP/1.1\r\nHost: h\r\n\r\n", "M#T", "/", "", v11, &h, ""),
        ok(Lenient, "ab / HTTP/1.1\r\nHost: h\r\n\r\n", "AB", "/", "", v11, &h, ""),
        ok(Lenient, "ABCDEFGHIJKLMNOPQRSTUVWXYZ / HTTP/1.1\r\nHost: h\r\n\r\n", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "/", "", v11, &h, ""),
        ok(Lenient, "options * HTTP/1.1\r\nHost: h\r\n\r\n", "OPTIONS", "*", "", v11, &h, ""),
        ok(Lenient, "GET / HTTP/0.9\r\n\r\n", "GET", "/", "", "HTTP/0.9", &[], ""),
        ok(Lenient, "GET / HTTP/2.0\r\nHost: h\r\n\r\n", "GET", "/", "", "HTTP/2.0", &h, ""),
        ok(Lenient, "POST / HTTP/3.7\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n", "POST", "/", "", "HTTP/3.7", &[("Host", "h"), ("Transfer-Encoding", "chunked")], "hi"),
        ok(Lenient, "GET / HTTP/1.1\r\nHost: h\r\nX-Fold: one\r\n two\r\n\tthree\r\n\r\n", "GET", "/", "", v11, &[("Host", "h"), ("X-Fold", "one two three")], ""),
        ok(Lenient, "GET / HTTP/1.1\r\nX-Fold:\r\n  late\r\nHost: h\r\n\r\n", "GET", "/", "", v11, &[("X-Fold", " late"), ("Host", "h")], ""),
        ok(Lenient, "GET / HTTP/1.1\r\nHost: h\r\nX_Foo: 1\r\nX-Foo: 2\r\n\r\n", "GET", "/", "", v11, &[("Host", "h"), ("X_Foo", "1"), ("X-Foo", "2")], ""),
        ok(Lenient, "GET / HTTP/1.1\r\nHost: h\r\nSCRIPT_NAME: /app\r\n\r\n", "GET", "/", "", v11, &[("Host", "h"), ("SCRIPT_NAME", "/app")], ""),
        ok(Lenient, "GET / HTTP/1.1\r\nHost: h\r\n\r\n", "GET", "/", "", v11, &h, ""),
        ok(Refuse, "GET /r HTTP/1.1\r\nHost: h\r\nX-Dash: 1\r\n\r\n", "GET", "/r", "", v11, &[("Host", "h"), ("X-Dash", "1")], ""),
        ok(Refuse, "POST /r HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\n!", "POST", "/r", "", v11, &[("Host", "h"), ("Content-Length", "1")], "!"),
    ]
}

#[test]
fn valid_requests_parse_the_same_however_they_are_cut() {
    let corpus = valid_corpus();
    assert!(corpus.len() >= 80, "{} valid requests", corpus.len());
    let servers = Servers::start(&Profile::ALL);
    let started = Instant::now();
    for (i, case) in corpus.iter().enumerate() {
        let server = servers.get(case.profile);
        for cut in [Cut::Whole, Cut::Bytes, Cut::Random(0x5eed + i as u64)] {
            let answer = exchange(server, &case.raw, cut);
            let resp = final_response(&answer, &case.raw);
            assert_eq!(
                resp.status,
                200,
                "{cut:?} {}: {}",
                show(&case.raw),
                resp.text()
            );
            let mut doc = resp.json();
            let doc = doc.as_object_mut().unwrap();
            assert!(doc.remove("peer").is_some());
            assert!(doc.remove("server").is_some());
            assert_eq!(doc.remove("scheme"), Some(json!("http")));
            let length = doc.remove("body_length").unwrap();
            assert_eq!(
                Value::Object(doc.clone()),
                case.expect,
                "{cut:?} {}",
                show(&case.raw)
            );
            let body = case.expect["body"].as_str().unwrap();
            if !body.contains('\u{fffd}') {
                assert_eq!(length, json!(body.len()));
            }
        }
    }
    eprintln!(
        "{} valid requests, 3 ways each, in {:?}",
        corpus.len(),
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------
// Invalid requests

struct Invalid {
    profile: Profile,
    raw: Vec<u8>,
    status: u16,
}

fn bad(profile: Profile, raw: impl Into<Vec<u8>>, status: u16) -> Invalid {
    Invalid {
        profile,
        raw: raw.into(),
        status,
    }
}

fn invalid_corpus() -> Vec<Invalid> {
    use Profile::*;
    let long_line = format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(5000));
    let many: String = (0..101).map(|i| format!("X-{i}: v\r\n")).collect();
    let many = format!("GET / HTTP/1.1\r\nHost: h\r\n{many}\r\n");
    let long_field = format!(
        "GET / HTTP/1.1\r\nHost: h\r\nX-Long: {}\r\n\r\n",
        "v".repeat(8190)
    );
    let chunked = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    let te = |value: &[u8]| -> Vec<u8> {
        let mut raw = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: ".to_vec();
        raw.extend_from_slice(value);
        raw.extend_from_slice(b"\r\n\r\n0\r\n\r\n");
        raw
    };
    let cl = |value: &str| format!("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: {value}\r\n\r\n");
    vec![
        // --- request lines ---
        bad(Strict, "GARBAGE\r\n\r\n", 400),
        bad(Strict, "\r\n\r\n", 400),
        bad(Strict, "\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        bad(Strict, "GET\r\n\r\n", 400),
        bad(Strict, "GET /\r\n\r\n", 400),
        bad(Strict, "GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        bad(Strict, "GET  HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        bad(Strict, " GET / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        bad(Strict, "GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        bad(Strict, "GET / HTTP/1.1 \r\nHost: h\r\n\r\n", 400),
        bad(Strict, "GET / HTTP/1.1 extra\r\nHost: h\r\n\r\n", 400),
        bad(Strict, "GET / http/1.1\r\nHost: h\r\n\r\n", 400),
        bad(Strict, "GET / HTTP/1\r\nHost: h\r\n\r\n", 400),
        bad(Strict, "GET / HTTP/11.1\r\nHost: h\r\n\r\n", 400),
        bad(Strict, "GET / HTTP/1.x\r\nHost: h\r\n\r\n", 400),
        bad(Strict, "GET / HTTP/2.0\r\nHost: h\r\n\r\n", 400),
        bad(Strict, "GET / HTTP/0.9\r\n\r\n", 400),
        bad(Strict, "GET / HTTP/3.0\r\nHost: h\r\n\r\n", 400),
        bad(Strict, "get / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        bad(Strict, "Get / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        bad(Strict, "GE / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        bad(Strict, "ABCDEFGHIJKLMNOPQRSTU / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        bad(Strict, "G#T / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        bad(Strict, "G(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        bad(Strict, &b"GET\x00 / HTTP/1.1\r\nHost: h\r\n\r\n"[..], 400),
        bad(Strict, &b"G\xc9T / HTTP/1.1\r\nHost: h\r\n\r\n"[..], 400),
        bad(Strict, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 400),
        bad(Strict, "CONNECT / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        bad(Strict, "GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        bad(Strict, "POST * HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        bad(Strict, "GET example.com HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        bad(Strict, "GET example.com:80 HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        bad(Strict, "GET http:/x HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        bad(Strict, "GET 1http://x/ HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        bad(Strict, "GET http:///x HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        bad(Strict, "GET http://user@h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        bad(Strict, "GET http://[::1/ HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        bad(Strict, "GET http://h:99999/ HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        bad(Strict, "GET http://h h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        bad(Strict, &b"GET /a\x7fb HTTP/1.1\r\nHost: h\r\n\r\n"[..], 400),
        bad(Strict, &b"GET /a\x01b HTTP/1.1\r\nHost: h\r\n\r\n"[..], 400),
        bad(Strict, long_line.as_str(), 400),
        // --- Host ---
        bad(Strict, "GET / HTTP/1.1\r\n\r\n", 400),
        bad(Strict, "OPTIONS * HTTP/1.1\r\nAccept: */*\r\n\r\n", 400),
        bad(Strict, "GET http://h/ HTTP/1.1\r\n\r\n", 400),
        bad(Strict, "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
        bad(Strict, "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
        bad(Strict, "GET / HTTP/1.1\r\nHost: u@h\r\n\r\n", 400),
        bad(Strict, "GET / HTTP/1.1\r\nHost: h:99999\r\n\r\n", 400),
        bad(Strict, "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400),
        bad(Strict, &b"GET / HTTP/1.1\r\nHost: caf\xe9\r\n\r\n"[..], 400),
        bad(Strict, "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400),
        bad(Strict, "GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400),
        // --- header fields ---
        bad(Strict, "GET / HTTP/1.1\r\nHost: h\r\nContent-Type: a\r\nContent-Type: b\r\n\r\n", 400),
        bad(Strict, "GET / HTTP/1.1\r\nHost: h\r\nBad Header\r\n\r\n", 400),
        bad(Strict, "GET / HTTP/1.1\r\nHost: h\r\n: value\r\n\r\n", 400),
        bad(Strict, "GET / HTTP/1.1\r\nHost: h\r\nName : v\r\n\r\n", 400),
        bad(Strict, "GET / HTTP/1.1\r\nHost: h\r\nNa me: v\r\n\r\n", 400),
        bad(Strict, "GET / HTTP/1.1\r\nHost: h\r\nX(Y): v\r\n\r\n", 400),
        bad(Strict, &b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x00b\r\n\r\n"[..], 400),
        bad(Strict, &b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x7f\r\n\r\n"[..], 400),
        bad(Strict, &b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x01\r\n\r\n"[..], 400),
        bad(Strict, "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n", 400),
        bad(Strict, "GET / HTTP/1.1\r\n X-Leading: space\r\nHost: h\r\n\r\n", 400),
        bad(Strict, "GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n folded\r\n\r\n", 400),
        bad(Strict, "GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\tfolded\r\n\r\n", 400),
        bad(Strict, "GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n", 400),
        bad(Strict, "GET / HTTP/1.1\nHost: a\r\n\r\n", 400),
        bad(Strict, "GET / HTTP/1.1\r\nHost: a\r\n\n", 400),
        bad(Strict, "GET / HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\n\r\n", 417),
        bad(Strict, "GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue, x\r\n\r\n", 417),
        bad(Strict, "GET / HTTP/1.1\r\nHost: h\r\nExpect:\r\n\r\n", 417),
        bad(Strict, "GET / HTTP/1.0\r\nExpect: bogus\r\n\r\n", 417),
        bad(Strict, many.as_str(), 431),
        bad(Strict, long_field.as_str(), 431),
        bad(Refuse, "GET / HTTP/1.1\r\nHost: h\r\nX_Foo: 1\r\n\r\n", 400),
        bad(Refuse, "GET / HTTP/1.1\r\nHost: h\r\nX_Forwarded_For: 192.0.2.1\r\n\r\n", 400),
        // --- framing ---
        bad(Strict, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        bad(Strict, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400),
        bad(Strict, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\nContent-Length: 5\r\n\r\nhello", 400),
        bad(Strict, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400),
        bad(Strict, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
        bad(Strict, cl("5, 5"), 400),
        bad(Strict, cl("+5"), 400),
        bad(Strict, cl("-1"), 400),
        bad(Strict, cl("0x10"), 400),
        bad(Strict, cl("1 0"), 400),
        bad(Strict, cl(""), 400),
        bad(Strict, cl("99999999999999999999999"), 400),
        bad(Strict, te(b"chunked, identity"), 400),
        bad(Strict, te(b"chunked, chunked"), 400),
        bad(Strict, te(b"chunked, gzip"), 400),
        bad(Strict, te(b"gzip"), 400),
        bad(Strict, te(b"identity, deflate"), 400),
        bad(Strict, te(b"xchunked"), 501),
        bad(Strict, te(b"br, chunked"), 501),
        bad(Strict, te(b"chunked,"), 501),
        bad(Strict, te(b"chunked\xa0"), 501),
        bad(Strict, te(b"\xa0chunked"), 501),
        bad(Strict, te(b"chunked\x85"), 501),
        bad(Strict, te(b"chunked\x0b"), 400),
        bad(Strict, te(b"chunked\x0c"), 400),
        bad(Strict, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        bad(Strict, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        bad(Strict, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n ,chunked\r\n\r\n0\r\n\r\n", 400),
        bad(Strict, "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        // --- chunked bodies, refused while the app reads them ---
        bad(Strict, format!("{chunked}zz\r\n5\r\nhello\r\n0\r\n\r\n"), 400),
        bad(Strict, format!("{chunked}0x5\r\nhello\r\n0\r\n\r\n"), 400),
        bad(Strict, format!("{chunked}\r\nhello\r\n0\r\n\r\n"), 400),
        bad(Strict, format!("{chunked}5 \r\nhello\r\n0\r\n\r\n"), 400),
        bad(Strict, format!("{chunked}5\r\nhelloXX0\r\n\r\n"), 400),
        bad(Strict, format!("{chunked}5\nhello\r\n0\r\n\r\n"), 400),
        bad(Strict, format!("{chunked}5;a\rb\r\nhello\r\n0\r\n\r\n"), 400),
        bad(Strict, format!("{chunked}0\r\nHost: evil\r\n\r\n"), 400),
        bad(Strict, format!("{chunked}0\r\nContent-Length: 5\r\n\r\n"), 400),
        bad(Strict, format!("{chunked}0\r\nX-A: 1\nX-B: 2\r\n\r\n"), 400),
        // --- what the relaxing switches still refuse ---
        bad(Lenient, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n ,chunked\r\n\r\n0\r\n\r\n", 400),
        bad(Lenient, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n", 400),
        bad(Lenient, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n 0\r\n\r\n0123456789", 400),
        bad(Lenient, "G(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        bad(Lenient, "connect h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n", 400),
        bad(Lenient, "GET / HTTP/11.1\r\nHost: h\r\n\r\n", 400),
        bad(Lenient, "GET / HTTP/1.1\r\n\r\n", 400),
        // Folded into the Host field, a space makes it invalid.
        bad(Lenient, "GET / HTTP/1.1\r\nHost: h\r\n X: 1\r\n\r\n", 400),
    ]
}

#[test]
fn invalid_requests_get_their_status_and_the_connection_closes() {
    let corpus = invalid_corpus();
    assert!(corpus.len() >= 80, "{} invalid requests", corpus.len());
    let servers = Servers::start(&Profile::ALL);
    for case in &corpus {
        let server = servers.get(case.profile);
        let answer = exchange(server, &case.raw, Cut::Whole);
        let resp = final_response(&answer, &case.raw);
        assert_eq!(
            resp.status,
            case.status,
            "{:?} {}: {}",
            case.profile,
            show(&case.raw),
            resp.text()
        );
        assert_eq!(resp.header("Connection"), Some("close"));
        // gunicorn's page: its length is stated, and it is all there.
        let length: usize = resp.header("Content-Length").unwrap().parse().unwrap();
        assert_eq!(resp.body.len(), length, "{}", show(&case.raw));
        assert!(resp.text().contains("<title>"), "{}", resp.text());
    }
    for (profile, server) in &servers.servers {
        assert_eq!(
            server.worker_pids().len(),
            1,
            "{profile:?}: no worker was lost"
        );
    }
}

// ---------------------------------------------------------------------------
// Smuggling, and the connection after it

/// Each a request that proxies have been seen to frame differently, with a
/// second request hidden where a laxer parser would find it.
fn smuggling_attempts() -> Vec<(Profile, Vec<u8>)> {
    use Profile::*;
    let hidden = "GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n";
    let with_te = |te: &[u8]| -> Vec<u8> {
        let mut raw = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: ".to_vec();
        raw.extend_from_slice(te);
        raw.extend_from_slice(format!("\r\nContent-Length: 4\r\n\r\n0\r\n\r\n{hidden}").as_bytes());
        raw
    };
    let te_only = |te: &[u8], profile| -> (Profile, Vec<u8>) {
        let mut raw = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: ".to_vec();
        raw.extend_from_slice(te);
        raw.extend_from_slice(format!("\r\n\r\n0\r\n\r\n{hidden}").as_bytes());
        (profile, raw)
    };
    vec![
        // CL.TE and TE.CL
        (Strict, format!("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{hidden}").into_bytes()),
        (Strict, format!("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n{hidden}").into_bytes()),
        (Strict, with_te(b"identity")),
        // Two lengths
        (Strict, format!("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nContent-Length: 37\r\n\r\n{hidden}").into_bytes()),
        (Strict, format!("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0, 37\r\n\r\n{hidden}").into_bytes()),
        // `identity` after chunked, chunked on a second line
        te_only(b"chunked, identity", Strict),
        (Strict, format!("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{hidden}").into_bytes()),
        (Strict, format!("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{hidden}").into_bytes()),
        // Whitespace other than SP and HTAB around `chunked`
        te_only(b"chunked\xa0", Strict),
        te_only(b"\xa0chunked", Strict),
        te_only(b"chunked\x85", Strict),
        te_only(b"chunked\x0b", Strict),
        te_only(b"chunked\x0c", Strict),
        te_only(b"chunked\x1c", Strict),
        te_only(b"chunked\r", Strict),
        // Obsolete folding in Transfer-Encoding, even where folding is allowed
        (Strict, format!("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n{hidden}").into_bytes()),
        (Lenient, format!("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n{hidden}").into_bytes()),
        (Lenient, format!("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\t,chunked\r\n\r\n0\r\n\r\n{hidden}").into_bytes()),
        // A final coding other than chunked, and chunked on HTTP/1.0
        te_only(b"gzip", Strict),
        (Strict, format!("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{hidden}").into_bytes()),
        // A bare LF where a laxer parser ends a line
        (Strict, format!("POST / HTTP/1.1\r\nHost: h\r\nX: y\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{hidden}").into_bytes()),
        (Strict, format!("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n{hidden}").into_bytes()),
    ]
}

#[test]
fn smuggling_attempts_are_refused_and_the_worker_serves_on() {
    let servers = Servers::start(&[Profile::Strict, Profile::Lenient]);
    let workers: Vec<_> = servers
        .servers
        .iter()
        .map(|(_, s)| s.worker_pids())
        .collect();
    let next = b"POST /next?n=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nnext";
    for (profile, raw) in smuggling_attempts() {
        let server = servers.get(profile);
        let answer = exchange(server, &raw, Cut::Whole);
        let resp = final_response(&answer, &raw);
        assert!(
            matches!(resp.status, 400 | 501),
            "{profile:?} {}: {} {}",
            show(&raw),
            resp.status,
            resp.text()
        );
        // One answer, for the request as a whole: nothing for the hidden one.
        let status_lines = answer.windows(9).filter(|w| w == b"HTTP/1.1 ").count();
        assert_eq!(status_lines, 1, "{}", show(&answer));

        let answer = exchange(server, next, Cut::Whole);
        let resp = final_response(&answer, next);
        assert_eq!(resp.status, 200, "after {}: {}", show(&raw), resp.text());
        let doc = resp.json();
        assert_eq!(
            (&doc["path"], &doc["query"], &doc["body"]),
            (&json!("/next"), &json!("n=1"), &json!("next"))
        );
    }
    let after: Vec<_> = servers
        .servers
        .iter()
        .map(|(_, s)| s.worker_pids())
        .collect();
    assert_eq!(after, workers, "the same workers served throughout");
}

// ---------------------------------------------------------------------------
// Answers

#[test]
fn bare_lf_is_answered_without_waiting_for_more() {
    let servers = Servers::start(&[Profile::Strict]);
    let server = servers.get(Profile::Strict);
    for raw in [
        &b"GET / HTTP/1.1\n"[..],
        b"GET / HTTP/1.1\r\nHost: h\n",
        b"GET / HTTP/1.1\r\nHost: h\r\n\n",
    ] {
        let mut s = TcpStream::connect(server.addr()).unwrap();
        s.write_all(raw).unwrap();
        // The client sends nothing more and keeps its side open: an answer
        // well within the worker's own read timeout (15 s with the default
        // --timeout 30) was not waiting for more bytes.
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let started = Instant::now();
        let mut answer = Vec::new();
        s.read_to_end(&mut answer)
            .unwrap_or_else(|e| panic!("no answer to {} within 5 s: {e}", show(raw)));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(final_response(&answer, raw).status, 400, "{}", show(raw));
        let _ = s.shutdown(Shutdown::Both);
    }
}

#[test]
fn responses_say_http11_and_head_errors_have_no_body() {
    let servers = Servers::start(&[Profile::Strict, Profile::Lenient]);
    let strict = servers.get(Profile::Strict);
    for raw in [
        &b"GET / HTTP/1.0\r\n\r\n"[..],
        b"GET / HTTP/1.2\r\nHost: h\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
    ] {
        let answer = exchange(strict, raw, Cut::Whole);
        assert!(answer.starts_with(b"HTTP/1.1 "), "{}", show(&answer));
    }
    let answer = exchange(
        servers.get(Profile::Lenient),
        b"GET / HTTP/2.0\r\nHost: h\r\n\r\n",
        Cut::Whole,
    );
    assert!(answer.starts_with(b"HTTP/1.1 200 "), "{}", show(&answer));

    for raw in [
        &b"HEAD / HTTP/1.1\r\n\r\n"[..],
        b"HEAD / HTTP/1.1\r\nHost: h\r\nContent-Length: x\r\n\r\n",
        b"HEAD / HTTP/2.0\r\nHost: h\r\n\r\n",
    ] {
        let answer = exchange(strict, raw, Cut::Whole);
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(body.is_empty(), "no page for HEAD: {text}");
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert!(length > 0, "the page's length, as a GET would get it");
    }
    // The same errors for GET carry the page.
    let resp = final_response(
        &exchange(strict, b"GET / HTTP/1.1\r\n\r\n", Cut::Whole),
        b"",
    );
    assert!(resp
        .text()
        .contains("Missing HTTP Header: &#x27;HOST&#x27;"));
}
