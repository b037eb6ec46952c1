//! The WSGI environ of one request, by gunicorn's rules
//! (`gunicorn/http/wsgi.py`, `create`).

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use super::objects::{Errors, Input};
use crate::http::{PeerAddr, RequestHead};
use crate::listeners::ListenAddr;

/// The keys that do not change between requests.
pub fn base<'py>(
    py: Python<'py>,
    errors: &Py<Errors>,
    file_wrapper: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let env = PyDict::new(py);
    env.set_item(
        "SERVER_SOFTWARE",
        concat!("gunicornd/", env!("CARGO_PKG_VERSION")),
    )?;
    // SCRIPT_NAME comes from the environment, as in gunicorn.
    env.set_item(
        "SCRIPT_NAME",
        std::env::var("SCRIPT_NAME").unwrap_or_default(),
    )?;
    env.set_item("wsgi.version", (1, 0))?;
    env.set_item("wsgi.errors", errors.bind(py))?;
    env.set_item("wsgi.file_wrapper", file_wrapper)?;
    env.set_item("wsgi.input_terminated", true)?;
    env.set_item("wsgi.multithread", false)?;
    env.set_item("wsgi.multiprocess", true)?;
    env.set_item("wsgi.run_once", false)?;
    Ok(env)
}

/// gunicorn's keys for a connection that began with a PROXY header:
/// `PROXY_PROTOCOL` (`TCP4`/`TCP6`), `PROXY_ADDR` and `PROXY_PORT` (the
/// client's, as `REMOTE_ADDR`/`REMOTE_PORT`); a header without addresses
/// (v2 `LOCAL`, `UNSPEC`) gives `None`s and the port `"None"`, as there.
pub fn add_proxy(
    py: Python<'_>,
    env: &Bound<'_, PyDict>,
    proxied: &crate::http::proxy::ProxyHeader,
) -> PyResult<()> {
    match proxied.source {
        Some(addr) => {
            let family = if addr.is_ipv4() { "TCP4" } else { "TCP6" };
            env.set_item(intern!(py, "PROXY_PROTOCOL"), family)?;
            env.set_item(intern!(py, "PROXY_ADDR"), addr.ip().to_string())?;
            env.set_item(intern!(py, "PROXY_PORT"), addr.port().to_string())?;
        }
        None => {
            env.set_item(intern!(py, "PROXY_PROTOCOL"), py.None())?;
            env.set_item(intern!(py, "PROXY_ADDR"), py.None())?;
            env.set_item(intern!(py, "PROXY_PORT"), "None")?;
        }
    }
    Ok(())
}

/// A request's environ: a copy of `base` plus the CGI variables, the
/// `HTTP_*` headers, `wsgi.input` and `wsgi.url_scheme`.
pub fn build<'py>(
    py: Python<'py>,
    base: &Bound<'py, PyDict>,
    head: &RequestHead,
    peer: &PeerAddr,
    server: &ListenAddr,
    scheme: &str,
    input: &Py<Input>,
) -> PyResult<Bound<'py, PyDict>> {
    let env = base.copy()?;
    let set = |k: &Bound<'py, PyString>, v: &str| env.set_item(k, PyString::new(py, v));
    set(intern!(py, "REQUEST_METHOD"), &head.method)?;
    set(intern!(py, "QUERY_STRING"), &head.query)?;
    set(intern!(py, "RAW_URI"), &head.uri)?;
    let protocol = match head.version {
        (1, 1) => "HTTP/1.1",
        (1, 0) => "HTTP/1.0",
        _ => "HTTP/1.1",
    };
    set(intern!(py, "SERVER_PROTOCOL"), protocol)?;
    // PATH_INFO is the percent-decoded path, each byte one character
    // (latin-1, PEP 3333), with SCRIPT_NAME cut off its front when there.
    // A SCRIPT_NAME field replaces the environment's, as in gunicorn: the
    // parser only lets one through from a trusted front end
    // (`--forwarder-headers`) or with `--header-map dangerous`.
    let script_name: String = match head.header("SCRIPT_NAME") {
        Some(v) => {
            set(intern!(py, "SCRIPT_NAME"), v)?;
            v.to_owned()
        }
        None => match base.get_item("SCRIPT_NAME")? {
            Some(v) => v.extract()?,
            None => String::new(),
        },
    };
    let mut path_info = latin1(&percent_decode(head.path.as_bytes()));
    if !script_name.is_empty() && path_info.starts_with(&script_name) {
        path_info = path_info[script_name.len()..].to_string();
    }
    set(intern!(py, "PATH_INFO"), &path_info)?;
    match peer {
        PeerAddr::Tcp(addr) => {
            set(intern!(py, "REMOTE_ADDR"), &addr.ip().to_string())?;
            set(intern!(py, "REMOTE_PORT"), &addr.port().to_string())?;
        }
        PeerAddr::Unix => set(intern!(py, "REMOTE_ADDR"), "")?,
    }
    let (server_name, server_port) = server_of(head, server, scheme);
    set(intern!(py, "SERVER_NAME"), &server_name)?;
    set(intern!(py, "SERVER_PORT"), &server_port)?;
    // Fields with an underscore in their name are here only if the parser
    // kept them (`--header-map`, `--forwarder-headers`); they map like the
    // others, so with `dangerous` `X_Foo` and `X-Foo` share `HTTP_X_FOO`.
    for (i, (name, value)) in head.headers.iter().enumerate() {
        let key = environ_key(name);
        // A repeated field joins the earlier value (looked up only when a
        // field with the same key did come before: most requests repeat
        // none).
        let repeated = head.headers[..i]
            .iter()
            .any(|(earlier, _)| same_key(earlier, name));
        if repeated {
            if let Some(earlier) = env.get_item(&key)? {
                let joined = format!("{},{value}", earlier.extract::<String>()?);
                env.set_item(&key, joined)?;
                continue;
            }
        }
        env.set_item(&key, PyString::new(py, value))?;
    }
    set(intern!(py, "wsgi.url_scheme"), scheme)?;
    env.set_item(intern!(py, "wsgi.input"), input.bind(py))?;
    Ok(env)
}

/// `HTTP_NAME` for a field (`CONTENT_TYPE`/`CONTENT_LENGTH` bare), in one
/// allocation.
fn environ_key(name: &str) -> String {
    let bare =
        name.eq_ignore_ascii_case("content-type") || name.eq_ignore_ascii_case("content-length");
    let mut key = String::with_capacity(name.len() + 5);
    if !bare {
        key.push_str("HTTP_");
    }
    key.extend(name.chars().map(|c| match c {
        '-' => '_',
        c => c.to_ascii_uppercase(),
    }));
    key
}

/// Whether two field names give the same environ key.
fn same_key(a: &str, b: &str) -> bool {
    let norm = |c: u8| {
        if c == b'-' {
            b'_'
        } else {
            c.to_ascii_uppercase()
        }
    };
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| norm(x) == norm(y))
}

/// `SERVER_NAME` and `SERVER_PORT` from the Host header (without a port
/// in it, the scheme's default port), else from the listener, as gunicorn
/// does (a Unix socket's path, with the scheme's port).
fn server_of(head: &RequestHead, server: &ListenAddr, scheme: &str) -> (String, String) {
    let default_port = if scheme == "https" { "443" } else { "80" };
    let Some(host) = head.header("Host").filter(|h| !h.is_empty()) else {
        return match server {
            ListenAddr::Tcp(addr) => (addr.ip().to_string(), addr.port().to_string()),
            ListenAddr::Unix(path) => (path.display().to_string(), default_port.into()),
        };
    };
    // `[::1]:8000`, `example.com:8000`, `example.com`
    if let Some(rest) = host.strip_prefix('[') {
        if let Some((ip, port)) = rest.split_once(']') {
            let port = port.strip_prefix(':').unwrap_or(default_port);
            return (format!("[{ip}]"), port.to_string());
        }
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => {
            (name.to_string(), port.to_string())
        }
        _ => (host.to_string(), default_port.into()),
    }
}

fn percent_decode(input: &[u8]) -> Vec<u8> {
    percent_encoding::percent_decode(input).collect()
}

/// Bytes as a string of the same code points (latin-1).
fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| b as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::BodyFraming;

    fn head(host: Option<&str>) -> RequestHead {
        RequestHead {
            method: "GET".into(),
            uri: "/".into(),
            path: "/".into(),
            query: String::new(),
            version: (1, 1),
            headers: host
                .map(|h| vec![("Host".to_string(), h.to_string())])
                .unwrap_or_default(),
            framing: BodyFraming::Length(0),
            expect_continue: false,
        }
    }

    #[test]
    fn server_name_and_port_come_from_host() {
        let cases = [
            (Some("example.com:8000"), "http", ("example.com", "8000")),
            (Some("example.com"), "http", ("example.com", "80")),
            (Some("example.com"), "https", ("example.com", "443")),
            (Some("[::1]:9000"), "http", ("[::1]", "9000")),
            (None, "http", ("10.1.2.3", "8080")),
        ];
        let tcp = ListenAddr::Tcp("10.1.2.3:8080".parse().unwrap());
        for (host, scheme, (name, port)) in cases {
            assert_eq!(
                server_of(&head(host), &tcp, scheme),
                (name.to_string(), port.to_string()),
                "{host:?}"
            );
        }
        let unix = ListenAddr::Unix("/run/app.sock".into());
        assert_eq!(
            server_of(&head(None), &unix, "http"),
            ("/run/app.sock".to_string(), "80".to_string())
        );
    }

    #[test]
    fn path_info_is_decoded_as_latin1() {
        assert_eq!(latin1(&percent_decode(b"/caf%C3%A9")), "/caf\u{c3}\u{a9}");
    }
}
