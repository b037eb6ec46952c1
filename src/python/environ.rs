//! The WSGI environ of one request, by gunicorn's rules
//! (`gunicorn/http/wsgi.py`, `create`).

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use super::objects::{Errors, Input};
use crate::http::{PeerAddr, RequestHead};

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

/// A request's environ: a copy of `base` plus the CGI variables, the
/// `HTTP_*` headers, `wsgi.input` and `wsgi.url_scheme`.
pub fn build<'py>(
    py: Python<'py>,
    base: &Bound<'py, PyDict>,
    head: &RequestHead,
    peer: &PeerAddr,
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
    let (server_name, server_port) = server_of(head, scheme);
    set(intern!(py, "SERVER_NAME"), &server_name)?;
    set(intern!(py, "SERVER_PORT"), &server_port)?;
    // Fields with an underscore in their name are here only if the parser
    // kept them (`--header-map`, `--forwarder-headers`); they map like the
    // others, so with `dangerous` `X_Foo` and `X-Foo` share `HTTP_X_FOO`.
    for (name, value) in &head.headers {
        let key = name.to_ascii_uppercase().replace('-', "_");
        let key = match key.as_str() {
            "CONTENT_TYPE" | "CONTENT_LENGTH" => key,
            _ => format!("HTTP_{key}"),
        };
        let value = match env.get_item(&key)? {
            Some(earlier) => format!("{},{value}", earlier.extract::<String>()?),
            None => value.clone(),
        };
        env.set_item(key, value)?;
    }
    set(intern!(py, "wsgi.url_scheme"), scheme)?;
    env.set_item(intern!(py, "wsgi.input"), input.bind(py))?;
    Ok(env)
}

/// `SERVER_NAME` and `SERVER_PORT` from the Host header, else the scheme's
/// default port.
fn server_of(head: &RequestHead, scheme: &str) -> (String, String) {
    let default_port = if scheme == "https" { "443" } else { "80" };
    let Some(host) = head.header("Host").filter(|h| !h.is_empty()) else {
        return ("localhost".into(), default_port.into());
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
            (None, "http", ("localhost", "80")),
        ];
        for (host, scheme, (name, port)) in cases {
            assert_eq!(
                server_of(&head(host), scheme),
                (name.to_string(), port.to_string()),
                "{host:?}"
            );
        }
    }

    #[test]
    fn path_info_is_decoded_as_latin1() {
        assert_eq!(latin1(&percent_decode(b"/caf%C3%A9")), "/caf\u{c3}\u{a9}");
    }
}
