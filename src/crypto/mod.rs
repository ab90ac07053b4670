//! Keys, encryption, authentication (repository-format.md §4): key types, the object
//! envelope, chunk ids, TAM, key blobs and key files, passphrases and AES-CTR nonces.

pub mod create;
pub mod key;
pub mod keyblob;
pub mod keyfile;
pub mod keymanager;
pub mod keytype;
pub mod nonces;
pub mod open;
pub mod passphrase;

#[cfg(test)]
mod fixture_tests;

pub use create::{create_key, RelatedSecrets, KEY_LOGGER};
pub use key::{
    blocks_needed, borg_workaround, manifest_nonce, DecryptJob, Key, KeyMaterial, KeySource,
    AES_OVERHEAD,
};
pub use keyblob::{
    decode_key_text, decrypt_key_blob, decrypt_key_blob_in, encode_key_text, encrypt_key_blob,
    PBKDF2_ITERATIONS,
};
pub use keyfile::{
    check_key_file, find_key_file, find_key_file_in, find_key_file_with, key_file_base_name,
    key_file_name_for, new_key_file_path, new_key_file_path_named, read_key_file, save_key_file,
    KEY_FILE_ID,
};
pub use keytype::KeyType;
pub use nonces::{
    format_nonce_hex, parse_nonce_hex, read_nonce_file, write_nonce_file, LocalNonceFile,
    NonceManager, NonceStore, NONCE_SPACE_RESERVATION,
};
pub use open::{open_key, open_key_with, security_dir_tam_required};
pub use passphrase::{
    env_passphrase, getpass, new_passphrase, unlock_with, PassphraseEnv, SystemEnv,
};
