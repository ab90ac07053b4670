#![allow(dead_code)]
//! Fixed keys of every mode (deterministic material, so a crash replays the same way).

use rborg::crypto::key::{Key, KeyMaterial, KeySource};
use rborg::crypto::KeyType;

pub fn key(key_type: KeyType) -> Key {
    let blake2 = key_type.is_blake2();
    let mac_key = |fill: u8| {
        if blake2 {
            let mut k = vec![fill; 64];
            k.resize(128, 0);
            k
        } else {
            vec![fill; 32]
        }
    };
    let material = KeyMaterial {
        repository_id: [0x42; 32],
        enc_key: vec![0x11; 32],
        enc_hmac_key: mac_key(0x22),
        id_key: mac_key(0x33),
        chunk_seed: 0x1234_5678,
        tam_required: Some(true),
    };
    Key::from_material(key_type, material, KeySource::Nowhere).expect("fixed key material")
}

/// One key per mode: none, authenticated, authenticated-blake2, repokey, repokey-blake2.
pub fn all() -> Vec<Key> {
    [
        KeyType::None,
        KeyType::Authenticated,
        KeyType::AuthenticatedBlake2,
        KeyType::RepoKey,
        KeyType::RepoKeyBlake2,
    ]
    .into_iter()
    .map(key)
    .collect()
}

/// A plausible item map, archive map and manifest map (msgpack), for seed corpora.
pub fn sample_metadata() -> Vec<(&'static str, Vec<u8>)> {
    use rborg::msgpack::{bytes, pack, sorted_map};
    use rmpv::Value;
    let s = |t: &str| Value::from(t);
    let item = sorted_map(vec![
        (s("path"), s("home/user/file.txt")),
        (s("mode"), Value::from(0o100644)),
        (s("uid"), Value::from(1000)),
        (s("gid"), Value::from(1000)),
        (s("user"), s("user")),
        (s("group"), s("user")),
        (s("mtime"), Value::from(1_700_000_000_000_000_000u64)),
        (s("size"), Value::from(5)),
        (
            s("chunks"),
            Value::Array(vec![Value::Array(vec![
                bytes(vec![1; 32]),
                Value::from(5),
                Value::from(7),
            ])]),
        ),
        (
            s("xattrs"),
            sorted_map(vec![(s("user.comment"), bytes(b"hi".to_vec()))]),
        ),
    ]);
    let archive = sorted_map(vec![
        (s("version"), Value::from(1)),
        (s("name"), s("archive-1")),
        (s("items"), Value::Array(vec![bytes(vec![2; 32])])),
        (s("cmdline"), Value::Array(vec![s("borg"), s("create")])),
        (s("hostname"), s("host")),
        (s("username"), s("user")),
        (s("time"), s("2026-11-22T10:00:00.000000")),
        (s("time_end"), s("2026-11-22T10:00:01.000000")),
        (
            s("chunker_params"),
            Value::Array(vec![
                s("buzhash"),
                Value::from(19),
                Value::from(23),
                Value::from(21),
                Value::from(4095),
            ]),
        ),
    ]);
    let manifest = sorted_map(vec![
        (s("version"), Value::from(1)),
        (
            s("archives"),
            sorted_map(vec![(
                s("archive-1"),
                sorted_map(vec![
                    (s("id"), bytes(vec![3; 32])),
                    (s("time"), s("2026-11-22T10:00:00.000000")),
                ]),
            )]),
        ),
        (s("timestamp"), s("2026-11-22T10:00:02.000000")),
        (
            s("config"),
            sorted_map(vec![(s("tam_required"), Value::from(true))]),
        ),
        (s("item_keys"), Value::Array(vec![s("path"), s("mode")])),
    ]);
    let mut stream = pack(&item);
    stream.extend(pack(&item));
    vec![
        ("item", pack(&item)),
        ("items", stream),
        ("archive", pack(&archive)),
        ("manifest", pack(&manifest)),
    ]
}
