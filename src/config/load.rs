//! Loading: gather the sources, apply precedence, check what needs context.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::error::ErrorKind;
use clap::Parser;

use super::bind::{parse_address, BindAddr};
use super::cli::Cli;
use super::error::{ConfigError, Origin};
use super::file::{self, FileLayer};
use super::{defaults, values, Settings, WorkerClass};
use crate::app::AppSpec;

/// Environment variables the configuration depends on; [`Loader`] keeps a
/// snapshot of them so a reload sees the environment the server started in.
pub const ENV_VARS: [&str; 7] = [
    "PORT",
    "WEB_CONCURRENCY",
    "GUNICORN_CMD_ARGS",
    "XDG_RUNTIME_DIR",
    "HOME",
    // Where a command worker's PROGRAM is looked up.
    "PATH",
    // gunicorn's default for forwarded_allow_ips.
    "FORWARDED_ALLOW_IPS",
];

/// What the program should do once the configuration is loaded.
#[derive(Debug, Clone, PartialEq)]
pub enum Startup {
    /// Serve. `settings.app` is always set.
    Run(Settings),
    /// `--print-config`: print [`Settings::to_toml`] and exit 0.
    /// `settings.app` may be unset.
    PrintConfig(Settings),
    /// `--check-config`: everything is valid; exit 0.
    CheckConfig(Settings),
    /// `--help` or `--version`: print the text to stdout, exit with the code.
    Exit(i32, String),
    /// `--upgrade-probe VERSION` (an in-place upgrade's probe): everything
    /// is valid; answer whether this binary reads that state version.
    Probe(u32),
}

/// Everything needed to (re)load the configuration: the original argv, a
/// snapshot of the relevant environment variables and the directory the
/// server was started in (relative paths are resolved against it, so a
/// reload after `chdir` finds the same files). The master keeps it and calls
/// [`Loader::load`] again on HUP, which re-reads the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loader {
    args: Vec<OsString>,
    env: HashMap<String, String>,
    cwd: PathBuf,
}

impl Loader {
    /// Snapshot this process's arguments, environment and directory.
    pub fn from_process() -> Self {
        let env = ENV_VARS
            .iter()
            .filter_map(|&name| {
                let value = std::env::var_os(name)?;
                Some((name.to_owned(), value.to_string_lossy().into_owned()))
            })
            .collect();
        Self::new(std::env::args_os().collect(), env)
    }

    /// A loader for the given argv (including the program name) and
    /// environment, in the current directory.
    pub fn new(args: Vec<OsString>, env: HashMap<String, String>) -> Self {
        // Without a readable cwd, "." still resolves against whatever the
        // process directory is when a path is used.
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        Loader { args, env, cwd }
    }

    /// Resolve relative paths against `cwd` instead of the current directory.
    pub fn with_cwd(mut self, cwd: impl Into<PathBuf>) -> Self {
        self.cwd = cwd.into();
        self
    }

    /// The original argv, program name first (for re-exec on USR2).
    pub fn args(&self) -> &[OsString] {
        &self.args
    }

    /// The environment snapshot.
    pub fn env(&self) -> &HashMap<String, String> {
        &self.env
    }

    /// The directory the server was started in.
    pub fn cwd(&self) -> &Path {
        &self.cwd
    }

    /// Read every source and produce the effective settings. Has no side
    /// effects besides reading files and the user database.
    pub fn load(&self) -> Result<Startup, ConfigError> {
        let cli = match parse_layer(self.args.iter().cloned(), &Origin::CommandLine)? {
            Parsed::Layer(cli) => cli,
            Parsed::Exit(code, text) => return Ok(Startup::Exit(code, text)),
        };
        let env_args = match self.cmd_args_from_env()? {
            Parsed::Layer(layer) => layer,
            Parsed::Exit(code, text) => return Ok(Startup::Exit(code, text)),
        };
        let file = self.config_file(&cli, &env_args)?;
        let layers = Layers {
            cli: &cli,
            env_args: &env_args,
            file: file.as_ref(),
        };
        let mut settings = self.merge(&layers)?;
        settings.worker_class = settings.worker_class.with_threads(settings.threads);
        let probe = cli.upgrade_probe;
        let check = layers.flag(|l| l.check_config) || probe.is_some();
        let print = layers.flag(|l| l.print_config);
        self.check_worker_class(&settings, &layers)?;
        if check || !print {
            match settings.worker_class {
                WorkerClass::Sync | WorkerClass::Gthread => {
                    // The grammar the workers load with: a spec that passes
                    // here cannot fail to parse in a worker (only
                    // `static:DIR` can still be missing there).
                    let app = settings
                        .app
                        .as_deref()
                        .ok_or_else(ConfigError::no_application)?;
                    AppSpec::parse(app).map_err(|reason| {
                        let origin = layers.pick("app", |l| &l.app).map(|(_, o)| o);
                        let origin = origin.unwrap_or(Origin::CommandLine);
                        ConfigError::invalid(app, &origin.name_of("APP", "app"), &origin, &reason)
                    })?;
                }
                WorkerClass::Command => {
                    let name = settings
                        .command
                        .first()
                        .ok_or_else(ConfigError::no_command)?;
                    let base = settings.chdir.as_deref().unwrap_or(&self.cwd);
                    let program =
                        find_program(name, self.env.get("PATH").map(String::as_str), base)
                            .map_err(|reason| {
                                let origin = layers.pick("command", |l| &l.command).map(|(_, o)| o);
                                let origin = origin.unwrap_or(Origin::CommandLine);
                                ConfigError::invalid(
                                    name,
                                    &origin.name_of("PROGRAM", "command"),
                                    &origin,
                                    &reason,
                                )
                            })?;
                    settings.program = Some(program);
                }
            }
        }
        Ok(if let Some(version) = probe {
            Startup::Probe(version)
        } else if print {
            Startup::PrintConfig(settings)
        } else if check {
            Startup::CheckConfig(settings)
        } else {
            Startup::Run(settings)
        })
    }

    /// The worker class and what it runs must agree: `-k command` runs a
    /// command and no APP, `sync` an APP and no command.
    fn check_worker_class(
        &self,
        settings: &Settings,
        layers: &Layers<'_>,
    ) -> Result<(), ConfigError> {
        let origin_of = |key: &str, flag: &str, found: Option<Origin>| {
            let origin = found.unwrap_or(Origin::CommandLine);
            format!("{}{origin}", origin.name_of(flag, key))
        };
        match settings.worker_class {
            WorkerClass::Sync | WorkerClass::Gthread if !settings.command.is_empty() => {
                let given = origin_of(
                    "command",
                    "a command after --",
                    layers.pick("command", |l| &l.command).map(|(_, o)| o),
                );
                Err(ConfigError::new(format!(
                    "{given} runs only with -k command (worker_class = \"command\"); the worker class is {}",
                    settings.worker_class.name()
                )))
            }
            WorkerClass::Command if settings.app.is_some() => {
                let given = origin_of("app", "APP", layers.pick("app", |l| &l.app).map(|(_, o)| o));
                Err(ConfigError::new(format!(
                    "{given} is not used with -k command, whose workers run the command given after --; \
                     give one or the other"
                )))
            }
            _ => Ok(()),
        }
    }

    /// `GUNICORN_CMD_ARGS`, split like a shell would and parsed like argv.
    fn cmd_args_from_env(&self) -> Result<Parsed, ConfigError> {
        let Some(text) = self.env.get("GUNICORN_CMD_ARGS") else {
            return Ok(Parsed::Layer(Box::default()));
        };
        let words = shlex::split(text).ok_or_else(|| {
            ConfigError::new("cannot split GUNICORN_CMD_ARGS: unbalanced quotes or trailing \\")
        })?;
        let argv =
            std::iter::once(OsString::from("gunicornd")).chain(words.into_iter().map(Into::into));
        parse_layer(argv, &Origin::CmdArgsEnv)
    }

    /// The config file named by `-c` (command line first, then
    /// `GUNICORN_CMD_ARGS`), else `./gunicornd.toml` if it exists.
    fn config_file(&self, cli: &Cli, env_args: &Cli) -> Result<Option<FileLayer>, ConfigError> {
        let path = match cli.config.as_ref().or(env_args.config.as_ref()) {
            Some(path) => self.cwd.join(path),
            None => {
                let default = self.cwd.join(defaults::CONFIG_FILE);
                if !default.exists() {
                    return Ok(None);
                }
                default
            }
        };
        file::read(&path).map(Some)
    }

    /// Apply precedence and the checks that need the other settings.
    fn merge(&self, layers: &Layers<'_>) -> Result<Settings, ConfigError> {
        let chdir = match layers.pick("chdir", |l| &l.chdir) {
            Some((dir, origin)) => {
                Some(existing_dir(&self.cwd, &dir, "--chdir", "chdir", &origin)?)
            }
            None => None,
        };
        // Relative paths in other settings are taken from the app directory,
        // where gunicorn would be when it opens them.
        let base = chdir.clone().unwrap_or_else(|| self.cwd.clone());
        let worker_tmp_dir = match layers.pick("worker_tmp_dir", |l| &l.worker_tmp_dir) {
            Some((dir, origin)) => Some(existing_dir(
                &base,
                &dir,
                "--worker-tmp-dir",
                "worker_tmp_dir",
                &origin,
            )?),
            None => None,
        };
        let bind = match layers.pick("bind", |l| &l.bind) {
            Some((bind, _)) => bind,
            None => vec![self.default_bind()?],
        };
        let binds = bind
            .iter()
            .map(|b| {
                let addr = parse_address(b, values::DEFAULT_PORT)
                    .map_err(|reason| ConfigError::new(format!("invalid bind '{b}': {reason}")))?;
                Ok(match addr {
                    BindAddr::Unix(path) => BindAddr::Unix(base.join(path)),
                    other => other,
                })
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let workers = match layers.pick("workers", |l| &l.workers) {
            Some((n, _)) => n,
            None => self.default_workers()?,
        };
        let log_path = |log: String| {
            if log == "-" {
                log
            } else {
                base.join(log).to_string_lossy().into_owned()
            }
        };
        // Unset means the master applies the default rule
        // (gunicornd::control::paths), which needs the pidfile and name.
        let control_socket = layers
            .pick("control_socket", |l| &l.control_socket)
            .map(|(path, _)| base.join(path));
        let front = self.front_end(layers, &base, &binds)?;
        Ok(Settings {
            app: layers.value("app", |l| &l.app),
            config: layers.file.map(|f| f.path.clone()),
            bind,
            binds,
            backlog: layers.value_or("backlog", |l| &l.backlog, defaults::BACKLOG),
            workers,
            worker_class: layers.value_or(
                "worker_class",
                |l| &l.worker_class,
                defaults::WORKER_CLASS,
            ),
            command: layers.value_or("command", |l| &l.command, Vec::new()),
            program: None,
            timeout: layers.value_or("timeout", |l| &l.timeout, defaults::TIMEOUT),
            graceful_timeout: layers.value_or(
                "graceful_timeout",
                |l| &l.graceful_timeout,
                defaults::GRACEFUL_TIMEOUT,
            ),
            upgrade_timeout: layers.value_or(
                "upgrade_timeout",
                |l| &l.upgrade_timeout,
                defaults::UPGRADE_TIMEOUT,
            ),
            upgrade_mode: layers.value_or(
                "upgrade_mode",
                |l| &l.upgrade_mode,
                defaults::UPGRADE_MODE,
            ),
            boot_grace: layers.value_or("boot_grace", |l| &l.boot_grace, defaults::BOOT_GRACE),
            halt_on_boot_error: layers.value_or(
                "halt_on_boot_error",
                |l| &l.halt_on_boot_error,
                defaults::HALT_ON_BOOT_ERROR,
            ),
            header_timeout: layers.value_or(
                "header_timeout",
                |l| &l.header_timeout,
                defaults::HEADER_TIMEOUT,
            ),
            body_timeout: layers.value_or(
                "body_timeout",
                |l| &l.body_timeout,
                defaults::BODY_TIMEOUT,
            ),
            body_buffer: layers.value_or("body_buffer", |l| &l.body_buffer, defaults::BODY_BUFFER),
            worker_connections: layers.value_or(
                "worker_connections",
                |l| &l.worker_connections,
                defaults::WORKER_CONNECTIONS,
            ),
            max_requests: layers.value_or(
                "max_requests",
                |l| &l.max_requests,
                defaults::MAX_REQUESTS,
            ),
            max_requests_jitter: layers.value_or(
                "max_requests_jitter",
                |l| &l.max_requests_jitter,
                defaults::MAX_REQUESTS_JITTER,
            ),
            threads: layers.value_or("threads", |l| &l.threads, defaults::THREADS),
            keepalive: layers.value_or("keepalive", |l| &l.keepalive, defaults::KEEPALIVE),
            limit_request_line: values::normalize_limit_request_line(layers.value_or(
                "limit_request_line",
                |l| &l.limit_request_line,
                defaults::LIMIT_REQUEST_LINE,
            )),
            limit_request_fields: values::normalize_limit_request_fields(layers.value_or(
                "limit_request_fields",
                |l| &l.limit_request_fields,
                defaults::LIMIT_REQUEST_FIELDS,
            )),
            limit_request_field_size: values::normalize_limit_request_field_size(layers.value_or(
                "limit_request_field_size",
                |l| &l.limit_request_field_size,
                defaults::LIMIT_REQUEST_FIELD_SIZE,
            )),
            permit_unconventional_http_method: layers.flag(|l| l.permit_unconventional_http_method),
            casefold_http_method: layers.flag(|l| l.casefold_http_method),
            permit_unconventional_http_version: layers
                .flag(|l| l.permit_unconventional_http_version),
            permit_obsolete_folding: layers.flag(|l| l.permit_obsolete_folding),
            header_map: layers.value_or("header_map", |l| &l.header_map, defaults::HEADER_MAP),
            forwarder_headers: layers.value_or(
                "forwarder_headers",
                |l| &l.forwarder_headers,
                defaults::FORWARDER_HEADERS.map(String::from).to_vec(),
            ),
            raw_env: layers.value_or("raw_env", |l| &l.raw_env, Vec::new()),
            chdir,
            pythonpath: layers.value_or("pythonpath", |l| &l.pythonpath, Vec::new()),
            preload_app: layers.flag(|l| l.preload_app),
            user: layers.value("user", |l| &l.user),
            group: layers.value("group", |l| &l.group),
            static_dotfiles: layers.flag(|l| l.static_dotfiles),
            umask: layers.value_or("umask", |l| &l.umask, defaults::UMASK),
            proc_name: layers.value("proc_name", |l| &l.proc_name),
            worker_tmp_dir,
            accesslog: layers.value("accesslog", |l| &l.accesslog).map(log_path),
            access_log_format: layers.value_or(
                "access_log_format",
                |l| &l.access_log_format,
                defaults::ACCESS_LOG_FORMAT.to_owned(),
            ),
            errorlog: log_path(layers.value_or(
                "errorlog",
                |l| &l.errorlog,
                defaults::ERRORLOG.to_owned(),
            )),
            loglevel: layers.value_or("loglevel", |l| &l.loglevel, defaults::LOGLEVEL.to_owned()),
            hooks: layers.hooks(),
            daemon: layers.flag(|l| l.daemon),
            pidfile: layers
                .value("pidfile", |l| &l.pidfile)
                .map(|p| base.join(p)),
            control_socket,
            control_socket_mode: layers.value_or(
                "control_socket_mode",
                |l| &l.control_socket_mode,
                defaults::CONTROL_SOCKET_MODE,
            ),
            control_socket_disable: layers.flag(|l| l.control_socket_disable),
            control_socket_allow: layers.value_or(
                "control_socket_allow",
                |l| &l.control_socket_allow,
                Vec::new(),
            ),
            control_socket_max_clients: layers.value_or(
                "control_socket_max_clients",
                |l| &l.control_socket_max_clients,
                defaults::CONTROL_SOCKET_MAX_CLIENTS,
            ),
            certfile: front.certfile,
            keyfile: front.keyfile,
            ca_certs: front.ca_certs,
            cert_reqs: front.cert_reqs,
            ciphers: front.ciphers,
            ssl_version: layers.value("ssl_version", |l| &l.ssl_version),
            tls_min_version: front.tls_min_version,
            do_handshake_on_connect: layers.flag(|l| l.do_handshake_on_connect),
            tls_bind: front.tls_bind,
            tls_binds: front.tls_binds,
            tls: front.tls,
            proxy_protocol: layers.value_or(
                "proxy_protocol",
                |l| &l.proxy_protocol,
                crate::http::proxy::ProxyMode::Off,
            ),
            proxy_allow_ips: layers.value_or(
                "proxy_allow_ips",
                |l| &l.proxy_allow_ips,
                crate::http::forwarded::AllowList::loopback(),
            ),
            forwarded_allow_ips: front.forwarded_allow_ips,
            secure_scheme_headers: layers.value_or(
                "secure_scheme_headers",
                |l| &l.secure_scheme_headers,
                crate::http::forwarded::DEFAULT_SECURE_SCHEME_HEADERS
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
            ),
        })
    }

    /// The TLS and trusted-front-end settings that need more than a value:
    /// paths from `base`, the files read and checked (so that a reload with
    /// a broken certificate fails and the running one stays), the
    /// `FORWARDED_ALLOW_IPS` default.
    fn front_end(
        &self,
        layers: &Layers<'_>,
        base: &Path,
        binds: &[BindAddr],
    ) -> Result<FrontEnd, ConfigError> {
        use crate::tls::{Acceptor, ListenerTls, TlsFiles};
        let path = |key: &str, get: fn(&Cli) -> &Option<PathBuf>| {
            layers.value(key, get).map(|p| base.join(p))
        };
        let certfile = path("certfile", |l| &l.certfile);
        let keyfile = path("keyfile", |l| &l.keyfile);
        let ca_certs = path("ca_certs", |l| &l.ca_certs);
        let cert_reqs = layers.value_or("cert_reqs", |l| &l.cert_reqs, Default::default());
        let ciphers = layers.value("ciphers", |l| &l.ciphers);
        let tls_min_version = layers.value_or(
            "tls_min_version",
            |l| &l.tls_min_version,
            Default::default(),
        );
        let tls_bind = layers.value_or("tls_bind", |l| &l.tls_bind, Vec::new());
        let load = |cert: &PathBuf, key: Option<&PathBuf>| {
            Acceptor::load(&TlsFiles {
                certfile: cert.clone(),
                keyfile: key.unwrap_or(cert).clone(),
                ca_certs: ca_certs.clone(),
                cert_reqs,
                ciphers: ciphers.clone(),
                min_version: tls_min_version,
            })
            .map_err(|e| ConfigError::new(format!("TLS: {e}")))
        };
        // A bind named for TLS must be one that is bound.
        let bound = |text: &str, key: &str| -> Result<BindAddr, ConfigError> {
            let addr = parse_address(text, values::DEFAULT_PORT)
                .map(|addr| match addr {
                    BindAddr::Unix(path) => BindAddr::Unix(base.join(path)),
                    other => other,
                })
                .map_err(|reason| ConfigError::new(format!("invalid {key} '{text}': {reason}")))?;
            if !binds.contains(&addr) {
                return Err(ConfigError::new(format!(
                    "{key} '{text}' is not one of the binds ({})",
                    binds
                        .iter()
                        .map(|b| b.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            Ok(addr)
        };
        let tls_binds: Vec<crate::tls::TlsBind> = layers
            .value("tls_binds", |l| &l.tls_binds)
            .unwrap_or_default()
            .into_iter()
            .map(|entry| crate::tls::TlsBind {
                certfile: base.join(&entry.certfile),
                keyfile: entry.keyfile.map(|k| base.join(k)),
                bind: entry.bind,
            })
            .collect();
        let per_bind = tls_binds
            .iter()
            .map(|entry| {
                Ok((
                    bound(&entry.bind, "tls_binds")?,
                    load(&entry.certfile, entry.keyfile.as_ref())?,
                ))
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let acceptor = match (&certfile, &keyfile) {
            (None, None) => None,
            (None, Some(key)) => {
                return Err(ConfigError::new(format!(
                    "--keyfile {} without --certfile: TLS needs a certificate",
                    key.display()
                )))
            }
            // As in gunicorn (Python's load_cert_chain), the key may be in
            // the certificate file.
            (Some(cert), key) => Some(load(cert, key.as_ref())?),
        };
        if acceptor.is_none() && !tls_bind.is_empty() {
            return Err(ConfigError::new(
                "tls_bind without certfile: which certificate should those binds serve?",
            ));
        }
        let only = tls_bind
            .iter()
            .map(|b| bound(b, "tls_bind"))
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let forwarded_allow_ips =
            match layers.value("forwarded_allow_ips", |l| &l.forwarded_allow_ips) {
                Some(list) => list,
                None => match self.env.get("FORWARDED_ALLOW_IPS") {
                    Some(text) => values::allow_list(text).map_err(|reason| {
                        ConfigError::invalid(
                            text,
                            "FORWARDED_ALLOW_IPS",
                            &Origin::EnvVar("FORWARDED_ALLOW_IPS"),
                            &reason,
                        )
                    })?,
                    None => crate::http::forwarded::AllowList::loopback(),
                },
            };
        Ok(FrontEnd {
            certfile,
            keyfile,
            ca_certs,
            cert_reqs,
            ciphers,
            tls_min_version,
            tls_bind,
            tls_binds,
            tls: ListenerTls {
                acceptor,
                only,
                per_bind,
            },
            forwarded_allow_ips,
        })
    }

    /// `0.0.0.0:$PORT` if `PORT` is set (and not empty), else `127.0.0.1:8000`.
    fn default_bind(&self) -> Result<String, ConfigError> {
        match self.env.get("PORT").filter(|p| !p.is_empty()) {
            None => Ok(defaults::BIND.to_owned()),
            Some(port) => {
                let bind = format!("{}:{port}", defaults::PORT_HOST);
                values::bind(&bind).map_err(|reason| {
                    ConfigError::invalid(port, "PORT", &Origin::EnvVar("PORT"), &reason)
                })
            }
        }
    }

    /// `$WEB_CONCURRENCY` if set (and not empty), else 1.
    fn default_workers(&self) -> Result<usize, ConfigError> {
        match self.env.get("WEB_CONCURRENCY").filter(|w| !w.is_empty()) {
            None => Ok(defaults::WORKERS),
            Some(text) => values::positive_int(text).map_err(|reason| {
                ConfigError::invalid(
                    text,
                    "WEB_CONCURRENCY",
                    &Origin::EnvVar("WEB_CONCURRENCY"),
                    &reason,
                )
            }),
        }
    }
}

/// What [`Loader::front_end`] works out.
struct FrontEnd {
    certfile: Option<PathBuf>,
    keyfile: Option<PathBuf>,
    ca_certs: Option<PathBuf>,
    cert_reqs: crate::tls::CertReqs,
    ciphers: Option<String>,
    tls_min_version: crate::tls::MinVersion,
    tls_bind: Vec<String>,
    tls_binds: Vec<crate::tls::TlsBind>,
    tls: crate::tls::ListenerTls,
    forwarded_allow_ips: crate::http::forwarded::AllowList,
}

/// `base/dir`, which must be an existing directory.
fn existing_dir(
    base: &Path,
    dir: &Path,
    flag: &str,
    key: &str,
    origin: &Origin,
) -> Result<PathBuf, ConfigError> {
    let full = base.join(dir);
    if full.is_dir() {
        Ok(full)
    } else {
        Err(ConfigError::invalid(
            &dir.to_string_lossy(),
            &origin.name_of(flag, key),
            origin,
            "not an existing directory",
        ))
    }
}

/// Where `name` (a command worker's PROGRAM) is: with a slash, the file it
/// names (relative to `base`); without one, the first executable file of
/// that name in the directories of `path` (`execvp`'s rule, applied once
/// here so that every worker runs the same file and a missing program is a
/// configuration error, not a crash loop).
fn find_program(name: &str, path: Option<&str>, base: &Path) -> Result<PathBuf, String> {
    let executable = |candidate: &Path| {
        candidate.is_file()
            && nix::unistd::access(candidate, nix::unistd::AccessFlags::X_OK).is_ok()
    };
    if name.is_empty() {
        return Err("expected a program to run".to_owned());
    }
    if name.contains('/') {
        let program = base.join(name);
        return if executable(&program) {
            Ok(program)
        } else if program.exists() {
            Err(format!("{} is not an executable file", program.display()))
        } else {
            Err(format!("{} does not exist", program.display()))
        };
    }
    let path = path.unwrap_or(DEFAULT_PATH);
    std::env::split_paths(path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| base.join(dir).join(name))
        .find(|candidate| executable(candidate))
        .ok_or_else(|| format!("no executable file of that name on PATH ({path})"))
}

/// The search path when `PATH` is unset (what `execvp` uses).
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The result of parsing one argv.
enum Parsed {
    Layer(Box<Cli>),
    /// `--help`/`--version`: exit code and text to print.
    Exit(i32, String),
}

fn parse_layer(
    args: impl IntoIterator<Item = OsString>,
    origin: &Origin,
) -> Result<Parsed, ConfigError> {
    match Cli::try_parse_from(args) {
        Ok(cli) => Ok(Parsed::Layer(Box::new(cli))),
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            Ok(Parsed::Exit(0, e.render().to_string()))
        }
        Err(e) => Err(ConfigError::from_clap(&e, origin)),
    }
}

/// The three layers, highest precedence first.
struct Layers<'a> {
    cli: &'a Cli,
    env_args: &'a Cli,
    file: Option<&'a FileLayer>,
}

impl Layers<'_> {
    /// The value of a setting from the highest layer that gives it, and where
    /// it came from. `key` is the config-file key (for the file's line).
    fn pick<T: Clone>(&self, key: &str, get: impl Fn(&Cli) -> &Option<T>) -> Option<(T, Origin)> {
        if let Some(v) = get(self.cli) {
            return Some((v.clone(), Origin::CommandLine));
        }
        if let Some(v) = get(self.env_args) {
            return Some((v.clone(), Origin::CmdArgsEnv));
        }
        let file = self.file?;
        get(&file.layer).clone().map(|v| (v, file.origin(key)))
    }

    fn value<T: Clone>(&self, key: &str, get: impl Fn(&Cli) -> &Option<T>) -> Option<T> {
        self.pick(key, get).map(|(v, _)| v)
    }

    fn value_or<T: Clone>(&self, key: &str, get: impl Fn(&Cli) -> &Option<T>, default: T) -> T {
        self.value(key, get).unwrap_or(default)
    }

    /// A switch is on if any layer turns it on (none can turn it off, as in
    /// gunicorn).
    fn flag(&self, get: impl Fn(&Cli) -> bool) -> bool {
        get(self.cli) || get(self.env_args) || self.file.is_some_and(|f| get(&f.layer))
    }

    /// Hooks merge by name, a higher layer replacing a lower one's command.
    fn hooks(&self) -> BTreeMap<String, String> {
        let lowest_first = [
            self.file.map(|f| &f.layer),
            Some(self.env_args),
            Some(self.cli),
        ];
        lowest_first
            .into_iter()
            .flatten()
            .filter_map(|layer| layer.hooks.as_ref())
            .flatten()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UpgradeMode;
    use crate::http::HeaderMap;

    fn loader(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Loader {
        let args = std::iter::once("gunicornd")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect();
        let env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Loader::new(args, env).with_cwd(dir)
    }

    fn run_settings(l: &Loader) -> Settings {
        match l.load() {
            Ok(Startup::Run(s)) => s,
            other => panic!("expected Run, got {other:?}"),
        }
    }

    #[test]
    fn precedence_file_then_env_args_then_cli() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("gunicornd.toml"),
            "workers = 2\ntimeout = 5\nbacklog = 10\nloglevel = \"debug\"\n",
        )
        .unwrap();
        let env = [("GUNICORN_CMD_ARGS", "-w 3 -t 6"), ("WEB_CONCURRENCY", "9")];
        let s = run_settings(&loader(dir.path(), &["-w", "4", "builtin:hello"], &env));
        assert_eq!((s.workers, s.timeout, s.backlog), (4, 6, 10));
        assert_eq!(s.loglevel, "debug");
        assert_eq!(s.config, Some(dir.path().join("gunicornd.toml")));
    }

    #[test]
    fn upgrade_mode_from_each_source_or_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let s = run_settings(&loader(dir.path(), &["builtin:hello"], &[]));
        assert_eq!(s.upgrade_mode, UpgradeMode::Fork);
        std::fs::write(
            dir.path().join("gunicornd.toml"),
            "upgrade_mode = \"in-place\"\n",
        )
        .unwrap();
        let s = run_settings(&loader(dir.path(), &["builtin:hello"], &[]));
        assert_eq!(s.upgrade_mode, UpgradeMode::InPlace);
        let env = [("GUNICORN_CMD_ARGS", "--upgrade-mode fork")];
        let s = run_settings(&loader(dir.path(), &["builtin:hello"], &env));
        assert_eq!(s.upgrade_mode, UpgradeMode::Fork);
        let args = ["--upgrade-mode", "in-place", "builtin:hello"];
        let s = run_settings(&loader(dir.path(), &args, &env));
        assert_eq!(s.upgrade_mode, UpgradeMode::InPlace);
        let args = ["--upgrade-mode", "exec", "builtin:hello"];
        assert!(loader(dir.path(), &args, &[]).load().is_err());
    }

    #[test]
    fn upgrade_timeout_from_each_source_or_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let s = run_settings(&loader(dir.path(), &["builtin:hello"], &[]));
        assert_eq!(s.upgrade_timeout, defaults::UPGRADE_TIMEOUT);
        std::fs::write(dir.path().join("gunicornd.toml"), "upgrade_timeout = 10\n").unwrap();
        let s = run_settings(&loader(dir.path(), &["builtin:hello"], &[]));
        assert_eq!(s.upgrade_timeout, 10);
        let env = [("GUNICORN_CMD_ARGS", "--upgrade-timeout 20")];
        let s = run_settings(&loader(dir.path(), &["builtin:hello"], &env));
        assert_eq!(s.upgrade_timeout, 20);
        let args = ["--upgrade-timeout", "30", "builtin:hello"];
        let s = run_settings(&loader(dir.path(), &args, &env));
        assert_eq!(s.upgrade_timeout, 30);
        // The other timeouts are their own settings.
        assert_eq!(
            (s.timeout, s.graceful_timeout),
            (defaults::TIMEOUT, defaults::GRACEFUL_TIMEOUT)
        );

        let args = ["--upgrade-timeout", "31536001", "builtin:hello"];
        let err = loader(dir.path(), &args, &[]).load().unwrap_err();
        assert_eq!(
            err.message,
            "invalid value '31536001' for --upgrade-timeout: expected at most 31536000 seconds \
             (a year)"
        );
    }

    #[test]
    fn pythonpath_from_each_source_or_the_default() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("app")).unwrap();
        let paths = |dirs: &[&str]| dirs.iter().map(PathBuf::from).collect::<Vec<_>>();
        let s = run_settings(&loader(dir.path(), &["builtin:hello"], &[]));
        assert_eq!(s.pythonpath, paths(&[]));
        std::fs::write(
            dir.path().join("gunicornd.toml"),
            "pythonpath = [\"file\", \"lib\"]\n",
        )
        .unwrap();
        let s = run_settings(&loader(dir.path(), &["builtin:hello"], &[]));
        assert_eq!(s.pythonpath, paths(&["file", "lib"]));
        // A higher source replaces the list; it does not add to it.
        let env = [("GUNICORN_CMD_ARGS", "--pythonpath 'env, /opt/lib'")];
        let s = run_settings(&loader(dir.path(), &["builtin:hello"], &env));
        assert_eq!(s.pythonpath, paths(&["env", "/opt/lib"]));
        // Relative directories stay as given, even with --chdir: the worker
        // resolves them from its working directory, which is that one.
        let args = ["--chdir", "app", "--pythonpath", "cli", "builtin:hello"];
        let s = run_settings(&loader(dir.path(), &args, &env));
        assert_eq!(s.pythonpath, paths(&["cli"]));
        // The last --pythonpath wins, as in gunicorn; an empty one clears
        // the lower sources' list.
        let args = ["--pythonpath", "a,b", "--pythonpath", "c", "builtin:hello"];
        let s = run_settings(&loader(dir.path(), &args, &env));
        assert_eq!(s.pythonpath, paths(&["c"]));
        let args = ["--pythonpath", "", "builtin:hello"];
        let s = run_settings(&loader(dir.path(), &args, &env));
        assert_eq!(s.pythonpath, paths(&[]));
    }

    #[test]
    fn static_dotfiles_from_each_source_or_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let app = "static:.";
        let s = run_settings(&loader(dir.path(), &[app], &[]));
        assert!(!s.static_dotfiles);
        let s = run_settings(&loader(dir.path(), &["--static-dotfiles", app], &[]));
        assert!(s.static_dotfiles);
        let env = [("GUNICORN_CMD_ARGS", "--static-dotfiles")];
        assert!(run_settings(&loader(dir.path(), &[app], &env)).static_dotfiles);
        std::fs::write(
            dir.path().join("gunicornd.toml"),
            "static_dotfiles = true\n",
        )
        .unwrap();
        assert!(run_settings(&loader(dir.path(), &[app], &[])).static_dotfiles);
        std::fs::write(dir.path().join("gunicornd.toml"), "static_dotfiles = 1\n").unwrap();
        let err = loader(dir.path(), &[app], &[]).load().unwrap_err();
        assert!(
            err.message.starts_with("wrong type for static_dotfiles"),
            "{}",
            err.message
        );
    }

    #[test]
    fn preload_app_from_each_source_or_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let s = run_settings(&loader(dir.path(), &["builtin:hello"], &[]));
        assert!(!s.preload_app);
        let s = run_settings(&loader(dir.path(), &["--preload", "builtin:hello"], &[]));
        assert!(s.preload_app);
        let env = [("GUNICORN_CMD_ARGS", "--preload")];
        let s = run_settings(&loader(dir.path(), &["builtin:hello"], &env));
        assert!(s.preload_app);
        std::fs::write(dir.path().join("gunicornd.toml"), "preload_app = true\n").unwrap();
        let s = run_settings(&loader(dir.path(), &["builtin:hello"], &[]));
        assert!(s.preload_app);
        // Like every switch, no source can turn it off once one turned it on.
        std::fs::write(dir.path().join("gunicornd.toml"), "preload = false\n").unwrap();
        let s = run_settings(&loader(dir.path(), &["builtin:hello"], &env));
        assert!(s.preload_app);

        let args = ["--preload=yes", "builtin:hello"];
        let err = loader(dir.path(), &args, &[]).load().unwrap_err();
        assert!(
            err.message
                .starts_with("unexpected value 'yes' for '--preload' found"),
            "{}",
            err.message
        );
    }

    #[test]
    fn environment_defaults_apply_only_when_unset() {
        let dir = tempfile::tempdir().unwrap();
        let env = [("PORT", "5000"), ("WEB_CONCURRENCY", "3")];
        let s = run_settings(&loader(dir.path(), &["builtin:hello"], &env));
        assert_eq!(s.bind, ["0.0.0.0:5000"]);
        assert_eq!(s.workers, 3);
        // A bad PORT does not matter once a bind is given.
        let env = [("PORT", "nope"), ("WEB_CONCURRENCY", "")];
        let s = run_settings(&loader(
            dir.path(),
            &["-b", "[::1]:1", "builtin:hello"],
            &env,
        ));
        assert_eq!(
            s.binds,
            [BindAddr::Tcp {
                host: "::1".into(),
                port: 1
            }]
        );
        assert_eq!(s.workers, 1);
        let err = loader(dir.path(), &["builtin:hello"], &[("PORT", "nope")])
            .load()
            .unwrap_err();
        assert_eq!(
            err.message,
            "invalid value 'nope' for PORT (from the environment): 'nope' is not a valid port number"
        );
    }

    #[test]
    fn paths_resolve_against_chdir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("app/tmp")).unwrap();
        let args = [
            "--chdir",
            "app",
            "--worker-tmp-dir",
            "tmp",
            "-p",
            "g.pid",
            "-b",
            "unix:s.sock",
            "--access-logfile",
            "a.log",
            "--control-socket",
            "c.sock",
            "builtin:hello",
        ];
        let s = run_settings(&loader(dir.path(), &args, &[]));
        let app = dir.path().join("app");
        assert_eq!(s.chdir.as_deref(), Some(app.as_path()));
        assert_eq!(s.worker_tmp_dir, Some(app.join("tmp")));
        assert_eq!(s.pidfile, Some(app.join("g.pid")));
        assert_eq!(s.binds, [BindAddr::Unix(app.join("s.sock"))]);
        assert_eq!(s.bind, ["unix:s.sock"]);
        assert_eq!(
            s.accesslog,
            Some(app.join("a.log").to_string_lossy().into_owned())
        );
        assert_eq!(s.errorlog, "-");
        assert_eq!(s.control_socket, Some(app.join("c.sock")));
    }

    #[test]
    fn hooks_merge_by_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("gunicornd.toml"),
            "[hooks]\non_starting = \"file-start\"\non_exit = \"file-exit\"\n",
        )
        .unwrap();
        let env = [("GUNICORN_CMD_ARGS", "--hook 'pre_fork=env fork'")];
        let s = run_settings(&loader(
            dir.path(),
            &["--hook", "on_exit=cli-exit", "builtin:hello"],
            &env,
        ));
        let hooks: Vec<_> = s
            .hooks
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            hooks,
            [
                ("on_exit", "cli-exit"),
                ("on_starting", "file-start"),
                ("pre_fork", "env fork")
            ]
        );
    }

    #[test]
    fn printed_config_reads_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("app")).unwrap();
        let args = [
            "--print-config",
            "-w",
            "5",
            "-b",
            "unix:x.sock",
            "-b",
            "[::1]:9",
            "-e",
            "A=b=c",
            "-e",
            "Q=\"'\\",
            "-m",
            "027",
            "--chdir",
            "app",
            "-u",
            "0",
            "-g",
            "0",
            "-n",
            "web",
            "--access-logfile",
            "-",
            "--log-level",
            "ERROR",
            "-D",
            "-p",
            "p.pid",
            "--control-socket-mode",
            "660",
            "--no-control-socket",
            "--control-socket-allow",
            "0",
            "--control-socket-allow",
            "65534",
            "--control-socket-max-clients",
            "0x20",
            "--limit-request-line",
            "0",
            "--limit-request-fields",
            "0",
            "--upgrade-timeout",
            "90",
            "--boot-grace",
            "7",
            "--halt-on-boot-error=false",
            "--pythonpath",
            " lib ,/opt/py lib,,",
            "--preload",
            "--permit-unconventional-http-method",
            "--casefold-http-method",
            "--permit-unconventional-http-version",
            "--permit-obsolete-folding",
            "--header-map",
            "Dangerous",
            "--forwarder-headers",
            "remote_user,*",
            "--hook",
            "on_exit=echo \"bye\"\n",
            "builtin:debug?boot_sleep=1",
        ];
        let printed = match loader(dir.path(), &args, &[]).load() {
            Ok(Startup::PrintConfig(s)) => s,
            other => panic!("expected PrintConfig, got {other:?}"),
        };
        let again_dir = tempfile::tempdir().unwrap();
        std::fs::write(again_dir.path().join("gunicornd.toml"), printed.to_toml()).unwrap();
        let mut again = run_settings(&loader(again_dir.path(), &[], &[]));
        assert_eq!(again.config, Some(again_dir.path().join("gunicornd.toml")));
        again.config = None;
        assert_eq!(again, printed);
        assert_eq!(again.umask, 0o27);
        assert_eq!(again.control_socket_mode, 0o660);
        assert_eq!(again.control_socket_allow, [0, 65534]);
        assert_eq!(again.control_socket_max_clients, 32);
        assert_eq!(again.limit_request_fields, values::MAX_HEADERS);
        assert_eq!(again.upgrade_timeout, 90);
        assert_eq!(
            again.pythonpath,
            [PathBuf::from("lib"), PathBuf::from("/opt/py lib")]
        );
        assert!(again.preload_app);
        assert!(again.permit_unconventional_http_method && again.casefold_http_method);
        assert!(again.permit_unconventional_http_version && again.permit_obsolete_folding);
        assert_eq!(again.header_map, HeaderMap::Dangerous);
        assert_eq!(again.forwarder_headers, ["REMOTE_USER", "*"]);
    }

    #[test]
    fn http_parsing_settings_from_each_source_or_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let s = run_settings(&loader(dir.path(), &["builtin:echo"], &[]));
        assert!(!s.permit_unconventional_http_method && !s.casefold_http_method);
        assert!(!s.permit_unconventional_http_version && !s.permit_obsolete_folding);
        assert_eq!(s.header_map, HeaderMap::Drop);
        assert_eq!(s.forwarder_headers, ["SCRIPT_NAME", "PATH_INFO"]);

        std::fs::write(
            dir.path().join("gunicornd.toml"),
            "permit_obsolete_folding = true\nheader_map = \"refuse\"\n\
             forwarder_headers = [\"remote_user\", \"x_a, x_b\"]\n",
        )
        .unwrap();
        let s = run_settings(&loader(dir.path(), &["builtin:echo"], &[]));
        assert!(s.permit_obsolete_folding);
        assert_eq!(s.header_map, HeaderMap::Refuse);
        assert_eq!(s.forwarder_headers, ["REMOTE_USER", "X_A", "X_B"]);
        let env = [(
            "GUNICORN_CMD_ARGS",
            "--header-map dangerous --forwarder-headers= --casefold-http-method",
        )];
        let s = run_settings(&loader(dir.path(), &["builtin:echo"], &env));
        assert_eq!(s.header_map, HeaderMap::Dangerous);
        assert!(
            s.forwarder_headers.is_empty(),
            "an empty list clears the file's"
        );
        assert!(s.casefold_http_method && s.permit_obsolete_folding);
        let args = ["--header-map", "drop", "builtin:echo"];
        let s = run_settings(&loader(dir.path(), &args, &env));
        assert_eq!(s.header_map, HeaderMap::Drop);

        let err = loader(dir.path(), &["--header-map", "keep", "builtin:echo"], &[])
            .load()
            .unwrap_err();
        assert!(
            err.message
                .contains("expected one of drop, refuse, dangerous"),
            "{}",
            err.message
        );
        std::fs::write(
            dir.path().join("gunicornd.toml"),
            "forwarder_headers = \"A B\"\n",
        )
        .unwrap();
        let err = loader(dir.path(), &["builtin:echo"], &[])
            .load()
            .unwrap_err();
        assert!(
            err.message.contains("'A B' is not a header field name"),
            "{}",
            err.message
        );
    }

    #[test]
    fn command_workers_run_the_program_after_the_double_dash() {
        let dir = tempfile::tempdir().unwrap();
        let s = run_settings(&loader(
            dir.path(),
            &["-k", "command", "-w", "2", "--", "sh", "-c", "exec x", ""],
            &[("PATH", "/nonexistent:/usr/bin:/bin")],
        ));
        assert_eq!(s.worker_class, WorkerClass::Command);
        assert_eq!(s.command, ["sh", "-c", "exec x", ""]);
        let program = s.program.unwrap();
        assert!(
            program.is_absolute() && program.ends_with("sh"),
            "{program:?}"
        );
        assert_eq!(s.app, None);
        // A relative program is taken from --chdir; the file must be
        // executable.
        std::fs::create_dir(dir.path().join("app")).unwrap();
        let script = dir.path().join("app/run.sh");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        std::fs::write(
            dir.path().join("gunicornd.toml"),
            "worker_class = \"command\"\ncommand = [\"./run.sh\", \"--port=fd\"]\nchdir = \"app\"\n",
        )
        .unwrap();
        let err = loader(dir.path(), &[], &[]).load().unwrap_err();
        assert_eq!(
            err.message,
            format!(
                "invalid value './run.sh' for command (in {}, line 2): {} is not an executable file",
                dir.path().join("gunicornd.toml").display(),
                dir.path().join("app/./run.sh").display()
            )
        );
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let s = run_settings(&loader(dir.path(), &[], &[]));
        assert_eq!(s.program, Some(dir.path().join("app/./run.sh")));
        assert_eq!(s.command, ["./run.sh", "--port=fd"]);
        // The command line replaces the file's command.
        let s = run_settings(&loader(dir.path(), &["--", "true"], &[]));
        assert_eq!(s.command, ["true"]);
        // --check-config finds the program too; --print-config needs none.
        let err = loader(
            dir.path(),
            &["--check-config", "--", "no-such-program-x"],
            &[],
        )
        .load()
        .unwrap_err();
        assert_eq!(
            err.message,
            "invalid value 'no-such-program-x' for PROGRAM: no executable file of that name on \
             PATH (/usr/local/bin:/usr/bin:/bin)"
        );
        assert!(matches!(
            loader(
                dir.path(),
                &["--print-config", "--", "no-such-program-x"],
                &[]
            )
            .load(),
            Ok(Startup::PrintConfig(_))
        ));
    }

    #[test]
    fn the_worker_class_and_what_it_runs_must_agree() {
        let dir = tempfile::tempdir().unwrap();
        let err = loader(dir.path(), &["-k", "command"], &[])
            .load()
            .unwrap_err();
        assert_eq!(err.exit_code, 2);
        assert!(
            err.message.starts_with("No program specified"),
            "{}",
            err.message
        );
        let err = loader(
            dir.path(),
            &["-k", "command", "builtin:hello", "--", "true"],
            &[],
        )
        .load()
        .unwrap_err();
        assert_eq!(
            err.message,
            "APP is not used with -k command, whose workers run the command given after --; \
             give one or the other"
        );
        let err = loader(dir.path(), &["builtin:hello", "--", "true"], &[])
            .load()
            .unwrap_err();
        assert_eq!(
            err.message,
            "a command after -- runs only with -k command (worker_class = \"command\"); the \
             worker class is sync"
        );
        let err = loader(dir.path(), &["-k", "gevent", "builtin:hello"], &[])
            .load()
            .unwrap_err();
        assert_eq!(
            err.message,
            "invalid value 'gevent' for --worker-class: expected one of sync, gthread, command"
        );
        std::fs::write(
            dir.path().join("gunicornd.toml"),
            "worker_class = \"eventlet\"\n",
        )
        .unwrap();
        let err = loader(dir.path(), &["builtin:hello"], &[])
            .load()
            .unwrap_err();
        assert_eq!(
            err.message,
            format!(
                "invalid value 'eventlet' for worker_class (in {}, line 1): expected one of sync, \
                 gthread, command",
                dir.path().join("gunicornd.toml").display()
            )
        );
        std::fs::remove_file(dir.path().join("gunicornd.toml")).unwrap();
        let s = run_settings(&loader(
            dir.path(),
            &["--worker-class", "sync", "builtin:hello"],
            &[],
        ));
        assert_eq!((s.worker_class, s.program), (WorkerClass::Sync, None));
    }

    #[test]
    fn threads_and_keepalive_from_each_source_and_threads_select_gthread() {
        let dir = tempfile::tempdir().unwrap();
        let s = run_settings(&loader(dir.path(), &["builtin:hello"], &[]));
        assert_eq!(
            (s.worker_class, s.threads, s.keepalive),
            (WorkerClass::Sync, 1, 2)
        );
        let s = run_settings(&loader(
            dir.path(),
            &["--threads", "4", "builtin:hello"],
            &[],
        ));
        assert_eq!((s.worker_class, s.threads), (WorkerClass::Gthread, 4));
        let s = run_settings(&loader(
            dir.path(),
            &["-k", "gthread", "--keep-alive", "7", "builtin:hello"],
            &[],
        ));
        assert_eq!(
            (s.worker_class, s.threads, s.keepalive),
            (WorkerClass::Gthread, 1, 7)
        );
        std::fs::write(
            dir.path().join("gunicornd.toml"),
            "worker_class = \"gthread\"\nthreads = 3\nkeepalive = 0\n",
        )
        .unwrap();
        let s = run_settings(&loader(dir.path(), &["builtin:hello"], &[]));
        assert_eq!(
            (s.worker_class, s.threads, s.keepalive),
            (WorkerClass::Gthread, 3, 0)
        );
        let s = run_settings(&loader(
            dir.path(),
            &["builtin:hello"],
            &[("GUNICORN_CMD_ARGS", "--threads 5 --keep-alive 1")],
        ));
        assert_eq!((s.threads, s.keepalive), (5, 1));
        std::fs::remove_file(dir.path().join("gunicornd.toml")).unwrap();
    }

    #[test]
    fn boot_grace_and_halt_on_boot_error_from_each_source_or_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let s = run_settings(&loader(dir.path(), &["builtin:hello"], &[]));
        assert_eq!(s.boot_grace, defaults::BOOT_GRACE);
        assert!(s.halt_on_boot_error);
        std::fs::write(
            dir.path().join("gunicornd.toml"),
            "boot_grace = 5\nhalt_on_boot_error = false\n",
        )
        .unwrap();
        let s = run_settings(&loader(dir.path(), &["builtin:hello"], &[]));
        assert_eq!((s.boot_grace, s.halt_on_boot_error), (5, false));
        let env = [("GUNICORN_CMD_ARGS", "--boot-grace 0 --halt-on-boot-error")];
        let s = run_settings(&loader(dir.path(), &["builtin:hello"], &env));
        assert_eq!((s.boot_grace, s.halt_on_boot_error), (0, true));
        let args = ["--halt-on-boot-error=false", "builtin:hello"];
        let s = run_settings(&loader(dir.path(), &args, &env));
        assert!(!s.halt_on_boot_error);
        let err = loader(
            dir.path(),
            &["--halt-on-boot-error=maybe", "builtin:hello"],
            &[],
        )
        .load()
        .unwrap_err();
        assert_eq!(
            err.message,
            "invalid value 'maybe' for --halt-on-boot-error: expected true or false"
        );
    }

    #[test]
    fn print_config_needs_no_app_but_run_and_check_do() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            loader(dir.path(), &["--print-config"], &[]).load(),
            Ok(Startup::PrintConfig(Settings { app: None, .. }))
        ));
        for args in [&[][..], &["--check-config"][..]] {
            let err = loader(dir.path(), args, &[]).load().unwrap_err();
            assert_eq!(err.exit_code, 2);
            assert_eq!(err.message, "No application specified.");
            assert!(err.usage.unwrap().contains("Usage: gunicornd"));
        }
        assert!(matches!(
            loader(dir.path(), &["--check-config", "static:."], &[]).load(),
            Ok(Startup::CheckConfig(_))
        ));
    }
}
