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
    /// The listener the connection came in on (WSGI's `SERVER_NAME` and
    /// `SERVER_PORT` when the request names no host).
    pub server: &'a crate::listeners::ListenAddr,
    /// `http` or `https`.
    pub scheme: &'a str,
    /// The connection's TLS parameters, on a TLS listener.
    pub tls: Option<&'a crate::tls::TlsInfo>,
    /// The PROXY protocol header the connection began with, if any.
    pub proxied: Option<&'a crate::http::proxy::ProxyHeader>,
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
    /// Send `len` bytes of `file` from `offset` as part of the body, with
    /// `sendfile(2)` (no copy through user space). `Ok(false)` when this
    /// sink cannot (the caller then reads the file and writes it).
    fn send_file(
        &mut self,
        file: std::os::fd::BorrowedFd<'_>,
        offset: u64,
        len: u64,
    ) -> io::Result<bool> {
        let _ = (file, offset, len);
        Ok(false)
    }
}

/// An application hosted by a worker. Loaded once per worker, after fork.
pub trait App {
    fn call(&mut self, req: Request<'_>, resp: &mut dyn ResponseSink) -> io::Result<()>;

    /// Whether a call always answers at once, never waiting for anything
    /// (no body to read, no I/O, no sleep): the gthread worker then calls
    /// it on its event loop, sparing a hand-over to a thread per request.
    fn runs_inline(&self) -> bool {
        false
    }

    /// The same app for one of the `threads` threads of the worker (the
    /// gthread worker's pool), sharing what was loaded: loading happens once
    /// per worker.
    fn for_thread(&self, threads: usize) -> io::Result<Box<dyn App + Send>> {
        let _ = threads;
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this app cannot run on several threads",
        ))
    }
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
mod spec;
mod static_files;
#[cfg(test)]
pub(crate) mod testing;

pub use debug::DebugApp;
pub use echo::EchoApp;
pub use hello::HelloApp;
pub use spec::AppSpec;
pub use static_files::StaticApp;

/// The settings loading an app depends on, besides its spec.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions<'a> {
    /// `--pythonpath`, for a Python app.
    pub pythonpath: &'a [std::path::PathBuf],
    /// `--static-dotfiles`, for `static:DIR`.
    pub static_dotfiles: bool,
}

impl<'a> From<&'a crate::config::Settings> for LoadOptions<'a> {
    fn from(settings: &'a crate::config::Settings) -> Self {
        LoadOptions {
            pythonpath: &settings.pythonpath,
            static_dotfiles: settings.static_dotfiles,
        }
    }
}

/// Load the app named by `spec` (the positional `APP` argument), in the
/// worker after fork, with the app settings of `settings`. See [`AppSpec`]
/// for the grammar.
pub fn load(spec: &str, settings: &crate::config::Settings) -> Result<Box<dyn App>, AppLoadError> {
    AppSpec::parse(spec)
        .map_err(AppLoadError)?
        .load(&LoadOptions::from(settings))
}
