//! Python's text conventions that borg's messages and arguments follow (`repr()`, `int()`).

use std::fmt::Write as _;

/// Python's `repr()` of a string (single quotes unless the text has `'` and no `"`).
pub fn repr_str(s: &str, ascii_only: bool) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if ascii_only && (c as u32) > 0x7f => {
                let n = c as u32;
                let _ = if n <= 0xff {
                    write!(out, "\\x{n:02x}")
                } else if n <= 0xffff {
                    write!(out, "\\u{n:04x}")
                } else {
                    write!(out, "\\U{n:08x}")
                };
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python's `int(s)` for base 10: surrounding whitespace, a sign, digits with single
/// underscores between them.
pub fn parse_int(s: &str) -> Option<i64> {
    let s = s.trim_matches(is_py_space);
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return None;
    }
    let mut value: i64 = 0;
    for c in digits.chars().filter(|&c| c != '_') {
        let d = c.to_digit(10)? as i64;
        value = value.checked_mul(10)?.checked_add(d)?;
    }
    Some(if negative { -value } else { value })
}

/// Python's `str.isspace()` (ASCII and Unicode whitespace, including \x1c–\x1f).
pub fn is_py_space(c: char) -> bool {
    c.is_whitespace() || matches!(c, '\x1c'..='\x1f')
}

/// Python's `str.strip()`.
pub fn strip(s: &str) -> &str {
    s.trim_matches(is_py_space)
}

/// `repr()` of a text as Python shows it in messages (non-ASCII kept).
pub fn repr(s: &str) -> String {
    repr_str(s, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repr_and_int_like_python() {
        assert_eq!(repr("a'b"), "\"a'b\"");
        assert_eq!(repr("x\ny"), "'x\\ny'");
        assert_eq!(repr_str("é", true), "'\\xe9'");
        assert_eq!(parse_int(" -1_000 "), Some(-1000));
        assert_eq!(parse_int("1__0"), None);
        assert_eq!(parse_int("0x10"), None);
    }
}
