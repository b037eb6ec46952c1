//! Default values (gunicorn's), applied below every other source.

/// Default bind when `PORT` is not set.
pub const BIND: &str = "127.0.0.1:8000";
/// Host used with `PORT`.
pub const PORT_HOST: &str = "0.0.0.0";
pub const BACKLOG: i32 = 2048;
/// Default worker count when `WEB_CONCURRENCY` is not set.
pub const WORKERS: usize = 1;
pub const TIMEOUT: u64 = 30;
pub const GRACEFUL_TIMEOUT: u64 = 30;
/// Seconds a binary upgrade's new master has to boot its workers (not a
/// gunicorn setting: gunicorn's old master does not watch the new one).
pub const UPGRADE_TIMEOUT: u64 = 60;
pub const UPGRADE_MODE: super::UpgradeMode = super::UpgradeMode::Fork;
/// `-k`: gunicorn's default worker class.
pub const WORKER_CLASS: super::WorkerClass = super::WorkerClass::Sync;
/// Seconds a command worker that says nothing on its `NOTIFY_SOCKET` takes
/// to count as booted (not a gunicorn setting). Short: such a program holds
/// the listeners from its first instant, so connections wait in their
/// queue rather than fail; a program that speaks the protocol says so
/// early and is waited for.
pub const BOOT_GRACE: u64 = 1;
/// Exit codes 3 and 4 halt the server, as in gunicorn.
pub const HALT_ON_BOOT_ERROR: bool = true;
/// Seconds a client has to send a whole request head (answered with 408
/// after it); not a gunicorn setting (its sync worker waits for ever).
pub const HEADER_TIMEOUT: u64 = 10;
/// Seconds a worker waits for a client to make progress on a body or a
/// response before it gives up on it.
pub const BODY_TIMEOUT: u64 = 30;
/// Request bodies of up to this many bytes (with a Content-Length) are read
/// by the worker's event loop before the app is called.
pub const BODY_BUFFER: u64 = 64 * 1024;
/// Connections a sync worker reads requests from at once (gunicorn's
/// `worker_connections`, which it uses for its async workers only).
pub const WORKER_CONNECTIONS: usize = 1000;
pub const MAX_REQUESTS: u64 = 0;
pub const MAX_REQUESTS_JITTER: u64 = 0;
/// gunicorn's `threads` and `keepalive` defaults.
pub const THREADS: usize = 1;
pub const KEEPALIVE: u64 = 2;
pub const LIMIT_REQUEST_LINE: usize = 4094;
pub const LIMIT_REQUEST_FIELDS: usize = 100;
pub const LIMIT_REQUEST_FIELD_SIZE: usize = 8190;
pub const HEADER_MAP: crate::http::HeaderMap = crate::http::HeaderMap::Drop;
pub use crate::http::DEFAULT_FORWARDER_HEADERS as FORWARDER_HEADERS;
pub const UMASK: u32 = 0;
pub const ACCESS_LOG_FORMAT: &str =
    r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#;
pub const ERRORLOG: &str = "-";
pub const LOGLEVEL: &str = "info";
pub const CONTROL_SOCKET_MODE: u32 = 0o600;
/// Control socket connections open at once (the master lowers it to a
/// quarter of its open-files limit if that is less).
pub const CONTROL_SOCKET_MAX_CLIENTS: usize = 256;
/// File name of the default control socket in `$XDG_RUNTIME_DIR` (the full
/// rule is `crate::control::paths::default_socket_path`).
pub use crate::control::paths::XDG_SOCKET_NAME as CONTROL_SOCKET_NAME;
/// Config file looked for in the current directory when none is given.
pub const CONFIG_FILE: &str = "gunicornd.toml";
