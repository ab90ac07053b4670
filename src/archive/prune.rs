//! Which archives `prune` keeps (cli.md §8): the retention rules applied in borg's fixed order
//! to the normal archives, bucketed by local start time, with the `[oldest]` rescue; the newest
//! checkpoint survives only if nothing newer is a normal archive.

use chrono::{DateTime, Datelike, NaiveDateTime, Timelike, Utc};

use crate::archive::ArchiveInfo;

/// `--keep-*` counts (0: rule off, negative: unlimited) and `--keep-within` in seconds.
#[derive(Debug, Clone, Default)]
pub struct PruneRules {
    pub within: Option<i64>,
    pub secondly: i64,
    pub minutely: i64,
    pub hourly: i64,
    pub daily: i64,
    pub weekly: i64,
    pub monthly: i64,
    pub quarterly_13weekly: i64,
    pub quarterly_3monthly: i64,
    pub yearly: i64,
}

impl PruneRules {
    /// Whether any rule is given (borg refuses to prune without one).
    pub fn any(&self) -> bool {
        self.within.is_some() || self.counted().iter().any(|(_, n, _)| *n != 0)
    }

    /// The counted rules in borg's order, with their names and bucket keys.
    fn counted(&self) -> [(&'static str, i64, Period); 9] {
        [
            ("secondly", self.secondly, Period::Second),
            ("minutely", self.minutely, Period::Minute),
            ("hourly", self.hourly, Period::Hour),
            ("daily", self.daily, Period::Day),
            ("weekly", self.weekly, Period::IsoWeek),
            ("monthly", self.monthly, Period::Month),
            (
                "quarterly_13weekly",
                self.quarterly_13weekly,
                Period::IsoQuarter,
            ),
            (
                "quarterly_3monthly",
                self.quarterly_3monthly,
                Period::Quarter,
            ),
            ("yearly", self.yearly, Period::Year),
        ]
    }
}

#[derive(Debug, Clone, Copy)]
enum Period {
    Second,
    Minute,
    Hour,
    Day,
    IsoWeek,
    Month,
    IsoQuarter,
    Quarter,
    Year,
}

impl Period {
    /// The bucket of a local time: equal keys, same bucket.
    fn key(self, t: &NaiveDateTime) -> (i32, u32, u32, u32, u32, u32) {
        let (y, m, d) = (t.year(), t.month(), t.day());
        let (h, min, s) = (t.hour(), t.minute(), t.second());
        let iso = t.iso_week();
        match self {
            Period::Second => (y, m, d, h, min, s),
            Period::Minute => (y, m, d, h, min, 0),
            Period::Hour => (y, m, d, h, 0, 0),
            Period::Day => (y, m, d, 0, 0, 0),
            Period::IsoWeek => (iso.year(), iso.week(), 0, 0, 0, 0),
            Period::Month => (y, m, 0, 0, 0, 0),
            // ISO weeks 1–13, 14–26, 27–39, 40–53.
            Period::IsoQuarter => (iso.year(), ((iso.week() - 1) / 13 + 1).min(4), 0, 0, 0, 0),
            Period::Quarter => (y, (m - 1) / 3 + 1, 0, 0, 0, 0),
            Period::Year => (y, 0, 0, 0, 0, 0),
        }
    }
}

/// Why an archive is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keep {
    /// By a rule: its name (with `[oldest]` for the rescue) and counter.
    Rule(String, u64),
    /// The newest checkpoint, newer than every normal archive.
    Checkpoint,
}

/// The decision for each candidate, newest first.
#[derive(Debug)]
pub struct PruneDecision<'a> {
    pub archives: Vec<(&'a ArchiveInfo, Option<Keep>)>,
}

/// Whether `name` ends with a checkpoint suffix (`.checkpoint` or `.checkpoint.N`).
pub fn is_checkpoint(name: &[u8]) -> bool {
    strip_checkpoint_suffix(name).is_some()
}

/// `name` without its checkpoint suffix, if it has one.
pub fn strip_checkpoint_suffix(name: &[u8]) -> Option<&[u8]> {
    const SUFFIX: &[u8] = b".checkpoint";
    if let Some(base) = name.strip_suffix(SUFFIX) {
        return Some(base);
    }
    let dot = name.iter().rposition(|&b| b == b'.')?;
    let digits = &name[dot + 1..];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    name[..dot].strip_suffix(SUFFIX)
}

/// Decide over `candidates` (any order): `now` for `--keep-within`, `local` converts a start
/// time to the local wall-clock time buckets are made of.
pub fn decide<'a>(
    candidates: &[&'a ArchiveInfo],
    rules: &PruneRules,
    now: DateTime<Utc>,
    local: impl Fn(&DateTime<Utc>) -> NaiveDateTime,
) -> PruneDecision<'a> {
    let mut all: Vec<&ArchiveInfo> = candidates.to_vec();
    // Newest first; a stable sort keeps the manifest order among equal times, as borg's.
    all.sort_by_key(|a| std::cmp::Reverse(a.ts));
    let normal: Vec<&ArchiveInfo> = all
        .iter()
        .copied()
        .filter(|a| !is_checkpoint(&a.name))
        .collect();
    let mut kept: Vec<Option<Keep>> = vec![None; normal.len()];
    if let Some(secs) = rules.within {
        let since = now - chrono::Duration::seconds(secs);
        let mut n = 0;
        for (i, a) in normal.iter().enumerate() {
            if a.ts > since {
                n += 1;
                kept[i] = Some(Keep::Rule("within".into(), n));
            }
        }
    }
    let locals: Vec<NaiveDateTime> = normal.iter().map(|a| local(&a.ts)).collect();
    for (rule, wanted, period) in rules.counted() {
        if wanted == 0 {
            continue;
        }
        let mut last = None;
        let mut count: i64 = 0;
        for (i, t) in locals.iter().enumerate() {
            let key = period.key(t);
            if last == Some(key) {
                continue;
            }
            last = Some(key);
            if kept[i].is_none() {
                count += 1;
                kept[i] = Some(Keep::Rule(rule.into(), count as u64));
                if count == wanted {
                    break;
                }
            }
        }
        // The oldest archive is kept when the rule ran out of archives before reaching N.
        if let Some(oldest) = kept.last_mut() {
            if count < wanted && oldest.is_none() {
                *oldest = Some(Keep::Rule(format!("{rule}[oldest]"), count as u64 + 1));
            }
        }
    }
    let newest_is_checkpoint = all.first().is_some_and(|a| is_checkpoint(&a.name));
    let mut normal_kept = normal.iter().zip(kept);
    let archives = all
        .iter()
        .enumerate()
        .map(|(i, a)| {
            if is_checkpoint(&a.name) {
                let keep = (i == 0 && newest_is_checkpoint).then_some(Keep::Checkpoint);
                (*a, keep)
            } else {
                let (_, keep) = normal_kept.next().expect("normal archives in order");
                (*a, keep)
            }
        })
        .collect();
    PruneDecision { archives }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(name: &str, ts: &str) -> ArchiveInfo {
        ArchiveInfo {
            name: name.as_bytes().to_vec(),
            id: [0; 32],
            ts: NaiveDateTime::parse_from_str(ts, "%Y-%m-%dT%H:%M:%S")
                .unwrap()
                .and_utc(),
        }
    }

    fn kept<'a>(d: &PruneDecision<'a>) -> Vec<(String, Option<Keep>)> {
        d.archives
            .iter()
            .map(|(a, k)| (a.name_lossy(), k.clone()))
            .collect()
    }

    #[test]
    fn checkpoint_suffixes() {
        assert!(is_checkpoint(b"a.checkpoint"));
        assert!(is_checkpoint(b"a.checkpoint.12"));
        assert!(!is_checkpoint(b"a.checkpoint."));
        assert!(!is_checkpoint(b"a.checkpoint.x"));
        assert!(!is_checkpoint(b"a.checkpointer"));
        assert_eq!(
            strip_checkpoint_suffix(b"k-1.checkpoint.2"),
            Some(&b"k-1"[..])
        );
    }

    #[test]
    fn oldest_rescue_and_buckets_consumed_by_kept_archives() {
        let a = [
            archive("o-4", "2024-02-03T10:00:00"),
            archive("o-3", "2024-02-02T10:00:00"),
            archive("o-2", "2024-02-01T20:00:00"),
            archive("o-1", "2024-02-01T10:00:00"),
        ];
        let refs: Vec<&ArchiveInfo> = a.iter().collect();
        let rules = PruneRules {
            daily: 5,
            ..Default::default()
        };
        let d = decide(&refs, &rules, Utc::now(), |t| t.naive_utc());
        let rule = |r: &str, n| Some(Keep::Rule(r.into(), n));
        assert_eq!(
            kept(&d),
            vec![
                ("o-4".into(), rule("daily", 1)),
                ("o-3".into(), rule("daily", 2)),
                ("o-2".into(), rule("daily", 3)),
                ("o-1".into(), rule("daily[oldest]", 4)),
            ]
        );
        let rules = PruneRules {
            secondly: 1,
            daily: 1,
            ..Default::default()
        };
        let d = decide(&refs, &rules, Utc::now(), |t| t.naive_utc());
        // daily: o-4's day is consumed by the archive secondly kept; o-3 is daily #1.
        assert_eq!(kept(&d)[1], ("o-3".into(), rule("daily", 1)));
        assert_eq!(kept(&d)[2].1, None);
    }

    #[test]
    fn only_a_newest_checkpoint_is_kept() {
        let a = [
            archive("c-5.checkpoint.1", "2024-01-05T10:00:00"),
            archive("c-4.checkpoint", "2024-01-04T10:00:00"),
            archive("c-3", "2024-01-03T10:00:00"),
        ];
        let refs: Vec<&ArchiveInfo> = a.iter().collect();
        let rules = PruneRules {
            daily: 1,
            ..Default::default()
        };
        let d = decide(&refs, &rules, Utc::now(), |t| t.naive_utc());
        assert_eq!(d.archives[0].1, Some(Keep::Checkpoint));
        assert_eq!(d.archives[1].1, None);
        assert_eq!(d.archives[2].1, Some(Keep::Rule("daily".into(), 1)));
    }
}
