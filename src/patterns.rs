//! Include/exclude patterns (cli.md §5): fm, sh, re, pp, pf styles and patterns files.
//!
//! Paths and patterns are raw bytes. borg works on `str`s decoded with `surrogateescape`, where
//! every byte that is not part of valid UTF-8 is one character; to match the same way, such
//! bytes are carried as their surrogate code point (U+DC80–U+DCFF, encoded like UTF-8 in three
//! bytes) before regex matching, and the generated regexes treat them as one character.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use regex::bytes::{Regex, RegexBuilder};

use crate::errors::{Error, ErrorKind, Result};

/// How a pattern's text is interpreted (the two-letter selector before `:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Style {
    /// `fm:` fnmatch: `*` crosses `/`.
    FnMatch,
    /// `sh:` shell: `*`/`?` stop at `/`, `**/` spans directory levels.
    Shell,
    /// `re:` Python regular expression, searched anywhere in the path.
    Regex,
    /// `pp:` path prefix: the path and everything below it.
    PathPrefix,
    /// `pf:` path full: exactly this path.
    PathFull,
}

impl Style {
    pub fn from_prefix(prefix: &str) -> Option<Style> {
        Some(match prefix {
            "fm" => Style::FnMatch,
            "sh" => Style::Shell,
            "re" => Style::Regex,
            "pp" => Style::PathPrefix,
            "pf" => Style::PathFull,
            _ => return None,
        })
    }

    pub fn prefix(self) -> &'static str {
        match self {
            Style::FnMatch => "fm",
            Style::Shell => "sh",
            Style::Regex => "re",
            Style::PathPrefix => "pp",
            Style::PathFull => "pf",
        }
    }
}

/// What a matching pattern does (borg's IECommand for rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// `+`: include.
    Include,
    /// `-`: exclude, but still descend into a matching directory.
    Exclude,
    /// `!` and `-e`: exclude and do not descend.
    ExcludeNoRecurse,
}

impl Action {
    pub fn is_include(self) -> bool {
        self == Action::Include
    }

    /// Whether a directory matched by this rule is still descended into.
    pub fn recurses(self) -> bool {
        self != Action::ExcludeNoRecurse
    }
}

/// A pattern-related failure. The message is borg's bare text (e.g. `Unknown pattern style:
/// xx`, `A pattern/command must have a value part.`); borg reports most of these as an
/// uncaught exception or an argparse error, both rc 2.
fn pattern_error(message: impl Into<String>) -> Error {
    Error {
        kind: ErrorKind::Error,
        message: message.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// surrogateescape view of bytes

const SURROGATE_BASE: u32 = 0xDC00;

/// Decode bytes to code points as Python's `surrogateescape` does (undecodable byte `b` →
/// U+DC00+b).
fn decode_chars(bytes: &[u8]) -> Vec<u32> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.extend(s.chars().map(|c| c as u32));
                break;
            }
            Err(e) => {
                let valid = e.valid_up_to();
                let bad = e.error_len().unwrap_or(rest.len() - valid);
                // the prefix is valid UTF-8 by construction
                out.extend(
                    String::from_utf8_lossy(&rest[..valid])
                        .chars()
                        .map(|c| c as u32),
                );
                out.extend(
                    rest[valid..valid + bad]
                        .iter()
                        .map(|&b| SURROGATE_BASE + b as u32),
                );
                rest = &rest[valid + bad..];
            }
        }
    }
    out
}

/// Encode one code point, surrogates included, in UTF-8 form.
fn encode_char(c: u32, out: &mut Vec<u8>) {
    match char::from_u32(c) {
        Some(ch) => out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes()),
        None => out.extend_from_slice(&[
            0xE0 | (c >> 12) as u8,
            0x80 | ((c >> 6) & 0x3F) as u8,
            0x80 | (c & 0x3F) as u8,
        ]),
    }
}

/// The bytes with every undecodable byte replaced by its escaped surrogate (identity for
/// valid UTF-8).
fn escape_bytes(bytes: &[u8]) -> Cow<'_, [u8]> {
    if std::str::from_utf8(bytes).is_ok() {
        return Cow::Borrowed(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len() + 8);
    for c in decode_chars(bytes) {
        encode_char(c, &mut out);
    }
    Cow::Owned(out)
}

/// Code points back to bytes, surrogate escapes becoming the original bytes again.
fn encode_chars_raw(chars: &[u32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(chars.len());
    for &c in chars {
        if (0xDC80..=0xDCFF).contains(&c) {
            out.push((c - SURROGATE_BASE) as u8);
        } else {
            encode_char(c, &mut out);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// path helpers

/// `os.path.normpath` for POSIX paths.
pub fn normpath(path: &[u8]) -> Vec<u8> {
    if path.is_empty() {
        return b".".to_vec();
    }
    // POSIX keeps exactly two leading slashes, collapses three or more to one
    let initial = match path.iter().take_while(|&&b| b == b'/').count() {
        0 => 0,
        2 => 2,
        _ => 1,
    };
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in path.split(|&b| b == b'/') {
        if part.is_empty() || part == b"." {
            continue;
        }
        let keep_dotdot = initial == 0 && (parts.is_empty() || parts.last() == Some(&&b".."[..]));
        if part != b".." || keep_dotdot {
            parts.push(part);
        } else if !parts.is_empty() {
            parts.pop();
        }
    }
    let mut out = vec![b'/'; initial];
    out.extend_from_slice(&parts.join(&b'/'));
    if out.is_empty() {
        out.push(b'.');
    }
    out
}

fn lstrip_slashes(p: &[u8]) -> &[u8] {
    let n = p.iter().take_while(|&&b| b == b'/').count();
    &p[n..]
}

fn rstrip_slashes(p: &[u8]) -> &[u8] {
    let n = p.iter().rev().take_while(|&&b| b == b'/').count();
    &p[..p.len() - n]
}

// ---------------------------------------------------------------------------------------------
// regex emission (Rust regex syntax, Unicode mode, over surrogate-escaped bytes)

/// One escaped undecodable byte.
const ESCAPED_BYTE: &str = r"(?-u:\xED[\xB2\xB3][\x80-\xBF])";

fn any_char() -> String {
    format!(r"(?:(?s:.)|{ESCAPED_BYTE})")
}

fn non_sep_char() -> String {
    format!(r"(?:[^/]|{ESCAPED_BYTE})")
}

fn push_literal(out: &mut String, c: u32) {
    match char::from_u32(c) {
        Some(ch) => out.push_str(&regex::escape(ch.encode_utf8(&mut [0; 4]))),
        None => {
            let mut b = Vec::new();
            encode_char(c, &mut b);
            out.push_str(&format!(
                r"(?-u:\x{:02X}\x{:02X}\x{:02X})",
                b[0], b[1], b[2]
            ));
        }
    }
}

fn push_scalar_range(out: &mut String, lo: u32, hi: u32) {
    if lo == hi {
        out.push_str(&format!(r"\x{{{lo:X}}}"));
    } else {
        out.push_str(&format!(r"\x{{{lo:X}}}-\x{{{hi:X}}}"));
    }
}

/// A character class over code points (ranges inclusive), matching one character of the
/// escaped path: scalars natively, escaped bytes through explicit byte sequences. `extra` is
/// added inside the scalar class (shorthands like `\d`).
fn push_class(out: &mut String, negated: bool, ranges: &[(u32, u32)], extra: &str) {
    let mut scalars = String::from(extra);
    let mut escaped = [false; 128];
    for &(lo, hi) in ranges {
        if lo < 0xD800 {
            push_scalar_range(&mut scalars, lo, hi.min(0xD7FF));
        }
        if hi > 0xDFFF {
            push_scalar_range(&mut scalars, lo.max(0xE000), hi);
        }
        for c in lo.max(0xDC80)..=hi.min(0xDCFF) {
            escaped[(c - 0xDC80) as usize] = true;
        }
    }
    if negated {
        escaped.iter_mut().for_each(|e| *e = !*e);
    }
    let mut alternatives = Vec::new();
    match (negated, scalars.is_empty()) {
        // nothing excluded: any scalar
        (true, true) => alternatives.push(r"[\x{0}-\x{10FFFF}]".to_string()),
        (true, false) => alternatives.push(format!("[^{scalars}]")),
        (false, false) => alternatives.push(format!("[{scalars}]")),
        (false, true) => {}
    }
    let mut i = 0;
    while i < 128 {
        if !escaped[i] {
            i += 1;
            continue;
        }
        let half = i / 64;
        let start = i;
        while i < 128 && escaped[i] && i / 64 == half {
            i += 1;
        }
        let (lo, hi) = (0x80 + start % 64, 0x80 + (i - 1) % 64);
        alternatives.push(format!(
            r"(?-u:\xED\x{:02X}[\x{lo:02X}-\x{hi:02X}])",
            0xB2 + half
        ));
    }
    match alternatives.len() {
        0 => out.push_str(r"[^\x{0}-\x{10FFFF}]"),
        1 => out.push_str(&alternatives[0]),
        _ => {
            out.push_str("(?:");
            out.push_str(&alternatives.join("|"));
            out.push(')');
        }
    }
}

/// A character of a Python character-class source: escaped (`\x`) or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClassTok {
    Plain(u32),
    Escaped(u32),
}

impl ClassTok {
    fn char(self) -> u32 {
        match self {
            ClassTok::Plain(c) | ClassTok::Escaped(c) => c,
        }
    }
}

const DASH: u32 = '-' as u32;

/// Items of a Python `re` class body whose escapes are all "literal next char": single
/// characters and `a-b` ranges; a `-` before the end is literal.
fn python_class_items(toks: &[ClassTok]) -> std::result::Result<Vec<(u32, u32)>, String> {
    let mut items = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let this = toks[i].char();
        i += 1;
        if toks.get(i) == Some(&ClassTok::Plain(DASH)) {
            i += 1;
            let Some(that) = toks.get(i) else {
                items.push((this, this));
                items.push((DASH, DASH));
                break;
            };
            let that = that.char();
            i += 1;
            if that < this {
                let show = |c: u32| String::from_utf8_lossy(&encode_chars_raw(&[c])).into_owned();
                return Err(format!("bad character range {}-{}", show(this), show(that)));
            }
            items.push((this, that));
        } else {
            items.push((this, this));
        }
    }
    Ok(items)
}

/// End of a `[...]` starting after the `[` at `i`: index of the closing `]`, if any
/// (a leading `!` and then a leading `]` belong to the set).
fn class_end(pat: &[u32], i: usize) -> Option<usize> {
    let n = pat.len();
    let mut j = i;
    if j < n && pat[j] == '!' as u32 {
        j += 1;
    }
    if j < n && pat[j] == ']' as u32 {
        j += 1;
    }
    while j < n && pat[j] != ']' as u32 {
        j += 1;
    }
    (j < n).then_some(j)
}

/// The class body Python's `fnmatch.translate` builds from `pat[i..j]` (3.11 rules: ranges
/// split at hyphens, reversed ranges dropped, set operators escaped).
fn fnmatch_class_tokens(pat: &[u32], i: usize, j: usize) -> Vec<ClassTok> {
    let stuff = &pat[i..j];
    let escape = |c: u32, escape_dash: bool| -> ClassTok {
        if c == '\\' as u32
            || (escape_dash && c == DASH)
            || [b'&', b'~', b'|'].iter().any(|&s| c == s as u32)
        {
            ClassTok::Escaped(c)
        } else {
            ClassTok::Plain(c)
        }
    };
    if !stuff.contains(&DASH) {
        return stuff.iter().map(|&c| escape(c, false)).collect();
    }
    let mut chunks: Vec<Vec<u32>> = Vec::new();
    let mut start = i;
    let mut k = if pat[i] == '!' as u32 { i + 2 } else { i + 1 };
    while k < j {
        let Some(pos) = pat[k..j].iter().position(|&c| c == DASH) else {
            break;
        };
        let dash = k + pos;
        chunks.push(pat[start..dash].to_vec());
        start = dash + 1;
        k = dash + 3;
    }
    let last = &pat[start..j];
    match chunks.last_mut() {
        Some(prev) if last.is_empty() => prev.push(DASH),
        _ => chunks.push(last.to_vec()),
    }
    // drop empty (reversed) ranges together with their end points
    for k in (1..chunks.len()).rev() {
        let (Some(&a), Some(&b)) = (chunks[k - 1].last(), chunks[k].first()) else {
            continue;
        };
        if a > b {
            let next = chunks.remove(k);
            let prev = &mut chunks[k - 1];
            prev.pop();
            prev.extend_from_slice(&next[1..]);
        }
    }
    let mut toks = Vec::new();
    for (n, chunk) in chunks.iter().enumerate() {
        if n > 0 {
            toks.push(ClassTok::Plain(DASH));
        }
        toks.extend(chunk.iter().map(|&c| escape(c, true)));
    }
    toks
}

/// fnmatch (Python's `fnmatch.translate`) to a Rust regex matching the whole input.
fn translate_fnmatch(pat: &[u32]) -> String {
    let mut out = String::from("^(?:");
    let mut i = 0;
    let mut after_star = false;
    while i < pat.len() {
        let c = pat[i];
        i += 1;
        if c == '*' as u32 {
            if !after_star {
                out.push_str(&any_char());
                out.push('*');
            }
            after_star = true;
            continue;
        }
        after_star = false;
        if c == '?' as u32 {
            out.push_str(&any_char());
        } else if c == '[' as u32 {
            match class_end(pat, i) {
                None => push_literal(&mut out, c),
                Some(j) => {
                    let toks = fnmatch_class_tokens(pat, i, j);
                    i = j + 1;
                    push_fnmatch_class(&mut out, &toks);
                }
            }
        } else {
            push_literal(&mut out, c);
        }
    }
    out.push_str(r")\z");
    out
}

fn push_fnmatch_class(out: &mut String, toks: &[ClassTok]) {
    let bang = ClassTok::Plain('!' as u32);
    if toks.is_empty() {
        push_class(out, false, &[], "");
    } else if toks == [bang] {
        out.push_str(&any_char());
    } else {
        let (negated, body) = if toks[0] == bang {
            (true, &toks[1..])
        } else {
            (false, toks)
        };
        // fnmatch never builds a reversed range, so this cannot fail
        let items = python_class_items(body).unwrap_or_default();
        push_class(out, negated, &items, "");
    }
}

/// borg's shell-pattern translation (`shellpattern.translate`) to a Rust regex matching the
/// whole input.
fn translate_shell(pat: &[u32]) -> std::result::Result<String, String> {
    let sep = '/' as u32;
    let mut out = String::from("^(?:");
    let n = pat.len();
    let mut i = 0;
    while i < n {
        let c = pat[i];
        i += 1;
        if c == '*' as u32 {
            if i + 1 < n && pat[i] == '*' as u32 && pat[i + 1] == sep {
                out.push_str(&format!("(?:{}*/)*", non_sep_char()));
                i += 2;
            } else {
                out.push_str(&non_sep_char());
                out.push('*');
            }
        } else if c == '?' as u32 {
            out.push_str(&non_sep_char());
        } else if c == '[' as u32 {
            match class_end(pat, i) {
                None => push_literal(&mut out, c),
                Some(j) => {
                    let toks: Vec<ClassTok> = pat[i..j]
                        .iter()
                        .map(|&c| {
                            if c == '\\' as u32 {
                                ClassTok::Escaped(c)
                            } else {
                                ClassTok::Plain(c)
                            }
                        })
                        .collect();
                    i = j + 1;
                    let (negated, body) = match toks[0] {
                        ClassTok::Plain(b) if b == '!' as u32 => (true, &toks[1..]),
                        _ => (false, &toks[..]),
                    };
                    let items = python_class_items(body)?;
                    push_class(&mut out, negated, &items, "");
                }
            }
        } else {
            push_literal(&mut out, c);
        }
    }
    out.push_str(r")\z");
    Ok(out)
}

/// A Python `re` pattern to Rust syntax: `\Z`, `$` before a final newline, literal `{`,
/// `(?#…)`, flags `a`/`u`/`L`, escaped bytes for `.`; look-around and back-references are
/// not supported.
fn translate_python_regex(pat: &[u32]) -> std::result::Result<String, String> {
    let mut t = PyRegexTranslator {
        pat,
        i: 0,
        out: String::new(),
    };
    t.run()?;
    Ok(t.out)
}

struct PyRegexTranslator<'a> {
    pat: &'a [u32],
    i: usize,
    out: String,
}

fn is_char(c: Option<u32>, ch: char) -> bool {
    c == Some(ch as u32)
}

impl PyRegexTranslator<'_> {
    fn peek(&self) -> Option<u32> {
        self.pat.get(self.i).copied()
    }

    fn peek_at(&self, k: usize) -> Option<u32> {
        self.pat.get(self.i + k).copied()
    }

    fn next(&mut self) -> Option<u32> {
        let c = self.peek();
        self.i += 1;
        c
    }

    fn push_raw(&mut self, c: u32) {
        if let Some(ch) = char::from_u32(c) {
            self.out.push(ch);
        } else {
            push_literal(&mut self.out, c);
        }
    }

    fn run(&mut self) -> std::result::Result<(), String> {
        while let Some(c) = self.next() {
            match char::from_u32(c).unwrap_or('\u{FFFD}') {
                '\\' => {
                    if let Some(code) = self.escape(false)? {
                        push_literal(&mut self.out, code);
                    }
                }
                '[' => self.class()?,
                '.' => self.out.push_str(&format!("(?:.|{ESCAPED_BYTE})")),
                '$' => self.out.push_str(r"(?:$|\n\z)"),
                '{' => self.brace(),
                '}' => self.out.push_str(r"\}"),
                '(' => self.group()?,
                _ => self.push_raw(c),
            }
        }
        Ok(())
    }

    /// After a `\`: pushes class-like escapes itself, returns a literal code point otherwise.
    fn escape(&mut self, in_class: bool) -> std::result::Result<Option<u32>, String> {
        let Some(c) = self.next() else {
            return Err("bad escape (end of pattern)".into());
        };
        let ch = char::from_u32(c).unwrap_or('\u{FFFD}');
        let literal = |v: char| Ok(Some(v as u32));
        match ch {
            'd' | 'D' | 's' | 'S' | 'w' | 'W' => {
                self.out.push('\\');
                self.out.push(ch);
                Ok(None)
            }
            'b' if in_class => literal('\x08'),
            'A' | 'b' | 'B' if !in_class => {
                self.out.push('\\');
                self.out.push(ch);
                Ok(None)
            }
            'Z' if !in_class => {
                self.out.push_str(r"\z");
                Ok(None)
            }
            'n' => literal('\n'),
            't' => literal('\t'),
            'r' => literal('\r'),
            'f' => literal('\x0c'),
            'v' => literal('\x0b'),
            'a' => literal('\x07'),
            'x' => self.hex_escape(2),
            'u' => self.hex_escape(4),
            'U' => self.hex_escape(8),
            '0'..='7' if ch == '0' || in_class || self.is_octal_escape() => {
                let mut v = c - '0' as u32;
                for _ in 0..2 {
                    match self
                        .peek()
                        .and_then(char::from_u32)
                        .and_then(|d| d.to_digit(8))
                    {
                        Some(d) => {
                            v = v * 8 + d;
                            self.i += 1;
                        }
                        None => break,
                    }
                }
                Ok(Some(v))
            }
            '1'..='9' => Err("back-references are not supported".into()),
            c if c.is_ascii_alphabetic() => Err(format!("bad escape \\{c}")),
            _ => Ok(Some(c)),
        }
    }

    /// `\NNN` outside a class is octal only with three octal digits (else a group reference).
    fn is_octal_escape(&self) -> bool {
        let octal = |c: Option<u32>| c.is_some_and(|c| ('0' as u32..='7' as u32).contains(&c));
        octal(self.peek()) && octal(self.peek_at(1))
    }

    fn hex_escape(&mut self, digits: usize) -> std::result::Result<Option<u32>, String> {
        let mut v = 0u32;
        for _ in 0..digits {
            let d = self
                .next()
                .and_then(char::from_u32)
                .and_then(|c| c.to_digit(16));
            v = v * 16 + d.ok_or("incomplete escape")?;
        }
        if v > 0x10FFFF {
            return Err("bad escape".into());
        }
        Ok(Some(v))
    }

    /// `{m}`, `{m,}`, `{,n}`, `{m,n}` are repeats; anything else is a literal `{`.
    fn brace(&mut self) {
        let digits = |t: &Self, mut k: usize| -> (String, usize) {
            let mut s = String::new();
            while let Some(d) = t
                .peek_at(k)
                .and_then(char::from_u32)
                .filter(|c| c.is_ascii_digit())
            {
                s.push(d);
                k += 1;
            }
            (s, k)
        };
        let (lo, k) = digits(self, 0);
        let (hi, end, comma) = if is_char(self.peek_at(k), ',') {
            let (hi, end) = digits(self, k + 1);
            (hi, end, true)
        } else {
            (lo.clone(), k, false)
        };
        if !is_char(self.peek_at(end), '}') || (!comma && lo.is_empty()) {
            self.out.push_str(r"\{");
            return;
        }
        if comma {
            let lo = if lo.is_empty() { "0" } else { lo.as_str() };
            self.out.push_str(&format!("{{{lo},{hi}}}"));
        } else {
            self.out.push_str(&format!("{{{lo}}}"));
        }
        self.i += end + 1;
    }

    fn group(&mut self) -> std::result::Result<(), String> {
        if !is_char(self.peek(), '?') {
            self.out.push('(');
            return Ok(());
        }
        self.i += 1;
        let c = self.next().and_then(char::from_u32);
        match c {
            Some(':') => self.out.push_str("(?:"),
            Some('P') if is_char(self.peek(), '<') => self.out.push_str("(?P"),
            Some('P') => return Err("named back-references are not supported".into()),
            Some('#') => {
                while let Some(c) = self.next() {
                    if c == ')' as u32 {
                        return Ok(());
                    }
                }
                return Err("missing ), unterminated comment".into());
            }
            Some('<') if is_char(self.peek(), '=') || is_char(self.peek(), '!') => {
                return Err("look-behind is not supported".into())
            }
            Some('<') => self.out.push_str("(?<"),
            Some('=') | Some('!') => return Err("look-ahead is not supported".into()),
            Some('>') => return Err("atomic groups are not supported".into()),
            Some('(') => return Err("conditional groups are not supported".into()),
            Some(f) if "aiLmsux-".contains(f) => {
                // inline flags: keep i, m, s, x; Python's a/u/L have no Rust equivalent here
                let mut flags = String::new();
                let mut ch = Some(f);
                loop {
                    match ch {
                        Some(')') | Some(':') => break,
                        Some(f) if "imsx-".contains(f) => flags.push(f),
                        Some(f) if "auL".contains(f) => {}
                        _ => return Err("unknown flag".into()),
                    }
                    ch = self.next().and_then(char::from_u32);
                }
                let flags = flags.trim_end_matches('-');
                let scoped = ch == Some(':');
                match (flags.is_empty() || flags == "-", scoped) {
                    (true, true) => self.out.push_str("(?:"),
                    (true, false) => {}
                    (false, true) => self.out.push_str(&format!("(?{flags}:")),
                    (false, false) => self.out.push_str(&format!("(?{flags})")),
                }
            }
            _ => return Err("unknown extension".into()),
        }
        Ok(())
    }

    fn class(&mut self) -> std::result::Result<(), String> {
        let mut shorthands = String::new();
        let mut items = Vec::new();
        let negated = is_char(self.peek(), '^');
        if negated {
            self.i += 1;
        }
        loop {
            let Some(c) = self.next() else {
                return Err("unterminated character set".into());
            };
            // `]` right at the start is a member
            if c == ']' as u32 && !(items.is_empty() && shorthands.is_empty()) {
                break;
            }
            let Some(lo) = self.class_member(c, &mut shorthands)? else {
                continue;
            };
            let range_follows = is_char(self.peek(), '-')
                && self.peek_at(1).is_some()
                && !is_char(self.peek_at(1), ']');
            if !range_follows {
                items.push((lo, lo));
                continue;
            }
            self.i += 1;
            let that = self.next().unwrap_or(0);
            let hi = self
                .class_member(that, &mut shorthands)?
                .ok_or("bad character range")?;
            if hi < lo {
                return Err("bad character range".into());
            }
            items.push((lo, hi));
        }
        push_class(&mut self.out, negated, &items, &shorthands);
        Ok(())
    }

    /// One class member starting with `c`: a code point, or `None` for a shorthand (`\d`…)
    /// appended to `shorthands`.
    fn class_member(
        &mut self,
        c: u32,
        shorthands: &mut String,
    ) -> std::result::Result<Option<u32>, String> {
        if c != '\\' as u32 {
            return Ok(Some(c));
        }
        let outer = std::mem::take(&mut self.out);
        let literal = self.escape(true);
        let shorthand = std::mem::replace(&mut self.out, outer);
        shorthands.push_str(&shorthand);
        literal
    }
}

fn compile(regex: &str, original: &[u8]) -> Result<Regex> {
    RegexBuilder::new(regex).build().map_err(|e| {
        pattern_error(format!(
            "invalid pattern {}: {e}",
            String::from_utf8_lossy(original)
        ))
    })
}

// ---------------------------------------------------------------------------------------------
// patterns

/// One include/exclude pattern, prepared for matching (borg's PatternBase subclasses).
#[derive(Debug)]
pub struct Pattern {
    style: Style,
    /// The text after the style selector (borg's `pattern_orig`, shown in messages).
    original: Vec<u8>,
    /// The normalised path of `pp:` (surrogate-escaped) and `pf:` (raw) patterns.
    prepared: Vec<u8>,
    regex: Option<Regex>,
    recurse_dir: bool,
    match_count: AtomicU64,
}

impl Pattern {
    /// Prepare `text` (no style selector) in `style`.
    pub fn new(style: Style, text: &[u8], recurse_dir: bool) -> Result<Pattern> {
        let mut prepared = Vec::new();
        let mut regex = None;
        match style {
            Style::PathFull => prepared = lstrip_slashes(&normpath(text)).to_vec(),
            Style::PathPrefix => {
                let mut p = rstrip_slashes(&normpath(text)).to_vec();
                p.push(b'/');
                prepared = escape_bytes(lstrip_slashes(&p)).into_owned();
            }
            Style::FnMatch | Style::Shell => {
                let suffix: &[u8] = match (style, text.ends_with(b"/")) {
                    (Style::FnMatch, true) => b"/*/",
                    (Style::FnMatch, false) => b"/*",
                    (_, true) => b"/**/*/",
                    (_, false) => b"/**/*",
                };
                let mut p = normpath(text);
                if text.ends_with(b"/") {
                    p.truncate(rstrip_slashes(&p).len());
                }
                p.extend_from_slice(suffix);
                let chars = decode_chars(lstrip_slashes(&p));
                let source = if style == Style::FnMatch {
                    translate_fnmatch(&chars)
                } else {
                    translate_shell(&chars).map_err(pattern_error)?
                };
                regex = Some(compile(&source, text)?);
            }
            Style::Regex => {
                let source = translate_python_regex(&decode_chars(text)).map_err(pattern_error)?;
                regex = Some(compile(&source, text)?);
            }
        }
        Ok(Pattern {
            style,
            original: text.to_vec(),
            prepared,
            regex,
            recurse_dir,
            match_count: AtomicU64::new(0),
        })
    }

    pub fn style(&self) -> Style {
        self.style
    }

    /// The pattern text as given, without the style selector.
    pub fn original(&self) -> &[u8] {
        &self.original
    }

    /// Whether a directory matched by this pattern is descended into (slow-path rule).
    pub fn recurse_dir(&self) -> bool {
        self.recurse_dir
    }

    /// How often this pattern has matched (borg's `match_count`).
    pub fn match_count(&self) -> u64 {
        self.match_count.load(Ordering::Relaxed)
    }

    /// Match a path as given (no leading-slash stripping, unlike [`PatternMatcher`]); counts.
    pub fn matches(&self, path: &[u8]) -> bool {
        self.matches_prepared(&PreparedPath::new(path))
    }

    fn matches_prepared(&self, path: &PreparedPath) -> bool {
        let hit = match self.style {
            Style::PathFull => path.raw == self.prepared.as_slice(),
            Style::PathPrefix => path.with_sep.starts_with(&self.prepared),
            Style::FnMatch | Style::Shell => self
                .regex
                .as_ref()
                .is_some_and(|r| r.is_match(&path.with_sep)),
            Style::Regex => self
                .regex
                .as_ref()
                .is_some_and(|r| r.is_match(&path.escaped)),
        };
        if hit {
            self.match_count.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }
}

/// Shows the original text (undecodable bytes replaced), as borg's `str(pattern)`.
impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.original))
    }
}

/// A path in the forms the patterns need: raw, escaped, escaped + `/`.
struct PreparedPath<'a> {
    raw: &'a [u8],
    escaped: Cow<'a, [u8]>,
    with_sep: Vec<u8>,
}

impl<'a> PreparedPath<'a> {
    fn new(raw: &'a [u8]) -> PreparedPath<'a> {
        let escaped = escape_bytes(raw);
        let mut with_sep = Vec::with_capacity(escaped.len() + 1);
        with_sep.extend_from_slice(&escaped);
        with_sep.push(b'/');
        PreparedPath {
            raw,
            escaped,
            with_sep,
        }
    }
}

/// Split an optional `xx:` selector off (two alphanumeric characters and a colon).
fn split_style(text: &[u8]) -> Result<(Option<Style>, &[u8])> {
    let chars = decode_chars(text);
    if chars.len() > 2
        && chars[2] == ':' as u32
        && chars[..2]
            .iter()
            .all(|&c| char::from_u32(c).is_some_and(char::is_alphanumeric))
    {
        let prefix: String = chars[..2]
            .iter()
            .filter_map(|&c| char::from_u32(c))
            .collect();
        let style = Style::from_prefix(&prefix)
            .ok_or_else(|| pattern_error(format!("Unknown pattern style: {prefix}")))?;
        let skip = encode_chars_raw(&chars[..3]).len();
        return Ok((Some(style), &text[skip..]));
    }
    Ok((None, text))
}

/// A pattern with an optional style selector; `default_style` applies without one
/// (borg's `parse_pattern`, recursing into matched directories).
pub fn parse_pattern(text: &[u8], default_style: Style) -> Result<Pattern> {
    parse_pattern_recursing(text, default_style, true)
}

fn parse_pattern_recursing(
    text: &[u8],
    default_style: Style,
    recurse_dir: bool,
) -> Result<Pattern> {
    let (style, rest) = split_style(text)?;
    Pattern::new(style.unwrap_or(default_style), rest, recurse_dir)
}

/// An `-e/--exclude` pattern: default style `fm`, exclude without recursing.
pub fn parse_exclude_pattern(text: &[u8]) -> Result<(Pattern, Action)> {
    Ok((
        parse_pattern_recursing(text, Style::FnMatch, false)?,
        Action::ExcludeNoRecurse,
    ))
}

/// One line of a patterns file or one `--pattern` value.
#[derive(Debug)]
pub enum PatternCommand {
    /// `R path`: a recursion root.
    Root(Vec<u8>),
    /// `P style`: default style for the following lines.
    Style(Style),
    Rule(Pattern, Action),
}

/// Parse a patterns-file line (already stripped) as borg's `parse_inclexcl_command`.
pub fn parse_inclexcl_command(line: &[u8], default_style: Style) -> Result<PatternCommand> {
    let chars = decode_chars(line);
    let Some(&first) = chars.first() else {
        return Err(pattern_error("A pattern/command must not be empty."));
    };
    let command = char::from_u32(first).unwrap_or('\u{FFFD}');
    if !"-!+RrPp".contains(command) {
        return Err(pattern_error(
            "A pattern/command must start with any of: -, !, +, R, r, P, p",
        ));
    }
    let rest_chars = &chars[1..];
    let skip = rest_chars
        .iter()
        .take_while(|&&c| char::from_u32(c).is_some_and(crate::python::is_py_space))
        .count();
    let value = encode_chars_raw(&rest_chars[skip..]);
    if value.is_empty() {
        return Err(pattern_error("A pattern/command must have a value part."));
    }
    Ok(match command {
        'R' | 'r' => PatternCommand::Root(value),
        'P' | 'p' => {
            let name = String::from_utf8_lossy(&value).into_owned();
            let style = Style::from_prefix(&name)
                .ok_or_else(|| pattern_error(format!("Invalid pattern style: {name}")))?;
            PatternCommand::Style(style)
        }
        c => {
            let action = match c {
                '+' => Action::Include,
                '-' => Action::Exclude,
                _ => Action::ExcludeNoRecurse,
            };
            PatternCommand::Rule(
                parse_pattern_recursing(&value, default_style, action.recurses())?,
                action,
            )
        }
    })
}

/// Lines of a text file as borg's `clean_lines`: split at `\n`, `\r\n`, `\r`; whitespace
/// stripped at both ends; empty lines and `#` comment lines dropped.
fn clean_lines(content: &[u8]) -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    for raw in content
        .split(|&b| b == b'\n')
        .flat_map(|l| l.split(|&b| b == b'\r'))
    {
        let chars = decode_chars(raw);
        let is_space = |c: &&u32| char::from_u32(**c).is_some_and(crate::python::is_py_space);
        let start = chars.iter().take_while(is_space).count();
        let end = chars.len() - chars[start..].iter().rev().take_while(is_space).count();
        let line = encode_chars_raw(&chars[start..end]);
        if !line.is_empty() && !line.starts_with(b"#") {
            lines.push(line);
        }
    }
    lines
}

/// One pattern option of the command line, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatternArg {
    /// `-e/--exclude PATTERN`
    Exclude(Vec<u8>),
    /// `--exclude-from FILE`
    ExcludeFrom(PathBuf),
    /// `--pattern PATTERN`
    Pattern(Vec<u8>),
    /// `--patterns-from FILE`
    PatternsFrom(PathBuf),
}

/// Rules in command-line order plus the roots from `R` lines (borg's `args.patterns` and the
/// roots appended to `args.paths`).
#[derive(Debug, Default)]
pub struct PatternList {
    pub rules: Vec<(Pattern, Action)>,
    pub roots: Vec<Vec<u8>>,
}

impl PatternList {
    pub fn new() -> PatternList {
        PatternList::default()
    }

    /// All pattern options in command-line order.
    pub fn from_args(args: &[PatternArg]) -> Result<PatternList> {
        let mut list = PatternList::new();
        for arg in args {
            match arg {
                PatternArg::Exclude(p) => list.add_exclude(p)?,
                PatternArg::ExcludeFrom(f) => list.add_exclude_from(f)?,
                PatternArg::Pattern(p) => list.add_pattern(p)?,
                PatternArg::PatternsFrom(f) => list.add_patterns_from(f)?,
            }
        }
        Ok(list)
    }

    /// `-e PATTERN`. An unknown style is reported as argparse does for this option
    /// (`invalid parse_exclude_pattern value: 'xx:foo'`; the CLI prefixes
    /// `argument -e/--exclude: `).
    pub fn add_exclude(&mut self, text: &[u8]) -> Result<()> {
        let (pattern, action) = parse_exclude_pattern(text).map_err(|e| {
            if e.message.starts_with("Unknown pattern style") {
                let shown = crate::python::repr(&String::from_utf8_lossy(text));
                pattern_error(format!("invalid parse_exclude_pattern value: {shown}"))
            } else {
                e
            }
        })?;
        self.rules.push((pattern, action));
        Ok(())
    }

    fn add_exclude_line(&mut self, text: &[u8]) -> Result<()> {
        self.rules.push(parse_exclude_pattern(text)?);
        Ok(())
    }

    /// `--pattern LINE` (default style `sh`; a `P` line has no lasting effect).
    pub fn add_pattern(&mut self, line: &[u8]) -> Result<()> {
        self.add_command_line(line, Style::Shell)?;
        Ok(())
    }

    fn add_command_line(&mut self, line: &[u8], default_style: Style) -> Result<Style> {
        Ok(match parse_inclexcl_command(line, default_style)? {
            PatternCommand::Root(path) => {
                self.roots.push(path);
                default_style
            }
            PatternCommand::Style(style) => style,
            PatternCommand::Rule(pattern, action) => {
                self.rules.push((pattern, action));
                default_style
            }
        })
    }

    /// Contents of an `--exclude-from` file.
    pub fn load_exclude_file(&mut self, content: &[u8]) -> Result<()> {
        for line in clean_lines(content) {
            self.add_exclude_line(&line)?;
        }
        Ok(())
    }

    /// Contents of a `--patterns-from` file (`P` lines apply to the rest of this file).
    pub fn load_patterns_file(&mut self, content: &[u8]) -> Result<()> {
        let mut style = Style::Shell;
        for line in clean_lines(content) {
            style = self.add_command_line(&line, style)?;
        }
        Ok(())
    }

    pub fn add_exclude_from(&mut self, path: &Path) -> Result<()> {
        self.load_exclude_file(&read_pattern_file(path)?)
    }

    pub fn add_patterns_from(&mut self, path: &Path) -> Result<()> {
        self.load_patterns_file(&read_pattern_file(path)?)
    }
}

/// Read a patterns file; a failure is borg's `Error: [Errno N] <strerror>: '<file>'`.
fn read_pattern_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        let name = crate::python::repr(&path.to_string_lossy());
        match e.raw_os_error() {
            Some(code) => Error::generic(format!(
                "[Errno {code}] {}: {name}",
                nix::errno::Errno::from_raw(code).desc()
            )),
            None => Error::generic(format!("{e}: {name}")),
        }
    })
}

/// Outcome of matching one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatchResult {
    /// Whether the item is selected.
    pub included: bool,
    /// For an excluded directory: whether to descend into it anyway (`-` vs `!`/`-e`).
    pub recurse_dir: bool,
}

/// An ordered rule list: the first matching rule decides, `pf:` rules are looked up before
/// all others (the last `pf:` rule for a path wins), unmatched paths get `fallback`.
#[derive(Debug)]
pub struct PatternMatcher {
    rules: Vec<(Pattern, Action)>,
    path_full: HashMap<Vec<u8>, Action>,
    /// Indexes into `rules` of the PATH-argument patterns (reported when never matched).
    include_paths: Vec<usize>,
    fallback: bool,
}

impl PatternMatcher {
    pub fn new(fallback: bool) -> PatternMatcher {
        PatternMatcher {
            rules: Vec::new(),
            path_full: HashMap::new(),
            include_paths: Vec::new(),
            fallback,
        }
    }

    /// `create`'s matcher: the rules, everything else included.
    pub fn for_create(rules: Vec<(Pattern, Action)>) -> PatternMatcher {
        let mut m = PatternMatcher::new(true);
        m.add_rules(rules);
        m
    }

    /// borg's `build_matcher` (extract, list, diff, mount, export-tar, recreate): the rules,
    /// then the PATH arguments as includes (style `pp:` unless selected); with PATHs given,
    /// unmatched items are excluded.
    pub fn build(
        rules: Vec<(Pattern, Action)>,
        include_paths: &[Vec<u8>],
    ) -> Result<PatternMatcher> {
        let mut m = PatternMatcher::new(true);
        m.add_rules(rules);
        m.add_include_paths(include_paths)?;
        Ok(m)
    }

    pub fn add(&mut self, pattern: Pattern, action: Action) {
        if pattern.style == Style::PathFull {
            self.path_full.insert(pattern.prepared.clone(), action);
        } else {
            self.rules.push((pattern, action));
        }
    }

    pub fn add_rules(&mut self, rules: Vec<(Pattern, Action)>) {
        for (pattern, action) in rules {
            self.add(pattern, action);
        }
    }

    /// PATH arguments as include patterns; the fallback becomes "exclude" when there are any.
    pub fn add_include_paths(&mut self, paths: &[Vec<u8>]) -> Result<()> {
        for path in paths {
            let pattern = parse_pattern(path, Style::PathPrefix)?;
            if pattern.style != Style::PathFull {
                self.include_paths.push(self.rules.len());
            }
            self.add(pattern, Action::Include);
        }
        self.fallback = paths.is_empty();
        Ok(())
    }

    pub fn fallback(&self) -> bool {
        self.fallback
    }

    /// No rules at all (borg: then extract is not partial).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.path_full.is_empty()
    }

    /// Match a stored or walked path (a leading `/` is ignored).
    pub fn match_item(&self, path: &[u8]) -> MatchResult {
        let path = lstrip_slashes(path);
        if let Some(action) = self.path_full.get(path) {
            return MatchResult {
                included: action.is_include(),
                recurse_dir: action.recurses(),
            };
        }
        if !self.rules.is_empty() {
            let prepared = PreparedPath::new(path);
            for (pattern, action) in &self.rules {
                if pattern.matches_prepared(&prepared) {
                    return MatchResult {
                        included: action.is_include(),
                        recurse_dir: pattern.recurse_dir,
                    };
                }
            }
        }
        MatchResult {
            included: self.fallback,
            recurse_dir: true,
        }
    }

    pub fn match_path(&self, path: &[u8]) -> bool {
        self.match_item(path).included
    }

    /// PATH-argument patterns (not `pf:`) that never matched: extract/list/diff warn
    /// `Include pattern '…' never matched.` for each.
    pub fn unmatched_include_patterns(&self) -> Vec<&Pattern> {
        self.include_paths
            .iter()
            .map(|&i| &self.rules[i].0)
            .filter(|p| p.match_count() == 0)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Paths matched against every pattern of [`ORACLE`].
    const ORACLE_PATHS: &[&str] = &[
        "foo",
        "foo/",
        "foo/bar",
        "foobar",
        "fo",
        "fao",
        "f/o",
        "a/b",
        "a/b/c",
        "a/x/b",
        "a/x/y/b",
        "ab",
        "axb",
        "a/xb",
        "b",
        "x",
        "y",
        "ax",
        "bx",
        "cx",
        "dx",
        "ex",
        "-x",
        "]x",
        "\\x",
        "&x",
        "/x",
        "x/y",
        "x",
        "aay",
        "home/u/junk",
        "home/u/v/junk",
        "home/u/cache",
        "home/u/cache/x",
        "a.txt",
        "d/a.txt",
        "x.bak",
        "FOO",
        "é1",
        "éx",
        "aé",
        "aab",
        "b/c",
        "{x}",
        "12",
        "zz",
        "!y",
        "by",
        "ay",
        "dy",
        "cy",
        "ey",
        "xy",
        "^x",
        ".",
        "x[",
        "x[!",
        "[!]",
    ];

    /// (pattern, paths it matches) as computed by borg 1.2.4's own pattern classes.
    const ORACLE: &[(&str, &[&str])] = &[
        ("fm:foo", &["foo", "foo/", "foo/bar"]),
        ("fm:foo/", &["foo/", "foo/bar"]),
        ("fm:/foo", &["foo", "foo/", "foo/bar"]),
        ("fm:foo/*", &["foo/", "foo/bar"]),
        ("fm:*.txt", &["a.txt", "d/a.txt"]),
        ("fm:f?o", &["foo", "foo/", "foo/bar", "fao", "f/o"]),
        ("fm:a/b", &["a/b", "a/b/c"]),
        (
            "fm:a*b",
            &[
                "a/b", "a/b/c", "a/x/b", "a/x/y/b", "ab", "axb", "a/xb", "aab",
            ],
        ),
        ("fm:[ab]x", &["ax", "bx"]),
        (
            "fm:[!ab]x",
            &["cx", "dx", "ex", "-x", "]x", "\\x", "&x", "/x", "éx", "^x"],
        ),
        ("fm:[a-c]x", &["ax", "bx", "cx"]),
        (
            "fm:[!a-c]x",
            &["dx", "ex", "-x", "]x", "\\x", "&x", "/x", "éx", "^x"],
        ),
        ("fm:[z-a]x", &[]),
        (
            "fm:[!z-a]x",
            &[
                "ax", "bx", "cx", "dx", "ex", "-x", "]x", "\\x", "&x", "/x", "éx", "^x",
            ],
        ),
        ("fm:[]]x", &["]x"]),
        (
            "fm:[!]]x",
            &[
                "ax", "bx", "cx", "dx", "ex", "-x", "\\x", "&x", "/x", "éx", "^x",
            ],
        ),
        ("fm:[a-]x", &["ax", "-x"]),
        ("fm:[-a]x", &["ax", "-x"]),
        ("fm:[a-c-e]x", &["ax", "bx", "cx", "ex", "-x"]),
        ("fm:[\\]x", &["\\x"]),
        ("fm:[\\-a]x", &["ax", "]x", "\\x", "^x"]),
        ("fm:[&~|]x", &["&x"]),
        ("fm:x[", &["x["]),
        ("fm:x[!", &["x[!"]),
        ("fm:[!]", &["[!]"]),
        ("fm:[^a]x", &["ax", "^x"]),
        (
            "fm:*",
            &[
                "foo",
                "foo/",
                "foo/bar",
                "foobar",
                "fo",
                "fao",
                "f/o",
                "a/b",
                "a/b/c",
                "a/x/b",
                "a/x/y/b",
                "ab",
                "axb",
                "a/xb",
                "b",
                "x",
                "y",
                "ax",
                "bx",
                "cx",
                "dx",
                "ex",
                "-x",
                "]x",
                "\\x",
                "&x",
                "/x",
                "x/y",
                "x",
                "aay",
                "home/u/junk",
                "home/u/v/junk",
                "home/u/cache",
                "home/u/cache/x",
                "a.txt",
                "d/a.txt",
                "x.bak",
                "FOO",
                "é1",
                "éx",
                "aé",
                "aab",
                "b/c",
                "{x}",
                "12",
                "zz",
                "!y",
                "by",
                "ay",
                "dy",
                "cy",
                "ey",
                "xy",
                "^x",
                ".",
                "x[",
                "x[!",
                "[!]",
            ],
        ),
        ("fm:", &["."]),
        (
            "fm:/",
            &[
                "foo",
                "foo/",
                "foo/bar",
                "foobar",
                "fo",
                "fao",
                "f/o",
                "a/b",
                "a/b/c",
                "a/x/b",
                "a/x/y/b",
                "ab",
                "axb",
                "a/xb",
                "b",
                "x",
                "y",
                "ax",
                "bx",
                "cx",
                "dx",
                "ex",
                "-x",
                "]x",
                "\\x",
                "&x",
                "/x",
                "x/y",
                "x",
                "aay",
                "home/u/junk",
                "home/u/v/junk",
                "home/u/cache",
                "home/u/cache/x",
                "a.txt",
                "d/a.txt",
                "x.bak",
                "FOO",
                "é1",
                "éx",
                "aé",
                "aab",
                "b/c",
                "{x}",
                "12",
                "zz",
                "!y",
                "by",
                "ay",
                "dy",
                "cy",
                "ey",
                "xy",
                "^x",
                ".",
                "x[",
                "x[!",
                "[!]",
            ],
        ),
        ("fm:.", &["."]),
        ("fm:a/./b", &["a/b", "a/b/c"]),
        ("fm:a/../b", &["b", "b/c"]),
        ("fm:home/*/junk", &["home/u/junk", "home/u/v/junk"]),
        ("fm:home/u/cache/", &["home/u/cache/x"]),
        ("fm:a//b", &["a/b", "a/b/c"]),
        (
            "fm:?",
            &[
                "f/o", "a/b", "a/b/c", "a/x/b", "a/x/y/b", "a/xb", "b", "x", "y", "x/y", "x",
                "d/a.txt", "b/c", ".",
            ],
        ),
        ("fm:**/x", &["a/x/b", "a/x/y/b", "/x", "home/u/cache/x"]),
        ("fm:x/**", &["x/y"]),
        ("fm:[b-a!x]y", &["!y", "by", "ay", "dy", "cy", "ey"]),
        ("fm:[c-a-e]y", &["ey"]),
        ("fm:[a-c-a]y", &["by", "ay", "cy"]),
        ("fm:[/]x", &["/x"]),
        ("fm:é?", &["é1", "éx"]),
        ("fm:[é]x", &["éx"]),
        ("sh:foo", &["foo", "foo/", "foo/bar"]),
        ("sh:foo/", &["foo/", "foo/bar"]),
        ("sh:/foo", &["foo", "foo/", "foo/bar"]),
        ("sh:*.txt", &["a.txt"]),
        ("sh:a/*", &["a/b", "a/b/c", "a/x/b", "a/x/y/b", "a/xb"]),
        (
            "sh:**/x",
            &["a/x/b", "a/x/y/b", "x", "/x", "x/y", "x", "home/u/cache/x"],
        ),
        ("sh:**/x/*", &["a/x/b", "a/x/y/b", "x/y"]),
        ("sh:a/**/b", &["a/b", "a/b/c", "a/x/b", "a/x/y/b"]),
        ("sh:a/**", &["a/b", "a/b/c", "a/x/b", "a/x/y/b", "a/xb"]),
        (
            "sh:**",
            &[
                "foo",
                "foo/",
                "foo/bar",
                "foobar",
                "fo",
                "fao",
                "f/o",
                "a/b",
                "a/b/c",
                "a/x/b",
                "a/x/y/b",
                "ab",
                "axb",
                "a/xb",
                "b",
                "x",
                "y",
                "ax",
                "bx",
                "cx",
                "dx",
                "ex",
                "-x",
                "]x",
                "\\x",
                "&x",
                "/x",
                "x/y",
                "x",
                "aay",
                "home/u/junk",
                "home/u/v/junk",
                "home/u/cache",
                "home/u/cache/x",
                "a.txt",
                "d/a.txt",
                "x.bak",
                "FOO",
                "é1",
                "éx",
                "aé",
                "aab",
                "b/c",
                "{x}",
                "12",
                "zz",
                "!y",
                "by",
                "ay",
                "dy",
                "cy",
                "ey",
                "xy",
                "^x",
                ".",
                "x[",
                "x[!",
                "[!]",
            ],
        ),
        ("sh:*/b", &["a/b", "a/b/c"]),
        (
            "sh:?",
            &[
                "f/o", "a/b", "a/b/c", "a/x/b", "a/x/y/b", "a/xb", "b", "x", "y", "x/y", "x",
                "d/a.txt", "b/c", ".",
            ],
        ),
        ("sh:f?o", &["foo", "foo/", "foo/bar", "fao"]),
        ("sh:[ab]x", &["ax", "bx"]),
        (
            "sh:[!ab]x",
            &["cx", "dx", "ex", "-x", "]x", "\\x", "&x", "/x", "éx", "^x"],
        ),
        ("sh:[a-c]x", &["ax", "bx", "cx"]),
        ("sh:[]]x", &["]x"]),
        (
            "sh:[!]]x",
            &[
                "ax", "bx", "cx", "dx", "ex", "-x", "\\x", "&x", "/x", "éx", "^x",
            ],
        ),
        ("sh:[a-]x", &["ax", "-x"]),
        ("sh:[-a]x", &["ax", "-x"]),
        ("sh:[a-c-e]x", &["ax", "bx", "cx", "ex", "-x"]),
        ("sh:[\\]x", &["\\x"]),
        ("sh:[^a]x", &["ax", "^x"]),
        ("sh:x[", &["x["]),
        ("sh:[/]x", &["/x"]),
        (
            "sh:***/x",
            &[
                "a/x/b",
                "a/x/y/b",
                "x",
                "ax",
                "bx",
                "cx",
                "dx",
                "ex",
                "-x",
                "]x",
                "\\x",
                "&x",
                "/x",
                "x/y",
                "x",
                "home/u/cache/x",
                "éx",
                "^x",
            ],
        ),
        ("sh:a/**/", &["a/b", "a/b/c", "a/x/b", "a/x/y/b", "a/xb"]),
        ("sh:home/u/cache/", &["home/u/cache/x"]),
        ("sh:", &["."]),
        ("sh:é?", &["é1", "éx"]),
        ("sh:*é", &["aé"]),
        ("pp:foo", &["foo", "foo/", "foo/bar"]),
        ("pp:foo/", &["foo", "foo/", "foo/bar"]),
        ("pp:/foo", &["foo", "foo/", "foo/bar"]),
        ("pp:a/b", &["a/b", "a/b/c"]),
        (
            "pp:/",
            &[
                "foo",
                "foo/",
                "foo/bar",
                "foobar",
                "fo",
                "fao",
                "f/o",
                "a/b",
                "a/b/c",
                "a/x/b",
                "a/x/y/b",
                "ab",
                "axb",
                "a/xb",
                "b",
                "x",
                "y",
                "ax",
                "bx",
                "cx",
                "dx",
                "ex",
                "-x",
                "]x",
                "\\x",
                "&x",
                "/x",
                "x/y",
                "x",
                "aay",
                "home/u/junk",
                "home/u/v/junk",
                "home/u/cache",
                "home/u/cache/x",
                "a.txt",
                "d/a.txt",
                "x.bak",
                "FOO",
                "é1",
                "éx",
                "aé",
                "aab",
                "b/c",
                "{x}",
                "12",
                "zz",
                "!y",
                "by",
                "ay",
                "dy",
                "cy",
                "ey",
                "xy",
                "^x",
                ".",
                "x[",
                "x[!",
                "[!]",
            ],
        ),
        ("pp:", &["."]),
        ("pp:a/../b", &["b", "b/c"]),
        ("pp:a//b/", &["a/b", "a/b/c"]),
        ("pf:foo", &["foo"]),
        ("pf:/foo", &["foo"]),
        ("pf:a/b", &["a/b"]),
        ("pf:a/b/", &["a/b"]),
        ("pf:a/./b", &["a/b"]),
        ("re:^foo", &["foo", "foo/", "foo/bar", "foobar"]),
        ("re:foo$", &["foo"]),
        ("re:o/b", &["foo/bar"]),
        ("re:^a/.*\\.txt$", &[]),
        ("re:(?i)FOO", &["foo", "foo/", "foo/bar", "foobar", "FOO"]),
        ("re:\\d+", &["é1", "12"]),
        (
            "re:[^/]+$",
            &[
                "foo",
                "foo/bar",
                "foobar",
                "fo",
                "fao",
                "f/o",
                "a/b",
                "a/b/c",
                "a/x/b",
                "a/x/y/b",
                "ab",
                "axb",
                "a/xb",
                "b",
                "x",
                "y",
                "ax",
                "bx",
                "cx",
                "dx",
                "ex",
                "-x",
                "]x",
                "\\x",
                "&x",
                "/x",
                "x/y",
                "x",
                "aay",
                "home/u/junk",
                "home/u/v/junk",
                "home/u/cache",
                "home/u/cache/x",
                "a.txt",
                "d/a.txt",
                "x.bak",
                "FOO",
                "é1",
                "éx",
                "aé",
                "aab",
                "b/c",
                "{x}",
                "12",
                "zz",
                "!y",
                "by",
                "ay",
                "dy",
                "cy",
                "ey",
                "xy",
                "^x",
                ".",
                "x[",
                "x[!",
                "[!]",
            ],
        ),
        ("re:a{2}", &["aay", "aab"]),
        (
            "re:a{,2}b",
            &[
                "foo/bar", "foobar", "a/b", "a/b/c", "a/x/b", "a/x/y/b", "ab", "axb", "a/xb", "b",
                "bx", "x.bak", "aab", "b/c", "by",
            ],
        ),
        ("re:{x}", &["{x}"]),
        (
            "re:x\\Z",
            &[
                "x",
                "ax",
                "bx",
                "cx",
                "dx",
                "ex",
                "-x",
                "]x",
                "\\x",
                "&x",
                "/x",
                "x",
                "home/u/cache/x",
                "éx",
                "^x",
            ],
        ),
        (
            "re:^[a-c]+/",
            &["a/b", "a/b/c", "a/x/b", "a/x/y/b", "a/xb", "b/c"],
        ),
        ("re:\\w+\\.bak$", &["x.bak"]),
        (
            "re:a|b/c",
            &[
                "foo/bar",
                "foobar",
                "fao",
                "a/b",
                "a/b/c",
                "a/x/b",
                "a/x/y/b",
                "ab",
                "axb",
                "a/xb",
                "ax",
                "aay",
                "home/u/cache",
                "home/u/cache/x",
                "a.txt",
                "d/a.txt",
                "x.bak",
                "aé",
                "aab",
                "b/c",
                "ay",
            ],
        ),
        (
            "re:[]a]",
            &[
                "foo/bar",
                "foobar",
                "fao",
                "a/b",
                "a/b/c",
                "a/x/b",
                "a/x/y/b",
                "ab",
                "axb",
                "a/xb",
                "ax",
                "]x",
                "aay",
                "home/u/cache",
                "home/u/cache/x",
                "a.txt",
                "d/a.txt",
                "x.bak",
                "aé",
                "aab",
                "ay",
                "[!]",
            ],
        ),
        (
            "re:^[\\w.-]+$",
            &[
                "foo", "foobar", "fo", "fao", "ab", "axb", "b", "x", "y", "ax", "bx", "cx", "dx",
                "ex", "-x", "x", "aay", "a.txt", "x.bak", "FOO", "é1", "éx", "aé", "aab", "12",
                "zz", "by", "ay", "dy", "cy", "ey", "xy", ".",
            ],
        ),
        (
            "re:\\bx\\b",
            &[
                "a/x/b",
                "a/x/y/b",
                "x",
                "-x",
                "]x",
                "\\x",
                "&x",
                "/x",
                "x/y",
                "x",
                "home/u/cache/x",
                "x.bak",
                "{x}",
                "^x",
                "x[",
                "x[!",
            ],
        ),
        ("re:^(?:a|b)$", &["b"]),
        (
            "re:[^a-z]",
            &[
                "foo/",
                "foo/bar",
                "f/o",
                "a/b",
                "a/b/c",
                "a/x/b",
                "a/x/y/b",
                "a/xb",
                "-x",
                "]x",
                "\\x",
                "&x",
                "/x",
                "x/y",
                "home/u/junk",
                "home/u/v/junk",
                "home/u/cache",
                "home/u/cache/x",
                "a.txt",
                "d/a.txt",
                "x.bak",
                "FOO",
                "é1",
                "éx",
                "aé",
                "b/c",
                "{x}",
                "12",
                "!y",
                "^x",
                ".",
                "x[",
                "x[!",
                "[!]",
            ],
        ),
        (
            "re:x*?y",
            &[
                "a/x/y/b", "y", "x/y", "aay", "!y", "by", "ay", "dy", "cy", "ey", "xy",
            ],
        ),
        ("re:\\x2e", &["a.txt", "d/a.txt", "x.bak", "."]),
        ("re:\\u00e9", &["é1", "éx", "aé"]),
        ("re:[.]", &["a.txt", "d/a.txt", "x.bak", "."]),
        ("re:(?i:foo)bar", &["foobar"]),
        (
            "re:a{,}b",
            &[
                "foo/bar", "foobar", "a/b", "a/b/c", "a/x/b", "a/x/y/b", "ab", "axb", "a/xb", "b",
                "bx", "x.bak", "aab", "b/c", "by",
            ],
        ),
        (
            "re:^.{2}$",
            &[
                "fo", "ab", "ax", "bx", "cx", "dx", "ex", "-x", "]x", "\\x", "&x", "/x", "é1",
                "éx", "aé", "12", "zz", "!y", "by", "ay", "dy", "cy", "ey", "xy", "^x", "x[",
            ],
        ),
        ("re:[\\]]", &["]x", "[!]"]),
        ("re:[a\\-z]x", &["axb", "ax", "-x"]),
        ("re:\\Ax", &["x", "x/y", "x", "x.bak", "xy", "x[", "x[!"]),
        ("re:^(?P<n>a)b", &["ab"]),
        ("re:\\s", &[]),
        (
            "re:\\S+/\\S+",
            &[
                "foo/bar",
                "f/o",
                "a/b",
                "a/b/c",
                "a/x/b",
                "a/x/y/b",
                "a/xb",
                "x/y",
                "home/u/junk",
                "home/u/v/junk",
                "home/u/cache",
                "home/u/cache/x",
                "d/a.txt",
                "b/c",
            ],
        ),
        (
            "re:^[^/]*$",
            &[
                "foo", "foobar", "fo", "fao", "ab", "axb", "b", "x", "y", "ax", "bx", "cx", "dx",
                "ex", "-x", "]x", "\\x", "&x", "x", "aay", "a.txt", "x.bak", "FOO", "é1", "éx",
                "aé", "aab", "{x}", "12", "zz", "!y", "by", "ay", "dy", "cy", "ey", "xy", "^x",
                ".", "x[", "x[!", "[!]",
            ],
        ),
        ("re:[[]", &["x[", "x[!", "[!]"]),
        ("re:\\$", &[]),
        ("re:(?x) a b ", &["ab", "aab"]),
    ];

    #[test]
    fn styles_match_like_borg() {
        for (pattern, hits) in ORACLE {
            let p = parse_pattern(pattern.as_bytes(), Style::FnMatch)
                .unwrap_or_else(|e| panic!("{pattern}: {e}"));
            for path in ORACLE_PATHS {
                let expected = hits.contains(path);
                assert_eq!(
                    p.matches(path.as_bytes()),
                    expected,
                    "{pattern} vs {path:?}"
                );
            }
        }
    }

    #[test]
    fn undecodable_bytes_are_one_character() {
        let m = |pat: &str, path: &[u8]| {
            parse_pattern(pat.as_bytes(), Style::FnMatch)
                .unwrap()
                .matches(path)
        };
        assert!(m("fm:a?b", b"a\xffb"));
        assert!(!m("fm:a??b", b"a\xffb"));
        assert!(m("fm:a?b", "aéb".as_bytes()));
        assert!(!m("fm:a??b", "aéb".as_bytes()));
        assert!(m("fm:[!x]b", b"\xffb"));
        assert!(m("sh:a/*", b"a/\xff\xfe"));
        assert!(m("sh:a/?", b"a/\xc3"));
        assert!(!m("sh:a/?", b"a/\xc3\xc3"));
        assert!(m("re:^a.b$", b"a\xffb"));
        assert!(m("pp:a", b"a/\xff"));
        // a pattern holding undecodable bytes (from argv) matches them
        let p = parse_pattern(b"fm:a\xff*", Style::FnMatch).unwrap();
        assert!(p.matches(b"a\xffz"));
        assert!(!p.matches(b"a\xfez"));
        let p = parse_pattern(b"sh:[\xfe\xff]", Style::Shell).unwrap();
        assert!(p.matches(b"\xfe") && p.matches(b"\xff") && !p.matches(b"\xfd"));
        let p = parse_pattern(b"pf:x/\xff", Style::Shell).unwrap();
        assert!(p.matches(b"x/\xff"));
        assert!(!p.matches(b"x/\xfe"));
        // a truncated sequence is not a prefix of the full character
        let p = parse_pattern(b"pp:a\xc3", Style::Shell).unwrap();
        assert!(!p.matches("aé".as_bytes()));
        assert!(p.matches(b"a\xc3/x"));
    }

    #[test]
    fn python_regex_translation() {
        let m = |pat: &str, path: &str| {
            parse_pattern(format!("re:{pat}").as_bytes(), Style::FnMatch)
                .unwrap()
                .matches(path.as_bytes())
        };
        assert!(m(r"^a\Z", "a"));
        assert!(!m(r"^a\Z", "ab"));
        assert!(m("a$", "xa\n"));
        assert!(m("x{", "x{"));
        assert!(m("x{1,}y", "xxy"));
        assert!(m("^x{,2}y$", "xxy"));
        assert!(!m("^x{,2}y$", "xxxy"));
        assert!(m("^x{2}$", "xx"));
        assert!(m(r"[\d]", "a1"));
        assert!(m(r"^[^\d]+$", "ab"));
        assert!(!m(r"^[^\d]+$", "a1"));
        assert!(m("[a-c&&b]", "&"));
        assert!(m("[[]", "["));
        assert!(m(r"\x41", "A"));
        assert!(m(r"(?P<n>ab)c", "abc"));
        assert!(m("(?#note)ab", "ab"));
        assert!(m("(?a)^é", "é"));
        assert!(m(r"[\]]", "]"));
        assert!(m(r"\.", "."));
        assert!(!m(r"\.", "x"));
        let err =
            |pat: &str| parse_pattern(format!("re:{pat}").as_bytes(), Style::FnMatch).unwrap_err();
        assert!(err("[").message.contains("unterminated character set"));
        assert!(err("(?=a)").message.contains("look-ahead"));
        assert!(err(r"(a)\1").message.contains("back-references"));
        assert!(err(r"\q").message.contains("bad escape"));
        assert!(parse_pattern(b"sh:[z-a]", Style::Shell)
            .unwrap_err()
            .message
            .contains("bad character range z-a"));
    }

    #[test]
    fn selector_and_commands() {
        assert_eq!(
            parse_pattern(b"xx:foo", Style::Shell).unwrap_err().message,
            "Unknown pattern style: xx"
        );
        let p = parse_pattern(b"foo", Style::Shell).unwrap();
        assert_eq!((p.style(), p.original()), (Style::Shell, &b"foo"[..]));
        let p = parse_pattern(b"re:^x", Style::Shell).unwrap();
        assert_eq!((p.style(), p.to_string()), (Style::Regex, "^x".to_string()));
        // exactly two alphanumerics and a colon at index 2
        assert_eq!(
            parse_pattern(b"a-:x", Style::Shell).unwrap().style(),
            Style::Shell
        );
        let p = parse_pattern(b"pp:", Style::Shell).unwrap();
        assert_eq!((p.style(), p.original()), (Style::PathPrefix, &b""[..]));
        let (p, action) = parse_exclude_pattern(b"*.tmp").unwrap();
        assert_eq!(
            (p.style(), action, p.recurse_dir()),
            (Style::FnMatch, Action::ExcludeNoRecurse, false)
        );
        let cmd = |l: &str| parse_inclexcl_command(l.as_bytes(), Style::Shell);
        assert!(matches!(cmd("R /home").unwrap(), PatternCommand::Root(r) if r == b"/home"));
        assert!(matches!(cmd("r/home").unwrap(), PatternCommand::Root(r) if r == b"/home"));
        assert!(matches!(
            cmd("P fm").unwrap(),
            PatternCommand::Style(Style::FnMatch)
        ));
        assert!(matches!(
            cmd("p re").unwrap(),
            PatternCommand::Style(Style::Regex)
        ));
        assert_eq!(
            cmd("P xx").unwrap_err().message,
            "Invalid pattern style: xx"
        );
        assert_eq!(
            cmd("x foo").unwrap_err().message,
            "A pattern/command must start with any of: -, !, +, R, r, P, p"
        );
        assert_eq!(
            cmd("+").unwrap_err().message,
            "A pattern/command must have a value part."
        );
        assert_eq!(
            cmd("-   ").unwrap_err().message,
            "A pattern/command must have a value part."
        );
        assert_eq!(
            cmd("").unwrap_err().message,
            "A pattern/command must not be empty."
        );
        match cmd("-  foo").unwrap() {
            PatternCommand::Rule(p, a) => {
                assert_eq!(
                    (p.original(), a, p.recurse_dir(), p.style()),
                    (&b"foo"[..], Action::Exclude, true, Style::Shell)
                )
            }
            other => panic!("{other:?}"),
        }
        match cmd("!fm:foo").unwrap() {
            PatternCommand::Rule(p, a) => assert_eq!(
                (a, p.recurse_dir(), p.style()),
                (Action::ExcludeNoRecurse, false, Style::FnMatch)
            ),
            other => panic!("{other:?}"),
        }
    }

    fn matcher(args: &[PatternArg]) -> PatternMatcher {
        PatternMatcher::for_create(PatternList::from_args(args).unwrap().rules)
    }

    fn pat(s: &str) -> PatternArg {
        PatternArg::Pattern(s.as_bytes().to_vec())
    }

    fn excl(s: &str) -> PatternArg {
        PatternArg::Exclude(s.as_bytes().to_vec())
    }

    #[test]
    fn first_match_wins_and_recursion() {
        // the verified example of cli.md §5.4
        let m = matcher(&[pat("+data/sub/rand.bin"), pat("-data/sub")]);
        assert_eq!(
            m.match_item(b"data/sub"),
            MatchResult {
                included: false,
                recurse_dir: true
            }
        );
        assert!(m.match_path(b"data/sub/rand.bin"));
        assert_eq!(
            m.match_item(b"data/sub/other"),
            MatchResult {
                included: false,
                recurse_dir: true
            }
        );
        assert!(m.match_path(b"data/x"));
        let m = matcher(&[pat("+data/sub/rand.bin"), pat("!data/sub")]);
        assert_eq!(
            m.match_item(b"data/sub"),
            MatchResult {
                included: false,
                recurse_dir: false
            }
        );
        let m = matcher(&[pat("+data/sub/rand.bin"), excl("data/sub")]);
        assert_eq!(
            m.match_item(b"data/sub"),
            MatchResult {
                included: false,
                recurse_dir: false
            }
        );
        // leading slashes of paths and (non-re) patterns do not matter
        let m = matcher(&[excl("/home/u/x")]);
        assert!(!m.match_path(b"/home/u/x/y"));
        assert!(!m.match_path(b"home/u/x"));
        assert!(m.match_path(b"home/u/xy"));
        // an unmatched directory is recursed into and included
        assert_eq!(
            m.match_item(b"home"),
            MatchResult {
                included: true,
                recurse_dir: true
            }
        );
    }

    #[test]
    fn path_full_is_consulted_first() {
        let m = matcher(&[
            excl("*"),
            pat("+pf:keep/me"),
            pat("-pf:drop"),
            pat("+pf:drop"),
        ]);
        assert!(m.match_path(b"keep/me"));
        assert!(!m.match_path(b"keep/me/not"));
        assert!(!m.match_path(b"keep"));
        // the last pf: rule for a path wins
        assert!(m.match_path(b"drop"));
        let m = matcher(&[pat("!pf:/x/./y/")]);
        assert_eq!(
            m.match_item(b"/x/y"),
            MatchResult {
                included: false,
                recurse_dir: false
            }
        );
    }

    #[test]
    fn patterns_files_and_order() {
        let dir = tempfile::tempdir().unwrap();
        let excludes = dir.path().join("ex");
        std::fs::write(&excludes, "  # comment\n\n*.tmp  \r\nsh:cache/**\n").unwrap();
        let patterns = dir.path().join("pat");
        std::fs::write(
            &patterns,
            "R /data\nP fm\n+ */keep.tmp\n- *.log\np re\n! \\.git$\n",
        )
        .unwrap();
        let list = PatternList::from_args(&[
            PatternArg::PatternsFrom(patterns.clone()),
            PatternArg::ExcludeFrom(excludes.clone()),
            pat("- *.log2"),
        ])
        .unwrap();
        assert_eq!(list.roots, vec![b"/data".to_vec()]);
        let styles: Vec<(Style, Action)> =
            list.rules.iter().map(|(p, a)| (p.style(), *a)).collect();
        assert_eq!(
            styles,
            [
                (Style::FnMatch, Action::Include),
                (Style::FnMatch, Action::Exclude),
                (Style::Regex, Action::ExcludeNoRecurse),
                (Style::FnMatch, Action::ExcludeNoRecurse),
                (Style::Shell, Action::ExcludeNoRecurse),
                // the file's P line does not leak to later --pattern values
                (Style::Shell, Action::Exclude),
            ]
        );
        let m = PatternMatcher::for_create(list.rules);
        assert!(m.match_path(b"a/keep.tmp"));
        assert!(!m.match_path(b"a/other.tmp"));
        assert!(!m.match_path(b"x/a.log"));
        assert!(!m.match_path(b"src/.git"));
        assert!(!m.match_path(b"cache/a/b"));
        assert!(!m.match_path(b"y.log2"));
        assert!(m.match_path(b"src/main.rs"));
        // command-line order decides: an exclude file before an include wins
        std::fs::write(&excludes, "x\n").unwrap();
        let m = matcher(&[PatternArg::ExcludeFrom(excludes.clone()), pat("+x")]);
        assert!(!m.match_path(b"x"));
        let m = matcher(&[pat("+x"), PatternArg::ExcludeFrom(excludes.clone())]);
        assert!(m.match_path(b"x"));
        let err = PatternList::from_args(&[excl("xx:foo")]).unwrap_err();
        assert_eq!(err.message, "invalid parse_exclude_pattern value: 'xx:foo'");
        std::fs::write(&excludes, "xx:foo\n").unwrap();
        let err = PatternList::from_args(&[PatternArg::ExcludeFrom(excludes.clone())]).unwrap_err();
        assert_eq!(err.message, "Unknown pattern style: xx");
        // a P line given with --pattern has no lasting effect
        let list = PatternList::from_args(&[pat("P re"), pat("-a.c")]).unwrap();
        assert_eq!(list.rules[0].0.style(), Style::Shell);
        let missing = dir.path().join("missing");
        let err = PatternList::from_args(&[PatternArg::PatternsFrom(missing.clone())]).unwrap_err();
        assert_eq!(
            err.message,
            format!(
                "Error: [Errno 2] No such file or directory: '{}'",
                missing.display()
            )
        );
        assert!(PatternList::from_args(&[PatternArg::ExcludeFrom(missing)]).is_err());
        std::fs::write(&patterns, "+ a\nbad line\n").unwrap();
        assert!(PatternList::from_args(&[PatternArg::PatternsFrom(patterns)]).is_err());
    }

    #[test]
    fn include_paths_for_extract() {
        let list = PatternList::from_args(&[excl("home/u/junk")]).unwrap();
        let paths = [
            b"home/u".to_vec(),
            b"etc/never".to_vec(),
            b"pf:etc/hosts".to_vec(),
            b"sh:var/*.log".to_vec(),
        ];
        let m = PatternMatcher::build(list.rules, &paths).unwrap();
        assert!(!m.fallback());
        assert!(m.match_path(b"home/u"));
        assert!(m.match_path(b"home/u/docs/a"));
        assert!(!m.match_path(b"home/u/junk/a"));
        assert!(!m.match_path(b"home/user"));
        assert!(m.match_path(b"etc/hosts"));
        assert!(m.match_path(b"var/x.log"));
        assert!(!m.match_path(b"usr"));
        // pf: include paths are never reported; `etc/never` is
        let unmatched: Vec<String> = m
            .unmatched_include_patterns()
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(unmatched, ["etc/never"]);
        // without PATHs everything unmatched is included
        let m = PatternMatcher::build(Vec::new(), &[]).unwrap();
        assert!(m.is_empty());
        assert!(m.match_path(b"anything"));
    }

    #[test]
    fn normpath_like_posixpath() {
        for (input, out) in [
            ("", "."),
            ("/", "/"),
            ("//", "//"),
            ("///a", "/a"),
            ("a/./b/", "a/b"),
            ("a/../..", ".."),
            ("/../a", "/a"),
            ("../../a/..", "../.."),
            ("a//b", "a/b"),
            ("./", "."),
        ] {
            assert_eq!(normpath(input.as_bytes()), out.as_bytes(), "{input}");
        }
    }
}

/// The regex of an archive-name glob (`-a/--glob-archives`): borg's shell pattern, matched
/// against the whole name (`*` does not cross `/`, no braces).
pub fn archive_glob_regex(glob: &str) -> Result<Regex> {
    let units = decode_chars(glob.as_bytes());
    let regex =
        translate_shell(&units).map_err(|e| pattern_error(format!("invalid glob {glob}: {e}")))?;
    compile(&regex, glob.as_bytes())
}

#[cfg(test)]
mod archive_glob_tests {
    use super::archive_glob_regex;

    #[test]
    fn archive_globs_match_whole_names() {
        let re = archive_glob_regex("host-*").unwrap();
        assert!(re.is_match(b"host-2024"));
        assert!(!re.is_match(b"xhost-2024"));
        assert!(!re.is_match(b"host-a/b"));
        assert!(archive_glob_regex("a?c").unwrap().is_match(b"abc"));
        assert!(!archive_glob_regex("a?c").unwrap().is_match(b"abcd"));
    }
}
