//! Key types and their type bytes (repository-format.md §4.1).

use crate::errors::{Error, ErrorKind, Result};

/// The mode of a repository, identified by the first byte of every stored object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    KeyFile = 0x00,
    /// borg < 1.0 "passphrase" mode; such repositories are opened as repokey.
    Passphrase = 0x01,
    None = 0x02,
    RepoKey = 0x03,
    KeyFileBlake2 = 0x04,
    RepoKeyBlake2 = 0x05,
    AuthenticatedBlake2 = 0x06,
    Authenticated = 0x07,
}

impl KeyType {
    pub const ALL: [KeyType; 8] = [
        KeyType::KeyFile,
        KeyType::Passphrase,
        KeyType::None,
        KeyType::RepoKey,
        KeyType::KeyFileBlake2,
        KeyType::RepoKeyBlake2,
        KeyType::AuthenticatedBlake2,
        KeyType::Authenticated,
    ];

    /// The `--encryption` names `borg init` accepts, in borg's order.
    pub const MODE_NAMES: [&'static str; 7] = [
        "none",
        "keyfile",
        "repokey",
        "authenticated",
        "keyfile-blake2",
        "repokey-blake2",
        "authenticated-blake2",
    ];

    pub fn from_byte(b: u8) -> Option<KeyType> {
        KeyType::ALL.iter().copied().find(|t| t.byte() == b)
    }

    /// The type of a stored object (its first byte). Unknown bytes give borg's
    /// `UnsupportedPayloadError`.
    pub fn of_object(stored: &[u8]) -> Result<KeyType> {
        let b = *stored
            .first()
            .ok_or_else(|| Error::integrity("Manifest: Invalid encryption envelope"))?;
        KeyType::from_byte(b).ok_or_else(|| Error::new(ErrorKind::UnsupportedPayloadError, [b]))
    }

    pub fn byte(self) -> u8 {
        self as u8
    }

    /// Parse an `--encryption` name (`repokey-blake2`, …).
    pub fn from_mode_name(name: &str) -> Option<KeyType> {
        KeyType::ALL
            .iter()
            .copied()
            .filter(|t| *t != KeyType::Passphrase)
            .find(|t| t.mode_name() == name)
    }

    /// The `--encryption` name (borg's ARG_NAME; JSON `encryption.mode`). The legacy passphrase
    /// type is opened as repokey, so it reports `repokey`.
    pub fn mode_name(self) -> &'static str {
        match self {
            KeyType::KeyFile => "keyfile",
            KeyType::Passphrase | KeyType::RepoKey => "repokey",
            KeyType::None => "none",
            KeyType::KeyFileBlake2 => "keyfile-blake2",
            KeyType::RepoKeyBlake2 => "repokey-blake2",
            KeyType::AuthenticatedBlake2 => "authenticated-blake2",
            KeyType::Authenticated => "authenticated",
        }
    }

    /// borg's human-readable key name (its NAME).
    pub fn description(self) -> &'static str {
        match self {
            KeyType::KeyFile => "key file",
            KeyType::Passphrase | KeyType::RepoKey => "repokey",
            KeyType::None => "plaintext",
            KeyType::KeyFileBlake2 => "key file BLAKE2b",
            KeyType::RepoKeyBlake2 => "repokey BLAKE2b",
            KeyType::AuthenticatedBlake2 => "authenticated BLAKE2b",
            KeyType::Authenticated => "authenticated",
        }
    }

    /// The value of `borg info`'s `Encrypted:` line: `No` for `plaintext` and `authenticated`
    /// only — so `authenticated-blake2` says `Yes (authenticated BLAKE2b)`, as borg does.
    pub fn encrypted_line(self) -> String {
        match self.description() {
            "plaintext" | "authenticated" => "No".to_string(),
            name => format!("Yes ({name})"),
        }
    }

    /// The type actually used to open a repository of this type (legacy passphrase → repokey).
    pub fn effective(self) -> KeyType {
        match self {
            KeyType::Passphrase => KeyType::RepoKey,
            t => t,
        }
    }

    pub fn is_keyfile(self) -> bool {
        matches!(self, KeyType::KeyFile | KeyType::KeyFileBlake2)
    }

    /// Whether the key blob lives in the repository config.
    pub fn is_repokey_storage(self) -> bool {
        matches!(
            self,
            KeyType::Passphrase
                | KeyType::RepoKey
                | KeyType::RepoKeyBlake2
                | KeyType::Authenticated
                | KeyType::AuthenticatedBlake2
        )
    }

    pub fn is_blake2(self) -> bool {
        matches!(
            self,
            KeyType::KeyFileBlake2 | KeyType::RepoKeyBlake2 | KeyType::AuthenticatedBlake2
        )
    }

    /// AES-CTR encrypted objects (MAC + nonce + ciphertext).
    pub fn is_encrypted(self) -> bool {
        matches!(
            self,
            KeyType::KeyFile
                | KeyType::Passphrase
                | KeyType::RepoKey
                | KeyType::KeyFileBlake2
                | KeyType::RepoKeyBlake2
        )
    }

    pub fn is_authenticated_only(self) -> bool {
        matches!(self, KeyType::Authenticated | KeyType::AuthenticatedBlake2)
    }

    /// borg's class-level `logically_encrypted`: true for the AES modes. (A repokey opened with
    /// the empty passphrase is not, see `Key::logically_encrypted`.)
    pub fn logically_encrypted(self) -> bool {
        self.is_encrypted()
    }

    /// Whether opening needs a key blob (and so a passphrase): every mode but `none`.
    pub fn has_key_blob(self) -> bool {
        self != KeyType::None
    }
}

impl std::fmt::Display for KeyType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.mode_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_names_and_lines() {
        let table = [
            (0x00, "keyfile", "key file", "Yes (key file)"),
            (0x02, "none", "plaintext", "No"),
            (0x03, "repokey", "repokey", "Yes (repokey)"),
            (
                0x04,
                "keyfile-blake2",
                "key file BLAKE2b",
                "Yes (key file BLAKE2b)",
            ),
            (
                0x05,
                "repokey-blake2",
                "repokey BLAKE2b",
                "Yes (repokey BLAKE2b)",
            ),
            (
                0x06,
                "authenticated-blake2",
                "authenticated BLAKE2b",
                "Yes (authenticated BLAKE2b)",
            ),
            (0x07, "authenticated", "authenticated", "No"),
        ];
        for (byte, mode, desc, line) in table {
            let t = KeyType::from_byte(byte).unwrap();
            assert_eq!(t.byte(), byte);
            assert_eq!(t.mode_name(), mode);
            assert_eq!(t.description(), desc);
            assert_eq!(t.encrypted_line(), line);
            assert_eq!(KeyType::from_mode_name(mode), Some(t));
        }
        assert_eq!(KeyType::from_byte(0x01), Some(KeyType::Passphrase));
        assert_eq!(KeyType::Passphrase.effective(), KeyType::RepoKey);
        assert_eq!(KeyType::from_mode_name("passphrase"), None);
        assert_eq!(KeyType::from_byte(0x08), None);
        let err = KeyType::of_object(&[0x09, 1, 2]).unwrap_err();
        assert_eq!(err.kind, ErrorKind::UnsupportedPayloadError);
        assert!(err.message.starts_with("Unsupported payload type 9."));
        assert!(KeyType::KeyFileBlake2.is_keyfile() && KeyType::KeyFileBlake2.is_blake2());
        assert!(!KeyType::Authenticated.is_encrypted() && KeyType::RepoKey.is_encrypted());
        assert!(!KeyType::AuthenticatedBlake2.logically_encrypted());
    }
}
