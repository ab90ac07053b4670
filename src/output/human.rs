//! Human-readable sizes, durations and timestamps exactly as borg renders them.

use chrono::{DateTime, Local, NaiveDate, NaiveDateTime, TimeZone, Utc};

use crate::errors::{Error, Result};

/// `%a, %Y-%m-%d %H:%M:%S` — borg's text timestamp (English weekday).
pub const TIME_FORMAT: &str = "%a, %Y-%m-%d %H:%M:%S";
/// `%Y-%m-%dT%H:%M:%S.%f` — borg's JSON / iso timestamp.
pub const ISO_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6f";
/// `%Y-%m-%dT%H:%M:%S` — placeholders' `{now}` default.
pub const ISO_FORMAT_NO_USECS: &str = "%Y-%m-%dT%H:%M:%S";

/// Largest item timestamp borg renders (seconds): 2**31-1 minus 48 h (`safe_s`).
pub const MAX_S: i64 = (1 << 31) - 1 - 48 * 3600;
pub const MAX_NS: i64 = MAX_S * 1_000_000_000;

/// A size for humans: `476 B`, `100.54 kB`, `97.72 KiB` (borg's `format_file_size`).
pub fn format_file_size(v: i64, iec: bool) -> String {
    sizeof_fmt(v as f64, 2, false, iec)
}

/// Like [`format_file_size`] with a chosen precision and an explicit `+` for positive values
/// (`diff` uses precision 1: `+14 B`, `-6 B`, `+1.2 MB`).
pub fn format_file_size_signed(v: i64, precision: usize, iec: bool) -> String {
    sizeof_fmt(v as f64, precision, true, iec)
}

fn sizeof_fmt(num: f64, precision: usize, sign: bool, iec: bool) -> String {
    let (units, power): (&[&str], f64) = if iec {
        (
            &["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"],
            1024.0,
        )
    } else {
        (&["", "k", "M", "G", "T", "P", "E", "Z", "Y"], 1000.0)
    };
    let sign = if sign && num > 0.0 { "+" } else { "" };
    let mut num = num;
    let mut prec = 0;
    let mut unit = units[units.len() - 1];
    for (i, u) in units[..units.len() - 1].iter().enumerate() {
        // Python divides while abs(round(num, precision)) >= power; the first pass has an int.
        let rounded = if i == 0 {
            num
        } else {
            python_round(num, precision)
        };
        if rounded.abs() < power {
            unit = u;
            break;
        }
        num /= power;
        prec = precision;
    }
    format!("{sign}{num:.prec$} {unit}B")
}

/// Python's `round(x, n)` for floats (correctly rounded, ties to even).
fn python_round(x: f64, n: usize) -> f64 {
    format!("{x:.n$}").parse().unwrap_or(x)
}

/// borg's `format_timedelta`: `[<d> days ][<h> hours ][<m> minutes ]<s.ss> seconds`.
pub fn format_timedelta_us(us: i64) -> String {
    let total = us as f64 / 1e6;
    let days = us.div_euclid(86_400_000_000);
    let s = total.rem_euclid(60.0);
    let m = ((total / 60.0) as i64).rem_euclid(60);
    let h = ((total / 3600.0) as i64).rem_euclid(24);
    let mut txt = format!("{s:.2} seconds");
    if m != 0 {
        txt = format!("{m} minutes {txt}");
    }
    if h != 0 {
        txt = format!("{h} hours {txt}");
    }
    if days != 0 {
        txt = format!("{days} days {txt}");
    }
    txt
}

/// Seconds as float → [`format_timedelta_us`].
pub fn format_timedelta(seconds: f64) -> String {
    format_timedelta_us((seconds * 1e6).round() as i64)
}

/// `Sat, 2026-11-21 23:42:04`.
pub fn format_time(dt: &NaiveDateTime) -> String {
    dt.format(TIME_FORMAT).to_string()
}

/// `2026-11-21T23:42:04.391316`.
pub fn isoformat_us(dt: &NaiveDateTime) -> String {
    dt.format(ISO_FORMAT).to_string()
}

/// Local wall-clock time of a Unix time (seconds + microseconds), following `TZ`.
fn local_naive(secs: i64, micros: u32) -> NaiveDateTime {
    match Local.timestamp_opt(secs, micros * 1000) {
        chrono::LocalResult::Single(t) => t.naive_local(),
        chrono::LocalResult::Ambiguous(t, _) => t.naive_local(),
        chrono::LocalResult::None => DateTime::<Utc>::from_timestamp(secs, micros * 1000)
            .map(|t| t.naive_utc())
            .unwrap_or_default(),
    }
}

/// Local time of an item timestamp (ns since the epoch) exactly as borg shows it:
/// clamped to [0, MAX_NS], converted through a float (`ns / 1e9`), microseconds rounded
/// half-even like Python's `datetime.fromtimestamp`.
pub fn item_time_local(ns: i64) -> NaiveDateTime {
    let ns = ns.clamp(0, MAX_NS);
    let (secs, micros) = python_fromtimestamp_parts(ns as f64 / 1e9);
    local_naive(secs, micros)
}

/// Same as [`item_time_local`] but in UTC (tests, `--timestamp` echo).
pub fn item_time_utc(ns: i64) -> NaiveDateTime {
    let ns = ns.clamp(0, MAX_NS);
    let (secs, micros) = python_fromtimestamp_parts(ns as f64 / 1e9);
    DateTime::<Utc>::from_timestamp(secs, micros * 1000)
        .map(|t| t.naive_utc())
        .unwrap_or_default()
}

/// Split a float timestamp like CPython (`modf`, microseconds rounded half-even).
fn python_fromtimestamp_parts(t: f64) -> (i64, u32) {
    let int_part = t.trunc();
    let frac = t - int_part;
    let mut us = (frac * 1e6).round_ties_even();
    let mut secs = int_part as i64;
    if us >= 1e6 {
        us -= 1e6;
        secs += 1;
    } else if us < 0.0 {
        us += 1e6;
        secs -= 1;
    }
    (secs, us as u32)
}

/// Parse an archive/manifest time string (`YYYY-MM-DDTHH:MM:SS[.ffffff]`, UTC).
pub fn parse_borg_utc(text: &[u8]) -> Result<DateTime<Utc>> {
    let s =
        std::str::from_utf8(text).map_err(|_| Error::generic("invalid timestamp (not UTF-8)"))?;
    let parsed = if s.contains('.') {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
    } else {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S")
    };
    parsed
        .map(|t| t.and_utc())
        .map_err(|_| Error::generic(format!("invalid timestamp: {s}")))
}

/// Local time of an archive time as borg shows it (sub-seconds dropped).
pub fn archive_time_local(ts: &DateTime<Utc>) -> NaiveDateTime {
    local_naive(ts.timestamp(), 0)
}

/// Archive time for text output: `Sat, 2026-11-21 23:42:04`.
pub fn format_archive_time(ts: &DateTime<Utc>) -> String {
    format_time(&archive_time_local(ts))
}

/// Archive time for JSON: `2026-11-21T23:42:04.000000`.
pub fn isoformat_archive_time(ts: &DateTime<Utc>) -> String {
    isoformat_us(&archive_time_local(ts))
}

/// borg's `format_archive`: `%-36s %s [%s]` (name padded to 36 columns, local start time,
/// hex id) as used by `delete --list` and `prune --list`.
pub fn format_archive_line(name: &str, ts: &DateTime<Utc>, id_hex: &str) -> String {
    format!("{:<36} {} [{}]", name, format_archive_time(ts), id_hex)
}

/// Item time for text output.
pub fn format_item_time(ns: i64) -> String {
    format_time(&item_time_local(ns))
}

/// Item time for JSON / `isomtime`.
pub fn isoformat_item_time(ns: i64) -> String {
    isoformat_us(&item_time_local(ns))
}

/// Unix epoch as a naive datetime (a neutral default).
pub fn epoch() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(1970, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_borg() {
        // python3 -c 'from borg.helpers import format_file_size as f; ...'
        assert_eq!(format_file_size(0, false), "0 B");
        assert_eq!(format_file_size(476, false), "476 B");
        assert_eq!(format_file_size(999, false), "999 B");
        assert_eq!(format_file_size(1000, false), "1.00 kB");
        assert_eq!(format_file_size(100540, false), "100.54 kB");
        assert_eq!(format_file_size(-954, false), "-954 B");
        assert_eq!(format_file_size(-203900, false), "-203.90 kB");
        assert_eq!(format_file_size(100064, true), "97.72 KiB");
        assert_eq!(format_file_size(1152, true), "1.12 KiB");
        assert_eq!(format_file_size(999_999, false), "1.00 MB");
        assert_eq!(
            format_file_size(1_000_000_000_000_000_000, false),
            "1.00 EB"
        );
        assert_eq!(format_file_size_signed(14, 1, false), "+14 B");
        assert_eq!(format_file_size_signed(-6, 1, false), "-6 B");
        assert_eq!(format_file_size_signed(1_234_567, 1, false), "+1.2 MB");
        assert_eq!(format_file_size_signed(0, 1, false), "0 B");
    }

    #[test]
    fn timedelta_like_borg() {
        assert_eq!(format_timedelta_us(5411), "0.01 seconds");
        assert_eq!(format_timedelta_us(0), "0.00 seconds");
        assert_eq!(
            format_timedelta_us(3_723_500_000),
            "1 hours 2 minutes 3.50 seconds"
        );
        assert_eq!(
            format_timedelta_us(90_061_000_000),
            "1 days 1 hours 1 minutes 1.00 seconds"
        );
        assert_eq!(format_timedelta_us(120_000_000), "2 minutes 0.00 seconds");
    }

    #[test]
    fn item_time_rounds_like_python() {
        // python3 -c 'import datetime; print(datetime.datetime.utcfromtimestamp(1234567890123456789/1e9))'
        assert_eq!(
            isoformat_us(&item_time_utc(1234567890123456789)),
            "2009-02-13T23:31:30.123457"
        );
        assert_eq!(
            isoformat_us(&item_time_utc(1_795_304_526_999_999_600)),
            "2026-11-21T23:42:07.000000"
        );
        assert_eq!(
            isoformat_us(&item_time_utc(-5)),
            "1970-01-01T00:00:00.000000"
        );
    }

    #[test]
    fn archive_times() {
        let t = parse_borg_utc(b"2026-11-21T23:42:04.391316").unwrap();
        assert_eq!(t.timestamp(), 1795304524);
        assert_eq!(t.timestamp_subsec_micros(), 391316);
        let t2 = parse_borg_utc(b"2026-11-21T23:42:04").unwrap();
        assert_eq!(t2.timestamp(), 1795304524);
        assert!(parse_borg_utc(b"garbage").is_err());
        assert!(isoformat_archive_time(&t).ends_with(".000000"));
        let line = format_archive_line("arch9", &t, "2adf");
        assert!(
            line.starts_with("arch9                                "),
            "{line}"
        );
        assert!(line.ends_with(" [2adf]"));
    }
}
