//! gunicornd: gunicorn's pre-fork server and process supervisor.
//!
//! The binary (`src/main.rs`) parses the configuration and hands over to the
//! [`arbiter`]; everything else lives in this library so that `gunicornctl`
//! and the integration tests can share the wire-protocol types.

pub mod app;
pub mod arbiter;
pub mod config;
pub mod control;
pub mod daemon;
pub mod fd;
pub mod exec;
pub mod hooks;
pub mod http;
pub mod listeners;
pub mod log;
pub mod pidfile;
pub mod scoreboard;
pub mod signals;
pub mod systemd;
pub mod worker;
