//! The access log: gunicorn's `access_log_format`, compiled once and
//! rendered per request.
//!
//! The format is Python %-formatting against a dict of atoms:
//! `%(NAME)s` inserts an atom, `%%` a percent sign, anything else is copied
//! as is. Atoms (gunicorn's set):
//!
//! | atom | value |
//! |---|---|
//! | `h` | remote address (`-` for unix peers) |
//! | `l` | `-` |
//! | `u` | user name from `Authorization: Basic`, else `-` |
//! | `t` | request start, `[22/Nov/2026:01:58:29 +0000]` |
//! | `r` | request line, `GET /?1.5 HTTP/1.1` |
//! | `s` | status |
//! | `b` | body bytes sent, `-` when none (CLF) |
//! | `B` | body bytes sent |
//! | `f` | `Referer` |
//! | `a` | `User-Agent` |
//! | `T` / `M` / `D` | duration in whole seconds / milliseconds / microseconds |
//! | `L` | duration in decimal seconds, `0.001234` |
//! | `p` | `<pid>` |
//! | `U` / `q` | path (percent-decoded, like `PATH_INFO`) / query string |
//! | `H` / `m` | protocol (`HTTP/1.1`) / method |
//! | `{name}i` / `{name}o` | request / response header (any case) |
//! | `{NAME}e` | environment variable |
//!
//! Unknown atoms, and request atoms when the request could not be parsed,
//! are `-`. In string values `"` becomes `\"` (as gunicorn), and control
//! characters become `\xNN` so a decoded path cannot forge log lines.

use std::fmt::Write;

use base64::Engine;
use percent_encoding::percent_decode_str;

use super::localtime::LocalTime;
use super::AccessRecord;
use crate::http::{PeerAddr, RequestHead};

/// gunicorn's default `access_log_format`.
pub const DEFAULT_ACCESS_LOG_FORMAT: &str =
    r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#;

/// A parsed `access_log_format`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AccessFormat {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Atom(Atom),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Atom {
    RemoteAddr,
    Ident,
    User,
    Time,
    RequestLine,
    Status,
    Bytes,
    Referer,
    UserAgent,
    Seconds,
    Millis,
    Micros,
    DecimalSeconds,
    Pid,
    Path,
    Query,
    Protocol,
    Method,
    /// Lower-cased name.
    RequestHeader(String),
    /// Lower-cased name.
    ResponseHeader(String),
    Env(String),
    Unknown,
}

impl AccessFormat {
    pub fn parse(format: &str) -> AccessFormat {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = format;
        while let Some(at) = rest.find('%') {
            literal.push_str(&rest[..at]);
            rest = &rest[at..];
            if let Some(after) = rest.strip_prefix("%%") {
                literal.push('%');
                rest = after;
            } else if let Some((name, after)) = atom_reference(rest) {
                if !literal.is_empty() {
                    parts.push(Part::Literal(std::mem::take(&mut literal)));
                }
                parts.push(Part::Atom(Atom::named(name)));
                rest = after;
            } else {
                literal.push('%');
                rest = &rest[1..];
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        AccessFormat { parts }
    }

    /// Append the line for `rec` (without newline) to `out`. `started` is
    /// `rec.started` in local time.
    pub fn render(&self, rec: &AccessRecord<'_>, pid: u32, started: &LocalTime, out: &mut String) {
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Atom(atom) => render_atom(atom, rec, pid, started, out),
            }
        }
    }
}

/// `%(name)s` at the start of `s`: the name and what follows.
fn atom_reference(s: &str) -> Option<(&str, &str)> {
    let inner = s.strip_prefix("%(")?;
    let close = inner.find(')')?;
    let after = inner[close + 1..].strip_prefix('s')?;
    Some((&inner[..close], after))
}

impl Atom {
    fn named(name: &str) -> Atom {
        match name {
            "h" => Atom::RemoteAddr,
            "l" => Atom::Ident,
            "u" => Atom::User,
            "t" => Atom::Time,
            "r" => Atom::RequestLine,
            "s" => Atom::Status,
            // gunicorn prints the byte count even when it is 0 (not CLF's `-`).
            "b" => Atom::Bytes,
            "B" => Atom::Bytes,
            "f" => Atom::Referer,
            "a" => Atom::UserAgent,
            "T" => Atom::Seconds,
            "M" => Atom::Millis,
            "D" => Atom::Micros,
            "L" => Atom::DecimalSeconds,
            "p" => Atom::Pid,
            "U" => Atom::Path,
            "q" => Atom::Query,
            "H" => Atom::Protocol,
            "m" => Atom::Method,
            _ => Atom::braced(name).unwrap_or(Atom::Unknown),
        }
    }

    /// `{name}i`, `{name}o`, `{name}e`.
    fn braced(name: &str) -> Option<Atom> {
        let inner = name.strip_prefix('{')?;
        let (key, kind) = inner.rsplit_once('}')?;
        match kind {
            "i" => Some(Atom::RequestHeader(key.to_ascii_lowercase())),
            "o" => Some(Atom::ResponseHeader(key.to_ascii_lowercase())),
            "e" => Some(Atom::Env(key.to_string())),
            _ => None,
        }
    }
}

fn render_atom(
    atom: &Atom,
    rec: &AccessRecord<'_>,
    pid: u32,
    started: &LocalTime,
    out: &mut String,
) {
    let head = rec.head;
    let micros = rec.duration.as_micros();
    match atom {
        Atom::RemoteAddr => match rec.peer {
            PeerAddr::Tcp(addr) => {
                let _ = write!(out, "{}", addr.ip());
            }
            PeerAddr::Unix => out.push('-'),
        },
        Atom::Ident | Atom::Unknown => out.push('-'),
        Atom::User => push_or_dash(out, head.and_then(basic_auth_user).as_deref()),
        Atom::Time => started.write_clf(out),
        Atom::RequestLine => match head {
            Some(h) => {
                push_escaped(out, &h.method);
                out.push(' ');
                push_escaped(out, &h.uri);
                let _ = write!(out, " HTTP/{}.{}", h.version.0, h.version.1);
            }
            None => out.push('-'),
        },
        Atom::Status => {
            let _ = write!(out, "{}", rec.status);
        }
        Atom::Bytes => {
            let _ = write!(out, "{}", rec.body_bytes);
        }
        Atom::Referer => push_or_dash(out, head.and_then(|h| h.header("referer"))),
        Atom::UserAgent => push_or_dash(out, head.and_then(|h| h.header("user-agent"))),
        Atom::Seconds => {
            let _ = write!(out, "{}", rec.duration.as_secs());
        }
        Atom::Millis => {
            let _ = write!(out, "{}", rec.duration.as_millis());
        }
        Atom::Micros => {
            let _ = write!(out, "{micros}");
        }
        Atom::DecimalSeconds => {
            let _ = write!(out, "{}.{:06}", micros / 1_000_000, micros % 1_000_000);
        }
        Atom::Pid => {
            let _ = write!(out, "<{pid}>");
        }
        Atom::Path => match head {
            Some(h) => push_escaped(out, &percent_decode_str(&h.path).decode_utf8_lossy()),
            None => out.push('-'),
        },
        Atom::Query => push_or_dash(out, head.map(|h| h.query.as_str())),
        Atom::Protocol => match head {
            Some(h) => {
                let _ = write!(out, "HTTP/{}.{}", h.version.0, h.version.1);
            }
            None => out.push('-'),
        },
        Atom::Method => push_or_dash(out, head.map(|h| h.method.as_str())),
        Atom::RequestHeader(name) => push_or_dash(out, head.and_then(|h| h.header(name))),
        Atom::ResponseHeader(name) => push_or_dash(
            out,
            rec.response_headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str()),
        ),
        Atom::Env(name) => push_or_dash(out, env_var(name).as_deref()),
    }
}

/// The user name of `Authorization: Basic base64(user:password)`, as
/// gunicorn's `_get_user` finds it; `None` if absent or malformed.
fn basic_auth_user(head: &RequestHead) -> Option<String> {
    let value = head.header("authorization")?;
    let (scheme, credentials) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(credentials.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let user = decoded.split(':').next().unwrap_or_default();
    (!user.is_empty()).then(|| user.to_string())
}

/// An environment variable; gunicorn matches `{name}e` case-insensitively,
/// so fall back to that when the exact name is not set.
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().or_else(|| {
        std::env::vars_os()
            .find(|(key, _)| key.to_str().is_some_and(|k| k.eq_ignore_ascii_case(name)))
            .map(|(_, value)| value.to_string_lossy().into_owned())
    })
}

fn push_or_dash(out: &mut String, value: Option<&str>) {
    match value {
        Some(v) => push_escaped(out, v),
        None => out.push('-'),
    }
}

fn push_escaped(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            c if c.is_ascii_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::app::testing::{head, tcp_peer};

    const STARTED: LocalTime = LocalTime {
        year: 2026,
        month: 11,
        day: 22,
        hour: 1,
        minute: 58,
        second: 29,
        utc_offset: 0,
    };

    fn record<'a>(
        peer: &'a PeerAddr,
        head: Option<&'a RequestHead>,
        response_headers: &'a [(String, String)],
    ) -> AccessRecord<'a> {
        AccessRecord {
            peer,
            head,
            status: 200,
            body_bytes: 2,
            response_headers,
            started: SystemTime::now(),
            duration: Duration::from_micros(1_234_567),
        }
    }

    fn render(format: &str, rec: &AccessRecord<'_>) -> String {
        let mut out = String::new();
        AccessFormat::parse(format).render(rec, 4242, &STARTED, &mut out);
        out
    }

    #[test]
    fn default_format_matches_gunicorn() {
        let peer = tcp_peer("127.0.0.1:53211");
        let head = head("GET", "/?1.5", &[("Host", "localhost")]);
        let rec = record(&peer, Some(&head), &[]);
        assert_eq!(
            render(DEFAULT_ACCESS_LOG_FORMAT, &rec),
            r#"127.0.0.1 - - [22/Nov/2026:01:58:29 +0000] "GET /?1.5 HTTP/1.1" 200 2 "-" "-""#
        );
    }

    #[test]
    fn renders_every_atom() {
        let peer = tcp_peer("[::1]:8000");
        let head = head(
            "POST",
            "/a%20b/c?x=1&y=2",
            &[
                ("Referer", "http://ref/"),
                ("User-Agent", "curl/8.0 \"quoted\""),
                ("Authorization", "Basic YWxpY2U6c2VjcmV0"), // alice:secret
                ("X-Request-Id", "abc"),
            ],
        );
        let response = [("Content-Type".to_string(), "text/plain".to_string())];
        let rec = record(&peer, Some(&head), &response);
        let cases = [
            ("%(h)s", "::1"),
            ("%(l)s", "-"),
            ("%(u)s", "alice"),
            ("%(t)s", "[22/Nov/2026:01:58:29 +0000]"),
            ("%(r)s", "POST /a%20b/c?x=1&y=2 HTTP/1.1"),
            ("%(s)s", "200"),
            ("%(b)s", "2"),
            ("%(B)s", "2"),
            ("%(f)s", "http://ref/"),
            ("%(a)s", r#"curl/8.0 \"quoted\""#),
            ("%(T)s", "1"),
            ("%(M)s", "1234"),
            ("%(D)s", "1234567"),
            ("%(L)s", "1.234567"),
            ("%(p)s", "<4242>"),
            ("%(U)s", "/a b/c"),
            ("%(q)s", "x=1&y=2"),
            ("%(H)s", "HTTP/1.1"),
            ("%(m)s", "POST"),
            ("%({x-request-id}i)s", "abc"),
            ("%({X-REQUEST-ID}i)s", "abc"),
            ("%({missing}i)s", "-"),
            ("%({content-type}o)s", "text/plain"),
            ("%({content-length}o)s", "-"),
            ("%({PATH}e)s", &std::env::var("PATH").unwrap()),
            ("%({path}e)s", &std::env::var("PATH").unwrap()),
            ("%({GUNICORND_SURELY_UNSET_VAR}e)s", "-"),
            ("%(zzz)s", "-"),
            ("%({x}z)s", "-"),
        ];
        for (format, want) in cases {
            assert_eq!(render(format, &rec), want, "{format}");
        }
    }

    #[test]
    fn zero_bytes_and_short_durations() {
        let peer = tcp_peer("10.0.0.1:1");
        let head = head("HEAD", "/", &[]);
        let mut rec = record(&peer, Some(&head), &[]);
        rec.body_bytes = 0;
        rec.duration = Duration::from_micros(1234);
        assert_eq!(
            render("%(b)s %(B)s %(T)s %(M)s %(D)s %(L)s %(q)s.", &rec),
            "0 0 0 1 1234 0.001234 ."
        );
    }

    #[test]
    fn without_a_request_head() {
        let peer = PeerAddr::Unix;
        let rec = record(&peer, None, &[]);
        assert_eq!(
            render(
                "%(h)s %(u)s %(r)s %(m)s %(U)s %(q)s %(H)s %(f)s %(a)s %({host}i)s %(s)s",
                &rec
            ),
            "- - - - - - - - - - 200"
        );
    }

    #[test]
    fn basic_auth_edge_cases() {
        let peer = tcp_peer("127.0.0.1:1");
        for (auth, want) in [
            ("basic Ym9iOg==", "bob"),         // bob: (lower-case scheme)
            ("Basic bm9jb2xvbg==", "nocolon"), // no password part
            ("Basic OnB3", "-"),               // empty user
            ("Basic !!!", "-"),                // not base64
            ("Bearer YWxpY2U6c2VjcmV0", "-"),  // other scheme
            ("Basic", "-"),                    // no credentials
        ] {
            let head = head("GET", "/", &[("Authorization", auth)]);
            assert_eq!(
                render("%(u)s", &record(&peer, Some(&head), &[])),
                want,
                "{auth}"
            );
        }
    }

    #[test]
    fn escapes_quotes_and_control_characters() {
        let peer = tcp_peer("127.0.0.1:1");
        let head = head("GET", "/x%0Ay%22", &[]);
        assert_eq!(
            render("%(U)s", &record(&peer, Some(&head), &[])),
            "/x\\x0ay\\\""
        );
    }

    #[test]
    fn parses_percent_syntax() {
        let peer = tcp_peer("127.0.0.1:1");
        let head = head("GET", "/", &[]);
        let rec = record(&peer, Some(&head), &[]);
        assert_eq!(render("100%% %(s)s", &rec), "100% 200");
        assert_eq!(render("%(s)d %(s %", &rec), "%(s)d %(s %");
        assert_eq!(render("%(s)s%(s)s", &rec), "200200");
        assert_eq!(render("", &rec), "");
        assert_eq!(
            AccessFormat::parse("a %(h)s b").parts,
            vec![
                Part::Literal("a ".into()),
                Part::Atom(Atom::RemoteAddr),
                Part::Literal(" b".into())
            ]
        );
    }
}
