//! Bind addresses: gunicorn's `util.parse_address`.
//!
//! Written by hand because the accepted forms are gunicorn's own mini-syntax
//! (`unix:`, `fd://`, optional `tcp://`, bracketed IPv6, host-only with a
//! default port), which no URL or socket-address crate parses the same way.

use std::fmt;
use std::path::PathBuf;

/// Where a listener comes from, as parsed from one `--bind` value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BindAddr {
    /// A TCP address. `host` is lowercased and not resolved: it may be a
    /// name, an IPv4 address or a bare IPv6 address (without brackets).
    Tcp { host: String, port: u16 },
    /// A Unix stream socket path.
    Unix(PathBuf),
    /// An already-open listening socket inherited as this file descriptor.
    Fd(i32),
}

impl fmt::Display for BindAddr {
    /// The canonical bind string: `host:port`, `[v6]:port`, `unix:PATH` or
    /// `fd://N`; parsing it again gives the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindAddr::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            BindAddr::Tcp { host, port } => write!(f, "{host}:{port}"),
            BindAddr::Unix(path) => write!(f, "unix:{}", path.display()),
            BindAddr::Fd(fd) => write!(f, "fd://{fd}"),
        }
    }
}

/// The host used when an address names only a port (`:8000`) or nothing at
/// all: gunicorn binds all IPv4 interfaces in both cases.
const ANY_HOST: &str = "0.0.0.0";

/// Parse one bind address the way gunicorn's `parse_address` does:
///
/// - `unix:PATH` or `unix://PATH` → a Unix socket path;
/// - `fd://N` → an inherited file descriptor;
/// - an optional `tcp://` prefix is ignored;
/// - `[v6]:port`, `[v6]`, `host:port`, `host` (port `default_port`);
/// - `""` → `0.0.0.0:default_port`; the host is lowercased.
///
/// Deviations, all of them rejecting input gunicorn would only fail on later
/// (at bind time) or silently misread: an empty Unix path, a negative fd, a
/// port outside 0..=65535, text after `]` that is not `:port`, and more than
/// one `:` outside brackets (an unbracketed IPv6 address). An empty host
/// (`:8000`) means all interfaces, as it does for Python's `bind`.
pub fn parse_address(s: &str, default_port: u16) -> Result<BindAddr, String> {
    if let Some(rest) = s.strip_prefix("unix:") {
        let path = rest.strip_prefix("//").unwrap_or(rest);
        if path.is_empty() {
            return Err(format!("'{s}' has an empty unix socket path"));
        }
        return Ok(BindAddr::Unix(PathBuf::from(path)));
    }
    if let Some(fd) = s.strip_prefix("fd://") {
        return match fd.parse::<i32>() {
            Ok(n) if n >= 0 => Ok(BindAddr::Fd(n)),
            _ => Err(format!("'{fd}' is not a valid file descriptor")),
        };
    }
    let netloc = s.strip_prefix("tcp://").unwrap_or(s);
    let (host, port) = split_host_port(netloc)?;
    let port = match port {
        None => default_port,
        Some(p) => parse_port(p)?,
    };
    let host = if host.is_empty() {
        ANY_HOST.to_owned()
    } else {
        host.to_lowercase()
    };
    Ok(BindAddr::Tcp { host, port })
}

/// Split `netloc` into host and optional port text.
fn split_host_port(netloc: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(bracketed) = netloc.strip_prefix('[') {
        let Some((host, after)) = bracketed.split_once(']') else {
            return Err(format!("'{netloc}' has an unclosed '['"));
        };
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err(format!("unexpected '{after}' after ']' in '{netloc}'")),
            },
        };
    }
    match netloc.split_once(':') {
        None => Ok((netloc, None)),
        Some((_, port)) if port.contains(':') => Err(format!(
            "'{netloc}' has more than one ':' (write IPv6 addresses as [ADDR]:PORT)"
        )),
        Some((host, port)) => Ok((host, Some(port))),
    }
}

fn parse_port(p: &str) -> Result<u16, String> {
    // Digits only: Rust's parser would also take a leading '+'.
    if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(port) = p.parse::<u16>() {
            return Ok(port);
        }
    }
    Err(format!("'{p}' is not a valid port number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> BindAddr {
        BindAddr::Tcp {
            host: host.to_owned(),
            port,
        }
    }

    #[test]
    fn host_and_port_forms() {
        assert_eq!(
            parse_address("127.0.0.1:8080", 8000),
            Ok(tcp("127.0.0.1", 8080))
        );
        assert_eq!(parse_address("localhost", 8000), Ok(tcp("localhost", 8000)));
        assert_eq!(parse_address("LocalHost:1", 8000), Ok(tcp("localhost", 1)));
        assert_eq!(
            parse_address("tcp://10.0.0.1:90", 8000),
            Ok(tcp("10.0.0.1", 90))
        );
        assert_eq!(
            parse_address("tcp://example.org", 7),
            Ok(tcp("example.org", 7))
        );
        assert_eq!(parse_address("", 8000), Ok(tcp("0.0.0.0", 8000)));
        assert_eq!(parse_address(":9000", 8000), Ok(tcp("0.0.0.0", 9000)));
        assert_eq!(parse_address("127.0.0.1:0", 8000), Ok(tcp("127.0.0.1", 0)));
    }

    #[test]
    fn ipv6_forms() {
        assert_eq!(parse_address("[::1]:8001", 8000), Ok(tcp("::1", 8001)));
        assert_eq!(parse_address("[::1]", 8000), Ok(tcp("::1", 8000)));
        assert_eq!(parse_address("[FE80::1]:80", 8000), Ok(tcp("fe80::1", 80)));
        assert!(parse_address("[::1", 8000).is_err());
        assert!(parse_address("[::1]8000", 8000).is_err());
        assert!(parse_address("::1", 8000).is_err());
    }

    #[test]
    fn unix_and_fd_forms() {
        assert_eq!(
            parse_address("unix:/tmp/g.sock", 8000),
            Ok(BindAddr::Unix("/tmp/g.sock".into()))
        );
        assert_eq!(
            parse_address("unix:///tmp/g.sock", 8000),
            Ok(BindAddr::Unix("/tmp/g.sock".into()))
        );
        assert_eq!(
            parse_address("unix:rel.sock", 8000),
            Ok(BindAddr::Unix("rel.sock".into()))
        );
        assert!(parse_address("unix:", 8000).is_err());
        assert_eq!(parse_address("fd://3", 8000), Ok(BindAddr::Fd(3)));
        assert!(parse_address("fd://x", 8000).is_err());
        assert!(parse_address("fd://-1", 8000).is_err());
    }

    #[test]
    fn bad_ports() {
        for bad in ["h:", "h:abc", "h:65536", "h:+80", "h:-1", "[::1]:x"] {
            let err = parse_address(bad, 8000).unwrap_err();
            assert!(err.contains("not a valid port"), "{bad}: {err}");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in ["127.0.0.1:80", "[::1]:8000", "unix:/run/x.sock", "fd://4"] {
            let addr = parse_address(s, 8000).unwrap();
            assert_eq!(addr.to_string(), s);
            assert_eq!(parse_address(&addr.to_string(), 8000), Ok(addr));
        }
    }
}
