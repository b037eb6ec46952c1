//! What can go wrong, and which exit status it maps to.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use gunicornd_protocol::ProtocolError;

/// Exit status: the command did what was asked.
pub const EXIT_OK: u8 = 0;
/// Exit status: the daemon refused the command, it failed, or `--wait`
/// timed out.
pub const EXIT_FAILED: u8 = 1;
/// Exit status: bad command line (clap uses the same code).
pub const EXIT_USAGE: u8 = 2;
/// Exit status: the daemon could not be reached at all (or its socket is
/// not one gunicornctl trusts).
pub const EXIT_UNREACHABLE: u8 = 3;

#[derive(Debug)]
pub enum CtlError {
    /// Connecting to the socket failed.
    Unreachable { path: PathBuf, source: io::Error },
    /// The socket, or where it lives, belongs to someone gunicornctl does
    /// not trust (`trust.rs`): nothing was sent.
    Untrusted { path: PathBuf, reason: String },
    /// Connected, but the conversation broke off or made no sense.
    Connection {
        path: PathBuf,
        source: ProtocolError,
    },
    /// The daemon answered the command with an error reply.
    Refused { command: String, message: String },
    /// The command was accepted but did not achieve its goal (worker not
    /// found, reload failed, `--wait` timed out, ...).
    Failed(String),
    /// Writing our own output failed (a closed pipe is not reported).
    Output(io::Error),
}

impl CtlError {
    pub fn unreachable(path: &Path, source: io::Error) -> CtlError {
        CtlError::Unreachable {
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::Unreachable { .. } | CtlError::Untrusted { .. } => EXIT_UNREACHABLE,
            CtlError::Connection { .. }
            | CtlError::Refused { .. }
            | CtlError::Failed(_)
            | CtlError::Output(_) => EXIT_FAILED,
        }
    }

    /// The reader went away (`gunicornctl events | head`): stop quietly.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, CtlError::Output(e) if e.kind() == io::ErrorKind::BrokenPipe)
    }
}

impl From<io::Error> for CtlError {
    fn from(e: io::Error) -> CtlError {
        CtlError::Output(e)
    }
}

/// Plain words for the usual reasons a connect fails.
fn why_unreachable(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such socket".to_string(),
        io::ErrorKind::ConnectionRefused => {
            "connection refused (stale socket: nothing is listening)".to_string()
        }
        io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    }
}

impl fmt::Display for CtlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CtlError::Unreachable { path, source } => write!(
                f,
                "cannot reach gunicornd at {}: {} (is it running? try -s PATH or --pid FILE)",
                path.display(),
                why_unreachable(source)
            ),
            CtlError::Untrusted { path, reason } => {
                write!(
                    f,
                    "refusing to use the control socket {}: {reason}",
                    path.display()
                )
            }
            CtlError::Connection {
                path,
                source: ProtocolError::Io(e),
            } if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
            {
                write!(f, "no reply from {} in time", path.display())
            }
            CtlError::Connection { path, source } => {
                write!(f, "connection to {} failed: {source}", path.display())
            }
            CtlError::Refused { command, message } => write!(f, "'{command}' failed: {message}"),
            CtlError::Failed(message) => f.write_str(message),
            CtlError::Output(e) => write!(f, "cannot write output: {e}"),
        }
    }
}

impl std::error::Error for CtlError {}
