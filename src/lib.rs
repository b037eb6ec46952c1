//! gunicornd: gunicorn's pre-fork server and process supervisor.
//!
//! The binary (`src/main.rs`) parses the configuration and hands over to the
//! [`arbiter`]; everything else lives in this library so that `gunicornctl`
//! and the integration tests can share the wire-protocol types.

// Public: what the binary, the man page generator and the integration
// tests use. Everything else is private, so that the compiler reports what
// nothing uses.
pub mod arbiter;
pub mod config;
pub mod exec;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod hooks;

mod app;
mod control;
mod credentials;
mod daemon;
mod fd;
mod http;
mod listeners;
mod log;
mod pidfile;
#[cfg(feature = "python")]
mod python;
mod scoreboard;
mod signals;
mod systemd;
mod tls;
mod worker;
