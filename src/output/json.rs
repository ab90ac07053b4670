//! JSON text exactly as Python's `json.dumps` writes it with borg's settings.
//!
//! borg uses `json.dumps` defaults everywhere: `ensure_ascii` (non-ASCII escaped as `\uXXXX`),
//! Python's float repr, and either `sort_keys=True, indent=4` (`--json` documents) or compact
//! lines with `", "` / `": "` separators (`--json-lines`, `--log-json`).

use base64::Engine;
use serde_json::Value;

/// `--json` documents: sorted keys, indent from `BORG_JSON_INDENT` (default 4).
pub fn dumps_pretty(v: &Value) -> String {
    dumps_with(v, true, json_indent_from_env().as_deref())
}

/// One line, keys in insertion order (`--json-lines` of `list`, `--log-json` records).
pub fn dumps_line(v: &Value) -> String {
    dumps_with(v, false, None)
}

/// One line with sorted keys (`diff --json-lines`).
pub fn dumps_line_sorted(v: &Value) -> String {
    dumps_with(v, true, None)
}

/// General form: `indent` None = single line with `", "`; Some(s) = one item per line,
/// each nesting level indented by `s`, items separated by `","`.
pub fn dumps_with(v: &Value, sort_keys: bool, indent: Option<&str>) -> String {
    let mut out = String::with_capacity(128);
    write_value(&mut out, v, sort_keys, indent, 0);
    out
}

/// borg 1.4.5's `BORG_JSON_INDENT`: unset → 4 spaces, `none` → single line, `""` → newlines
/// only, an integer → that many spaces (≤ 0: newlines only), any other text → used verbatim.
fn json_indent_from_env() -> Option<String> {
    match std::env::var("BORG_JSON_INDENT") {
        Err(_) => Some("    ".to_string()),
        Ok(v) => indent_from_setting(&v),
    }
}

fn indent_from_setting(v: &str) -> Option<String> {
    if v.eq_ignore_ascii_case("none") {
        return None;
    }
    match v.trim().parse::<i64>() {
        Ok(n) => Some(" ".repeat(n.max(0) as usize)),
        Err(_) => Some(v.to_string()),
    }
}

fn newline_indent(out: &mut String, indent: &str, level: usize) {
    out.push('\n');
    for _ in 0..level {
        out.push_str(indent);
    }
}

fn write_value(out: &mut String, v: &Value, sort_keys: bool, indent: Option<&str>, level: usize) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.push_str(&i.to_string());
            } else if let Some(u) = n.as_u64() {
                out.push_str(&u.to_string());
            } else {
                out.push_str(&python_float_repr(n.as_f64().unwrap_or(f64::NAN)));
            }
        }
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            if items.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                separator(out, i, indent, level + 1);
                write_value(out, item, sort_keys, indent, level + 1);
            }
            if let Some(ind) = indent {
                newline_indent(out, ind, level);
            }
            out.push(']');
        }
        Value::Object(map) => {
            if map.is_empty() {
                out.push_str("{}");
                return;
            }
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            if sort_keys {
                entries.sort_by(|a, b| a.0.cmp(b.0));
            }
            out.push('{');
            for (i, (k, item)) in entries.into_iter().enumerate() {
                separator(out, i, indent, level + 1);
                write_string(out, k);
                out.push_str(": ");
                write_value(out, item, sort_keys, indent, level + 1);
            }
            if let Some(ind) = indent {
                newline_indent(out, ind, level);
            }
            out.push('}');
        }
    }
}

fn separator(out: &mut String, index: usize, indent: Option<&str>, level: usize) {
    match indent {
        Some(ind) => {
            if index > 0 {
                out.push(',');
            }
            newline_indent(out, ind, level);
        }
        None => {
            if index > 0 {
                out.push_str(", ");
            }
        }
    }
}

/// A JSON string literal with Python's `ensure_ascii` escaping (everything outside
/// space..`~` is escaped; `\uXXXX` in lowercase hex, surrogate pairs above U+FFFF).
pub fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{:04x}", unit));
                }
            }
        }
    }
    out.push('"');
}

/// Python's `repr(float)`: shortest round-trip digits; scientific notation when the decimal
/// exponent is < -4 or >= 16 (`1e-05`, `2.5e+16`), otherwise positional with at least one
/// fractional digit (`1.0`, `0.08261`). Non-finite values as `json.dumps` writes them.
pub fn python_float_repr(x: f64) -> String {
    if x.is_nan() {
        return "NaN".to_string();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.to_string();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0" } else { "0.0" }.to_string();
    }
    let (negative, digits, exp) = shortest_digits(x);
    let sign = if negative { "-" } else { "" };
    if !(-4..16).contains(&exp) {
        let mantissa = if digits.len() == 1 {
            digits
        } else {
            format!("{}.{}", &digits[..1], &digits[1..])
        };
        let exp_sign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{mantissa}e{exp_sign}{:02}", exp.abs());
    }
    if exp >= 0 {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            format!("{sign}{}{}.0", digits, "0".repeat(int_len - digits.len()))
        } else {
            format!("{sign}{}.{}", &digits[..int_len], &digits[int_len..])
        }
    } else {
        format!("{sign}0.{}{}", "0".repeat((-exp - 1) as usize), digits)
    }
}

/// Sign, significant decimal digits (shortest round-trip) and the decimal exponent of the
/// first digit: 0.0123 → (false, "123", -2).
pub(crate) fn shortest_digits(x: f64) -> (bool, String, i32) {
    let s = format!("{:e}", x.abs());
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    (x.is_sign_negative(), digits, exp.parse().unwrap_or(0))
}

/// Text for a byte string as borg 1.x shows it (each byte that is not part of valid UTF-8
/// becomes one `?`), plus the base64 of the raw bytes when that replacement happened
/// (borg 2's `*_b64` keys, which rborg adds for frontends that want the exact bytes).
pub fn text_and_b64(bytes: &[u8]) -> (String, Option<String>) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_string(), None),
        Err(_) => {
            let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
            (replace_undecodable(bytes), Some(b64))
        }
    }
}

/// Decode UTF-8, replacing every undecodable byte by one `?` (Python's surrogateescape
/// decode followed by an `errors='replace'` encode).
pub fn replace_undecodable(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut rest = bytes;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                return out;
            }
            Err(e) => {
                let valid = e.valid_up_to();
                // SAFETY-free: the prefix was just validated.
                out.push_str(std::str::from_utf8(&rest[..valid]).unwrap_or_default());
                let bad = e.error_len().unwrap_or(rest.len() - valid);
                for _ in 0..bad {
                    out.push('?');
                }
                rest = &rest[valid + bad..];
            }
        }
    }
}

/// Insert `key` (text with `?` replacements) and, for non-UTF-8 input, `key_b64` into a
/// JSON object.
pub fn insert_text_with_b64(map: &mut serde_json::Map<String, Value>, key: &str, bytes: &[u8]) {
    let (text, b64) = text_and_b64(bytes);
    map.insert(key.to_string(), Value::String(text));
    if let Some(b64) = b64 {
        map.insert(format!("{key}_b64"), Value::String(b64));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn float_repr_matches_python() {
        let cases = [
            (2.970701303422615e-05, "2.970701303422615e-05"),
            (0.08261, "0.08261"),
            (1.0, "1.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1e16, "1e+16"),
            (9999999999999998.0, "9999999999999998.0"),
            (1795304526.5407126, "1795304526.5407126"),
            (0.005411, "0.005411"),
            (-1.5, "-1.5"),
            (123456789.0, "123456789.0"),
            (1.5e300, "1.5e+300"),
            (2.2172971205321284e-05, "2.2172971205321284e-05"),
            (0.1, "0.1"),
            (-0.0, "-0.0"),
        ];
        for (x, want) in cases {
            assert_eq!(python_float_repr(x), want, "{x}");
        }
    }

    #[test]
    fn compact_line_like_python() {
        // python3 -c 'import json; print(json.dumps({"type": "d", "path": "u9/\u00e9.txt",
        //   "n": 1, "f": 0.5, "l": [1, "a"], "e": {}, "x": None, "b": True}))'
        let v = json!({"type": "d", "path": "u9/é.txt", "n": 1, "f": 0.5, "l": [1, "a"],
                       "e": {}, "x": null, "b": true});
        assert_eq!(
            dumps_line(&v),
            r#"{"type": "d", "path": "u9/\u00e9.txt", "n": 1, "f": 0.5, "l": [1, "a"], "e": {}, "x": null, "b": true}"#
        );
    }

    #[test]
    fn escapes_like_python() {
        // python3 -c 'import json; print(json.dumps("a\"\\\n\t\x01\x7f\U0001F600\u00fc/"))'
        let v = json!("a\"\\\n\t\u{1}\u{7f}\u{1F600}ü/");
        assert_eq!(
            dumps_line(&v),
            r#""a\"\\\n\t\u0001\u007f\ud83d\ude00\u00fc/""#
        );
    }

    #[test]
    fn pretty_sorted_indent4() {
        // python3 -c 'import json; print(json.dumps({"b": [1, {"y": 2, "x": []}], "a": {}},
        //   sort_keys=True, indent=4))'
        let v = json!({"b": [1, {"y": 2, "x": []}], "a": {}});
        let want = "{\n    \"a\": {},\n    \"b\": [\n        1,\n        {\n            \"x\": [],\n            \"y\": 2\n        }\n    ]\n}";
        assert_eq!(dumps_with(&v, true, Some("    ")), want);
    }

    #[test]
    fn indent_settings() {
        assert_eq!(indent_from_setting("none"), None);
        assert_eq!(indent_from_setting("NONE"), None);
        assert_eq!(indent_from_setting("2").as_deref(), Some("  "));
        assert_eq!(indent_from_setting("").as_deref(), Some(""));
        assert_eq!(indent_from_setting("\t").as_deref(), Some("\t"));
        // python3 -c 'import json; print(json.dumps({"a": [1]}, indent=""))'
        let v = json!({"a": [1]});
        assert_eq!(dumps_with(&v, true, Some("")), "{\n\"a\": [\n1\n]\n}");
        // indent=None, sort_keys=True
        assert_eq!(
            dumps_with(&json!({"b": 1, "a": [1, 2]}), true, None),
            r#"{"a": [1, 2], "b": 1}"#
        );
    }

    #[test]
    fn undecodable_bytes_become_question_marks() {
        // python3 -c 'print(b"caf\xe9.txt".decode("utf-8","surrogateescape")
        //   .encode("utf-8","replace").decode())'  → caf?.txt
        assert_eq!(replace_undecodable(b"caf\xe9.txt"), "caf?.txt");
        assert_eq!(replace_undecodable(b"a\xe2\x82b"), "a??b");
        assert_eq!(replace_undecodable(b"\xf0\x80\x80"), "???");
        assert_eq!(replace_undecodable(b"\xed\xa0\x80x"), "???x");
        assert_eq!(replace_undecodable(b"end\xe2\x82"), "end??");
        let (t, b) = text_and_b64(b"caf\xe9");
        assert_eq!(t, "caf?");
        assert_eq!(b.as_deref(), Some("Y2Fm6Q=="));
        assert_eq!(text_and_b64("é".as_bytes()), ("é".to_string(), None));
    }
}
