//! What a frontend sees of a run: the `--json` documents' shapes and the `--log-json` stderr
//! stream, reduced to what must agree between borg and rborg (cli.md §10, §11).

use std::collections::BTreeMap;

use serde_json::Value;

/// JSON type name of a value as a frontend would check it.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// How [`compare_json`] treats the two documents.
pub struct JsonRules<'a> {
    /// Keys whose values must be equal (not only of the same type), at any depth.
    pub exact: &'a [&'a str],
    /// Keys rborg may have that borg 1.2 has not (1.4 additions such as `cwd`, `path_b64`).
    pub rborg_extra: &'a [&'a str],
}

/// Differences between borg's and rborg's JSON: missing or extra keys, other value types,
/// other array lengths, other values of `exact` keys. Empty when they agree.
pub fn compare_json(borg: &Value, rborg: &Value, rules: &JsonRules) -> Vec<String> {
    let mut diffs = Vec::new();
    compare_at(borg, rborg, rules, "$", &mut diffs);
    diffs
}

fn compare_at(b: &Value, r: &Value, rules: &JsonRules, at: &str, diffs: &mut Vec<String>) {
    match (b, r) {
        (Value::Object(bm), Value::Object(rm)) => {
            for (k, bv) in bm {
                let here = format!("{at}.{k}");
                match rm.get(k) {
                    None => diffs.push(format!("{here}: missing in rborg")),
                    Some(rv)
                        if rules.exact.contains(&k.as_str()) && !bv.is_object() && bv != rv =>
                    {
                        diffs.push(format!("{here}: borg {bv} rborg {rv}"))
                    }
                    Some(rv) => compare_at(bv, rv, rules, &here, diffs),
                }
            }
            for k in rm.keys() {
                if !bm.contains_key(k) && !rules.rborg_extra.contains(&k.as_str()) {
                    diffs.push(format!("{at}.{k}: only in rborg"));
                }
            }
        }
        (Value::Array(ba), Value::Array(ra)) => {
            if ba.len() != ra.len() {
                diffs.push(format!("{at}: {} vs {} elements", ba.len(), ra.len()));
            }
            for (i, (bv, rv)) in ba.iter().zip(ra).enumerate() {
                compare_at(bv, rv, rules, &format!("{at}[{i}]"), diffs);
            }
        }
        _ if type_name(b) != type_name(r) => diffs.push(format!(
            "{at}: borg {} ({b}) rborg {} ({r})",
            type_name(b),
            type_name(r)
        )),
        _ => {}
    }
}

/// Assert [`compare_json`] finds nothing.
pub fn assert_same_json(what: &str, borg: &Value, rborg: &Value, rules: &JsonRules) {
    let diffs = compare_json(borg, rborg, rules);
    assert!(
        diffs.is_empty(),
        "{what}: rborg's JSON differs from borg's:\n  {}\nborg:  {borg}\nrborg: {rborg}",
        diffs.join("\n  ")
    );
}

/// Parse a `--json` document (stdout).
pub fn json_doc(stdout: &[u8]) -> Value {
    serde_json::from_slice(stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(stdout)))
}

/// Parse `--json-lines` output (stdout).
pub fn json_lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// One progress operation: its type, msgid and records in order, each record reduced to
/// (finished, sorted keys); runs of equal records are collapsed (their number depends on
/// timing and on the repository's segment count).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Operation {
    pub kind: String,
    pub msgid: Option<String>,
    pub records: Vec<(bool, Vec<String>)>,
}

/// A `log_message` as compared: level, logger name, msgid.
pub type LogRecord = (String, String, Option<String>);

/// The `--log-json` stream of a run, reduced to what must agree between implementations.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LogStream {
    /// `log_message` records in order.
    pub logs: Vec<LogRecord>,
    /// Full `log_message` objects (same order as `logs`), for message checks.
    pub log_objects: Vec<Value>,
    /// Progress operations, sorted (their interleaving with other records is timing).
    pub operations: Vec<Operation>,
    /// `archive_progress` records' sorted key sets, runs collapsed.
    pub archive_progress: Vec<Vec<String>>,
    /// `file_status` (status, path), sorted.
    pub file_status: Vec<(String, String)>,
    /// Lines that are not JSON.
    pub text: Vec<String>,
}

fn sorted_keys(v: &Value) -> Vec<String> {
    let mut keys: Vec<String> = v
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    keys.sort();
    keys
}

fn keys_of(list: &[&str]) -> Vec<String> {
    let mut keys: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    keys.sort();
    keys
}

fn assert_time(rec: &Value) {
    assert!(rec["time"].is_f64(), "`time` must be a float: {rec}");
}

/// The msgid borg's nested progress indicators would carry, from their message.
fn nested_operation_msgid(message: &str) -> Option<String> {
    if message.starts_with("Initializing cache transaction:") {
        Some("cache.begin_transaction".into())
    } else if message.starts_with("Saving ") {
        Some("cache.commit".into())
    } else {
        None
    }
}

/// Parse and check a stderr stream. Every JSON record is checked for the keys and types
/// cli.md §11.1 gives its type.
///
/// `from_borg`: borg emits a progress indicator created while another one is alive through
/// the `borg.output.progress` logger (plain `log_message`s, the last one empty) instead of
/// `progress_message` objects — a side effect of its logging set-up that contradicts its
/// documentation (the user's frontend guide lists `cache.begin_transaction`/`cache.commit`
/// as progress operations). Such runs are read back as the operation they stand for.
pub fn parse_log_stream(stderr: &str, from_borg: bool) -> LogStream {
    let mut out = LogStream::default();
    let mut ops: BTreeMap<u64, Operation> = BTreeMap::new();
    let mut nested: Option<Operation> = None;
    let mut finished_ops: Vec<u64> = Vec::new();
    for line in stderr.lines() {
        let Ok(rec) = serde_json::from_str::<Value>(line) else {
            out.text.push(line.to_string());
            continue;
        };
        let kind = rec["type"]
            .as_str()
            .unwrap_or_else(|| panic!("no type: {line}"));
        match kind {
            "log_message" => {
                assert_time(&rec);
                let keys = sorted_keys(&rec);
                let base = ["levelname", "message", "name", "time", "type"];
                assert!(
                    keys == keys_of(&base) || keys == keys_of(&[&base[..], &["msgid"]].concat()),
                    "log_message keys: {line}"
                );
                let name = rec["name"].as_str().unwrap().to_string();
                let message = rec["message"].as_str().unwrap();
                if from_borg && name == "borg.output.progress" {
                    let op = nested.get_or_insert_with(|| Operation {
                        kind: "progress_message".into(),
                        msgid: nested_operation_msgid(message),
                        records: Vec::new(),
                    });
                    let finished = message.is_empty();
                    let fields: &[&str] = if finished {
                        &["finished", "msgid", "operation", "time", "type"]
                    } else {
                        &["finished", "message", "msgid", "operation", "time", "type"]
                    };
                    op.records.push((finished, keys_of(fields)));
                    if finished {
                        out.operations.push(nested.take().unwrap());
                    }
                    continue;
                }
                let msgid = rec.get("msgid").and_then(|m| m.as_str()).map(String::from);
                out.logs
                    .push((rec["levelname"].as_str().unwrap().to_string(), name, msgid));
                out.log_objects.push(rec);
            }
            "progress_message" | "progress_percent" => {
                assert_time(&rec);
                let id = rec["operation"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("operation: {line}"));
                let finished = rec["finished"]
                    .as_bool()
                    .unwrap_or_else(|| panic!("finished: {line}"));
                assert!(
                    rec["msgid"].is_string() || rec["msgid"].is_null(),
                    "msgid: {line}"
                );
                assert!(
                    !finished_ops.contains(&id),
                    "a record after the finished one of operation {id}: {line}"
                );
                if finished {
                    finished_ops.push(id);
                } else {
                    assert!(rec["message"].is_string(), "message: {line}");
                }
                if kind == "progress_percent" && !finished {
                    assert!(rec["current"].is_u64() && rec["total"].is_u64(), "{line}");
                    assert!(rec["info"].is_null() || rec["info"].is_array(), "{line}");
                }
                let op = ops.entry(id).or_insert_with(|| Operation {
                    kind: kind.to_string(),
                    msgid: rec["msgid"].as_str().map(String::from),
                    records: Vec::new(),
                });
                assert_eq!(op.kind, kind, "operation {id} changed type: {line}");
                op.records.push((finished, sorted_keys(&rec)));
            }
            "archive_progress" => {
                assert_time(&rec);
                let keys = sorted_keys(&rec);
                if rec["finished"] == true {
                    assert_eq!(keys, keys_of(&["finished", "time", "type"]), "{line}");
                } else {
                    for k in [
                        "original_size",
                        "compressed_size",
                        "deduplicated_size",
                        "nfiles",
                    ] {
                        assert!(rec[k].is_u64(), "{k}: {line}");
                    }
                    assert!(rec["path"].is_string(), "{line}");
                }
                if out.archive_progress.last() != Some(&keys) {
                    out.archive_progress.push(keys);
                }
            }
            "file_status" => {
                assert_eq!(
                    sorted_keys(&rec),
                    keys_of(&["path", "status", "type"]),
                    "{line}"
                );
                out.file_status.push((
                    rec["status"].as_str().unwrap().to_string(),
                    rec["path"].as_str().unwrap().to_string(),
                ));
            }
            other => panic!("unknown record type {other}: {line}"),
        }
    }
    assert!(nested.is_none(), "unfinished nested progress in {stderr}");
    for (id, op) in &ops {
        assert!(
            op.records.iter().filter(|(f, _)| *f).count() <= 1,
            "operation {id} finished twice"
        );
    }
    // Operation ids count up in the order operations start.
    let mut operations: Vec<Operation> = ops.into_values().collect();
    operations.append(&mut out.operations);
    for op in &mut operations {
        op.records.dedup();
    }
    operations.sort();
    out.operations = operations;
    out.file_status.sort();
    out
}

/// Warning msgids borg 1.4 attaches (borg 1.2 logs these warnings without one).
pub const WARNING_MSGIDS: &[&str] = &[
    "FileChangedWarning",
    "IncludePatternNeverMatchedWarning",
    "BackupError",
    "BackupRaceConditionError",
    "BackupOSError",
    "BackupPermissionError",
    "BackupIOError",
    "BackupFileNotFoundError",
    "BackupSymlinkParentError",
    "BackupPathTraversalError",
    "BackupHardlinkSourceError",
];

/// rborg's stream as borg 1.2 would show it: without the warning msgids 1.4 added.
pub fn without_14_warning_msgids(mut stream: LogStream) -> LogStream {
    for (level, _, msgid) in &mut stream.logs {
        if level == "WARNING"
            && msgid
                .as_deref()
                .is_some_and(|m| WARNING_MSGIDS.contains(&m))
        {
            *msgid = None;
        }
    }
    stream
}

/// Assert two streams agree (log records, progress operations, archive progress, file
/// status); `text` lines are compared too.
pub fn assert_same_stream(what: &str, borg: &LogStream, rborg: &LogStream) {
    assert_eq!(
        borg.logs, rborg.logs,
        "{what}: log_message records (level, logger, msgid)"
    );
    assert_eq!(
        borg.operations, rborg.operations,
        "{what}: progress operations"
    );
    assert_eq!(
        borg.archive_progress, rborg.archive_progress,
        "{what}: archive_progress records"
    );
    assert_eq!(
        borg.file_status, rborg.file_status,
        "{what}: file_status records"
    );
    assert_eq!(borg.text, rborg.text, "{what}: non-JSON lines");
}
