//! Settings: CLI, config file, `GUNICORN_CMD_ARGS`, environment.
//!
//! `Settings` is the effective configuration after precedence has been
//! applied (defaults < config file < `GUNICORN_CMD_ARGS` < command line) and
//! values have been validated. The master keeps the original arguments and
//! environment (a [`Loader`]) so that a reload (HUP) can load it again the
//! same way, re-reading the config file.
//!
//! ```no_run
//! use gunicornd::config::{Loader, Startup};
//! let loader = Loader::from_process();
//! match loader.load() {
//!     Ok(Startup::Run(settings)) => { /* serve */ }
//!     Ok(_) => { /* print/check/help: see src/main.rs */ }
//!     Err(e) => eprintln!("Error: {e}"),
//! }
//! ```

mod bind;
mod cli;
pub mod defaults;
mod error;
mod file;
mod load;
mod print;
mod values;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

pub use bind::{parse_address, BindAddr};
pub use cli::command;
pub use error::{ConfigError, EXIT_INVALID, EXIT_USAGE};
pub use load::{Loader, Startup, ENV_VARS};

pub use crate::control::protocol::UpgradeMode;

/// What runs in a worker process (`-k`, `worker_class`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerClass {
    /// gunicornd's own worker, forked from the master, serving `app`.
    #[default]
    Sync,
    /// Any program (`command`), exec'd by the master's fork, serving on the
    /// inherited listeners and speaking sd_notify.
    Command,
    /// gunicornd's threaded worker (`worker/gthread.rs`): an event loop
    /// holding keep-alive connections, requests run by `threads` threads.
    Gthread,
}

impl WorkerClass {
    /// The accepted names, as `-k` takes them.
    pub const NAMES: [&'static str; 3] = ["sync", "gthread", "command"];

    pub fn name(self) -> &'static str {
        match self {
            WorkerClass::Sync => "sync",
            WorkerClass::Command => "command",
            WorkerClass::Gthread => "gthread",
        }
    }

    /// The class that runs, given `threads`: as in gunicorn, sync with more
    /// than one thread is gthread.
    pub fn with_threads(self, threads: usize) -> WorkerClass {
        match self {
            WorkerClass::Sync if threads > 1 => WorkerClass::Gthread,
            class => class,
        }
    }

    pub fn from_name(name: &str) -> Option<WorkerClass> {
        match name {
            "sync" => Some(WorkerClass::Sync),
            "command" => Some(WorkerClass::Command),
            "gthread" => Some(WorkerClass::Gthread),
            _ => None,
        }
    }
}

/// The effective, validated configuration. Field names are gunicorn's setting
/// names (they are also the config-file keys).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    /// The positional `APP` argument (`builtin:hello`, `static:DIR`, ...).
    pub app: Option<String>,
    /// The config file that was read, if any.
    pub config: Option<PathBuf>,
    /// The bind addresses as given.
    pub bind: Vec<String>,
    /// `bind`, parsed, in the same order; relative Unix socket paths are
    /// made absolute (against `chdir`, else the starting directory).
    #[serde(skip)]
    pub binds: Vec<BindAddr>,
    pub backlog: i32,
    pub workers: usize,
    /// What a worker is (gunicorn's `worker_class`, `-k`).
    pub worker_class: WorkerClass,
    /// With `-k command`: the program each worker runs and its arguments,
    /// as given (empty otherwise).
    pub command: Vec<String>,
    /// `command[0]` resolved when the configuration was loaded: made
    /// absolute against `chdir`, or found on `PATH` when it has no slash.
    #[serde(skip)]
    pub program: Option<PathBuf>,
    /// Heartbeat timeout in seconds; 0 disables it.
    pub timeout: u64,
    pub graceful_timeout: u64,
    /// Seconds the old master gives a new master started by a binary upgrade
    /// (USR2, `gunicornctl upgrade`) to boot all its workers before it kills
    /// it and goes on serving.
    pub upgrade_timeout: u64,
    /// What USR2 (and `upgrade` without a mode) does: `fork` a new master
    /// that takes over, or exec the new binary `in-place`, keeping the pid.
    pub upgrade_mode: UpgradeMode,
    /// Seconds after which a command worker that has said nothing on its
    /// `NOTIFY_SOCKET` counts as booted; 0: only `READY=1` boots one.
    pub boot_grace: u64,
    /// A worker exiting 3 (failed to boot) or 4 (app failed to load) halts
    /// the server (or rolls a reload back), as in gunicorn; off, those are
    /// crashes like any other.
    pub halt_on_boot_error: bool,
    /// Seconds a client has to send a whole request head (then 408).
    pub header_timeout: u64,
    /// Seconds without progress on a request body or a response before the
    /// worker gives up on the client.
    pub body_timeout: u64,
    /// Content-Length bodies up to this many bytes are read before the app
    /// is called.
    pub body_buffer: u64,
    /// Connections a sync worker reads requests from at once.
    pub worker_connections: usize,
    pub max_requests: u64,
    pub max_requests_jitter: u64,
    /// Threads running requests in a gthread worker (gunicorn's `threads`);
    /// above 1 with the sync class, the class becomes gthread.
    pub threads: usize,
    /// Seconds a gthread worker keeps an idle connection open for its next
    /// request (gunicorn's `keepalive`); 0 closes after each response.
    pub keepalive: u64,
    /// Normalised the gunicorn way (0 = unlimited, capped at 8190).
    pub limit_request_line: usize,
    /// Normalised (<=0 or >32768 means 32768).
    pub limit_request_fields: usize,
    /// Normalised (0 means 8190).
    pub limit_request_field_size: usize,
    /// Any RFC 9110 token is a request method, not only 3 to 20 bytes
    /// without `[a-z#]`.
    pub permit_unconventional_http_method: bool,
    /// Upper-case the request method once it passed the checks.
    pub casefold_http_method: bool,
    /// Any `HTTP/d.d` is a version, not only 1.0 to 1.9.
    pub permit_unconventional_http_version: bool,
    /// Join obsolete continuation lines to their field instead of refusing
    /// the request.
    pub permit_obsolete_folding: bool,
    /// What happens to a header field whose name has an underscore.
    pub header_map: crate::http::HeaderMap,
    /// Underscore header names a trusted peer may send whatever
    /// `header_map` says: upper case, `*` for any.
    pub forwarder_headers: Vec<String>,
    /// `KEY=VALUE` pairs from `-e/--env`.
    pub raw_env: Vec<(String, String)>,
    /// Absolute; None = stay in the starting directory.
    pub chdir: Option<PathBuf>,
    /// Directories to add to the Python path of `module:callable` apps
    /// (gunicorn's `--pythonpath`), in the order given; built-in apps ignore
    /// them. Kept as given: a relative one is resolved against the working
    /// directory, i.e. `chdir` (as gunicorn's `os.path.abspath` does after
    /// its chdir). Never empty strings, never a NUL byte.
    pub pythonpath: Vec<PathBuf>,
    /// Load a `module:callable` app in the master before the workers are
    /// forked (gunicorn's `preload_app`, `--preload`); built-in apps ignore it.
    pub preload_app: bool,
    /// Resolved uid/gid for `--user`/`--group` (None = keep the master's;
    /// with a user and no group, workers take the user's primary group).
    pub user: Option<u32>,
    pub group: Option<u32>,
    /// `static:DIR` serves paths with a component starting with `.`.
    pub static_dotfiles: bool,
    pub umask: u32,
    /// None = derive it from the app.
    pub proc_name: Option<String>,
    /// Absolute, an existing directory; None = the system temporary directory.
    pub worker_tmp_dir: Option<PathBuf>,
    /// `None` = off, `"-"` = stdout, else an absolute path.
    pub accesslog: Option<String>,
    pub access_log_format: String,
    /// `"-"` = stderr, else an absolute path.
    pub errorlog: String,
    /// debug, info, warning, error or critical.
    pub loglevel: String,
    /// Server hooks: event name -> shell command.
    pub hooks: BTreeMap<String, String>,
    pub daemon: bool,
    /// Absolute.
    pub pidfile: Option<PathBuf>,
    /// Absolute, when configured; `None` means the default rule of
    /// [`crate::control::paths::default_socket_path`].
    pub control_socket: Option<PathBuf>,
    pub control_socket_mode: u32,
    pub control_socket_disable: bool,
    /// Uids besides root and the server's own that may use the control
    /// socket.
    pub control_socket_allow: Vec<u32>,
    /// As configured; the control socket lowers it to what the open-files
    /// limit allows.
    pub control_socket_max_clients: usize,

    // TLS, the PROXY protocol and trusted front ends (`crate::tls`,
    // `crate::http::proxy`, `crate::http::forwarded`).
    /// PEM certificate chain; TLS is on when it (and `keyfile`) is set.
    pub certfile: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 RSA, SEC1 EC; RSA, ECDSA, Ed25519).
    pub keyfile: Option<PathBuf>,
    /// PEM CA certificates client certificates are checked against.
    pub ca_certs: Option<PathBuf>,
    /// 0: no client certificate asked for; 1: optional; 2: required.
    pub cert_reqs: crate::tls::CertReqs,
    /// Cipher suites allowed (OpenSSL's or rustls' names), as given.
    pub ciphers: Option<String>,
    /// gunicorn's `ssl_version`: accepted and ignored (as in gunicorn,
    /// where it is deprecated); `tls_min_version` says what is offered.
    pub ssl_version: Option<String>,
    pub tls_min_version: crate::tls::MinVersion,
    /// Accepted for gunicorn's sake: the handshake always runs in the
    /// worker's loop before the request is read.
    pub do_handshake_on_connect: bool,
    /// The binds that get TLS; empty: every one (gunicorn's way).
    pub tls_bind: Vec<String>,
    /// Binds with a certificate of their own (config file only); paths
    /// absolute.
    pub tls_binds: Vec<crate::tls::TlsBind>,
    /// The files read and the rustls configuration built (at every load).
    #[serde(skip)]
    pub tls: crate::tls::ListenerTls,
    /// Which PROXY protocol versions a connection may start with.
    pub proxy_protocol: crate::http::proxy::ProxyMode,
    /// Peers that may send a PROXY header (`proxy_allow_ips`).
    pub proxy_allow_ips: crate::http::forwarded::AllowList,
    /// Trusted front ends: peers whose scheme headers and forwarder
    /// headers count.
    pub forwarded_allow_ips: crate::http::forwarded::AllowList,
    /// Header name (upper case) → the value that means https.
    pub secure_scheme_headers: Vec<(String, String)>,
}
