//! The `App` interface and the built-in apps.
//!
//! The interface is WSGI-shaped so that a Python application can be hosted
//! behind it later without changing the worker: the request head and a body
//! reader go in; the app calls [`ResponseSink::start`] once with a status
//! and headers (like `start_response`) and then streams the body through
//! [`ResponseSink::write`] (like iterating the WSGI result).

use std::io::{self, Read};

use crate::http::{PeerAddr, RequestHead};

/// One request as an app sees it.
pub struct Request<'a> {
    pub head: &'a RequestHead,
    pub peer: &'a PeerAddr,
    /// `http` or `https`.
    pub scheme: &'a str,
    /// The request body, already de-chunked; reads return 0 at its end.
    pub body: &'a mut dyn Read,
}

/// Where an app writes its response.
pub trait ResponseSink {
    /// Send the status line and headers. Called exactly once, before any
    /// body. Without a `Content-Length` header the body is sent chunked
    /// (HTTP/1.1) or delimited by closing the connection (HTTP/1.0).
    fn start(&mut self, status: u16, headers: &[(String, String)]) -> io::Result<()>;
    /// Send part of the body.
    fn write(&mut self, chunk: &[u8]) -> io::Result<()>;
}

/// An application hosted by a worker. Loaded once per worker, after fork.
pub trait App {
    fn call(&mut self, req: Request<'_>, resp: &mut dyn ResponseSink) -> io::Result<()>;
}

/// Why an app could not be loaded: the worker exits with code 4 after
/// logging this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppLoadError(pub String);

impl std::fmt::Display for AppLoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

mod debug;
mod echo;
mod hello;
mod static_files;
#[cfg(test)]
pub(crate) mod testing;

pub use debug::DebugApp;
pub use echo::EchoApp;
pub use hello::HelloApp;
pub use static_files::StaticApp;

/// The app specs `load` understands, for error messages and `--help`.
pub const APP_SPECS: &str = "builtin:hello, builtin:echo, builtin:debug, or static:DIR";

/// Load the app named by `spec` (the positional `APP` argument).
///
/// Called in the worker after fork. `builtin:debug` may sleep or exit the
/// process here on purpose (see [`DebugApp`]).
pub fn load(spec: &str) -> Result<Box<dyn App>, AppLoadError> {
    if let Some(dir) = spec.strip_prefix("static:") {
        // Everything after the prefix is the directory: paths may contain '?'.
        return Ok(Box::new(StaticApp::load(dir)?));
    }
    let (name, options) = match spec.split_once('?') {
        Some((name, options)) => (name, Some(options)),
        None => (spec, None),
    };
    match (name, options) {
        ("builtin:hello", None) => Ok(Box::new(HelloApp::new())),
        ("builtin:echo", None) => Ok(Box::new(EchoApp)),
        ("builtin:debug", options) => Ok(Box::new(DebugApp::load(options.unwrap_or(""))?)),
        ("builtin:hello" | "builtin:echo", Some(_)) => Err(AppLoadError(format!(
            "app '{name}' takes no options (got '{spec}')"
        ))),
        _ => Err(AppLoadError(format!(
            "unknown app '{spec}': expected {APP_SPECS}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_err(spec: &str) -> String {
        match load(spec) {
            Ok(_) => panic!("{spec} loaded"),
            Err(e) => e.0,
        }
    }

    #[test]
    fn loads_builtins() {
        assert!(load("builtin:hello").is_ok());
        assert!(load("builtin:echo").is_ok());
        assert!(load("builtin:debug").is_ok());
        assert!(load("builtin:debug?").is_ok());
        assert!(load("static:.").is_ok());
    }

    #[test]
    fn unknown_app_is_named_with_the_alternatives() {
        assert_eq!(
            load_err("myapp:app"),
            "unknown app 'myapp:app': expected builtin:hello, builtin:echo, builtin:debug, or static:DIR"
        );
        assert!(load_err("builtin:nope").starts_with("unknown app 'builtin:nope'"));
        assert!(load_err("").starts_with("unknown app ''"));
    }

    #[test]
    fn options_only_for_debug() {
        assert_eq!(
            load_err("builtin:hello?x=1"),
            "app 'builtin:hello' takes no options (got 'builtin:hello?x=1')"
        );
        assert!(load_err("builtin:echo?").contains("takes no options"));
    }
}
