//! Parsing and normalising single setting values.
//!
//! Each parser takes the text of one value (from the command line,
//! `GUNICORN_CMD_ARGS` or the config file) and returns the typed value or a
//! short reason ("expected a positive integer") that the caller wraps with the
//! setting name and where the value came from. The same functions serve clap
//! (as value parsers) and the config file, so both accept the same forms.

use std::path::PathBuf;

use nix::unistd::{Group, User};

use super::bind::parse_address;
use crate::http::{is_token, HeaderMap};

/// The port used by a bind address that names none.
pub const DEFAULT_PORT: u16 = 8000;

/// gunicorn's `MAX_REQUEST_LINE`.
pub const MAX_REQUEST_LINE: usize = 8190;
/// gunicorn's `MAX_HEADERS`.
pub const MAX_HEADERS: usize = 32768;
/// gunicorn's `DEFAULT_MAX_HEADERFIELD_SIZE`, also what 0 means (25.2+).
pub const DEFAULT_MAX_HEADERFIELD_SIZE: usize = 8190;

/// Log levels accepted by `--log-level`, lowest first.
pub const LOG_LEVELS: [&str; 5] = ["debug", "info", "warning", "error", "critical"];

/// Server hooks that can run a command (the events the master fires).
pub use crate::hooks::EVENTS as HOOK_NAMES;

/// Python's `int(s, 0)`: optional sign, `0x`/`0o`/`0b` prefixes, `_`
/// between digits, and no leading zeros on a non-zero decimal (so `010` is
/// an error, as in Python). Hand-written because Rust's integer parsing
/// accepts none of the prefixes and rejects underscores.
pub fn parse_int(s: &str) -> Result<i64, String> {
    let invalid = || format!("'{s}' is not an integer");
    let t = s.trim();
    let (negative, unsigned) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let lower = unsigned.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d.strip_prefix('_').unwrap_or(d))
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d.strip_prefix('_').unwrap_or(d))
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d.strip_prefix('_').unwrap_or(d))
    } else {
        if lower.len() > 1
            && lower.starts_with('0')
            && lower.bytes().any(|b| b != b'0' && b != b'_')
        {
            return Err(invalid());
        }
        (10, lower.as_str())
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
        || !digits.chars().all(|c| c == '_' || c.is_digit(radix))
    {
        return Err(invalid());
    }
    let magnitude = i64::from_str_radix(&digits.replace('_', ""), radix).map_err(|_| invalid())?;
    Ok(if negative { -magnitude } else { magnitude })
}

/// A count of at least one (`--workers`), at most what one master runs.
pub fn positive_int(s: &str) -> Result<usize, String> {
    let most = crate::scoreboard::CAPACITY;
    match parse_int(s) {
        Ok(n) if n >= 1 && n <= most as i64 => Ok(n as usize),
        Ok(n) if n > most as i64 => Err(format!("expected at most {most}")),
        _ => Err("expected a positive integer".to_owned()),
    }
}

/// A count of at least one with no upper bound of its own
/// (`--control-socket-max-clients`).
pub fn positive_count(s: &str) -> Result<usize, String> {
    match parse_int(s) {
        Ok(n) if n >= 1 => usize::try_from(n).map_err(|_| "the number is too large".to_owned()),
        _ => Err("expected a positive integer".to_owned()),
    }
}

/// Zero or more (timeouts, `--max-requests`, limits).
pub fn non_negative_int(s: &str) -> Result<u64, String> {
    match parse_int(s) {
        Ok(n) if n >= 0 => Ok(n as u64),
        _ => Err("expected a non-negative integer".to_owned()),
    }
}

/// Longest timeout accepted: a year. Larger values mean "never" in
/// practice, and would overflow the master's clock arithmetic.
pub const MAX_SECONDS: u64 = 365 * 24 * 3600;

/// A duration in whole seconds (`--timeout`, `--graceful-timeout`,
/// `--upgrade-timeout`).
pub fn seconds(s: &str) -> Result<u64, String> {
    match non_negative_int(s)? {
        n if n <= MAX_SECONDS => Ok(n),
        _ => Err(format!("expected at most {MAX_SECONDS} seconds (a year)")),
    }
}

/// A client deadline in whole seconds (`--header-timeout`,
/// `--body-timeout`): at least one (a client with no time at all could
/// never be served).
pub fn positive_seconds(s: &str) -> Result<u64, String> {
    match seconds(s)? {
        0 => Err("expected at least 1 second".to_string()),
        n => Ok(n),
    }
}

/// `--backlog`: zero or more, and it must fit `listen()`'s `int`.
pub fn backlog(s: &str) -> Result<i32, String> {
    let n = non_negative_int(s)?;
    i32::try_from(n).map_err(|_| format!("expected at most {}", i32::MAX))
}

/// A limit stored as `usize` before normalisation.
pub fn limit(s: &str) -> Result<usize, String> {
    let n = non_negative_int(s)?;
    usize::try_from(n).map_err(|_| "the number is too large".to_owned())
}

/// `limit_request_line`: 0 stays 0 (unlimited); anything above
/// `MAX_REQUEST_LINE` is clamped to it.
pub fn normalize_limit_request_line(n: usize) -> usize {
    n.min(MAX_REQUEST_LINE)
}

/// `limit_request_fields`: 0 or above `MAX_HEADERS` means `MAX_HEADERS`.
pub fn normalize_limit_request_fields(n: usize) -> usize {
    if n == 0 || n > MAX_HEADERS {
        MAX_HEADERS
    } else {
        n
    }
}

/// `limit_request_field_size`: 0 means the default maximum (gunicorn
/// 25.2+; older versions treated it as unlimited).
pub fn normalize_limit_request_field_size(n: usize) -> usize {
    if n == 0 {
        DEFAULT_MAX_HEADERFIELD_SIZE
    } else {
        n
    }
}

/// `--header-map`: `drop`, `refuse` or `dangerous`, case-insensitive.
pub fn header_map(s: &str) -> Result<HeaderMap, String> {
    HeaderMap::from_name(s.trim())
        .ok_or_else(|| format!("expected one of {}", HeaderMap::NAMES.join(", ")))
}

/// `--forwarder-headers`: gunicorn's comma-separated list of header field
/// names. Each is trimmed and upper-cased and empty ones are dropped (so
/// `""` is an empty list, which from a higher source clears a lower one's);
/// `*` stands for every name.
pub fn forwarder_headers(s: &str) -> Result<Vec<String>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(|name| {
            if name == "*" || is_token(name.as_bytes()) {
                Ok(name.to_ascii_uppercase())
            } else {
                Err(format!("'{name}' is not a header field name"))
            }
        })
        .collect()
}

/// Highest value accepted for a umask or a file mode.
const MAX_MODE: u32 = 0o777;

/// `--umask`: gunicorn's `auto_int`, i.e. `int(x, 0)` after turning a
/// leading `0<digit>` into `0o<digit>` (so `0022` and `022` are octal, `22`
/// is decimal, `0x12` is hex).
pub fn umask(s: &str) -> Result<u32, String> {
    let expected = || "expected a umask such as 0022 (octal with a leading 0)".to_owned();
    let t = s.trim();
    let octal_form;
    let text = match t.as_bytes() {
        [b'0', d, ..] if d.is_ascii_digit() => {
            octal_form = format!("0o{}", &t[1..]);
            octal_form.as_str()
        }
        _ => t,
    };
    match parse_int(text) {
        Ok(n) if (0..=i64::from(MAX_MODE)).contains(&n) => Ok(n as u32),
        _ => Err(expected()),
    }
}

/// `--control-socket-mode`: always octal, like `chmod` (`600`, `0600` and
/// `0o600` are the same).
pub fn octal_mode(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let digits = t
        .strip_prefix("0o")
        .or_else(|| t.strip_prefix("0O"))
        .unwrap_or(t);
    match u32::from_str_radix(digits, 8) {
        Ok(n) if !digits.starts_with(['+', '-']) && n <= MAX_MODE => Ok(n),
        _ => Err("expected an octal file mode such as 0600".to_owned()),
    }
}

/// Render a mode the way [`umask`] and [`octal_mode`] read it back.
pub fn format_mode(mode: u32) -> String {
    format!("{mode:04o}")
}

/// `--bind`: checked with [`parse_address`] and kept as written.
pub fn bind(s: &str) -> Result<String, String> {
    parse_address(s, DEFAULT_PORT).map(|_| s.to_owned())
}

/// `--log-level`, case-insensitive, stored lowercase.
pub fn log_level(s: &str) -> Result<String, String> {
    let lower = s.trim().to_ascii_lowercase();
    if LOG_LEVELS.contains(&lower.as_str()) {
        Ok(lower)
    } else {
        Err(format!("expected one of {}", LOG_LEVELS.join(", ")))
    }
}

/// `--pythonpath`: gunicorn's comma-separated list of directories. Each is
/// trimmed and empty ones are dropped, so `""` is an empty list (which, from
/// a higher source, clears a lower one's). A directory need not exist, as in
/// gunicorn: Python skips the ones it cannot import from.
pub fn pythonpath(s: &str) -> Result<Vec<PathBuf>, String> {
    // Only the config file can hold one ("\u0000"), and no directory name
    // can.
    if s.contains('\0') {
        return Err("expected directories without NUL bytes".to_owned());
    }
    Ok(s.split(',')
        .map(str::trim)
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .collect())
}

/// `-e/--env KEY=VALUE`; the value may itself contain `=`.
pub fn env_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((key, value)) if !key.is_empty() && !key.contains('\0') && !value.contains('\0') => {
            Ok((key.to_owned(), value.to_owned()))
        }
        _ => Err("expected KEY=VALUE".to_owned()),
    }
}

/// `--hook NAME=COMMAND`.
pub fn hook_pair(s: &str) -> Result<(String, String), String> {
    let Some((name, command)) = s.split_once('=') else {
        return Err("expected NAME=COMMAND".to_owned());
    };
    hook_command(name, command).map(|command| (name.to_owned(), command))
}

/// Check one hook: a known name and a non-empty command.
pub fn hook_command(name: &str, command: &str) -> Result<String, String> {
    if !HOOK_NAMES.contains(&name) {
        return Err(format!(
            "unknown hook '{name}' (expected one of {})",
            HOOK_NAMES.join(", ")
        ));
    }
    if command.trim().is_empty() {
        return Err(format!("the command for hook '{name}' is empty"));
    }
    Ok(command.to_owned())
}

/// `-u/--user`: a number is taken as a uid as is (it need not exist in the
/// user database, as in gunicorn); a name is looked up.
pub fn user(s: &str) -> Result<u32, String> {
    if let Some(id) = numeric_id(s) {
        return Ok(id);
    }
    match User::from_name(s) {
        Ok(Some(u)) => Ok(u.uid.as_raw()),
        Ok(None) => Err(format!("no such user '{s}'")),
        Err(e) => Err(format!("cannot look up user '{s}': {e}")),
    }
}

/// `-g/--group`: like [`user`], for groups.
pub fn group(s: &str) -> Result<u32, String> {
    if let Some(id) = numeric_id(s) {
        return Ok(id);
    }
    match Group::from_name(s) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => Err(format!("no such group '{s}'")),
        Err(e) => Err(format!("cannot look up group '{s}': {e}")),
    }
}

fn numeric_id(s: &str) -> Option<u32> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

/// A value that must not be empty (names, formats, paths).
pub fn non_empty(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Err("expected a non-empty value".to_owned())
    } else {
        Ok(s.to_owned())
    }
}

/// Booleans in the config file may also be the strings `true`/`false`, as
/// gunicorn's `validate_bool` allows.
/// `-k`/`worker_class`: `sync` or `command`.
pub fn worker_class(s: &str) -> Result<super::WorkerClass, String> {
    super::WorkerClass::from_name(s.trim())
        .ok_or_else(|| format!("expected one of {}", super::WorkerClass::NAMES.join(", ")))
}

/// `upgrade_mode`: `fork` or `in-place`.
pub fn upgrade_mode(s: &str) -> Result<super::UpgradeMode, String> {
    super::UpgradeMode::from_name(s.trim())
        .ok_or_else(|| format!("expected one of {}", super::UpgradeMode::NAMES.join(", ")))
}

/// One word of a worker's command line: any text without a NUL byte (an
/// empty argument is an argument).
pub fn command_word(s: &str) -> Result<String, String> {
    if s.contains('\0') {
        return Err("expected no NUL byte".to_owned());
    }
    Ok(s.to_owned())
}

pub fn boolean(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("expected true or false".to_owned()),
    }
}

// TLS, the PROXY protocol and trusted front ends.

/// `--cert-reqs`: 0, 1 or 2 (Python's `CERT_NONE`, `CERT_OPTIONAL`,
/// `CERT_REQUIRED`).
pub fn cert_reqs(s: &str) -> Result<crate::tls::CertReqs, String> {
    s.trim()
        .parse::<u8>()
        .ok()
        .and_then(crate::tls::CertReqs::from_number)
        .ok_or_else(|| "expected 0 (none), 1 (optional) or 2 (required)".to_owned())
}

/// `--ciphers`: checked now, kept as given.
pub fn ciphers(s: &str) -> Result<String, String> {
    crate::tls::cipher_suites(s)?;
    Ok(s.to_owned())
}

/// `--tls-min-version`: `1.2` or `1.3` (also `TLSv1_2`, `TLSv1.3`).
pub fn tls_min_version(s: &str) -> Result<crate::tls::MinVersion, String> {
    match s.trim().to_ascii_lowercase().trim_start_matches("tlsv") {
        "1.2" | "1_2" => Ok(crate::tls::MinVersion::Tls12),
        "1.3" | "1_3" => Ok(crate::tls::MinVersion::Tls13),
        _ => Err("expected 1.2 or 1.3".to_owned()),
    }
}

/// `--proxy-protocol`: off, v1, v2 or auto (`true`/`false` too).
pub fn proxy_mode(s: &str) -> Result<crate::http::proxy::ProxyMode, String> {
    crate::http::proxy::ProxyMode::from_name(s.trim()).ok_or_else(|| {
        format!(
            "expected one of {}",
            crate::http::proxy::ProxyMode::NAMES.join(", ")
        )
    })
}

/// `--proxy-allow-from`, `--forwarded-allow-ips`.
pub fn allow_list(s: &str) -> Result<crate::http::forwarded::AllowList, String> {
    crate::http::forwarded::AllowList::parse(s)
}

/// `--secure-scheme-headers`.
pub fn scheme_headers(s: &str) -> Result<Vec<(String, String)>, String> {
    crate::http::forwarded::parse_scheme_headers(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_int_forms() {
        assert_eq!(parse_int("42"), Ok(42));
        assert_eq!(parse_int(" 7 "), Ok(7));
        assert_eq!(parse_int("+3"), Ok(3));
        assert_eq!(parse_int("-3"), Ok(-3));
        assert_eq!(parse_int("0x1F"), Ok(31));
        assert_eq!(parse_int("0o17"), Ok(15));
        assert_eq!(parse_int("0B101"), Ok(5));
        assert_eq!(parse_int("1_000"), Ok(1000));
        assert_eq!(parse_int("0x_ff"), Ok(255));
        assert_eq!(parse_int("0"), Ok(0));
        assert_eq!(parse_int("000"), Ok(0));
        for bad in [
            "", "abc", "010", "1__0", "_1", "1_", "0x", "0o8", "1.5", "--1",
        ] {
            assert!(parse_int(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn umask_forms() {
        assert_eq!(umask("0022"), Ok(0o22));
        assert_eq!(umask("022"), Ok(0o22));
        assert_eq!(umask("0o027"), Ok(0o27));
        assert_eq!(umask("18"), Ok(18));
        assert_eq!(umask("0x12"), Ok(0o22));
        assert_eq!(umask("0"), Ok(0));
        assert_eq!(umask("0000"), Ok(0));
        assert_eq!(umask("0777"), Ok(0o777));
        for bad in ["0008", "01000", "-1", "abc", "", "0o1000"] {
            assert!(umask(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(umask(&format_mode(0o22)), Ok(0o22));
    }

    #[test]
    fn octal_mode_forms() {
        assert_eq!(octal_mode("600"), Ok(0o600));
        assert_eq!(octal_mode("0600"), Ok(0o600));
        assert_eq!(octal_mode("0o660"), Ok(0o660));
        for bad in ["800", "1000", "-600", "+600", "", "rw"] {
            assert!(octal_mode(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(octal_mode(&format_mode(0o600)), Ok(0o600));
    }

    #[test]
    fn limit_normalisation() {
        assert_eq!(normalize_limit_request_line(0), 0);
        assert_eq!(normalize_limit_request_line(4094), 4094);
        assert_eq!(normalize_limit_request_line(8190), 8190);
        assert_eq!(normalize_limit_request_line(100_000), 8190);
        assert_eq!(normalize_limit_request_fields(0), 32768);
        assert_eq!(normalize_limit_request_fields(100), 100);
        assert_eq!(normalize_limit_request_fields(32768), 32768);
        assert_eq!(normalize_limit_request_fields(32769), 32768);
        assert_eq!(normalize_limit_request_field_size(0), 8190);
        assert_eq!(normalize_limit_request_field_size(20000), 20000);
        assert!(limit("-1").is_err());
    }

    #[test]
    fn parsing_switches() {
        assert_eq!(header_map("drop"), Ok(HeaderMap::Drop));
        assert_eq!(header_map(" Refuse "), Ok(HeaderMap::Refuse));
        assert_eq!(header_map("DANGEROUS"), Ok(HeaderMap::Dangerous));
        assert_eq!(
            header_map("keep"),
            Err("expected one of drop, refuse, dangerous".to_owned())
        );
        assert_eq!(
            forwarder_headers("SCRIPT_NAME, path_info,,"),
            Ok(vec!["SCRIPT_NAME".to_owned(), "PATH_INFO".to_owned()])
        );
        assert_eq!(forwarder_headers("*"), Ok(vec!["*".to_owned()]));
        assert_eq!(forwarder_headers(" , "), Ok(vec![]));
        assert_eq!(
            forwarder_headers("REMOTE USER"),
            Err("'REMOTE USER' is not a header field name".to_owned())
        );
        assert!(forwarder_headers("X:Y").is_err());
    }

    #[test]
    fn counts() {
        assert_eq!(positive_int("4"), Ok(4));
        assert!(positive_int("0").is_err());
        assert!(positive_int("abc").is_err());
        assert_eq!(non_negative_int("0"), Ok(0));
        assert!(non_negative_int("-5").is_err());
        assert_eq!(backlog("2048"), Ok(2048));
        assert!(backlog("4294967296").is_err());
    }

    #[test]
    fn pairs() {
        assert_eq!(env_pair("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert_eq!(env_pair("A="), Ok(("A".into(), "".into())));
        assert!(env_pair("=x").is_err());
        assert!(env_pair("novalue").is_err());
        assert_eq!(
            hook_pair("on_starting=echo hi"),
            Ok(("on_starting".into(), "echo hi".into()))
        );
        assert!(hook_pair("on_start=echo").is_err());
        assert!(hook_pair("on_exit=").is_err());
    }

    #[test]
    fn pythonpath_lists() {
        let dirs = pythonpath;
        assert_eq!(
            dirs("/home/djangoprojects/myproject,/home/python/mylibrary"),
            Ok(vec![
                PathBuf::from("/home/djangoprojects/myproject"),
                PathBuf::from("/home/python/mylibrary")
            ])
        );
        assert_eq!(
            dirs(" lib , ,src/app ,"),
            Ok(vec![PathBuf::from("lib"), PathBuf::from("src/app")])
        );
        assert_eq!(dirs("./a b"), Ok(vec![PathBuf::from("./a b")]));
        assert_eq!(dirs(""), Ok(vec![]));
        assert_eq!(dirs(" , "), Ok(vec![]));
        assert_eq!(
            dirs("a,b\0c"),
            Err("expected directories without NUL bytes".to_owned())
        );
    }

    #[test]
    fn users_and_groups() {
        assert_eq!(user("0"), Ok(0));
        assert_eq!(user("root"), Ok(0));
        assert_eq!(user("4242"), Ok(4242));
        assert!(user("no-such-user-gunicornd").is_err());
        assert_eq!(group("0"), Ok(0));
        assert!(group("no-such-group-gunicornd").is_err());
    }

    #[test]
    fn levels() {
        assert_eq!(log_level("WARNING"), Ok("warning".into()));
        assert!(log_level("verbose").is_err());
    }
}
