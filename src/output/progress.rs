//! Progress indicators (`--progress`): percentage, message and archive progress.
//!
//! Three renderings: `--log-json` → borg's `progress_percent` / `progress_message` /
//! `archive_progress` objects (exact keys and order); stderr on a terminal → an indicatif
//! line redrawn in place; otherwise → plain lines ending with `\n` (borg 1.4.2+'s form for
//! non-terminals, no padding). Nothing is produced without `--progress`.
//!
//! Finishing: JSON writes the `finished: true` object; a terminal line is cleared; plain
//! mode writes an empty line for archive progress (as borg 1.4.2+ does) and nothing for
//! percent/message indicators (borg's `\r`-terminated empty record has no use in a log).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Map, Value};

use super::format::{printf, PrintfArg};
use super::{
    dumps_line, format_file_size, iec, is_log_json, now_float, progress_enabled, stderr_is_tty,
    terminal_width, write_stderr_raw,
};

static OPERATION_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Per-process operation id (1, 2, …), taken by every indicator created.
fn next_operation_id() -> u64 {
    OPERATION_COUNTER.fetch_add(1, Ordering::Relaxed) + 1
}

fn multi() -> &'static MultiProgress {
    static MULTI: OnceLock<MultiProgress> = OnceLock::new();
    MULTI.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

fn multi_if_started() -> Option<&'static MultiProgress> {
    static STARTED: OnceLock<()> = OnceLock::new();
    if BARS_ACTIVE.load(Ordering::Relaxed) > 0 {
        STARTED.get_or_init(|| ());
        Some(multi())
    } else {
        None
    }
}

static BARS_ACTIVE: AtomicU64 = AtomicU64::new(0);

/// Run `f` (which writes to stderr) with terminal bars hidden, then redraw them.
pub(crate) fn suspend_bars<R>(f: impl FnOnce() -> R) -> R {
    match multi_if_started() {
        Some(m) => m.suspend(f),
        None => f(),
    }
}

/// Remove any bar still drawn (before the process exits).
pub(crate) fn clear_all_bars() {
    if let Some(m) = multi_if_started() {
        let _ = m.clear();
    }
}

enum Sink {
    Off,
    Json,
    Plain,
    Bar(ProgressBar),
}

impl Sink {
    fn new(with_bar: bool) -> Sink {
        if !progress_enabled() {
            Sink::Off
        } else if is_log_json() {
            Sink::Json
        } else if stderr_is_tty() {
            let bar = ProgressBar::new(1000);
            let template = if with_bar {
                "[{bar:30}] {wide_msg}"
            } else {
                "{wide_msg}"
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            BARS_ACTIVE.fetch_add(1, Ordering::Relaxed);
            Sink::Bar(multi().add(bar))
        } else {
            Sink::Plain
        }
    }

    fn close(&mut self) {
        if let Sink::Bar(bar) = std::mem::replace(self, Sink::Off) {
            bar.finish_and_clear();
            multi().remove(&bar);
            BARS_ACTIVE.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Common JSON tail of `progress_*` objects: operation, msgid, type, finished, time.
fn progress_json(
    mut obj: Map<String, Value>,
    id: u64,
    msgid: &Option<String>,
    kind: &str,
    finished: bool,
) -> String {
    obj.insert("operation".into(), Value::from(id));
    obj.insert(
        "msgid".into(),
        msgid.as_deref().map(Value::from).unwrap_or(Value::Null),
    );
    obj.insert("type".into(), Value::from(kind));
    obj.insert("finished".into(), Value::from(finished));
    obj.insert("time".into(), Value::from(now_float()));
    dumps_line(&Value::Object(obj)) + "\n"
}

fn msgid_option(msgid: &str) -> Option<String> {
    if msgid.is_empty() {
        None
    } else {
        Some(msgid.to_string())
    }
}

/// borg's `ellipsis_truncate`: shorten to `space` columns with `...` in the middle.
pub fn ellipsis_truncate(msg: &str, space: usize) -> String {
    let chars: Vec<char> = msg.chars().collect();
    if space < 8 {
        return format!("...{}", " ".repeat(space.saturating_sub(3)));
    }
    if space < 3 + chars.len() {
        let head = (space / 2).saturating_sub(3);
        let tail = space.div_ceil(2);
        let head: String = chars[..head.min(chars.len())].iter().collect();
        let tail: String = chars[chars.len().saturating_sub(tail)..].iter().collect();
        return format!("{head}...{tail}");
    }
    format!("{msg}{}", " ".repeat(space - chars.len()))
}

/// Percentage progress (`%5.1f%% Extracting: %s`, `Checking segments %3.1f%%`, …).
///
/// `show*` is cheap when nothing is due: output happens only each time the percentage
/// reaches the next `step` (borg's trigger logic).
pub struct ProgressPercent {
    id: u64,
    msgid: Option<String>,
    total: u64,
    counter: u64,
    step: f64,
    trigger_at: f64,
    template: String,
    sink: Sink,
}

impl ProgressPercent {
    /// `msg` is a printf template whose first directive receives the percentage and the
    /// others the `info` strings; `msgid` "" means none (JSON `null`).
    pub fn new(total: u64, step: f64, msg: &str, msgid: &str) -> ProgressPercent {
        ProgressPercent {
            id: next_operation_id(),
            msgid: msgid_option(msgid),
            total,
            counter: 0,
            step,
            trigger_at: 0.0,
            template: msg.to_string(),
            sink: Sink::new(true),
        }
    }

    /// Change the total (extract computes it after creating the indicator).
    pub fn set_total(&mut self, total: u64) {
        self.total = total;
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// Report position `current` (or the previous position + 1 when None).
    pub fn show(&mut self, current: Option<u64>, info: Option<Vec<String>>) {
        if let Some(pct) = self.advance(current, 1) {
            self.emit(pct, info);
        }
    }

    /// Advance by `n` (bytes, items, …).
    pub fn show_increase(&mut self, n: u64, info: Option<Vec<String>>) {
        if let Some(pct) = self.advance(None, n) {
            self.emit(pct, info);
        }
    }

    /// Advance by `n`, building `info` only when a line is actually due.
    pub fn show_increase_with(&mut self, n: u64, info: impl FnOnce() -> Vec<String>) {
        if let Some(pct) = self.advance(None, n) {
            self.emit(pct, Some(info()));
        }
    }

    fn advance(&mut self, current: Option<u64>, increase: u64) -> Option<f64> {
        if let Some(c) = current {
            self.counter = c;
        }
        let counter = self.counter;
        self.counter = self.counter.saturating_add(increase);
        if matches!(self.sink, Sink::Off) || self.total == 0 {
            return None;
        }
        let pct = counter as f64 * 100.0 / self.total as f64;
        if pct >= self.trigger_at {
            self.trigger_at += self.step;
            Some(pct)
        } else {
            None
        }
    }

    fn emit(&mut self, pct: f64, info: Option<Vec<String>>) {
        let mut args = vec![PrintfArg::Float(pct)];
        let message = match &info {
            Some(items) => {
                let mut items = items.clone();
                let width = match self.sink {
                    Sink::Bar(_) => terminal_width(),
                    _ => None,
                };
                // On a terminal, truncate the last item so the line fits (as borg does).
                if let Some(width) = width {
                    if let Some(last) = items.pop() {
                        let mut probe = args.clone();
                        probe.extend(items.iter().map(|s| PrintfArg::Str(s)));
                        probe.push(PrintfArg::Str(""));
                        let used = printf(&self.template, &probe).chars().count() + 33;
                        items.push(ellipsis_truncate(&last, width.saturating_sub(used)));
                    }
                }
                args.extend(items.iter().map(|s| PrintfArg::Str(s)));
                printf(&self.template, &args)
            }
            None => printf(&self.template, &args),
        };
        self.output_with(&message, info, pct);
    }

    /// Show a message without changing the position (extract's initial "Calculating …").
    pub fn output(&mut self, message: &str) {
        let pct = if self.total > 0 {
            self.counter as f64 * 100.0 / self.total as f64
        } else {
            0.0
        };
        self.output_with(message, None, pct);
    }

    fn output_with(&mut self, message: &str, info: Option<Vec<String>>, pct: f64) {
        match &self.sink {
            Sink::Off => {}
            Sink::Json => {
                let mut obj = Map::new();
                obj.insert("message".into(), Value::from(message));
                obj.insert("current".into(), Value::from(self.counter));
                obj.insert("total".into(), Value::from(self.total));
                obj.insert("info".into(), info.map(Value::from).unwrap_or(Value::Null));
                let line = progress_json(obj, self.id, &self.msgid, "progress_percent", false);
                write_stderr_raw(&line);
            }
            Sink::Plain => write_stderr_raw(&format!("{message}\n")),
            Sink::Bar(bar) => {
                bar.set_position((pct * 10.0).clamp(0.0, 1000.0) as u64);
                bar.set_message(message.to_string());
            }
        }
    }

    /// End the operation (JSON: the `finished: true` object; terminal: clear the line).
    pub fn finish(&mut self) {
        if let Sink::Json = self.sink {
            write_stderr_raw(&progress_json(
                Map::new(),
                self.id,
                &self.msgid,
                "progress_percent",
                true,
            ));
        }
        self.sink.close();
    }
}

impl Drop for ProgressPercent {
    fn drop(&mut self) {
        self.sink.close();
    }
}

/// Message progress (`Initializing cache transaction: Reading config`, `Saving files cache`).
pub struct ProgressMessage {
    id: u64,
    msgid: Option<String>,
    sink: Sink,
}

impl ProgressMessage {
    /// `msgid` "" means none (JSON `null`).
    pub fn new(msgid: &str) -> ProgressMessage {
        ProgressMessage {
            id: next_operation_id(),
            msgid: msgid_option(msgid),
            sink: Sink::new(false),
        }
    }

    pub fn output(&mut self, msg: &str) {
        match &self.sink {
            Sink::Off => {}
            Sink::Json => {
                let mut obj = Map::new();
                obj.insert("message".into(), Value::from(msg));
                let line = progress_json(obj, self.id, &self.msgid, "progress_message", false);
                write_stderr_raw(&line);
            }
            Sink::Plain => write_stderr_raw(&format!("{msg}\n")),
            Sink::Bar(bar) => bar.set_message(msg.to_string()),
        }
    }

    pub fn finish(&mut self) {
        if let Sink::Json = self.sink {
            write_stderr_raw(&progress_json(
                Map::new(),
                self.id,
                &self.msgid,
                "progress_message",
                true,
            ));
        }
        self.sink.close();
    }
}

impl Drop for ProgressMessage {
    fn drop(&mut self) {
        self.sink.close();
    }
}

/// Sizes shown by archive progress.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArchiveProgressStats {
    pub original_size: u64,
    pub compressed_size: u64,
    pub deduplicated_size: u64,
    pub nfiles: u64,
}

/// create/recreate/import-tar progress: `{O} O {C} C {D} D {N} N {path}`, at most every
/// 0.2 s (the first call always shows).
pub struct ArchiveProgress {
    last: Option<Instant>,
    interval: Duration,
    sink: Sink,
}

impl Default for ArchiveProgress {
    fn default() -> Self {
        Self::new()
    }
}

impl ArchiveProgress {
    pub fn new() -> ArchiveProgress {
        ArchiveProgress {
            last: None,
            interval: Duration::from_millis(200),
            sink: Sink::new(false),
        }
    }

    /// Show progress if 0.2 s passed since the last output.
    pub fn show(&mut self, stats: &ArchiveProgressStats, path: &str) {
        if matches!(self.sink, Sink::Off) {
            return;
        }
        let now = Instant::now();
        if let Some(last) = self.last {
            if now.duration_since(last) <= self.interval {
                return;
            }
        }
        self.last = Some(now);
        self.show_now(stats, path);
    }

    /// Show progress now, ignoring the rate limit.
    pub fn show_now(&mut self, stats: &ArchiveProgressStats, path: &str) {
        match &self.sink {
            Sink::Off => {}
            Sink::Json => {
                let mut obj = Map::new();
                obj.insert("original_size".into(), Value::from(stats.original_size));
                obj.insert("compressed_size".into(), Value::from(stats.compressed_size));
                obj.insert(
                    "deduplicated_size".into(),
                    Value::from(stats.deduplicated_size),
                );
                obj.insert("nfiles".into(), Value::from(stats.nfiles));
                obj.insert("path".into(), Value::from(path));
                obj.insert("time".into(), Value::from(now_float()));
                obj.insert("type".into(), Value::from("archive_progress"));
                obj.insert("finished".into(), Value::from(false));
                write_stderr_raw(&(dumps_line(&Value::Object(obj)) + "\n"));
            }
            Sink::Plain => write_stderr_raw(&format!("{}{path}\n", archive_progress_prefix(stats))),
            Sink::Bar(bar) => {
                let mut msg = archive_progress_prefix(stats);
                let columns = terminal_width().unwrap_or(80).saturating_sub(1);
                let mut space = columns.saturating_sub(msg.chars().count());
                if space < 12 {
                    msg.clear();
                    space = columns;
                }
                if space >= 8 {
                    msg.push_str(ellipsis_truncate(path, space).trim_end());
                }
                bar.set_message(msg);
            }
        }
    }

    /// The final record (JSON `finished: true`; plain: an empty line; terminal: cleared).
    pub fn finish(&mut self) {
        match &self.sink {
            Sink::Json => {
                let mut obj = Map::new();
                obj.insert("time".into(), Value::from(now_float()));
                obj.insert("type".into(), Value::from("archive_progress"));
                obj.insert("finished".into(), Value::from(true));
                write_stderr_raw(&(dumps_line(&Value::Object(obj)) + "\n"));
            }
            Sink::Plain => write_stderr_raw("\n"),
            _ => {}
        }
        self.sink.close();
    }
}

impl Drop for ArchiveProgress {
    fn drop(&mut self) {
        self.sink.close();
    }
}

/// `100.54 kB O 100.53 kB C 100.53 kB D 4 N ` (borg's PROGRESS_FMT).
pub fn archive_progress_prefix(stats: &ArchiveProgressStats) -> String {
    let iec = iec();
    format!(
        "{} O {} C {} D {} N ",
        format_file_size(stats.original_size as i64, iec),
        format_file_size(stats.compressed_size as i64, iec),
        format_file_size(stats.deduplicated_size as i64, iec),
        stats.nfiles
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_like_borg() {
        // borg: ellipsis_truncate('this_is_a_very_long_string', 16) == 'this_...g_string'
        assert_eq!(
            ellipsis_truncate("this_is_a_very_long_string", 16),
            "this_...g_string"
        );
        assert_eq!(ellipsis_truncate("short", 10), "short     ");
        assert_eq!(ellipsis_truncate("whatever", 5), "...  ");
    }

    #[test]
    fn percent_triggers_each_step() {
        let _l = crate::output::capture::lock();
        // Without --progress nothing is emitted, but the counter still advances.
        let mut p = ProgressPercent::new(10, 5.0, "%3.0f%%", "test");
        p.show(Some(3), None);
        p.show_increase(2, None);
        assert_eq!(p.counter, 6);
        assert!(p.id >= 1);
    }

    #[test]
    fn archive_progress_text() {
        let s = ArchiveProgressStats {
            original_size: 100540,
            compressed_size: 0,
            deduplicated_size: 954,
            nfiles: 4,
        };
        assert_eq!(
            archive_progress_prefix(&s),
            "100.54 kB O 0 B C 954 B D 4 N "
        );
    }
}
