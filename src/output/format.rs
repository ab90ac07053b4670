//! Python's `str.format` as borg's `list --format` (and placeholder expansion) uses it:
//! literal text, `{{`/`}}`, `{key}`, `{key!conv}`, `{key:spec}` with the format-spec
//! mini-language for strings, integers and floats, and strftime specs for time values.
//! Also the printf-style `%` formatting of progress templates.

use chrono::NaiveDateTime;
use std::fmt::Write as _;

use super::json::{python_float_repr, shortest_digits};

/// A value a template field can take.
#[derive(Debug, Clone, PartialEq)]
pub enum FormatValue {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    None,
    /// A local, naive time; an empty spec uses `default_fmt` (borg: `%a, %Y-%m-%d %H:%M:%S`
    /// for list output, `%Y-%m-%dT%H:%M:%S` for placeholders), any other spec is strftime.
    Time {
        dt: NaiveDateTime,
        default_fmt: &'static str,
    },
}

impl From<&str> for FormatValue {
    fn from(s: &str) -> Self {
        FormatValue::Str(s.to_string())
    }
}
impl From<String> for FormatValue {
    fn from(s: String) -> Self {
        FormatValue::Str(s)
    }
}
impl From<i64> for FormatValue {
    fn from(v: i64) -> Self {
        FormatValue::Int(v)
    }
}
impl From<u64> for FormatValue {
    fn from(v: u64) -> Self {
        FormatValue::Int(v.min(i64::MAX as u64) as i64)
    }
}
impl From<u32> for FormatValue {
    fn from(v: u32) -> Self {
        FormatValue::Int(v as i64)
    }
}
impl From<f64> for FormatValue {
    fn from(v: f64) -> Self {
        FormatValue::Float(v)
    }
}
impl From<bool> for FormatValue {
    fn from(v: bool) -> Self {
        FormatValue::Bool(v)
    }
}

/// Why a template could not be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatError {
    /// `{key}` names no available value (Python: KeyError).
    UnknownKey(String),
    /// Malformed template or spec, or a spec that does not fit the value (Python: ValueError).
    Invalid(String),
}

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FormatError::UnknownKey(k) => write!(f, "unknown format key \"{k}\""),
            FormatError::Invalid(m) => f.write_str(m),
        }
    }
}

impl From<FormatError> for crate::errors::Error {
    fn from(e: FormatError) -> Self {
        match e {
            FormatError::UnknownKey(k) => {
                crate::errors::Error::generic(format!("Invalid format key \"{k}\""))
            }
            FormatError::Invalid(m) => {
                crate::errors::Error::generic(format!("Invalid format: {m}"))
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Part {
    Literal(String),
    Field(Field),
}

#[derive(Debug, Clone)]
struct Field {
    key: String,
    conversion: Option<char>,
    /// The spec, itself possibly containing `{key}` fields (Python allows one nesting level).
    spec: Vec<Part>,
}

/// A parsed template, reusable for many records.
#[derive(Debug, Clone)]
pub struct FormatTemplate {
    parts: Vec<Part>,
}

impl FormatTemplate {
    pub fn parse(template: &str) -> Result<FormatTemplate, FormatError> {
        Ok(FormatTemplate {
            parts: parse_parts(template, 2)?,
        })
    }

    /// Keys the template uses, in order of first use (nested spec fields included).
    pub fn keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        collect_keys(&self.parts, &mut keys);
        keys
    }

    /// Whether any field has a `!r`/`!s`/`!a` conversion (placeholders reject those).
    pub fn has_conversion(&self) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::Field(f) if f.conversion.is_some()))
    }

    /// Fill the template; `lookup` returns the value of a key, None for unknown keys.
    pub fn render(
        &self,
        lookup: &dyn Fn(&str) -> Option<FormatValue>,
    ) -> Result<String, FormatError> {
        let mut out = String::new();
        render_parts(&self.parts, lookup, &mut out)?;
        Ok(out)
    }
}

/// Format `template` once (parse + render).
pub fn format_line(
    template: &str,
    lookup: &dyn Fn(&str) -> Option<FormatValue>,
) -> Result<String, FormatError> {
    FormatTemplate::parse(template)?.render(lookup)
}

/// Keys used by `template` (empty if it does not parse).
pub fn format_keys(template: &str) -> Vec<String> {
    FormatTemplate::parse(template)
        .map(|t| t.keys())
        .unwrap_or_default()
}

fn collect_keys(parts: &[Part], keys: &mut Vec<String>) {
    for part in parts {
        if let Part::Field(f) = part {
            if !keys.contains(&f.key) {
                keys.push(f.key.clone());
            }
            collect_keys(&f.spec, keys);
        }
    }
}

fn render_parts(
    parts: &[Part],
    lookup: &dyn Fn(&str) -> Option<FormatValue>,
    out: &mut String,
) -> Result<(), FormatError> {
    for part in parts {
        match part {
            Part::Literal(s) => out.push_str(s),
            Part::Field(f) => {
                if f.key.is_empty() {
                    return Err(FormatError::Invalid(
                        "Format string contains positional fields".into(),
                    ));
                }
                let value = lookup(&f.key).ok_or_else(|| FormatError::UnknownKey(f.key.clone()))?;
                let mut spec = String::new();
                render_parts(&f.spec, lookup, &mut spec)?;
                out.push_str(&format_value(&value, f.conversion, &spec)?);
            }
        }
    }
    Ok(())
}

fn invalid<T>(msg: impl Into<String>) -> Result<T, FormatError> {
    Err(FormatError::Invalid(msg.into()))
}

fn parse_parts(s: &str, depth: u32) -> Result<Vec<Part>, FormatError> {
    if depth == 0 {
        return invalid("Max string recursion exceeded");
    }
    let chars: Vec<char> = s.chars().collect();
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '}' {
            if chars.get(i + 1) == Some(&'}') {
                literal.push('}');
                i += 2;
                continue;
            }
            return invalid("Single '}' encountered in format string");
        }
        if c != '{' {
            literal.push(c);
            i += 1;
            continue;
        }
        if chars.get(i + 1) == Some(&'{') {
            literal.push('{');
            i += 2;
            continue;
        }
        // A replacement field: find its closing brace, counting nested braces.
        let start = i + 1;
        let mut nesting = 1;
        let mut j = start;
        while j < chars.len() {
            match chars[j] {
                '{' => nesting += 1,
                '}' => {
                    nesting -= 1;
                    if nesting == 0 {
                        break;
                    }
                }
                _ => {}
            }
            j += 1;
        }
        if j >= chars.len() {
            return invalid(if nesting > 1 || start < chars.len() {
                "expected '}' before end of string"
            } else {
                "Single '{' encountered in format string"
            });
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(std::mem::take(&mut literal)));
        }
        parts.push(Part::Field(parse_field(&chars[start..j], depth)?));
        i = j + 1;
    }
    if !literal.is_empty() {
        parts.push(Part::Literal(literal));
    }
    Ok(parts)
}

fn parse_field(body: &[char], depth: u32) -> Result<Field, FormatError> {
    let mut k = 0;
    let mut bracket = false;
    while k < body.len() {
        match body[k] {
            '[' => bracket = true,
            ']' => bracket = false,
            '{' if !bracket => return invalid("unexpected '{' in field name"),
            ':' | '!' if !bracket => break,
            _ => {}
        }
        k += 1;
    }
    let key: String = body[..k].iter().collect();
    let mut conversion = None;
    if k < body.len() && body[k] == '!' {
        let conv = match body.get(k + 1) {
            Some(c) => *c,
            None => return invalid("end of string while looking for conversion specifier"),
        };
        if !matches!(conv, 'r' | 's' | 'a') {
            return invalid(format!("Unknown conversion specifier {conv}"));
        }
        conversion = Some(conv);
        k += 2;
        if k < body.len() && body[k] != ':' {
            return invalid("expected ':' after conversion specifier");
        }
    }
    let spec_text: String = if k < body.len() {
        body[k + 1..].iter().collect()
    } else {
        String::new()
    };
    let spec = if spec_text.contains('{') || spec_text.contains('}') {
        parse_parts(&spec_text, depth - 1)?
    } else if spec_text.is_empty() {
        Vec::new()
    } else {
        vec![Part::Literal(spec_text)]
    };
    Ok(Field {
        key,
        conversion,
        spec,
    })
}

/// Python's `str()` of a value.
fn python_str(v: &FormatValue) -> String {
    match v {
        FormatValue::Str(s) => s.clone(),
        FormatValue::Int(i) => i.to_string(),
        FormatValue::Float(f) => python_float_repr(*f),
        FormatValue::Bool(b) => if *b { "True" } else { "False" }.to_string(),
        FormatValue::None => "None".to_string(),
        FormatValue::Time { dt, default_fmt } => strftime(dt, default_fmt).unwrap_or_default(),
    }
}

pub use crate::python::repr_str as python_repr_str;

fn type_name(v: &FormatValue) -> &'static str {
    match v {
        FormatValue::Str(_) => "str",
        FormatValue::Int(_) => "int",
        FormatValue::Float(_) => "float",
        FormatValue::Bool(_) => "bool",
        FormatValue::None => "NoneType",
        FormatValue::Time { .. } => "datetime",
    }
}

/// Apply conversion and spec to one value, as Python's `format(value, spec)`.
pub fn format_value(
    v: &FormatValue,
    conversion: Option<char>,
    spec: &str,
) -> Result<String, FormatError> {
    if let Some(conv) = conversion {
        let text = match (conv, v) {
            ('s', _) => python_str(v),
            (_, FormatValue::Str(s)) => python_repr_str(s, conv == 'a'),
            (_, FormatValue::Time { dt, .. }) => format!("datetime({dt:?})"),
            _ => python_str(v),
        };
        return format_str(&text, &parse_spec(spec, "str")?);
    }
    match v {
        FormatValue::Time { dt, default_fmt } => {
            strftime(dt, if spec.is_empty() { default_fmt } else { spec })
        }
        FormatValue::None | FormatValue::Bool(_) if spec.is_empty() => Ok(python_str(v)),
        FormatValue::None => invalid("unsupported format string passed to NoneType.__format__"),
        FormatValue::Str(s) => format_str(s, &parse_spec(spec, "str")?),
        FormatValue::Int(i) => format_int(*i, &parse_spec(spec, "int")?),
        FormatValue::Bool(b) => format_int(*b as i64, &parse_spec(spec, "int")?),
        FormatValue::Float(f) => format_float(*f, &parse_spec(spec, type_name(v))?),
    }
}

#[derive(Debug, Default, Clone)]
struct Spec {
    fill: Option<char>,
    align: Option<char>,
    sign: Option<char>,
    no_neg_zero: bool,
    alternate: bool,
    zero: bool,
    width: usize,
    grouping: Option<char>,
    precision: Option<usize>,
    ty: Option<char>,
}

fn parse_spec(spec: &str, type_name: &str) -> Result<Spec, FormatError> {
    let c: Vec<char> = spec.chars().collect();
    let mut s = Spec::default();
    let mut i = 0;
    let is_align = |ch: char| matches!(ch, '<' | '>' | '=' | '^');
    if c.len() >= 2 && is_align(c[1]) {
        s.fill = Some(c[0]);
        s.align = Some(c[1]);
        i = 2;
    } else if !c.is_empty() && is_align(c[0]) {
        s.align = Some(c[0]);
        i = 1;
    }
    if i < c.len() && matches!(c[i], '+' | '-' | ' ') {
        s.sign = Some(c[i]);
        i += 1;
    }
    if i < c.len() && c[i] == 'z' {
        s.no_neg_zero = true;
        i += 1;
    }
    if i < c.len() && c[i] == '#' {
        s.alternate = true;
        i += 1;
    }
    if i < c.len() && c[i] == '0' {
        s.zero = true;
        i += 1;
    }
    let width_start = i;
    while i < c.len() && c[i].is_ascii_digit() {
        i += 1;
    }
    if i > width_start {
        let w: String = c[width_start..i].iter().collect();
        s.width = w
            .parse()
            .map_err(|_| FormatError::Invalid("Too many decimal digits in format string".into()))?;
    }
    if i < c.len() && matches!(c[i], ',' | '_') {
        s.grouping = Some(c[i]);
        i += 1;
    }
    if i < c.len() && c[i] == '.' {
        i += 1;
        let p_start = i;
        while i < c.len() && c[i].is_ascii_digit() {
            i += 1;
        }
        if i == p_start {
            return invalid("Format specifier missing precision");
        }
        let p: String = c[p_start..i].iter().collect();
        s.precision = Some(p.parse().map_err(|_| {
            FormatError::Invalid("Too many decimal digits in format string".into())
        })?);
    }
    if c.len() - i > 1 {
        return invalid(format!(
            "Invalid format specifier '{spec}' for object of type '{type_name}'"
        ));
    }
    if i < c.len() {
        s.ty = Some(c[i]);
    }
    if s.zero {
        s.fill.get_or_insert('0');
    }
    Ok(s)
}

fn char_len(s: &str) -> usize {
    s.chars().count()
}

/// Pad `body` (with an optional sign/prefix part kept left of `=` padding) to the width.
fn pad(prefix: &str, body: &str, spec: &Spec, default_align: char) -> String {
    let fill = spec.fill.unwrap_or(' ');
    let len = char_len(prefix) + char_len(body);
    if spec.width <= len {
        return format!("{prefix}{body}");
    }
    let n = spec.width - len;
    let fills = |k: usize| std::iter::repeat_n(fill, k).collect::<String>();
    match spec.align.unwrap_or(default_align) {
        '<' => format!("{prefix}{body}{}", fills(n)),
        '^' => format!("{}{prefix}{body}{}", fills(n / 2), fills(n - n / 2)),
        '=' => format!("{prefix}{}{body}", fills(n)),
        _ => format!("{}{prefix}{body}", fills(n)),
    }
}

fn format_str(s: &str, spec: &Spec) -> Result<String, FormatError> {
    if let Some(t) = spec.ty {
        if t != 's' {
            return invalid(format!(
                "Unknown format code '{t}' for object of type 'str'"
            ));
        }
    }
    if spec.sign.is_some() {
        return invalid("Sign not allowed in string format specifier");
    }
    if spec.alternate {
        return invalid("Alternate form (#) not allowed in string format specifier");
    }
    if spec.no_neg_zero {
        return invalid("Negative zero coercion (z) not allowed in format specifier");
    }
    if spec.align == Some('=') {
        return invalid("'=' alignment not allowed in string format specifier");
    }
    if let Some(g) = spec.grouping {
        return invalid(format!("Cannot specify '{g}' with 's'."));
    }
    let text: String = match spec.precision {
        Some(p) => s.chars().take(p).collect(),
        None => s.to_string(),
    };
    Ok(pad("", &text, spec, '<'))
}

fn numeric_align(spec: &Spec) -> Spec {
    let mut s = spec.clone();
    if s.zero && s.align.is_none() {
        s.align = Some('=');
    }
    s
}

fn sign_prefix(negative: bool, sign: Option<char>) -> &'static str {
    match (negative, sign) {
        (true, _) => "-",
        (false, Some('+')) => "+",
        (false, Some(' ')) => " ",
        _ => "",
    }
}

fn group_digits(digits: &str, sep: char, every: usize) -> String {
    let n = digits.len();
    let mut out = String::with_capacity(n + n / every);
    for (idx, ch) in digits.chars().enumerate() {
        if idx > 0 && (n - idx).is_multiple_of(every) {
            out.push(sep);
        }
        out.push(ch);
    }
    out
}

fn format_int(v: i64, spec: &Spec) -> Result<String, FormatError> {
    let ty = spec.ty.unwrap_or('d');
    if matches!(ty, 'e' | 'E' | 'f' | 'F' | 'g' | 'G' | '%') {
        return format_float(v as f64, spec);
    }
    if spec.precision.is_some() {
        return invalid("Precision not allowed in integer format specifier");
    }
    if spec.no_neg_zero {
        return invalid("Negative zero coercion (z) not allowed in integer format specifier");
    }
    let spec = numeric_align(spec);
    let magnitude = v.unsigned_abs();
    let (digits, alt_prefix, group_every) = match ty {
        'd' | 'n' => (magnitude.to_string(), "", 3),
        'b' => (format!("{magnitude:b}"), "0b", 4),
        'o' => (format!("{magnitude:o}"), "0o", 4),
        'x' => (format!("{magnitude:x}"), "0x", 4),
        'X' => (format!("{magnitude:X}"), "0X", 4),
        'c' => {
            let ch = u32::try_from(v)
                .ok()
                .and_then(char::from_u32)
                .ok_or_else(|| FormatError::Invalid("%c arg not in range(0x110000)".into()))?;
            if spec.sign.is_some() {
                return invalid("Sign not allowed with integer format specifier 'c'");
            }
            return Ok(pad("", &ch.to_string(), &spec, '<'));
        }
        t => {
            return invalid(format!(
                "Unknown format code '{t}' for object of type 'int'"
            ))
        }
    };
    let digits = match spec.grouping {
        Some(',') if ty != 'd' && ty != 'n' => {
            return invalid(format!("Cannot specify ',' with '{ty}'."))
        }
        Some(sep) => group_digits(&digits, sep, group_every),
        None => digits,
    };
    let mut prefix = sign_prefix(v < 0, spec.sign).to_string();
    if spec.alternate {
        prefix.push_str(alt_prefix);
    }
    Ok(pad(&prefix, &digits, &spec, '>'))
}

/// Python `'%.{p}e'`-style text: `1.50e+03`.
fn sci(x: f64, precision: usize, upper: bool, alternate: bool) -> String {
    let s = format!("{:.*e}", precision, x);
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut mantissa = mantissa.to_string();
    if alternate && !mantissa.contains('.') {
        mantissa.push('.');
    }
    let e = if upper { 'E' } else { 'e' };
    format!(
        "{mantissa}{e}{}{:02}",
        if exp < 0 { '-' } else { '+' },
        exp.abs()
    )
}

fn strip_fraction_zeros(s: &str) -> String {
    if !s.contains('.') {
        return s.to_string();
    }
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Python's general format (`g`, and the empty type with a precision when `repr_like`).
fn general(x: f64, precision: usize, upper: bool, alternate: bool, repr_like: bool) -> String {
    let p = precision.max(1);
    let rounded = format!("{:.*e}", p - 1, x);
    let exp: i32 = rounded
        .split_once('e')
        .map(|(_, e)| e.parse().unwrap_or(0))
        .unwrap_or(0);
    let sci_limit = if repr_like { p as i32 - 1 } else { p as i32 };
    if exp < -4 || exp >= sci_limit {
        let s = sci(x, p - 1, upper, alternate);
        if alternate {
            return s;
        }
        let (m, e) = s
            .split_once(if upper { 'E' } else { 'e' })
            .unwrap_or((&s, ""));
        return format!(
            "{}{}{}",
            strip_fraction_zeros(m),
            if upper { 'E' } else { 'e' },
            e
        );
    }
    let decimals = (p as i32 - 1 - exp).max(0) as usize;
    let fixed = format!("{:.*}", decimals, x);
    if alternate {
        return if fixed.contains('.') {
            fixed
        } else {
            format!("{fixed}.")
        };
    }
    let stripped = strip_fraction_zeros(&fixed);
    if repr_like && !stripped.contains('.') {
        format!("{stripped}.0")
    } else {
        stripped
    }
}

fn format_float(v: f64, spec: &Spec) -> Result<String, FormatError> {
    let ty = spec.ty;
    if let Some(t) = ty {
        if !matches!(t, 'e' | 'E' | 'f' | 'F' | 'g' | 'G' | 'n' | '%') {
            return invalid(format!(
                "Unknown format code '{t}' for object of type 'float'"
            ));
        }
    }
    let spec = numeric_align(spec);
    let mut x = v;
    if spec.no_neg_zero && x == 0.0 {
        x = 0.0;
    }
    let negative = x.is_sign_negative() && !x.is_nan();
    let a = x.abs();
    let upper = matches!(ty, Some('E' | 'F' | 'G'));
    let body = if !a.is_finite() {
        let t = if a.is_nan() { "nan" } else { "inf" };
        let t = if upper {
            t.to_uppercase()
        } else {
            t.to_string()
        };
        if ty == Some('%') {
            format!("{t}%")
        } else {
            t
        }
    } else {
        let p = spec.precision;
        match ty {
            Some('e' | 'E') => sci(a, p.unwrap_or(6), upper, spec.alternate),
            Some('f' | 'F') => fixed(a, p.unwrap_or(6), spec.alternate),
            Some('%') => format!("{}%", fixed(a * 100.0, p.unwrap_or(6), spec.alternate)),
            Some('g' | 'G' | 'n') => general(a, p.unwrap_or(6), upper, spec.alternate, false),
            _ => match p {
                Some(p) => general(a, p, false, spec.alternate, true),
                None => python_float_repr(a),
            },
        }
    };
    let body = match spec.grouping {
        Some(sep) if a.is_finite() => group_float(&body, sep),
        _ => body,
    };
    Ok(pad(sign_prefix(negative, spec.sign), &body, &spec, '>'))
}

fn fixed(a: f64, precision: usize, alternate: bool) -> String {
    let s = format!("{:.*}", precision, a);
    if alternate && precision == 0 {
        format!("{s}.")
    } else {
        s
    }
}

/// Group the integer part of a formatted float.
fn group_float(body: &str, sep: char) -> String {
    let end = body
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(body.len());
    format!("{}{}", group_digits(&body[..end], sep, 3), &body[end..])
}

/// strftime as Python formats a naive datetime: `%f` = 6 microsecond digits, `%z`/`%Z` empty.
pub fn strftime(dt: &NaiveDateTime, fmt: &str) -> Result<String, FormatError> {
    use chrono::format::{Item, StrftimeItems};
    let mut translated = String::with_capacity(fmt.len() + 4);
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            translated.push(c);
            continue;
        }
        match chars.next() {
            Some('f') => translated.push_str("%6f"),
            Some('z') | Some('Z') => {}
            Some(other) => {
                translated.push('%');
                translated.push(other);
            }
            None => translated.push('%'),
        }
    }
    let items: Vec<Item> = StrftimeItems::new(&translated).collect();
    if items.iter().any(|i| matches!(i, Item::Error)) {
        return invalid(format!("Invalid format string '{fmt}'"));
    }
    let mut out = String::new();
    write!(out, "{}", dt.format_with_items(items.into_iter()))
        .map_err(|_| FormatError::Invalid(format!("Invalid format string '{fmt}'")))?;
    Ok(out)
}

/// An argument of a printf-style (`%`) template.
#[derive(Debug, Clone, Copy)]
pub enum PrintfArg<'a> {
    Float(f64),
    Int(i64),
    Str(&'a str),
}

/// Python's `template % args` for the conversions progress templates use: `%[flags][width]
/// [.prec]` with `f`, `e`, `g`, `d`, `i`, `s`, `r`, and `%%`. Missing arguments leave the
/// directive as is.
pub fn printf(template: &str, args: &[PrintfArg]) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let chars: Vec<char> = template.chars().collect();
    let mut next_arg = 0;
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '%' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        let mut spec = Spec::default();
        while i < chars.len() && matches!(chars[i], '-' | '+' | ' ' | '0' | '#') {
            match chars[i] {
                '-' => spec.align = Some('<'),
                '+' => spec.sign = Some('+'),
                ' ' => spec.sign = spec.sign.or(Some(' ')),
                '0' => spec.zero = true,
                _ => spec.alternate = true,
            }
            i += 1;
        }
        let mut width = String::new();
        while i < chars.len() && chars[i].is_ascii_digit() {
            width.push(chars[i]);
            i += 1;
        }
        spec.width = width.parse().unwrap_or(0);
        if i < chars.len() && chars[i] == '.' {
            i += 1;
            let mut p = String::new();
            while i < chars.len() && chars[i].is_ascii_digit() {
                p.push(chars[i]);
                i += 1;
            }
            spec.precision = Some(p.parse().unwrap_or(0));
        }
        let Some(&conv) = chars.get(i) else {
            out.extend(&chars[start..]);
            break;
        };
        i += 1;
        if conv == '%' {
            out.push('%');
            continue;
        }
        if spec.zero && spec.align.is_none() {
            spec.fill = Some('0');
        }
        let Some(arg) = args.get(next_arg) else {
            out.extend(&chars[start..i]);
            continue;
        };
        next_arg += 1;
        out.push_str(&printf_one(conv, arg, spec));
    }
    out
}

fn printf_one(conv: char, arg: &PrintfArg, mut spec: Spec) -> String {
    let as_float = |a: &PrintfArg| match a {
        PrintfArg::Float(f) => *f,
        PrintfArg::Int(i) => *i as f64,
        PrintfArg::Str(_) => f64::NAN,
    };
    match conv {
        's' | 'r' | 'a' => {
            let text = match arg {
                PrintfArg::Str(s) => s.to_string(),
                PrintfArg::Float(f) => python_float_repr(*f),
                PrintfArg::Int(i) => i.to_string(),
            };
            spec.fill = None;
            let text = match spec.precision {
                Some(p) => text.chars().take(p).collect(),
                None => text,
            };
            pad("", &text, &spec, '>')
        }
        'd' | 'i' | 'u' => {
            let v = match arg {
                PrintfArg::Int(i) => *i,
                other => as_float(other).trunc() as i64,
            };
            spec.precision = None;
            if spec.fill == Some('0') {
                spec.align = Some('=');
            }
            format_int(v, &spec).unwrap_or_default()
        }
        _ => {
            spec.ty = Some(match conv {
                'F' => 'F',
                'e' | 'E' | 'g' | 'G' => conv,
                _ => 'f',
            });
            if spec.fill == Some('0') {
                spec.align = Some('=');
            }
            let x = as_float(arg);
            if matches!(conv, 'g' | 'G') {
                let negative = x.is_sign_negative();
                let body = general(
                    x.abs(),
                    spec.precision.unwrap_or(6),
                    conv == 'G',
                    spec.alternate,
                    false,
                );
                return pad(sign_prefix(negative, spec.sign), &body, &spec, '>');
            }
            format_float(x, &spec).unwrap_or_default()
        }
    }
}

/// Shortest digits helper re-exported for the human-readable formatter.
#[allow(dead_code)]
pub(crate) fn float_digits(x: f64) -> (bool, String, i32) {
    shortest_digits(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn lookup(key: &str) -> Option<FormatValue> {
        let dt = NaiveDate::from_ymd_opt(2026, 11, 21)
            .unwrap()
            .and_hms_micro_opt(23, 42, 4, 391316)
            .unwrap();
        Some(match key {
            "archive" => "arch1".into(),
            "size" => FormatValue::Int(100000),
            "neg" => FormatValue::Int(-42),
            "user" => "root".into(),
            "f" => FormatValue::Float(0.5),
            "w" => FormatValue::Int(10),
            "NL" => "\n".into(),
            "time" => FormatValue::Time {
                dt,
                default_fmt: "%a, %Y-%m-%d %H:%M:%S",
            },
            "none" => FormatValue::None,
            "b" => FormatValue::Bool(true),
            _ => return None,
        })
    }

    fn fmt(t: &str) -> Result<String, FormatError> {
        format_line(t, &lookup)
    }

    #[test]
    fn strings_and_padding() {
        // python3 -c 'print("{archive:<36} [{user:6}] {archive:>8}|{archive:^9}|{archive:.3}|{archive:*^9}|{archive:07}".format(archive="arch1", user="root"))'
        assert_eq!(
            fmt("{archive:<36} [{user:6}] {archive:>8}|{archive:^9}|{archive:.3}|{archive:*^9}|{archive:07}").unwrap(),
            "arch1                                [root  ]    arch1|  arch1  |arc|**arch1**|arch100"
        );
        assert_eq!(
            fmt("{{literal}} {archive}{NL}").unwrap(),
            "{literal} arch1\n"
        );
    }

    #[test]
    fn integers() {
        // python3 -c 'print("{size:8}|{size:,}|{size:_x}|{size:#x}|{neg:08}|{neg:+}|{size:+}|{size:<8}|{size:^10}|{neg: }|{size:e}|{size:.1%}".format(size=100000, neg=-42))'
        assert_eq!(
            fmt("{size:8}|{size:,}|{size:_x}|{size:#x}|{neg:08}|{neg:+}|{size:+}|{size:<8}|{size:^10}|{neg: }|{size:e}|{size:.1%}").unwrap(),
            "  100000|100,000|1_86a0|0x186a0|-0000042|-42|+100000|100000  |  100000  |-42|1.000000e+05|10000000.0%"
        );
        assert_eq!(fmt("{b} {b:d} {none}").unwrap(), "True 1 None");
    }

    #[test]
    fn floats() {
        // python3 -c 'print("{f}|{f:.3f}|{f:e}|{f:g}|{f:10.2f}|{f:%}|{f:.3}".format(f=0.5))'
        assert_eq!(
            fmt("{f}|{f:.3f}|{f:e}|{f:g}|{f:10.2f}|{f:%}|{f:.3}").unwrap(),
            "0.5|0.500|5.000000e-01|0.5|      0.50|50.000000%|0.5"
        );
        let g = |x: f64, s: &str| format_value(&FormatValue::Float(x), None, s).unwrap();
        // python3 -c 'print(format(1234.0,".3"), format(1e-7,"g"), format(123456789.0,"g"), format(1.0,".3"), format(1e22,""), format(1234567.891,",.2f"))'
        assert_eq!(
            [
                g(1234.0, ".3"),
                g(1e-7, "g"),
                g(123456789.0, "g"),
                g(1.0, ".3"),
                g(1e22, ""),
                g(1234567.891, ",.2f")
            ],
            [
                "1.23e+03",
                "1e-07",
                "1.23457e+08",
                "1.0",
                "1e+22",
                "1,234,567.89"
            ]
        );
    }

    #[test]
    fn nested_spec_and_time() {
        assert_eq!(fmt("{archive:>{w}}").unwrap(), "     arch1");
        assert_eq!(fmt("{time}").unwrap(), "Sat, 2026-11-21 23:42:04");
        assert_eq!(
            fmt("{time:%Y-%m-%dT%H:%M:%S.%f}").unwrap(),
            "2026-11-21T23:42:04.391316"
        );
        // padding a time is not supported by borg: the spec is a strftime format
        assert_eq!(fmt("{time:<30}").unwrap(), "<30");
    }

    #[test]
    fn errors() {
        assert_eq!(fmt("{nope}"), Err(FormatError::UnknownKey("nope".into())));
        assert!(matches!(fmt("{archive"), Err(FormatError::Invalid(_))));
        assert!(matches!(fmt("archive}"), Err(FormatError::Invalid(_))));
        assert!(matches!(fmt("{archive:d}"), Err(FormatError::Invalid(_))));
        assert!(matches!(fmt("{size:.2}"), Err(FormatError::Invalid(_))));
        assert!(matches!(fmt("{}"), Err(FormatError::Invalid(_))));
        let e: crate::errors::Error = fmt("{nope}").unwrap_err().into();
        assert_eq!(e.exit_code(crate::errors::ExitCodeMode::Modern), 2);
    }

    #[test]
    fn conversions_and_keys() {
        assert_eq!(fmt("{archive!r} {archive!s:>6}").unwrap(), "'arch1'  arch1");
        assert_eq!(
            format_keys("{mode} {user:6} {group:6} {size:8} {mtime} {path}{extra}{NL}{size}"),
            ["mode", "user", "group", "size", "mtime", "path", "extra", "NL"]
        );
    }

    #[test]
    fn printf_templates() {
        // python3 -c 'print("%5.1f%% Extracting: %s" % (45.25, "a/b")); print("Checking segments %3.1f%%" % 7.0);
        //   print("Compacting segments %3.0f%%" % 99.5); print("Verifying data %6.2f%%" % 3.14259)'
        assert_eq!(
            printf(
                "%5.1f%% Extracting: %s",
                &[PrintfArg::Float(45.25), PrintfArg::Str("a/b")]
            ),
            " 45.2% Extracting: a/b"
        );
        assert_eq!(
            printf("Checking segments %3.1f%%", &[PrintfArg::Float(7.0)]),
            "Checking segments 7.0%"
        );
        assert_eq!(
            printf("Compacting segments %3.0f%%", &[PrintfArg::Float(99.5)]),
            "Compacting segments 100%"
        );
        assert_eq!(
            printf("Verifying data %6.2f%%", &[PrintfArg::Float(3.14259)]),
            "Verifying data   3.14%"
        );
        assert_eq!(
            printf(
                "%s-%-10s %9.2f MB/s (%d * %s)",
                &[
                    PrintfArg::Str("C"),
                    PrintfArg::Str("Z-BIG"),
                    PrintfArg::Float(123.456),
                    PrintfArg::Int(10),
                    PrintfArg::Str("x")
                ]
            ),
            "C-Z-BIG         123.46 MB/s (10 * x)"
        );
        assert_eq!(
            printf("%05d|%+d", &[PrintfArg::Int(42), PrintfArg::Int(3)]),
            "00042|+3"
        );
    }
}
