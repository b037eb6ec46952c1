//! The control protocol spoken directly, frame by frame: for what
//! gunicornctl cannot send (bad frames, idle clients), for checking reply
//! shapes exactly, and for the harness's own "is the pool booted" question.

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::protocol::{read_frame, write_frame, ProtocolError, Request, Response};

/// How long a control-socket read may wait for the master.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// One control connection.
pub struct Conn {
    pub stream: UnixStream,
    next_id: u64,
}

impl Conn {
    #[track_caller]
    pub fn open(path: &Path) -> Conn {
        let stream = match UnixStream::connect(path) {
            Ok(s) => s,
            Err(e) => panic!("cannot connect to {}: {e}", path.display()),
        };
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        Conn { stream, next_id: 1 }
    }

    /// Writes bytes as they are (a frame or not).
    #[track_caller]
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        if let Err(e) = self.stream.write_all(bytes) {
            panic!("cannot send {} bytes: {e}", bytes.len());
        }
    }

    /// A length prefix and `payload`.
    #[track_caller]
    pub fn send_payload(&mut self, payload: &[u8]) {
        let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(payload);
        self.send_bytes(&frame);
    }

    pub fn read(&mut self) -> Result<Response, ProtocolError> {
        read_frame(&mut self.stream)
    }

    /// Sends `command` with a fresh id and returns the reply, checking that
    /// the id is echoed.
    #[track_caller]
    pub fn request(&mut self, command: &str) -> Response {
        let id = self.next_id;
        self.next_id += 1;
        if let Err(e) = write_frame(&mut self.stream, &Request::new(id, command)) {
            panic!("cannot send '{command}': {e}");
        }
        let reply = match self.read() {
            Ok(reply) => reply,
            Err(e) => panic!("no reply to '{command}': {e}"),
        };
        assert_eq!(reply.id(), id, "reply to '{command}' has the wrong id");
        reply
    }

    /// The data of an `ok` reply to `command`, decoded.
    #[track_caller]
    pub fn ok<T: DeserializeOwned>(&mut self, command: &str) -> T {
        match self.request(command) {
            Response::Ok { data, .. } => match serde_json::from_value(data.clone()) {
                Ok(v) => v,
                Err(e) => panic!("reply to '{command}' has an unexpected shape ({e}): {data}"),
            },
            other => panic!("'{command}' was refused: {other:?}"),
        }
    }

    /// The message of an `error` reply to `command`.
    #[track_caller]
    pub fn error(&mut self, command: &str) -> String {
        match self.request(command) {
            Response::Error { error, .. } => error,
            other => panic!("'{command}' should have been refused, got {other:?}"),
        }
    }
}

/// The pids `show workers` reports, if every one is booted and none is
/// retiring; `None` otherwise or when the socket does not answer (the
/// harness polls this, so nothing here panics).
pub fn booted_workers(path: &Path) -> Option<BTreeSet<i32>> {
    let mut stream = UnixStream::connect(path).ok()?;
    stream.set_read_timeout(Some(READ_TIMEOUT)).ok()?;
    write_frame(&mut stream, &Request::new(1, "show workers")).ok()?;
    let Response::Ok { data, .. } = read_frame(&mut stream).ok()? else {
        return None;
    };
    let workers = data.get("workers")?.as_array()?;
    let mut pids = BTreeSet::new();
    for w in workers {
        let serving = w.get("booted") == Some(&Value::Bool(true))
            && w.get("retiring") != Some(&Value::Bool(true));
        if !serving {
            return None;
        }
        pids.insert(i32::try_from(w.get("pid")?.as_i64()?).ok()?);
    }
    Some(pids)
}
