//! `rborg prune` decides as real borg decided: every case of `fixtures/prune-cases.json`
//! (recorded from `borg prune --dry-run --list`) gives the same kept archives, with the same
//! rule and counter, and the same pruned ones; then a real prune deletes what it listed and
//! leaves a repository borg checks clean.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{NaiveDateTime, Utc};
use serde_json::Value;

use common::*;

fn cases() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/prune-cases.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn utc(text: &str) -> chrono::DateTime<Utc> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S")
        .unwrap()
        .and_utc()
}

/// One repository holding every archive of every case (names never clash). `w-*` archives are
/// relative to the recorded "now": they are moved by the whole seconds since then (returned),
/// so `--keep-within` sees the ages the case had.
fn repository_with_all_archives(
    s: &Scratch,
    env: &[(String, String)],
    cases: &Value,
) -> (String, i64) {
    let repo = s.path().join("repos/prune");
    let repo_s = repo.to_str().unwrap().to_string();
    ok(rborg(&["init", "-e", "none", &repo_s], &s.work(), env));
    let empty = s.work().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let mut archives: BTreeMap<String, chrono::DateTime<Utc>> = BTreeMap::new();
    let recorded_now = utc(cases["cases"][0]["now_utc"].as_str().unwrap());
    let shift = chrono::Duration::seconds((Utc::now() - recorded_now).num_seconds());
    for case in cases["cases"].as_array().unwrap() {
        for a in case["archives"].as_array().unwrap() {
            let name = a["name"].as_str().unwrap().to_string();
            let mut ts = utc(a["timestamp_utc"].as_str().unwrap());
            if name.starts_with("w-") {
                ts += shift;
            }
            archives.insert(name, ts);
        }
    }
    for (name, ts) in &archives {
        let ts = ts.format("%Y-%m-%dT%H:%M:%S").to_string();
        ok(rborg(
            &[
                "create",
                "--timestamp",
                &ts,
                &format!("{repo_s}::{name}"),
                "empty",
            ],
            &s.work(),
            env,
        ));
    }
    (repo_s, shift.num_seconds())
}

/// The time zone to run a case in. Moved `w-*` archives are seen in a zone west of UTC by the
/// move (modulo a day): their local times are the recorded ones plus whole days, so day
/// buckets fall as they did.
fn zone_for(case: &Value, shift_seconds: i64) -> String {
    let tz = case["tz"].as_str().unwrap();
    let moved = case["archives"].as_array().unwrap()[0]["name"]
        .as_str()
        .unwrap()
        .starts_with("w-");
    if !moved {
        return tz.to_string();
    }
    assert_eq!(tz, "UTC");
    let west = shift_seconds.rem_euclid(86_400);
    format!(
        "FKE+{:02}:{:02}:{:02}",
        west / 3600,
        west / 60 % 60,
        west % 60
    )
}

/// (kept names with their rule, pruned names) from `prune --list` lines, newest first.
type Verdicts = (Vec<(String, String)>, Vec<String>);

fn parse_list(stderr: &str) -> Verdicts {
    let mut kept = Vec::new();
    let mut pruned = Vec::new();
    for line in stderr.lines() {
        let first_word = |rest: &str| rest.split_whitespace().next().unwrap_or("").to_string();
        if let Some(ruled) = line.strip_prefix("Keeping archive (rule: ") {
            let (rule, rest) = ruled.split_once("):").unwrap();
            kept.push((first_word(rest), rule.to_string()));
            continue;
        }
        let (message, rest) = line.split_once(':').unwrap_or((line, ""));
        let name = first_word(rest);
        if message == "Keeping checkpoint archive" {
            kept.push((name, "checkpoint".to_string()));
        } else if message == "Would prune" || message.starts_with("Pruning archive") {
            pruned.push(name);
        }
    }
    (kept, pruned)
}

fn expected(case: &Value) -> Verdicts {
    let kept = case["expected_kept_rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            let rule = k["rule"].as_str().unwrap();
            let rule = match k.get("n").and_then(Value::as_u64) {
                Some(n) => format!("{rule} #{n}"),
                None => rule.to_string(),
            };
            (k["name"].as_str().unwrap().to_string(), rule)
        })
        .collect();
    let pruned = case["expected_pruned"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    (kept, pruned)
}

fn zone_available(tz: &str) -> bool {
    tz == "UTC" || PathBuf::from("/usr/share/zoneinfo").join(tz).exists()
}

#[test]
fn prune_decides_every_recorded_case_as_borg() {
    let test = "prune_decides_every_recorded_case_as_borg";
    let cases = cases();
    let s = Scratch::new();
    let env = env_with_base(&s.base());
    let (repo, shift) = repository_with_all_archives(&s, &env, &cases);
    let mut checked = 0;
    for case in cases["cases"].as_array().unwrap() {
        let id = case["id"].as_str().unwrap();
        let tz = case["tz"].as_str().unwrap();
        if !zone_available(tz) {
            skip(test, &format!("case {id}: time zone {tz} is not installed"));
            continue;
        }
        let options: Vec<&str> = case["options"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o.as_str().unwrap())
            .collect();
        let mut args = vec!["prune", "--dry-run", "--list"];
        args.extend(&options);
        args.push(&repo);
        let zone = zone_for(case, shift);
        let out = ok(rborg(&args, &s.work(), &with_var(&env, "TZ", &zone)));
        let (kept, mut pruned) = parse_list(&stderr(&out));
        let (want_kept, mut want_pruned) = expected(case);
        assert_eq!(kept, want_kept, "case {id}: kept");
        pruned.sort();
        want_pruned.sort();
        assert_eq!(pruned, want_pruned, "case {id}: pruned");
        checked += 1;
    }
    assert!(checked >= 28, "only {checked} cases ran");
}

#[test]
fn prune_deletes_what_it_lists_and_borg_checks_the_result() {
    let test = "prune_deletes_what_it_lists_and_borg_checks_the_result";
    if !borg_or_skip(test) {
        return;
    }
    let s = Scratch::new();
    let env = env_with_base(&s.base());
    let repo = s.path().join("repos/real");
    let repo_s = repo.to_str().unwrap().to_string();
    ok(rborg(
        &["init", "-e", "repokey-blake2", &repo_s],
        &s.work(),
        &env,
    ));
    let src = s.work().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for day in 1..=6 {
        std::fs::write(
            src.join(format!("day{day}.txt")),
            format!("data of day {day}"),
        )
        .unwrap();
        let ts = format!("2024-03-0{day}T12:00:00");
        ok(rborg(
            &[
                "create",
                "--timestamp",
                &ts,
                &format!("{repo_s}::d-{day}"),
                "src",
            ],
            &s.work(),
            &env,
        ));
    }
    let env_utc = with_var(&env, "TZ", "UTC");
    let dry = ok(rborg(
        &["prune", "--dry-run", "--list", "--keep-daily", "2", &repo_s],
        &s.work(),
        &env_utc,
    ));
    let (_, would) = parse_list(&stderr(&dry));
    assert_eq!(would, ["d-4", "d-3", "d-2", "d-1"]);
    let real = ok(rborg(
        &["prune", "--list", "--stats", "--keep-daily", "2", &repo_s],
        &s.work(),
        &env_utc,
    ));
    let text = stderr(&real);
    assert!(text.contains("Pruning archive (1/4):"), "{text}");
    assert!(text.contains("Deleted data:"), "{text}");
    let (kept, pruned) = parse_list(&text);
    assert_eq!(pruned, would);
    assert_eq!(
        kept,
        [
            ("d-6".to_string(), "daily #1".to_string()),
            ("d-5".to_string(), "daily #2".to_string())
        ]
    );
    let left = ok(borg(&["list", "--short", &repo_s], &s.work(), &env));
    assert_eq!(stdout(&left).lines().collect::<Vec<_>>(), ["d-5", "d-6"]);
    ok(borg(&["check", "--verify-data", &repo_s], &s.work(), &env));
    // What is left restores.
    let dest = s.work().join("restore");
    std::fs::create_dir_all(&dest).unwrap();
    ok(borg(&["extract", &format!("{repo_s}::d-5")], &dest, &env));
    assert!(dest.join("src/day5.txt").exists());
    // --progress: borg's `Pruning archives` percent records (and no per-archive ones).
    let progress = ok(rborg(
        &[
            "prune",
            "--progress",
            "--log-json",
            "--keep-last",
            "1",
            &repo_s,
        ],
        &s.work(),
        &env_utc,
    ));
    let records: Vec<Value> = stderr(&progress)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let prune_progress: Vec<&Value> = records.iter().filter(|r| r["msgid"] == "prune").collect();
    assert_eq!(prune_progress.len(), 2, "{}", stderr(&progress));
    assert_eq!(prune_progress[0]["message"], "Pruning archives   0%");
    assert_eq!(prune_progress[1]["finished"], true);
    assert!(!records.iter().any(|r| r["msgid"] == "archive.delete"));
    // No rule at all: borg 1.4's CommandError.
    let none = rborg(&["prune", &repo_s], &s.work(), &env);
    assert_eq!(none.status.code(), Some(4), "{}", stderr(&none));
    assert!(stderr(&none).contains("At least one of the \"keep-within\""));
}
