//! A connection to the control socket: request/reply, and the event stream.

use std::io;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use gunicornd_protocol::{
    read_frame, write_frame, Arg, ControlCommand, Event, EventsReply, FrameDecoder, ProtocolError,
    Request, Response, VersionReply,
};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::CtlError;
use crate::trust;

/// How long a single reply may take. The master answers from its event
/// loop, so anything slower means it is stuck (gunicornc waits 30 s too).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long to keep trying to reconnect after a connection that worked broke.
const RECONNECT_WINDOW: Duration = Duration::from_secs(5);
const RECONNECT_PAUSE: Duration = Duration::from_millis(50);

/// Where an exchange broke: before the request was delivered, or after.
enum Failure {
    NotSent(ProtocolError),
    NoReply(ProtocolError),
}

impl Failure {
    fn into_inner(self) -> ProtocolError {
        match self {
            Failure::NotSent(e) | Failure::NoReply(e) => e,
        }
    }
}

fn is_read_only(request: &Request) -> bool {
    ControlCommand::parse(request).is_ok_and(|c| c.is_read_only())
}

/// Which server is on the other end; gunicornd answers `version`, Python
/// gunicorn does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flavor {
    Gunicornd(VersionReply),
    Gunicorn,
}

impl Flavor {
    pub fn describe(&self) -> String {
        match self {
            Flavor::Gunicornd(v) => format!("{} {}", v.name, v.version),
            Flavor::Gunicorn => "gunicorn".to_string(),
        }
    }
}

/// One request/reply connection.
pub struct Client {
    path: PathBuf,
    stream: UnixStream,
    next_id: u64,
    flavor: Option<Flavor>,
    reply_timeout: Duration,
}

impl Client {
    pub fn connect(path: &Path) -> Result<Client, CtlError> {
        Client::connect_within(path, REPLY_TIMEOUT)
    }

    /// [`Client::connect`], waiting at most `reply_timeout` for each reply:
    /// for a server that may be busy starting, where not answering soon is
    /// an answer too.
    pub fn connect_within(path: &Path, reply_timeout: Duration) -> Result<Client, CtlError> {
        let stream = connect(path, reply_timeout)?;
        Ok(Client {
            path: path.to_path_buf(),
            stream,
            next_id: 1,
            flavor: None,
            reply_timeout,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pid of the process that listens on the other end (the master),
    /// as the kernel reports it in this process's pid namespace: `None` when
    /// that process is not visible from here (another pid namespace).
    pub fn peer_pid(&self) -> Option<i32> {
        let creds = getsockopt(&self.stream, PeerCredentials).ok()?;
        Some(creds.pid()).filter(|&pid| pid > 0)
    }

    /// Sends `command` (plus extra args) and returns the reply's data. An
    /// error reply becomes [`CtlError::Refused`].
    ///
    /// Python gunicorn closes every control connection whenever its master
    /// forks a worker (it stops its control thread around `fork()`), so a
    /// connection can die between two requests. The request is then sent
    /// again on a new connection when that is safe: when it was never
    /// delivered (the write failed), or when it only reads state.
    pub fn request(&mut self, command: &str, args: Vec<Arg>) -> Result<Value, CtlError> {
        let id = self.next_id;
        self.next_id += 1;
        let request = Request {
            id,
            command: command.to_string(),
            args,
        };
        let reply = match self.exchange(&request) {
            Ok(reply) => reply,
            Err(Failure::NotSent(_)) => {
                self.reconnect()?;
                self.exchange(&request)
                    .map_err(|f| self.broken(f.into_inner()))?
            }
            Err(Failure::NoReply(_)) if is_read_only(&request) => {
                self.reconnect()?;
                self.exchange(&request)
                    .map_err(|f| self.broken(f.into_inner()))?
            }
            Err(Failure::NoReply(e)) => {
                return Err(CtlError::Failed(format!(
                    "the connection to {} broke before the reply to '{command}' ({e}); \
                     it may or may not have been carried out",
                    self.path.display()
                )))
            }
        };
        match reply {
            Response::Ok { id: got, data } if got == id => Ok(data),
            Response::Error { id: got, error } if got == id || got == 0 => Err(CtlError::Refused {
                command: command.to_string(),
                message: error,
            }),
            other => Err(CtlError::Failed(format!(
                "unexpected reply to '{command}' (request id {id}): {}",
                serde_json::to_string(&other).unwrap_or_default()
            ))),
        }
    }

    fn exchange(&mut self, request: &Request) -> Result<Response, Failure> {
        write_frame(&mut self.stream, request).map_err(Failure::NotSent)?;
        read_frame(&mut self.stream).map_err(Failure::NoReply)
    }

    /// Opens a new connection, retrying for a while: gunicorn removes and
    /// recreates its socket around each fork.
    fn reconnect(&mut self) -> Result<(), CtlError> {
        let give_up = Instant::now() + RECONNECT_WINDOW;
        loop {
            match connect(&self.path, self.reply_timeout) {
                Ok(stream) => {
                    self.stream = stream;
                    return Ok(());
                }
                Err(CtlError::Unreachable { source, .. }) if Instant::now() >= give_up => {
                    return Err(CtlError::Failed(format!(
                        "lost the connection to {} and could not reconnect: {source}",
                        self.path.display()
                    )))
                }
                // Another socket took its place: never retried.
                Err(e @ CtlError::Untrusted { .. }) => return Err(e),
                Err(_) => thread::sleep(RECONNECT_PAUSE),
            }
        }
    }

    fn broken(&self, source: ProtocolError) -> CtlError {
        CtlError::Connection {
            path: self.path.clone(),
            source,
        }
    }

    /// Sends a parsed command. When a gunicornd-only command is refused as
    /// unknown, says that the daemon is probably Python gunicorn.
    pub fn call(&mut self, command: &ControlCommand) -> Result<Value, CtlError> {
        match self.request(&command.to_string(), Vec::new()) {
            Err(CtlError::Refused {
                command: text,
                message,
            }) if !command.is_gunicorn_command() && message.contains("Unknown command") => {
                Err(CtlError::Refused {
                    command: text,
                    message: format!(
                        "{message} (this looks like Python gunicorn, which has no '{}' command)",
                        command.name()
                    ),
                })
            }
            other => other,
        }
    }

    /// [`Client::call`] and decode the data into a reply type.
    pub fn call_as<T: DeserializeOwned>(
        &mut self,
        command: &ControlCommand,
    ) -> Result<T, CtlError> {
        let data = self.call(command)?;
        serde_json::from_value(data)
            .map_err(|e| CtlError::Failed(format!("unexpected reply to '{command}': {e}")))
    }

    /// Asks `version` once and remembers the answer.
    pub fn flavor(&mut self) -> Result<Flavor, CtlError> {
        if let Some(flavor) = &self.flavor {
            return Ok(flavor.clone());
        }
        let flavor = match self.request(&ControlCommand::Version.to_string(), Vec::new()) {
            Ok(data) => Flavor::Gunicornd(
                serde_json::from_value(data)
                    .map_err(|e| CtlError::Failed(format!("unexpected reply to 'version': {e}")))?,
            ),
            Err(CtlError::Refused { .. }) => Flavor::Gunicorn,
            Err(e) => return Err(e),
        };
        self.flavor = Some(flavor.clone());
        Ok(flavor)
    }
}

/// Connects to `path` once [`trust::check_socket`] says it may (nothing is
/// sent to a socket it refuses).
fn connect(path: &Path, reply_timeout: Duration) -> Result<UnixStream, CtlError> {
    trust::check_socket(path)?;
    let stream = UnixStream::connect(path).map_err(|e| CtlError::unreachable(path, e))?;
    stream
        .set_read_timeout(Some(reply_timeout))
        .map_err(|e| CtlError::unreachable(path, e))?;
    stream
        .set_write_timeout(Some(reply_timeout))
        .map_err(|e| CtlError::unreachable(path, e))?;
    Ok(stream)
}

/// What arrives on an event stream.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamItem {
    Event(Event),
    /// A frame this client does not know (a newer server's event): its
    /// `data`, or the whole frame if it has none.
    Unknown(Value),
}

/// A connection that sent `events` and now only receives event frames.
pub struct EventStream {
    path: PathBuf,
    stream: UnixStream,
    decoder: FrameDecoder,
}

impl EventStream {
    /// Connects and subscribes; returns once the daemon acknowledged.
    pub fn subscribe(path: &Path) -> Result<EventStream, CtlError> {
        EventStream::subscribe_within(path, REPLY_TIMEOUT)
    }

    /// [`EventStream::subscribe`], waiting at most `reply_timeout` for the
    /// acknowledgement.
    pub fn subscribe_within(path: &Path, reply_timeout: Duration) -> Result<EventStream, CtlError> {
        let mut client = Client::connect_within(path, reply_timeout)?;
        let _: EventsReply = client.call_as(&ControlCommand::Events)?;
        Ok(EventStream {
            path: client.path,
            stream: client.stream,
            decoder: FrameDecoder::new(),
        })
    }

    /// The next item, waiting at most `timeout` (`None` = forever).
    /// `Ok(None)` when the time ran out; [`ProtocolError::Closed`] (inside
    /// [`CtlError::Connection`]) when the daemon closed the stream.
    pub fn next_within(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Option<StreamItem>, CtlError> {
        loop {
            if let Some(payload) = self.decoder.next_payload().map_err(|e| self.broken(e))? {
                return Ok(Some(decode_item(&payload)));
            }
            // A zero timeout would mean "block forever" to the socket.
            let timeout = timeout.map(|t| t.max(Duration::from_millis(1)));
            self.stream
                .set_read_timeout(timeout)
                .map_err(|e| self.broken(e.into()))?;
            match self.decoder.read_from(&mut self.stream) {
                Ok(0) if self.decoder.buffered() > 0 => {
                    return Err(self.broken(ProtocolError::Truncated))
                }
                Ok(0) => return Err(self.broken(ProtocolError::Closed)),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.broken(e.into())),
            }
        }
    }

    fn broken(&self, source: ProtocolError) -> CtlError {
        CtlError::Connection {
            path: self.path.clone(),
            source,
        }
    }
}

/// Whether an error means the daemon ended the event stream normally.
pub fn is_stream_end(e: &CtlError) -> bool {
    matches!(
        e,
        CtlError::Connection {
            source: ProtocolError::Closed,
            ..
        }
    )
}

fn decode_item(payload: &[u8]) -> StreamItem {
    let frame: Value = match serde_json::from_slice(payload) {
        Ok(v) => v,
        Err(_) => {
            return StreamItem::Unknown(Value::String(
                String::from_utf8_lossy(payload).into_owned(),
            ))
        }
    };
    if let Ok(Response::Event { data, .. }) = serde_json::from_value::<Response>(frame.clone()) {
        return StreamItem::Event(data);
    }
    StreamItem::Unknown(frame.get("data").cloned().unwrap_or(frame))
}
