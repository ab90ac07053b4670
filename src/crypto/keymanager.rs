//! Key backup and restore (borg's `KeyManager`: `borg key export|import`), passphrase changes
//! and the migration of pre-1.0 "passphrase" repositories to repokey (cli.md §4.13, §9.11).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::key::{Key, KeyMaterial, KeySource};
use super::keyblob::{decode_key_text, encode_key_text};
use super::keyfile::{abspath, new_key_file_path_named, save_key_file, KEY_FILE_ID};
use super::keytype::KeyType;
use super::passphrase::{env_passphrase, getpass, new_passphrase, PassphraseEnv};
use crate::errors::{Error, ErrorKind, Result};
use crate::paths;
use crate::repository::{ObjectId, Repository};

/// Where a repository keeps its key blob (borg's `KeyBlobStorage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStorage {
    KeyFile,
    Repository,
}

impl KeyStorage {
    /// The storage of the repository whose stored manifest is `manifest_stored` (legacy
    /// "passphrase" repositories count as repokey, as borg dispatches them).
    /// `none` → `UnencryptedRepo`.
    pub fn of_manifest(manifest_stored: &[u8]) -> Result<KeyStorage> {
        let key_type = KeyType::of_object(manifest_stored)?.effective();
        if !key_type.has_key_blob() {
            return Err(Error::plain(ErrorKind::UnencryptedRepo));
        }
        Ok(if key_type.is_keyfile() {
            KeyStorage::KeyFile
        } else {
            KeyStorage::Repository
        })
    }
}

/// `$BORG_KEY_FILE` (set and non-empty) made absolute.
fn env_key_file(env: &dyn PassphraseEnv) -> Option<PathBuf> {
    env.var("BORG_KEY_FILE")
        .filter(|v| !v.is_empty())
        .map(|v| abspath(Path::new(&v)))
}

fn keys_dir(env: &dyn PassphraseEnv) -> PathBuf {
    match env.var("BORG_KEYS_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => paths::keys_dir(),
    }
}

/// borg's key file sanity check as used by export/import: the file starts with
/// `BORG_KEY <id hex>` (magic → else KeyfileInvalidError, id → else KeyfileMismatchError).
fn key_file_matches(path: &Path, repo_id: &ObjectId, location: &str) -> Result<()> {
    let shown = path.display().to_string();
    let magic = format!("{KEY_FILE_ID} ");
    let id_hex = hex::encode(repo_id);
    let mut head = Vec::new();
    fs::File::open(path)
        .and_then(|f| {
            f.take((magic.len() + id_hex.len()) as u64)
                .read_to_end(&mut head)
        })
        .map_err(|e| Error::exception(format!("{shown}: {e}")))?;
    if !head.starts_with(magic.as_bytes()) {
        return Err(Error::new(
            ErrorKind::KeyfileInvalidError,
            [location, shown.as_str()],
        ));
    }
    if head[magic.len()..] != *id_hex.as_bytes() {
        return Err(Error::new(
            ErrorKind::KeyfileMismatchError,
            [location, shown.as_str()],
        ));
    }
    Ok(())
}

/// The first file of the keys dir that is a key file of `repo_id` (names sorted).
fn key_file_in_keys_dir(dir: &Path, repo_id: &ObjectId, location: &str) -> Option<PathBuf> {
    let mut names: Vec<PathBuf> = fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    names.sort();
    names
        .into_iter()
        .find(|p| p.is_file() && key_file_matches(p, repo_id, location).is_ok())
}

/// borg's `find_key` of the key file modes: `$BORG_KEY_FILE` (checked), else the keys dir.
pub fn find_existing_key_file(
    repo_id: &ObjectId,
    location: &str,
    env: &dyn PassphraseEnv,
) -> Result<PathBuf> {
    if let Some(path) = env_key_file(env) {
        key_file_matches(&path, repo_id, location)?;
        return Ok(path);
    }
    let dir = keys_dir(env);
    key_file_in_keys_dir(&dir, repo_id, location).ok_or_else(|| {
        Error::new(
            ErrorKind::KeyfileNotFoundError,
            [location.to_string(), dir.display().to_string()],
        )
    })
}

/// Python's `readlines()[1:]` joined, on text read with universal newlines.
fn text_after_first_line(content: &str) -> String {
    let text = content.replace("\r\n", "\n").replace('\r', "\n");
    match text.find('\n') {
        Some(i) => text[i + 1..].to_string(),
        None => String::new(),
    }
}

/// The protected key blob text as stored: the key file body, or the repository config value
/// (`RepoKeyNotFoundError` when empty).
pub fn load_key_blob(
    repo: &dyn Repository,
    storage: KeyStorage,
    env: &dyn PassphraseEnv,
) -> Result<String> {
    let location = repo.location();
    match storage {
        KeyStorage::KeyFile => {
            let path = find_existing_key_file(&repo.id(), &location, env)?;
            let bytes = fs::read(&path)
                .map_err(|e| Error::exception(format!("{}: {e}", path.display())))?;
            Ok(text_after_first_line(&String::from_utf8_lossy(&bytes)))
        }
        KeyStorage::Repository => {
            let blob = repo.load_key()?;
            if blob.is_empty() {
                return Err(Error::new(
                    ErrorKind::RepoKeyNotFoundError,
                    [location.as_str()],
                ));
            }
            Ok(String::from_utf8_lossy(&blob).into_owned())
        }
    }
}

/// The default export format (= key file content): `BORG_KEY <id hex>\n` + blob + `\n`
/// unless the blob already ends with one.
pub fn key_file_text(repo_id: &ObjectId, blob: &str) -> String {
    let mut text = format!("{KEY_FILE_ID} {}\n{blob}", hex::encode(repo_id));
    if !blob.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// First `n` hex digits of SHA-256(`data`).
fn sha256_hex_prefix(data: &[u8], n: usize) -> String {
    let mut digest = hex::encode(Sha256::digest(data));
    digest.truncate(n);
    digest
}

/// Hex text with a blank after every 6 characters.
fn grouped(hex_text: &str) -> String {
    let chunks: Vec<&str> = hex_text
        .as_bytes()
        .chunks(6)
        .map(|c| std::str::from_utf8(c).expect("hex is ascii"))
        .collect();
    chunks.join(" ")
}

/// Checksum of paper key data line `idx` (1-based).
fn paper_line_checksum(idx: u16, data: &[u8]) -> String {
    let mut buf = idx.to_be_bytes().to_vec();
    buf.extend_from_slice(data);
    sha256_hex_prefix(&buf, 2)
}

const PAPER_LINE_BYTES: usize = 18;

/// The `--paper` export (cli.md §9.11): an `id:` line and 18-byte hex lines, each with a
/// 2-digit checksum.
pub fn paper_key_text(repo_id: &ObjectId, blob: &str) -> Result<String> {
    let binary = decode_key_text(blob.as_bytes())
        .ok_or_else(|| Error::exception("binascii.Error: Incorrect padding"))?;
    let lines = binary.len().div_ceil(PAPER_LINE_BYTES);
    let repoid = &hex::encode(repo_id)[..18];
    let total = sha256_hex_prefix(&binary, 12);
    let id_checksum = sha256_hex_prefix(format!("{lines}/{repoid}/{total}").as_bytes(), 2);
    let mut out = String::from("To restore key use borg key import --paper /path/to/repo\n\n");
    out.push_str("BORG PAPER KEY v1\n");
    out.push_str(&format!(
        "id: {lines} / {} / {} - {id_checksum}\n",
        grouped(repoid),
        grouped(&total)
    ));
    for (i, chunk) in binary.chunks(PAPER_LINE_BYTES).enumerate() {
        let idx = i + 1;
        out.push_str(&format!(
            "{idx:2}: {} - {}\n",
            grouped(&hex::encode(chunk)),
            paper_line_checksum(idx as u16, chunk)
        ));
    }
    Ok(out)
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The QR code of `text` (error correction H, as borg's page defaults to) as inline SVG.
fn qr_svg(text: &str) -> Result<String> {
    use qrcode::{Color, EcLevel, QrCode};
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::H)
        .map_err(|e| Error::exception(format!("QR code: {e}")))?;
    let width = code.width();
    let quiet = 4;
    let size = width + 2 * quiet;
    let mut path = String::new();
    for (i, color) in code.to_colors().iter().enumerate() {
        if *color == Color::Dark {
            let (x, y) = (i % width + quiet, i / width + quiet);
            path.push_str(&format!("M{x} {y}h1v1h-1z"));
        }
    }
    Ok(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {size} {size}\" width=\"100mm\" height=\"100mm\" shape-rendering=\"crispEdges\">\n<rect width=\"{size}\" height=\"{size}\" fill=\"#fff\"/>\n<path fill=\"#000\" d=\"{path}\"/>\n</svg>"
    ))
}

/// The `--qr-html` export: a self-contained printable page with the key file text (in the
/// `<textarea id="keyfile">` where borg's template puts it), a QR code of that text and the
/// paper format for typing it in. No scripts, nothing loaded from elsewhere.
pub fn qr_html(repo_id: &ObjectId, blob: &str) -> Result<String> {
    let key_text = key_file_text(repo_id, blob);
    let paper = paper_key_text(repo_id, blob)?;
    let svg = qr_svg(&key_text)?;
    let mut html = String::new();
    html.push_str(
        "<!doctype html>\n<html>\n<head>\n<title>BorgBackup Printable Key Template</title>\n",
    );
    html.push_str("<meta http-equiv=\"Content-Type\" content=\"text/html; charset=Utf-8\">\n");
    html.push_str("<style>\n  body { font-family: sans-serif; max-width: 190mm; margin: 10mm auto; }\n  #keyfile { display: none; }\n  #qr { text-align: center; margin: 5mm 0; }\n  pre { font-size: 9pt; }\n  @media print { .noprint { display: none; } }\n</style>\n</head>\n<body>\n");
    html.push_str("<h1>BorgBackup Printable Key Backup</h1>\n");
    html.push_str("<p>To restore either scan the QR code below, decode it and import it using</p>\n<pre>borg key import /path/to/repo scannedfile</pre>\n<p>or type in the key with</p>\n<pre>borg key import --paper /path/to/repo</pre>\n");
    html.push_str("<p class=\"noprint\">Keep this printout safe: together with the passphrase it gives access to the repository.</p>\n");
    html.push_str(&format!(
        "<textarea id=\"keyfile\" rows=\"10\" cols=\"73\">{}</textarea>\n",
        html_escape(&key_text)
    ));
    html.push_str(&format!("<div id=\"qr\">\n{svg}\n</div>\n"));
    html.push_str(&format!(
        "<pre id=\"paper\">{}</pre>\n",
        html_escape(&paper)
    ));
    html.push_str("</body>\n</html>\n");
    Ok(html)
}

/// The key file text inside a `--qr-html` export (for tests and recovery by hand).
pub fn key_text_of_qr_html(html: &str) -> Option<String> {
    let start = html.find("<textarea id=\"keyfile\"")?;
    let open_end = start + html[start..].find('>')? + 1;
    let close = open_end + html[open_end..].find("</textarea>")?;
    Some(
        html[open_end..close]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

/// Check a key backup (default export format) against the repository and return its key
/// blob: the text after `BORG_KEY <id hex>\n`. Another first line → `NotABorgKeyFile`, or
/// `RepoIdMismatch` when it is a key of another repository.
pub fn parse_key_backup(repo_id: &ObjectId, content: &[u8]) -> Result<String> {
    let text = String::from_utf8_lossy(content).replace("\r\n", "\n");
    let text = text.replace('\r', "\n");
    let first_line = format!("{KEY_FILE_ID} {}\n", hex::encode(repo_id));
    let n = first_line.chars().count();
    let head: String = text.chars().take(n).collect();
    if head != first_line {
        if !head.starts_with(KEY_FILE_ID) {
            return Err(Error::plain(ErrorKind::NotABorgKeyFile));
        }
        return Err(Error::plain(ErrorKind::RepoIdMismatch));
    }
    Ok(text[head.len()..].to_string())
}

/// Store a restored key blob where the repository keeps it. Key file modes write
/// `$BORG_KEY_FILE`, else overwrite the repository's key file in the keys dir, else create
/// `key_file_name` there (`.2`, … if taken). Returns the key file written, if any.
pub fn store_key_blob(
    repo: &dyn Repository,
    storage: KeyStorage,
    blob: &str,
    key_file_name: &str,
    env: &dyn PassphraseEnv,
) -> Result<Option<PathBuf>> {
    match storage {
        KeyStorage::Repository => {
            repo.save_key(blob.as_bytes())?;
            Ok(None)
        }
        KeyStorage::KeyFile => {
            let location = repo.location();
            let target = match env_key_file(env) {
                Some(p) => p,
                None => {
                    let dir = super::keyfile::ensure_keys_dir()?;
                    match key_file_in_keys_dir(&dir, &repo.id(), &location) {
                        Some(p) => p,
                        None => new_key_file_path_named(key_file_name)?,
                    }
                }
            };
            // borg writes the file in place (mode from the umask), not atomically
            fs::write(&target, key_file_text(&repo.id(), blob))
                .map_err(|e| Error::exception(format!("{}: {e}", target.display())))?;
            Ok(Some(target))
        }
    }
}

/// The user side of the interactive `import --paper` (borg reads with `input()`).
pub trait PaperKeyConsole {
    /// Show `prompt` (no newline) and read one line without its newline; `None` on EOF.
    fn input(&mut self, prompt: &str) -> Option<String>;
    /// Print a line of feedback.
    fn print(&mut self, line: &str);
    /// Ask `Abort import? [yN]:` (borg's `yes()`, EOF = no).
    fn confirm_abort(&mut self) -> bool;
}

/// Result of reading a typed-in line: the text or an abort.
enum Typed {
    Line(String),
    Abort,
}

/// Read a line with blanks removed; an empty line asks whether to abort.
fn typed_line(console: &mut dyn PaperKeyConsole, prompt: &str) -> Typed {
    let Some(line) = console.input(prompt) else {
        return Typed::Abort;
    };
    let line = line.replace(' ', "");
    if line.is_empty() && console.confirm_abort() {
        return Typed::Abort;
    }
    Typed::Line(line)
}

/// borg's `data.encode('ascii')`, which fails on other characters.
fn ascii_bytes(text: &str) -> Result<&[u8]> {
    match text.char_indices().find(|(_, c)| !c.is_ascii()) {
        None => Ok(text.as_bytes()),
        Some((i, c)) => Err(Error::exception(format!(
            "UnicodeEncodeError: 'ascii' codec can't encode character {} in position {i}: ordinal not in range(128)",
            crate::python::repr(&c.to_string())
        ))),
    }
}

/// Python's `int()` of a short decimal text (sign, `_` between digits).
fn python_int(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('+').unwrap_or(text);
    let (neg, digits) = match digits.strip_prefix('-') {
        Some(d) if !text.starts_with('+') => (true, d),
        _ => (false, digits),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return None;
    }
    let n: i64 = digits.replace('_', "").parse().ok()?;
    Some(if neg { -n } else { n })
}

/// The parsed `id:` line of a paper key.
struct PaperId {
    lines: Option<i64>,
    repoid: String,
    total_checksum: String,
}

/// Read and verify the `id:` line; `None` = aborted.
fn read_paper_id(console: &mut dyn PaperKeyConsole) -> Result<Option<PaperId>> {
    loop {
        let line = match typed_line(console, "id: ") {
            Typed::Abort => return Ok(None),
            Typed::Line(l) => l,
        };
        let parts: Vec<&str> = line.split('-').collect();
        let [data, checksum] = parts[..] else {
            console.print("each line must contain exactly one '-', try again");
            continue;
        };
        let fields: Vec<&str> = data.split('/').collect();
        let [lines, repoid, total] = fields[..] else {
            console.print("the id line must contain exactly three '/', try again");
            continue;
        };
        let lowered = data.to_lowercase();
        if sha256_hex_prefix(ascii_bytes(&lowered)?, 2) != checksum {
            console.print("line checksum did not match, try same line again");
            continue;
        }
        let lines = python_int(lines);
        if lines.is_none() {
            console.print("internal error while parsing length");
        }
        return Ok(Some(PaperId {
            lines,
            repoid: repoid.to_string(),
            total_checksum: total.to_string(),
        }));
    }
}

/// Read the data lines `1..=lines`; `None` = aborted.
fn read_paper_data(
    console: &mut dyn PaperKeyConsole,
    lines: Option<i64>,
) -> Result<Option<Vec<u8>>> {
    let mut result = Vec::new();
    let mut idx: i64 = 1;
    loop {
        let line = match typed_line(console, &format!("{idx:2}: ")) {
            Typed::Abort => return Ok(None),
            Typed::Line(l) => l,
        };
        let parts: Vec<&str> = line.split('-').collect();
        let [data, checksum] = parts[..] else {
            console.print("each line must contain exactly one '-', try again");
            continue;
        };
        let Ok(part) = hex::decode(ascii_bytes(data)?) else {
            console.print("only characters 0-9 and a-f and '-' are valid, try again");
            continue;
        };
        // borg packs idx into 2 bytes; beyond that Python raises OverflowError
        let Ok(idx16) = u16::try_from(idx) else {
            return Err(Error::exception("OverflowError: int too big to convert"));
        };
        if paper_line_checksum(idx16, &part) != checksum {
            console.print(&format!(
                "line checksum did not match, try line {idx} again"
            ));
            continue;
        }
        result.extend_from_slice(&part);
        let Some(lines) = lines else {
            return Err(Error::exception(
                "UnboundLocalError: cannot access local variable 'lines' where it is not associated with a value",
            ));
        };
        if idx == lines {
            return Ok(Some(result));
        }
        idx += 1;
    }
}

/// The interactive `borg key import --paper` dialogue. Returns the key blob text to store,
/// or `None` when the user aborted (borg then prints ` - aborted` and succeeds). A paper key
/// of another repository → `RepoIdMismatch`.
pub fn read_paper_key(
    repo_id: &ObjectId,
    console: &mut dyn PaperKeyConsole,
) -> Result<Option<String>> {
    let repoid = hex::encode(repo_id)[..18].to_string();
    loop {
        let Some(id) = read_paper_id(console)? else {
            return aborted(console);
        };
        if id.repoid != repoid {
            return Err(Error::plain(ErrorKind::RepoIdMismatch));
        }
        let Some(binary) = read_paper_data(console, id.lines)? else {
            return aborted(console);
        };
        if sha256_hex_prefix(&binary, 12) != id.total_checksum {
            console
                .print("The overall checksum did not match, retry or enter a blank line to abort.");
            continue;
        }
        return Ok(Some(format!("{}\n", encode_key_text(&binary))));
    }
}

fn aborted(console: &mut dyn PaperKeyConsole) -> Result<Option<String>> {
    console.print("\n - aborted");
    Ok(None)
}

/// `borg key change-passphrase` for an opened key: ask for the new passphrase (cli.md §12.3)
/// and store the re-protected blob where it was loaded from. Returns what borg shows as
/// `Key location:` (the key file, or the repository location).
pub fn change_passphrase(
    repo: &dyn Repository,
    key: &mut Key,
    env: &dyn PassphraseEnv,
) -> Result<String> {
    if !key.key_type().has_key_blob() {
        return Err(Error::command(
            "This repository is not encrypted, cannot change the passphrase.",
        ));
    }
    let passphrase = new_passphrase(env, true)?;
    let blob = key.encrypt_key_blob(&passphrase);
    if let Some(path) = key.keyfile_path().map(Path::to_path_buf) {
        save_key_file(&path, &key.repository_id(), &blob, false)?;
        return Ok(path.display().to_string());
    }
    repo.save_key(blob.as_bytes())?;
    if matches!(key.key_type(), KeyType::RepoKey | KeyType::RepoKeyBlake2) {
        key.set_logically_encrypted(!passphrase.is_empty());
    }
    Ok(repo.location())
}

/// Store an opened key again, protected by the passphrase it was unlocked with, where it was
/// loaded from (borg's `key.change_passphrase(key._passphrase)`, used by `upgrade --tam` and
/// `--disable-tam` after changing `tam_required`). Returns the `Key location:` text.
pub fn resave_key(repo: &dyn Repository, key: &Key) -> Result<String> {
    let passphrase = key
        .passphrase()
        .ok_or_else(|| Error::generic("the key's passphrase is not known"))?;
    let blob = key.encrypt_key_blob(passphrase);
    if let Some(path) = key.keyfile_path() {
        save_key_file(path, &key.repository_id(), &blob, false)?;
        return Ok(path.display().to_string());
    }
    repo.save_key(blob.as_bytes())?;
    Ok(repo.location())
}

/// Iterations of the key derivation of the legacy "passphrase" mode (never changed).
const LEGACY_PASSPHRASE_ITERATIONS: u32 = 100_000;

/// The secrets of a legacy "passphrase" mode repository: PBKDF2-HMAC-SHA256(passphrase,
/// salt = repository id, 100000) → 100 bytes, split like a random key (no TAM).
pub fn legacy_passphrase_material(repo_id: &ObjectId, passphrase: &str) -> KeyMaterial {
    let mut data = [0u8; 100];
    pbkdf2::pbkdf2_hmac::<Sha256>(
        passphrase.as_bytes(),
        repo_id,
        LEGACY_PASSPHRASE_ITERATIONS,
        &mut data,
    );
    KeyMaterial {
        repository_id: *repo_id,
        enc_key: data[0..32].to_vec(),
        enc_hmac_key: data[32..64].to_vec(),
        id_key: data[64..96].to_vec(),
        chunk_seed: u32::from_be_bytes(data[96..100].try_into().expect("4 bytes")) as i32,
        tam_required: Some(false),
    }
}

/// Whether `material` (legacy passphrase key) decrypts the stored manifest. Only the
/// legacy type byte 0x01 counts as a wrong passphrase (`Ok(false)`); borg 1.2.4 does not
/// catch the MAC failure of a 0x01 manifest, so a wrong passphrase there is an error.
fn legacy_key_fits(material: &KeyMaterial, manifest_stored: &[u8]) -> Result<bool> {
    if manifest_stored.first() != Some(&KeyType::Passphrase.byte()) {
        return Ok(false);
    }
    let key = Key::from_material(KeyType::RepoKey, material.clone(), KeySource::Nowhere)?;
    key.decrypt(None, manifest_stored)?;
    Ok(true)
}

/// `borg key migrate-to-repokey`: unlock the legacy passphrase key (the passphrase from the
/// environment or a prompt; another manifest type is retried twice, then
/// `PasswordRetriesExceeded`, as borg), then save the same secrets as a repokey
/// protected by a new passphrase.
pub fn migrate_to_repokey(
    repo: &dyn Repository,
    manifest_stored: &[u8],
    env: &dyn PassphraseEnv,
) -> Result<()> {
    let repo_id = repo.id();
    let prompt = format!("Enter passphrase for {}: ", repo.location());
    let mut passphrase = match env_passphrase(env)? {
        Some(p) => p,
        None => getpass(env, &prompt)?,
    };
    let mut found = None;
    for _ in 0..2 {
        let material = legacy_passphrase_material(&repo_id, &passphrase);
        if legacy_key_fits(&material, manifest_stored)? {
            found = Some(material);
            break;
        }
        passphrase = getpass(env, &prompt)?;
    }
    let Some(mut material) = found else {
        return Err(Error::plain(ErrorKind::PasswordRetriesExceeded));
    };
    // a new RepoKey object in borg: TAM required
    material.tam_required = Some(true);
    let key = Key::from_material(KeyType::RepoKey, material, KeySource::Nowhere)?;
    let new = new_passphrase(env, true)?;
    repo.save_key(key.encrypt_key_blob(&new).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::passphrase::tests::FakeEnv;
    use std::collections::VecDeque;

    const BLOB: &str = "hqlhbGdvcml0aG2mc2hhMjU2pGRhdGHaAN5+pyi6ZLpyktjkCccEANNk/ltHS3Mprd07rZ\n85dWumJ/UjQVD8lXwGFFpZiDsn//q19Ygtw/p/x1OYDi3Lb2C7TnNPBN7auTtP8LmyCMpF\nJei2RFbOWJ2eJYGpqhzJ5iJJDeMDzKOPsunqtHlnuiZjG7cd1FdmDbv2GtuOQAVAyrhPpx\nEc4bjmwkd62Ghbf/VgzjctAMzbDmjKqDtP5ZsaRPCF7L1Zcp+Fqfwg+IAl/yFoggIo3jxO\nuaiuZ06iq6KdjRBR4RLOQcboqhnb+oOJPoy60JwfhD4Inx69xumkaGFzaNoAIBKpIqYrUl\nwO7XCW4eweuEezrUO/Lb1ny+0HUSxFLNwGqml0ZXJhdGlvbnPOAAGGoKRzYWx02gAgw7o8\nXvu6qNQfPY1aBYe+TwM4MJ+5JaPduPJrdrhU7lCndmVyc2lvbgE=";

    fn repo_id() -> ObjectId {
        hex::decode("74e2476c74c01490e13a1c2410ae987edd8c51434c9366fdf253a2ad8eb7538f")
            .unwrap()
            .try_into()
            .unwrap()
    }

    #[test]
    fn paper_export_matches_borg() {
        // borg 1.2.4 `key export --paper` of the repository this blob belongs to
        let text = paper_key_text(&repo_id(), BLOB).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "To restore key use borg key import --paper /path/to/repo"
        );
        assert_eq!(lines[1], "");
        assert_eq!(lines[2], "BORG PAPER KEY v1");
        assert_eq!(
            lines[3],
            "id: 20 / 74e247 6c74c0 1490e1 / eecb07 c6076b - a5"
        );
        assert_eq!(
            lines[4],
            " 1: 86a961 6c676f 726974 686da6 736861 323536 - 14"
        );
        assert_eq!(
            lines[13],
            "10: c2477a d8685b 7ff560 ce372d 00ccdb 0e68ca - 21"
        );
        assert_eq!(lines[23], "20: ee50a7 766572 73696f 6e01 - 2f");
        assert_eq!(lines.len(), 24);
        assert!(text.ends_with("6e01 - 2f\n"));
    }

    #[test]
    fn key_file_text_adds_one_newline() {
        let id = repo_id();
        let t = key_file_text(&id, "abc");
        assert_eq!(t, format!("BORG_KEY {}\nabc\n", hex::encode(id)));
        assert_eq!(key_file_text(&id, "abc\n"), t);
        assert_eq!(parse_key_backup(&id, t.as_bytes()).unwrap(), "abc\n");
        let e = parse_key_backup(&id, b"hello\n").unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotABorgKeyFile);
        let other = key_file_text(&[1; 32], "abc");
        let e = parse_key_backup(&id, other.as_bytes()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::RepoIdMismatch);
        // Short files: only the magic decides.
        let e = parse_key_backup(&id, b"BORG_KEY").unwrap_err();
        assert_eq!(e.kind, ErrorKind::RepoIdMismatch);
        let e = parse_key_backup(&id, b"").unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotABorgKeyFile);
    }

    #[test]
    fn qr_html_embeds_key_text_and_paper() {
        let html = qr_html(&repo_id(), BLOB).unwrap();
        assert_eq!(
            key_text_of_qr_html(&html).unwrap(),
            key_file_text(&repo_id(), BLOB)
        );
        assert!(html.contains("<svg"));
        assert!(html.contains("BORG PAPER KEY v1"));
        assert!(!html.contains("<script"));
    }

    /// A console answering from a script and recording what was shown.
    struct Script {
        answers: VecDeque<String>,
        shown: String,
    }

    impl Script {
        fn new(answers: &[&str]) -> Script {
            Script {
                answers: answers.iter().map(|s| s.to_string()).collect(),
                shown: String::new(),
            }
        }
    }

    impl PaperKeyConsole for Script {
        fn input(&mut self, prompt: &str) -> Option<String> {
            self.shown.push_str(prompt);
            self.answers.pop_front()
        }
        fn print(&mut self, line: &str) {
            self.shown.push_str(line);
            self.shown.push('\n');
        }
        fn confirm_abort(&mut self) -> bool {
            self.shown.push_str("Abort import? [yN]:");
            let a = self.answers.pop_front().unwrap_or_default();
            crate::output::prompt::TRUISH.contains(&a.as_str())
        }
    }

    fn paper_answers() -> Vec<String> {
        paper_key_text(&repo_id(), BLOB)
            .unwrap()
            .lines()
            .skip(3)
            .map(|l| l.split_once(": ").unwrap().1.to_string())
            .collect()
    }

    #[test]
    fn paper_import_round_trip_with_mistakes() {
        let good = paper_answers();
        let mut answers: Vec<String> = vec![
            good[0].replace("- a5", "- a6"),
            "no dash here".into(),
            "a/b-c".into(),
            good[0].clone(),
            "zz - 00".into(),
            good[1].replace("- 14", "- 15"),
            good[1].to_uppercase(),
        ];
        answers.extend(good[2..].iter().cloned());
        let refs: Vec<&str> = answers.iter().map(String::as_str).collect();
        let mut console = Script::new(&refs);
        let blob = read_paper_key(&repo_id(), &mut console).unwrap().unwrap();
        assert_eq!(blob, format!("{BLOB}\n"));
        // The feedback borg 1.2.4 gives for the same input (prompts and messages on stdout).
        let mut expected = String::from(
            "id: line checksum did not match, try same line again\n\
             id: each line must contain exactly one '-', try again\n\
             id: the id line must contain exactly three '/', try again\n\
             id:  1: only characters 0-9 and a-f and '-' are valid, try again\n \
             1: line checksum did not match, try line 1 again\n 1: ",
        );
        for i in 2..=20 {
            expected.push_str(&format!("{i:2}: "));
        }
        assert_eq!(console.shown, expected);
    }

    #[test]
    fn paper_import_aborts_and_mismatches() {
        let mut console = Script::new(&["", "y"]);
        assert_eq!(read_paper_key(&repo_id(), &mut console).unwrap(), None);
        assert_eq!(console.shown, "id: Abort import? [yN]:\n - aborted\n");
        let mut console = Script::new(&[]);
        assert_eq!(read_paper_key(&repo_id(), &mut console).unwrap(), None);
        let good = paper_answers();
        let mut console = Script::new(&[&good[0]]);
        assert_eq!(
            read_paper_key(&[0; 32], &mut console).unwrap_err().kind,
            ErrorKind::RepoIdMismatch
        );
        // A wrong overall checksum restarts at the id line.
        let data = "20/74e2476c74c01490e1/000000000000";
        let id_line = format!("{data}-{}", sha256_hex_prefix(data.as_bytes(), 2));
        let mut answers = vec![id_line];
        answers.extend(good[1..].iter().cloned());
        let refs: Vec<&str> = answers.iter().map(String::as_str).collect();
        let mut console = Script::new(&refs);
        assert_eq!(read_paper_key(&repo_id(), &mut console).unwrap(), None);
        assert!(console
            .shown
            .ends_with("20: The overall checksum did not match, retry or enter a blank line to abort.\nid: \n - aborted\n"));
    }

    #[test]
    fn python_int_rules() {
        assert_eq!(python_int("20"), Some(20));
        assert_eq!(python_int("+2_0"), Some(20));
        assert_eq!(python_int("-3"), Some(-3));
        assert_eq!(python_int("x"), None);
        assert_eq!(python_int("_1"), None);
        assert_eq!(python_int(""), None);
    }

    #[test]
    fn legacy_material_splits_like_borg() {
        // Oracle: python3 hashlib.pbkdf2_hmac('sha256', b'pw', bytes(32), 100000, 100)
        let m = legacy_passphrase_material(&[0; 32], "pw");
        let mut data = [0u8; 100];
        pbkdf2::pbkdf2_hmac::<Sha256>(b"pw", &[0; 32], 100_000, &mut data);
        assert_eq!(m.enc_key, data[..32]);
        assert_eq!(m.id_key, data[64..96]);
        assert_eq!(hex::encode(&data[..8]), LEGACY_PREFIX_HEX);
    }

    const LEGACY_PREFIX_HEX: &str = "c2f47ed7dbbaf2bf";

    /// A repository that only has an id, a location, a manifest and a key blob.
    struct KeyRepo {
        key: std::sync::Mutex<Vec<u8>>,
        manifest: Vec<u8>,
    }

    impl Repository for KeyRepo {
        fn id(&self) -> ObjectId {
            [3; 32]
        }
        fn location(&self) -> String {
            "/srv/repo".into()
        }
        fn get(&self, _id: &ObjectId) -> Result<Vec<u8>> {
            Ok(self.manifest.clone())
        }
        fn contains(&self, _id: &ObjectId) -> Result<bool> {
            Ok(true)
        }
        fn len(&self) -> Result<usize> {
            Ok(1)
        }
        fn list(&self, _limit: usize, _marker: Option<&ObjectId>) -> Result<Vec<ObjectId>> {
            Ok(Vec::new())
        }
        fn load_key(&self) -> Result<Vec<u8>> {
            Ok(self.key.lock().unwrap().clone())
        }
        fn append_only(&self) -> bool {
            false
        }
        fn save_key(&self, keydata: &[u8]) -> Result<()> {
            *self.key.lock().unwrap() = keydata.to_vec();
            Ok(())
        }
    }

    #[test]
    fn change_passphrase_of_repokey_and_none() {
        let repo = KeyRepo {
            key: Default::default(),
            manifest: Vec::new(),
        };
        let mut key = Key::generate(KeyType::RepoKeyBlake2, [3; 32]);
        key.set_source(KeySource::Repository("/srv/repo".into()));
        let env = FakeEnv::with_vars(&[("BORG_NEW_PASSPHRASE", "new")]);
        assert_eq!(
            change_passphrase(&repo, &mut key, &env).unwrap(),
            "/srv/repo"
        );
        let blob = repo.load_key().unwrap();
        let m = crate::crypto::decrypt_key_blob(&blob, "new")
            .unwrap()
            .unwrap();
        assert_eq!(&m, key.material());
        let mut plain = Key::plaintext([3; 32]);
        let e = change_passphrase(&repo, &mut plain, &env).unwrap_err();
        assert_eq!(e.kind, ErrorKind::CommandError);
        assert_eq!(
            e.message,
            "Command Error: This repository is not encrypted, cannot change the passphrase."
        );
    }

    #[test]
    fn migrate_legacy_passphrase_repository() {
        use crate::compress::CompressionSpec;
        let mut material = legacy_passphrase_material(&[3; 32], "old");
        let key =
            Key::from_material(KeyType::RepoKey, material.clone(), KeySource::Nowhere).unwrap();
        let mut manifest = key.encrypt(&CompressionSpec::Lz4.compress(b"\x80"), 0);
        manifest[0] = KeyType::Passphrase.byte();
        let repo = KeyRepo {
            key: Default::default(),
            manifest: manifest.clone(),
        };
        // Wrong passphrase: the MAC failure ends it at once (borg 1.2.4 does not retry).
        let env = FakeEnv::with_vars(&[("BORG_PASSPHRASE", "bad")]).answering(&["old"]);
        let e = migrate_to_repokey(&repo, &manifest, &env).unwrap_err();
        assert_eq!(e.kind, ErrorKind::IntegrityError);
        assert!(env.prompts.borrow().is_empty());
        // Another manifest type: env passphrase, then two prompts, the second answer unused.
        manifest[0] = KeyType::RepoKey.byte();
        let env = FakeEnv::with_vars(&[("BORG_PASSPHRASE", "old")]).answering(&["old", "old"]);
        let e = migrate_to_repokey(&repo, &manifest, &env).unwrap_err();
        assert_eq!(e.kind, ErrorKind::PasswordRetriesExceeded);
        assert_eq!(
            env.prompts.borrow().as_slice(),
            [
                "Enter passphrase for /srv/repo: ",
                "Enter passphrase for /srv/repo: "
            ]
        );
        manifest[0] = KeyType::Passphrase.byte();
        let env = FakeEnv::with_vars(&[("BORG_NEW_PASSPHRASE", "n")]).answering(&["old"]);
        migrate_to_repokey(&repo, &manifest, &env).unwrap();
        let m = crate::crypto::decrypt_key_blob(&repo.load_key().unwrap(), "n")
            .unwrap()
            .unwrap();
        material.tam_required = Some(true);
        assert_eq!(m, material);
    }
}
