//! Length-prefixed framing: blocking helpers for clients and an incremental
//! decoder for the master's non-blocking connections.

use std::fmt;
use std::io::{self, Read, Write};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::message::{salvage_id, Request, Response};

/// Size of the big-endian payload length that starts every frame.
pub const LENGTH_PREFIX: usize = 4;

/// Largest payload accepted or sent (1 MiB).
pub const MAX_FRAME: usize = 1 << 20;

/// Why a frame could not be read, written or understood.
#[derive(Debug)]
pub enum ProtocolError {
    Io(io::Error),
    /// The peer closed the connection between frames.
    Closed,
    /// The peer closed the connection in the middle of a frame.
    Truncated,
    /// The length prefix announced more than [`MAX_FRAME`] bytes. The
    /// payload cannot be skipped without reading it, so the connection is
    /// unusable after this.
    TooLarge {
        len: u64,
    },
    /// The frame was complete but its JSON was invalid or had the wrong
    /// shape. The framing is intact: the connection can go on. `id` is the
    /// request id when it could still be read, for the error reply.
    Malformed {
        id: Option<u64>,
        reason: String,
    },
}

impl ProtocolError {
    /// Whether the connection must be closed after this error.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, ProtocolError::Malformed { .. })
    }

    /// The error reply the master sends for bad input, if any (there is
    /// nobody to answer when the connection itself failed).
    pub fn error_reply(&self) -> Option<Response> {
        match self {
            ProtocolError::TooLarge { .. } => Some(Response::error(0, self.to_string())),
            ProtocolError::Malformed { id, .. } => {
                Some(Response::error(id.unwrap_or(0), self.to_string()))
            }
            ProtocolError::Io(_) | ProtocolError::Closed | ProtocolError::Truncated => None,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Io(e) => write!(f, "{e}"),
            ProtocolError::Closed => f.write_str("connection closed"),
            ProtocolError::Truncated => f.write_str("connection closed in the middle of a frame"),
            ProtocolError::TooLarge { len } => {
                write!(
                    f,
                    "frame of {len} bytes exceeds the limit of {MAX_FRAME} bytes"
                )
            }
            ProtocolError::Malformed { reason, .. } => f.write_str(reason),
        }
    }
}

impl std::error::Error for ProtocolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ProtocolError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for ProtocolError {
    fn from(e: io::Error) -> ProtocolError {
        ProtocolError::Io(e)
    }
}

/// Serialises `msg` and prefixes it with its length.
pub fn encode_frame<T: Serialize>(msg: &T) -> Result<Vec<u8>, ProtocolError> {
    let payload =
        serde_json::to_vec(msg).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    if payload.len() > MAX_FRAME {
        return Err(ProtocolError::TooLarge {
            len: payload.len() as u64,
        });
    }
    // Cannot truncate: MAX_FRAME fits in a u32.
    let len = payload.len() as u32;
    let mut frame = Vec::with_capacity(LENGTH_PREFIX + payload.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&payload);
    Ok(frame)
}

/// Writes one frame (blocking).
pub fn write_frame<W: Write, T: Serialize>(w: &mut W, msg: &T) -> Result<(), ProtocolError> {
    w.write_all(&encode_frame(msg)?)?;
    w.flush()?;
    Ok(())
}

/// Reads one frame's payload (blocking).
fn read_payload<R: Read>(r: &mut R) -> Result<Vec<u8>, ProtocolError> {
    let mut prefix = [0u8; LENGTH_PREFIX];
    match read_full(r, &mut prefix)? {
        0 => return Err(ProtocolError::Closed),
        LENGTH_PREFIX => {}
        _ => return Err(ProtocolError::Truncated),
    }
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_FRAME {
        return Err(ProtocolError::TooLarge { len: len as u64 });
    }
    let mut payload = vec![0u8; len];
    if read_full(r, &mut payload)? < len {
        return Err(ProtocolError::Truncated);
    }
    Ok(payload)
}

/// Reads and decodes one frame (blocking).
pub fn read_frame<R: Read, T: DeserializeOwned>(r: &mut R) -> Result<T, ProtocolError> {
    decode_payload(&read_payload(r)?)
}

/// Decodes a request payload (see [`FrameDecoder::next_request`]).
fn decode_request(payload: &[u8]) -> Result<Request, ProtocolError> {
    let value: Value = serde_json::from_slice(payload).map_err(|e| ProtocolError::Malformed {
        id: None,
        reason: format!("invalid JSON: {e}"),
    })?;
    let id = salvage_id(&value);
    Request::try_from(value).map_err(|reason| ProtocolError::Malformed {
        id,
        reason: format!("invalid request: {reason}"),
    })
}

fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, ProtocolError> {
    serde_json::from_slice(payload).map_err(|e| {
        let reason = if e.is_data() {
            format!("unexpected message: {e}")
        } else {
            format!("invalid JSON: {e}")
        };
        ProtocolError::Malformed { id: None, reason }
    })
}

/// Fills `buf` unless the reader hits end of file first; returns how much
/// was read. (`read_exact` cannot tell "closed between frames" from
/// "closed mid-frame".)
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Incremental decoder for non-blocking connections: feed whatever bytes
/// arrived, then pop complete frames.
///
/// Once a length prefix above [`MAX_FRAME`] is seen the decoder is poisoned:
/// every later call returns [`ProtocolError::TooLarge`] and further input is
/// dropped, so a hostile peer cannot make it buffer more than one frame.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    too_large: Option<u64>,
}

impl FrameDecoder {
    pub fn new() -> FrameDecoder {
        FrameDecoder::default()
    }

    /// Appends received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.too_large.is_none() {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// Does one `read` from `r` into the buffer and returns its result:
    /// `Ok(0)` at end of file, `WouldBlock` when a non-blocking source is dry.
    pub fn read_from<R: Read>(&mut self, r: &mut R) -> io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = r.read(&mut chunk)?;
        self.feed(&chunk[..n]);
        Ok(n)
    }

    /// Bytes received but not yet popped. Non-zero at end of file means the
    /// peer closed mid-frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Pops the next complete payload, `Ok(None)` if more bytes are needed.
    pub fn next_payload(&mut self) -> Result<Option<Vec<u8>>, ProtocolError> {
        if let Some(len) = self.too_large {
            return Err(ProtocolError::TooLarge { len });
        }
        let Some(prefix) = self.buf.first_chunk::<LENGTH_PREFIX>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*prefix) as usize;
        if len > MAX_FRAME {
            self.too_large = Some(len as u64);
            self.buf = Vec::new();
            return Err(ProtocolError::TooLarge { len: len as u64 });
        }
        if self.buf.len() < LENGTH_PREFIX + len {
            return Ok(None);
        }
        let payload = self.buf[LENGTH_PREFIX..LENGTH_PREFIX + len].to_vec();
        self.buf.drain(..LENGTH_PREFIX + len);
        Ok(Some(payload))
    }

    /// Pops and decodes the next request. Errors name the problem and carry
    /// the request id when it is readable, so the master can answer and keep
    /// the connection.
    pub fn next_request(&mut self) -> Result<Option<Request>, ProtocolError> {
        self.next_payload()?.map(|p| decode_request(&p)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Arg, Event, EventKind};
    use serde_json::json;

    fn raw_frame(payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn encode_is_gunicorns_framing() {
        let frame = encode_frame(&Request::new(1, "show workers")).unwrap();
        let payload = br#"{"id":1,"command":"show workers","args":[]}"#;
        assert_eq!(frame, raw_frame(payload));
    }

    #[test]
    fn blocking_round_trip_of_several_messages() {
        let mut wire = Vec::new();
        let req = Request {
            id: 9,
            command: "worker add".into(),
            args: vec![Arg::Int(2)],
        };
        write_frame(&mut wire, &req).unwrap();
        let replies = [
            Response::ok(9, &json!({"added": 2})),
            Response::error(10, "nope"),
            Response::event(
                11,
                Event {
                    time: 1.5,
                    kind: EventKind::ReloadStarted { generation: 2 },
                },
            ),
        ];
        for r in &replies {
            write_frame(&mut wire, r).unwrap();
        }
        let mut cursor = io::Cursor::new(wire);
        assert_eq!(read_frame::<_, Request>(&mut cursor).unwrap(), req);
        for r in &replies {
            assert_eq!(&read_frame::<_, Response>(&mut cursor).unwrap(), r);
        }
        assert!(matches!(
            read_frame::<_, Response>(&mut cursor),
            Err(ProtocolError::Closed)
        ));
    }

    #[test]
    fn blocking_read_reports_truncation_and_oversize() {
        let mut cursor = io::Cursor::new(vec![0, 0]);
        assert!(matches!(
            read_payload(&mut cursor),
            Err(ProtocolError::Truncated)
        ));
        let mut cursor = io::Cursor::new(raw_frame(b"{\"a\":1}")[..6].to_vec());
        assert!(matches!(
            read_payload(&mut cursor),
            Err(ProtocolError::Truncated)
        ));
        let mut cursor = io::Cursor::new(((MAX_FRAME + 1) as u32).to_be_bytes().to_vec());
        let err = read_payload(&mut cursor).unwrap_err();
        assert!(matches!(err, ProtocolError::TooLarge { len } if len == MAX_FRAME as u64 + 1));
        assert!(err.is_fatal());
    }

    #[test]
    fn encode_refuses_oversize_payloads() {
        let big = "x".repeat(MAX_FRAME);
        assert!(matches!(
            encode_frame(&big),
            Err(ProtocolError::TooLarge { .. })
        ));
    }

    #[test]
    fn decoder_reassembles_frames_fed_one_byte_at_a_time() {
        let mut wire = encode_frame(&Request::new(1, "show stats")).unwrap();
        wire.extend(encode_frame(&Request::new(2, "reload")).unwrap());
        let mut dec = FrameDecoder::new();
        let mut got = Vec::new();
        for byte in &wire {
            dec.feed(std::slice::from_ref(byte));
            while let Some(req) = dec.next_request().unwrap() {
                got.push(req);
            }
        }
        assert_eq!(
            got,
            vec![Request::new(1, "show stats"), Request::new(2, "reload")]
        );
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn decoder_pops_several_frames_from_one_read() {
        let mut wire = encode_frame(&Request::new(1, "a")).unwrap();
        wire.extend(encode_frame(&Request::new(2, "b")).unwrap());
        wire.extend(&encode_frame(&Request::new(3, "c")).unwrap()[..5]);
        let mut dec = FrameDecoder::new();
        dec.read_from(&mut io::Cursor::new(wire)).unwrap();
        assert_eq!(dec.next_request().unwrap().unwrap().id, 1);
        assert_eq!(dec.next_request().unwrap().unwrap().id, 2);
        assert!(dec.next_request().unwrap().is_none());
        assert_eq!(dec.buffered(), 5);
    }

    #[test]
    fn decoder_keeps_going_after_bad_json_or_bad_shape() {
        let mut dec = FrameDecoder::new();
        dec.feed(&raw_frame(b"{not json"));
        dec.feed(&raw_frame(br#"{"id": 5, "command": ["x"]}"#));
        dec.feed(&raw_frame(b""));
        dec.feed(&encode_frame(&Request::new(6, "ping")).unwrap());

        let err = dec.next_request().unwrap_err();
        assert!(!err.is_fatal());
        assert!(err.to_string().starts_with("invalid JSON: "), "{err}");
        assert_eq!(err.error_reply().unwrap().id(), 0);

        let err = dec.next_request().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid request: 'command' must be a string, got an array"
        );
        assert_eq!(
            err.error_reply().unwrap(),
            Response::error(5, err.to_string())
        );

        assert!(dec
            .next_request()
            .unwrap_err()
            .to_string()
            .starts_with("invalid JSON: "));
        assert_eq!(dec.next_request().unwrap(), Some(Request::new(6, "ping")));
    }

    #[test]
    fn decoder_refuses_oversize_prefix_before_the_payload_arrives() {
        let mut dec = FrameDecoder::new();
        dec.feed(&((MAX_FRAME + 1) as u32).to_be_bytes());
        let err = dec.next_request().unwrap_err();
        assert!(err.is_fatal());
        let reply = err.error_reply().unwrap();
        assert_eq!(
            serde_json::to_value(&reply).unwrap(),
            json!({"id": 0, "status": "error", "error": "frame of 1048577 bytes exceeds the limit of 1048576 bytes"})
        );
        // Poisoned: nothing more is buffered or decoded.
        dec.feed(&encode_frame(&Request::new(1, "ping")).unwrap());
        assert_eq!(dec.buffered(), 0);
        assert!(matches!(
            dec.next_request(),
            Err(ProtocolError::TooLarge { .. })
        ));
    }

    #[test]
    fn decoder_accepts_a_frame_of_exactly_max_size() {
        let mut payload = br#"{"command":"ping","pad":""#.to_vec();
        payload.resize(MAX_FRAME - 2, b'x');
        payload.extend_from_slice(b"\"}");
        let mut dec = FrameDecoder::new();
        dec.feed(&raw_frame(&payload));
        assert_eq!(dec.next_request().unwrap(), Some(Request::new(0, "ping")));
    }
}
