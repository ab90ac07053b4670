//! Errors crossing the wire (remote-protocol.md §6): our [`Error`]s as the exception class,
//! arguments and texts a borg client dispatches on, and a received exception as the error
//! a borg 1.4 client would raise for it.

use crate::errors::{Error, ErrorKind};

use super::codec::RemoteException;

/// The Python class name a borg server would send for `e`.
pub fn class_name(e: &Error) -> String {
    match e.kind {
        ErrorKind::Exception => python_class(&e.message).to_string(),
        ErrorKind::RepositoryInsufficientFreeSpace => "InsufficientFreeSpaceError".into(),
        kind => {
            let msgid = kind.msgid();
            msgid.rsplit('.').next().unwrap_or(msgid).to_string()
        }
    }
}

/// Python's built-in classes a message may start with.
const PYTHON_CLASSES: &[&str] = &[
    "KeyError",
    "ValueError",
    "TypeError",
    "AssertionError",
    "AttributeError",
    "OSError",
];

/// The built-in exception class behind one of the repository's unexpected failures (the
/// texts are borg's, so is the class each comes with).
fn python_class(message: &str) -> &'static str {
    if message.ends_with("is in append-only mode") || message.starts_with("please use limit") {
        "ValueError"
    } else if message.starts_with("bug in code") {
        "AssertionError"
    } else if message.starts_with("'NoneType'") {
        "AttributeError"
    } else if message.starts_with('\'') {
        "KeyError"
    } else if message.starts_with("[Errno") {
        "OSError"
    } else if message.contains("were given")
        || message.contains("missing required argument")
        || message.contains("must be")
    {
        "TypeError"
    } else {
        "Exception"
    }
}

/// The values that filled a template's `{}` to give `message` (None if it does not fit).
pub fn template_args(template: &str, message: &str) -> Option<Vec<String>> {
    let pieces: Vec<&str> = template.split("{}").collect();
    let mut rest = message.strip_prefix(pieces[0])?;
    let mut args = Vec::new();
    for (i, sep) in pieces.iter().enumerate().skip(1) {
        let last = i == pieces.len() - 1;
        let end = if last {
            if !rest.ends_with(sep) {
                return None;
            }
            rest.len() - sep.len()
        } else if sep.is_empty() {
            return None;
        } else {
            rest.find(sep)?
        };
        args.push(rest[..end].to_string());
        rest = &rest[end + sep.len()..];
    }
    Some(args)
}

/// The error reply for `e` (§6.1): borg `Error` classes carry their formatted message as
/// `exception_short` and their arguments; other failures look like Python exceptions.
pub fn to_remote(e: &Error, sysinfo: &str) -> RemoteException {
    let class = class_name(e);
    if e.kind == ErrorKind::Exception {
        // a message that names its Python class already ("KeyError: …")
        let (class, message) = match e.message.split_once(": ") {
            Some((named, rest)) if PYTHON_CLASSES.contains(&named) => {
                (named.to_string(), rest.to_string())
            }
            _ => (class, e.message.clone()),
        };
        let line = format!("{class}: {message}\n");
        return RemoteException {
            args: vec![message],
            full: vec!["Traceback (most recent call last):\n".into(), line.clone()],
            short: vec![line],
            trace: true,
            sysinfo: sysinfo.to_string(),
            old_server: false,
            class,
        };
    }
    let args =
        template_args(e.kind.template(), &e.message).unwrap_or_else(|| vec![e.message.clone()]);
    RemoteException {
        args,
        full: vec![
            "Traceback (most recent call last):\n".into(),
            format!("{}: {}\n", class, e.message),
        ],
        short: vec![e.message.clone()],
        trace: e.kind.traceback(),
        sysinfo: sysinfo.to_string(),
        old_server: false,
        class,
    }
}

/// The error a borg 1.4 client raises for a received exception; `location` is the client's
/// URL of the repository, shown instead of the server's path where borg does so.
pub fn from_remote(ex: &RemoteException, location: &str) -> Error {
    let arg = |i: usize| -> String {
        if ex.old_server {
            "(not available)".into()
        } else {
            ex.args.get(i).cloned().unwrap_or_default()
        }
    };
    let one = |kind: ErrorKind| Error::new(kind, [arg(0)]);
    let two = |kind: ErrorKind| Error::new(kind, [arg(0), arg(1)]);
    match ex.class.as_str() {
        "Error" => one(ErrorKind::Error),
        "ErrorWithTraceback" => one(ErrorKind::ErrorWithTraceback),
        "InvalidRepository" => Error::new(ErrorKind::RepositoryInvalidRepository, [location]),
        "DoesNotExist" => Error::new(ErrorKind::RepositoryDoesNotExist, [location]),
        "AlreadyExists" => Error::new(ErrorKind::RepositoryAlreadyExists, [location]),
        "CheckNeeded" => Error::new(ErrorKind::RepositoryCheckNeeded, [location]),
        "IntegrityError" => one(ErrorKind::IntegrityError),
        "AtticRepository" => one(ErrorKind::RepositoryAtticRepository),
        "PathNotAllowed" => one(ErrorKind::PathNotAllowed),
        "PathPermissionDenied" => one(ErrorKind::RepositoryPathPermissionDenied),
        "PathAlreadyExists" => one(ErrorKind::RepositoryPathAlreadyExists),
        "ParentPathDoesNotExist" => one(ErrorKind::RepositoryParentPathDoesNotExist),
        "ObjectNotFound" => Error::new(
            ErrorKind::RepositoryObjectNotFound,
            [arg(0), location.into()],
        ),
        "InvalidRPCMethod" => one(ErrorKind::InvalidRPCMethod),
        "LockTimeout" => one(ErrorKind::LockTimeout),
        "LockFailed" => two(ErrorKind::LockFailed),
        "NotLocked" => one(ErrorKind::NotLocked),
        "NotMyLock" => one(ErrorKind::NotMyLock),
        "InsufficientFreeSpaceError" => two(ErrorKind::RepositoryInsufficientFreeSpace),
        "InvalidRepositoryConfig" => Error::new(
            ErrorKind::RepositoryInvalidRepositoryConfig,
            [location.to_string(), arg(1)],
        ),
        "StorageQuotaExceeded" => two(ErrorKind::RepositoryStorageQuotaExceeded),
        _ => rpc_error(ex),
    }
}

/// borg's RPCError: the remote traceback if it is worth showing, else the short text.
fn rpc_error(ex: &RemoteException) -> Error {
    let message = if ex.trace && !ex.full.is_empty() {
        ex.full.join("\n")
    } else if !ex.short.is_empty() {
        ex.short.join("\n")
    } else {
        ex.class.clone()
    };
    Error {
        kind: ErrorKind::RPCError,
        message: message.trim_end_matches('\n').to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_give_back_their_args() {
        let e = Error::new(ErrorKind::RepositoryObjectNotFound, ["00ff", "/srv/r"]);
        assert_eq!(
            template_args(e.kind.template(), &e.message),
            Some(vec!["00ff".to_string(), "/srv/r".to_string()])
        );
        let e = Error::new(ErrorKind::RepositoryDoesNotExist, ["/a b/c"]);
        assert_eq!(
            template_args(e.kind.template(), &e.message),
            Some(vec!["/a b/c".to_string()])
        );
        assert_eq!(
            template_args("Repository {} does not exist.", "other"),
            None
        );
    }

    #[test]
    fn server_side_shapes() {
        let r = to_remote(&Error::new(ErrorKind::RepositoryDoesNotExist, ["/x/r"]), "");
        assert_eq!(r.class, "DoesNotExist");
        assert_eq!(r.args, ["/x/r"]);
        assert_eq!(r.short, ["Repository /x/r does not exist."]);
        assert!(!r.trace);
        let r = to_remote(&Error::new(ErrorKind::LockFailed, ["/r/lock", "why"]), "");
        assert_eq!(
            (r.class.as_str(), r.args.len(), r.trace),
            ("LockFailed", 2, true)
        );
        let r = to_remote(&Error::exception("/r is in append-only mode"), "");
        assert_eq!(r.class, "ValueError");
        assert_eq!(r.short, ["ValueError: /r is in append-only mode\n"]);
        let r = to_remote(
            &Error::exception("bug in code, exclusive lock should exist here"),
            "",
        );
        assert_eq!(r.class, "AssertionError");
        let r = to_remote(&Error::exception("KeyError: 9999"), "");
        assert_eq!((r.class.as_str(), r.args[0].as_str()), ("KeyError", "9999"));
        let r = to_remote(
            &Error::new(
                ErrorKind::RepositoryStorageQuotaExceeded,
                ["10.00 MB", "10.50 MB"],
            ),
            "",
        );
        assert_eq!(r.class, "StorageQuotaExceeded");
        assert_eq!(r.args, ["10.00 MB", "10.50 MB"]);
        assert_eq!(
            class_name(&Error::new(
                ErrorKind::RepositoryInsufficientFreeSpace,
                ["1", "2"]
            )),
            "InsufficientFreeSpaceError"
        );
    }

    #[test]
    fn client_side_rebuilds_borg_classes() {
        let ex = |class: &str, args: &[&str]| RemoteException {
            class: class.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            full: vec![
                "Traceback (most recent call last):\n".into(),
                "X: y\n".into(),
            ],
            short: vec!["short text".into()],
            trace: false,
            sysinfo: String::new(),
            old_server: false,
        };
        let url = "ssh://h/./r";
        let e = from_remote(&ex("DoesNotExist", &["/srv/r"]), url);
        assert_eq!(e.kind, ErrorKind::RepositoryDoesNotExist);
        assert_eq!(e.message, "Repository ssh://h/./r does not exist.");
        let e = from_remote(&ex("ObjectNotFound", &["abcd", "/srv/r"]), url);
        assert_eq!(
            e.message,
            "Object with key abcd not found in repository ssh://h/./r."
        );
        let e = from_remote(&ex("LockTimeout", &["/srv/r/lock.exclusive"]), url);
        assert_eq!(e.kind, ErrorKind::LockTimeout);
        let e = from_remote(&ex("StorageQuotaExceeded", &["10.00 MB", "11.00 MB"]), url);
        assert_eq!(e.kind.modern_rc(), 20);
        let e = from_remote(&ex("ValueError", &["x"]), url);
        assert_eq!(
            (e.kind, e.message.as_str()),
            (ErrorKind::RPCError, "short text")
        );
        let mut important = ex("ValueError", &["x"]);
        important.trace = true;
        let e = from_remote(&important, url);
        assert!(e.message.starts_with("Traceback"), "{}", e.message);
    }
}
