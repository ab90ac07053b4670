//! Stored objects: the encryption/authentication envelope of every key mode, then the
//! compression envelope and the msgpack behind it.
//!
//! Input layout: first byte: low bits pick the key mode (none, authenticated,
//! authenticated-blake2, repokey, repokey-blake2); bit 7 clear: the rest is a stored object as
//! a hostile repository could hand it over (header, MAC, ciphertext); bit 7 set: the rest is
//! an arbitrary *authentic* payload (compression header and data), encrypted with the key
//! first, so what lies behind the MAC check is reached: decompression (every algorithm and
//! the obfuscation envelope), then item, archive and manifest decoding of the result.
#![no_main]

mod common;

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rborg::compress::CompressionSpec;
use rborg::crypto::key::Key;

#[path = "common/keys.rs"]
mod keys;

const AUTHENTIC: u8 = 0x80;

fn all_keys() -> &'static [Key] {
    static KEYS: OnceLock<Vec<Key>> = OnceLock::new();
    KEYS.get_or_init(|| {
        rborg::output::set_logger_level("borg", rborg::output::Level::Critical);
        let keys = keys::all();
        common::write_seeds(&seeds(&keys));
        keys
    })
}

/// Each sample compressed every way, as stored objects and as authentic payloads.
fn seeds(keys: &[Key]) -> Vec<(String, Vec<u8>)> {
    let specs = [
        "none",
        "lz4",
        "zstd,3",
        "zlib,6",
        "lzma,1",
        "obfuscate,3,lz4",
    ];
    let mut out = Vec::new();
    for (name, sample) in keys::sample_metadata() {
        for spec in specs {
            let payload = CompressionSpec::parse(spec)
                .expect("spec")
                .compress(&sample);
            for (k, key) in keys.iter().enumerate() {
                let mut stored = vec![k as u8];
                stored.extend(key.encrypt(&payload, 0));
                out.push((format!("{name}-{spec}-stored-{k}"), stored));
                let mut authentic = vec![AUTHENTIC | k as u8];
                authentic.extend_from_slice(&payload);
                out.push((format!("{name}-{spec}-payload-{k}"), authentic));
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let keys = all_keys();
    let key = &keys[(selector & 0x7f) as usize % keys.len()];
    if selector & AUTHENTIC == 0 {
        let _ = key.decrypt(None, body);
        let _ = key.decrypt_payload(None, body);
        let _ = key.decrypt(Some(&[0x55; 32]), body);
        return;
    }
    let stored = key.encrypt(body, 0);
    if let Ok(plain) = key.decrypt(None, &stored) {
        let _ = rborg::archive::meta::decode_items(&plain);
        let _ = key.unpack_and_verify_manifest(&plain, false);
        let _ = key.unpack_and_verify_archive(&plain, true);
    }
    let _ = rborg::compress::decompress(body);
});
