//! The harness shared by the integration tests of `gunicornd` (`tests/`)
//! and `gunicornctl` (`ctl/tests/`): start the real `gunicornd` in its own
//! process group ([`Launch`], [`Server`]), talk HTTP ([`http`]) and the
//! control protocol ([`Conn`]) to it, run `gunicornctl` ([`mod@ctl`]), look at
//! processes and sockets through `/proc`, and kill everything on drop.
//!
//! Synchronisation is always "poll a fact until a deadline" ([`wait`]),
//! never a fixed sleep.

// The control protocol's types, imported here and nowhere else: every
// module goes through `crate::protocol`.
use gunicornd_protocol as protocol;

pub mod binaries;
pub mod control;
pub mod ctl;
pub mod gunicorn;
pub mod http;
pub mod launch;
pub mod load;
pub mod procfs;
pub mod server;
pub mod sockets;
pub mod wait;

pub use binaries::{gunicornctl_bin, gunicornd_bin, target_dir};
pub use control::Conn;
pub use ctl::{ctl, ctl_command, ctl_json, ctl_ok, pair, stderr, stdout, Background};
pub use gunicorn::{frameworks_venv, gunicorn_python};
pub use http::{
    get_within, hello_at, http_get_status, http_request, read_response, try_http_request,
    unix_request, Response,
};
pub use launch::{without_inherited_settings, Launch};
pub use load::Load;
pub use procfs::{
    all_children_of, all_processes, children_of, credentials, open_files, pending_signals,
    proc_info, process_alive, sleeping_in_app, Credentials, ProcInfo,
};
pub use server::{listening_addr_in, Server};
pub use sockets::{fds_holding_socket, free_port, listening_inodes, socket_holders, socket_inode};
pub use wait::{expect_within, poll, wait_for, wait_until, DEADLINE};
