//! Comparing two archives item by item (borg's `diff`, cli.md §4.7, §9.6, §10.4).
//!
//! The walk mirrors borg 1.2's `Archive.compare_archives_iter`: both item streams are read in
//! lock step; an item is compared as soon as its partner from the other archive has been seen,
//! items without a partner are reported as added/removed after the walk, and hardlink slaves
//! whose master was not seen yet are compared last. Per pair, the change list follows borg's
//! `ItemDiff` (link, content, presence, then owner/mode/times).

use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;

use rmpv::Value;
use serde_json::{json, Map, Value as Json};

use crate::archive::item::{ChunkRef, Item, S_IFBLK, S_IFCHR, S_IFIFO, S_IFMT, S_IFREG};
use crate::archive::prefetch::{prefetch, DEFAULT_BUDGET};
use crate::archive::{display_bytes, Archive};
use crate::chunker::ChunkerParams;
use crate::crypto::Key;
use crate::errors::{Result, WarningKind};
use crate::output::human::{format_file_size, format_file_size_signed};
use crate::output::human::{format_item_time, isoformat_item_time};
use crate::output::json::insert_text_with_b64;
use crate::output::listing::filemode;
use crate::repository::Repository;

/// How two archives are compared.
#[derive(Debug, Clone, Copy, Default)]
pub struct DiffOptions {
    /// Chunk lists are comparable (equal chunker params): content changes are computed from
    /// chunk ids; otherwise contents are fetched and compared byte by byte.
    pub can_compare_chunk_ids: bool,
    /// Only content changes count (no owner/mode/time entries).
    pub content_only: bool,
    /// Compare uid/gid instead of user/group names. borg's `diff` accepts `--numeric-ids` but
    /// never hands it to the comparison, so its command leaves this off.
    pub numeric_ids: bool,
    /// Include checkpoint part items (`--consider-part-files`).
    pub consider_part_files: bool,
}

/// What the archives' stored chunker params say about comparing chunk ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkerParamsMatch {
    Same,
    Different,
    /// At least one archive does not record its chunker params.
    Unknown,
}

/// Compare the `chunker_params` of two archives (borg's `normalize_chunker_params`: the
/// algorithm-less 4-tuple of borg < 1.2 means buzhash).
pub fn compare_chunker_params(a: Option<&Value>, b: Option<&Value>) -> ChunkerParamsMatch {
    let (Some(a), Some(b)) = (a, b) else {
        return ChunkerParamsMatch::Unknown;
    };
    let same = match (ChunkerParams::from_value(a), ChunkerParams::from_value(b)) {
        (Ok(pa), Ok(pb)) => pa == pb,
        _ => a == b,
    };
    if same {
        ChunkerParamsMatch::Same
    } else {
        ChunkerParamsMatch::Different
    }
}

/// A user/group value as compared: names (default) or numeric ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerValue {
    Name(Option<Vec<u8>>),
    Id(Option<u32>),
}

impl OwnerValue {
    /// Python's `str()` of the value (`None` when absent).
    fn text(&self) -> String {
        match self {
            OwnerValue::Name(Some(n)) => display_bytes(n),
            OwnerValue::Id(Some(i)) => i.to_string(),
            _ => "None".to_string(),
        }
    }

    fn json(&self) -> Json {
        match self {
            OwnerValue::Name(Some(n)) => Json::String(display_bytes(n)),
            OwnerValue::Id(Some(i)) => Json::from(*i),
            _ => Json::Null,
        }
    }
}

/// Which timestamp a [`Change::Time`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeAttr {
    Ctime,
    Mtime,
}

impl TimeAttr {
    fn name(self) -> &'static str {
        match self {
            TimeAttr::Ctime => "ctime",
            TimeAttr::Mtime => "mtime",
        }
    }
}

/// One change of an item between the archives (one entry of borg's `ItemDiff.changes()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Content differs; `(added, removed)` bytes when chunk ids could be compared.
    Modified {
        sizes: Option<(u64, u64)>,
    },
    /// A file with content appeared (its size).
    Added {
        size: u64,
    },
    /// A file with content disappeared (its size).
    Removed {
        size: u64,
    },
    /// A link/directory/device/fifo appeared (`added`) or disappeared.
    Presence {
        added: bool,
        kind: &'static str,
    },
    /// A symlink points elsewhere.
    ChangedLink,
    Owner {
        old_user: OwnerValue,
        old_group: OwnerValue,
        new_user: OwnerValue,
        new_group: OwnerValue,
    },
    Mode {
        old: u32,
        new: u32,
    },
    Time {
        attr: TimeAttr,
        old: i64,
        new: i64,
    },
}

impl Change {
    /// The change string of the text output.
    pub fn text(&self) -> String {
        match self {
            Change::Modified { sizes: None } => "modified".to_string(),
            Change::Modified {
                sizes: Some((added, removed)),
            } => format!(
                "{:>9} {:>9}",
                format_file_size_signed(*added as i64, 1, false),
                format_file_size_signed(-(*removed as i64), 1, false)
            ),
            Change::Added { size } => {
                format!("added {:>13}", format_file_size(*size as i64, false))
            }
            Change::Removed { size } => {
                format!("removed {:>11}", format_file_size(*size as i64, false))
            }
            Change::Presence { added, kind } => {
                format!("{} {kind}", if *added { "added" } else { "removed" })
            }
            Change::ChangedLink => "changed link".to_string(),
            Change::Owner {
                old_user,
                old_group,
                new_user,
                new_group,
            } => format!(
                "[{}:{} -> {}:{}]",
                old_user.text(),
                old_group.text(),
                new_user.text(),
                new_group.text()
            ),
            Change::Mode { old, new } => format!("[{} -> {}]", filemode(*old), filemode(*new)),
            Change::Time { attr, old, new } => format!(
                "[{}: {} -> {}]",
                attr.name(),
                format_item_time(*old),
                format_item_time(*new)
            ),
        }
    }

    /// The change object of the `--json-lines` output.
    pub fn json(&self) -> Json {
        match self {
            Change::Modified { sizes: None } => json!({"type": "modified"}),
            Change::Modified {
                sizes: Some((added, removed)),
            } => json!({"type": "modified", "added": added, "removed": removed}),
            Change::Added { size } => json!({"type": "added", "size": size}),
            Change::Removed { size } => json!({"type": "removed", "size": size}),
            Change::Presence { .. } | Change::ChangedLink => json!({"type": self.text()}),
            Change::Owner {
                old_user,
                old_group,
                new_user,
                new_group,
            } => json!({
                "type": "owner",
                "old_user": old_user.json(),
                "old_group": old_group.json(),
                "new_user": new_user.json(),
                "new_group": new_group.json(),
            }),
            Change::Mode { old, new } => {
                json!({"type": "mode", "old_mode": filemode(*old), "new_mode": filemode(*new)})
            }
            Change::Time { attr, old, new } => {
                let mut m = Map::new();
                m.insert("type".into(), Json::from(attr.name()));
                m.insert(
                    format!("old_{}", attr.name()),
                    Json::from(isoformat_item_time(*old)),
                );
                m.insert(
                    format!("new_{}", attr.name()),
                    Json::from(isoformat_item_time(*new)),
                );
                Json::Object(m)
            }
        }
    }

    /// Bytes added and removed by this change (the `size_*` sort keys of borg 1.4).
    fn added_removed(&self) -> (u64, u64) {
        match self {
            Change::Modified {
                sizes: Some((a, r)),
            } => (*a, *r),
            Change::Added { size } => (*size, 0),
            Change::Removed { size } => (0, *size),
            _ => (0, 0),
        }
    }
}

/// Two chunk lists whose contents must be compared byte by byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentPair {
    pub old: Vec<ChunkRef>,
    pub new: Vec<ChunkRef>,
}

impl ContentPair {
    fn bytes(&self) -> u64 {
        self.old.iter().map(|c| c.size as u64).sum()
    }
}

/// Compares the contents of a batch of pairs (true: same bytes), one answer per pair.
pub type ContentsEqualFn<'a> = dyn FnMut(&[ContentPair]) -> Result<Vec<bool>> + 'a;

/// The state of one side of a compared pair, as far as sorting needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SideInfo {
    /// Nothing at this path in this archive.
    pub deleted: bool,
    pub user: Option<Vec<u8>>,
    pub group: Option<Vec<u8>>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub ctime: Option<i64>,
    pub mtime: Option<i64>,
    /// borg's `get_size()` of the item.
    pub size: u64,
}

/// The comparison result for one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemDiff {
    pub path: Vec<u8>,
    /// Nothing differs in the compared attributes (such items are not shown).
    pub equal: bool,
    pub changes: Vec<Change>,
    /// Archive 1's and archive 2's side (hardlink slaves replaced by their master).
    pub old: SideInfo,
    pub new: SideInfo,
}

impl ItemDiff {
    /// borg's text line: the change strings in a 19-column field, a space, the path.
    pub fn text_line(&self) -> String {
        let changes: Vec<String> = self.changes.iter().map(Change::text).collect();
        format!("{:<19} {}", changes.join(" "), display_bytes(&self.path))
    }

    /// The `--json-lines` object (`path_b64` added for paths that are not UTF-8).
    pub fn json(&self) -> Json {
        let mut m = Map::new();
        m.insert(
            "changes".into(),
            Json::Array(self.changes.iter().map(Change::json).collect()),
        );
        insert_text_with_b64(&mut m, "path", &self.path);
        Json::Object(m)
    }
}

/// One side of a pair: an archive item, or borg's `Item.create_deleted` placeholder.
#[derive(Debug)]
struct Side {
    item: Item,
    deleted: bool,
}

impl Side {
    fn present(item: Item) -> Rc<Side> {
        Rc::new(Side {
            item,
            deleted: false,
        })
    }

    /// borg's deleted item: mode 0, an empty chunk list, nothing else.
    fn deleted(path: &[u8]) -> Rc<Side> {
        Rc::new(Side {
            item: Item {
                path: path.to_vec(),
                mode: Some(0),
                chunks: Some(Vec::new()),
                ..Item::default()
            },
            deleted: true,
        })
    }

    fn mode(&self) -> Option<u32> {
        self.item.mode
    }

    fn is_type(&self, kind: u32) -> bool {
        self.mode().is_some_and(|m| m & S_IFMT == kind)
    }

    /// Types borg supports hardlinks for.
    fn hardlinkable(&self) -> bool {
        [S_IFREG, S_IFBLK, S_IFCHR, S_IFIFO]
            .iter()
            .any(|&k| self.is_type(k))
    }

    /// borg's `get_size()`: the stored size, else the symlink target length, else the sum of
    /// the chunk sizes (0 without chunks).
    fn size(&self) -> u64 {
        let item = &self.item;
        if let Some(s) = item.size {
            return s;
        }
        if item.is_symlink() {
            return item.source.as_ref().map_or(0, |s| s.len() as u64);
        }
        item.chunks
            .as_ref()
            .map_or(0, |c| c.iter().map(|c| c.size as u64).sum())
    }

    fn owner(&self, numeric_ids: bool) -> (OwnerValue, OwnerValue) {
        let item = &self.item;
        if numeric_ids {
            (OwnerValue::Id(item.uid), OwnerValue::Id(item.gid))
        } else {
            (
                OwnerValue::Name(item.user.clone()),
                OwnerValue::Name(item.group.clone()),
            )
        }
    }

    /// The item's `ctime`/`mtime` (the placeholder has none).
    fn time(&self, attr: TimeAttr) -> Option<i64> {
        match (self.deleted, attr) {
            (true, _) => None,
            (false, TimeAttr::Ctime) => self.item.ctime,
            (false, TimeAttr::Mtime) => Some(self.item.mtime),
        }
    }

    fn info(&self) -> SideInfo {
        let item = &self.item;
        SideInfo {
            deleted: self.deleted,
            user: item.user.clone(),
            group: item.group.clone(),
            uid: item.uid,
            gid: item.gid,
            ctime: self.time(TimeAttr::Ctime),
            mtime: self.time(TimeAttr::Mtime),
            size: if self.deleted { 0 } else { self.size() },
        }
    }
}

/// How far two sides are equal without looking at file contents.
enum Equality {
    Equal,
    Different,
    /// Equal unless the contents differ.
    IfContentsEqual(ContentPair),
}

/// Compare two sides. When only the contents can decide, `equal` is left false and the
/// pair to compare is returned with the diff.
fn compare_sides(
    path: &[u8],
    s1: &Side,
    s2: &Side,
    opts: &DiffOptions,
) -> (ItemDiff, Option<ContentPair>) {
    let (equal, pending) = match sides_equal(s1, s2, opts) {
        Equality::Equal => (true, None),
        Equality::Different => (false, None),
        Equality::IfContentsEqual(pair) => (false, Some(pair)),
    };
    let mut changes = Vec::new();
    let (i1, i2) = (&s1.item, &s2.item);
    if i1.is_symlink() || i2.is_symlink() {
        changes.extend(link_change(s1, s2));
    }
    if let (Some(c1), Some(c2)) = (&i1.chunks, &i2.chunks) {
        changes.push(content_change(s1, s2, c1, c2, opts));
    }
    for (kind, name) in [
        (crate::archive::item::S_IFDIR, "directory"),
        (S_IFBLK, "blkdev"),
        (S_IFCHR, "chrdev"),
        (S_IFIFO, "fifo"),
    ] {
        if s1.is_type(kind) || s2.is_type(kind) {
            changes.extend(presence_change(s1, s2, name));
        }
    }
    if !(s1.deleted || s2.deleted || opts.content_only) {
        let (u1, g1) = s1.owner(opts.numeric_ids);
        let (u2, g2) = s2.owner(opts.numeric_ids);
        if (&u1, &g1) != (&u2, &g2) {
            changes.push(Change::Owner {
                old_user: u1,
                old_group: g1,
                new_user: u2,
                new_group: g2,
            });
        }
        if let (Some(m1), Some(m2)) = (s1.mode(), s2.mode()) {
            if m1 != m2 {
                changes.push(Change::Mode { old: m1, new: m2 });
            }
        }
        for attr in [TimeAttr::Ctime, TimeAttr::Mtime] {
            if let (Some(t1), Some(t2)) = (s1.time(attr), s2.time(attr)) {
                if t1 != t2 {
                    changes.push(Change::Time {
                        attr,
                        old: t1,
                        new: t2,
                    });
                }
            }
        }
    }
    let diff = ItemDiff {
        path: path.to_vec(),
        equal,
        changes,
        old: s1.info(),
        new: s2.info(),
    };
    (diff, pending)
}

/// borg's `ItemDiff._equal`, the content comparison left to the caller.
fn sides_equal(s1: &Side, s2: &Side, opts: &DiffOptions) -> Equality {
    let verdict = |same: bool| {
        if same {
            Equality::Equal
        } else {
            Equality::Different
        }
    };
    if s1.deleted && s2.deleted {
        return Equality::Equal;
    }
    let (i1, i2) = (&s1.item, &s2.item);
    if s1.deleted != s2.deleted || i1.source != i2.source {
        return Equality::Different;
    }
    if !opts.content_only {
        let times_differ = [TimeAttr::Ctime, TimeAttr::Mtime]
            .iter()
            .any(|&a| s1.time(a) != s2.time(a));
        if i1.mode != i2.mode
            || times_differ
            || s1.owner(opts.numeric_ids) != s2.owner(opts.numeric_ids)
        {
            return Equality::Different;
        }
    }
    match (&i1.chunks, &i2.chunks) {
        (Some(c1), Some(c2)) => {
            if opts.can_compare_chunk_ids {
                verdict(c1 == c2)
            } else if s1.size() != s2.size() {
                Equality::Different
            } else {
                Equality::IfContentsEqual(ContentPair {
                    old: c1.clone(),
                    new: c2.clone(),
                })
            }
        }
        _ => Equality::Equal,
    }
}

fn presence_change(s1: &Side, s2: &Side, kind: &'static str) -> Option<Change> {
    match (s1.deleted, s2.deleted) {
        (false, true) => Some(Change::Presence { added: false, kind }),
        (true, false) => Some(Change::Presence { added: true, kind }),
        _ => None,
    }
}

fn link_change(s1: &Side, s2: &Side) -> Option<Change> {
    if let Some(c) = presence_change(s1, s2, "link") {
        return Some(c);
    }
    match (&s1.item.source, &s2.item.source) {
        (Some(a), Some(b)) if a != b => Some(Change::ChangedLink),
        _ => None,
    }
}

fn content_change(
    s1: &Side,
    s2: &Side,
    c1: &[ChunkRef],
    c2: &[ChunkRef],
    opts: &DiffOptions,
) -> Change {
    if s1.deleted {
        return Change::Added { size: s2.size() };
    }
    if s2.deleted {
        return Change::Removed { size: s1.size() };
    }
    if !opts.can_compare_chunk_ids {
        return Change::Modified { sizes: None };
    }
    let ids1: HashSet<_> = c1.iter().map(|c| c.id).collect();
    let ids2: HashSet<_> = c2.iter().map(|c| c.id).collect();
    // Every occurrence of a chunk id only one side has counts (borg's get_size(consider_ids)).
    let only_in = |chunks: &[ChunkRef], other: &HashSet<_>| -> u64 {
        chunks
            .iter()
            .filter(|c| !other.contains(&c.id))
            .map(|c| c.size as u64)
            .sum()
    };
    Change::Modified {
        sizes: Some((only_in(c2, &ids1), only_in(c1, &ids2))),
    }
}

/// Paths in insertion order with removal by path (Python's `OrderedDict` as borg uses it:
/// re-inserting a present path keeps its place and replaces the item).
#[derive(Default)]
struct Orphans {
    slots: Vec<Option<Rc<Side>>>,
    index: HashMap<Vec<u8>, usize>,
}

impl Orphans {
    fn insert(&mut self, side: Rc<Side>) {
        match self.index.get(&side.item.path) {
            Some(&i) => self.slots[i] = Some(side),
            None => {
                self.index.insert(side.item.path.clone(), self.slots.len());
                self.slots.push(Some(side));
            }
        }
    }

    fn pop(&mut self, path: &[u8]) -> Option<Rc<Side>> {
        let i = self.index.remove(path)?;
        self.slots[i].take()
    }

    fn into_values(self) -> impl Iterator<Item = Rc<Side>> {
        self.slots.into_iter().flatten()
    }
}

/// The state of the walk over both archives.
struct Walk<'a> {
    opts: DiffOptions,
    /// Pairs of hardlink masters (and of plain files, which may be masters) by path.
    masters: HashMap<Vec<u8>, (Rc<Side>, Rc<Side>)>,
    deferred: Vec<(Rc<Side>, Rc<Side>)>,
    contents_equal: &'a mut ContentsEqualFn<'a>,
    emit: &'a mut dyn FnMut(ItemDiff) -> Result<()>,
    /// Diffs held back (in order) until the contents of their pairs are compared in a batch.
    queue: Vec<(ItemDiff, Option<ContentPair>)>,
    queued_pairs: usize,
    queued_bytes: u64,
}

/// A batch of content comparisons is run once this many pairs or bytes are waiting.
const CONTENT_BATCH_PAIRS: usize = 1024;
const CONTENT_BATCH_BYTES: u64 = 64 * 1024 * 1024;

impl Walk<'_> {
    fn master_seen(&self, s: &Side) -> bool {
        match &s.item.source {
            Some(src) if s.hardlinkable() => self.masters.contains_key(src),
            _ => true,
        }
    }

    fn is_master(s: &Side) -> bool {
        s.item.hardlink_master.unwrap_or(true) && s.item.source.is_none() && s.hardlinkable()
    }

    fn note_masters(&mut self, s1: &Rc<Side>, s2: &Rc<Side>) {
        if Self::is_master(s1) || Self::is_master(s2) {
            self.masters
                .insert(s1.item.path.clone(), (s1.clone(), s2.clone()));
        }
    }

    /// A hardlink slave stands for its master's content (side 0 or 1 of the master pair).
    fn resolve(&self, s: &Rc<Side>, which: usize) -> Rc<Side> {
        if s.hardlinkable() {
            if let Some(pair) = s.item.source.as_ref().and_then(|p| self.masters.get(p)) {
                return if which == 0 {
                    pair.0.clone()
                } else {
                    pair.1.clone()
                };
            }
        }
        s.clone()
    }

    fn compare(&mut self, path: &[u8], s1: &Rc<Side>, s2: &Rc<Side>) -> Result<()> {
        let r1 = self.resolve(s1, 0);
        let r2 = self.resolve(s2, 1);
        let (diff, pending) = compare_sides(path, &r1, &r2, &self.opts);
        match pending {
            None if self.queue.is_empty() => (self.emit)(diff),
            None => {
                self.queue.push((diff, None));
                Ok(())
            }
            Some(pair) => {
                self.queued_pairs += 1;
                self.queued_bytes += pair.bytes();
                self.queue.push((diff, Some(pair)));
                if self.queued_pairs >= CONTENT_BATCH_PAIRS
                    || self.queued_bytes >= CONTENT_BATCH_BYTES
                {
                    self.flush()?;
                }
                Ok(())
            }
        }
    }

    /// Compare the contents of the queued pairs and emit the queued diffs in order.
    fn flush(&mut self) -> Result<()> {
        let queue = std::mem::take(&mut self.queue);
        self.queued_pairs = 0;
        self.queued_bytes = 0;
        let mut diffs = Vec::with_capacity(queue.len());
        let mut pairs = Vec::new();
        for (diff, pair) in queue {
            diffs.push((diff, pair.is_some()));
            pairs.extend(pair);
        }
        let answers = if pairs.is_empty() {
            Vec::new()
        } else {
            (self.contents_equal)(&pairs)?
        };
        let mut answers = answers.into_iter();
        for (mut diff, pending) in diffs {
            if pending {
                diff.equal = answers.next().unwrap_or(false);
            }
            (self.emit)(diff)?;
        }
        Ok(())
    }

    /// Compare a pair now, or later when a hardlink master is still to come.
    fn pair(&mut self, s1: Rc<Side>, s2: Rc<Side>) -> Result<()> {
        self.note_masters(&s1, &s2);
        if !self.master_seen(&s1) || !self.master_seen(&s2) {
            self.deferred.push((s1, s2));
            return Ok(());
        }
        let path = s1.item.path.clone();
        self.compare(&path, &s1, &s2)
    }

    fn run(
        &mut self,
        items1: &mut dyn Iterator<Item = Result<Item>>,
        items2: &mut dyn Iterator<Item = Result<Item>>,
    ) -> Result<()> {
        let mut orphans1 = Orphans::default();
        let mut orphans2 = Orphans::default();
        loop {
            let i1 = items1.next().transpose()?;
            let i2 = items2.next().transpose()?;
            match (i1, i2) {
                (None, None) => break,
                (Some(a), Some(b)) if a.path == b.path => {
                    self.pair(Side::present(a), Side::present(b))?;
                }
                (i1, i2) => {
                    if let Some(a) = i1 {
                        let a = Side::present(a);
                        match orphans2.pop(&a.item.path) {
                            Some(b) => self.pair(a, b)?,
                            None => orphans1.insert(a),
                        }
                    }
                    if let Some(b) = i2 {
                        let b = Side::present(b);
                        match orphans1.pop(&b.item.path) {
                            Some(a) => self.pair(a, b)?,
                            None => orphans2.insert(b),
                        }
                    }
                }
            }
        }
        for added in orphans2.into_values() {
            let gone = Side::deleted(&added.item.path);
            self.note_masters(&gone, &added);
            self.compare(&added.item.path, &gone, &added)?;
        }
        for removed in orphans1.into_values() {
            let gone = Side::deleted(&removed.item.path);
            self.note_masters(&removed, &gone);
            self.compare(&removed.item.path, &removed, &gone)?;
        }
        for (s1, s2) in std::mem::take(&mut self.deferred) {
            let (seen1, seen2) = (self.master_seen(&s1), self.master_seen(&s2));
            if seen1 && seen2 {
                self.compare(&s1.item.path, &s1, &s2)?;
                continue;
            }
            // borg 1.4 warns and skips (1.2 fails an assertion).
            for (seen, s) in [(seen1, &s1), (seen2, &s2)] {
                if !seen {
                    crate::output::warn_kind(
                        WarningKind::Generic,
                        &format!(
                            "cannot find hardlink source for {} ({}), skipping compare.",
                            display_bytes(&s.item.path),
                            display_bytes(s.item.source.as_deref().unwrap_or_default())
                        ),
                    );
                }
            }
        }
        self.flush()
    }
}

/// Compare two item sequences (already filtered) and hand every pair's [`ItemDiff`] to
/// `emit`, equal ones included, in borg's order.
pub fn compare_item_streams(
    items1: &mut dyn Iterator<Item = Result<Item>>,
    items2: &mut dyn Iterator<Item = Result<Item>>,
    opts: &DiffOptions,
    contents_equal: &mut ContentsEqualFn,
    emit: &mut dyn FnMut(ItemDiff) -> Result<()>,
) -> Result<()> {
    let mut walk = Walk {
        opts: *opts,
        masters: HashMap::new(),
        deferred: Vec::new(),
        contents_equal,
        emit,
        queue: Vec::new(),
        queued_pairs: 0,
        queued_bytes: 0,
    };
    walk.run(items1, items2)
}

/// Compare two archives of one repository: items selected by `select` (and not checkpoint
/// parts unless `opts.consider_part_files`) are walked in borg's order; every pair's
/// [`ItemDiff`] (equal ones included) goes to `emit`.
pub fn compare_archives(
    repo: &Arc<dyn Repository>,
    key: &Arc<Key>,
    archive1: &Archive,
    archive2: &Archive,
    select: &dyn Fn(&[u8]) -> bool,
    opts: &DiffOptions,
    emit: &mut dyn FnMut(ItemDiff) -> Result<()>,
) -> Result<()> {
    let keep = |item: &Result<Item>| match item {
        Ok(i) => (opts.consider_part_files || i.part.is_none()) && select(&i.path),
        Err(_) => true,
    };
    let mut items1 = archive1.items(repo.clone(), key.clone()).filter(keep);
    let mut items2 = archive2.items(repo.clone(), key.clone()).filter(keep);
    let mut contents = |pairs: &[ContentPair]| contents_equal_batch(repo, key, pairs);
    compare_item_streams(&mut items1, &mut items2, opts, &mut contents, emit)
}

/// Files up to this size are compared in batches (one fetch stream per side for many
/// files); larger ones on their own, stopping at the first difference.
const BATCHED_FILE_MAX: u64 = 4 * 1024 * 1024;

/// Compare the contents of many pairs: the small ones through one parallel fetch stream
/// per side (no round trip per file), the large ones one by one with an early exit.
pub fn contents_equal_batch(
    repo: &Arc<dyn Repository>,
    key: &Arc<Key>,
    pairs: &[ContentPair],
) -> Result<Vec<bool>> {
    let mut answers = vec![false; pairs.len()];
    let small: Vec<usize> = (0..pairs.len())
        .filter(|&i| pairs[i].bytes() <= BATCHED_FILE_MAX)
        .collect();
    let stream = |side: fn(&ContentPair) -> &Vec<ChunkRef>| {
        let ids: Vec<_> = small
            .iter()
            .flat_map(|&i| side(&pairs[i]).iter().map(|c| (c.id, c.size as u64)))
            .collect();
        prefetch(repo.clone(), key.clone(), ids, DEFAULT_BUDGET / 2)
    };
    let mut old = stream(|p| &p.old);
    let mut new = stream(|p| &p.new);
    for &i in &small {
        let a = concat_next(&mut old, pairs[i].old.len())?;
        let b = concat_next(&mut new, pairs[i].new.len())?;
        answers[i] = a == b;
    }
    for (i, pair) in pairs.iter().enumerate() {
        if pair.bytes() > BATCHED_FILE_MAX {
            answers[i] = contents_equal(repo, key, &pair.old, &pair.new)?;
        }
    }
    Ok(answers)
}

/// The next `n` objects of a fetch stream, concatenated.
fn concat_next(stream: &mut crate::archive::prefetch::Prefetch, n: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for _ in 0..n {
        let (data, _) = stream
            .next()
            .ok_or_else(crate::archive::prefetch::fetch_stopped)??;
        out.extend_from_slice(&data);
    }
    Ok(out)
}

/// Whether two chunk lists hold the same bytes (both fetched in parallel, compared as
/// streams, stopping at the first difference).
pub fn contents_equal(
    repo: &Arc<dyn Repository>,
    key: &Arc<Key>,
    chunks1: &[ChunkRef],
    chunks2: &[ChunkRef],
) -> Result<bool> {
    let ids = |c: &[ChunkRef]| -> Vec<_> { c.iter().map(|c| (c.id, c.size as u64)).collect() };
    let mut a = prefetch(repo.clone(), key.clone(), ids(chunks1), DEFAULT_BUDGET / 2);
    let mut b = prefetch(repo.clone(), key.clone(), ids(chunks2), DEFAULT_BUDGET / 2);
    let (mut buf_a, mut pos_a) = (Vec::new(), 0usize);
    let (mut buf_b, mut pos_b) = (Vec::new(), 0usize);
    loop {
        if pos_a == buf_a.len() {
            match a.next().transpose()? {
                Some((data, _)) => (buf_a, pos_a) = (data, 0),
                None => return Ok(pos_b == buf_b.len() && next_nonempty(&mut b)?.is_none()),
            }
            continue;
        }
        if pos_b == buf_b.len() {
            match b.next().transpose()? {
                Some((data, _)) => (buf_b, pos_b) = (data, 0),
                None => return Ok(false),
            }
            continue;
        }
        let n = (buf_a.len() - pos_a).min(buf_b.len() - pos_b);
        if buf_a[pos_a..pos_a + n] != buf_b[pos_b..pos_b + n] {
            return Ok(false);
        }
        pos_a += n;
        pos_b += n;
    }
}

/// The next chunk with data (empty chunks carry no bytes).
fn next_nonempty(it: &mut crate::archive::prefetch::Prefetch) -> Result<Option<Vec<u8>>> {
    for r in it.by_ref() {
        let (data, _) = r?;
        if !data.is_empty() {
            return Ok(Some(data));
        }
    }
    Ok(None)
}

/// A field of `--sort-by` (borg 1.4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortField {
    /// Path with undecodable bytes as `?` (borg 1.4's `--sort-by path`).
    Path,
    /// Path in Python's surrogate-escape code point order (borg 1.2's `--sort`).
    PathRaw,
    SizeAdded,
    SizeRemoved,
    SizeDiff,
    Size,
    User,
    Group,
    Uid,
    Gid,
    Ctime,
    Mtime,
    CtimeDiff,
    MtimeDiff,
}

/// One `--sort-by` entry: a field, descending with a `>` prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortSpec {
    pub field: SortField,
    pub descending: bool,
}

impl SortSpec {
    /// Parse `[<|>]FIELD`; None for unknown fields.
    pub fn parse(spec: &str) -> Option<SortSpec> {
        let spec = spec.trim();
        let (descending, name) = match spec.as_bytes().first() {
            Some(b'>') => (true, &spec[1..]),
            Some(b'<') => (false, &spec[1..]),
            _ => (false, spec),
        };
        let field = match name {
            "path" => SortField::Path,
            "size_added" => SortField::SizeAdded,
            "size_removed" => SortField::SizeRemoved,
            "size_diff" => SortField::SizeDiff,
            "size" => SortField::Size,
            "user" => SortField::User,
            "group" => SortField::Group,
            "uid" => SortField::Uid,
            "gid" => SortField::Gid,
            "ctime" => SortField::Ctime,
            "mtime" => SortField::Mtime,
            "ctime_diff" => SortField::CtimeDiff,
            "mtime_diff" => SortField::MtimeDiff,
            _ => return None,
        };
        Some(SortSpec { field, descending })
    }

    /// Parse a comma-separated `--sort-by` value (empty entries ignored).
    pub fn parse_list(text: &str) -> Option<Vec<SortSpec>> {
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(SortSpec::parse)
            .collect()
    }
}

/// A sort key value of borg 1.4's `key_for`.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum SortKey {
    Int(i128),
    Text(Vec<u8>),
    Codepoints(Vec<u32>),
}

/// Python's view of a surrogate-escaped path: code points, undecodable bytes as U+DC80..U+DCFF.
fn surrogate_codepoints(b: &[u8]) -> Vec<u32> {
    let mut out = Vec::with_capacity(b.len());
    for chunk in b.utf8_chunks() {
        out.extend(chunk.valid().chars().map(|c| c as u32));
        out.extend(chunk.invalid().iter().map(|&x| 0xDC00 + x as u32));
    }
    out
}

fn sort_key(field: SortField, d: &ItemDiff) -> SortKey {
    let sizes = || {
        d.changes.iter().fold((0i128, 0i128), |(a, r), c| {
            let (ca, cr) = c.added_removed();
            (a + ca as i128, r + cr as i128)
        })
    };
    // borg 1.4 reads archive 2's side (the deleted placeholder for removed items).
    let it = &d.new;
    let time_of = |s: &SideInfo, ctime: bool| -> i128 {
        (if ctime { s.ctime } else { s.mtime }).unwrap_or(0) as i128
    };
    let text = |v: &Option<Vec<u8>>| SortKey::Text(v.clone().unwrap_or_default());
    let id = |v: Option<u32>| SortKey::Int(v.map_or(-1, |v| v as i128));
    match field {
        SortField::Path => SortKey::Text(display_bytes(&d.path).into_bytes()),
        SortField::PathRaw => SortKey::Codepoints(surrogate_codepoints(&d.path)),
        SortField::SizeAdded => SortKey::Int(sizes().0),
        SortField::SizeRemoved => SortKey::Int(sizes().1),
        SortField::SizeDiff => {
            let (a, r) = sizes();
            SortKey::Int(a - r)
        }
        SortField::Size => SortKey::Int(if it.deleted { 0 } else { it.size as i128 }),
        SortField::User => text(&it.user),
        SortField::Group => text(&it.group),
        SortField::Uid => id(it.uid),
        SortField::Gid => id(it.gid),
        SortField::Ctime => SortKey::Int(time_of(it, true)),
        SortField::Mtime => SortKey::Int(time_of(it, false)),
        SortField::CtimeDiff => SortKey::Int(time_of(&d.new, true) - time_of(&d.old, true)),
        SortField::MtimeDiff => SortKey::Int(time_of(&d.new, false) - time_of(&d.old, false)),
    }
}

/// Sort diffs by the specs: stable sorts applied from the last spec to the first.
pub fn sort_diffs(diffs: &mut [ItemDiff], specs: &[SortSpec]) {
    for spec in specs.iter().rev() {
        if spec.descending {
            diffs.sort_by_cached_key(|d| std::cmp::Reverse(sort_key(spec.field, d)));
        } else {
            diffs.sort_by_cached_key(|d| sort_key(spec.field, d));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::item::{S_IFDIR, S_IFLNK};

    const T0: i64 = 1_700_000_000_000_000_000;

    fn file(path: &str, chunks: &[(u8, u32)]) -> Item {
        let chunks: Vec<ChunkRef> = chunks
            .iter()
            .map(|&(b, size)| ChunkRef {
                id: [b; 32],
                size,
                csize: size + 40,
            })
            .collect();
        Item {
            path: path.as_bytes().to_vec(),
            mode: Some(S_IFREG | 0o644),
            user: Some(b"root".to_vec()),
            group: Some(b"root".to_vec()),
            uid: Some(0),
            gid: Some(0),
            mtime: T0,
            ctime: Some(T0),
            size: Some(chunks.iter().map(|c| c.size as u64).sum()),
            chunks: Some(chunks),
            hardlink_master: Some(false),
            ..Item::default()
        }
    }

    fn of_type(path: &str, kind: u32) -> Item {
        Item {
            chunks: None,
            size: None,
            mode: Some(kind | 0o755),
            ..file(path, &[])
        }
    }

    fn symlink(path: &str, target: &str) -> Item {
        Item {
            source: Some(target.as_bytes().to_vec()),
            ..of_type(path, S_IFLNK)
        }
    }

    /// Diff two item lists; content comparison says "equal" unless `contents_differ`.
    fn run_with(
        a: Vec<Item>,
        b: Vec<Item>,
        opts: DiffOptions,
        contents_differ: bool,
    ) -> Vec<ItemDiff> {
        let mut out = Vec::new();
        let mut i1 = a.into_iter().map(Ok);
        let mut i2 = b.into_iter().map(Ok);
        let mut contents = |pairs: &[ContentPair]| Ok(vec![!contents_differ; pairs.len()]);
        compare_item_streams(&mut i1, &mut i2, &opts, &mut contents, &mut |d| {
            out.push(d);
            Ok(())
        })
        .unwrap();
        out
    }

    fn run(a: Vec<Item>, b: Vec<Item>) -> Vec<ItemDiff> {
        let opts = DiffOptions {
            can_compare_chunk_ids: true,
            ..DiffOptions::default()
        };
        run_with(a, b, opts, false)
    }

    fn lines(diffs: &[ItemDiff]) -> Vec<String> {
        diffs
            .iter()
            .filter(|d| !d.equal)
            .map(ItemDiff::text_line)
            .collect()
    }

    #[test]
    fn change_strings_match_borg() {
        let m = Change::Modified {
            sizes: Some((14, 6)),
        };
        assert_eq!(m.text(), "    +14 B      -6 B");
        let zero = Change::Modified {
            sizes: Some((0, 0)),
        };
        assert_eq!(zero.text(), "      0 B       0 B");
        let big = Change::Modified {
            sizes: Some((1_234_567, 0)),
        };
        assert_eq!(big.text(), "  +1.2 MB       0 B");
        assert_eq!(Change::Modified { sizes: None }.text(), "modified");
        assert_eq!(Change::Added { size: 4 }.text(), "added           4 B");
        assert_eq!(Change::Removed { size: 4 }.text(), "removed         4 B");
        let p = Change::Presence {
            added: false,
            kind: "directory",
        };
        assert_eq!(p.text(), "removed directory");
        assert_eq!(p.json(), json!({"type": "removed directory"}));
        let owner = Change::Owner {
            old_user: OwnerValue::Name(Some(b"root".to_vec())),
            old_group: OwnerValue::Name(Some(b"root".to_vec())),
            new_user: OwnerValue::Name(None),
            new_group: OwnerValue::Name(None),
        };
        assert_eq!(owner.text(), "[root:root -> None:None]");
        assert_eq!(
            crate::output::dumps_line_sorted(&owner.json()),
            r#"{"new_group": null, "new_user": null, "old_group": "root", "old_user": "root", "type": "owner"}"#
        );
        let mode = Change::Mode {
            old: S_IFDIR | 0o755,
            new: S_IFDIR | 0o700,
        };
        assert_eq!(mode.text(), "[drwxr-xr-x -> drwx------]");
        assert_eq!(
            crate::output::dumps_line_sorted(&m.json()),
            r#"{"added": 14, "removed": 6, "type": "modified"}"#
        );
    }

    #[test]
    fn time_changes_use_local_text_and_iso_microseconds() {
        std::env::set_var("TZ", "UTC");
        let c = Change::Time {
            attr: TimeAttr::Mtime,
            old: 1_672_628_645_000_000_000,
            new: 1_672_628_645_123_456_789,
        };
        assert_eq!(
            c.text(),
            "[mtime: Mon, 2023-01-02 03:04:05 -> Mon, 2023-01-02 03:04:05]"
        );
        assert_eq!(
            crate::output::dumps_line_sorted(&c.json()),
            r#"{"new_mtime": "2023-01-02T03:04:05.123457", "old_mtime": "2023-01-02T03:04:05.000000", "type": "mtime"}"#
        );
    }

    #[test]
    fn content_sizes_count_chunks_only_one_side_has() {
        let a = file("f", &[(1, 10), (2, 20), (2, 20)]);
        let b = file("f", &[(1, 10), (3, 5)]);
        let d = run(vec![a], vec![b]);
        assert_eq!(
            d[0].changes,
            vec![Change::Modified {
                sizes: Some((5, 40))
            }]
        );
        assert!(!d[0].equal);
    }

    #[test]
    fn order_is_lockstep_then_added_then_removed() {
        let a = vec![
            file("x", &[(1, 1)]),
            file("gone", &[(2, 2)]),
            file("y", &[(3, 3)]),
        ];
        let b = vec![
            file("y", &[(5, 4)]),
            file("x", &[(1, 1)]),
            file("new", &[(4, 7)]),
        ];
        let d = run(a, b);
        let paths: Vec<&[u8]> = d.iter().map(|d| d.path.as_slice()).collect();
        // y pairs when it reaches archive 1 (round 3), x when archive 2 gives it (round 2).
        assert_eq!(paths, [b"x".as_slice(), b"y", b"new", b"gone"]);
        assert!(d[0].equal);
        assert_eq!(
            lines(&d),
            [
                "     +4 B      -3 B y",
                "added           7 B new",
                "removed         2 B gone"
            ]
        );
    }

    #[test]
    fn presence_and_metadata_changes() {
        let mut moved = file("f", &[(1, 1)]);
        moved.mode = Some(S_IFREG | 0o600);
        moved.user = Some(b"bob".to_vec());
        moved.ctime = Some(T0 + 1);
        let a = vec![
            of_type("dir", S_IFDIR),
            symlink("l", "a"),
            file("f", &[(1, 1)]),
            of_type("fifo", S_IFIFO),
        ];
        let b = vec![
            of_type("newdir", S_IFDIR),
            symlink("l", "b"),
            moved,
            of_type("dev", S_IFCHR),
        ];
        std::env::set_var("TZ", "UTC");
        assert_eq!(
            lines(&run(a, b)),
            [
                "changed link        l",
                "      0 B       0 B [root:root -> bob:root] [-rw-r--r-- -> -rw-------] \
                 [ctime: Tue, 2023-11-14 22:13:20 -> Tue, 2023-11-14 22:13:20] f",
                "added directory     newdir",
                "added chrdev        dev",
                "removed directory   dir",
                "removed fifo        fifo",
            ]
        );
    }

    #[test]
    fn content_only_ignores_metadata() {
        let mut b = file("f", &[(1, 1)]);
        b.mode = Some(S_IFREG | 0o600);
        b.mtime += 5;
        let opts = DiffOptions {
            can_compare_chunk_ids: true,
            content_only: true,
            ..DiffOptions::default()
        };
        let d = run_with(vec![file("f", &[(1, 1)])], vec![b], opts, false);
        assert!(d[0].equal);
        assert_eq!(
            d[0].changes,
            vec![Change::Modified {
                sizes: Some((0, 0))
            }]
        );
    }

    #[test]
    fn without_comparable_chunk_ids_contents_decide() {
        let opts = DiffOptions::default();
        let a = || vec![file("f", &[(1, 4)]), file("g", &[(2, 4)])];
        // Same sizes, contents equal: nothing to show.
        let d = run_with(
            a(),
            vec![file("f", &[(7, 4)]), file("g", &[(8, 2), (9, 2)])],
            opts,
            false,
        );
        assert!(d.iter().all(|d| d.equal));
        // Same sizes, contents differ.
        let d = run_with(
            a(),
            vec![file("f", &[(7, 4)]), file("g", &[(2, 4)])],
            opts,
            true,
        );
        assert_eq!(
            lines(&d),
            ["modified            f", "modified            g"]
        );
        // Sizes differ: no fetching needed.
        let d = run_with(
            a(),
            vec![file("f", &[(7, 5)]), file("g", &[(2, 4)])],
            opts,
            false,
        );
        assert_eq!(lines(&d), ["modified            f"]);
    }

    fn hardlinked(path: &str, master: &str) -> Item {
        Item {
            chunks: None,
            size: None,
            source: Some(master.as_bytes().to_vec()),
            hardlink_master: None,
            ..file(path, &[])
        }
    }

    #[test]
    fn hardlink_slaves_compare_their_masters_content() {
        let master = |c| Item {
            hardlink_master: Some(true),
            ..file("m", &[(c, 3)])
        };
        let a = vec![master(1), hardlinked("s", "m")];
        let b = vec![master(2), hardlinked("s", "m")];
        assert_eq!(
            lines(&run(a, b)),
            ["     +3 B      -3 B m", "     +3 B      -3 B s"]
        );
        // An added slave of an added master gets the master's size.
        let d = run(vec![], vec![master(2), hardlinked("s", "m")]);
        assert_eq!(
            lines(&d),
            ["added           3 B m", "added           3 B s"]
        );
    }

    #[test]
    fn slave_before_its_master_is_deferred() {
        let master = |c| Item {
            hardlink_master: Some(true),
            ..file("m", &[(c, 3)])
        };
        // Archive 2 lists the slave first: the pair waits until the end.
        let a = vec![master(1), hardlinked("s", "m")];
        let b = vec![hardlinked("s", "m"), master(2)];
        let d = run(a, b);
        let paths: Vec<&[u8]> = d.iter().map(|d| d.path.as_slice()).collect();
        assert_eq!(paths, [b"m".as_slice(), b"s"]);
        assert!(!d[1].equal);
        // A master that never shows up: the slave is skipped (borg 1.4 warns).
        let d = run(vec![hardlinked("s", "m")], vec![hardlinked("s", "m")]);
        assert!(d.is_empty());
    }

    #[test]
    fn json_line_has_path_b64_for_undecodable_names() {
        let d = run(vec![], vec![file("caf\u{e9}", &[(1, 2)])]);
        assert_eq!(
            crate::output::dumps_line_sorted(&d[0].json()),
            r#"{"changes": [{"size": 2, "type": "added"}], "path": "caf\u00e9"}"#
        );
        let mut raw = file("x", &[(1, 2)]);
        raw.path = b"caf\xe9".to_vec();
        let d = run(vec![], vec![raw]);
        assert_eq!(
            crate::output::dumps_line_sorted(&d[0].json()),
            r#"{"changes": [{"size": 2, "type": "added"}], "path": "caf?", "path_b64": "Y2Fm6Q=="}"#
        );
        assert_eq!(d[0].text_line(), "added           2 B caf?");
    }

    fn with_path(path: &[u8], added: u64) -> ItemDiff {
        ItemDiff {
            path: path.to_vec(),
            equal: false,
            changes: vec![Change::Added { size: added }],
            old: SideInfo::default(),
            new: SideInfo::default(),
        }
    }

    #[test]
    fn sorting_is_stable_and_applies_the_last_spec_first() {
        let mut d = vec![
            with_path(b"b", 1),
            with_path(b"a", 2),
            with_path(b"c", 1),
            with_path(b"d", 2),
        ];
        let specs = SortSpec::parse_list(">size_added, path").unwrap();
        sort_diffs(&mut d, &specs);
        let paths: Vec<&[u8]> = d.iter().map(|d| d.path.as_slice()).collect();
        assert_eq!(paths, [b"a".as_slice(), b"d", b"b", b"c"]);
        assert!(SortSpec::parse_list("path,bogus").is_none());
    }

    #[test]
    fn raw_path_order_is_pythons_surrogate_order() {
        // U+4E00 (e4 b8 80) sorts before an undecodable 0x80 byte (U+DC80) in Python,
        // while '?' (borg 1.4's --sort-by path) sorts before both.
        let mut d = vec![with_path(b"\x80", 0), with_path("\u{4e00}".as_bytes(), 0)];
        sort_diffs(
            &mut d,
            &[SortSpec {
                field: SortField::PathRaw,
                descending: false,
            }],
        );
        assert_eq!(d[0].path, "\u{4e00}".as_bytes());
        sort_diffs(
            &mut d,
            &[SortSpec {
                field: SortField::Path,
                descending: false,
            }],
        );
        assert_eq!(d[0].path, b"\x80");
    }

    #[test]
    fn chunker_params_normalisation() {
        let old = Value::Array(
            [19u32, 23, 21, 4095]
                .iter()
                .map(|&n| Value::from(n))
                .collect(),
        );
        let new = ChunkerParams::parse("buzhash,19,23,21,4095")
            .unwrap()
            .to_value();
        let other = ChunkerParams::parse("buzhash,10,23,16,4095")
            .unwrap()
            .to_value();
        assert_eq!(
            compare_chunker_params(Some(&old), Some(&new)),
            ChunkerParamsMatch::Same
        );
        assert_eq!(
            compare_chunker_params(Some(&other), Some(&new)),
            ChunkerParamsMatch::Different
        );
        assert_eq!(
            compare_chunker_params(None, Some(&new)),
            ChunkerParamsMatch::Unknown
        );
    }

    /// An in-memory repository of plaintext-mode objects.
    struct MemRepo(HashMap<crate::repository::ObjectId, Vec<u8>>);

    impl Repository for MemRepo {
        fn id(&self) -> crate::repository::ObjectId {
            [0; 32]
        }
        fn location(&self) -> String {
            "mem".into()
        }
        fn get(&self, id: &crate::repository::ObjectId) -> Result<Vec<u8>> {
            self.0
                .get(id)
                .cloned()
                .ok_or_else(|| crate::errors::Error::exception("missing"))
        }
        fn contains(&self, id: &crate::repository::ObjectId) -> Result<bool> {
            Ok(self.0.contains_key(id))
        }
        fn len(&self) -> Result<usize> {
            Ok(self.0.len())
        }
        fn list(
            &self,
            _: usize,
            _: Option<&crate::repository::ObjectId>,
        ) -> Result<Vec<crate::repository::ObjectId>> {
            Ok(self.0.keys().copied().collect())
        }
        fn load_key(&self) -> Result<Vec<u8>> {
            Ok(Vec::new())
        }
        fn append_only(&self) -> bool {
            false
        }
    }

    /// Store `pieces` as chunks; returns their refs.
    fn store(
        key: &Key,
        objects: &mut HashMap<crate::repository::ObjectId, Vec<u8>>,
        pieces: &[&[u8]],
    ) -> Vec<ChunkRef> {
        pieces
            .iter()
            .map(|data| {
                let id = key.id_hash(data);
                let stored = key
                    .compress_and_encrypt(&crate::compress::CompressionSpec::Lz4, data, None)
                    .unwrap();
                let csize = stored.len() as u32;
                objects.insert(id, stored);
                ChunkRef {
                    id,
                    size: data.len() as u32,
                    csize,
                }
            })
            .collect()
    }

    #[test]
    fn batched_content_comparison_follows_chunk_boundaries() {
        let key = Key::plaintext([0; 32]);
        let mut objects = HashMap::new();
        let big_a = vec![7u8; 5 * 1024 * 1024];
        let mut big_b = big_a.clone();
        big_b[4_000_000] = 8;
        let pairs = vec![
            // Same bytes, other cuts.
            ContentPair {
                old: store(&key, &mut objects, &[b"hello ", b"world"]),
                new: store(&key, &mut objects, &[b"hel", b"lo world"]),
            },
            // One byte differs.
            ContentPair {
                old: store(&key, &mut objects, &[b"abcd"]),
                new: store(&key, &mut objects, &[b"ab", b"ce"]),
            },
            // Large files take the one-by-one path.
            ContentPair {
                old: store(&key, &mut objects, &[&big_a]),
                new: store(
                    &key,
                    &mut objects,
                    &[&big_a[..3_000_000], &big_a[3_000_000..]],
                ),
            },
            ContentPair {
                old: store(&key, &mut objects, &[&big_a]),
                new: store(&key, &mut objects, &[&big_b]),
            },
            ContentPair {
                old: Vec::new(),
                new: Vec::new(),
            },
        ];
        let repo: Arc<dyn Repository> = Arc::new(MemRepo(objects));
        let key = Arc::new(key);
        let answers = contents_equal_batch(&repo, &key, &pairs).unwrap();
        assert_eq!(answers, [true, false, true, false, true]);
    }

    #[test]
    fn queued_content_checks_keep_the_output_order() {
        // f needs a content check, g is different on metadata, h equal on chunk sizes.
        let mut g = file("g", &[(2, 4)]);
        g.mtime += 1;
        let a = vec![
            file("f", &[(1, 4)]),
            file("g", &[(2, 4)]),
            file("h", &[(3, 4)]),
        ];
        let b = vec![file("f", &[(9, 4)]), g, file("h", &[(8, 2), (7, 2)])];
        let mut seen: Vec<ContentPair> = Vec::new();
        let mut out: Vec<(Vec<u8>, bool)> = Vec::new();
        let mut i1 = a.into_iter().map(Ok);
        let mut i2 = b.into_iter().map(Ok);
        let mut contents = |pairs: &[ContentPair]| {
            seen.extend_from_slice(pairs);
            // f differs, h is equal.
            Ok(vec![false, true])
        };
        compare_item_streams(
            &mut i1,
            &mut i2,
            &DiffOptions::default(),
            &mut contents,
            &mut |d| {
                out.push((d.path.clone(), d.equal));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(
            out,
            [
                (b"f".to_vec(), false),
                (b"g".to_vec(), false),
                (b"h".to_vec(), true)
            ]
        );
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].new[0].id, [9; 32]);
    }
}
