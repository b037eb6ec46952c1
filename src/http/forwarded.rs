//! Trusted front ends (gunicorn's `forwarded_allow_ips`,
//! `proxy_allow_ips` and `secure_scheme_headers`): which peers may tell
//! the server about the client behind them, and what the scheme headers
//! of a trusted one mean.
//!
//! One word, one meaning: a peer in `--forwarded-allow-ips` is a *trusted
//! front end*: it may mark a request https (`--secure-scheme-headers`) and
//! send the `--forwarder-headers` fields. A peer in `--proxy-allow-from`
//! may send a PROXY header (`super::proxy`), which sets the remote address.
//! Nothing else changes the remote address: `X-Forwarded-For` is only a
//! header (as in gunicorn), whoever sends it.

use std::net::IpAddr;

use ipnet::IpNet;

use super::{HttpError, PeerAddr, RequestHead};

/// A list of peers: addresses and CIDR ranges, or `*` for any. Unix-socket
/// peers are always in it (as in gunicorn: they have no address, and only
/// local users reach them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowList {
    Any,
    Nets(Vec<IpNet>),
}

impl AllowList {
    /// gunicorn's default for both lists.
    pub fn loopback() -> AllowList {
        AllowList::parse("127.0.0.1,::1").expect("valid")
    }

    /// A comma-separated list of IP addresses and CIDR ranges, or `*`.
    /// A range with host bits set is refused, as Python's strict
    /// `ip_network` does.
    pub fn parse(text: &str) -> Result<AllowList, String> {
        let mut nets = Vec::new();
        for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            if word == "*" {
                return Ok(AllowList::Any);
            }
            let net = if word.contains('/') {
                let net: IpNet = word
                    .parse()
                    .map_err(|_| format!("'{word}' is not an IP address or CIDR range"))?;
                if net.trunc() != net {
                    return Err(format!(
                        "'{word}' has host bits set (did you mean {}?)",
                        net.trunc()
                    ));
                }
                net
            } else {
                let ip: IpAddr = word
                    .parse()
                    .map_err(|_| format!("'{word}' is not an IP address or CIDR range"))?;
                IpNet::from(ip)
            };
            nets.push(net);
        }
        Ok(AllowList::Nets(nets))
    }

    /// Whether `peer` is in the list (an IPv4-mapped IPv6 peer, from a
    /// dual-stack listener, as its IPv4 address).
    pub fn allows(&self, peer: &PeerAddr) -> bool {
        let ip = match peer {
            PeerAddr::Unix => return true,
            PeerAddr::Tcp(addr) => addr.ip(),
        };
        let mapped = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        match self {
            AllowList::Any => true,
            AllowList::Nets(nets) => nets
                .iter()
                .any(|n| n.contains(&ip) || mapped.is_some_and(|m| n.contains(&m))),
        }
    }

    /// As the settings show it: `*`, or the addresses and ranges.
    pub fn to_strings(&self) -> Vec<String> {
        match self {
            AllowList::Any => vec!["*".to_owned()],
            AllowList::Nets(nets) => nets
                .iter()
                .map(|n| {
                    if n.prefix_len() == n.max_prefix_len() {
                        n.addr().to_string()
                    } else {
                        n.to_string()
                    }
                })
                .collect(),
        }
    }
}

impl serde::Serialize for AllowList {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_strings().serialize(s)
    }
}

/// gunicorn's default `secure_scheme_headers`.
pub const DEFAULT_SECURE_SCHEME_HEADERS: [(&str, &str); 3] = [
    ("X-FORWARDED-PROTOCOL", "ssl"),
    ("X-FORWARDED-PROTO", "https"),
    ("X-FORWARDED-SSL", "on"),
];

/// `--secure-scheme-headers`: `NAME=VALUE,...` (names upper-cased, values
/// kept as given: they are compared exactly).
pub fn parse_scheme_headers(text: &str) -> Result<Vec<(String, String)>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .map(|pair| {
            let (name, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("'{pair}' is not NAME=VALUE"))?;
            let name = name.trim();
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
            {
                return Err(format!("'{name}' is not a header name"));
            }
            Ok((name.to_ascii_uppercase(), value.trim().to_owned()))
        })
        .collect()
}

/// The scheme a request from a trusted front end asks for: the first of
/// its fields named in `table` decides (https when its value is the
/// table's, exactly; http otherwise), and a later one that disagrees is a
/// 400, as gunicorn's `InvalidSchemeHeaders`. `None`: no such field (or
/// an untrusted peer, whose fields mean nothing).
pub fn scheme(
    head: &RequestHead,
    table: &[(String, String)],
    trusted: bool,
) -> Result<Option<&'static str>, HttpError> {
    if !trusted {
        return Ok(None);
    }
    let mut chosen = None;
    for (name, value) in &head.headers {
        let Some((_, secure)) = table.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) else {
            continue;
        };
        let this = if value == secure { "https" } else { "http" };
        match chosen {
            None => chosen = Some(this),
            Some(earlier) if earlier != this => {
                return Err(HttpError::new(400, "Contradictory scheme headers"))
            }
            Some(_) => {}
        }
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(s: &str) -> PeerAddr {
        PeerAddr::Tcp(s.parse().unwrap())
    }

    #[test]
    fn allow_lists_take_addresses_ranges_and_a_star() {
        let l = AllowList::parse("10.0.0.0/8, 192.168.1.5,::1").unwrap();
        assert!(l.allows(&tcp("10.1.2.3:1")));
        assert!(l.allows(&tcp("192.168.1.5:1")));
        assert!(!l.allows(&tcp("192.168.1.6:1")));
        assert!(l.allows(&tcp("[::1]:1")));
        assert!(l.allows(&tcp("[::ffff:10.0.0.1]:1")));
        assert!(l.allows(&PeerAddr::Unix));
        assert!(AllowList::parse("*").unwrap().allows(&tcp("8.8.8.8:1")));
        assert!(!AllowList::parse("").unwrap().allows(&tcp("127.0.0.1:1")));
        assert!(AllowList::parse("10.0.0.1/8")
            .unwrap_err()
            .contains("host bits"));
        assert!(AllowList::parse("example.com").is_err());
        assert_eq!(l.to_strings(), ["10.0.0.0/8", "192.168.1.5", "::1"]);
        assert!(AllowList::loopback().allows(&tcp("[::ffff:127.0.0.1]:1")));
        assert!(!AllowList::loopback().allows(&tcp("127.0.0.2:1")));
    }

    #[test]
    fn scheme_headers_count_only_from_trusted_peers_and_must_agree() {
        let table: Vec<(String, String)> = DEFAULT_SECURE_SCHEME_HEADERS
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let head = |fields: &[(&str, &str)]| crate::app::testing::head("GET", "/", fields);
        let h = head(&[("X-Forwarded-Proto", "https")]);
        assert_eq!(scheme(&h, &table, true), Ok(Some("https")));
        assert_eq!(scheme(&h, &table, false), Ok(None));
        let h = head(&[("X-Forwarded-Proto", "HTTPS")]);
        assert_eq!(scheme(&h, &table, true), Ok(Some("http")));
        let h = head(&[("X-Forwarded-Proto", "https"), ("X-Forwarded-Ssl", "off")]);
        assert_eq!(scheme(&h, &table, true).unwrap_err().status, 400);
        assert_eq!(scheme(&head(&[]), &table, true), Ok(None));
        assert_eq!(
            parse_scheme_headers("x-forwarded-proto=https, X-SSL = on").unwrap(),
            [
                ("X-FORWARDED-PROTO".to_owned(), "https".to_owned()),
                ("X-SSL".to_owned(), "on".to_owned())
            ]
        );
        assert!(parse_scheme_headers("X-A").is_err());
    }
}
