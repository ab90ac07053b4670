//! Key material from outside: key files, repokey blobs (the config's `key` value), key
//! export files, and the plaintext key msgpack.
//!
//! Input layout: the first byte picks the decoder (0 key file on disk, 1 protected key
//! blob, 2 key export file, 3 plaintext key msgpack, 4 key text base64); the rest is its
//! input. Blobs asking for more than 1000 PBKDF2 iterations are not decrypted: the KDF's cost
//! is the file's to choose (as in borg) and would only slow the fuzzer down.
#![no_main]

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rborg::crypto::key::KeyMaterial;
use rborg::crypto::keyblob::{
    decode_key_text, decrypt_key_blob, encode_key_text, encrypted_envelope,
};
use rborg::crypto::keyfile::{check_key_file, read_key_file};
use rborg::crypto::keymanager::parse_key_backup;
use rborg::msgpack::ValueExt;

const REPO_ID: [u8; 32] = [0x42; 32];
const MAX_ITERATIONS: u64 = 1000;

fn scratch() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let root = common::make_scratch("key-data");
        common::write_seeds(&seeds());
        root
    })
}

/// A key (cheap KDF) in each of the forms the target reads.
fn seeds() -> Vec<(String, Vec<u8>)> {
    let material = KeyMaterial {
        repository_id: REPO_ID,
        enc_key: vec![1; 32],
        enc_hmac_key: vec![2; 32],
        id_key: vec![3; 32],
        chunk_seed: 77,
        tam_required: Some(true),
    };
    let envelope = encrypted_envelope(&material, "passphrase", &[9; 32], 10);
    let blob = encode_key_text(&envelope);
    let file = format!("BORG_KEY {}\n{blob}\n", hex::encode(REPO_ID));
    let with = |selector: u8, body: &[u8]| {
        let mut seed = vec![selector];
        seed.extend_from_slice(body);
        seed
    };
    vec![
        ("keyfile".into(), with(0, file.as_bytes())),
        ("blob".into(), with(1, blob.as_bytes())),
        ("export".into(), with(2, file.as_bytes())),
        ("material".into(), with(3, &material.to_msgpack())),
        ("text".into(), with(4, blob.as_bytes())),
    ]
}

/// Whether the blob's KDF is cheap enough to run (or the blob is not even well-formed).
fn cheap_kdf(blob: &[u8]) -> bool {
    let Some(raw) = decode_key_text(blob) else {
        return true;
    };
    let Ok(v) = rborg::msgpack::unpack(&raw) else {
        return true;
    };
    match v.get("iterations").and_then(|n| n.as_uint()) {
        Some(n) => n <= MAX_ITERATIONS,
        None => true,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    match selector % 5 {
        0 => {
            let path = scratch().join("keyfile");
            std::fs::write(&path, body).expect("write key file");
            let _ = check_key_file(&path, &REPO_ID, "/some/repo");
            if let Ok(blob) = read_key_file(&path) {
                if cheap_kdf(&blob) {
                    let _ = decrypt_key_blob(&blob, "passphrase");
                }
            }
        }
        1 => {
            if cheap_kdf(body) {
                let _ = decrypt_key_blob(body, "passphrase");
            }
        }
        2 => {
            if let Ok(blob) = parse_key_backup(&REPO_ID, body) {
                if cheap_kdf(blob.as_bytes()) {
                    let _ = decrypt_key_blob(blob.as_bytes(), "passphrase");
                }
            }
        }
        3 => {
            let _ = KeyMaterial::from_msgpack(body);
        }
        _ => {
            let _ = decode_key_text(body);
        }
    }
});
