//! The msgpack of items, archive metadata and the manifest (and their TAMs), as a
//! repository could hold them once decrypted.
//!
//! Input layout: first byte: bit 0 picks the key (none, or authenticated with TAMs); bit 7
//! set: the rest is unpacked and, if it is a map, re-packed with a valid TAM first (so the
//! decoders behind the TAM check see arbitrary maps); clear: the rest is used as is.
#![no_main]

mod common;

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rborg::archive::{ArchiveMeta, Item, Manifest};
use rborg::compress::CompressionSpec;
use rborg::crypto::key::Key;
use rborg::crypto::KeyType;
use rborg::errors::{Error, Result};
use rborg::msgpack::ValueExt;
use rborg::repository::{ObjectId, Repository};

#[path = "common/keys.rs"]
mod keys;

const WITH_VALID_TAM: u8 = 0x80;

fn two_keys() -> &'static [Key; 2] {
    static KEYS: OnceLock<[Key; 2]> = OnceLock::new();
    KEYS.get_or_init(|| {
        // Manifest::decode mirrors tam_required into the security dir (under BORG_BASE_DIR)
        common::make_scratch("metadata");
        let keys = [keys::key(KeyType::None), keys::key(KeyType::Authenticated)];
        common::write_seeds(&seeds(&keys[1]));
        keys
    })
}

/// Manifest decoding asks its repository only for the id.
struct NoRepository;

impl Repository for NoRepository {
    fn id(&self) -> ObjectId {
        [0x42; 32]
    }
    fn location(&self) -> String {
        "fuzz".into()
    }
    fn get(&self, _id: &ObjectId) -> Result<Vec<u8>> {
        Err(Error::generic("no objects"))
    }
    fn contains(&self, _id: &ObjectId) -> Result<bool> {
        Ok(false)
    }
    fn len(&self) -> Result<usize> {
        Ok(0)
    }
    fn list(&self, _limit: usize, _marker: Option<&ObjectId>) -> Result<Vec<ObjectId>> {
        Ok(Vec::new())
    }
    fn load_key(&self) -> Result<Vec<u8>> {
        Ok(Vec::new())
    }
    fn append_only(&self) -> bool {
        false
    }
}

/// The samples plain and TAM-protected, for both keys.
fn seeds(authenticated: &Key) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (name, sample) in keys::sample_metadata() {
        for selector in [0u8, 1, WITH_VALID_TAM, WITH_VALID_TAM | 1] {
            let mut seed = vec![selector];
            seed.extend_from_slice(&sample);
            out.push((format!("{name}-{selector}"), seed));
        }
        if let Ok(v) = rborg::msgpack::unpack(&sample) {
            let mut seed = vec![1u8];
            seed.extend(authenticated.pack_and_authenticate_metadata(
                v,
                b"manifest",
                Some([7; 64]),
            ));
            out.push((format!("{name}-with-tam"), seed));
        }
    }
    out
}

fn decode_all(key: &Key, plain: &[u8]) {
    let _ = rborg::archive::meta::decode_items(plain);
    let stored = key.encrypt(&CompressionSpec::None.compress(plain), 0);
    let _ = Manifest::decode(&NoRepository, key, &stored, &[]);
    if let Ok((map, _, _)) = key.unpack_and_verify_archive(plain, false) {
        let _ = ArchiveMeta::from_value(map);
    }
    if let Ok(v) = rborg::msgpack::unpack(plain) {
        let _ = Item::from_value(&v);
        let _ = ArchiveMeta::from_value(v);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let key = &two_keys()[(selector & 1) as usize];
    if selector & WITH_VALID_TAM == 0 {
        decode_all(key, body);
        return;
    }
    let Ok(v) = rborg::msgpack::unpack(body) else {
        return;
    };
    if v.as_entries().is_none() {
        return;
    }
    for context in [&b"manifest"[..], b"archive"] {
        let packed = key.pack_and_authenticate_metadata(v.clone(), context, Some([7; 64]));
        decode_all(key, &packed);
    }
});
