//! INI files with Python `configparser` semantics (no interpolation), as borg reads and writes
//! its repository `config` (repository-format.md §1.2) and cache config; plus borg's number
//! parsers for config values.
//!
//! Reading: `[section]` headers, `key = value` or `key: value` (keys lowercased, both sides
//! stripped), full-line comments starting with `#` or `;`, continuation lines indented deeper
//! than their key line (joined with `\n`; empty lines inside a value are kept, trailing ones
//! dropped), duplicate sections/options are errors. Writing: `key = value`, continuation lines
//! prefixed with a TAB, an empty line after each section.

use std::fmt::Write as _;

const DEFAULT_SECTION: &str = "DEFAULT";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Section {
    name: String,
    options: Vec<(String, String)>,
}

impl Section {
    fn get(&self, key: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A parsed INI document; sections and options keep their order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ini {
    defaults: Section,
    sections: Vec<Section>,
}

impl Ini {
    pub fn new() -> Ini {
        Ini::default()
    }

    /// Parse text; the error is a configparser-like description.
    pub fn parse(text: &str) -> Result<Ini, String> {
        let mut ini = Ini::new();
        // (section index or None for DEFAULT, option name) of the value being continued
        let mut cur_section: Option<Option<usize>> = None;
        let mut cur_option: Option<String> = None;
        let mut values: Vec<Vec<Vec<String>>> = Vec::new(); // per section, per option: lines
        let mut default_values: Vec<Vec<String>> = Vec::new();
        let mut indent_level = 0usize;
        let mut seen_sections: Vec<String> = Vec::new();
        for (lineno, raw) in text.split_inclusive('\n').enumerate() {
            let line = raw.trim_end_matches(['\n', '\r']);
            let lineno = lineno + 1;
            let stripped = line.trim();
            let is_comment = stripped.starts_with('#') || stripped.starts_with(';');
            if stripped.is_empty() || is_comment {
                if !is_comment {
                    if let (Some(sec), Some(opt)) = (cur_section, cur_option.as_ref()) {
                        let lines = option_lines(&ini, &mut values, &mut default_values, sec, opt);
                        lines.push(String::new());
                    }
                }
                continue;
            }
            let cur_indent = line.len() - line.trim_start().len();
            if cur_section.is_some() && cur_option.is_some() && cur_indent > indent_level {
                let (sec, opt) = (
                    cur_section.unwrap_or(None),
                    cur_option.clone().unwrap_or_default(),
                );
                option_lines(&ini, &mut values, &mut default_values, sec, &opt)
                    .push(stripped.to_string());
                continue;
            }
            indent_level = cur_indent;
            if let Some(name) = section_header(stripped) {
                if seen_sections.iter().any(|s| s == name) {
                    return Err(format!(
                        "While reading: section {name:?} already exists (line {lineno})"
                    ));
                }
                seen_sections.push(name.to_string());
                if name == DEFAULT_SECTION {
                    cur_section = Some(None);
                } else {
                    ini.sections.push(Section {
                        name: name.to_string(),
                        options: Vec::new(),
                    });
                    values.push(Vec::new());
                    cur_section = Some(Some(ini.sections.len() - 1));
                }
                cur_option = None;
                continue;
            }
            let Some(sec) = cur_section else {
                return Err(format!(
                    "File contains no section headers. line: {lineno}, {line:?}"
                ));
            };
            let Some((name, value)) = split_option(stripped) else {
                return Err(format!(
                    "Source contains parsing errors: [line {lineno:2}]: {line:?}"
                ));
            };
            let name = name.to_lowercase();
            let section = match sec {
                None => &mut ini.defaults,
                Some(i) => &mut ini.sections[i],
            };
            if section.get(&name).is_some() {
                return Err(format!(
                    "While reading: option {name:?} in section {:?} already exists (line {lineno})",
                    section.name
                ));
            }
            section.options.push((name.clone(), String::new()));
            match sec {
                None => default_values.push(vec![value.to_string()]),
                Some(i) => values[i].push(vec![value.to_string()]),
            }
            cur_option = Some(name);
        }
        // join the collected lines of every value
        for (i, sec) in ini.sections.iter_mut().enumerate() {
            for (j, opt) in sec.options.iter_mut().enumerate() {
                opt.1 = values[i][j].join("\n").trim_end().to_string();
            }
        }
        for (j, opt) in ini.defaults.options.iter_mut().enumerate() {
            opt.1 = default_values[j].join("\n").trim_end().to_string();
        }
        ini.defaults.name = DEFAULT_SECTION.to_string();
        Ok(ini)
    }

    /// Serialize as configparser writes.
    pub fn write(&self) -> String {
        let mut out = String::new();
        if !self.defaults.options.is_empty() {
            write_section(&mut out, DEFAULT_SECTION, &self.defaults.options);
        }
        for s in &self.sections {
            write_section(&mut out, &s.name, &s.options);
        }
        out
    }

    pub fn sections(&self) -> Vec<&str> {
        self.sections.iter().map(|s| s.name.as_str()).collect()
    }

    pub fn has_section(&self, name: &str) -> bool {
        self.sections.iter().any(|s| s.name == name)
    }

    pub fn add_section(&mut self, name: &str) {
        if !self.has_section(name) {
            self.sections.push(Section {
                name: name.to_string(),
                options: Vec::new(),
            });
        }
    }

    pub fn remove_section(&mut self, name: &str) -> bool {
        let before = self.sections.len();
        self.sections.retain(|s| s.name != name);
        before != self.sections.len()
    }

    /// Value of `key` in `section` (falling back to `[DEFAULT]`), keys case-insensitive.
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        let key = key.to_lowercase();
        if section == DEFAULT_SECTION {
            return self.defaults.get(&key);
        }
        let s = self.sections.iter().find(|s| s.name == section)?;
        s.get(&key).or_else(|| self.defaults.get(&key))
    }

    /// Option names of a section including the `[DEFAULT]` ones (configparser's `options`);
    /// `None` if there is no such section.
    pub fn options(&self, section: &str) -> Option<Vec<&str>> {
        let s = self.sections.iter().find(|s| s.name == section)?;
        let mut names: Vec<&str> = s.options.iter().map(|(k, _)| k.as_str()).collect();
        for (k, _) in &self.defaults.options {
            if !names.contains(&k.as_str()) {
                names.push(k);
            }
        }
        Some(names)
    }

    /// Set a value (adds the section if needed).
    pub fn set(&mut self, section: &str, key: &str, value: &str) {
        self.add_section(section);
        let key = key.to_lowercase();
        if let Some(s) = self.sections.iter_mut().find(|s| s.name == section) {
            match s.options.iter_mut().find(|(k, _)| *k == key) {
                Some(opt) => opt.1 = value.to_string(),
                None => s.options.push((key, value.to_string())),
            }
        }
    }

    /// Remove an option; returns whether it existed.
    pub fn remove(&mut self, section: &str, key: &str) -> bool {
        let key = key.to_lowercase();
        match self.sections.iter_mut().find(|s| s.name == section) {
            Some(s) => {
                let before = s.options.len();
                s.options.retain(|(k, _)| *k != key);
                before != s.options.len()
            }
            None => false,
        }
    }

    /// Options of a section in order (without `[DEFAULT]` ones).
    pub fn items(&self, section: &str) -> Vec<(&str, &str)> {
        self.sections
            .iter()
            .find(|s| s.name == section)
            .map(|s| {
                s.options
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn option_lines<'a>(
    ini: &Ini,
    values: &'a mut [Vec<Vec<String>>],
    defaults: &'a mut [Vec<String>],
    sec: Option<usize>,
    opt: &str,
) -> &'a mut Vec<String> {
    match sec {
        None => {
            let j = ini
                .defaults
                .options
                .iter()
                .position(|(k, _)| k == opt)
                .unwrap_or(0);
            &mut defaults[j]
        }
        Some(i) => {
            let j = ini.sections[i]
                .options
                .iter()
                .position(|(k, _)| k == opt)
                .unwrap_or(0);
            &mut values[i][j]
        }
    }
}

/// `[name]` at the start of a stripped line (configparser's greedy `\[(?P<header>.+)\]`).
fn section_header(stripped: &str) -> Option<&str> {
    let rest = stripped.strip_prefix('[')?;
    let end = rest.rfind(']')?;
    let name = &rest[..end];
    (!name.is_empty()).then_some(name)
}

/// `name = value` / `name: value`: split at the first delimiter; the name must not be empty.
fn split_option(stripped: &str) -> Option<(&str, &str)> {
    let pos = stripped.find(['=', ':'])?;
    let name = stripped[..pos].trim_end();
    if name.is_empty() {
        return None;
    }
    Some((name, stripped[pos + 1..].trim()))
}

fn write_section(out: &mut String, name: &str, options: &[(String, String)]) {
    let _ = writeln!(out, "[{name}]");
    for (k, v) in options {
        let _ = writeln!(out, "{k} = {}", v.replace('\n', "\n\t"));
    }
    out.push('\n');
}

pub use crate::python::parse_int;

/// configparser's boolean rule: 1/yes/true/on, 0/no/false/off (case-insensitive).
pub fn parse_bool(text: &str) -> Option<bool> {
    match text.to_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Some(true),
        "0" | "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

/// borg's `parse_file_size`: a decimal number (fractions allowed) with an optional suffix
/// K, M, G, T, P meaning powers of 1000; the result is truncated toward zero.
pub fn parse_file_size(text: &str) -> Option<i64> {
    let (number, factor) = match text.chars().last()? {
        'K' => (&text[..text.len() - 1], 1e3),
        'M' => (&text[..text.len() - 1], 1e6),
        'G' => (&text[..text.len() - 1], 1e9),
        'T' => (&text[..text.len() - 1], 1e12),
        'P' => (&text[..text.len() - 1], 1e15),
        _ => (text, 1.0),
    };
    let number = number.trim();
    if number.starts_with('_') || number.ends_with('_') || number.contains("__") {
        return None;
    }
    let clean: String = number.chars().filter(|&c| c != '_').collect();
    if clean.is_empty()
        || clean
            .chars()
            .any(|c| c.is_alphabetic() && !matches!(c, 'e' | 'E'))
    {
        // python's float() also takes inf/nan, which int() then rejects
        return None;
    }
    if factor == 1.0 {
        if let Some(i) = parse_int(&clean) {
            return Some(i);
        }
    }
    let v: f64 = clean.parse().ok()?;
    let r = (v * factor).trunc();
    if !r.is_finite() || r.abs() >= 9.2e18 {
        return None;
    }
    Some(r as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPOKEY_CONFIG: &str = "[repository]\nversion = 1\nsegments_per_dir = 1000\n\
        max_segment_size = 524288000\nappend_only = 0\nstorage_quota = 0\n\
        additional_free_space = 0\nid = db70\nkey = hqlh\n\tZFCP\n\tr8cb\n\n";

    #[test]
    fn parses_and_writes_borg_config_identically() {
        let ini = Ini::parse(REPOKEY_CONFIG).unwrap();
        assert_eq!(ini.sections(), vec!["repository"]);
        assert_eq!(ini.get("repository", "key"), Some("hqlh\nZFCP\nr8cb"));
        assert_eq!(ini.get("repository", "VERSION"), Some("1"));
        assert_eq!(ini.write(), REPOKEY_CONFIG);
    }

    #[test]
    fn configparser_details() {
        let text = "# comment\n[s]\nA : x = y\n  ; not a comment line but continuation? no: comment\nb=\n   cont\n\n   more\n\n\n[t]\nc = 1\n";
        let ini = Ini::parse(text).unwrap();
        assert_eq!(ini.get("s", "a"), Some("x = y"));
        assert_eq!(ini.get("s", "b"), Some("\ncont\n\nmore"));
        assert_eq!(ini.get("t", "c"), Some("1"));
        assert!(Ini::parse("x = 1\n").is_err());
        assert!(Ini::parse("[s]\nnovalue\n").is_err());
        assert!(Ini::parse("[s]\na=1\na=2\n").is_err());
        assert!(Ini::parse("[s]\n[s]\n").is_err());
        let d = Ini::parse("[DEFAULT]\nz = 9\n[s]\ny = 1\n").unwrap();
        assert_eq!(d.get("s", "z"), Some("9"));
        assert_eq!(d.get("DEFAULT", "z"), Some("9"));
        assert_eq!(d.get("DEFAULT", "y"), None);
        assert_eq!(d.options("s"), Some(vec!["y", "z"]));
        assert_eq!(d.options("t"), None);
        let mut w = Ini::new();
        w.set("repository", "key", "a\nb");
        w.set("repository", "id", "x");
        assert_eq!(w.write(), "[repository]\nkey = a\n\tb\nid = x\n\n");
        assert!(w.remove("repository", "id"));
        assert!(!w.remove("repository", "id"));
    }

    #[test]
    fn numbers_like_python() {
        assert_eq!(parse_int(" 12 "), Some(12));
        assert_eq!(parse_int("1_000"), Some(1000));
        assert_eq!(parse_int("-3"), Some(-3));
        assert_eq!(parse_int("1.0"), None);
        assert_eq!(parse_int(""), None);
        assert_eq!(parse_bool("Yes"), Some(true));
        assert_eq!(parse_bool("off"), Some(false));
        assert_eq!(parse_bool("2"), None);
        assert_eq!(parse_file_size("524288000"), Some(524288000));
        assert_eq!(parse_file_size("1.5G"), Some(1_500_000_000));
        assert_eq!(parse_file_size("10M"), Some(10_000_000));
        assert_eq!(parse_file_size("2T"), Some(2_000_000_000_000));
        assert_eq!(parse_file_size("0.5K"), Some(500));
        assert_eq!(parse_file_size("1k"), None);
        assert_eq!(parse_file_size(""), None);
        assert_eq!(parse_file_size("inf"), None);
        assert_eq!(parse_file_size("1e3"), Some(1000));
    }
}
