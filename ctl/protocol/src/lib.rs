//! The control-socket wire protocol, shared by gunicornd's master and
//! `gunicornctl`: the one definition of what travels over the socket, plus
//! the other things both sides must agree on ([`paths`]: where the socket is
//! by default; [`exit`]: the exit statuses of a worker that cannot start).
//! It depends on serde and serde_json only, so a client builds without the
//! server.
//!
//! It is gunicorn's (`gunicorn/ctl/protocol.py`, gunicorn ≥ 25.1) byte for
//! byte, so gunicorn's `gunicornc` works against gunicornd unchanged and
//! `gunicornctl` works against Python gunicorn.
//!
//! # Frames
//!
//! Every message is a 4-byte big-endian payload length followed by that many
//! bytes of UTF-8 JSON. A connection carries any number of request/reply
//! pairs, one after the other. Payloads above [`MAX_FRAME`] (1 MiB; gunicorn
//! allows 16 MiB, but no request or reply comes near either) are refused:
//! the receiver answers with an error reply and closes, because it cannot
//! skip the payload without reading it all. A frame whose length is fine but
//! whose JSON is invalid or has the wrong shape gets an error reply and the
//! connection stays usable.
//!
//! ```text
//! request  {"id": 1, "command": "worker add 2", "args": []}
//! reply    {"id": 1, "status": "ok", "data": {"added": 2, "previous": 3, "total": 5}}
//! reply    {"id": 1, "status": "error", "error": "unknown command 'x'; try 'help'"}
//! ```
//!
//! The command string is split like a POSIX shell would (quotes, escapes:
//! [`split_words`]) and the `args` (strings or integers) are appended to the
//! words, so `{"command": "worker add", "args": [2]}` and
//! `{"command": "worker add 2"}` mean the same; gunicornc sends the latter. `id` is echoed in the reply
//! (missing means 0, as in gunicorn). [`ControlCommand::parse`] holds the
//! grammar; the `help` command lists it ([`HelpReply::gunicornd`]).
//!
//! # Replies
//!
//! The `data` of an `ok` reply has gunicorn's field names for every command
//! gunicorn has (`show workers` → [`WorkersReply`], `show stats` →
//! [`StatsReply`], ...). gunicornd adds fields gunicorn lacks (worker
//! generation, requests served, RSS, ...); they are optional when decoding so
//! that the same types read Python gunicorn's replies, where they are absent.
//!
//! # Events
//!
//! After the `events` command is acknowledged (an `ok` reply whose data is
//! [`EventsReply`]), the master sends one frame per event on that connection
//! until the client closes it; the connection accepts no further requests.
//! An event frame reuses the reply envelope with `"status": "event"` and the
//! request's id, and its `data` is an [`Event`]: a `time` (seconds since the
//! Unix epoch, as a float) plus an `event` name and that event's fields:
//!
//! ```text
//! {"id": 7, "status": "event", "data": {"time": 1767225600.25, "event": "worker_booted", "pid": 4242, "generation": 2}}
//! {"id": 7, "status": "event", "data": {"time": 1767225601.5, "event": "worker_exited", "pid": 4242, "generation": 2,
//!                                         "reason": "killed by SIGKILL (worker timeout)", "signal": 9}}
//! {"id": 7, "status": "event", "data": {"time": 1767225602.0, "event": "scale_changed", "previous": 2, "target": 4}}
//! ```
//!
//! [`EventKind`] lists every event and its fields. Clients should ignore
//! (or print raw) events they do not know, so that new kinds can be added.

mod command;
mod event;
pub mod exit;
mod frame;
mod message;
pub mod paths;
mod reply;
mod words;

pub use command::{ControlCommand, ScaleTarget, ShowTarget, ShutdownMode, UpgradeMode};
pub use event::{Event, EventKind, RetireReason};
pub use frame::{
    encode_frame, read_frame, write_frame, FrameDecoder, ProtocolError, LENGTH_PREFIX, MAX_FRAME,
};
pub use message::{Arg, Request, Response};
pub use reply::{
    ArbiterInfo, BinaryInfo, ConfigReply, DirtyReply, EventsReply, HelpReply, ListenerInfo,
    ListenersReply, PingReply, ReloadReply, ScaleReply, ShowAllReply, ShutdownReply, StatsReply,
    StatusReply, StopWorkersReply, UpgradeInfo, UpgradeReply, VersionReply, WorkerAddReply,
    WorkerInfo, WorkerKillReply, WorkerRemoveReply, WorkersReply, PROTOCOL_VERSION,
};
pub use words::split_words;
