//! Byte and text helpers shared by the parser, the response writer and the
//! error page: the RFC 9110 token alphabet, latin-1 conversion, and the
//! Python-`repr` quoting that gunicorn's error messages use.

use std::fmt::Write as _;

/// RFC 9110 §5.6.2 `tchar`: ALPHA / DIGIT / ``!#$%&'*+-.^_`|~``.
static TOKEN_CHARS: [bool; 256] = token_table();

const fn token_table() -> [bool; 256] {
    let mut table = [false; 256];
    let specials = b"!#$%&'*+-.^_`|~";
    let mut i = 0;
    while i < specials.len() {
        table[specials[i] as usize] = true;
        i += 1;
    }
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        if b.is_ascii_alphanumeric() {
            table[c] = true;
        }
        c += 1;
    }
    table
}

/// Whether `bytes` is a non-empty RFC 9110 token (method, header name).
pub(crate) fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(|&b| TOKEN_CHARS[b as usize])
}

/// Decodes bytes as latin-1, the way gunicorn's `bytes_to_str` does, so every
/// byte maps to exactly one char and nothing can fail.
pub(crate) fn latin1(bytes: &[u8]) -> String {
    if bytes.is_ascii() {
        // ASCII is valid UTF-8 as is; this path is the common one.
        String::from_utf8(bytes.to_vec()).unwrap_or_default()
    } else {
        bytes.iter().map(|&b| char::from(b)).collect()
    }
}

/// Appends `text` encoded as latin-1. Returns false (leaving `out` partly
/// written) if a char is outside latin-1 and so cannot go on the wire.
pub(crate) fn push_latin1(out: &mut Vec<u8>, text: &str) -> bool {
    if text.is_ascii() {
        out.extend_from_slice(text.as_bytes());
        return true;
    }
    for c in text.chars() {
        match u8::try_from(u32::from(c)) {
            Ok(b) => out.push(b),
            Err(_) => return false,
        }
    }
    true
}

/// Python's `repr()` of a str that was decoded from latin-1: single quotes
/// unless the text holds a `'` and no `"`, backslash escapes for quotes,
/// `\t \n \r`, and `\xNN` for the non-printable latin-1 code points.
pub(crate) fn py_repr(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(text.len() + 2);
    out.push(quote);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            // C0, DEL, C1, NO-BREAK SPACE and SOFT HYPHEN are not printable
            // for Python's str.isprintable().
            '\0'..='\x1f' | '\x7f'..='\u{a0}' | '\u{ad}' => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python's `repr()` of a bytes object (`b'...'`), used by the chunked-body
/// errors whose gunicorn messages show the offending raw bytes.
pub(crate) fn py_bytes_repr(bytes: &[u8]) -> String {
    let quote = if bytes.contains(&b'\'') && !bytes.contains(&b'"') {
        b'"'
    } else {
        b'\''
    };
    let mut out = String::with_capacity(bytes.len() + 3);
    out.push('b');
    out.push(char::from(quote));
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b if b == quote => {
                out.push('\\');
                out.push(char::from(b));
            }
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out.push(char::from(quote));
    out
}

/// Python's `html.escape(text, quote=True)`.
pub(crate) fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// Appends the decimal digits of `n` without going through `fmt`.
pub(crate) fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Parses a non-empty string of ASCII decimal digits (no sign, no spaces),
/// `None` on anything else or on overflow.
pub(crate) fn parse_decimal(text: &[u8]) -> Option<u64> {
    if text.is_empty() {
        return None;
    }
    text.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// Index of the first CRLF in `data` that starts at or after `from`.
pub(crate) fn find_crlf(data: &[u8], from: usize) -> Option<usize> {
    // `i` is where the LF of a CRLF starting at `from` or later can be.
    let mut i = from + 1;
    while i < data.len() {
        let lf = i + data[i..].iter().position(|&b| b == b'\n')?;
        if data[lf - 1] == b'\r' {
            return Some(lf - 1);
        }
        i = lf + 1;
    }
    None
}

/// Where the line that starts at `data[0]` ends, looking for its LF from
/// `from` on (every byte before `from` is known not to be an LF):
/// `Ok(Some(i))` with `i` the index of the CR of its CRLF; `Ok(None)` when
/// no LF has arrived yet (scan again from `data.len()` once there is more);
/// `Err(i)` for a bare LF at `i`. A bare LF ends a line for some parsers and
/// not for others (RFC 9112 §2.2), so it is refused as soon as it is seen.
pub(crate) fn find_line_end(data: &[u8], from: usize) -> Result<Option<usize>, usize> {
    let Some(rest) = data.get(from..) else {
        return Ok(None);
    };
    match rest.iter().position(|&b| b == b'\n') {
        None => Ok(None),
        Some(offset) => {
            let lf = from + offset;
            if lf > 0 && data[lf - 1] == b'\r' {
                Ok(Some(lf - 1))
            } else {
                Err(lf)
            }
        }
    }
}

/// Where a field section (header or trailer lines, at least one) that
/// starts at `data[0]` ends: the index of its CRLFCRLF, with every LF
/// before it part of a CRLF. Same conventions as [`find_line_end`].
pub(crate) fn find_section_end(data: &[u8], from: usize) -> Result<Option<usize>, usize> {
    let mut from = from;
    loop {
        match find_line_end(data, from)? {
            None => return Ok(None),
            Some(cr) if cr >= 2 && &data[cr - 2..cr] == b"\r\n" => return Ok(Some(cr - 2)),
            Some(cr) => from = cr + 2,
        }
    }
}

/// The line of a field section that holds the bare LF at `lf`, through
/// that LF: from the CRLF before it (or the start).
pub(crate) fn line_with_bare_lf(data: &[u8], lf: usize) -> &[u8] {
    let start = data[..lf]
        .windows(2)
        .rposition(|w| w == b"\r\n")
        .map_or(0, |i| i + 2);
    &data[start..=lf]
}

/// `bytes` without leading and trailing SP / HTAB.
pub(crate) fn trim_sp_htab(bytes: &[u8]) -> &[u8] {
    let is_ws = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !is_ws(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_ws(b))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        assert!(is_token(b"GET"));
        assert!(is_token(b"X-Custom_Header!~"));
        assert!(!is_token(b""));
        assert!(!is_token(b"Name "));
        assert!(!is_token(b"a:b"));
        assert!(!is_token(b"caf\xe9"));
    }

    #[test]
    fn latin1_round_trip() {
        let s = latin1(b"caf\xe9\x80");
        assert_eq!(s, "caf\u{e9}\u{80}");
        let mut out = Vec::new();
        assert!(push_latin1(&mut out, &s));
        assert_eq!(out, b"caf\xe9\x80");
        assert!(!push_latin1(&mut Vec::new(), "snow \u{2603}"));
    }

    #[test]
    fn python_repr() {
        assert_eq!(py_repr("HOST"), "'HOST'");
        assert_eq!(py_repr("it's"), "\"it's\"");
        assert_eq!(py_repr("a'\"b"), "'a\\'\"b'");
        assert_eq!(py_repr("a\r\n\t\0\\"), "'a\\r\\n\\t\\x00\\\\'");
        assert_eq!(
            py_repr("\u{85}\u{a0}\u{ad}\u{e9}"),
            "'\\x85\\xa0\\xad\u{e9}'"
        );
        assert_eq!(py_bytes_repr(b"0x10"), "b'0x10'");
        assert_eq!(py_bytes_repr(b"\r\xff'"), "b\"\\r\\xff'\"");
    }

    #[test]
    fn html() {
        assert_eq!(
            html_escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#x27;"
        );
    }

    #[test]
    fn numbers() {
        let mut out = Vec::new();
        push_decimal(&mut out, 0);
        out.push(b' ');
        push_decimal(&mut out, 18_446_744_073_709_551_615);
        assert_eq!(out, b"0 18446744073709551615");
        assert_eq!(parse_decimal(b"007"), Some(7));
        assert_eq!(parse_decimal(b""), None);
        assert_eq!(parse_decimal(b"+5"), None);
        assert_eq!(parse_decimal(b"5 "), None);
        assert_eq!(parse_decimal(b"18446744073709551616"), None);
    }

    #[test]
    fn crlf_search() {
        assert_eq!(find_crlf(b"ab\r\ncd", 0), Some(2));
        assert_eq!(find_crlf(b"a\nb\r\n", 0), Some(3));
        assert_eq!(find_crlf(b"\n\r\n", 0), Some(1));
        assert_eq!(find_crlf(b"ab\r", 0), None);
        assert_eq!(find_crlf(b"\r\nx\r\n", 1), Some(3));
        assert_eq!(find_crlf(b"\r\n", 1), None);
        assert_eq!(find_line_end(b"GET / HTTP/1.1\r\n", 0), Ok(Some(14)));
        assert_eq!(find_line_end(b"GET / HTTP/1.1\r", 0), Ok(None));
        assert_eq!(find_line_end(b"GET / HTTP/1.1\r", 15), Ok(None));
        assert_eq!(find_line_end(b"GET / HTTP/1.1\n\r\n", 0), Err(14));
        assert_eq!(find_line_end(b"\n", 0), Err(0));
        assert_eq!(find_line_end(b"ab", 7), Ok(None));
        assert_eq!(find_section_end(b"a\r\nb\r\nc\r\n\r\n", 0), Ok(Some(7)));
        assert_eq!(find_section_end(b"a\r\nb\r\n\r\nc", 0), Ok(Some(4)));
        assert_eq!(find_section_end(b"a\r\nb\r\n\r\nc", 5), Ok(Some(4)));
        assert_eq!(find_section_end(b"a\r\nb\r\n", 0), Ok(None));
        assert_eq!(find_section_end(b"a\r\n\nb\r\n", 0), Err(3));
        assert_eq!(find_section_end(b"a: 1\nb: 2\r\n\r\n", 0), Err(4));
        assert_eq!(line_with_bare_lf(b"a: 1\r\nHost: x\ny", 13), b"Host: x\n");
        assert_eq!(line_with_bare_lf(b"Host: x\ny", 7), b"Host: x\n");
        assert_eq!(trim_sp_htab(b" \t a b\t "), b"a b");
        assert_eq!(trim_sp_htab(b" \t "), b"");
    }
}
