//! One request on one connection (gunicorn's sync worker,
//! `gunicorn/workers/sync.py`), once the worker's event loop
//! (`super::clients`) has the request head, and a small body, in hand.
//! Both worker kinds serve through [`serve`]: the sync worker closes after
//! each response, the gthread worker may keep the connection
//! ([`Arrived::keep_alive`], [`Served::Kept`]).

use std::io;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant, SystemTime};

use super::stream::Stream;
use crate::app::{App, Request};
use crate::http::{self, HeadError, HttpError, Limits, PeerAddr, RequestHead, ResponseWriter};
use crate::listeners::ListenAddr;

/// What the worker serves with.
pub struct Options<'a> {
    pub limits: &'a Limits,
    /// Content-Length bodies up to this size are read before the app runs.
    pub body_buffer: u64,
    /// `--secure-scheme-headers` (for trusted front ends).
    pub secure_scheme_headers: &'a [(String, String)],
}

/// Where a connection stands after [`serve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Served {
    /// The response is out. `linger`: the client may still be sending
    /// (a body the app did not read, a pipelined request, a refused head,
    /// a client that asked to keep the connection): close it only after a
    /// lingering close, or the reset could destroy the response.
    Done { linger: bool },
    /// The body is small enough to be read first, by the event loop: wait
    /// for `missing` more bytes, then call [`serve`] again with them.
    /// `continue_sent`: `100 Continue` went out for it.
    NeedBody { missing: u64, continue_sent: bool },
    /// The response is out and said `Connection: keep-alive`; the request
    /// was read to its end. `pipelined`: what the client sent after it
    /// (the beginning of its next request, if anything).
    Kept { pipelined: Vec<u8> },
}

/// One connection's request as the event loop hands it over.
pub struct Arrived<'a, 's> {
    pub stream: &'a Stream<'s>,
    /// Everything read from the client so far.
    pub received: &'a [u8],
    /// The client closed its side after `received`.
    pub eof: bool,
    /// `100 Continue` was already sent for this request.
    pub continue_sent: bool,
    pub peer: &'a PeerAddr,
    /// The socket's peer is a trusted front end (`--forwarded-allow-ips`):
    /// its scheme and forwarder headers count.
    pub trusted: bool,
    pub server: &'a ListenAddr,
    /// When the connection was accepted, or its request began (the access
    /// log's times).
    pub started: SystemTime,
    pub clock: Instant,
    /// The worker would keep the connection for another request while
    /// this is true (it reads it when the response head is built; the
    /// client's wishes and the response's framing decide the rest); `None`:
    /// close after the response.
    pub keep_alive: Option<&'a AtomicBool>,
    /// The PROXY header the connection began with.
    pub proxied: Option<&'a crate::http::proxy::ProxyHeader>,
}

/// Parse the request, run the app, write the response.
pub fn serve(arrived: Arrived<'_, '_>, app: &mut dyn App, opts: &Options<'_>) -> Served {
    let Arrived {
        stream,
        received,
        eof,
        continue_sent,
        peer,
        trusted,
        server,
        started,
        clock,
        keep_alive,
        proxied,
    } = arrived;
    let mut conn = http::Connection::with_received(stream, received);
    let head = conn.read_head_trusting(opts.limits, trusted);
    // The head deadline bounded the head only.
    stream.set_deadline(None);
    let mut head = match head {
        Ok(Some(head)) => head,
        Ok(None) => {
            tracing::debug!("Closing connection.");
            return Served::Done { linger: false };
        }
        Err(HeadError::Io(e)) if e.kind() == io::ErrorKind::TimedOut => {
            // The rest of a long head did not come by the head deadline.
            let err = HttpError::new(408, "The request did not arrive in time.");
            tracing::debug!("Request timed out from ip={}: {}", peer.host(), err.message);
            let _ = http::write_error(&mut &*stream, &err);
            log_access(peer, None, err.status, 0, &[], started, clock.elapsed());
            return Served::Done { linger: true };
        }
        Err(HeadError::Io(e)) => {
            tracing::debug!("Ignored premature client disconnection. {e}");
            return Served::Done { linger: false };
        }
        Err(HeadError::Invalid(err)) => {
            tracing::warn!("Invalid request from ip={}: {}", peer.host(), err.message);
            let _ = http::write_error(&mut &*stream, &err);
            log_access(peer, None, err.status, 0, &[], started, clock.elapsed());
            return Served::Done { linger: true };
        }
    };
    let scheme = match http::forwarded::scheme(&head, opts.secure_scheme_headers, trusted) {
        Ok(Some(scheme)) => scheme,
        Ok(None) if stream.is_tls() => "https",
        Ok(None) => "http",
        Err(err) => {
            let err = err.for_method(&head.method);
            tracing::warn!("Invalid request from ip={}: {}", peer.host(), err.message);
            let _ = http::write_error(&mut &*stream, &err);
            log_access(
                peer,
                Some(&head),
                err.status,
                0,
                &[],
                started,
                clock.elapsed(),
            );
            return Served::Done { linger: true };
        }
    };
    if let http::BodyFraming::Length(n) = head.framing {
        let have = conn.buffered_len() as u64;
        if have < n && n <= opts.body_buffer && !eof {
            let continue_sent = continue_sent || send_continue(stream, &head);
            return Served::NeedBody {
                missing: n - have,
                continue_sent,
            };
        }
    }
    if continue_sent {
        head.expect_continue = false;
    }
    let mut out = stream;
    let mut resp =
        ResponseWriter::new(&mut out, head.version, head.method == "HEAD").with_sendfile(stream);
    if let Some(offered) = keep_alive.filter(|_| may_send_more(&head)) {
        resp = resp.with_keep_alive(offered);
    }
    let mut body = conn.body(&head);
    let tls = stream.tls_info();
    let req = Request {
        head: &head,
        peer,
        server,
        scheme,
        tls: tls.as_ref(),
        proxied,
        body: &mut body,
    };
    let outcome = app.call(req, &mut resp).and_then(|()| {
        if !resp.started() {
            return Err(io::Error::other(
                "the app returned without starting a response",
            ));
        }
        resp.finish()
    });
    let mut status = resp.status().unwrap_or(500);
    let body_bytes = resp.body_bytes();
    let headers_sent = resp.headers_sent();
    let keeps_alive = resp.keeps_alive();
    let response_headers: Vec<(String, String)> = if crate::log::access_enabled() {
        resp.headers()
            .map(|(n, v)| (n.to_string(), v.into_owned()))
            .collect()
    } else {
        Vec::new()
    };
    drop(resp);
    let mut failed = false;
    if let Err(e) = outcome {
        failed = true;
        match failure_response(&e, &head, peer) {
            Some(err) if !headers_sent => {
                status = err.status;
                let _ = http::write_error(&mut &*stream, &err);
            }
            _ => {}
        }
    }
    let unread_body = !body.is_complete();
    drop(body);
    log_access(
        peer,
        Some(&head),
        status,
        body_bytes,
        &response_headers,
        started,
        clock.elapsed(),
    );
    if keeps_alive && !failed && !unread_body {
        return Served::Kept {
            pipelined: conn.unread().to_vec(),
        };
    }
    let linger = failed || unread_body || conn.buffered_len() > 0 || may_send_more(&head);
    Served::Done { linger }
}

/// `100 Continue` for a client that waits for it before sending the body;
/// true if it went out.
fn send_continue(stream: &Stream<'_>, head: &RequestHead) -> bool {
    use std::io::Write;
    head.expects_continue() && (&mut &*stream).write_all(http::CONTINUE).is_ok()
}

/// Whether the client may send another request on this connection (it did
/// not ask for it to be closed): it gets `Connection: close`, but one
/// that pipelines may have sent more already.
fn may_send_more(head: &RequestHead) -> bool {
    let connection_has = |token: &str| {
        head.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    match head.version {
        (1, 0) => connection_has("keep-alive"),
        _ => !connection_has("close"),
    }
}

/// The patience for a client: `body_timeout`, but at most half the
/// heartbeat timeout, so that a worker waiting on a client is never
/// killed as a hung one.
pub fn patience(body_timeout: u64, heartbeat_timeout: u64) -> Duration {
    let mut secs = Duration::from_secs(body_timeout);
    if heartbeat_timeout > 0 {
        secs = secs.min(Duration::from_millis(
            (heartbeat_timeout * 1000 / 2).max(500),
        ));
    }
    secs
}

/// What to answer when the app (or the body it read) failed, if anything:
/// nothing when the client went away, a 4xx for a malformed body, else 500.
fn failure_response(e: &io::Error, head: &http::RequestHead, peer: &PeerAddr) -> Option<HttpError> {
    use io::ErrorKind::*;
    if let Some(bad_body) = http::http_error(e) {
        tracing::warn!(
            "Invalid request from ip={}: {}",
            peer.host(),
            bad_body.message
        );
        return Some(bad_body.clone());
    }
    if matches!(
        e.kind(),
        BrokenPipe | ConnectionReset | ConnectionAborted | NotConnected | UnexpectedEof
    ) {
        tracing::debug!("Ignored premature client disconnection. {e}");
        return None;
    }
    if matches!(e.kind(), WouldBlock | TimedOut) {
        tracing::debug!("Client timed out: {e}");
        return None;
    }
    tracing::error!("Error handling request {} {}: {e}", head.method, head.uri);
    Some(HttpError::internal_server_error("").for_method(&head.method))
}

fn log_access(
    peer: &PeerAddr,
    head: Option<&http::RequestHead>,
    status: u16,
    body_bytes: u64,
    response_headers: &[(String, String)],
    started: SystemTime,
    duration: Duration,
) {
    crate::log::access(&crate::log::AccessRecord {
        peer,
        head,
        status,
        body_bytes,
        response_headers,
        started,
        duration,
    });
}
