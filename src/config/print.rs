//! `--print-config`: the effective settings as a config file.
//!
//! Written line by line (values escaped by the toml crate) rather than
//! serialised from `Settings`, because the file format differs from the
//! struct: `raw_env` is a list of `"K=V"`, modes are octal strings, unset
//! optional settings become comments (TOML has no null), and the order
//! follows the help text instead of the alphabet.

use std::fmt::Write;
use std::path::Path;

use toml::Value;

use super::{values, Settings};

impl Settings {
    /// Every setting as TOML that can be used as a config file: reading it
    /// back gives the same settings. Unset optional settings are comments.
    pub fn to_toml(&self) -> String {
        let mut out = Toml::default();
        match &self.config {
            Some(path) => out.comment(&format!(
                "Effective gunicornd settings; config file: {}",
                path.display()
            )),
            None => out.comment("Effective gunicornd settings; no config file was read"),
        }
        out.opt_str("app", self.app.as_deref());
        out.value("bind", strings(self.bind.iter().cloned()));
        out.int("backlog", i64::from(self.backlog));
        out.int("workers", self.workers as i64);
        out.str("worker_class", self.worker_class.name());
        out.value("command", strings(self.command.iter().cloned()));
        out.int("timeout", self.timeout as i64);
        out.int("graceful_timeout", self.graceful_timeout as i64);
        out.int("upgrade_timeout", self.upgrade_timeout as i64);
        out.str("upgrade_mode", self.upgrade_mode.as_str());
        out.int("boot_grace", self.boot_grace as i64);
        out.value(
            "halt_on_boot_error",
            Value::Boolean(self.halt_on_boot_error),
        );
        out.int("header_timeout", self.header_timeout as i64);
        out.int("body_timeout", self.body_timeout as i64);
        out.int("body_buffer", self.body_buffer as i64);
        out.int("worker_connections", self.worker_connections as i64);
        out.int("max_requests", self.max_requests as i64);
        out.int("max_requests_jitter", self.max_requests_jitter as i64);
        out.int("threads", self.threads as i64);
        out.int("keepalive", self.keepalive as i64);
        out.int("limit_request_line", self.limit_request_line as i64);
        out.int("limit_request_fields", self.limit_request_fields as i64);
        out.int(
            "limit_request_field_size",
            self.limit_request_field_size as i64,
        );
        out.value(
            "permit_unconventional_http_method",
            Value::Boolean(self.permit_unconventional_http_method),
        );
        out.value(
            "casefold_http_method",
            Value::Boolean(self.casefold_http_method),
        );
        out.value(
            "permit_unconventional_http_version",
            Value::Boolean(self.permit_unconventional_http_version),
        );
        out.value(
            "permit_obsolete_folding",
            Value::Boolean(self.permit_obsolete_folding),
        );
        out.str("header_map", self.header_map.name());
        out.value(
            "forwarder_headers",
            strings(self.forwarder_headers.iter().cloned()),
        );
        out.value(
            "raw_env",
            strings(self.raw_env.iter().map(|(k, v)| format!("{k}={v}"))),
        );
        out.opt_path("chdir", self.chdir.as_deref());
        out.value(
            "pythonpath",
            strings(
                self.pythonpath
                    .iter()
                    .map(|p| p.to_string_lossy().into_owned()),
            ),
        );
        out.value("preload_app", Value::Boolean(self.preload_app));
        out.opt_int("user", self.user.map(i64::from));
        out.opt_int("group", self.group.map(i64::from));
        out.value("static_dotfiles", Value::Boolean(self.static_dotfiles));
        out.str("umask", &values::format_mode(self.umask));
        out.opt_str("proc_name", self.proc_name.as_deref());
        out.opt_path("worker_tmp_dir", self.worker_tmp_dir.as_deref());
        out.opt_str("accesslog", self.accesslog.as_deref());
        out.str("access_log_format", &self.access_log_format);
        out.str("errorlog", &self.errorlog);
        out.str("loglevel", &self.loglevel);
        out.value("daemon", Value::Boolean(self.daemon));
        out.opt_path("pidfile", self.pidfile.as_deref());
        out.opt_path("control_socket", self.control_socket.as_deref());
        out.str(
            "control_socket_mode",
            &values::format_mode(self.control_socket_mode),
        );
        out.value(
            "control_socket_disable",
            Value::Boolean(self.control_socket_disable),
        );
        out.value(
            "control_socket_allow",
            Value::Array(
                self.control_socket_allow
                    .iter()
                    .map(|&uid| Value::Integer(i64::from(uid)))
                    .collect(),
            ),
        );
        out.int(
            "control_socket_max_clients",
            self.control_socket_max_clients as i64,
        );
        // TLS, the PROXY protocol and trusted front ends.
        out.opt_path("certfile", self.certfile.as_deref());
        out.opt_path("keyfile", self.keyfile.as_deref());
        out.opt_path("ca_certs", self.ca_certs.as_deref());
        out.int("cert_reqs", self.cert_reqs as i64);
        out.opt_str("ciphers", self.ciphers.as_deref());
        out.opt_str("ssl_version", self.ssl_version.as_deref());
        out.str("tls_min_version", self.tls_min_version.name());
        out.value(
            "do_handshake_on_connect",
            Value::Boolean(self.do_handshake_on_connect),
        );
        out.value("tls_bind", strings(self.tls_bind.iter().cloned()));
        out.str("proxy_protocol", self.proxy_protocol.name());
        out.value(
            "proxy_allow_ips",
            strings(self.proxy_allow_ips.to_strings().into_iter()),
        );
        out.value(
            "forwarded_allow_ips",
            strings(self.forwarded_allow_ips.to_strings().into_iter()),
        );
        out.str(
            "secure_scheme_headers",
            &self
                .secure_scheme_headers
                .iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect::<Vec<_>>()
                .join(","),
        );
        // A table must come after the top-level keys.
        out.text.push_str("\n[hooks]\n");
        for (name, command) in &self.hooks {
            out.str(name, command);
        }
        for entry in &self.tls_binds {
            let name = Value::String(entry.bind.clone());
            out.text.push_str(&format!("\n[tls_binds.{name}]\n"));
            out.opt_path("certfile", Some(&entry.certfile));
            out.opt_path("keyfile", entry.keyfile.as_deref());
        }
        out.text
    }
}

fn strings(items: impl Iterator<Item = String>) -> Value {
    Value::Array(items.map(Value::String).collect())
}

#[derive(Default)]
struct Toml {
    text: String,
}

impl Toml {
    fn comment(&mut self, text: &str) {
        // A newline would end the comment; paths and values cannot be
        // trusted not to hold one.
        let _ = writeln!(self.text, "# {}", text.replace('\n', " "));
    }

    fn value(&mut self, key: &str, value: Value) {
        let _ = writeln!(self.text, "{key} = {value}");
    }

    fn str(&mut self, key: &str, value: &str) {
        self.value(key, Value::String(value.to_owned()));
    }

    fn int(&mut self, key: &str, value: i64) {
        self.value(key, Value::Integer(value));
    }

    fn unset(&mut self, key: &str) {
        self.comment(&format!("{key} is not set"));
    }

    fn opt_str(&mut self, key: &str, value: Option<&str>) {
        match value {
            Some(v) => self.str(key, v),
            None => self.unset(key),
        }
    }

    fn opt_int(&mut self, key: &str, value: Option<i64>) {
        match value {
            Some(v) => self.int(key, v),
            None => self.unset(key),
        }
    }

    fn opt_path(&mut self, key: &str, value: Option<&Path>) {
        self.opt_str(key, value.map(|p| p.to_string_lossy()).as_deref());
    }
}
