//! `borg config` on a parsed config file (borg 1.2.4's `do_config`): which names may be set or
//! deleted and which values they take, reading a value the way configparser words a miss, and
//! the `--list` view of a repository config. Opening, locking and saving the file is the
//! caller's business (the repository `config` is saved with `local::save_config`, the cache
//! `config` with `local::save_file`).

use std::fs;
use std::path::Path;

use super::config::{parse_file_size, parse_int, Ini};
use super::local::{save_file, LocalRepository};
use super::lock::os_error_text;
use super::segments::MAX_SEGMENT_SIZE_LIMIT;
use crate::errors::{Error, ErrorKind, Result};
use crate::location::Location;
use crate::python::repr_str;

/// The file `borg config` works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigFile {
    /// `<repo>/config`.
    Repository,
    /// `<cache dir>/<repo id>/config` (`--cache`).
    Cache,
}

impl ConfigFile {
    /// The section of a NAME given without one.
    pub fn default_section(self) -> &'static str {
        match self {
            ConfigFile::Repository => "repository",
            ConfigFile::Cache => "cache",
        }
    }
}

/// One `borg config` invocation, decided from its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigRequest {
    /// `-l`: the repository section with defaults filled in.
    List,
    Get {
        section: String,
        name: String,
    },
    Set {
        section: String,
        name: String,
        value: String,
    },
    Delete {
        section: String,
        name: String,
    },
}

impl ConfigRequest {
    /// borg's dispatch: `-d` wins over `-l`, `-l` over a value; an empty VALUE means "get".
    /// No NAME (without `-l`) is an error.
    pub fn from_args(
        file: ConfigFile,
        list: bool,
        delete: bool,
        name: Option<&str>,
        value: Option<&str>,
    ) -> Result<ConfigRequest> {
        if list && !delete {
            return Ok(ConfigRequest::List);
        }
        let Some(name) = name else {
            // borg 1.2 logs the bare text (rc 2); 1.4 made it a CommandError.
            return Err(Error {
                kind: ErrorKind::CommandError,
                message: "No config key name was provided.".into(),
            });
        };
        let (section, name) = split_name(name, file);
        Ok(match value {
            _ if delete => ConfigRequest::Delete { section, name },
            Some(v) if !v.is_empty() => ConfigRequest::Set {
                section,
                name,
                value: v.to_string(),
            },
            _ => ConfigRequest::Get { section, name },
        })
    }
}

/// What became of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigOutcome {
    /// Text for stdout (a value, or the `--list` view), newline-terminated.
    Print(String),
    /// The name is not there: configparser's message for stderr (borg 1.2: rc 1).
    Missing(String),
    /// The config was changed and must be saved.
    Changed,
}

/// `section.name` when NAME has exactly one dot, else NAME in the file's default section.
pub fn split_name(name: &str, file: ConfigFile) -> (String, String) {
    let mut parts = name.split('.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(section), Some(option), None) => (section.to_string(), option.to_string()),
        _ => (file.default_section().to_string(), name.to_string()),
    }
}

/// Carry out `request` on `ini` (validating names and values as borg does).
pub fn apply(ini: &mut Ini, file: ConfigFile, request: &ConfigRequest) -> Result<ConfigOutcome> {
    match request {
        ConfigRequest::List => Ok(ConfigOutcome::Print(list_repository_config(ini))),
        ConfigRequest::Get { section, name } => Ok(match get_value(ini, section, name) {
            Ok(v) => ConfigOutcome::Print(format!("{v}\n")),
            Err(why) => ConfigOutcome::Missing(why),
        }),
        ConfigRequest::Set {
            section,
            name,
            value,
        } => {
            check_edit(file, section, name, Some(value))?;
            ini.set(section, name, value);
            Ok(ConfigOutcome::Changed)
        }
        ConfigRequest::Delete { section, name } => {
            check_edit(file, section, name, None)?;
            if !ini.has_section(section) {
                return Err(Error::exception(format!(
                    "configparser.NoSectionError: No section: {}",
                    repr_str(section, false)
                )));
            }
            ini.remove(section, name);
            if ini.options(section).is_some_and(|o| o.is_empty()) {
                ini.remove_section(section);
            }
            Ok(ConfigOutcome::Changed)
        }
    }
}

/// `borg config` on the repository's `config`: apply `request`, saving the file (atomically,
/// old copy securely erased) if it changed.
pub fn edit_repository_config(
    repo: &LocalRepository,
    request: &ConfigRequest,
) -> Result<ConfigOutcome> {
    let mut ini = repo.config();
    let outcome = apply(&mut ini, ConfigFile::Repository, request)?;
    if outcome == ConfigOutcome::Changed {
        repo.replace_config(ini)?;
    }
    Ok(outcome)
}

/// `borg config --cache` on `<cache_dir>/config`, as borg's `CacheConfig.load` presents it:
/// reread from disk, `previous_location` set to the current `location`. Call it with the
/// cache open (its lock held); a change is saved atomically.
pub fn edit_cache_config(
    cache_dir: &Path,
    location: &str,
    request: &ConfigRequest,
) -> Result<ConfigOutcome> {
    let path = cache_dir.join("config");
    let text = fs::read(&path).map_err(|e| Error::exception(os_error_text(&e, &path)))?;
    let mut ini = Ini::parse(&String::from_utf8_lossy(&text))
        .map_err(|e| Error::exception(format!("{}: {e}", path.display())))?;
    ini.set("cache", "previous_location", location);
    let outcome = apply(&mut ini, ConfigFile::Cache, request)?;
    if outcome == ConfigOutcome::Changed {
        save_file(&path, ini.write().as_bytes())?;
    }
    Ok(outcome)
}

/// configparser's `get`: the value, or its NoSectionError / NoOptionError text.
pub fn get_value<'a>(
    ini: &'a Ini,
    section: &str,
    name: &str,
) -> std::result::Result<&'a str, String> {
    if let Some(v) = ini.get(section, name) {
        return Ok(v);
    }
    if section != "DEFAULT" && !ini.has_section(section) {
        return Err(format!("No section: {}", repr_str(section, false)));
    }
    Err(format!(
        "No option {} in section: {}",
        repr_str(&name.to_lowercase(), false),
        repr_str(section, false)
    ))
}

/// borg's ValueError for a refused name or value (shown as a "Local Exception").
fn value_error(why: &str) -> Error {
    Error::exception(format!("ValueError: {why}"))
}

/// Whether `name` in `section` may be changed in `file`, and (when setting) whether `value`
/// is acceptable; borg 1.2.4's `repo_validate` / `cache_validate`.
pub fn check_edit(file: ConfigFile, section: &str, name: &str, value: Option<&str>) -> Result<()> {
    if section != file.default_section() {
        return Err(value_error("Invalid section"));
    }
    match file {
        ConfigFile::Repository => check_repository_value(name, value),
        ConfigFile::Cache => check_cache_value(name, value),
    }
}

fn check_repository_value(name: &str, value: Option<&str>) -> Result<()> {
    match name {
        "segments_per_dir" | "last_segment_checked" => {
            if value.is_some_and(|v| parse_int(v).is_none()) {
                return Err(value_error("Invalid value"));
            }
        }
        "max_segment_size" | "additional_free_space" | "storage_quota" => {
            let Some(v) = value else { return Ok(()) };
            let size = parse_file_size(v).ok_or_else(|| value_error("Invalid value"))?;
            // borg 1.2.4 refuses a quota below 10M, 0 included (1.4 allows 0)
            if name == "storage_quota" && size < 10_000_000 {
                return Err(value_error("Invalid value: storage_quota < 10M"));
            }
            if name == "max_segment_size" && size >= MAX_SEGMENT_SIZE_LIMIT as i64 {
                return Err(value_error(&format!(
                    "Invalid value: max_segment_size >= {MAX_SEGMENT_SIZE_LIMIT}"
                )));
            }
        }
        "append_only" => {
            if value.is_some_and(|v| v != "0" && v != "1") {
                return Err(value_error("Invalid value"));
            }
        }
        "id" => {
            let ok = value.is_none_or(|v| hex::decode(v).is_ok_and(|b| b.len() == 32));
            if !ok {
                return Err(value_error("Invalid value, must be 64 hex digits"));
            }
        }
        _ => return Err(value_error("Invalid name")),
    }
    Ok(())
}

fn check_cache_value(name: &str, value: Option<&str>) -> Result<()> {
    if name != "previous_location" {
        return Err(value_error("Invalid name"));
    }
    if let Some(v) = value {
        Location::parse(v).map_err(|e| match e.kind {
            // borg's Location raises ValueError; placeholder errors keep their class
            ErrorKind::Error => value_error(&e.message),
            _ => e,
        })?;
    }
    Ok(())
}

/// The `--list` view: the repository section's known keys in borg's order, then
/// `last_segment_checked` if present. A missing key shows as `False` (borg looks keys up
/// with `fallback=False`, so its defaults table is never used); a config without a
/// `[repository]` section (the cache config) shows all of them so.
pub fn list_repository_config(ini: &Ini) -> String {
    let mut out = String::from("[repository]\n");
    for key in [
        "version",
        "segments_per_dir",
        "max_segment_size",
        "storage_quota",
        "additional_free_space",
        "append_only",
        "id",
    ] {
        let value = ini.get("repository", key).unwrap_or("False");
        out.push_str(&format!("{key} = {value}\n"));
    }
    if let Some(v) = ini.get("repository", "last_segment_checked") {
        out.push_str(&format!("last_segment_checked = {v}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const INIT_CONFIG: &str = "[repository]\nversion = 1\nsegments_per_dir = 1000\n\
        max_segment_size = 524288000\nappend_only = 0\nstorage_quota = 0\n\
        additional_free_space = 0\nid = cce705a473c464a1fb14c864b7ecdb7129ba3523511e8f4d0f42ef46a2f1eaad\n\n";

    fn request(list: bool, delete: bool, name: Option<&str>, value: Option<&str>) -> ConfigRequest {
        ConfigRequest::from_args(ConfigFile::Repository, list, delete, name, value).unwrap()
    }

    fn exception_text(r: Result<ConfigOutcome>) -> String {
        let e = r.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Exception);
        e.message
    }

    #[test]
    fn names_split_at_exactly_one_dot() {
        let repo = ConfigFile::Repository;
        assert_eq!(
            split_name("append_only", repo),
            ("repository".into(), "append_only".into())
        );
        assert_eq!(split_name("cache.x", repo), ("cache".into(), "x".into()));
        assert_eq!(
            split_name("a.b.c", repo),
            ("repository".into(), "a.b.c".into())
        );
        assert_eq!(
            split_name("previous_location", ConfigFile::Cache),
            ("cache".into(), "previous_location".into())
        );
    }

    #[test]
    fn arguments_decide_the_request() {
        assert_eq!(request(true, false, None, None), ConfigRequest::List);
        assert_eq!(
            request(false, true, Some("id"), Some("x")),
            ConfigRequest::Delete {
                section: "repository".into(),
                name: "id".into()
            }
        );
        // an empty value reads, as borg's `elif args.value`
        assert!(matches!(
            request(false, false, Some("id"), Some("")),
            ConfigRequest::Get { .. }
        ));
        let e = ConfigRequest::from_args(ConfigFile::Cache, false, false, None, None).unwrap_err();
        assert_eq!(e.kind, ErrorKind::CommandError);
        assert_eq!(e.message, "No config key name was provided.");
    }

    #[test]
    fn get_words_misses_like_configparser() {
        let mut ini = Ini::parse(INIT_CONFIG).unwrap();
        let repo = ConfigFile::Repository;
        assert_eq!(
            apply(
                &mut ini,
                repo,
                &request(false, false, Some("APPEND_ONLY"), None)
            )
            .unwrap(),
            ConfigOutcome::Print("0\n".into())
        );
        assert_eq!(
            apply(&mut ini, repo, &request(false, false, Some("KEY"), None)).unwrap(),
            ConfigOutcome::Missing("No option 'key' in section: 'repository'".into())
        );
        assert_eq!(
            apply(
                &mut ini,
                repo,
                &request(false, false, Some("nosec.foo"), None)
            )
            .unwrap(),
            ConfigOutcome::Missing("No section: 'nosec'".into())
        );
        assert_eq!(
            apply(
                &mut ini,
                repo,
                &request(false, false, Some("DEFAULT.foo"), None)
            )
            .unwrap(),
            ConfigOutcome::Missing("No option 'foo' in section: 'DEFAULT'".into())
        );
    }

    #[test]
    fn set_validates_names_and_values_as_borg_124() {
        let repo = ConfigFile::Repository;
        let set = |name: &str, value: &str| {
            let mut ini = Ini::parse(INIT_CONFIG).unwrap();
            apply(
                &mut ini,
                repo,
                &request(false, false, Some(name), Some(value)),
            )
            .map(|o| {
                assert_eq!(o, ConfigOutcome::Changed);
                ini
            })
        };
        let ini = set("append_only", "1").unwrap();
        assert_eq!(ini.get("repository", "append_only"), Some("1"));
        assert!(ini.write().contains("\nappend_only = 1\n"));
        assert!(set("storage_quota", "10M").is_ok());
        assert!(set("max_segment_size", "1G").is_ok());
        assert!(set("segments_per_dir", " 1_000 ").is_ok());
        let ini = set("last_segment_checked", "7").unwrap();
        assert!(ini.write().ends_with("last_segment_checked = 7\n\n"));
        assert!(set("id", &"AB".repeat(32)).is_ok());
        for (name, value, why) in [
            ("APPEND_ONLY", "1", "ValueError: Invalid name"),
            ("version", "2", "ValueError: Invalid name"),
            ("key", "x", "ValueError: Invalid name"),
            ("cache.append_only", "1", "ValueError: Invalid section"),
            ("append_only", "2", "ValueError: Invalid value"),
            ("append_only", "true", "ValueError: Invalid value"),
            ("segments_per_dir", "x", "ValueError: Invalid value"),
            ("storage_quota", "1k", "ValueError: Invalid value"),
            (
                "storage_quota",
                "5M",
                "ValueError: Invalid value: storage_quota < 10M",
            ),
            (
                "storage_quota",
                "0",
                "ValueError: Invalid value: storage_quota < 10M",
            ),
            (
                "max_segment_size",
                "5G",
                "ValueError: Invalid value: max_segment_size >= 4273995776",
            ),
            (
                "id",
                "abc",
                "ValueError: Invalid value, must be 64 hex digits",
            ),
            (
                "id",
                "zz",
                "ValueError: Invalid value, must be 64 hex digits",
            ),
        ] {
            assert_eq!(
                exception_text(set(name, value).map(|_| ConfigOutcome::Changed)),
                why,
                "{name} {value}"
            );
        }
    }

    #[test]
    fn delete_validates_the_name_only() {
        let repo = ConfigFile::Repository;
        let mut ini = Ini::parse(INIT_CONFIG).unwrap();
        let del =
            |ini: &mut Ini, name: &str| apply(ini, repo, &request(false, true, Some(name), None));
        assert_eq!(
            del(&mut ini, "storage_quota").unwrap(),
            ConfigOutcome::Changed
        );
        assert_eq!(ini.get("repository", "storage_quota"), None);
        // absent: still a (no-op) change
        assert_eq!(
            del(&mut ini, "storage_quota").unwrap(),
            ConfigOutcome::Changed
        );
        assert_eq!(
            exception_text(del(&mut ini, "version")),
            "ValueError: Invalid name"
        );
        // a section left empty goes away
        let mut ini = Ini::parse("[repository]\nid = 1\n").unwrap();
        del(&mut ini, "id").unwrap();
        assert_eq!(ini.write(), "");
    }

    #[test]
    fn cache_accepts_previous_location_only() {
        let cache = ConfigFile::Cache;
        let mut ini =
            Ini::parse("[cache]\nversion = 1\nmanifest = 00\n\n[integrity]\nmanifest = 00\n\n")
                .unwrap();
        let req = |name: &str, value: Option<&str>| {
            ConfigRequest::from_args(cache, false, false, Some(name), value).unwrap()
        };
        assert_eq!(
            apply(
                &mut ini,
                cache,
                &req("previous_location", Some("ssh://u@h:22/x"))
            )
            .unwrap(),
            ConfigOutcome::Changed
        );
        assert_eq!(
            apply(&mut ini, cache, &req("integrity.manifest", None)).unwrap(),
            ConfigOutcome::Print("00\n".into())
        );
        assert_eq!(
            exception_text(apply(
                &mut ini,
                cache,
                &req("previous_location", Some("::"))
            )),
            "ValueError: Invalid location format: \"::\""
        );
        assert_eq!(
            exception_text(apply(&mut ini, cache, &req("manifest", Some("00")))),
            "ValueError: Invalid name"
        );
        assert_eq!(
            exception_text(apply(
                &mut ini,
                cache,
                &req("repository.append_only", Some("1"))
            )),
            "ValueError: Invalid section"
        );
    }

    #[test]
    fn repository_config_is_saved_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("repo");
        LocalRepository::create(&path, false, 0, false).unwrap();
        let repo = LocalRepository::open(&path, true, 1.0, true, false).unwrap();
        let set = request(false, false, Some("append_only"), Some("1"));
        assert_eq!(
            edit_repository_config(&repo, &set).unwrap(),
            ConfigOutcome::Changed
        );
        let get = request(false, false, Some("append_only"), None);
        assert_eq!(
            edit_repository_config(&repo, &get).unwrap(),
            ConfigOutcome::Print("1\n".into())
        );
        drop(repo);
        let reopened = LocalRepository::open(&path, false, 1.0, true, false).unwrap();
        assert!(reopened.settings().append_only);
        // the old copy is erased, no temporary file is left
        let leftovers: Vec<String> = fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("config") && n != "config")
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn cache_config_shows_the_current_location() {
        let dir = tempfile::tempdir().unwrap();
        let text = "[cache]\nversion = 1\nmanifest = 00\nprevious_location = /old\n\n\
                    [integrity]\nmanifest = 00\n\n";
        fs::write(dir.path().join("config"), text).unwrap();
        let req = |name: &str, value: Option<&str>, delete: bool| {
            ConfigRequest::from_args(ConfigFile::Cache, false, delete, Some(name), value).unwrap()
        };
        let get = req("previous_location", None, false);
        assert_eq!(
            edit_cache_config(dir.path(), "/now", &get).unwrap(),
            ConfigOutcome::Print("/now\n".into())
        );
        // reading does not write
        assert_eq!(fs::read_to_string(dir.path().join("config")).unwrap(), text);
        let set = req("previous_location", Some("ssh://h/x"), false);
        edit_cache_config(dir.path(), "/now", &set).unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("config")).unwrap(),
            text.replace("/old", "ssh://h/x")
        );
        edit_cache_config(dir.path(), "/now", &req("previous_location", None, true)).unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("config")).unwrap(),
            text.replace("previous_location = /old\n", "")
        );
        let missing = edit_cache_config(dir.path().join("nope").as_path(), "/now", &get);
        assert_eq!(missing.unwrap_err().kind, ErrorKind::Exception);
    }

    #[test]
    fn list_shows_false_for_missing_keys() {
        let mut ini = Ini::parse(INIT_CONFIG).unwrap();
        let shown = list_repository_config(&ini);
        assert_eq!(
            shown,
            "[repository]\nversion = 1\nsegments_per_dir = 1000\nmax_segment_size = 524288000\n\
             storage_quota = 0\nadditional_free_space = 0\nappend_only = 0\n\
             id = cce705a473c464a1fb14c864b7ecdb7129ba3523511e8f4d0f42ef46a2f1eaad\n"
        );
        ini.remove("repository", "additional_free_space");
        ini.set("repository", "last_segment_checked", "3");
        let shown = list_repository_config(&ini);
        assert!(shown.contains("\nadditional_free_space = False\n"));
        assert!(shown.ends_with("\nlast_segment_checked = 3\n"));
        let cache = Ini::parse("[cache]\nversion = 1\n").unwrap();
        assert_eq!(
            list_repository_config(&cache),
            "[repository]\nversion = False\nsegments_per_dir = False\nmax_segment_size = False\n\
             storage_quota = False\nadditional_free_space = False\nappend_only = False\nid = False\n"
        );
    }
}
