//! The command line (also the syntax of `GUNICORN_CMD_ARGS`).
//!
//! Every setting is an `Option` (or a flag that can only switch something on)
//! so that a value given here can be told apart from one left out: defaults
//! are applied only after the config file and `GUNICORN_CMD_ARGS` have had
//! their say. For the same reason the defaults are written into the help text
//! instead of clap's `default_value`; a test keeps the two in step.

use std::path::PathBuf;

use clap::{ArgAction, CommandFactory, Parser, ValueHint};

use super::{values, UpgradeMode, WorkerClass};
use crate::http::HeaderMap;

const AFTER_LONG_HELP: &str = "\
Settings are taken from, lowest to highest precedence: the defaults (where \
PORT sets the default bind to 0.0.0.0:$PORT and WEB_CONCURRENCY the default \
number of workers), the config file, GUNICORN_CMD_ARGS, and the command line.

The config file is the one given with -c/--config (on the command line or in \
GUNICORN_CMD_ARGS), else ./gunicornd.toml if it exists. It is TOML, and its \
keys are gunicorn's setting names: bind, backlog, workers, timeout, \
graceful_timeout, upgrade_timeout, upgrade_mode, worker_class, command, boot_grace, \
halt_on_boot_error, header_timeout, body_timeout, body_buffer, \
worker_connections, max_requests, max_requests_jitter, threads, keepalive, \
limit_request_line, limit_request_fields, limit_request_field_size, \
permit_unconventional_http_method, casefold_http_method, \
permit_unconventional_http_version, permit_obsolete_folding, header_map, \
forwarder_headers, raw_env, chdir, pythonpath, preload_app, user, group, static_dotfiles, umask, \
proc_name, worker_tmp_dir, accesslog, access_log_format, errorlog, loglevel, daemon, \
pidfile, control_socket, control_socket_mode, control_socket_disable, \
control_socket_allow, control_socket_max_clients, certfile, keyfile, ca_certs, \
cert_reqs, ciphers, ssl_version, tls_min_version, do_handshake_on_connect, tls_bind, \
proxy_protocol, proxy_allow_ips, forwarded_allow_ips, secure_scheme_headers and app, \
plus a [hooks] table and [tls_binds.\"ADDRESS\"] tables (certfile, keyfile). --print-config prints one with every setting.

GUNICORN_CMD_ARGS holds more options in the command line's syntax, split like \
a shell would (e.g. GUNICORN_CMD_ARGS=\"--workers 4 --bind 0.0.0.0:80\").";

/// `gunicornd --version`: which Python a build embeds, if any.
#[cfg(feature = "python")]
const VERSION_TEXT: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (Python ",
    env!("GUNICORND_PYTHON_VERSION"),
    " embedded)"
);
#[cfg(not(feature = "python"))]
const VERSION_TEXT: &str = concat!(env!("CARGO_PKG_VERSION"), " (built without Python)");

/// One layer of settings as given on a command line, in `GUNICORN_CMD_ARGS`
/// or (converted) in the config file. `None` means "not given here".
#[derive(Parser, Debug, Clone, Default, PartialEq)]
#[command(
    name = "gunicornd",
    version = VERSION_TEXT,
    about = "gunicorn's pre-fork server and process supervisor, in Rust",
    long_about = "gunicorn's pre-fork server and process supervisor, in Rust.\n\n\
        A single-threaded master binds the listening sockets and keeps a pool of \
        pre-forked workers serving APP (or, with -k command, running PROGRAM), \
        driven by signals and by gunicornctl over a control socket.",
    after_long_help = AFTER_LONG_HELP,
    args_override_self = true
)]
pub struct Cli {
    /// The application to serve: a Python WSGI app as MODULE[:NAME] or
    /// MODULE:FACTORY(ARGS) (gunicorn's forms), or builtin:hello,
    /// builtin:echo, builtin:debug[?OPTIONS], static:DIR. May also come from
    /// the config file's `app` key (`wsgi_app` in a Python config file).
    #[arg(value_name = "APP", value_parser = values::non_empty)]
    pub app: Option<String>,

    /// The config file to read: TOML, or a gunicorn Python config file
    /// (FILE.py: its plain values are read as settings; its
    /// post_worker_init, pre_request, post_request, worker_int and
    /// worker_abort hooks run in the workers) [default:
    /// ./gunicornd.toml if it exists]
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address to listen on: HOST, HOST:PORT, [IPV6]:PORT, unix:PATH or
    /// fd://FD. Repeat to listen on several [default: 127.0.0.1:8000, or
    /// 0.0.0.0:$PORT if PORT is set]
    #[arg(short = 'b', long = "bind", value_name = "ADDRESS", value_parser = values::bind)]
    pub bind: Option<Vec<String>>,

    /// Maximum number of pending connections (the listen() backlog)
    /// [default: 2048]
    #[arg(long = "backlog", value_name = "INT", value_parser = values::backlog)]
    pub backlog: Option<i32>,

    /// Number of worker processes [default: 1, or $WEB_CONCURRENCY if set]
    #[arg(short = 'w', long = "workers", value_name = "INT", value_parser = values::positive_int)]
    pub workers: Option<usize>,

    /// What a worker is: sync (gunicornd's own worker serving APP, one
    /// request per connection), gthread (the same with keep-alive, requests
    /// run by --threads threads) or command (each worker runs PROGRAM,
    /// given after --, on the listeners inherited from fd 3, with sd_notify
    /// for readiness and heartbeat) [default: sync]
    #[arg(
        short = 'k',
        long = "worker-class",
        value_name = "CLASS",
        value_parser = values::worker_class
    )]
    pub worker_class: Option<WorkerClass>,

    /// Seconds after which a command worker that has sent nothing on its
    /// NOTIFY_SOCKET counts as booted (a program that ignores the
    /// protocol); one that sent anything is booted only by READY=1. 0: only
    /// READY=1 boots a worker [default: 1]
    #[arg(long = "boot-grace", value_name = "INT", value_parser = values::seconds)]
    pub boot_grace: Option<u64>,

    /// Halt the server when a worker exits with code 3 (failed to boot) or
    /// 4 (app failed to load), or roll a reload back, as gunicorn does;
    /// --halt-on-boot-error=false restarts such workers like any crash,
    /// with crash-loop backoff [default: true]
    #[arg(
        long = "halt-on-boot-error",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = values::boolean
    )]
    pub halt_on_boot_error: Option<bool>,

    /// Seconds a worker may go silent before it is killed and replaced; 0
    /// disables the check [default: 30]
    #[arg(short = 't', long = "timeout", value_name = "INT", value_parser = values::seconds)]
    pub timeout: Option<u64>,

    /// Seconds workers get to finish their requests after a graceful stop or
    /// restart before they are killed [default: 30]
    #[arg(long = "graceful-timeout", value_name = "INT", value_parser = values::seconds)]
    pub graceful_timeout: Option<u64>,

    /// Seconds a new master started by USR2 or gunicornctl upgrade has to
    /// boot all its workers; past it the old master kills it and keeps
    /// serving [default: 60]
    #[arg(long = "upgrade-timeout", value_name = "INT", value_parser = values::seconds)]
    pub upgrade_timeout: Option<u64>,

    /// What USR2 and gunicornctl upgrade do: fork (start a new master that
    /// takes over, as gunicorn does) or in-place (exec the new binary in
    /// the master's own process, keeping its pid) [default: fork]
    #[arg(long = "upgrade-mode", value_name = "MODE", value_parser = values::upgrade_mode)]
    pub upgrade_mode: Option<UpgradeMode>,

    /// Seconds a client has to send a whole request head; past it the
    /// worker answers 408 and closes (applies with --timeout 0 too)
    /// [default: 10]
    #[arg(long = "header-timeout", value_name = "INT", value_parser = values::positive_seconds)]
    pub header_timeout: Option<u64>,

    /// Seconds a worker waits for a client to send more of a request body
    /// or to read more of a response before it gives up on it (at most
    /// half of --timeout, so that a waiting worker is never taken for a
    /// hung one) [default: 30]
    #[arg(long = "body-timeout", value_name = "INT", value_parser = values::positive_seconds)]
    pub body_timeout: Option<u64>,

    /// Request bodies with a Content-Length of up to this many bytes are
    /// read by the worker before the app is called, while it serves other
    /// clients; larger ones are read by the app as they come
    /// [default: 65536]
    #[arg(long = "body-buffer", value_name = "INT", value_parser = values::non_negative_int)]
    pub body_buffer: Option<u64>,

    /// Connections a worker reads requests from at once (a slow client
    /// waits in this set without holding the worker) [default: 1000]
    #[arg(long = "worker-connections", value_name = "INT", value_parser = values::positive_int)]
    pub worker_connections: Option<usize>,

    /// Requests a worker serves before it is replaced; 0 disables
    /// [default: 0]
    #[arg(long = "max-requests", value_name = "INT", value_parser = values::non_negative_int)]
    pub max_requests: Option<u64>,

    /// Add a random 0..=INT to each worker's --max-requests so workers are
    /// not replaced all at once [default: 0]
    #[arg(long = "max-requests-jitter", value_name = "INT", value_parser = values::non_negative_int)]
    pub max_requests_jitter: Option<u64>,

    /// Threads that run requests in each gthread worker; above 1 with the
    /// sync worker class, the class becomes gthread (as in gunicorn)
    /// [default: 1]
    #[arg(long = "threads", value_name = "INT", value_parser = values::positive_int)]
    pub threads: Option<usize>,

    /// Seconds a gthread worker keeps an idle connection open waiting for
    /// its next request; 0 closes every connection after its response
    /// [default: 2]
    #[arg(long = "keep-alive", visible_alias = "keepalive", value_name = "INT", value_parser = values::seconds)]
    pub keepalive: Option<u64>,

    /// Maximum size of the HTTP request line in bytes; 0 means unlimited,
    /// values above 8190 mean 8190 [default: 4094]
    #[arg(long = "limit-request-line", value_name = "INT", value_parser = values::limit)]
    pub limit_request_line: Option<usize>,

    /// Maximum number of HTTP request header fields; 0 or above 32768 means
    /// 32768 [default: 100]
    #[arg(long = "limit-request-fields", value_name = "INT", value_parser = values::limit)]
    pub limit_request_fields: Option<usize>,

    /// Maximum size of one HTTP request header field in bytes; 0 means 8190
    /// [default: 8190]
    #[arg(
        long = "limit-request-field_size",
        visible_alias = "limit-request-field-size",
        value_name = "INT",
        value_parser = values::limit
    )]
    pub limit_request_field_size: Option<usize>,

    /// Accept any RFC 9110 token as the request method, not only 3 to 20
    /// characters without lower case or '#' [default: off]
    #[arg(long = "permit-unconventional-http-method", action = ArgAction::SetTrue)]
    pub permit_unconventional_http_method: bool,

    /// Upper-case the request method once it passed the checks (a
    /// lower-case method still needs --permit-unconventional-http-method)
    /// [default: off]
    #[arg(long = "casefold-http-method", action = ArgAction::SetTrue)]
    pub casefold_http_method: bool,

    /// Accept any HTTP/d.d version, not only HTTP/1.0 to HTTP/1.9
    /// [default: off]
    #[arg(long = "permit-unconventional-http-version", action = ArgAction::SetTrue)]
    pub permit_unconventional_http_version: bool,

    /// Accept obsolete line folding in request header fields: continuation
    /// lines are joined to their field with a space (never in
    /// Transfer-Encoding or Content-Length) [default: off]
    #[arg(long = "permit-obsolete-folding", action = ArgAction::SetTrue)]
    pub permit_obsolete_folding: bool,

    /// What to do with a request header field whose name has an underscore,
    /// which a WSGI environ cannot tell from the same name with a dash:
    /// drop it, refuse the request (400), or pass it on (dangerous)
    /// [default: drop]
    #[arg(long = "header-map", value_name = "MAP", value_parser = values::header_map)]
    pub header_map: Option<HeaderMap>,

    /// Comma-separated header names with underscores that a trusted front
    /// end (a unix-socket peer, or 127.0.0.1 or ::1) may send whatever
    /// --header-map says; * for any; a SCRIPT_NAME field then sets the
    /// WSGI SCRIPT_NAME [default: SCRIPT_NAME,PATH_INFO]
    // `std::vec::Vec`: one value holding the whole list (see pythonpath).
    #[arg(
        long = "forwarder-headers",
        value_name = "NAMES",
        value_parser = values::forwarder_headers
    )]
    pub forwarder_headers: Option<std::vec::Vec<String>>,

    /// Set an environment variable for the workers. Repeatable
    /// [default: none]
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE", value_parser = values::env_pair)]
    pub raw_env: Option<Vec<(String, String)>>,

    /// Change to this directory before loading the app; relative paths in
    /// other settings are taken from there [default: the current directory]
    #[arg(long = "chdir", value_name = "DIR")]
    pub chdir: Option<PathBuf>,

    /// A comma-separated list of directories to add to the Python path,
    /// e.g. /home/djangoprojects/myproject,/home/python/mylibrary; relative
    /// ones are taken from --chdir. For Python module:callable apps;
    /// built-in apps ignore it [default: none]
    // `std::vec::Vec`, not `Vec`: clap's derive would make a `Vec` field
    // repeatable, one directory per occurrence; this is one value holding
    // the whole list, and a later --pythonpath replaces it, as in gunicorn.
    // A directory hint completes the first (often the only) directory.
    #[arg(
        long = "pythonpath",
        value_name = "DIRS",
        value_hint = ValueHint::DirPath,
        value_parser = values::pythonpath
    )]
    pub pythonpath: Option<std::vec::Vec<PathBuf>>,

    /// Load the application code before the worker processes are forked:
    /// saves memory and speeds up booting. Without it each worker loads the
    /// app itself, so replacing the workers loads new code. For Python
    /// module:callable apps; built-in apps ignore it [default: off]
    #[arg(long = "preload", action = ArgAction::SetTrue)]
    pub preload_app: bool,

    /// Run workers as this user (a name or a uid) [default: the master's
    /// user]
    #[arg(short = 'u', long = "user", value_name = "USER", value_parser = values::user)]
    pub user: Option<u32>,

    /// Run workers as this group (a name or a gid) [default: the master's
    /// group]
    #[arg(short = 'g', long = "group", value_name = "GROUP", value_parser = values::group)]
    pub group: Option<u32>,

    /// Let static:DIR serve dotfiles: paths with a component that starts
    /// with a dot, such as .git/, .env or .well-known/ [default: off, they
    /// are answered 404]
    #[arg(long = "static-dotfiles", action = ArgAction::SetTrue)]
    pub static_dotfiles: bool,

    /// Umask for files and Unix sockets the server creates; a leading 0
    /// means octal, as in 0022 [default: 0]
    #[arg(short = 'm', long = "umask", value_name = "UMASK", value_parser = values::umask)]
    pub umask: Option<u32>,

    /// The server's name: names the default control socket
    /// (/tmp/gunicornd-UID/NAME.ctl) [default: gunicornd]
    #[arg(short = 'n', long = "name", value_name = "NAME", value_parser = values::non_empty)]
    pub proc_name: Option<String>,

    /// Existing directory for the workers' heartbeat files; a tmpfs such as
    /// /dev/shm avoids disk stalls [default: the system temporary directory]
    #[arg(long = "worker-tmp-dir", value_name = "DIR")]
    pub worker_tmp_dir: Option<PathBuf>,

    /// Access log file, or - for stdout [default: none, no access log]
    #[arg(long = "access-logfile", value_name = "FILE", value_parser = values::non_empty)]
    pub accesslog: Option<String>,

    /// Access log format, with gunicorn's atoms such as %(h)s and %(r)s
    /// [default: %(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"]
    #[arg(long = "access-logformat", value_name = "FORMAT", value_parser = values::non_empty)]
    pub access_log_format: Option<String>,

    /// Error log file, or - for stderr [default: -]
    #[arg(
        long = "error-logfile",
        visible_alias = "log-file",
        value_name = "FILE",
        value_parser = values::non_empty
    )]
    pub errorlog: Option<String>,

    /// Error log level: debug, info, warning, error or critical
    /// [default: info]
    #[arg(long = "log-level", value_name = "LEVEL", value_parser = values::log_level)]
    pub loglevel: Option<String>,

    /// Run a shell command on a server event. NAME is one of on_starting,
    /// when_ready, on_reload, pre_fork, post_fork, child_exit, worker_exit,
    /// nworkers_changed, on_exit. Repeatable [default: none]
    #[arg(long = "hook", value_name = "NAME=COMMAND", value_parser = values::hook_pair)]
    pub hooks: Option<Vec<(String, String)>>,

    /// Detach from the terminal and run in the background [default: off]
    #[arg(short = 'D', long = "daemon", action = ArgAction::SetTrue)]
    pub daemon: bool,

    /// Write the master's pid to this file [default: none]
    #[arg(short = 'p', long = "pid", value_name = "FILE")]
    pub pidfile: Option<PathBuf>,

    /// Path of the control socket used by gunicornctl [default:
    /// $XDG_RUNTIME_DIR/gunicornd.ctl, else PIDFILE.ctl with --pid, else
    /// /tmp/gunicornd-UID/NAME.ctl]
    #[arg(long = "control-socket", value_name = "PATH")]
    pub control_socket: Option<PathBuf>,

    /// Permissions of the control socket, in octal [default: 0600]
    #[arg(long = "control-socket-mode", value_name = "MODE", value_parser = values::octal_mode)]
    pub control_socket_mode: Option<u32>,

    /// Do not open a control socket [default: off]
    #[arg(long = "no-control-socket", action = ArgAction::SetTrue)]
    pub control_socket_disable: bool,

    /// Also let this user (a name or a uid) use the control socket; root
    /// and the server's own user always may, anyone else is refused as
    /// soon as it connects. Repeatable [default: none]
    #[arg(long = "control-socket-allow", value_name = "USER", value_parser = values::user)]
    pub control_socket_allow: Option<Vec<u32>>,

    /// Most control socket connections open at once (never more than a
    /// quarter of the open-files limit); when all are taken, the one idle
    /// the longest is closed to make room [default: 256]
    #[arg(
        long = "control-socket-max-clients",
        value_name = "INT",
        value_parser = values::positive_count
    )]
    pub control_socket_max_clients: Option<usize>,

    // TLS, the PROXY protocol and trusted front ends.
    /// PEM certificate (chain) file; with --keyfile, the listeners speak
    /// TLS [default: none]
    #[arg(long = "certfile", value_name = "FILE")]
    pub certfile: Option<PathBuf>,

    /// PEM private key file for --certfile: PKCS#8, PKCS#1 (RSA) or SEC1
    /// (EC); RSA, ECDSA or Ed25519 [default: none]
    #[arg(long = "keyfile", value_name = "FILE")]
    pub keyfile: Option<PathBuf>,

    /// PEM CA certificates that client certificates must be signed by
    /// [default: none]
    #[arg(long = "ca-certs", value_name = "FILE")]
    pub ca_certs: Option<PathBuf>,

    /// Client certificates: 0 not asked for, 1 optional, 2 required
    /// (checked against --ca-certs) [default: 0]
    #[arg(long = "cert-reqs", value_name = "INT", value_parser = values::cert_reqs)]
    pub cert_reqs: Option<crate::tls::CertReqs>,

    /// Cipher suites allowed, separated by : or , in OpenSSL's names
    /// (ECDHE-RSA-AES128-GCM-SHA256) or rustls' (TLS13_AES_128_GCM_SHA256);
    /// a list without a TLS 1.3 suite keeps all of them, as OpenSSL does
    /// [default: all that rustls implements]
    #[arg(long = "ciphers", value_name = "LIST", value_parser = values::ciphers)]
    pub ciphers: Option<String>,

    /// gunicorn's deprecated SSL version: accepted and ignored (see
    /// --tls-min-version) [default: none]
    #[arg(long = "ssl-version", value_name = "VERSION", value_parser = values::non_empty)]
    pub ssl_version: Option<String>,

    /// The oldest TLS version offered: 1.2 or 1.3 [default: 1.2]
    #[arg(long = "tls-min-version", value_name = "VERSION", value_parser = values::tls_min_version)]
    pub tls_min_version: Option<crate::tls::MinVersion>,

    /// Accepted for gunicorn's sake: the handshake always runs before the
    /// request is read, in the worker's loop, within --header-timeout
    /// [default: off]
    #[arg(long = "do-handshake-on-connect", action = ArgAction::SetTrue)]
    pub do_handshake_on_connect: bool,

    /// Only this bind (as given to --bind) speaks TLS; repeatable. Without
    /// it every listener does [default: all]
    #[arg(long = "tls-bind", value_name = "ADDRESS", value_parser = values::bind)]
    pub tls_bind: Option<Vec<String>>,

    /// Read a PROXY protocol header at the start of each connection: off,
    /// v1, v2 or auto (either); alone, auto. A connection without one is
    /// served as it is [default: off]
    #[arg(
        long = "proxy-protocol",
        value_name = "MODE",
        num_args = 0..=1,
        default_missing_value = "auto",
        value_parser = values::proxy_mode
    )]
    pub proxy_protocol: Option<crate::http::proxy::ProxyMode>,

    /// Comma-separated addresses and CIDR ranges that may send a PROXY
    /// header, or *; unix-socket peers always may [default: 127.0.0.1,::1]
    #[arg(long = "proxy-allow-from", value_name = "ADDRS", value_parser = values::allow_list)]
    pub proxy_allow_ips: Option<crate::http::forwarded::AllowList>,

    /// Comma-separated addresses and CIDR ranges of trusted front ends,
    /// or *: only they may mark a request https (--secure-scheme-headers)
    /// or send --forwarder-headers fields; unix-socket peers always are
    /// [default: $FORWARDED_ALLOW_IPS, else 127.0.0.1,::1]
    #[arg(
        long = "forwarded-allow-ips",
        value_name = "ADDRS",
        value_parser = values::allow_list
    )]
    pub forwarded_allow_ips: Option<crate::http::forwarded::AllowList>,

    /// NAME=VALUE,...: a request field NAME from a trusted front end with
    /// exactly VALUE means https, with another value http [default:
    /// X-FORWARDED-PROTOCOL=ssl,X-FORWARDED-PROTO=https,X-FORWARDED-SSL=on]
    #[arg(
        long = "secure-scheme-headers",
        value_name = "PAIRS",
        value_parser = values::scheme_headers
    )]
    pub secure_scheme_headers: Option<std::vec::Vec<(String, String)>>,

    /// The config file's `[tls_binds."ADDRESS"]` tables (no option).
    #[arg(skip)]
    pub tls_binds: Option<Vec<crate::tls::TlsBind>>,

    /// Check the configuration and the app name, then exit: status 0 if
    /// valid, 1 (with the error) if not
    #[arg(long = "check-config", action = ArgAction::SetTrue)]
    pub check_config: bool,

    /// The probe of an in-place upgrade (src/arbiter/in_place.rs): check
    /// the configuration as --check-config does and whether this binary
    /// reads the state version given, then exit 0 or 1 with the reason.
    /// Only the old master passes it, on the command line.
    #[arg(long = "upgrade-probe", value_name = "VERSION", hide = true)]
    pub upgrade_probe: Option<u32>,

    /// Print the effective settings as a config file and exit
    #[arg(long = "print-config", action = ArgAction::SetTrue)]
    pub print_config: bool,

    /// With -k command: the program each worker runs, and its arguments,
    /// after --; a PROGRAM without a slash is looked up on PATH
    #[arg(
        last = true,
        value_name = "PROGRAM",
        num_args = 1..,
        value_parser = values::command_word
    )]
    pub command: Option<Vec<String>>,
}

/// The clap definition of `gunicornd`'s command line, for the man page and
/// shell completions.
pub fn command() -> clap::Command {
    Cli::command()
}

#[cfg(test)]
mod tests {
    use super::super::defaults;
    use super::*;

    #[test]
    fn definition_is_consistent() {
        command().debug_assert();
    }

    /// The help text states each default; check it against the value used.
    #[test]
    fn help_states_the_defaults() {
        let cmd = command();
        let help_of = |id: &str| {
            cmd.get_arguments()
                .find(|a| a.get_id() == id)
                .and_then(|a| a.get_help())
                .map(|h| h.to_string())
                .unwrap_or_else(|| panic!("no help for {id}"))
        };
        let expect = |id: &str, default: String| {
            let help = help_of(id);
            assert!(
                help.contains(&format!("[default: {default}")),
                "help for {id} should state default {default}: {help}"
            );
        };
        expect("bind", defaults::BIND.to_owned());
        expect("backlog", defaults::BACKLOG.to_string());
        expect("workers", defaults::WORKERS.to_string());
        expect("timeout", defaults::TIMEOUT.to_string());
        expect("graceful_timeout", defaults::GRACEFUL_TIMEOUT.to_string());
        expect("upgrade_timeout", defaults::UPGRADE_TIMEOUT.to_string());
        expect("upgrade_mode", defaults::UPGRADE_MODE.as_str().to_owned());
        expect("worker_class", defaults::WORKER_CLASS.name().to_owned());
        expect("boot_grace", defaults::BOOT_GRACE.to_string());
        expect(
            "halt_on_boot_error",
            defaults::HALT_ON_BOOT_ERROR.to_string(),
        );
        expect("header_timeout", defaults::HEADER_TIMEOUT.to_string());
        expect("body_timeout", defaults::BODY_TIMEOUT.to_string());
        expect("body_buffer", defaults::BODY_BUFFER.to_string());
        expect(
            "worker_connections",
            defaults::WORKER_CONNECTIONS.to_string(),
        );
        expect("max_requests", defaults::MAX_REQUESTS.to_string());
        expect(
            "max_requests_jitter",
            defaults::MAX_REQUESTS_JITTER.to_string(),
        );
        expect("threads", defaults::THREADS.to_string());
        expect("keepalive", defaults::KEEPALIVE.to_string());
        expect(
            "limit_request_line",
            defaults::LIMIT_REQUEST_LINE.to_string(),
        );
        expect(
            "limit_request_fields",
            defaults::LIMIT_REQUEST_FIELDS.to_string(),
        );
        expect(
            "limit_request_field_size",
            defaults::LIMIT_REQUEST_FIELD_SIZE.to_string(),
        );
        expect("header_map", defaults::HEADER_MAP.name().to_owned());
        expect("forwarder_headers", defaults::FORWARDER_HEADERS.join(","));
        expect("umask", defaults::UMASK.to_string());
        expect("access_log_format", defaults::ACCESS_LOG_FORMAT.to_owned());
        expect("errorlog", defaults::ERRORLOG.to_owned());
        expect("loglevel", defaults::LOGLEVEL.to_owned());
        expect(
            "control_socket_mode",
            values::format_mode(defaults::CONTROL_SOCKET_MODE),
        );
        expect(
            "control_socket_max_clients",
            defaults::CONTROL_SOCKET_MAX_CLIENTS.to_string(),
        );
        let socket = help_of("control_socket");
        assert!(
            socket.contains(&format!(
                "$XDG_RUNTIME_DIR/{}",
                defaults::CONTROL_SOCKET_NAME
            )),
            "{socket}"
        );
    }
}
