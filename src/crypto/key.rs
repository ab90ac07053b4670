//! The opened key: chunk ids, the object envelope (encrypt / decrypt), TAM
//! (repository-format.md §4.2–§4.4, §4.7).

use std::cell::RefCell;
use std::fmt;
use std::path::{Path, PathBuf};

use aes::cipher::{InnerIvInit, KeyInit, StreamCipher, StreamCipherCoreWrapper};
use aes::Aes256;
use blake2::Digest;
use hmac::{Hmac, Mac};
use rand::RngCore;
use rmpv::Value;
use sha2::{Sha256, Sha512};
use subtle::ConstantTimeEq;

use super::keytype::KeyType;
use super::nonces::NonceManager;
use crate::compress::{self, CompressionSpec};
use crate::errors::{Error, ErrorKind, Result};
use crate::msgpack::{self, ValueExt};
use crate::output;
use crate::repository::{ObjectId, MANIFEST_ID};

type HmacSha256 = Hmac<Sha256>;
type HmacSha512 = Hmac<Sha512>;
/// Unkeyed BLAKE2b with a 32-byte digest (borg's ids and MACs of the blake2 modes), on the
/// SIMD implementation: it is on the extract/create hot path.
#[derive(Clone)]
struct Blake2b256(blake2b_simd::State);

impl Blake2b256 {
    fn new() -> Blake2b256 {
        Blake2b256(blake2b_simd::Params::new().hash_length(32).to_state())
    }

    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    fn finalize(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.0.finalize().as_bytes());
        out
    }

    /// Continue this state with each input, hashing the inputs side by side (SIMD lanes).
    fn many<'a>(&self, inputs: impl Iterator<Item = &'a [u8]>) -> Vec<[u8; 32]> {
        let inputs: Vec<&[u8]> = inputs.collect();
        let mut states: Vec<blake2b_simd::State> = inputs.iter().map(|_| self.0.clone()).collect();
        blake2b_simd::many::update_many(states.iter_mut().zip(inputs.iter().copied()));
        states
            .iter()
            .map(|st| {
                let mut out = [0u8; 32];
                out.copy_from_slice(st.finalize().as_bytes());
                out
            })
            .collect()
    }
}
type Aes256Ctr = ctr::Ctr128BE<Aes256>;

/// Type byte + MAC + nonce in front of the ciphertext of the AES modes.
pub const AES_OVERHEAD: usize = 1 + 32 + 8;

/// Room for a compressed envelope of `len` plaintext bytes (above lz4's and zstd's bounds).
fn compress_room(len: usize) -> usize {
    len + len / 128 + 128
}

/// The TAM suite borg writes and accepts.
const TAM_SUITE: &str = "HKDF_HMAC_SHA512";

/// Number of 16-byte AES blocks needed for `len` bytes (borg's num_cipher_blocks).
pub fn blocks_needed(len: usize) -> u64 {
    (len as u64).div_ceil(16)
}

/// The first counter value that is safe after a stored manifest: its nonce plus the blocks its
/// whole stored length could need (borg's manifest_nonce). `None` if the object is too short.
pub fn manifest_nonce(manifest_stored: &[u8]) -> Option<u64> {
    let nonce = manifest_stored.get(33..41)?;
    let nonce = u64::from_be_bytes(nonce.try_into().ok()?);
    nonce.checked_add(blocks_needed(manifest_stored.len()))
}

/// Plaintext key material as stored in the key blob (§4.2).
#[derive(Clone, PartialEq, Eq)]
pub struct KeyMaterial {
    pub repository_id: ObjectId,
    pub enc_key: Vec<u8>,
    pub enc_hmac_key: Vec<u8>,
    pub id_key: Vec<u8>,
    pub chunk_seed: i32,
    /// `tam_required` of the blob; absent in keys of borg < 1.0.9.
    pub tam_required: Option<bool>,
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyMaterial")
            .field("repository_id", &hex::encode(self.repository_id))
            .field("chunk_seed", &self.chunk_seed)
            .field("tam_required", &self.tam_required)
            .finish_non_exhaustive()
    }
}

impl KeyMaterial {
    /// borg's random key: enc_key, enc_hmac_key, id_key and a signed 32-bit chunk seed from 100
    /// random bytes; blake2 modes use 64 random + 64 zero bytes for both MAC and id keys.
    pub fn random(key_type: KeyType, repository_id: ObjectId) -> KeyMaterial {
        let mut rng = rand::rngs::OsRng;
        let mut r = [0u8; 100];
        rng.fill_bytes(&mut r);
        let seed = u32::from_be_bytes(r[96..100].try_into().expect("4 bytes")) as i32;
        let mut m = KeyMaterial {
            repository_id,
            enc_key: r[0..32].to_vec(),
            enc_hmac_key: r[32..64].to_vec(),
            id_key: r[64..96].to_vec(),
            chunk_seed: seed,
            tam_required: Some(true),
        };
        if key_type.is_blake2() {
            let blake2_key = |rng: &mut rand::rngs::OsRng| {
                let mut k = vec![0u8; 128];
                rng.fill_bytes(&mut k[..64]);
                k
            };
            m.enc_hmac_key = blake2_key(&mut rng);
            m.id_key = blake2_key(&mut rng);
        }
        m
    }

    /// The msgpack of the plaintext key (sorted keys, §4.2).
    pub fn to_msgpack(&self) -> Vec<u8> {
        let map = msgpack::sorted_map(vec![
            (Value::from("version"), Value::from(1)),
            (
                Value::from("repository_id"),
                msgpack::bytes(self.repository_id.to_vec()),
            ),
            (Value::from("enc_key"), msgpack::bytes(self.enc_key.clone())),
            (
                Value::from("enc_hmac_key"),
                msgpack::bytes(self.enc_hmac_key.clone()),
            ),
            (Value::from("id_key"), msgpack::bytes(self.id_key.clone())),
            (Value::from("chunk_seed"), Value::from(self.chunk_seed)),
            (
                Value::from("tam_required"),
                Value::from(self.tam_required.unwrap_or(true)),
            ),
        ]);
        msgpack::pack(&map)
    }

    /// Parse the plaintext key msgpack; `None` if it is not a well-formed version-1 key.
    /// A wrong version gives borg's (unformatted) error text.
    pub fn from_msgpack(data: &[u8]) -> Result<Option<KeyMaterial>> {
        let Ok(v) = read_first_value(data) else {
            return Ok(None);
        };
        if v.as_entries().is_none() {
            return Ok(None);
        }
        match v.get("version").and_then(|x| x.as_int()) {
            Some(1) => {}
            // borg forgets to format this message.
            Some(_) => {
                return Err(Error::generic(
                    "key version %d is not supported by this borg version.",
                ))
            }
            None => return Ok(None),
        }
        let bytes_of = |k: &str| v.get(k).and_then(|x| x.as_bytes()).map(|b| b.to_vec());
        let (Some(repo_id), Some(enc_key), Some(enc_hmac_key), Some(id_key)) = (
            bytes_of("repository_id"),
            bytes_of("enc_key"),
            bytes_of("enc_hmac_key"),
            bytes_of("id_key"),
        ) else {
            return Ok(None);
        };
        let Ok(repository_id) = ObjectId::try_from(repo_id.as_slice()) else {
            return Ok(None);
        };
        let Some(chunk_seed) = v.get("chunk_seed").and_then(|x| x.as_int()) else {
            return Ok(None);
        };
        let Ok(chunk_seed) = i32::try_from(chunk_seed) else {
            return Ok(None);
        };
        let tam_required = match v.get("tam_required") {
            None => None,
            Some(x) => match x.as_boolean() {
                Some(b) => Some(b),
                None => return Ok(None),
            },
        };
        Ok(Some(KeyMaterial {
            repository_id,
            enc_key,
            enc_hmac_key,
            id_key,
            chunk_seed,
            tam_required,
        }))
    }
}

/// Where the key blob of an opened key lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `none` mode, or a key not saved anywhere yet.
    Nowhere,
    /// In the repository config; the value is the repository location.
    Repository(String),
    /// A key file.
    KeyFile(PathBuf),
}

/// The chunk-id function of a key.
#[derive(Clone)]
enum IdHasher {
    Sha256,
    Hmac(HmacSha256),
    /// Unkeyed BLAKE2b-256 with the 128-byte id key already absorbed.
    Blake2(Blake2b256),
}

/// The MAC of the AES modes.
#[derive(Clone)]
enum ObjectMac {
    Hmac(HmacSha256),
    Blake2(Blake2b256),
}

impl ObjectMac {
    fn compute(&self, data: &[u8]) -> [u8; 32] {
        match self {
            ObjectMac::Hmac(h) => {
                let mut h = h.clone();
                h.update(data);
                h.finalize().into_bytes().into()
            }
            ObjectMac::Blake2(b) => {
                let mut b = b.clone();
                b.update(data);
                b.finalize()
            }
        }
    }
}

thread_local! {
    /// Decrypted-but-compressed payloads on the extract hot path.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// An opened key: plaintext key material plus ready-to-use hash/MAC/cipher states.
/// `&Key` is shared between threads (Send + Sync); nothing in it changes after opening.
#[derive(Clone)]
pub struct Key {
    key_type: KeyType,
    material: KeyMaterial,
    source: KeySource,
    tam_required: bool,
    logically_encrypted: bool,
    start_nonce: u64,
    id_hasher: IdHasher,
    mac: Option<ObjectMac>,
    aes: Option<Aes256>,
    /// The passphrase the key blob was unlocked with (borg's `key._passphrase`), to store
    /// the blob again after a change of `tam_required` (`upgrade --tam` / `--disable-tam`).
    passphrase: Option<String>,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("key_type", &self.key_type)
            .field("source", &self.source)
            .field("tam_required", &self.tam_required)
            .finish_non_exhaustive()
    }
}

impl Key {
    /// Build a key of `key_type` from its material. Checks the lengths the ciphers need.
    pub fn from_material(
        key_type: KeyType,
        material: KeyMaterial,
        source: KeySource,
    ) -> Result<Key> {
        let key_type = key_type.effective();
        let invalid = || Error::generic("invalid key material (wrong key lengths)");
        let id_hasher = match key_type {
            KeyType::None => IdHasher::Sha256,
            t if t.is_blake2() => {
                let mut b = Blake2b256::new();
                b.update(&material.id_key);
                IdHasher::Blake2(b)
            }
            _ => IdHasher::Hmac(
                <HmacSha256 as Mac>::new_from_slice(&material.id_key).map_err(|_| invalid())?,
            ),
        };
        let (mac, aes) = if key_type.is_encrypted() {
            if material.enc_key.len() != 32 {
                return Err(invalid());
            }
            let mac = if key_type.is_blake2() {
                if material.enc_hmac_key.len() != 128 {
                    return Err(invalid());
                }
                let mut b = Blake2b256::new();
                b.update(&material.enc_hmac_key);
                ObjectMac::Blake2(b)
            } else {
                if material.enc_hmac_key.len() != 32 {
                    return Err(invalid());
                }
                ObjectMac::Hmac(
                    <HmacSha256 as Mac>::new_from_slice(&material.enc_hmac_key)
                        .map_err(|_| invalid())?,
                )
            };
            let aes = Aes256::new_from_slice(&material.enc_key).map_err(|_| invalid())?;
            (Some(mac), Some(aes))
        } else {
            (None, None)
        };
        Ok(Key {
            key_type,
            tam_required: key_type != KeyType::None && material.tam_required.unwrap_or(true),
            logically_encrypted: key_type.logically_encrypted(),
            material,
            source,
            start_nonce: 0,
            id_hasher,
            mac,
            aes,
            passphrase: None,
        })
    }

    /// A new random key for a new repository (borg init): TAM required except for `none`.
    pub fn generate(key_type: KeyType, repository_id: ObjectId) -> Key {
        let key_type = key_type.effective();
        let material = if key_type == KeyType::None {
            KeyMaterial {
                repository_id,
                enc_key: Vec::new(),
                enc_hmac_key: Vec::new(),
                id_key: Vec::new(),
                chunk_seed: 0,
                tam_required: Some(false),
            }
        } else {
            KeyMaterial::random(key_type, repository_id)
        };
        Key::from_material(key_type, material, KeySource::Nowhere)
            .expect("generated key lengths are valid")
    }

    /// The `none` mode's key (no material).
    pub fn plaintext(repository_id: ObjectId) -> Key {
        Key::generate(KeyType::None, repository_id)
    }

    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    pub fn material(&self) -> &KeyMaterial {
        &self.material
    }

    pub fn source(&self) -> &KeySource {
        &self.source
    }

    pub fn set_source(&mut self, source: KeySource) {
        self.source = source;
    }

    /// The key file path (key file modes, once loaded or saved).
    pub fn keyfile_path(&self) -> Option<&Path> {
        match &self.source {
            KeySource::KeyFile(p) => Some(p),
            _ => None,
        }
    }

    /// The repository id stored in the key.
    pub fn repository_id(&self) -> ObjectId {
        self.material.repository_id
    }

    pub fn chunk_seed(&self) -> i32 {
        self.material.chunk_seed
    }

    pub fn tam_required(&self) -> bool {
        self.tam_required
    }

    /// The passphrase this key was unlocked with, if it came from a protected blob.
    pub fn passphrase(&self) -> Option<&str> {
        self.passphrase.as_deref()
    }

    pub fn set_passphrase(&mut self, passphrase: Option<String>) {
        self.passphrase = passphrase;
    }

    pub fn set_tam_required(&mut self, required: bool) {
        self.tam_required = required;
        if self.key_type != KeyType::None {
            self.material.tam_required = Some(required);
        }
    }

    /// borg's per-instance `logically_encrypted` (false for `none`, `authenticated*` and a
    /// repokey with the empty passphrase).
    pub fn logically_encrypted(&self) -> bool {
        self.logically_encrypted
    }

    pub fn set_logically_encrypted(&mut self, value: bool) {
        self.logically_encrypted = value;
    }

    /// The counter value to start from: 0 for a new repository, else derived from the stored
    /// manifest ([`manifest_nonce`]).
    pub fn start_nonce(&self) -> u64 {
        self.start_nonce
    }

    pub fn set_start_nonce(&mut self, nonce: u64) {
        self.start_nonce = nonce;
    }

    /// Whether stored objects are AES-CTR encrypted (and so need nonces).
    pub fn needs_nonces(&self) -> bool {
        self.aes.is_some()
    }

    /// The chunk id of `data` (§4.3).
    pub fn id_hash(&self, data: &[u8]) -> ObjectId {
        match &self.id_hasher {
            IdHasher::Sha256 => Sha256::digest(data).into(),
            IdHasher::Hmac(h) => {
                let mut h = h.clone();
                h.update(data);
                h.finalize().into_bytes().into()
            }
            IdHasher::Blake2(b) => {
                let mut b = b.clone();
                b.update(data);
                b.finalize()
            }
        }
    }

    /// Whether `type_byte` is an envelope this key opens (repokey also opens legacy 0x01).
    fn accepts_type_byte(&self, type_byte: u8) -> bool {
        type_byte == self.key_type.byte()
            || (type_byte == KeyType::Passphrase.byte()
                && matches!(self.key_type, KeyType::RepoKey | KeyType::RepoKeyBlake2))
    }

    /// Decrypt and decompress a stored object; verify its id when `id` is given (and is not
    /// the manifest id).
    pub fn decrypt(&self, id: Option<&ObjectId>, stored: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.decrypt_into(id, stored, &mut out)?;
        Ok(out)
    }

    /// As [`Key::decrypt`], writing the plaintext into `out` (cleared first).
    pub fn decrypt_into(
        &self,
        id: Option<&ObjectId>,
        stored: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        out.clear();
        match &self.aes {
            None => {
                let payload = self.open_unencrypted(id, stored)?;
                compress::decompress_into(payload, out)?;
            }
            Some(aes) => {
                self.verify_mac(id, stored)?;
                decrypt_authenticated(aes, stored, out)?;
            }
        }
        self.check_id(id, out)
    }

    /// Decrypt a batch of objects; each job gets its own result. In the BLAKE2b modes the MACs
    /// and the ids of the batch are hashed together, several objects per SIMD pass (about
    /// twice the throughput of hashing them one by one); otherwise this is a loop over
    /// [`Key::decrypt_into`].
    pub fn decrypt_many(&self, jobs: &mut [DecryptJob<'_>]) {
        let (Some(aes), Some(ObjectMac::Blake2(mac)), IdHasher::Blake2(id_hasher)) =
            (&self.aes, &self.mac, &self.id_hasher)
        else {
            for j in jobs.iter_mut() {
                j.result = self.decrypt_into(j.id.as_ref(), j.stored, &mut j.out);
            }
            return;
        };
        if jobs.len() < 2 {
            for j in jobs.iter_mut() {
                j.result = self.decrypt_into(j.id.as_ref(), j.stored, &mut j.out);
            }
            return;
        }
        // 1. envelope checks, then all MACs in one pass
        for j in jobs.iter_mut() {
            j.out.clear();
            j.result = self.check_envelope(j.id.as_ref(), j.stored);
        }
        let macs = mac.many(
            jobs.iter()
                .filter(|j| j.result.is_ok())
                .map(|j| &j.stored[33..]),
        );
        for (j, mac) in jobs.iter_mut().filter(|j| j.result.is_ok()).zip(macs) {
            if !bool::from(mac.ct_eq(&j.stored[1..33])) {
                j.result = Err(mac_failed(j.id.as_ref()));
            }
        }
        // 2. decrypt and decompress the authentic ones
        for j in jobs.iter_mut().filter(|j| j.result.is_ok()) {
            j.result = decrypt_authenticated(aes, j.stored, &mut j.out);
        }
        // 3. all id checks in one pass
        let needs_id =
            |j: &DecryptJob| j.result.is_ok() && j.id.is_some_and(|id| id != MANIFEST_ID);
        let ids = id_hasher.many(jobs.iter().filter(|j| needs_id(j)).map(|j| &j.out[..]));
        for (j, computed) in jobs.iter_mut().filter(|j| needs_id(j)).zip(ids) {
            let id = j.id.unwrap_or_default();
            if !bool::from(computed.ct_eq(&id)) {
                j.result = Err(Error::integrity(format!(
                    "Chunk {}: id verification failed",
                    hex::encode(id)
                )));
            }
        }
    }

    /// The decrypted but still compressed payload (borg's `decrypt(..., decompress=False)`);
    /// no id check.
    pub fn decrypt_payload(&self, id: Option<&ObjectId>, stored: &[u8]) -> Result<Vec<u8>> {
        match &self.aes {
            None => Ok(self.open_unencrypted(id, stored)?.to_vec()),
            Some(aes) => {
                self.verify_mac(id, stored)?;
                let nonce: [u8; 8] = stored[33..41].try_into().expect("8 bytes");
                let mut buf = stored[AES_OVERHEAD..].to_vec();
                new_ctr(aes, nonce).apply_keystream(&mut buf);
                Ok(buf)
            }
        }
    }

    /// Type-byte check for `none` / `authenticated*`; returns the payload.
    fn open_unencrypted<'a>(&self, id: Option<&ObjectId>, stored: &'a [u8]) -> Result<&'a [u8]> {
        match stored.first() {
            Some(&b) if self.accepts_type_byte(b) => Ok(&stored[1..]),
            _ => {
                let what = if self.key_type == KeyType::None {
                    "Invalid encryption envelope"
                } else {
                    "Invalid envelope"
                };
                Err(Error::integrity(format!("Chunk {}: {what}", id_text(id))))
            }
        }
    }

    /// Type byte and length of an AES envelope.
    fn check_envelope(&self, id: Option<&ObjectId>, stored: &[u8]) -> Result<()> {
        match stored.first() {
            Some(&b) if self.accepts_type_byte(b) => {}
            _ => {
                return Err(Error::integrity(format!(
                    "Chunk {}: Invalid encryption envelope",
                    id_text(id)
                )))
            }
        }
        if stored.len() < AES_OVERHEAD {
            return Err(mac_failed(id));
        }
        Ok(())
    }

    /// Type byte and MAC check of an AES envelope (the MAC covers nonce + ciphertext).
    fn verify_mac(&self, id: Option<&ObjectId>, stored: &[u8]) -> Result<()> {
        self.check_envelope(id, stored)?;
        let mac = self.mac.as_ref().expect("AES keys have a MAC");
        let computed = mac.compute(&stored[33..]);
        if bool::from(computed.ct_eq(&stored[1..33])) {
            Ok(())
        } else {
            Err(mac_failed(id))
        }
    }

    fn check_id(&self, id: Option<&ObjectId>, plaintext: &[u8]) -> Result<()> {
        match id {
            Some(id) if *id != MANIFEST_ID => {
                if bool::from(self.id_hash(plaintext).ct_eq(id)) {
                    Ok(())
                } else {
                    Err(Error::integrity(format!(
                        "Chunk {}: id verification failed",
                        hex::encode(id)
                    )))
                }
            }
            _ => Ok(()),
        }
    }

    /// The stored envelope of an already-compressed payload. AES modes encrypt with counter
    /// `nonce` (which must come from a [`NonceManager`]); other modes ignore it.
    pub fn encrypt(&self, compressed: &[u8], nonce: u64) -> Vec<u8> {
        match (&self.aes, &self.mac) {
            (Some(aes), Some(mac)) => {
                let mut out = Vec::with_capacity(AES_OVERHEAD + compressed.len());
                out.push(self.key_type.byte());
                out.extend_from_slice(&[0u8; 32]);
                out.extend_from_slice(&nonce.to_be_bytes());
                out.extend_from_slice(compressed);
                new_ctr(aes, nonce.to_be_bytes()).apply_keystream(&mut out[AES_OVERHEAD..]);
                let tag = mac.compute(&out[33..]);
                out[1..33].copy_from_slice(&tag);
                out
            }
            _ => {
                let mut out = Vec::with_capacity(1 + compressed.len());
                out.push(self.key_type.byte());
                out.extend_from_slice(compressed);
                out
            }
        }
    }

    /// The ids of several chunks; in the BLAKE2b modes they are hashed side by side.
    pub fn id_hash_many(&self, datas: &[&[u8]]) -> Vec<ObjectId> {
        match &self.id_hasher {
            IdHasher::Blake2(b) if datas.len() > 1 => b.many(datas.iter().copied()),
            _ => datas.iter().map(|d| self.id_hash(d)).collect(),
        }
    }

    /// Compress and encrypt several plaintexts (nonces taken in order); in the BLAKE2b modes
    /// the MACs are computed side by side.
    pub fn compress_and_encrypt_many(
        &self,
        spec: &CompressionSpec,
        plaintexts: &[&[u8]],
        nonces: Option<&NonceManager>,
        buffer: &dyn Fn(usize) -> Vec<u8>,
    ) -> Result<Vec<Vec<u8>>> {
        let (Some(aes), Some(ObjectMac::Blake2(mac))) = (&self.aes, &self.mac) else {
            return plaintexts
                .iter()
                .map(|p| self.compress_and_encrypt(spec, p, nonces))
                .collect();
        };
        let nm = nonces.ok_or_else(|| Error::exception("encryption needs a nonce manager"))?;
        let mut out = Vec::with_capacity(plaintexts.len());
        for p in plaintexts {
            // type, MAC (filled below), nonce (once the compressed size is known), body.
            let mut env = buffer(AES_OVERHEAD + compress_room(p.len()));
            env.resize(AES_OVERHEAD, 0);
            env[0] = self.key_type.byte();
            spec.compress_append(p, &mut env);
            let nonce = nm.allocate(env.len() - AES_OVERHEAD)?;
            env[33..AES_OVERHEAD].copy_from_slice(&nonce.to_be_bytes());
            new_ctr(aes, nonce.to_be_bytes()).apply_keystream(&mut env[AES_OVERHEAD..]);
            out.push(env);
        }
        let tags = mac.many(out.iter().map(|e| &e[33..]));
        for (env, tag) in out.iter_mut().zip(tags) {
            env[1..33].copy_from_slice(&tag);
        }
        Ok(out)
    }

    /// Compress `plaintext` with `spec` and build its stored envelope, taking the nonce from
    /// `nonces` for AES modes (required there).
    pub fn compress_and_encrypt(
        &self,
        spec: &CompressionSpec,
        plaintext: &[u8],
        nonces: Option<&NonceManager>,
    ) -> Result<Vec<u8>> {
        let (Some(aes), Some(mac)) = (&self.aes, &self.mac) else {
            let mut env = vec![self.key_type.byte()];
            spec.compress_append(plaintext, &mut env);
            return Ok(env);
        };
        let nm = nonces.ok_or_else(|| Error::exception("encryption needs a nonce manager"))?;
        // type, MAC, nonce, body: compressed in place, then encrypted in place.
        let mut env = vec![0u8; AES_OVERHEAD];
        env[0] = self.key_type.byte();
        spec.compress_append(plaintext, &mut env);
        let nonce = nm.allocate(env.len() - AES_OVERHEAD)?;
        env[33..AES_OVERHEAD].copy_from_slice(&nonce.to_be_bytes());
        new_ctr(aes, nonce.to_be_bytes()).apply_keystream(&mut env[AES_OVERHEAD..]);
        let tag = mac.compute(&env[33..]);
        env[1..33].copy_from_slice(&tag);
        Ok(env)
    }

    /// The TAM key for `salt` and `context` (`b"manifest"` / `b"archive"`): HKDF-SHA512 over the
    /// key material, or just `salt || context` in `none` mode.
    fn tam_key(&self, salt: &[u8], context: &[u8]) -> Vec<u8> {
        if self.key_type == KeyType::None {
            return [salt, context].concat();
        }
        let m = &self.material;
        let ikm = [
            m.id_key.as_slice(),
            m.enc_key.as_slice(),
            m.enc_hmac_key.as_slice(),
        ]
        .concat();
        let info = [b"borg-metadata-authentication-".as_slice(), context].concat();
        let mut okm = vec![0u8; 64];
        hkdf::Hkdf::<Sha512>::new(Some(salt), &ikm)
            .expand(&info, &mut okm)
            .expect("64 bytes is a valid HKDF-SHA512 length");
        okm
    }

    /// Add a TAM to `map` (sorted keys) and serialize it so borg verifies it (§4.7).
    /// `salt` defaults to 64 random bytes. Nested maps are packed as given.
    pub fn pack_and_authenticate_metadata(
        &self,
        map: Value,
        context: &[u8],
        salt: Option<[u8; 64]>,
    ) -> Vec<u8> {
        let salt = salt.unwrap_or_else(|| {
            let mut s = [0u8; 64];
            rand::rngs::OsRng.fill_bytes(&mut s);
            s
        });
        let mut entries = match map {
            Value::Map(entries) => entries,
            _ => Vec::new(),
        };
        entries.retain(|(k, _)| k.as_bytes() != Some(b"tam"));
        let tam = |hmac: Vec<u8>| {
            msgpack::sorted_map(vec![
                (Value::from("hmac"), msgpack::bytes(hmac)),
                (Value::from("salt"), msgpack::bytes(salt.to_vec())),
                (Value::from("type"), Value::from(TAM_SUITE)),
            ])
        };
        entries.push((Value::from("tam"), tam(vec![0u8; 64])));
        let mut map = msgpack::sorted_map(entries);
        let packed = msgpack::pack(&map);
        let mut mac = <HmacSha512 as Mac>::new_from_slice(&self.tam_key(&salt, context))
            .expect("any HMAC key length");
        mac.update(&packed);
        let hmac = mac.finalize().into_bytes().to_vec();
        if let Value::Map(entries) = &mut map {
            for (k, v) in entries.iter_mut() {
                if k.as_bytes() == Some(b"tam") {
                    *v = tam(hmac.clone());
                }
            }
        }
        msgpack::pack(&map)
    }

    /// Unpack a manifest and verify its TAM with borg 1.4.5's rules. Returns the map without
    /// its `tam` entry and whether it was verified.
    pub fn unpack_and_verify_manifest(
        &self,
        plaintext: &[u8],
        force_tam_not_required: bool,
    ) -> Result<(Value, bool)> {
        if plaintext.starts_with(&[0xc1; 4]) {
            return Err(Error::plain(ErrorKind::UnsupportedManifestError));
        }
        let mut required = self.tam_required;
        if force_tam_not_required && required {
            output::warning("Manifest authentication DISABLED.");
            required = false;
        }
        let (value, tam) = unpack_metadata(plaintext)?;
        let Some(tam) = tam else {
            if required {
                return Err(Error::plain(ErrorKind::TAMRequiredError));
            }
            output::debug("Manifest TAM not found and not required");
            return Ok((value, false));
        };
        let invalid = || {
            Error::new(
                ErrorKind::TAMInvalid,
                ["Manifest authentication did not verify"],
            )
        };
        match self.check_tam(plaintext, &tam, b"manifest")? {
            TamCheck::Valid(_) => {
                output::debug("TAM-verified manifest");
                Ok((value, true))
            }
            TamCheck::Malformed | TamCheck::Mismatch => Err(invalid()),
            TamCheck::UnsupportedSuite(suite) => {
                if required {
                    return Err(unsupported_suite(&suite));
                }
                output::debug(&format!(
                    "Ignoring manifest TAM made with unsupported suite, since TAM is not required: {}",
                    crate::python::repr(&suite)
                ));
                Ok((value, false))
            }
        }
    }

    /// Unpack an archive metadata object and verify its TAM (borg 1.4.5). Returns the map
    /// without `tam`, whether it verified, and the TAM salt when it did.
    pub fn unpack_and_verify_archive(
        &self,
        plaintext: &[u8],
        force_tam_not_required: bool,
    ) -> Result<(Value, bool, Option<Vec<u8>>)> {
        let ignore_invalid = borg_workaround("ignore_invalid_archive_tam");
        self.unpack_and_verify_archive_with(plaintext, force_tam_not_required, ignore_invalid)
    }

    pub(crate) fn unpack_and_verify_archive_with(
        &self,
        plaintext: &[u8],
        force_tam_not_required: bool,
        ignore_invalid_tam: bool,
    ) -> Result<(Value, bool, Option<Vec<u8>>)> {
        let mut required = self.tam_required;
        if force_tam_not_required && required {
            output::debug("Archive authentication DISABLED.");
            required = false;
        }
        let (value, tam) = unpack_metadata(plaintext)?;
        let Some(tam) = tam else {
            if required {
                let name = value
                    .get("name")
                    .and_then(|n| n.as_bytes())
                    .map(ascii_replace);
                let name = name.unwrap_or_else(|| "<unknown>".to_string());
                return Err(Error::new(ErrorKind::ArchiveTAMRequiredError, [name]));
            }
            output::debug("Archive TAM not found and not required");
            return Ok((value, false, None));
        };
        let invalid = || {
            Error::new(
                ErrorKind::ArchiveTAMInvalid,
                ["Archive authentication did not verify"],
            )
        };
        match self.check_tam(plaintext, &tam, b"archive")? {
            TamCheck::Valid(salt) => {
                output::debug("TAM-verified archive");
                Ok((value, true, Some(salt)))
            }
            TamCheck::Malformed => Err(invalid()),
            TamCheck::Mismatch => {
                if ignore_invalid_tam {
                    output::debug("ignoring invalid archive TAM due to BORG_WORKAROUNDS");
                    Ok((value, false, None))
                } else {
                    Err(invalid())
                }
            }
            TamCheck::UnsupportedSuite(suite) => {
                if required {
                    return Err(unsupported_suite(&suite));
                }
                output::debug(&format!(
                    "Ignoring archive TAM made with unsupported suite, since TAM is not required: {}",
                    crate::python::repr(&suite)
                ));
                Ok((value, false, None))
            }
        }
    }

    /// Verify a TAM entry against the original serialized bytes: the first occurrence of the
    /// hmac bytes counts as zeros.
    fn check_tam(&self, data: &[u8], tam: &Value, context: &[u8]) -> Result<TamCheck> {
        if tam.as_entries().is_none() {
            return Ok(TamCheck::Malformed);
        }
        let suite = match tam.get("type") {
            None => "<none>".to_string(),
            Some(t) => match t.as_bytes() {
                Some(b) => ascii_replace(b),
                None => return Ok(TamCheck::Malformed),
            },
        };
        if suite != TAM_SUITE {
            return Ok(TamCheck::UnsupportedSuite(suite));
        }
        let (Some(hmac), Some(salt)) = (
            tam.get("hmac").and_then(|v| v.as_bytes()),
            tam.get("salt").and_then(|v| v.as_bytes()),
        ) else {
            return Ok(TamCheck::Malformed);
        };
        if hmac.len() != 64 {
            return Ok(TamCheck::Mismatch);
        }
        let Some(offset) = find_subslice(data, hmac) else {
            return Ok(TamCheck::Mismatch);
        };
        let mut mac = <HmacSha512 as Mac>::new_from_slice(&self.tam_key(salt, context))
            .expect("any HMAC key length");
        mac.update(&data[..offset]);
        mac.update(&[0u8; 64]);
        mac.update(&data[offset + 64..]);
        Ok(match mac.verify_slice(hmac) {
            Ok(()) => TamCheck::Valid(salt.to_vec()),
            Err(_) => TamCheck::Mismatch,
        })
    }

    /// The protected key blob text for `passphrase` (§4.5): base64 lines of ≤ 70 chars.
    pub fn encrypt_key_blob(&self, passphrase: &str) -> String {
        let mut material = self.material.clone();
        material.tam_required = Some(self.tam_required);
        super::keyblob::encrypt_key_blob(&material, passphrase)
    }
}

enum TamCheck {
    Valid(Vec<u8>),
    Malformed,
    Mismatch,
    UnsupportedSuite(String),
}

fn unsupported_suite(suite: &str) -> Error {
    // borg passes repr(suite) to a `{!r}` template, so the text is quoted twice.
    Error::new(
        ErrorKind::TAMUnsupportedSuiteError,
        [crate::python::repr(&crate::python::repr(suite))],
    )
}

fn new_ctr(aes: &Aes256, nonce: [u8; 8]) -> Aes256Ctr {
    let mut iv = [0u8; 16];
    iv[8..].copy_from_slice(&nonce);
    StreamCipherCoreWrapper::from_core(ctr::CtrCore::inner_iv_init(aes.clone(), &iv.into()))
}

/// The reason borg's cipher gives for an object whose MAC does not match.
const MAC_FAILED: &str = "MAC Authentication failed";

fn mac_failed(id: Option<&ObjectId>) -> Error {
    Error::integrity(format!(
        "Chunk {}: Could not decrypt [{MAC_FAILED}]",
        id_text(id)
    ))
}

/// Decrypt and decompress an AES envelope whose MAC was verified.
fn decrypt_authenticated(aes: &Aes256, stored: &[u8], out: &mut Vec<u8>) -> Result<()> {
    let nonce: [u8; 8] = stored[33..41].try_into().expect("8 bytes");
    let ciphertext = &stored[AES_OVERHEAD..];
    let mut cipher = new_ctr(aes, nonce);
    if ciphertext.len() >= 2 {
        let mut header = [ciphertext[0], ciphertext[1]];
        cipher.apply_keystream(&mut header);
        if header == compress::HEADER_NONE {
            // Uncompressed payload: decrypt straight into the output.
            out.extend_from_slice(&ciphertext[2..]);
            cipher.apply_keystream(out);
            return Ok(());
        }
    }
    SCRATCH.with(|scratch| -> Result<()> {
        let mut buf = scratch
            .try_borrow_mut()
            .map_err(|_| Error::exception("scratch busy"))?;
        buf.clear();
        buf.resize(ciphertext.len(), 0);
        new_ctr(aes, nonce)
            .apply_keystream_b2b(ciphertext, &mut buf)
            .map_err(|_| Error::exception("keystream length mismatch"))?;
        let result = compress::decompress_into(&buf, out);
        if buf.capacity() > 32 << 20 {
            *buf = Vec::new(); // do not keep huge buffers per thread
        }
        result
    })
}

/// One object of a [`Key::decrypt_many`] batch: input, output buffer, and outcome.
pub struct DecryptJob<'a> {
    pub id: Option<ObjectId>,
    pub stored: &'a [u8],
    pub out: Vec<u8>,
    pub result: Result<()>,
}

fn id_text(id: Option<&ObjectId>) -> String {
    id.map(hex::encode)
        .unwrap_or_else(|| "(unknown)".to_string())
}

/// Python's `bytes.decode('ascii', 'replace')`.
fn ascii_replace(b: &[u8]) -> String {
    b.iter()
        .map(|&c| if c.is_ascii() { c as char } else { '\u{fffd}' })
        .collect()
}

fn find_subslice(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Whether `BORG_WORKAROUNDS` (comma separated) contains `name`.
pub fn borg_workaround(name: &str) -> bool {
    std::env::var("BORG_WORKAROUNDS")
        .map(|v| v.split(',').any(|w| w == name))
        .unwrap_or(false)
}

/// The first msgpack value of `data` (borg's Unpacker ignores anything after it).
pub(crate) fn read_first_value(data: &[u8]) -> Result<Value> {
    let mut cur = std::io::Cursor::new(data);
    rmpv::decode::read_value(&mut cur).map_err(|e| Error::integrity(format!("msgpack: {e}")))
}

/// Unpack a metadata map; take its `tam` entry out. Duplicate keys: the last value wins at the
/// first key's position, as in a Python dict.
fn unpack_metadata(data: &[u8]) -> Result<(Value, Option<Value>)> {
    let value = read_first_value(data)?;
    let Value::Map(entries) = value else {
        return Ok((value, None));
    };
    let mut deduped: Vec<(Value, Value)> = Vec::with_capacity(entries.len());
    for (k, v) in entries {
        match deduped.iter_mut().find(|(dk, _)| *dk == k) {
            Some(slot) => slot.1 = v,
            None => deduped.push((k, v)),
        }
    }
    let pos = deduped
        .iter()
        .position(|(k, _)| k.as_bytes() == Some(b"tam"));
    let tam = pos.map(|p| deduped.remove(p).1);
    Ok((Value::Map(deduped), tam))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn test_material(key_type: KeyType) -> KeyMaterial {
        let blake2 = key_type.is_blake2();
        let long = |start: u8| {
            let mut k: Vec<u8> = (start..start + 64).collect();
            k.extend_from_slice(&[0u8; 64]);
            k
        };
        KeyMaterial {
            repository_id: [0x11; 32],
            enc_key: (0..32).collect(),
            enc_hmac_key: if blake2 {
                long(100)
            } else {
                (32..64).collect()
            },
            id_key: if blake2 { long(0) } else { (64..96).collect() },
            chunk_seed: -2023406815,
            tam_required: Some(true),
        }
    }

    fn test_key(key_type: KeyType) -> Key {
        Key::from_material(key_type, test_material(key_type), KeySource::Nowhere).unwrap()
    }

    #[test]
    fn id_hash_known_answers() {
        // Spec §4.3 example: id_key = bytes(range(64)) + 64 zero bytes, data "abc".
        let k = test_key(KeyType::RepoKeyBlake2);
        let id = hex::encode(k.id_hash(b"abc"));
        assert!(id.starts_with("7e5cc96f") && id.ends_with("e78bbd"), "{id}");
        // python3: hmac.new(bytes(range(64,96)), b'abc', 'sha256').hexdigest()
        let k = test_key(KeyType::RepoKey);
        assert_eq!(
            hex::encode(k.id_hash(b"abc")),
            "910f4315f170bdf2f5a197d760828322c22cf67c043b7df72b6920db6e4caf97"
        );
        // python3: hashlib.sha256(b'abc').hexdigest()
        let k = Key::plaintext([0; 32]);
        assert_eq!(
            hex::encode(k.id_hash(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn aes_envelope_known_answer() {
        // python3: AES-256-CTR via cryptography is not available, so check the pieces we can:
        // the MAC is HMAC-SHA256(enc_hmac_key, nonce || ciphertext), the layout is fixed.
        let k = test_key(KeyType::RepoKey);
        let payload = CompressionSpec::None.compress(b"hello world");
        let stored = k.encrypt(&payload, 0x1000001c);
        assert_eq!(stored[0], 0x03);
        assert_eq!(&stored[33..41], &0x1000001cu64.to_be_bytes());
        assert_eq!(stored.len(), AES_OVERHEAD + payload.len());
        let mut h = <HmacSha256 as Mac>::new_from_slice(&(32..64).collect::<Vec<u8>>()).unwrap();
        h.update(&stored[33..]);
        assert_eq!(&stored[1..33], &h.finalize().into_bytes()[..]);
        assert_eq!(
            k.decrypt(Some(&k.id_hash(b"hello world")), &stored)
                .unwrap(),
            b"hello world"
        );
        assert_eq!(k.decrypt_payload(None, &stored).unwrap(), payload);
    }

    #[test]
    fn ctr_counter_spans_all_128_bits() {
        // The counter block is 00×8 || nonce and increments over the whole 128 bits, so a
        // nonce of 2**64-1 carries into the upper half for the second block.
        let k = test_key(KeyType::RepoKey);
        let data = vec![0u8; 48];
        let a = k.encrypt(&data, u64::MAX);
        let aes = Aes256::new_from_slice(&k.material.enc_key).unwrap();
        let mut iv = [0u8; 16];
        iv[8..].copy_from_slice(&[0xff; 8]);
        let mut expected = data.clone();
        new_ctr(&aes, [0xff; 8]).apply_keystream(&mut expected);
        assert_eq!(&a[AES_OVERHEAD..], &expected[..]);
        use aes::cipher::BlockEncrypt;
        let mut block1 = aes::Block::from([0u8; 16]);
        block1[7] = 1; // 0x0000000000000001_0000000000000000
        aes.encrypt_block(&mut block1);
        assert_eq!(&a[AES_OVERHEAD + 16..AES_OVERHEAD + 32], &block1[..]);
    }

    #[test]
    fn round_trip_all_modes_and_compressions() {
        let data: Vec<u8> = b"some chunk data "
            .iter()
            .cycle()
            .take(50_000)
            .copied()
            .collect();
        for t in KeyType::ALL {
            let k = if t == KeyType::None {
                Key::plaintext([0; 32])
            } else {
                test_key(t)
            };
            for spec in [
                "none",
                "lz4",
                "zstd,3",
                "zlib,6",
                "lzma,1",
                "obfuscate,110,lz4",
            ] {
                let spec = CompressionSpec::parse(spec).unwrap();
                let stored = k.encrypt(&spec.compress(&data), 42);
                let id = k.id_hash(&data);
                assert_eq!(k.decrypt(Some(&id), &stored).unwrap(), data, "{t:?} {spec}");
                let mut buf = b"junk".to_vec();
                k.decrypt_into(None, &stored, &mut buf).unwrap();
                assert_eq!(buf, data);
            }
        }
    }

    #[test]
    fn decrypt_errors() {
        let k = test_key(KeyType::RepoKey);
        let data = b"payload".to_vec();
        let id = k.id_hash(&data);
        let stored = k.encrypt(&CompressionSpec::Lz4.compress(&data), 7);
        let idhex = hex::encode(id);
        // Wrong type byte.
        let mut wrong = stored.clone();
        wrong[0] = 0x05;
        let e = k.decrypt(Some(&id), &wrong).unwrap_err();
        assert_eq!(e.kind, ErrorKind::IntegrityError);
        assert_eq!(
            e.message,
            format!("Data integrity error: Chunk {idhex}: Invalid encryption envelope")
        );
        // Legacy passphrase type byte is accepted by repokey (MAC does not cover it).
        let mut legacy = stored.clone();
        legacy[0] = 0x01;
        assert_eq!(k.decrypt(Some(&id), &legacy).unwrap(), data);
        // Flipped ciphertext bit → MAC failure before decryption.
        let mut bad = stored.clone();
        *bad.last_mut().unwrap() ^= 1;
        let e = k.decrypt(Some(&id), &bad).unwrap_err();
        assert_eq!(
            e.message,
            format!("Data integrity error: Chunk {idhex}: Could not decrypt [MAC Authentication failed]")
        );
        // Truncated envelopes.
        for n in [0, 1, 20, 40] {
            assert_eq!(
                k.decrypt(Some(&id), &stored[..n]).unwrap_err().kind,
                ErrorKind::IntegrityError
            );
        }
        // Wrong id.
        let other = [9u8; 32];
        let e = k.decrypt(Some(&other), &stored).unwrap_err();
        assert_eq!(
            e.message,
            format!(
                "Data integrity error: Chunk {}: id verification failed",
                hex::encode(other)
            )
        );
        // Manifest id is not checked; None is not checked.
        assert!(k.decrypt(Some(&MANIFEST_ID), &stored).is_ok());
        // Authenticated mode: type byte and id are the only checks.
        let a = test_key(KeyType::Authenticated);
        let stored = a.encrypt(&CompressionSpec::Lz4.compress(&data), 0);
        assert_eq!(stored[0], 0x07);
        let e = a.decrypt(None, &[0x02, 0, 0]).unwrap_err();
        assert_eq!(
            e.message,
            "Data integrity error: Chunk (unknown): Invalid envelope"
        );
        assert!(a.decrypt(Some(&other), &stored).is_err());
        // Corrupt compressed payload inside a valid MAC → decompression error.
        let stored = k.encrypt(&[0x01, 0x00, 0xff], 1);
        assert_eq!(
            k.decrypt(None, &stored).unwrap_err().kind,
            ErrorKind::DecompressionError
        );
        // Plaintext key.
        let p = Key::plaintext([0; 32]);
        let e = p.decrypt(None, &[0x03, 0, 0]).unwrap_err();
        assert_eq!(
            e.message,
            "Data integrity error: Chunk (unknown): Invalid encryption envelope"
        );
    }

    #[test]
    fn blake2_mac_is_unkeyed_over_prefix() {
        let k = test_key(KeyType::KeyFileBlake2);
        let stored = k.encrypt(b"\x00\x00abc", 5);
        let mut b = Blake2b256::new();
        b.update(&k.material.enc_hmac_key);
        b.update(&stored[33..]);
        assert_eq!(&stored[1..33], &b.finalize()[..]);
    }

    #[test]
    fn generate_layout() {
        let k = Key::generate(KeyType::RepoKeyBlake2, [3; 32]);
        let m = k.material();
        assert_eq!(m.enc_key.len(), 32);
        assert_eq!(m.enc_hmac_key.len(), 128);
        assert_eq!(&m.enc_hmac_key[64..], &[0u8; 64]);
        assert_eq!(&m.id_key[64..], &[0u8; 64]);
        assert!(k.tam_required());
        let k = Key::generate(KeyType::KeyFile, [3; 32]);
        assert_eq!(k.material().id_key.len(), 32);
        assert_eq!(k.repository_id(), [3; 32]);
        let p = Key::generate(KeyType::None, [3; 32]);
        assert!(!p.tam_required());
        assert_eq!(p.chunk_seed(), 0);
        assert_eq!(blocks_needed(0), 0);
        assert_eq!(blocks_needed(1), 1);
        assert_eq!(blocks_needed(16), 1);
        assert_eq!(blocks_needed(17), 2);
    }

    #[test]
    fn key_material_msgpack_round_trip() {
        let m = test_material(KeyType::RepoKey);
        let packed = m.to_msgpack();
        // Sorted keys: chunk_seed first.
        assert_eq!(&packed[..12], b"\x87\xaachunk_seed");
        assert_eq!(KeyMaterial::from_msgpack(&packed).unwrap(), Some(m.clone()));
        assert_eq!(KeyMaterial::from_msgpack(b"\x01").unwrap(), None);
        assert_eq!(KeyMaterial::from_msgpack(b"").unwrap(), None);
    }

    fn sample_manifest() -> Value {
        msgpack::sorted_map(vec![
            (Value::from("version"), Value::from(1)),
            (
                Value::from("timestamp"),
                Value::from("2024-01-01T00:00:00.000000"),
            ),
            (Value::from("archives"), msgpack::sorted_map(vec![])),
            (Value::from("config"), msgpack::sorted_map(vec![])),
            (
                Value::from("item_keys"),
                Value::Array(vec![Value::from("path")]),
            ),
        ])
    }

    #[test]
    fn tam_matches_borg_byte_for_byte() {
        // Oracle: borg 1.2.4's own RepoKey.pack_and_authenticate_metadata with the same key
        // material and os.urandom patched to return bytes(range(64)) as the salt.
        let k = test_key(KeyType::RepoKey);
        let salt: [u8; 64] = core::array::from_fn(|i| i as u8);
        let packed = k.pack_and_authenticate_metadata(sample_manifest(), b"manifest", Some(salt));
        assert_eq!(
            hex::encode(&k.tam_key(&salt, b"manifest")[..8]),
            "71999f1ee8cd5c5d"
        );
        assert_eq!(hex::encode(&packed), BORG_TAM_MANIFEST);
        let (v, verified) = k.unpack_and_verify_manifest(&packed, false).unwrap();
        assert!(verified);
        assert!(v.get("tam").is_none());
        assert_eq!(v.get("version").and_then(|x| x.as_int()), Some(1));
    }

    const BORG_TAM_MANIFEST: &str = concat!(
        "86a8617263686976657380a6636f6e66696780a96974656d5f6b65797391a470617468a374616d83a468",
        "6d6163da004048ac97c69198d4da6af28ccb2a0da14e0bd37b32a4160d4d595e2390f6cdc66587724fd0",
        "26c2ec9962b1e5f5e9713b490d00ee0fb7dd86b07143ce079daf7c7ba473616c74da0040000102030405",
        "060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f",
        "303132333435363738393a3b3c3d3e3fa474797065b0484b44465f484d41435f534841353132a974696d",
        "657374616d70ba323032342d30312d30315430303a30303a30302e303030303030a776657273696f6e01",
    );

    #[test]
    fn tam_rules() {
        let k = test_key(KeyType::RepoKey);
        let packed = k.pack_and_authenticate_metadata(sample_manifest(), b"manifest", None);
        // Tampering anywhere breaks it.
        let mut bad = packed.clone();
        let pos = bad.windows(4).position(|w| w == b"path").unwrap();
        bad[pos] = b'P';
        let e = k.unpack_and_verify_manifest(&bad, false).unwrap_err();
        assert_eq!(e.kind, ErrorKind::TAMInvalid);
        assert_eq!(
            e.message,
            "Data integrity error: Manifest authentication did not verify"
        );
        // Another key does not verify.
        let other = Key::generate(KeyType::RepoKey, [0x11; 32]);
        assert_eq!(
            other
                .unpack_and_verify_manifest(&packed, false)
                .unwrap_err()
                .kind,
            ErrorKind::TAMInvalid
        );
        // A wrong context does not verify.
        let archive_packed = k.pack_and_authenticate_metadata(sample_manifest(), b"archive", None);
        assert!(k
            .unpack_and_verify_manifest(&archive_packed, false)
            .is_err());
        let (_, ok, salt) = k.unpack_and_verify_archive(&archive_packed, false).unwrap();
        assert!(ok && salt.unwrap().len() == 64);
        // Future manifest.
        let e = k
            .unpack_and_verify_manifest(&[0xc1, 0xc1, 0xc1, 0xc1, 0x80], false)
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::UnsupportedManifestError);
        // Missing TAM: required → error, unless forced off.
        let plain = msgpack::pack(&sample_manifest());
        assert_eq!(
            k.unpack_and_verify_manifest(&plain, false)
                .unwrap_err()
                .kind,
            ErrorKind::TAMRequiredError
        );
        let (_, verified) = k.unpack_and_verify_manifest(&plain, true).unwrap();
        assert!(!verified);
        let mut lax = k.clone();
        lax.set_tam_required(false);
        assert!(!lax.unpack_and_verify_manifest(&plain, false).unwrap().1);
        // A wrong TAM is an error even when not required.
        assert_eq!(
            lax.unpack_and_verify_manifest(&bad, false)
                .unwrap_err()
                .kind,
            ErrorKind::TAMInvalid
        );
        // Unsupported suite.
        let mut m = sample_manifest();
        if let Value::Map(e) = &mut m {
            e.push((
                Value::from("tam"),
                msgpack::sorted_map(vec![(Value::from("type"), Value::from("FOO"))]),
            ));
        }
        let foo = msgpack::pack(&msgpack::sorted_map(m.as_entries().unwrap().to_vec()));
        let e = k.unpack_and_verify_manifest(&foo, false).unwrap_err();
        assert_eq!(e.kind, ErrorKind::TAMUnsupportedSuiteError);
        assert_eq!(
            e.message,
            "Could not verify manifest: Unsupported suite \"'FOO'\"; a newer version is needed."
        );
        assert!(!lax.unpack_and_verify_manifest(&foo, false).unwrap().1);
        // Archive rules.
        let mut archive = sample_manifest();
        if let Value::Map(e) = &mut archive {
            e.push((Value::from("name"), msgpack::bytes(b"n\xe9".to_vec())));
        }
        let archive = msgpack::sorted_map(archive.as_entries().unwrap().to_vec());
        let e = k
            .unpack_and_verify_archive(&msgpack::pack(&archive), false)
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::ArchiveTAMRequiredError);
        assert_eq!(
            e.message,
            "Archive 'n\u{fffd}' is unauthenticated, but it is required for this repository."
        );
        assert!(
            !k.unpack_and_verify_archive(&msgpack::pack(&archive), true)
                .unwrap()
                .1
        );
        let mut signed = k.pack_and_authenticate_metadata(archive, b"archive", None);
        let pos = signed.windows(4).position(|w| w == b"path").unwrap();
        signed[pos] = b'X';
        let e = k
            .unpack_and_verify_archive_with(&signed, false, false)
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::ArchiveTAMInvalid);
        assert_eq!(
            e.message,
            "Data integrity error: Archive authentication did not verify"
        );
        let (v, ok, salt) = k
            .unpack_and_verify_archive_with(&signed, false, true)
            .unwrap();
        assert!(!ok && salt.is_none() && v.get("tam").is_none());
    }

    #[test]
    fn plaintext_tam_key_is_salt_and_context() {
        let p = Key::plaintext([0; 32]);
        let salt = [7u8; 64];
        assert_eq!(
            p.tam_key(&salt, b"manifest"),
            [&salt[..], b"manifest"].concat()
        );
        let packed = p.pack_and_authenticate_metadata(sample_manifest(), b"manifest", None);
        assert!(p.unpack_and_verify_manifest(&packed, false).unwrap().1);
        // none does not require a TAM (borg 1.4.5 PlaintextKey).
        assert!(
            !p.unpack_and_verify_manifest(&msgpack::pack(&sample_manifest()), false)
                .unwrap()
                .1
        );
    }

    #[test]
    fn manifest_nonce_from_stored_object() {
        let k = test_key(KeyType::RepoKey);
        let stored = k.encrypt(&[0u8; 100], 0x40);
        assert_eq!(
            manifest_nonce(&stored),
            Some(0x40 + blocks_needed(stored.len()))
        );
        assert_eq!(manifest_nonce(&stored[..30]), None);
    }

    #[test]
    fn key_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Key>();
    }
}

#[cfg(test)]
mod batch_tests {
    use super::*;

    /// Batch hashing and encryption give what the one-by-one functions give.
    #[test]
    fn batch_encryption_decrypts_and_ids_match() {
        struct Mem(std::sync::Mutex<Option<u64>>);
        impl crate::crypto::NonceStore for Mem {
            fn get_free_nonce(&self) -> Result<Option<u64>> {
                Ok(*self.0.lock().unwrap())
            }
            fn commit_nonce_reservation(&self, next: u64, _start: Option<u64>) -> Result<()> {
                *self.0.lock().unwrap() = Some(next);
                Ok(())
            }
        }
        for kt in [
            KeyType::RepoKeyBlake2,
            KeyType::RepoKey,
            KeyType::AuthenticatedBlake2,
        ] {
            let key = Key::generate(kt, [4; 32]);
            let nm = NonceManager::new(Box::new(Mem(std::sync::Mutex::new(None))), None, 0);
            let datas: Vec<Vec<u8>> = (0..5).map(|i| vec![i as u8; 1000 * i + 7]).collect();
            let refs: Vec<&[u8]> = datas.iter().map(|d| d.as_slice()).collect();
            let ids = key.id_hash_many(&refs);
            let stored = key
                .compress_and_encrypt_many(
                    &CompressionSpec::Lz4,
                    &refs,
                    Some(&nm),
                    &Vec::with_capacity,
                )
                .unwrap();
            for ((d, id), st) in datas.iter().zip(&ids).zip(&stored) {
                assert_eq!(*id, key.id_hash(d));
                assert_eq!(key.decrypt(Some(id), st).unwrap(), *d);
            }
        }
    }

    /// decrypt_many gives exactly decrypt_into's result for every job, good or bad.
    #[test]
    fn batch_decryption_matches_single() {
        for kt in [
            KeyType::RepoKeyBlake2,
            KeyType::KeyFileBlake2,
            KeyType::RepoKey,
            KeyType::None,
        ] {
            let key = Key::generate(kt, [3; 32]);
            let mut stored = Vec::new();
            let mut ids = Vec::new();
            for i in 0..7usize {
                let plain: Vec<u8> = (0..i * 1000 + 5).map(|b| (b % 251) as u8).collect();
                let spec = if i % 2 == 0 {
                    CompressionSpec::Lz4
                } else {
                    CompressionSpec::None
                };
                let mut s = key.encrypt(&spec.compress(&plain), i as u64 * 1000);
                let mut id = key.id_hash(&plain);
                match i {
                    2 => {
                        let n = s.len();
                        s[n - 1] ^= 1; // tampered ciphertext
                    }
                    4 => id[0] ^= 1,     // wrong id
                    5 => s[0] = 0x42,    // wrong type byte
                    6 => s.truncate(10), // truncated
                    _ => {}
                }
                stored.push(s);
                ids.push(id);
            }
            let mut jobs: Vec<DecryptJob> = stored
                .iter()
                .zip(&ids)
                .map(|(s, id)| DecryptJob {
                    id: Some(*id),
                    stored: s,
                    out: Vec::new(),
                    result: Ok(()),
                })
                .collect();
            key.decrypt_many(&mut jobs);
            for (j, (s, id)) in jobs.iter().zip(stored.iter().zip(&ids)) {
                let mut out = Vec::new();
                let single = key.decrypt_into(Some(id), s, &mut out);
                assert_eq!(j.result.is_ok(), single.is_ok(), "{kt:?}");
                match (&j.result, &single) {
                    (Ok(()), Ok(())) => assert_eq!(j.out, out),
                    (Err(a), Err(b)) => assert_eq!(a.message, b.message),
                    _ => unreachable!(),
                }
            }
        }
    }
}
