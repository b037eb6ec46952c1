//! The control socket: how `gunicornctl` (and gunicorn's own `gunicornc`)
//! talk to a running master.
//!
//! - [`protocol`]: the wire format (length-prefixed JSON frames), requests,
//!   replies, the command grammar and the event stream. It is the
//!   `gunicornd-protocol` crate (`ctl/protocol/`), which `gunicornctl` uses
//!   too, so that there is exactly one definition of it and the client builds
//!   without the server; re-exported here under its old path.
//! - [`paths`]: where the socket lives by default (part of that crate).
//! - [`private_dir`]: the directory the daemon creates for a socket under
//!   `/tmp`, checked before the socket is bound in it.
//! - [`server`]: the socket itself, serving requests to the arbiter.

pub use gunicornd_protocol as protocol;
pub use gunicornd_protocol::paths;
pub mod private_dir;
pub mod server;

#[cfg(test)]
mod tests {
    use super::protocol::{split_words, VersionReply};

    /// The protocol splits command strings with its own code (it depends on
    /// serde alone); they must split as the shlex crate, which the daemon
    /// uses for `GUNICORN_CMD_ARGS`, does. Every string of up to 5
    /// characters from the ones the rules treat specially, plus a letter
    /// and a non-ASCII one.
    #[test]
    fn commands_split_like_shlex() {
        const ALPHABET: [char; 10] = ['a', ' ', '\t', '\n', '\'', '"', '\\', '#', '$', 'é'];
        let mut texts = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..5 {
            last = last
                .iter()
                .flat_map(|t| ALPHABET.map(|c| format!("{t}{c}")))
                .collect();
            texts.extend(last.iter().cloned());
        }
        for text in &texts {
            assert_eq!(split_words(text), shlex::split(text), "{text:?}");
        }
    }

    /// The protocol crate shares the workspace version, so its
    /// `VersionReply::current` names this gunicornd's version.
    #[test]
    fn version_reply_names_this_build() {
        assert_eq!(VersionReply::current().version, env!("CARGO_PKG_VERSION"));
    }
}
