//! The passphrase-protected key blob and its base64 text form (repository-format.md §4.5).

use aes::cipher::{KeyIvInit, StreamCipher};
use hmac::{Hmac, Mac};
use rand::RngCore;
use rmpv::Value;
use sha2::Sha256;

use super::key::{read_first_value, KeyMaterial};
use crate::errors::{Error, ErrorKind, Result};
use crate::msgpack::{self, ValueExt};

/// PBKDF2 iterations borg writes (PBKDF2_ITERATIONS).
pub const PBKDF2_ITERATIONS: u32 = 100_000;

/// Width of the base64 lines of key data.
const KEY_LINE_WIDTH: usize = 70;

type HmacSha256 = Hmac<Sha256>;
type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;

/// Decode key data text like Python's `binascii.a2b_base64` (non-strict): characters outside
/// the base64 alphabet (newlines, TABs, blanks) are skipped; padding is optional.
pub fn decode_key_text(text: &[u8]) -> Option<Vec<u8>> {
    use base64::engine::{
        general_purpose::GeneralPurpose, DecodePaddingMode, GeneralPurposeConfig,
    };
    use base64::Engine;
    let clean: Vec<u8> = text
        .iter()
        .copied()
        .take_while(|&c| c != b'=')
        .filter(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
        .collect();
    let engine = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::RequireNone)
            .with_decode_allow_trailing_bits(true),
    );
    engine.decode(clean).ok()
}

/// Base64 (standard, padded) wrapped into lines of at most 70 characters joined by `\n`,
/// without a trailing newline (borg: `textwrap.wrap(b2a_base64(data))`).
pub fn encode_key_text(data: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(data);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(KEY_LINE_WIDTH)
        .map(|c| std::str::from_utf8(c).expect("base64 is ascii"))
        .collect();
    lines.join("\n")
}

fn kdf(passphrase: &str, salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut kek = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(passphrase.as_bytes(), salt, iterations, &mut kek);
    kek
}

fn ctr_zero_iv(kek: &[u8; 32], data: &mut [u8]) {
    Aes256Ctr::new(kek.into(), &[0u8; 16].into()).apply_keystream(data);
}

/// Protect the plaintext key with `passphrase`: PBKDF2-HMAC-SHA256 (100000 iterations, new
/// random 32-byte salt) → AES-256-CTR + HMAC-SHA256 over the plaintext; returns the text form.
pub fn encrypt_key_blob(material: &KeyMaterial, passphrase: &str) -> String {
    let mut salt = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    encode_key_text(&encrypted_envelope(
        material,
        passphrase,
        &salt,
        PBKDF2_ITERATIONS,
    ))
}

/// The msgpack envelope (sorted keys) of the protected key.
pub fn encrypted_envelope(
    material: &KeyMaterial,
    passphrase: &str,
    salt: &[u8],
    iterations: u32,
) -> Vec<u8> {
    let plain = material.to_msgpack();
    let kek = kdf(passphrase, salt, iterations);
    let mut mac = HmacSha256::new_from_slice(&kek).expect("any HMAC key length");
    mac.update(&plain);
    let hash = mac.finalize().into_bytes().to_vec();
    let mut data = plain;
    ctr_zero_iv(&kek, &mut data);
    let envelope = msgpack::sorted_map(vec![
        (Value::from("version"), Value::from(1)),
        (Value::from("salt"), msgpack::bytes(salt.to_vec())),
        (Value::from("iterations"), Value::from(iterations)),
        (Value::from("algorithm"), Value::from("sha256")),
        (Value::from("hash"), msgpack::bytes(hash)),
        (Value::from("data"), msgpack::bytes(data)),
    ]);
    msgpack::pack(&envelope)
}

/// Decrypt key data (text or raw) with `passphrase`. `Ok(None)` = wrong passphrase.
/// Malformed data gives `KeyfileInvalidError` with placeholder names; use
/// [`decrypt_key_blob_in`] to name the repository and key location.
pub fn decrypt_key_blob(data: &[u8], passphrase: &str) -> Result<Option<KeyMaterial>> {
    decrypt_key_blob_in(data, passphrase, "(unknown)", "(key data)")
}

/// As [`decrypt_key_blob`]; `location` and `target` fill borg's KeyfileInvalidError message
/// (`Invalid key data for repository {location} found in {target}.`).
pub fn decrypt_key_blob_in(
    data: &[u8],
    passphrase: &str,
    location: &str,
    target: &str,
) -> Result<Option<KeyMaterial>> {
    let invalid = || Error::new(ErrorKind::KeyfileInvalidError, [location, target]);
    let raw = decode_key_text(data).ok_or_else(invalid)?;
    // Not a precise check; real key data is about 400 bytes.
    if raw.len() < 20 {
        return Err(invalid());
    }
    let envelope = read_first_value(&raw).map_err(|_| invalid())?;
    if envelope.as_entries().is_none() {
        return Err(invalid());
    }
    let version = envelope
        .get("version")
        .and_then(|v| v.as_int())
        .ok_or_else(invalid)?;
    if version != 1 {
        return Err(Error::generic(format!(
            "encrypted key version {version} is not supported by this borg version."
        )));
    }
    let algorithm = envelope
        .get("algorithm")
        .and_then(|v| v.as_bytes())
        .ok_or_else(invalid)?;
    if algorithm != b"sha256" {
        return Err(Error::generic(format!(
            "encrypted key algorithm '{}' is not supported by this borg version.",
            String::from_utf8_lossy(algorithm)
        )));
    }
    let field = |k: &str| {
        envelope
            .get(k)
            .and_then(|v| v.as_bytes())
            .ok_or_else(invalid)
    };
    let (salt, hash, cipher) = (field("salt")?, field("hash")?, field("data")?);
    let iterations = envelope
        .get("iterations")
        .and_then(|v| v.as_uint())
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n >= 1)
        .ok_or_else(invalid)?;
    let kek = kdf(passphrase, salt, iterations);
    let mut plain = cipher.to_vec();
    ctr_zero_iv(&kek, &mut plain);
    let mut mac = HmacSha256::new_from_slice(&kek).expect("any HMAC key length");
    mac.update(&plain);
    if mac.verify_slice(hash).is_err() {
        return Ok(None);
    }
    match KeyMaterial::from_msgpack(&plain)? {
        Some(m) => Ok(Some(m)),
        None => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::keytype::KeyType;

    #[test]
    fn blob_round_trip_and_wrong_passphrase() {
        let m = KeyMaterial::random(KeyType::RepoKey, [5; 32]);
        let text = encrypt_key_blob(&m, "secret");
        assert!(text.lines().all(|l| l.len() <= 70));
        assert!(text.lines().rev().skip(1).all(|l| l.len() == 70));
        assert!(!text.ends_with('\n'));
        assert_eq!(
            decrypt_key_blob(text.as_bytes(), "secret").unwrap(),
            Some(m.clone())
        );
        assert_eq!(decrypt_key_blob(text.as_bytes(), "wrong").unwrap(), None);
        // Config form: TAB-indented continuation lines are fine.
        let config_form = text.replace('\n', "\n\t");
        assert_eq!(
            decrypt_key_blob(config_form.as_bytes(), "secret").unwrap(),
            Some(m)
        );
        // Empty passphrase is legal.
        let m = KeyMaterial::random(KeyType::KeyFileBlake2, [6; 32]);
        let text = encrypt_key_blob(&m, "");
        assert_eq!(decrypt_key_blob(text.as_bytes(), "").unwrap(), Some(m));
    }

    #[test]
    fn envelope_known_answer() {
        // Oracle: python3 hashlib/hmac and borg's msgpack: kek = pbkdf2_hmac('sha256', b'pw', salt, 1000)
        // and hash = hmac(kek, plaintext key msgpack, sha256).
        let m = KeyMaterial {
            repository_id: [1; 32],
            enc_key: vec![2; 32],
            enc_hmac_key: vec![3; 32],
            id_key: vec![4; 32],
            chunk_seed: -5,
            tam_required: Some(true),
        };
        let salt = [9u8; 32];
        let env = encrypted_envelope(&m, "pw", &salt, 1000);
        let v = crate::msgpack::unpack(&env).unwrap();
        let keys: Vec<&[u8]> = v
            .as_entries()
            .unwrap()
            .iter()
            .map(|(k, _)| k.as_bytes().unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                &b"algorithm"[..],
                b"data",
                b"hash",
                b"iterations",
                b"salt",
                b"version"
            ]
        );
        assert_eq!(hex::encode(kdf("pw", &salt, 1000)), KEK_HEX);
        assert_eq!(
            hex::encode(v.get("hash").unwrap().as_bytes().unwrap()),
            HASH_HEX
        );
        assert_eq!(hex::encode(m.to_msgpack()), PLAIN_HEX);
    }

    const KEK_HEX: &str = "440bd5ba9e9df210cb2a77cfcb94d26149d79d88cabd238693d653f5221579dc";
    const HASH_HEX: &str = "c31716c830ebe3df5777a20006199f31a4f2581db9923a684ca29e6f5e35c8bd";
    // borg 1.2.4: msgpack.packb(StableDict of the key)
    const PLAIN_HEX: &str = concat!(
        "87aa6368756e6b5f73656564fbac656e635f686d61635f6b6579da00200303030303030303030303",
        "030303030303030303030303030303030303030303a7656e635f6b6579da00200202020202020202",
        "020202020202020202020202020202020202020202020202a669645f6b6579da0020040404040404",
        "0404040404040404040404040404040404040404040404040404ad7265706f7369746f72795f6964",
        "da00200101010101010101010101010101010101010101010101010101010101010101ac74616d5f",
        "7265717569726564c3a776657273696f6e01",
    );

    #[test]
    fn malformed_blobs_are_invalid_not_panics() {
        let m = KeyMaterial::random(KeyType::RepoKey, [5; 32]);
        let text = encrypt_key_blob(&m, "x");
        let cases: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"!!!!".to_vec(),
            b"aGVsbG8=".to_vec(),
            text.as_bytes()[..40].to_vec(),
            encode_key_text(&[0xc1; 40]).into_bytes(),
            encode_key_text(&crate::msgpack::pack(&Value::from(5))).into_bytes(),
            encode_key_text(&[
                0x81, 0xa7, b'v', b'e', b'r', b's', b'i', b'o', b'n', 0x01, 0, 0, 0, 0, 0, 0, 0, 0,
                0, 0, 0,
            ])
            .into_bytes(),
        ];
        for c in cases {
            let e = decrypt_key_blob_in(&c, "x", "/repo", "(repokey)").unwrap_err();
            assert_eq!(e.kind, ErrorKind::KeyfileInvalidError, "{c:?}");
            assert_eq!(
                e.message,
                "Invalid key data for repository /repo found in (repokey)."
            );
        }
        // Unsupported envelope version / algorithm: borg's generic errors.
        let mut env = crate::msgpack::unpack(&encrypted_envelope(&m, "x", &[0; 32], 1)).unwrap();
        if let Value::Map(e) = &mut env {
            for (k, v) in e.iter_mut() {
                if k.as_bytes() == Some(b"version") {
                    *v = Value::from(2);
                }
            }
        }
        let e = decrypt_key_blob(encode_key_text(&crate::msgpack::pack(&env)).as_bytes(), "x")
            .unwrap_err();
        assert_eq!(
            e.message,
            "Error: encrypted key version 2 is not supported by this borg version."
        );
    }
}
