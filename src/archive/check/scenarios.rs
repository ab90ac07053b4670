//! The archive checker on an in-memory repository (authenticated mode: real ids and MACs,
//! no nonces to reserve).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rmpv::Value;

use super::{check_archives, ArchiveCheckOptions};
use crate::archive::item::{ChunkRef, Item};
use crate::archive::itembuf::ItemBuffer;
use crate::archive::manifest::parse_timestamp;
use crate::archive::meta::decode_items;
use crate::archive::objects::ObjectWriter;
use crate::archive::{Manifest, Operation};
use crate::compress::CompressionSpec;
use crate::crypto::{Key, KeyType};
use crate::errors::{Error, ErrorKind, Result};
use crate::msgpack::{self, ValueExt};
use crate::repository::{ObjectId, Repository, MANIFEST_ID};

#[derive(Default)]
struct MemRepo {
    objects: Mutex<BTreeMap<ObjectId, Vec<u8>>>,
}

impl MemRepo {
    fn ids(&self) -> Vec<ObjectId> {
        self.objects.lock().unwrap().keys().copied().collect()
    }
}

impl Repository for MemRepo {
    fn id(&self) -> ObjectId {
        [0x42; 32]
    }
    fn location(&self) -> String {
        "mem".into()
    }
    fn get(&self, id: &ObjectId) -> Result<Vec<u8>> {
        self.objects
            .lock()
            .unwrap()
            .get(id)
            .cloned()
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::RepositoryObjectNotFound,
                    [hex::encode(id), "mem".into()],
                )
            })
    }
    fn contains(&self, id: &ObjectId) -> Result<bool> {
        Ok(self.objects.lock().unwrap().contains_key(id))
    }
    fn len(&self) -> Result<usize> {
        Ok(self.objects.lock().unwrap().len())
    }
    fn list(&self, limit: usize, marker: Option<&ObjectId>) -> Result<Vec<ObjectId>> {
        Ok(self
            .ids()
            .into_iter()
            .filter(|i| marker.is_none_or(|m| i > m))
            .take(limit)
            .collect())
    }
    fn load_key(&self) -> Result<Vec<u8>> {
        Ok(Vec::new())
    }
    fn append_only(&self) -> bool {
        false
    }
    fn put(&self, id: &ObjectId, data: &[u8]) -> Result<()> {
        self.objects.lock().unwrap().insert(*id, data.to_vec());
        Ok(())
    }
    fn delete(&self, id: &ObjectId) -> Result<()> {
        match self.objects.lock().unwrap().remove(id) {
            Some(_) => Ok(()),
            None => self.get(id).map(|_| ()),
        }
    }
    fn commit(&self, _compact: bool, _threshold: f64, _cleanup_commits: bool) -> Result<()> {
        Ok(())
    }
}

struct Fixture {
    repo: Arc<MemRepo>,
    key: Arc<Key>,
    writer: ObjectWriter,
    /// The file's content chunks.
    data: Vec<Vec<u8>>,
}

impl Fixture {
    /// One archive "a" with a directory and a file of three chunks.
    fn new() -> Fixture {
        let repo = Arc::new(MemRepo::default());
        let key = Arc::new(Key::generate(KeyType::Authenticated, repo.id()));
        let writer = ObjectWriter::new(repo.clone(), key.clone(), CompressionSpec::default());
        let data: Vec<Vec<u8>> = (1..=3u8).map(|i| vec![i; 1000 * i as usize]).collect();
        let chunks: Vec<ChunkRef> = data
            .iter()
            .map(|d| {
                let (id, csize) = writer.put(d).unwrap();
                ChunkRef {
                    id,
                    size: d.len() as u32,
                    csize: csize as u32,
                }
            })
            .collect();
        let items = [
            Item {
                path: b"dir".to_vec(),
                mode: Some(0o040755),
                mtime: 1,
                ..Default::default()
            },
            Item {
                path: b"dir/file".to_vec(),
                mode: Some(0o100644),
                mtime: 2,
                size: Some(6000),
                chunks: Some(chunks),
                ..Default::default()
            },
        ];
        let mut buffer = ItemBuffer::new(key.chunk_seed());
        let mut store = |c: &[u8]| writer.put(c).map(|(id, _)| id);
        for item in &items {
            buffer.add(item, &mut store).unwrap();
        }
        buffer.flush(true, &mut store).unwrap();
        let archive = msgpack::sorted_map(vec![
            (Value::from("cmdline"), Value::Array(vec![])),
            (
                Value::from("items"),
                Value::Array(
                    buffer
                        .chunks
                        .iter()
                        .map(|i| msgpack::bytes(i.to_vec()))
                        .collect(),
                ),
            ),
            (Value::from("name"), msgpack::bytes(b"a".to_vec())),
            (
                Value::from("time"),
                msgpack::bytes(b"2024-01-02T03:04:05.000006".to_vec()),
            ),
            (Value::from("version"), Value::from(1)),
        ]);
        let packed = key.pack_and_authenticate_metadata(archive, b"archive", None);
        let (archive_id, _) = writer.put(&packed).unwrap();
        let mut manifest = Manifest::empty();
        let ts = parse_timestamp("2024-01-02T03:04:05.000006").unwrap();
        manifest.set_archive(b"a", archive_id, ts);
        manifest.write(&writer).unwrap();
        Fixture {
            repo,
            key,
            writer,
            data,
        }
    }

    fn check(&self, repair: bool) -> bool {
        let key = self.key.clone();
        let open = move |_: &[u8]| Ok((*key).clone());
        let opts = ArchiveCheckOptions {
            repair,
            ..Default::default()
        };
        check_archives(self.repo.clone(), &open, &opts).unwrap()
    }

    fn manifest(&self) -> Manifest {
        Manifest::load(self.repo.as_ref(), &self.key, &[Operation::Check]).unwrap()
    }

    /// The file item of archive "a".
    fn file_item(&self) -> Item {
        let manifest = self.manifest();
        let id = manifest.lookup(b"a").unwrap().id;
        let plain = self
            .key
            .decrypt(Some(&id), &self.repo.get(&id).unwrap())
            .unwrap();
        let meta = msgpack::unpack(&plain).unwrap();
        let mut stream = Vec::new();
        for item_id in meta.get("items").unwrap().as_list().unwrap() {
            let item_id: ObjectId = item_id.as_bytes().unwrap().try_into().unwrap();
            let stored = self.repo.get(&item_id).unwrap();
            stream.extend(self.key.decrypt(Some(&item_id), &stored).unwrap());
        }
        let items = decode_items(&stream).unwrap();
        items.into_iter().find(|i| i.path == b"dir/file").unwrap()
    }

    fn chunk_id(&self, i: usize) -> ObjectId {
        self.key.id_hash(&self.data[i])
    }
}

#[test]
fn a_clean_repository_is_left_alone() {
    let f = Fixture::new();
    let before = f.repo.ids();
    assert!(f.check(false));
    assert!(f.check(true));
    // only the manifest was written anew
    assert_eq!(f.repo.ids(), before);
    assert!(f.file_item().healthy());
}

#[test]
fn missing_chunks_are_replaced_and_healed_later() {
    let f = Fixture::new();
    let lost = f.chunk_id(1);
    f.repo.delete(&lost).unwrap();
    let old_archive = f.manifest().lookup(b"a").unwrap().id;

    let before = f.repo.ids();
    assert!(!f.check(false), "problems are reported");
    assert_eq!(f.repo.ids(), before, "nothing written without --repair");

    assert!(f.check(true));
    let item = f.file_item();
    let chunks = item.chunks.clone().unwrap();
    let zeros = f.key.id_hash(&[0u8; 2000]);
    assert_eq!(chunks[1].id, zeros);
    assert_eq!(chunks[1].size, 2000);
    assert!(f.repo.contains(&zeros).unwrap());
    let healthy = item.chunks_healthy.clone().unwrap();
    assert_eq!(healthy[1].id, lost);
    assert_eq!((chunks[0], chunks[2]), (healthy[0], healthy[2]));
    let new_archive = f.manifest().lookup(b"a").unwrap().id;
    assert_ne!(new_archive, old_archive);
    assert!(!f.repo.contains(&old_archive).unwrap(), "superseded");

    // a second repair changes nothing
    let ids = f.repo.ids();
    assert!(f.check(true));
    assert_eq!(f.repo.ids(), ids);
    assert_eq!(f.manifest().lookup(b"a").unwrap().id, new_archive);

    // the chunk comes back (a new backup of the file): the next repair heals the file
    f.writer.put(&f.data[1]).unwrap();
    assert!(f.check(true));
    let item = f.file_item();
    assert!(item.healthy());
    assert_eq!(item.chunks.unwrap()[1].id, lost);
    assert!(!f.repo.contains(&zeros).unwrap(), "replacement deleted");
}

#[test]
fn lost_manifest_is_rebuilt() {
    let f = Fixture::new();
    let archive = f.manifest().lookup(b"a").unwrap().id;
    f.repo.delete(&MANIFEST_ID).unwrap();
    assert!(!f.check(false));
    assert!(!f.repo.contains(&MANIFEST_ID).unwrap());
    assert!(f.check(true));
    let manifest = f.manifest();
    assert!(manifest.tam_verified);
    assert_eq!(manifest.archives.len(), 1);
    assert_eq!(manifest.archives[0].id, archive);
    assert_eq!(manifest.archives[0].name, b"a");
}

#[test]
fn lost_item_metadata_leaves_an_empty_archive_and_orphans() {
    let f = Fixture::new();
    let archive = f.manifest().lookup(b"a").unwrap().id;
    let plain = f
        .key
        .decrypt(Some(&archive), &f.repo.get(&archive).unwrap())
        .unwrap();
    let meta = msgpack::unpack(&plain).unwrap();
    let items = meta.get("items").unwrap().as_list().unwrap();
    let item_chunk: ObjectId = items[0].as_bytes().unwrap().try_into().unwrap();
    f.repo.delete(&item_chunk).unwrap();
    assert!(f.check(true));
    // the file chunks are no longer referenced: deleted as orphans
    for i in 0..3 {
        assert!(!f.repo.contains(&f.chunk_id(i)).unwrap());
    }
    let ids = f.repo.ids();
    // manifest and the archive with an empty item list
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(f.check(true));
}
