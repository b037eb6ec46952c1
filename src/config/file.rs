//! The TOML config file, read into the same layer shape as the command line.
//!
//! The document is read as a map of spanned keys to spanned values rather
//! than through a derived struct, so that every error can name the key, the
//! file and the line, and so that values go through the very parsers the
//! command line uses (a file accepts what the CLI accepts, with the same
//! messages).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use toml::{Spanned, Value};

use super::cli::Cli;
use super::error::{ConfigError, Origin};
use super::values;

/// A config file converted to a settings layer.
#[derive(Debug, Clone)]
pub(crate) struct FileLayer {
    pub layer: Cli,
    pub path: PathBuf,
    /// The line each key was found on, for errors found after merging.
    lines: HashMap<String, usize>,
}

impl FileLayer {
    /// Where the setting `key` was given in this file.
    pub fn origin(&self, key: &str) -> Origin {
        Origin::File {
            path: self.path.clone(),
            line: self.lines.get(key).copied(),
        }
    }
}

/// Read and convert the config file at `path` (already absolute).
pub(crate) fn read(path: &Path) -> Result<FileLayer, ConfigError> {
    if path.extension().is_some_and(|e| e == "py") {
        return read_python(path);
    }
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(format!("cannot read config file {}: {e}", path.display()))
    })?;
    parse(&text, path)
}

/// A gunicorn Python configuration file (`-c gunicorn.conf.py`): its plain
/// module-level values are read as the TOML keys of the same names; names
/// gunicornd has no setting for are ignored with a warning (gunicorn files
/// often set things a server of another kind has no use for). Its functions
/// are hooks, which the workers take from the file themselves.
#[cfg(feature = "python")]
fn read_python(path: &Path) -> Result<FileLayer, ConfigError> {
    let values = crate::python::config_file_values(path).map_err(ConfigError::new)?;
    let mut table = toml::Table::new();
    let mut ignored = Vec::new();
    if let Some(settings) = values.get("settings").and_then(|s| s.as_object()) {
        for (key, value) in settings {
            let Some(value) = toml_value(value) else {
                ignored.push(key.clone());
                continue;
            };
            let mut one = toml::Table::new();
            one.insert(key.clone(), value.clone());
            match parse(&one.to_string(), path) {
                Err(e) if e.to_string().starts_with("unknown setting") => ignored.push(key.clone()),
                _ => {
                    table.insert(key.clone(), value);
                }
            }
        }
    }
    if !ignored.is_empty() {
        // Configuration is read before logging is set up.
        eprintln!(
            "gunicornd: warning: {}: ignoring names gunicornd has no setting for: {}",
            path.display(),
            ignored.join(", ")
        );
    }
    parse(&table.to_string(), path)
}

#[cfg(not(feature = "python"))]
fn read_python(path: &Path) -> Result<FileLayer, ConfigError> {
    Err(ConfigError::new(format!(
        "{} is a Python configuration file, but this gunicornd was built without Python: \
         use a TOML file, or build with the default features",
        path.display()
    )))
}

/// A JSON value from a Python config file as TOML (`None` for what TOML
/// cannot hold).
#[cfg(feature = "python")]
fn toml_value(v: &serde_json::Value) -> Option<Value> {
    use serde_json::Value as J;
    Some(match v {
        J::Bool(b) => Value::Boolean(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Float(n.as_f64()?),
        },
        J::String(s) => Value::String(s.clone()),
        J::Array(items) => Value::Array(items.iter().map(toml_value).collect::<Option<_>>()?),
        J::Object(map) => Value::Table(
            map.iter()
                .map(|(k, v)| Some((k.clone(), toml_value(v)?)))
                .collect::<Option<_>>()?,
        ),
        J::Null => return None,
    })
}

/// Convert the text of a config file; `path` is only used in messages.
pub(crate) fn parse(text: &str, path: &Path) -> Result<FileLayer, ConfigError> {
    let doc: BTreeMap<Spanned<String>, Spanned<Value>> = toml::from_str(text).map_err(|e| {
        let origin = Origin::File {
            path: path.to_owned(),
            line: e.span().map(|s| line_of(text, s.start)),
        };
        ConfigError::new(format!(
            "cannot parse config file{origin}: {}",
            e.message().trim_end()
        ))
    })?;
    let mut file = FileLayer {
        layer: Cli::default(),
        path: path.to_owned(),
        lines: HashMap::new(),
    };
    for (key, value) in &doc {
        let line = line_of(text, key.span().start);
        let entry = Entry {
            key: key.get_ref(),
            value: value.get_ref(),
            origin: Origin::File {
                path: path.to_owned(),
                line: Some(line),
            },
        };
        apply(&mut file.layer, &entry)?;
        file.lines.insert(canonical_key(entry.key).to_owned(), line);
    }
    reject_synonym_pairs(&doc, &file)?;
    Ok(file)
}

/// Keys accepted under two names; the first is gunicorn's setting name, the
/// second its command-line option's.
const SYNONYMS: [(&str, &str); 3] = [
    ("raw_env", "env"),
    ("proc_name", "name"),
    ("preload_app", "preload"),
];

fn canonical_key(key: &str) -> &str {
    SYNONYMS
        .iter()
        .find(|(_, alias)| *alias == key)
        .map_or(key, |(name, _)| name)
}

/// A setting given under both of its names is ambiguous.
fn reject_synonym_pairs(
    doc: &BTreeMap<Spanned<String>, Spanned<Value>>,
    file: &FileLayer,
) -> Result<(), ConfigError> {
    let has = |k: &str| doc.keys().any(|key| key.get_ref() == k);
    for (name, alias) in SYNONYMS {
        if has(name) && has(alias) {
            return Err(ConfigError::new(format!(
                "'{name}' and '{alias}' are the same setting; give only one{}",
                file.origin(name)
            )));
        }
    }
    Ok(())
}

/// 1-based line number of byte offset `pos`.
fn line_of(text: &str, pos: usize) -> usize {
    text.as_bytes()[..pos.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// One key/value pair being converted.
struct Entry<'a> {
    key: &'a str,
    value: &'a Value,
    origin: Origin,
}

impl Entry<'_> {
    fn wrong_type(&self, expected: &str) -> ConfigError {
        ConfigError::new(format!(
            "wrong type for {}{}: expected {expected}, found {}",
            self.key,
            self.origin,
            describe(self.value)
        ))
    }

    fn invalid(&self, text: &str, reason: &str) -> ConfigError {
        ConfigError::invalid(text, self.key, &self.origin, reason)
    }

    /// Run `parse` on the value's text, turning its reason into our error.
    fn check<T>(&self, text: &str, parse: fn(&str) -> Result<T, String>) -> Result<T, ConfigError> {
        parse(text).map_err(|reason| self.invalid(text, &reason))
    }

    /// A number, given as an integer or (like gunicorn) as a string.
    fn number<T>(&self, parse: fn(&str) -> Result<T, String>) -> Result<T, ConfigError> {
        match self.value {
            Value::Integer(n) => self.check(&n.to_string(), parse),
            Value::String(s) => self.check(s, parse),
            _ => Err(self.wrong_type("an integer")),
        }
    }

    fn string<T>(&self, parse: fn(&str) -> Result<T, String>) -> Result<T, ConfigError> {
        match self.value {
            Value::String(s) => self.check(s, parse),
            _ => Err(self.wrong_type("a string")),
        }
    }

    fn path(&self) -> Result<PathBuf, ConfigError> {
        self.string(values::non_empty).map(PathBuf::from)
    }

    /// A user or group: a name, or a numeric id as an integer or a string.
    fn id(&self, parse: fn(&str) -> Result<u32, String>) -> Result<u32, ConfigError> {
        match self.value {
            Value::Integer(n) => self.check(&n.to_string(), parse),
            Value::String(s) => self.check(s, parse),
            _ => Err(self.wrong_type("a name or a number")),
        }
    }

    /// Users or groups: one as [`Entry::id`] takes it, or an array of them.
    fn ids(&self, parse: fn(&str) -> Result<u32, String>) -> Result<Vec<u32>, ConfigError> {
        match self.value {
            Value::Array(items) => items
                .iter()
                .map(|value| {
                    let item = Entry {
                        key: self.key,
                        value,
                        origin: self.origin.clone(),
                    };
                    item.id(parse)
                })
                .collect(),
            _ => self.id(parse).map(|id| vec![id]),
        }
    }

    fn boolean(&self) -> Result<bool, ConfigError> {
        match self.value {
            Value::Boolean(b) => Ok(*b),
            Value::String(s) => self.check(s, values::boolean),
            _ => Err(self.wrong_type("true or false")),
        }
    }

    /// A list given as an array of strings, or a single string.
    fn list<T>(&self, parse: fn(&str) -> Result<T, String>) -> Result<Vec<T>, ConfigError> {
        let expected = "a string or an array of strings";
        match self.value {
            Value::String(s) => Ok(vec![self.check(s, parse)?]),
            Value::Array(items) => items
                .iter()
                .map(|item| match item {
                    Value::String(s) => self.check(s, parse),
                    _ => Err(self.wrong_type(expected)),
                })
                .collect(),
            _ => Err(self.wrong_type(expected)),
        }
    }

    // TLS, the PROXY protocol and trusted front ends.

    /// `proxy_protocol`: a mode's name, or a boolean (`true` is `auto`).
    fn proxy_mode(&self) -> Result<crate::http::proxy::ProxyMode, ConfigError> {
        match self.value {
            Value::Boolean(true) => Ok(crate::http::proxy::ProxyMode::Auto),
            Value::Boolean(false) => Ok(crate::http::proxy::ProxyMode::Off),
            _ => self.string(values::proxy_mode),
        }
    }

    /// An allow list: a comma-separated string, or an array of them.
    fn allow_list(&self) -> Result<crate::http::forwarded::AllowList, ConfigError> {
        let words = self.list(|s| Ok(s.to_owned()))?;
        self.check(&words.join(","), values::allow_list)
    }

    /// `secure_scheme_headers`: a table of name = value (gunicorn's dict),
    /// or the command line's `NAME=VALUE,...` string.
    fn scheme_headers(&self) -> Result<Vec<(String, String)>, ConfigError> {
        match self.value {
            Value::Table(table) => table
                .iter()
                .map(|(name, value)| match value {
                    Value::String(v) => {
                        let pair = format!("{name}={v}");
                        Ok(self.check(&pair, values::scheme_headers)?.remove(0))
                    }
                    other => Err(ConfigError::new(format!(
                        "wrong type for {}.{name}{}: expected a string, found {}",
                        self.key,
                        self.origin,
                        describe(other)
                    ))),
                })
                .collect(),
            _ => self.string(values::scheme_headers),
        }
    }

    /// `[tls_binds."ADDRESS"]` tables: `certfile` (required) and `keyfile`.
    fn tls_binds(&self) -> Result<Vec<crate::tls::TlsBind>, ConfigError> {
        let Value::Table(table) = self.value else {
            return Err(self.wrong_type("tables of certfile and keyfile, one per bind"));
        };
        table
            .iter()
            .map(|(bind, entry)| {
                let key = format!("tls_binds.\"{bind}\"");
                let bind = values::bind(bind)
                    .map_err(|reason| ConfigError::invalid(bind, &key, &self.origin, &reason))?;
                let Value::Table(entry) = entry else {
                    return Err(ConfigError::new(format!(
                        "wrong type for {key}{}: expected a table of certfile and keyfile, found {}",
                        self.origin,
                        describe(entry)
                    )));
                };
                let path = |name: &str| -> Result<Option<PathBuf>, ConfigError> {
                    match entry.get(name) {
                        None => Ok(None),
                        Some(Value::String(s)) if !s.is_empty() => Ok(Some(PathBuf::from(s))),
                        Some(other) => Err(ConfigError::new(format!(
                            "wrong type for {key}.{name}{}: expected a path, found {}",
                            self.origin,
                            describe(other)
                        ))),
                    }
                };
                if let Some(unknown) = entry.keys().find(|k| *k != "certfile" && *k != "keyfile") {
                    return Err(ConfigError::new(format!(
                        "unknown key '{unknown}' in [{key}]{}: expected certfile, keyfile",
                        self.origin
                    )));
                }
                let certfile = path("certfile")?.ok_or_else(|| {
                    ConfigError::new(format!("[{key}]{} needs a certfile", self.origin))
                })?;
                Ok(crate::tls::TlsBind {
                    bind,
                    certfile,
                    keyfile: path("keyfile")?,
                })
            })
            .collect()
    }

    /// The control socket's mode: an integer is the mode itself (write it as
    /// `0o600`); a string is read as octal, like `chmod`.
    fn mode(&self) -> Result<u32, ConfigError> {
        match self.value {
            Value::Integer(n) => match u32::try_from(*n) {
                Ok(mode) if mode <= 0o777 => Ok(mode),
                _ => Err(self.invalid(&n.to_string(), "expected a file mode such as 0o600")),
            },
            Value::String(s) => self.check(s, values::octal_mode),
            _ => Err(self.wrong_type("an octal mode such as \"0600\"")),
        }
    }

    /// The `[hooks]` table: hook name → shell command.
    fn hooks(&self) -> Result<Vec<(String, String)>, ConfigError> {
        let Value::Table(table) = self.value else {
            return Err(self.wrong_type("a table of hook = \"command\""));
        };
        table
            .iter()
            .map(|(name, command)| {
                let key = format!("hooks.{name}");
                let Value::String(command) = command else {
                    return Err(ConfigError::new(format!(
                        "wrong type for {key}{}: expected a string, found {}",
                        self.origin,
                        describe(command)
                    )));
                };
                if !values::HOOK_NAMES.contains(&name.as_str()) {
                    return Err(ConfigError::new(format!(
                        "unknown hook '{name}' in [hooks]{}: expected one of {}",
                        self.origin,
                        values::HOOK_NAMES.join(", ")
                    )));
                }
                values::hook_command(name, command)
                    .map(|command| (name.clone(), command))
                    .map_err(|reason| ConfigError::invalid(command, &key, &self.origin, &reason))
            })
            .collect()
    }
}

/// Store one file entry in the layer, or say why it cannot be.
fn apply(layer: &mut Cli, e: &Entry<'_>) -> Result<(), ConfigError> {
    match e.key {
        // `wsgi_app` is gunicorn's name for it (Python config files).
        "app" | "wsgi_app" => layer.app = Some(e.string(values::non_empty)?),
        "bind" => layer.bind = Some(e.list(values::bind)?),
        "backlog" => layer.backlog = Some(e.number(values::backlog)?),
        "workers" => layer.workers = Some(e.number(values::positive_int)?),
        "timeout" => layer.timeout = Some(e.number(values::seconds)?),
        "graceful_timeout" => layer.graceful_timeout = Some(e.number(values::seconds)?),
        "upgrade_timeout" => layer.upgrade_timeout = Some(e.number(values::seconds)?),
        "upgrade_mode" => layer.upgrade_mode = Some(e.string(values::upgrade_mode)?),
        "worker_class" => layer.worker_class = Some(e.string(values::worker_class)?),
        "command" => layer.command = Some(e.list(values::command_word)?),
        "boot_grace" => layer.boot_grace = Some(e.number(values::seconds)?),
        "halt_on_boot_error" => layer.halt_on_boot_error = Some(e.boolean()?),
        "header_timeout" => layer.header_timeout = Some(e.number(values::positive_seconds)?),
        "body_timeout" => layer.body_timeout = Some(e.number(values::positive_seconds)?),
        "body_buffer" => layer.body_buffer = Some(e.number(values::non_negative_int)?),
        "worker_connections" => layer.worker_connections = Some(e.number(values::positive_int)?),
        "max_requests" => layer.max_requests = Some(e.number(values::non_negative_int)?),
        "max_requests_jitter" => {
            layer.max_requests_jitter = Some(e.number(values::non_negative_int)?)
        }
        "threads" => layer.threads = Some(e.number(values::positive_int)?),
        "keepalive" => layer.keepalive = Some(e.number(values::seconds)?),
        "limit_request_line" => layer.limit_request_line = Some(e.number(values::limit)?),
        "limit_request_fields" => layer.limit_request_fields = Some(e.number(values::limit)?),
        "limit_request_field_size" => {
            layer.limit_request_field_size = Some(e.number(values::limit)?)
        }
        "permit_unconventional_http_method" => {
            layer.permit_unconventional_http_method = e.boolean()?
        }
        "casefold_http_method" => layer.casefold_http_method = e.boolean()?,
        "permit_unconventional_http_version" => {
            layer.permit_unconventional_http_version = e.boolean()?
        }
        "permit_obsolete_folding" => layer.permit_obsolete_folding = e.boolean()?,
        "header_map" => layer.header_map = Some(e.string(values::header_map)?),
        // Each string is a comma-separated list, as on the command line.
        "forwarder_headers" => {
            layer.forwarder_headers = Some(e.list(values::forwarder_headers)?.concat())
        }
        "raw_env" | "env" => layer.raw_env = Some(e.list(values::env_pair)?),
        "chdir" => layer.chdir = Some(e.path()?),
        // Each string is a comma-separated list, as on the command line.
        "pythonpath" => layer.pythonpath = Some(e.list(values::pythonpath)?.concat()),
        "preload_app" | "preload" => layer.preload_app = e.boolean()?,
        "user" => layer.user = Some(e.id(values::user)?),
        "group" => layer.group = Some(e.id(values::group)?),
        "static_dotfiles" => layer.static_dotfiles = e.boolean()?,
        "umask" => layer.umask = Some(e.number(values::umask)?),
        "proc_name" | "name" => layer.proc_name = Some(e.string(values::non_empty)?),
        "worker_tmp_dir" => layer.worker_tmp_dir = Some(e.path()?),
        "accesslog" => layer.accesslog = Some(e.string(values::non_empty)?),
        "access_log_format" => layer.access_log_format = Some(e.string(values::non_empty)?),
        "errorlog" => layer.errorlog = Some(e.string(values::non_empty)?),
        "loglevel" => layer.loglevel = Some(e.string(values::log_level)?),
        "daemon" => layer.daemon = e.boolean()?,
        "pidfile" => layer.pidfile = Some(e.path()?),
        "control_socket" => layer.control_socket = Some(e.path()?),
        "control_socket_mode" => layer.control_socket_mode = Some(e.mode()?),
        "control_socket_disable" => layer.control_socket_disable = e.boolean()?,
        "control_socket_allow" => layer.control_socket_allow = Some(e.ids(values::user)?),
        "control_socket_max_clients" => {
            layer.control_socket_max_clients = Some(e.number(values::positive_count)?)
        }
        "hooks" => layer.hooks = Some(e.hooks()?),
        // TLS, the PROXY protocol and trusted front ends.
        "certfile" => layer.certfile = Some(e.path()?),
        "keyfile" => layer.keyfile = Some(e.path()?),
        "ca_certs" => layer.ca_certs = Some(e.path()?),
        "cert_reqs" => layer.cert_reqs = Some(e.number(values::cert_reqs)?),
        "ciphers" => layer.ciphers = Some(e.string(values::ciphers)?),
        "ssl_version" => layer.ssl_version = Some(e.number(values::non_empty)?),
        "tls_min_version" => layer.tls_min_version = Some(e.string(values::tls_min_version)?),
        "do_handshake_on_connect" => layer.do_handshake_on_connect = e.boolean()?,
        "tls_bind" => layer.tls_bind = Some(e.list(values::bind)?),
        "proxy_protocol" => layer.proxy_protocol = Some(e.proxy_mode()?),
        // Each string is a comma-separated list, as on the command line.
        "proxy_allow_ips" => layer.proxy_allow_ips = Some(e.allow_list()?),
        "forwarded_allow_ips" => layer.forwarded_allow_ips = Some(e.allow_list()?),
        "secure_scheme_headers" => layer.secure_scheme_headers = Some(e.scheme_headers()?),
        "tls_binds" => layer.tls_binds = Some(e.tls_binds()?),
        _ => {
            return Err(ConfigError::new(format!(
                "unknown setting '{}'{}",
                e.key, e.origin
            )))
        }
    }
    Ok(())
}

/// A TOML value's type, for "found ..." in messages.
fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => format!("the string \"{s}\""),
        Value::Integer(n) => format!("the integer {n}"),
        Value::Float(x) => format!("the float {x}"),
        Value::Boolean(b) => format!("the boolean {b}"),
        Value::Datetime(d) => format!("the date-time {d}"),
        Value::Array(_) => "an array".to_owned(),
        Value::Table(_) => "a table".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<FileLayer, ConfigError> {
        parse(text, Path::new("/etc/g.toml"))
    }

    #[test]
    fn reads_settings() {
        let f = parse_str(
            "workers = 3\nbind = \"unix:/tmp/s\"\numask = \"0022\"\ndaemon = true\n\
             control_socket_mode = 0o660\nenv = [\"A=1\"]\nname = \"web\"\n\
             upgrade_timeout = \"0x10\"\ncontrol_socket_allow = [\"root\", 65534]\n\
             control_socket_max_clients = 64\n[hooks]\non_exit = \"echo bye\"\n",
        )
        .unwrap();
        assert_eq!(f.layer.workers, Some(3));
        assert_eq!(f.layer.bind, Some(vec!["unix:/tmp/s".to_owned()]));
        assert_eq!(f.layer.umask, Some(0o22));
        assert!(f.layer.daemon);
        assert_eq!(f.layer.control_socket_mode, Some(0o660));
        assert_eq!(f.layer.raw_env, Some(vec![("A".into(), "1".into())]));
        assert_eq!(f.layer.proc_name.as_deref(), Some("web"));
        assert_eq!(f.layer.upgrade_timeout, Some(16));
        assert_eq!(f.layer.control_socket_allow, Some(vec![0, 65534]));
        assert_eq!(f.layer.control_socket_max_clients, Some(64));
        assert_eq!(
            f.layer.hooks,
            Some(vec![("on_exit".into(), "echo bye".into())])
        );
        assert_eq!(
            f.origin("raw_env"),
            Origin::File {
                path: "/etc/g.toml".into(),
                line: Some(6)
            }
        );
    }

    #[test]
    fn pythonpath_is_a_comma_separated_string_or_an_array_of_them() {
        let dirs = |text: &str| parse_str(text).unwrap().layer.pythonpath;
        let paths = |dirs: &[&str]| Some(dirs.iter().map(PathBuf::from).collect::<Vec<_>>());
        assert_eq!(
            dirs("pythonpath = \"/srv/app, lib,,\"\n"),
            paths(&["/srv/app", "lib"])
        );
        assert_eq!(
            dirs("pythonpath = [\"a,b\", \" c \", \"\"]\n"),
            paths(&["a", "b", "c"])
        );
        // Given but empty is not the same as not given: it clears a lower
        // source's list.
        assert_eq!(dirs("pythonpath = []\n"), paths(&[]));
        assert_eq!(dirs("pythonpath = \"\"\n"), paths(&[]));
        assert_eq!(dirs("workers = 1\n"), None);

        let err = parse_str("workers = 1\npythonpath = 1\n").unwrap_err();
        assert_eq!(
            err.message,
            "wrong type for pythonpath (in /etc/g.toml, line 2): expected a string or an array \
             of strings, found the integer 1"
        );
        let err = parse_str("pythonpath = [\"a\", [\"b\"]]\n").unwrap_err();
        assert_eq!(
            err.message,
            "wrong type for pythonpath (in /etc/g.toml, line 1): expected a string or an array \
             of strings, found an array"
        );
        let err = parse_str("pythonpath = \"a\\u0000b\"\n").unwrap_err();
        assert_eq!(
            err.message,
            "invalid value 'a\0b' for pythonpath (in /etc/g.toml, line 1): expected directories \
             without NUL bytes"
        );
    }

    #[test]
    fn preload_app_also_as_preload() {
        let preload = |text: &str| parse_str(text).unwrap().layer.preload_app;
        assert!(preload("preload_app = true\n"));
        assert!(preload("preload = \"True\"\n"));
        assert!(!preload("preload_app = false\n"));
        assert!(!preload("workers = 1\n"));
        let f = parse_str("workers = 1\npreload = true\n").unwrap();
        assert_eq!(
            f.origin("preload_app"),
            Origin::File {
                path: "/etc/g.toml".into(),
                line: Some(2)
            }
        );

        let err = parse_str("preload_app = 1\n").unwrap_err();
        assert_eq!(
            err.message,
            "wrong type for preload_app (in /etc/g.toml, line 1): expected true or false, found \
             the integer 1"
        );
        let err = parse_str("preload = \"yes\"\n").unwrap_err();
        assert_eq!(
            err.message,
            "invalid value 'yes' for preload (in /etc/g.toml, line 1): expected true or false"
        );
        let err = parse_str("preload = true\npreload_app = true\n").unwrap_err();
        assert_eq!(
            err.message,
            "'preload_app' and 'preload' are the same setting; give only one \
             (in /etc/g.toml, line 2)"
        );
    }

    #[test]
    fn errors_name_key_file_and_line() {
        let err = parse_str("workers = 2\n\nwrokers = 3\n").unwrap_err();
        assert_eq!(
            err.message,
            "unknown setting 'wrokers' (in /etc/g.toml, line 3)"
        );
        let err = parse_str("timeout = 1\nworkers = \"abc\"\n").unwrap_err();
        assert_eq!(
            err.message,
            "invalid value 'abc' for workers (in /etc/g.toml, line 2): expected a positive integer"
        );
        let err = parse_str("upgrade_timeout = -1\n").unwrap_err();
        assert_eq!(
            err.message,
            "invalid value '-1' for upgrade_timeout (in /etc/g.toml, line 1): \
             expected a non-negative integer"
        );
        let err = parse_str("workers = [1]\n").unwrap_err();
        assert_eq!(
            err.message,
            "wrong type for workers (in /etc/g.toml, line 1): expected an integer, found an array"
        );
        let err = parse_str("[hooks]\nbogus = \"x\"\n").unwrap_err();
        assert!(
            err.message
                .starts_with("unknown hook 'bogus' in [hooks] (in /etc/g.toml, line 1): "),
            "{}",
            err.message
        );
        let err = parse_str("[hooks]\non_exit = \" \"\n").unwrap_err();
        assert!(err.message.contains("for hooks.on_exit"), "{}", err.message);
        let err = parse_str("workers = \n").unwrap_err();
        assert!(
            err.message
                .starts_with("cannot parse config file (in /etc/g.toml, line 1): "),
            "{}",
            err.message
        );
        let err = parse_str("env = []\nraw_env = []\n").unwrap_err();
        assert!(err.message.contains("same setting"), "{}", err.message);
        assert_eq!(err.exit_code, 1);
    }
}
