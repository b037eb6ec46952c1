//! The WSGI environ of one request, by gunicorn's rules
//! (`gunicorn/http/wsgi.py`, `create`).

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use super::objects::{Errors, Input};
use crate::http::{PeerAddr, RequestHead};

/// Build the environ: CGI variables, `HTTP_*` headers and the `wsgi.*` keys.
pub fn build<'py>(
    py: Python<'py>,
    head: &RequestHead,
    peer: &PeerAddr,
    scheme: &str,
    input: &Py<Input>,
    errors: &Py<Errors>,
    file_wrapper: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let env = PyDict::new(py);
    let set = |k: &str, v: &str| env.set_item(k, PyString::new(py, v));
    set("REQUEST_METHOD", &head.method)?;
    set("QUERY_STRING", &head.query)?;
    set("RAW_URI", &head.uri)?;
    set(
        "SERVER_PROTOCOL",
        &format!("HTTP/{}.{}", head.version.0, head.version.1),
    )?;
    set(
        "SERVER_SOFTWARE",
        concat!("gunicornd/", env!("CARGO_PKG_VERSION")),
    )?;
    // PATH_INFO is the percent-decoded path, each byte one character
    // (latin-1, PEP 3333); SCRIPT_NAME comes from the environment, and is
    // cut off the front of the path when it is there.
    let script_name = std::env::var("SCRIPT_NAME").unwrap_or_default();
    let mut path_info = latin1(&percent_decode(head.path.as_bytes()));
    if !script_name.is_empty() && path_info.starts_with(&script_name) {
        path_info = path_info[script_name.len()..].to_string();
    }
    set("SCRIPT_NAME", &script_name)?;
    set("PATH_INFO", &path_info)?;
    match peer {
        PeerAddr::Tcp(addr) => {
            set("REMOTE_ADDR", &addr.ip().to_string())?;
            set("REMOTE_PORT", &addr.port().to_string())?;
        }
        PeerAddr::Unix => {
            set("REMOTE_ADDR", "")?;
        }
    }
    let (server_name, server_port) = server_of(head, scheme);
    set("SERVER_NAME", &server_name)?;
    set("SERVER_PORT", &server_port)?;
    for (name, value) in &head.headers {
        // gunicorn drops headers with an underscore (they could pass for
        // a dash-named one).
        if name.contains('_') {
            continue;
        }
        let key = name.to_ascii_uppercase().replace('-', "_");
        let key = match key.as_str() {
            "CONTENT_TYPE" | "CONTENT_LENGTH" => key,
            _ => format!("HTTP_{key}"),
        };
        let value = match env.get_item(&key)? {
            Some(earlier) => format!("{},{value}", earlier.extract::<String>()?),
            None => value.clone(),
        };
        set(&key, &value)?;
    }
    env.set_item("wsgi.version", (1, 0))?;
    set("wsgi.url_scheme", scheme)?;
    env.set_item("wsgi.input", input.bind(py))?;
    env.set_item("wsgi.input_terminated", true)?;
    env.set_item("wsgi.errors", errors.bind(py))?;
    env.set_item("wsgi.file_wrapper", file_wrapper)?;
    env.set_item("wsgi.multithread", false)?;
    env.set_item("wsgi.multiprocess", true)?;
    env.set_item("wsgi.run_once", false)?;
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
