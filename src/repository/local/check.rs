//! Repository consistency check and repair (borg's `Repository.check`, what
//! `borg check --repository-only` runs): verify every segment entry of the committed log,
//! rebuild the index from the segments and compare it with the committed one.

use std::fs;
use std::time::Instant;

use super::*;
use crate::repository::segments::{Entry, MAGIC, MAX_TAG_ID};
use crate::repository::{CheckObserver, ObjectBatch};

/// Collects whether any problem was reported (each one is logged at ERROR).
#[derive(Default)]
struct Reporter {
    error_found: bool,
}

impl Reporter {
    fn error(&mut self, msg: &str) {
        self.error_found = true;
        log(Level::Error, msg);
    }
}

/// Python's repr of an index value: `(segment, offset)`.
fn location_text(v: Option<(u32, u32)>) -> String {
    match v {
        Some((s, o)) => format!("({s}, {o})"),
        None => "<not found>".to_string(),
    }
}

impl LocalRepository {
    /// Check the repository (`max_duration` > 0: partial check of the segments only, resumed
    /// from `last_segment_checked` in the config). With `repair`, damaged segments are
    /// rewritten with their intact entries, a missing commit is added and the index is
    /// rewritten. Returns whether the repository is fine (always true after a repair).
    pub fn check(&self, repair: bool, max_duration: f64) -> Result<bool> {
        self.check_feeding(repair, max_duration, None)
    }

    /// [`LocalRepository::check`], handing every intact object read to `observer`.
    pub fn check_feeding(
        &self,
        repair: bool,
        max_duration: f64,
        observer: Option<&dyn CheckObserver>,
    ) -> Result<bool> {
        if self.settings.append_only && repair {
            return Err(Error::exception(format!(
                "{} is in append-only mode",
                self.path_text()
            )));
        }
        let partial = max_duration > 0.0;
        if repair && partial {
            return Err(Error::exception(
                "repair and partial check cannot be combined",
            ));
        }
        self.ensure_write_lock()?;
        let mut report = Reporter::default();
        log(Level::Info, "Starting repository check");
        let mut st = self.write_state();
        if st.txn.is_some() {
            return Err(Error::exception(
                "cannot check during an active transaction",
            ));
        }

        // a corrupt index is recovered with a commit (transaction t + 1): as borg, the check
        // goes on with the transaction found before
        let segments_before = self.io.segments_transaction_id()?;
        let committed = self.ensure_index(&mut st).and_then(|()| match st.txn_id {
            Some(t) => self
                .open_index(t)
                .map(|i| (Some(segments_before.unwrap_or(t)), Some(i))),
            None => Ok((None, None)),
        });
        let (mut transaction_id, current_index) = match committed {
            Ok((t, idx)) => {
                if let Some(t) = t {
                    log(
                        Level::Debug,
                        &format!("Read committed index of transaction {t}"),
                    );
                }
                (t, idx)
            }
            Err(e) => {
                log(
                    Level::Debug,
                    &format!("Failed to read committed index ({e})"),
                );
                (self.io.segments_transaction_id()?, None)
            }
        };
        if transaction_id.is_none() {
            log(Level::Debug, "No segments transaction found");
            transaction_id = self.index_transaction_id()?;
        }
        if transaction_id.is_none() {
            log(
                Level::Debug,
                "No index transaction found, trying latest segment",
            );
            transaction_id = self.io.latest_segment()?;
        }
        let Some(transaction_id) = transaction_id else {
            report.error("This repository contains no valid data.");
            return Ok(false);
        };
        if repair {
            self.cleanup(Some(transaction_id))?;
        }
        let segments_transaction_id = self.io.segments_transaction_id()?;
        log(
            Level::Debug,
            &format!("Segment transaction is    {segments_transaction_id:?}"),
        );
        log(
            Level::Debug,
            &format!("Determined transaction is {transaction_id}"),
        );
        let mut index = NsIndex::new();
        let mut hints = Hints::default();
        let segment_list = self.io.segment_list(None, false)?;
        log(
            Level::Debug,
            &format!("Found {} segments", segment_list.len()),
        );

        let last_segment_checked: i64 = if partial {
            let last = self
                .config_guard()
                .get("repository", "last_segment_checked")
                .and_then(parse_int)
                .unwrap_or(-1);
            log(
                Level::Info,
                &format!("skipping to segments >= {}", last + 1),
            );
            last
        } else {
            self.update_config(|c| {
                c.remove("repository", "last_segment_checked");
            })?;
            -1
        };
        let started = Instant::now();
        let mut feed = observer.map(Feed::new);
        let mut pi = output::ProgressPercent::new(
            segment_list.len() as u64,
            0.1,
            "Checking segments %3.1f%%",
            "repository.check",
        );
        let mut segment: i64 = -1;
        let mut interrupted = false;
        for (i, (seg, filename)) in segment_list.iter().enumerate() {
            pi.show(Some(i as u64), None);
            segment = *seg as i64;
            if segment <= last_segment_checked || *seg > transaction_id {
                continue;
            }
            log(
                Level::Debug,
                &format!("checking segment file {}...", filename.display()),
            );
            let objects = match self.read_entries(*seg, feed.as_mut()) {
                Ok(o) => o,
                Err(err) => {
                    report.error(&err.message);
                    if repair {
                        self.recover_segment(*seg, filename)?;
                        self.read_entries(*seg, feed.as_mut())?
                    } else {
                        Vec::new()
                    }
                }
            };
            if !partial {
                self.apply_entries(&mut index, &mut hints, *seg, objects.into_iter().map(Ok))?;
            }
            if partial && started.elapsed().as_secs_f64() > max_duration {
                log(
                    Level::Info,
                    &format!("finished partial segment check, last segment checked is {seg}"),
                );
                self.update_config(|c| {
                    c.set("repository", "last_segment_checked", &seg.to_string())
                })?;
                interrupted = true;
                break;
            }
        }
        pi.finish();
        if let Some(feed) = feed {
            feed.flush();
        }
        if !interrupted {
            log(
                Level::Info,
                &format!("finished segment check at segment {segment}"),
            );
            self.update_config(|c| {
                c.remove("repository", "last_segment_checked");
            })?;
        }

        if repair && segments_transaction_id.is_none() {
            report.error(&format!("Adding commit tag to segment {transaction_id}"));
            let mut writer = SegmentWriter::new(transaction_id + 1, self.settings.max_segment_size);
            writer.write_commit(&self.io, false)?;
        }
        if !partial {
            log(Level::Info, "Starting repository index check");
            if let (Some(current), false) = (current_index.as_ref(), repair) {
                if !current.is_empty() {
                    compare_indexes(current, &index, &mut report);
                }
            }
            if repair {
                let t = self.io.segments_transaction_id()?.unwrap_or(transaction_id);
                self.write_index(&index, &hints, t)?;
            }
        }
        // forget everything; the next access loads the (possibly repaired) index again
        st.index = None;
        st.hints = None;
        st.txn_id = None;
        self.io.close_all();
        let mode = if partial { "partial" } else { "full" };
        if report.error_found {
            if repair {
                log(
                    Level::Info,
                    &format!("Finished {mode} repository check, errors found and repaired."),
                );
            } else {
                log(
                    Level::Error,
                    &format!("Finished {mode} repository check, errors found."),
                );
            }
        } else {
            log(
                Level::Info,
                &format!("Finished {mode} repository check, no problems found."),
            );
        }
        Ok(!report.error_found || repair)
    }

    /// Every entry of a segment, CRCs checked; the objects' data goes to `feed` if given.
    fn read_entries(&self, segment: u32, feed: Option<&mut Feed<'_>>) -> Result<Vec<Entry>> {
        let mut entries = self.io.iter_objects(segment, false)?;
        let Some(feed) = feed else {
            return entries.collect();
        };
        let mut out = Vec::new();
        while let Some(entry) = entries.next_into(&mut feed.batch.data) {
            let entry = entry?;
            if entry.tag == TAG_PUT {
                feed.added(entry.key);
            }
            out.push(entry);
        }
        Ok(out)
    }

    /// Change the config and save it (borg's `save_config`).
    fn update_config(&self, change: impl FnOnce(&mut Ini)) -> Result<()> {
        let mut config = self.config_guard();
        change(&mut config);
        save_config(&self.path, &config, self.do_lock)
    }

    /// Rewrite a damaged segment with every entry whose header and CRC are intact, found by
    /// scanning byte by byte (borg's `recover_segment`).
    fn recover_segment(&self, segment: u32, filename: &Path) -> Result<()> {
        log(
            Level::Info,
            &format!("attempting to recover {}", filename.display()),
        );
        self.io.forget_fd(segment);
        let data = fs::read(filename).map_err(|e| os_err(&e, filename))?;
        let mut out = MAGIC.to_vec();
        if data.len() >= MAGIC.len() + HEADER_SIZE {
            let mut d = &data[..];
            while d.len() >= HEADER_SIZE {
                let crc = u32::from_le_bytes([d[0], d[1], d[2], d[3]]);
                let size = u32::from_le_bytes([d[4], d[5], d[6], d[7]]) as usize;
                let tag = d[8];
                let plausible = size <= MAX_OBJECT_SIZE
                    && tag <= MAX_TAG_ID
                    && size >= HEADER_SIZE
                    && size <= d.len();
                if !plausible || crc32fast::hash(&d[4..size]) != crc {
                    d = &d[1..];
                    continue;
                }
                out.extend_from_slice(&d[..size]);
                d = &d[size..];
            }
        }
        save_file(filename, &out)
    }
}

/// Objects read are gathered into batches of about this size for the observer.
pub const FEED_BATCH_BYTES: usize = 2 << 20;

/// The batch being filled for a [`CheckObserver`].
struct Feed<'a> {
    observer: &'a dyn CheckObserver,
    batch: ObjectBatch,
}

impl<'a> Feed<'a> {
    fn new(observer: &'a dyn CheckObserver) -> Feed<'a> {
        Feed {
            observer,
            batch: ObjectBatch {
                data: observer.buffer(),
                objects: Vec::new(),
            },
        }
    }

    /// The data of `id` has just been appended to the batch.
    fn added(&mut self, id: ObjectId) {
        self.batch.objects.push((id, self.batch.data.len()));
        if self.batch.data.len() >= FEED_BATCH_BYTES {
            let next = ObjectBatch {
                data: self.observer.buffer(),
                objects: Vec::new(),
            };
            self.observer
                .objects(std::mem::replace(&mut self.batch, next));
        }
    }

    fn flush(self) {
        if !self.batch.objects.is_empty() {
            self.observer.objects(self.batch);
        }
    }
}

/// Report every difference between the committed index and the rebuilt one.
fn compare_indexes(current: &NsIndex, rebuilt: &NsIndex, report: &mut Reporter) {
    if current.len() != rebuilt.len() {
        report.error("Index object count mismatch.");
        log(
            Level::Error,
            &format!("committed index: {} objects", current.len()),
        );
        log(
            Level::Error,
            &format!("rebuilt index:   {} objects", rebuilt.len()),
        );
    } else {
        log(Level::Info, "Index object count match.");
    }
    let line = |key: &ObjectId, value: Option<(u32, u32)>, current: Option<(u32, u32)>| {
        format!(
            "ID: {:<64} rebuilt index: {:<16} committed index: {:<16}",
            hex::encode(key),
            location_text(value),
            location_text(current)
        )
    };
    for (key, value) in rebuilt.iter() {
        let cur = current.get(&key);
        if cur != Some(value) {
            // borg logs the differing entries as warnings: they do not fail the check
            log(Level::Warning, &line(&key, Some(value), cur));
        }
    }
    for (key, cur) in current.iter() {
        if rebuilt.contains(&key) {
            continue;
        }
        log(Level::Warning, &line(&key, None, Some(cur)));
    }
}
