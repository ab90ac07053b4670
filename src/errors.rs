//! The one table of error and warning kinds: msgid, message template, exit codes.
//!
//! Every failure that reaches the user is an [`Error`] whose kind carries borg's msgid, its
//! message template and its "modern" exit code (the user's exit-code table, rborg's default).
//! `BORG_EXIT_CODES=legacy` collapses them to borg 1.x's 0/1/2.

use std::fmt;
use std::sync::Mutex;

pub const EXIT_SUCCESS: i32 = 0;
pub const EXIT_WARNING: i32 = 1;
pub const EXIT_ERROR: i32 = 2;
pub const EXIT_SIGNAL_BASE: i32 = 128;

macro_rules! error_kinds {
    ($( $variant:ident => ($msgid:expr, $rc:expr, $tb:expr, $template:expr) ),* $(,)?) => {
        /// Error classes of borg (cli.md §13.2), plus `Exception` for unexpected failures.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ErrorKind { $($variant),* }

        impl ErrorKind {
            pub const ALL: &'static [ErrorKind] = &[$(ErrorKind::$variant),*];
            pub fn msgid(self) -> &'static str { match self { $(ErrorKind::$variant => $msgid),* } }
            pub fn modern_rc(self) -> i32 { match self { $(ErrorKind::$variant => $rc),* } }
            pub fn traceback(self) -> bool { match self { $(ErrorKind::$variant => $tb),* } }
            pub fn template(self) -> &'static str { match self { $(ErrorKind::$variant => $template),* } }
        }
    };
}

error_kinds! {
    Error => ("Error", 2, false, "Error: {}"),
    ErrorWithTraceback => ("ErrorWithTraceback", 2, true, "Error: {}"),
    RTError => ("RTError", 2, false, "Runtime Error: {}"),
    BufferMemoryLimitExceeded => ("Buffer.MemoryLimitExceeded", 2, false, "Requested buffer size {} is above the limit of {}."),
    // borg's remote-connection queue; rborg has no such queue but keeps the table complete.
    EfficientCollectionQueueSizeUnderflow => ("EfficientCollectionQueue.SizeUnderflow", 2, false, "Could not pop_front the first {} elements; collection only has {} elements."),
    CancelledByUser => ("CancelledByUser", 3, false, "Cancelled by user."),
    CommandError => ("CommandError", 4, false, "Command Error: {}"),
    PlaceholderError => ("PlaceholderError", 5, false, "Formatting Error: \"{}\".format({}): {}({})"),
    InvalidPlaceholder => ("InvalidPlaceholder", 6, false, "Invalid placeholder \"{}\" in string: {}"),
    RepositoryAlreadyExists => ("Repository.AlreadyExists", 10, false, "A repository already exists at {}."),
    RepositoryAtticRepository => ("Repository.AtticRepository", 11, false, "Attic repository detected. Please run \"borg upgrade {}\"."),
    RepositoryCheckNeeded => ("Repository.CheckNeeded", 12, true, "Inconsistency detected. Please run \"borg check {}\"."),
    RepositoryDoesNotExist => ("Repository.DoesNotExist", 13, false, "Repository {} does not exist."),
    RepositoryInsufficientFreeSpace => ("Repository.InsufficientFreeSpaceError", 14, false, "Insufficient free space to complete transaction (required: {}, available: {})."),
    RepositoryInvalidRepository => ("Repository.InvalidRepository", 15, false, "{} is not a valid repository. Check repo config."),
    RepositoryInvalidRepositoryConfig => ("Repository.InvalidRepositoryConfig", 16, false, "{} does not have a valid configuration. Check repo config [{}]."),
    RepositoryObjectNotFound => ("Repository.ObjectNotFound", 17, true, "Object with key {} not found in repository {}."),
    RepositoryParentPathDoesNotExist => ("Repository.ParentPathDoesNotExist", 18, false, "The parent path of the repo directory [{}] does not exist."),
    RepositoryPathAlreadyExists => ("Repository.PathAlreadyExists", 19, false, "There is already something at {}."),
    RepositoryStorageQuotaExceeded => ("Repository.StorageQuotaExceeded", 20, false, "The storage quota ({}) has been exceeded ({}). Try deleting some archives."),
    RepositoryPathPermissionDenied => ("Repository.PathPermissionDenied", 21, false, "Permission denied to {}."),
    MandatoryFeatureUnsupported => ("MandatoryFeatureUnsupported", 25, false, "Unsupported repository feature(s) {}. A newer version of Borg is required to access this repository."),
    NoManifestError => ("NoManifestError", 26, false, "Repository has no manifest."),
    UnsupportedManifestError => ("UnsupportedManifestError", 27, false, "Unsupported manifest envelope. A newer version is required to access this repository."),
    ArchiveAlreadyExists => ("Archive.AlreadyExists", 30, false, "Archive {} already exists"),
    ArchiveDoesNotExist => ("Archive.DoesNotExist", 31, false, "Archive {} does not exist"),
    ArchiveIncompatibleFilesystemEncoding => ("Archive.IncompatibleFilesystemEncodingError", 32, false, "Failed to encode filename \"{}\" into file system encoding \"{}\". Consider configuring the LANG environment variable."),
    KeyfileInvalidError => ("KeyfileInvalidError", 40, false, "Invalid key data for repository {} found in {}."),
    KeyfileMismatchError => ("KeyfileMismatchError", 41, false, "Mismatch between repository {} and key file {}."),
    KeyfileNotFoundError => ("KeyfileNotFoundError", 42, false, "No key file for repository {} found in {}."),
    NotABorgKeyFile => ("NotABorgKeyFile", 43, false, "This file is not a Borg key backup, aborting."),
    RepoKeyNotFoundError => ("RepoKeyNotFoundError", 44, false, "No key entry found in the config of repository {}."),
    RepoIdMismatch => ("RepoIdMismatch", 45, false, "This key backup seems to be for a different backup repository, aborting."),
    UnencryptedRepo => ("UnencryptedRepo", 46, false, "Key management not available for unencrypted repositories."),
    UnknownKeyType => ("UnknownKeyType", 47, false, "Key type {} is unknown."),
    UnsupportedPayloadError => ("UnsupportedPayloadError", 48, false, "Unsupported payload type {}. A newer version is required to access this repository."),
    UnsupportedKeyFormatError => ("UnsupportedKeyFormatError", 49, false, "Your borg key is stored in an unsupported format. Try using a newer version of borg."),
    NoPassphraseFailure => ("NoPassphraseFailure", 50, false, "Cannot acquire a passphrase: {}"),
    PasscommandFailure => ("PasscommandFailure", 51, false, "Passcommand supplied in BORG_PASSCOMMAND failed: {}"),
    PassphraseWrong => ("PassphraseWrong", 52, false, "Passphrase supplied in BORG_PASSPHRASE, by BORG_PASSCOMMAND, or via BORG_PASSPHRASE_FD is incorrect."),
    PasswordRetriesExceeded => ("PasswordRetriesExceeded", 53, false, "Exceeded the maximum password retries."),
    CacheInitAborted => ("Cache.CacheInitAbortedError", 60, false, "Cache initialization aborted"),
    CacheEncryptionMethodMismatch => ("Cache.EncryptionMethodMismatch", 61, false, "Repository encryption method changed since last access, refusing to continue"),
    CacheRepositoryAccessAborted => ("Cache.RepositoryAccessAborted", 62, false, "Repository access aborted"),
    CacheRepositoryIDNotUnique => ("Cache.RepositoryIDNotUnique", 63, false, "Cache is newer than repository - do you have multiple, independently updated repos with same ID?"),
    CacheRepositoryReplay => ("Cache.RepositoryReplay", 64, false, "Cache, or information obtained from the security directory is newer than repository - this is either an attack or unsafe (multiple repos with same ID)"),
    LockError => ("LockError", 70, false, "Failed to acquire the lock {}."),
    LockErrorT => ("LockErrorT", 71, true, "Failed to acquire the lock {}."),
    LockFailed => ("LockFailed", 72, true, "Failed to create/acquire the lock {} ({})."),
    LockTimeout => ("LockTimeout", 73, false, "Failed to create/acquire the lock {} (timeout)."),
    NotLocked => ("NotLocked", 74, true, "Failed to release the lock {} (was not locked)."),
    NotMyLock => ("NotMyLock", 75, true, "Failed to release the lock {} (was/is locked, but not by me)."),
    ConnectionClosed => ("ConnectionClosed", 80, false, "Connection closed by remote host."),
    ConnectionClosedWithHint => ("ConnectionClosedWithHint", 81, false, "Connection closed by remote host. {}"),
    InvalidRPCMethod => ("InvalidRPCMethod", 82, false, "RPC method {} is not valid."),
    PathNotAllowed => ("PathNotAllowed", 83, false, "Repository path not allowed: {}"),
    RPCServerOutdated => ("RemoteRepository.RPCServerOutdated", 84, false, "Borg server is too old for {}. Required version {}"),
    UnexpectedRPCDataFormatFromClient => ("UnexpectedRPCDataFormatFromClient", 85, false, "Borg {}: Got unexpected RPC data format from client."),
    UnexpectedRPCDataFormatFromServer => ("UnexpectedRPCDataFormatFromServer", 86, false, "Got unexpected RPC data format from server:\n{}"),
    ConnectionBrokenWithHint => ("ConnectionBrokenWithHint", 87, false, "Connection to remote host is broken. {}"),
    // A remote exception the client does not rebuild (borg's RemoteRepository.RPCError): the
    // message is the remote's short text, or its traceback when that is worth showing.
    RPCError => ("RemoteRepository.RPCError", 2, false, "{}"),
    IntegrityError => ("IntegrityError", 90, true, "Data integrity error: {}"),
    FileIntegrityError => ("FileIntegrityError", 91, true, "File failed integrity check: {}"),
    DecompressionError => ("DecompressionError", 92, true, "Decompression error: {}"),
    ArchiveTAMInvalid => ("ArchiveTAMInvalid", 95, true, "Data integrity error: {}"),
    ArchiveTAMRequiredError => ("ArchiveTAMRequiredError", 96, true, "Archive '{}' is unauthenticated, but it is required for this repository."),
    TAMInvalid => ("TAMInvalid", 97, true, "Data integrity error: {}"),
    TAMRequiredError => ("TAMRequiredError", 98, true, "Manifest is unauthenticated, but it is required for this repository."),
    TAMUnsupportedSuiteError => ("TAMUnsupportedSuiteError", 99, true, "Could not verify manifest: Unsupported suite {}; a newer version is needed."),
    // Not a borg class: an unexpected failure (borg's "Local Exception"), rc 2 in both modes.
    Exception => ("Exception", 2, true, "{}"),
}

/// Fill `{}` placeholders of a template in order (`{{`/`}}` are not used by any template).
pub fn fill_template(template: &str, args: &[String]) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    let mut next = 0;
    while let Some(pos) = rest.find("{}") {
        out.push_str(&rest[..pos]);
        if let Some(a) = args.get(next) {
            out.push_str(a);
        }
        next += 1;
        rest = &rest[pos + 2..];
    }
    out.push_str(rest);
    out
}

/// A failure with borg's class (msgid), the formatted message and its exit code.
#[derive(Debug, Clone)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Build from the kind's template, filling its `{}` with `args` in order.
    pub fn new<I, S>(kind: ErrorKind, args: I) -> Error
    where
        I: IntoIterator<Item = S>,
        S: ToString,
    {
        let args: Vec<String> = args.into_iter().map(|a| a.to_string()).collect();
        Error {
            kind,
            message: fill_template(kind.template(), &args),
        }
    }

    /// A kind whose template has no placeholders.
    pub fn plain(kind: ErrorKind) -> Error {
        Error {
            kind,
            message: kind.template().to_string(),
        }
    }

    /// `Error: {}` — borg's generic error class.
    pub fn generic(msg: impl ToString) -> Error {
        Error::new(ErrorKind::Error, [msg.to_string()])
    }

    /// `Command Error: {}` (modern rc 4).
    pub fn command(msg: impl ToString) -> Error {
        Error::new(ErrorKind::CommandError, [msg.to_string()])
    }

    /// `Runtime Error: {}`.
    pub fn runtime(msg: impl ToString) -> Error {
        Error::new(ErrorKind::RTError, [msg.to_string()])
    }

    /// `Data integrity error: {}` (modern rc 90).
    pub fn integrity(msg: impl ToString) -> Error {
        Error::new(ErrorKind::IntegrityError, [msg.to_string()])
    }

    /// `File failed integrity check: {}` (modern rc 91).
    pub fn file_integrity(msg: impl ToString) -> Error {
        Error::new(ErrorKind::FileIntegrityError, [msg.to_string()])
    }

    /// `Decompression error: {}` (modern rc 92).
    pub fn decompression(msg: impl ToString) -> Error {
        Error::new(ErrorKind::DecompressionError, [msg.to_string()])
    }

    /// An unexpected failure (borg: "Local Exception"); the message is used verbatim.
    pub fn exception(msg: impl ToString) -> Error {
        Error {
            kind: ErrorKind::Exception,
            message: msg.to_string(),
        }
    }

    pub fn msgid(&self) -> &'static str {
        self.kind.msgid()
    }

    /// The process exit code for this error under the chosen exit-code table.
    pub fn exit_code(&self, mode: ExitCodeMode) -> i32 {
        match mode {
            ExitCodeMode::Modern => self.kind.modern_rc(),
            ExitCodeMode::Legacy => EXIT_ERROR,
        }
    }

    pub fn is(&self, kind: ErrorKind) -> bool {
        self.kind == kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::exception(e)
    }
}

/// Warning classes of borg (cli.md §13.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarningKind {
    /// Any warning without a class of its own (rc 1, no msgid).
    Generic,
    FileChanged,
    IncludePatternNeverMatched,
    BackupError,
    BackupRaceCondition,
    BackupOSError,
    BackupPermissionError,
    BackupIOError,
    BackupFileNotFound,
    BackupSymlinkParent,
    BackupPathTraversal,
    BackupHardlinkSource,
}

impl WarningKind {
    pub fn msgid(self) -> Option<&'static str> {
        use WarningKind::*;
        Some(match self {
            Generic => return None,
            FileChanged => "FileChangedWarning",
            IncludePatternNeverMatched => "IncludePatternNeverMatchedWarning",
            BackupError => "BackupError",
            BackupRaceCondition => "BackupRaceConditionError",
            BackupOSError => "BackupOSError",
            BackupPermissionError => "BackupPermissionError",
            BackupIOError => "BackupIOError",
            BackupFileNotFound => "BackupFileNotFoundError",
            BackupSymlinkParent => "BackupSymlinkParentError",
            BackupPathTraversal => "BackupPathTraversalError",
            BackupHardlinkSource => "BackupHardlinkSourceError",
        })
    }

    pub fn modern_rc(self) -> i32 {
        use WarningKind::*;
        match self {
            Generic => 1,
            FileChanged => 100,
            IncludePatternNeverMatched => 101,
            BackupError => 102,
            BackupRaceCondition => 103,
            BackupOSError => 104,
            BackupPermissionError => 105,
            BackupIOError => 106,
            BackupFileNotFound => 107,
            BackupSymlinkParent => 108,
            BackupPathTraversal => 109,
            BackupHardlinkSource => 110,
        }
    }

    /// The warning class matching an OS error met while reading a file (borg's BackupOSError
    /// subclasses chosen by errno).
    pub fn for_io_error(e: &std::io::Error) -> WarningKind {
        match e.kind() {
            std::io::ErrorKind::NotFound => WarningKind::BackupFileNotFound,
            std::io::ErrorKind::PermissionDenied => WarningKind::BackupPermissionError,
            _ if e.raw_os_error() == Some(libc::EIO) => WarningKind::BackupIOError,
            _ => WarningKind::BackupOSError,
        }
    }
}

/// Which exit-code table is in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCodeMode {
    /// The user's table (specific codes 3–99, 100–127); rborg's default.
    Modern,
    /// borg 1.x: 0 / 1 / 2.
    Legacy,
}

impl ExitCodeMode {
    /// `BORG_EXIT_CODES=legacy` selects legacy; anything else (or unset) is modern.
    pub fn from_env() -> ExitCodeMode {
        match std::env::var("BORG_EXIT_CODES") {
            Ok(v) if v == "legacy" => ExitCodeMode::Legacy,
            _ => ExitCodeMode::Modern,
        }
    }
}

/// Class of an exit code, in borg's severity order (signal > error > warning > success).
fn severity(rc: i32) -> u8 {
    match rc {
        0 => 0,
        1 | 100..=127 => 1,
        2..=99 => 2,
        _ if rc >= 128 => 3,
        _ => 2,
    }
}

/// Collects the exit code of a run the way borg 1.4 does (cli.md §13.4).
#[derive(Debug, Default)]
pub struct ExitStatus {
    current: i32,
    warnings: Vec<i32>,
}

impl ExitStatus {
    pub const fn new() -> ExitStatus {
        ExitStatus {
            current: 0,
            warnings: Vec::new(),
        }
    }

    /// Raise the current code; a more severe class replaces, the same class keeps the first.
    pub fn set(&mut self, rc: i32) {
        if severity(rc) > severity(self.current) {
            self.current = rc;
        }
    }

    pub fn add_warning(&mut self, rc: i32) {
        self.warnings.push(rc);
    }

    pub fn final_rc(&self, mode: ExitCodeMode) -> i32 {
        let rc = if self.current != 0 {
            self.current
        } else if let Some(first) = self.warnings.first() {
            if self.warnings.iter().all(|w| w == first) {
                *first
            } else {
                EXIT_WARNING
            }
        } else {
            EXIT_SUCCESS
        };
        match (mode, severity(rc)) {
            (ExitCodeMode::Legacy, 1) => EXIT_WARNING,
            (ExitCodeMode::Legacy, 2) => EXIT_ERROR,
            _ => rc,
        }
    }
}

/// The process-wide exit status; warnings are recorded here wherever they are emitted.
pub static EXIT_STATUS: Mutex<ExitStatus> = Mutex::new(ExitStatus::new());

pub fn record_warning(kind: WarningKind) {
    EXIT_STATUS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .add_warning(kind.modern_rc());
}

pub fn set_exit_code(rc: i32) {
    EXIT_STATUS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .set(rc);
}

pub fn final_exit_code(mode: ExitCodeMode) -> i32 {
    EXIT_STATUS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .final_rc(mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_in_order() {
        let e = Error::new(ErrorKind::RepositoryObjectNotFound, ["abc", "/r"]);
        assert_eq!(e.message, "Object with key abc not found in repository /r.");
        assert_eq!(e.exit_code(ExitCodeMode::Modern), 17);
        assert_eq!(e.exit_code(ExitCodeMode::Legacy), 2);
        assert_eq!(e.msgid(), "Repository.ObjectNotFound");
    }

    #[test]
    fn final_rc_follows_borg_rules() {
        let mut s = ExitStatus::new();
        assert_eq!(s.final_rc(ExitCodeMode::Modern), 0);
        s.add_warning(107);
        assert_eq!(s.final_rc(ExitCodeMode::Modern), 107);
        s.add_warning(107);
        assert_eq!(s.final_rc(ExitCodeMode::Modern), 107);
        s.add_warning(101);
        assert_eq!(s.final_rc(ExitCodeMode::Modern), 1);
        assert_eq!(s.final_rc(ExitCodeMode::Legacy), 1);
        let mut s = ExitStatus::new();
        s.set(1);
        s.add_warning(107);
        assert_eq!(s.final_rc(ExitCodeMode::Modern), 1);
        let mut s = ExitStatus::new();
        s.set(13);
        s.set(30);
        assert_eq!(s.final_rc(ExitCodeMode::Modern), 13);
        assert_eq!(s.final_rc(ExitCodeMode::Legacy), 2);
        let mut s = ExitStatus::new();
        s.set(130);
        s.set(30);
        assert_eq!(s.final_rc(ExitCodeMode::Modern), 130);
    }
}
