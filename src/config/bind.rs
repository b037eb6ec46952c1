//! TEMPORARY (integrator's stand-in until the config branch lands).
use std::path::PathBuf;
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindAddr { Tcp { host: String, port: u16 }, Unix(PathBuf), Fd(i32) }
