//! Test doubles for apps: a recording [`ResponseSink`] and fake requests.

use std::io;
use std::net::SocketAddr;

use super::{App, Request, ResponseSink};
use crate::http::{BodyFraming, PeerAddr, RequestHead};

/// Records what an app sends, and checks the sink protocol (one `start`,
/// before any body).
#[derive(Debug, Default)]
pub(crate) struct RecordingSink {
    pub status: Option<u16>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Sizes of the `write` calls, to check streaming.
    pub chunks: Vec<usize>,
}

impl RecordingSink {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn body_str(&self) -> &str {
        std::str::from_utf8(&self.body).expect("body is UTF-8")
    }
}

impl ResponseSink for RecordingSink {
    fn start(&mut self, status: u16, headers: &[(String, String)]) -> io::Result<()> {
        assert!(self.status.is_none(), "start called twice");
        self.status = Some(status);
        self.headers = headers.to_vec();
        Ok(())
    }

    fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        assert!(self.status.is_some(), "body written before start");
        self.body.extend_from_slice(chunk);
        self.chunks.push(chunk.len());
        Ok(())
    }
}

/// A request head as the HTTP parser would produce it for `method uri`.
pub(crate) fn head(method: &str, uri: &str, headers: &[(&str, &str)]) -> RequestHead {
    let (path, query) = match uri.split_once('?') {
        Some((p, q)) => (p, q),
        None => (uri, ""),
    };
    RequestHead {
        method: method.to_string(),
        uri: uri.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        version: (1, 1),
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        framing: BodyFraming::Length(0),
        expect_continue: false,
    }
}

/// The listener address test requests come in on.
pub(crate) fn listen_addr() -> crate::listeners::ListenAddr {
    crate::listeners::ListenAddr::Tcp("127.0.0.1:8000".parse().unwrap())
}

pub(crate) fn tcp_peer(addr: &str) -> PeerAddr {
    PeerAddr::Tcp(addr.parse::<SocketAddr>().expect("socket address"))
}

/// Run one request through `app` and return what it sent.
pub(crate) fn call(app: &mut dyn App, head: &RequestHead, body: &[u8]) -> RecordingSink {
    try_call(app, head, body).expect("app call")
}

pub(crate) fn try_call(
    app: &mut dyn App,
    head: &RequestHead,
    mut body: &[u8],
) -> io::Result<RecordingSink> {
    let peer = tcp_peer("127.0.0.1:50000");
    let mut sink = RecordingSink::default();
    let req = Request {
        head,
        peer: &peer,
        server: &crate::app::testing::listen_addr(),
        scheme: "http",
        tls: None,
        proxied: None,
        body: &mut body,
    };
    app.call(req, &mut sink)?;
    Ok(sink)
}
