//! rborg: a drop-in reimplementation of BorgBackup 1.x — the engine.
//!
//! The binary (`src/main.rs`) only parses arguments and calls [`commands`]; everything else
//! lives here. See `docs/design.md` for the module map.

pub mod archive;
pub mod bufpool;
pub mod cache;
pub mod chunker;
pub mod compress;
pub mod crypto;
pub mod errors;
pub mod fs;
pub mod hashindex;
pub mod location;
pub mod msgpack;
pub mod output;
pub mod paths;
pub mod patterns;
pub mod python;
pub mod remote;
pub mod repository;

#[cfg(test)]
pub(crate) mod testutil;

pub use errors::{Error, ErrorKind, Result};

/// The borg version whose behaviour rborg matches (frontends read it from `--version`).
pub const BORG_COMPAT_VERSION: &str = "1.4.5";
