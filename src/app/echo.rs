//! `builtin:echo`: answers with a JSON description of the request it got,
//! for testing what the server parsed (headers, body de-chunking, peer).

use std::borrow::Cow;
use std::io::{self, Read};

use serde::Serialize;

use super::{App, Request, ResponseSink};
use crate::http::PeerAddr;

/// Answers `200 application/json` describing the request (see
/// [`EchoDocument`]).
pub struct EchoApp;

impl App for EchoApp {
    fn call(&mut self, req: Request<'_>, resp: &mut dyn ResponseSink) -> io::Result<()> {
        echo(req, resp)
    }

    fn for_thread(&self, _threads: usize) -> io::Result<Box<dyn App + Send>> {
        Ok(Box::new(EchoApp))
    }
}

/// The JSON document the echo app sends. Field order is the output order.
#[derive(Debug, Serialize)]
pub struct EchoDocument<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub uri: &'a str,
    /// `HTTP/1.1`.
    pub version: String,
    /// `[name, value]` pairs in the order received.
    pub headers: Vec<[&'a str; 2]>,
    /// The de-chunked body, invalid UTF-8 replaced.
    pub body: Cow<'a, str>,
    /// Body size in bytes (before any UTF-8 replacement).
    pub body_length: usize,
    /// `host:port` for TCP peers, `unix` for unix-socket peers.
    pub peer: String,
    /// The listener it came in on: `host:port`, or `unix:PATH`.
    pub server: String,
    pub scheme: &'a str,
    /// On a TLS listener: the protocol version, the cipher suite and the
    /// client certificate's subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<&'a crate::tls::TlsInfo>,
    /// Behind a PROXY protocol header: its version and the addresses it
    /// gave (`null` for a header without any).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyDocument>,
}

#[derive(Debug, Serialize)]
pub struct ProxyDocument {
    pub version: u8,
    pub source: Option<String>,
    pub destination: Option<String>,
}

impl<'a> EchoDocument<'a> {
    pub fn new(req: &'a Request<'_>, body: &'a [u8]) -> Self {
        let head = req.head;
        EchoDocument {
            method: &head.method,
            path: &head.path,
            query: &head.query,
            uri: &head.uri,
            version: format!("HTTP/{}.{}", head.version.0, head.version.1),
            headers: head
                .headers
                .iter()
                .map(|(n, v)| [n.as_str(), v.as_str()])
                .collect(),
            body: String::from_utf8_lossy(body),
            body_length: body.len(),
            peer: match req.peer {
                PeerAddr::Tcp(addr) => addr.to_string(),
                PeerAddr::Unix => "unix".to_string(),
            },
            server: match req.server {
                crate::listeners::ListenAddr::Tcp(addr) => addr.to_string(),
                crate::listeners::ListenAddr::Unix(path) => format!("unix:{}", path.display()),
            },
            scheme: req.scheme,
            tls: req.tls,
            proxy: req.proxied.map(|p| ProxyDocument {
                version: p.version,
                source: p.source.map(|a| a.to_string()),
                destination: p.destination.map(|a| a.to_string()),
            }),
        }
    }
}

/// The largest body echoed: past it the answer is 413 (the whole body is
/// held in memory to be echoed, so it must be bounded).
pub const BODY_LIMIT: u64 = 1024 * 1024;

/// Read the whole body and answer with its [`EchoDocument`]; 413 for a body
/// over [`BODY_LIMIT`]. Shared with `builtin:debug`.
pub(super) fn echo(mut req: Request<'_>, resp: &mut dyn ResponseSink) -> io::Result<()> {
    let mut body = Vec::new();
    (&mut req.body)
        .take(BODY_LIMIT + 1)
        .read_to_end(&mut body)?;
    if body.len() as u64 > BODY_LIMIT {
        let page = format!("Request body larger than {BODY_LIMIT} bytes.\n");
        resp.start(
            413,
            &[
                ("Content-Type".to_string(), "text/plain".to_string()),
                ("Content-Length".to_string(), page.len().to_string()),
            ],
        )?;
        return resp.write(page.as_bytes());
    }
    let mut json = serde_json::to_vec(&EchoDocument::new(&req, &body)).map_err(io::Error::other)?;
    json.push(b'\n');
    resp.start(
        200,
        &[
            ("Content-Type".to_string(), "application/json".to_string()),
            ("Content-Length".to_string(), json.len().to_string()),
        ],
    )?;
    resp.write(&json)
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::app::testing::{call, head, RecordingSink};

    #[test]
    fn refuses_a_body_over_the_limit() {
        let mut app = EchoApp;
        let big = vec![b'x'; BODY_LIMIT as usize + 1];
        let sent = call(&mut app, &head("POST", "/", &[]), &big);
        assert_eq!(sent.status, Some(413));
        let fits = vec![b'x'; BODY_LIMIT as usize];
        let sent = call(&mut app, &head("POST", "/", &[]), &fits);
        assert_eq!(sent.status, Some(200));
    }

    #[test]
    fn describes_the_request() {
        let mut app = EchoApp;
        let head = head(
            "POST",
            "/a/b%20c?x=1&y",
            &[("Host", "example.com"), ("X-Dup", "1"), ("x-dup", "2")],
        );
        let sent = call(&mut app, &head, b"hello \xff");
        assert_eq!(sent.status, Some(200));
        assert_eq!(sent.header("Content-Type"), Some("application/json"));
        assert_eq!(
            sent.header("Content-Length"),
            Some(sent.body.len().to_string().as_str())
        );
        let doc: Value = serde_json::from_slice(&sent.body).unwrap();
        assert_eq!(
            doc,
            json!({
                "method": "POST",
                "path": "/a/b%20c",
                "query": "x=1&y",
                "uri": "/a/b%20c?x=1&y",
                "version": "HTTP/1.1",
                "headers": [["Host", "example.com"], ["X-Dup", "1"], ["x-dup", "2"]],
                "body": "hello \u{fffd}",
                "body_length": 7,
                "peer": "127.0.0.1:50000",
                "server": "127.0.0.1:8000",
                "scheme": "http",
            })
        );
    }

    #[test]
    fn unix_peer_and_https() {
        let head = head("GET", "/", &[]);
        let mut body: &[u8] = b"";
        let mut sink = RecordingSink::default();
        let req = Request {
            head: &head,
            peer: &PeerAddr::Unix,
            server: &crate::app::testing::listen_addr(),
            scheme: "https",
            tls: None,
            proxied: None,
            body: &mut body,
        };
        EchoApp.call(req, &mut sink).unwrap();
        let doc: Value = serde_json::from_slice(&sink.body).unwrap();
        assert_eq!(doc["peer"], "unix");
        assert_eq!(doc["scheme"], "https");
        assert_eq!(doc["body_length"], 0);
    }

    #[test]
    fn ipv6_peer_keeps_brackets() {
        let head = head("GET", "/", &[]);
        let peer = crate::app::testing::tcp_peer("[::1]:8080");
        let mut body: &[u8] = b"";
        let mut sink = RecordingSink::default();
        let req = Request {
            head: &head,
            peer: &peer,
            server: &crate::app::testing::listen_addr(),
            scheme: "http",
            tls: None,
            proxied: None,
            body: &mut body,
        };
        EchoApp.call(req, &mut sink).unwrap();
        let doc: Value = serde_json::from_slice(&sink.body).unwrap();
        assert_eq!(doc["peer"], "[::1]:8080");
    }
}
