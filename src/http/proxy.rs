//! The PROXY protocol (HAProxy's, versions 1 and 2) on the first bytes of
//! a connection, with gunicorn's rules (`gunicorn/http/message.py`,
//! `proxy_protocol`).
//!
//! Hand-written rather than taken from a crate: the rules are gunicorn's,
//! not the widest reading of the specification (v1's `UNKNOWN` is refused,
//! v2's UNIX family and non-STREAM protocols too, TLVs are skipped
//! unread), and the parser must say "not enough bytes yet" without ever
//! blocking, since the worker's loop feeds it what has arrived so far.
//! That is 150 lines over a byte slice, fuzzed with the HTTP parser
//! (`crate::fuzzing`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::HttpError;

/// `--proxy-protocol`: which versions are read (gunicorn 23's names; a
/// flag without a value is `auto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyMode {
    #[default]
    Off,
    V1,
    V2,
    Auto,
}

impl ProxyMode {
    pub const NAMES: [&'static str; 4] = ["off", "v1", "v2", "auto"];

    pub fn name(self) -> &'static str {
        match self {
            ProxyMode::Off => "off",
            ProxyMode::V1 => "v1",
            ProxyMode::V2 => "v2",
            ProxyMode::Auto => "auto",
        }
    }

    /// The mode's name; `true` is `auto` and `false` is `off`, as gunicorn
    /// takes them.
    pub fn from_name(name: &str) -> Option<ProxyMode> {
        match name.to_ascii_lowercase().as_str() {
            "off" | "false" => Some(ProxyMode::Off),
            "v1" => Some(ProxyMode::V1),
            "v2" => Some(ProxyMode::V2),
            "auto" | "true" => Some(ProxyMode::Auto),
            _ => None,
        }
    }

    fn reads_v1(self) -> bool {
        matches!(self, ProxyMode::V1 | ProxyMode::Auto)
    }

    fn reads_v2(self) -> bool {
        matches!(self, ProxyMode::V2 | ProxyMode::Auto)
    }
}

/// What a PROXY header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// 1 or 2.
    pub version: u8,
    /// The client's address; `None` for v2 `LOCAL` or `UNSPEC` (a health
    /// check of the proxy's own: the connection's peer stays).
    pub source: Option<SocketAddr>,
    /// The address the client connected to, on the proxy.
    pub destination: Option<SocketAddr>,
}

/// What the first bytes of a connection are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Not a PROXY header (of a version the mode reads): plain HTTP, or
    /// TLS. A header is optional even when the protocol is on (gunicorn).
    NotProxy,
    /// The start of one: wait for more bytes.
    Incomplete,
    /// A valid header of `consumed` bytes.
    Header {
        header: ProxyHeader,
        consumed: usize,
    },
    /// A malformed one: answer with this error and close.
    Invalid(HttpError),
}

const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
const V1_PREFIX: &[u8; 6] = b"PROXY ";
/// The longest v1 line the specification allows, CRLF included; longer
/// is refused rather than buffered (gunicorn reads to the CRLF, however
/// far).
const V1_MAX: usize = 107;

/// Look at what arrived so far (`eof`: nothing more will).
pub fn parse(buf: &[u8], mode: ProxyMode, eof: bool) -> Parsed {
    let could_be = |sig: &[u8]| buf.len() < sig.len() && sig.starts_with(buf);
    if mode.reads_v2() && buf.starts_with(V2_SIGNATURE) {
        return parse_v2(buf);
    }
    if mode.reads_v1() && buf.starts_with(V1_PREFIX) {
        return parse_v1(buf, eof);
    }
    let waiting =
        (mode.reads_v2() && could_be(V2_SIGNATURE)) || (mode.reads_v1() && could_be(V1_PREFIX));
    if waiting && !eof {
        Parsed::Incomplete
    } else {
        Parsed::NotProxy
    }
}

fn invalid_line(detail: &str) -> Parsed {
    Parsed::Invalid(HttpError::new(400, format!("Invalid PROXY line: {detail}")))
}

fn invalid_header(detail: &str) -> Parsed {
    Parsed::Invalid(HttpError::new(
        400,
        format!("Invalid PROXY header: {detail}"),
    ))
}

fn parse_v1(buf: &[u8], eof: bool) -> Parsed {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() >= V1_MAX || eof {
            return invalid_line("no CRLF within 107 bytes");
        }
        return Parsed::Incomplete;
    };
    if end + 2 > V1_MAX {
        return invalid_line("longer than 107 bytes");
    }
    let Ok(line) = std::str::from_utf8(&buf[..end]) else {
        return invalid_line("not ASCII");
    };
    let fields: Vec<&str> = line.split(' ').collect();
    let [_, proto, src, dst, sport, dport] = fields[..] else {
        return invalid_line(&format!("'{line}' does not have 6 fields"));
    };
    let ip = |text: &str| -> Option<IpAddr> {
        match proto {
            "TCP4" => text.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
            _ => text.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
        }
    };
    if proto != "TCP4" && proto != "TCP6" {
        return invalid_line(&format!("protocol '{proto}' is not TCP4 or TCP6"));
    }
    let port = |text: &str| -> Option<u16> {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        text.parse().ok()
    };
    let (Some(src), Some(dst)) = (ip(src), ip(dst)) else {
        return invalid_line(&format!("'{line}' has an invalid {proto} address"));
    };
    let (Some(sport), Some(dport)) = (port(sport), port(dport)) else {
        return invalid_line(&format!("'{line}' has an invalid port"));
    };
    Parsed::Header {
        header: ProxyHeader {
            version: 1,
            source: Some(SocketAddr::new(src, sport)),
            destination: Some(SocketAddr::new(dst, dport)),
        },
        consumed: end + 2,
    }
}

fn parse_v2(buf: &[u8]) -> Parsed {
    if buf.len() < 16 {
        return Parsed::Incomplete;
    }
    let version = buf[12] >> 4;
    let command = buf[12] & 0x0f;
    let family = buf[13] >> 4;
    let protocol = buf[13] & 0x0f;
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if version != 2 {
        return invalid_header(&format!("version {version}"));
    }
    if command > 1 {
        return invalid_header(&format!("command {command}"));
    }
    if buf.len() < 16 + len {
        return Parsed::Incomplete;
    }
    let body = &buf[16..16 + len];
    let consumed = 16 + len;
    let none = ProxyHeader {
        version: 2,
        source: None,
        destination: None,
    };
    if command == 0 {
        return Parsed::Header {
            header: none,
            consumed,
        };
    }
    if protocol != 1 {
        return invalid_header("not a STREAM connection");
    }
    let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
    let header = match family {
        0 => none,
        1 if len >= 12 => {
            let ip = |at: usize| {
                IpAddr::V4(Ipv4Addr::new(
                    body[at],
                    body[at + 1],
                    body[at + 2],
                    body[at + 3],
                ))
            };
            ProxyHeader {
                version: 2,
                source: Some(SocketAddr::new(ip(0), port(8))),
                destination: Some(SocketAddr::new(ip(4), port(10))),
            }
        }
        2 if len >= 36 => {
            let ip = |at: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&body[at..at + 16]);
                IpAddr::V6(Ipv6Addr::from(octets))
            };
            ProxyHeader {
                version: 2,
                source: Some(SocketAddr::new(ip(0), port(32))),
                destination: Some(SocketAddr::new(ip(16), port(34))),
            }
        }
        1 | 2 => return invalid_header(&format!("{len} address bytes are too few")),
        _ => return invalid_header(&format!("address family {family}")),
    };
    Parsed::Header { header, consumed }
}

/// A v2 header for `source` → `destination`.
#[cfg(test)]
fn v2_header(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.push(0x21);
    match (source, destination) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            out.push(0x11);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&s.ip().octets());
            out.extend_from_slice(&d.ip().octets());
        }
        (s, d) => {
            let v6 = |a: SocketAddr| match a.ip() {
                IpAddr::V4(ip) => ip.to_ipv6_mapped().octets(),
                IpAddr::V6(ip) => ip.octets(),
            };
            out.push(0x21);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&v6(s));
            out.extend_from_slice(&v6(d));
        }
    }
    out.extend_from_slice(&source.port().to_be_bytes());
    out.extend_from_slice(&destination.port().to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(p: Parsed) -> (ProxyHeader, usize) {
        match p {
            Parsed::Header { header, consumed } => (header, consumed),
            other => panic!("not a header: {other:?}"),
        }
    }

    fn is_invalid(p: Parsed) -> bool {
        matches!(p, Parsed::Invalid(e) if e.status == 400)
    }

    #[test]
    fn v1_lines_are_read_and_checked() {
        let line = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET /";
        let (h, n) = header(parse(line, ProxyMode::V1, false));
        assert_eq!(n, line.len() - 5);
        assert_eq!(h.source, Some("192.0.2.1:56324".parse().unwrap()));
        assert_eq!(h.destination, Some("198.51.100.2:443".parse().unwrap()));
        let (h, _) = header(parse(
            b"PROXY TCP6 2001:db8::1 ::1 1 2\r\n",
            ProxyMode::Auto,
            false,
        ));
        assert_eq!(h.source, Some("[2001:db8::1]:1".parse().unwrap()));
        for bad in [
            &b"PROXY UNKNOWN\r\n"[..],
            b"PROXY TCP4 192.0.2.1 198.51.100.2 56324\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443 x\r\n",
            b"PROXY TCP4 ::1 198.51.100.2 1 2\r\n",
            b"PROXY TCP6 192.0.2.1 ::1 1 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 65536 443\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 +1 443\r\n",
            b"PROXY TCP4  192.0.2.1 198.51.100.2 1 443\r\n",
        ] {
            assert!(is_invalid(parse(bad, ProxyMode::V1, false)), "{bad:?}");
        }
        let long = [b"PROXY ".as_slice(), &[b'1'; 120]].concat();
        assert!(is_invalid(parse(&long, ProxyMode::V1, false)));
        assert_eq!(
            parse(b"PROXY TCP4 1.2.3.4", ProxyMode::V1, false),
            Parsed::Incomplete
        );
        assert!(is_invalid(parse(
            b"PROXY TCP4 1.2.3.4",
            ProxyMode::V1,
            true
        )));
    }

    #[test]
    fn what_is_no_header_is_plain_http() {
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\n", ProxyMode::Auto, false),
            Parsed::NotProxy
        );
        assert_eq!(parse(b"PRO", ProxyMode::Auto, false), Parsed::Incomplete);
        assert_eq!(parse(b"PRO", ProxyMode::Auto, true), Parsed::NotProxy);
        assert_eq!(parse(b"\r\n\r", ProxyMode::V2, false), Parsed::Incomplete);
        assert_eq!(parse(b"\r\n\r", ProxyMode::V1, false), Parsed::NotProxy);
        // A version the mode does not read is not a header.
        let v1 = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n";
        assert_eq!(parse(v1, ProxyMode::V2, false), Parsed::NotProxy);
        let v2 = v2_header("1.2.3.4:1".parse().unwrap(), "5.6.7.8:2".parse().unwrap());
        assert_eq!(parse(&v2, ProxyMode::V1, false), Parsed::NotProxy);
        // TLS starts with 0x16: not a header either.
        assert_eq!(
            parse(&[0x16, 3, 1, 0, 5], ProxyMode::Auto, false),
            Parsed::NotProxy
        );
    }

    #[test]
    fn v2_headers_are_read_and_checked() {
        let src: SocketAddr = "192.0.2.1:56324".parse().unwrap();
        let dst: SocketAddr = "198.51.100.2:443".parse().unwrap();
        let mut v2 = v2_header(src, dst);
        let len = v2.len();
        v2.extend_from_slice(b"GET");
        let (h, n) = header(parse(&v2, ProxyMode::V2, false));
        assert_eq!(
            (h.version, h.source, h.destination, n),
            (2, Some(src), Some(dst), len)
        );
        for cut in [13, 16, len - 1] {
            assert_eq!(
                parse(&v2[..cut], ProxyMode::Auto, false),
                Parsed::Incomplete,
                "{cut}"
            );
        }
        let src6: SocketAddr = "[2001:db8::1]:1".parse().unwrap();
        let (h, _) = header(parse(
            &v2_header(src6, "[::1]:2".parse().unwrap()),
            ProxyMode::V2,
            false,
        ));
        assert_eq!(h.source, Some(src6));
        // LOCAL: no addresses, any protocol.
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(header(parse(&local, ProxyMode::V2, false)).0.source, None);
        let with = |b12: u8, b13: u8, len: u16| {
            let mut h = V2_SIGNATURE.to_vec();
            h.extend_from_slice(&[b12, b13]);
            h.extend_from_slice(&len.to_be_bytes());
            h.extend_from_slice(&vec![0; usize::from(len)]);
            h
        };
        assert!(is_invalid(parse(
            &with(0x11, 0x11, 12),
            ProxyMode::V2,
            false
        )));
        assert!(is_invalid(parse(
            &with(0x22, 0x11, 12),
            ProxyMode::V2,
            false
        )));
        assert!(is_invalid(parse(
            &with(0x21, 0x12, 12),
            ProxyMode::V2,
            false
        )));
        assert!(is_invalid(parse(
            &with(0x21, 0x11, 8),
            ProxyMode::V2,
            false
        )));
        assert!(is_invalid(parse(
            &with(0x21, 0x21, 12),
            ProxyMode::V2,
            false
        )));
        assert!(is_invalid(parse(
            &with(0x21, 0x31, 216),
            ProxyMode::V2,
            false
        )));
        assert_eq!(
            header(parse(&with(0x21, 0x01, 0), ProxyMode::V2, false))
                .0
                .source,
            None
        );
        // TLVs after the addresses are skipped.
        let (_, n) = header(parse(&with(0x21, 0x11, 20), ProxyMode::V2, false));
        assert_eq!(n, 36);
    }
}
