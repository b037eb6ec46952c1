//! A small HTTP/1.1 client: send raw bytes, read until the server closes,
//! parse what came back (chunked bodies included).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// How long a request may wait on a read or a write unless told otherwise.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("bad JSON ({e}): {}", self.text()))
    }
}

/// Send `raw` to `addr` and parse the response; panics on failure.
#[track_caller]
pub fn http_request(addr: &str, raw: &str) -> Response {
    match try_http_request(addr, raw.as_bytes()) {
        Ok(r) => r,
        Err(e) => panic!("request to {addr} failed: {e}"),
    }
}

/// Send `raw` to `addr` and parse the response.
pub fn try_http_request(addr: &str, raw: &[u8]) -> io::Result<Response> {
    request_within(addr, raw, IO_TIMEOUT)
}

/// `GET /` on `addr`, giving up after `timeout` (a request that hangs is an
/// answer too: "nobody serves this").
pub fn get_within(addr: &str, timeout: Duration) -> Result<Response, String> {
    request_within(addr, b"GET / HTTP/1.1\r\nHost: test\r\n\r\n", timeout)
        .map_err(|e| format!("GET / on {addr}: {e}"))
}

/// Whether `GET /` on `addr` answers 200 "Hello, World!" (`builtin:hello`)
/// within 5 s.
pub fn hello_at(addr: &str) -> Result<(), String> {
    let r = get_within(addr, Duration::from_secs(5))?;
    if r.status == 200 && r.text() == "Hello, World!\n" {
        Ok(())
    } else {
        Err(format!("{addr} answered {} {:?}", r.status, r.text()))
    }
}

/// The status code of `GET /` on `addr`, or `None` if the request failed.
pub fn http_get_status(addr: &str) -> Option<u16> {
    try_http_request(
        addr,
        b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
    )
    .ok()
    .map(|r| r.status)
}

/// Send `raw` over the unix socket at `path`; panics on failure.
#[track_caller]
pub fn unix_request(path: &Path, raw: &str) -> Response {
    let mut s = match UnixStream::connect(path) {
        Ok(s) => s,
        Err(e) => panic!("connect {}: {e}", path.display()),
    };
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    read_response(&mut s).unwrap()
}

/// Read until the end of the stream and parse it as one response.
pub fn read_response(s: &mut impl Read) -> io::Result<Response> {
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    parse_response(&buf).ok_or_else(|| {
        io::Error::other(format!(
            "unparsable response: {:?}",
            String::from_utf8_lossy(&buf)
        ))
    })
}

fn request_within(addr: &str, raw: &[u8], timeout: Duration) -> io::Result<Response> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(raw)?;
    read_response(&mut s)
}

fn parse_response(buf: &[u8]) -> Option<Response> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let raw_body = &buf[end + 4..];
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(raw_body)?
    } else {
        raw_body.to_vec()
    };
    Some(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(
            std::str::from_utf8(&b[..eol])
                .ok()?
                .split(';')
                .next()?
                .trim(),
            16,
        )
        .ok()?;
        b = &b[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}
