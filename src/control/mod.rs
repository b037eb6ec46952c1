//! The control socket: how `gunicornctl` (and gunicorn's own `gunicornc`)
//! talk to a running master.
//!
//! - [`protocol`]: the wire format (length-prefixed JSON frames), requests,
//!   replies, the command grammar and the event stream. It is shared with the
//!   `gunicornctl` client so that there is exactly one definition of it.
//! - [`paths`]: where the socket lives by default, and the private directory
//!   it is created in.

pub mod paths;
pub mod protocol;
pub mod server;
