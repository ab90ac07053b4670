//! Remote repositories: borg 1.2/1.4's RPC protocol over ssh (remote-protocol.md).
//!
//! - [`codec`]: the msgpack stream, message shapes and error replies on the wire;
//! - [`client`]: [`RemoteRepository`], a [`crate::repository::Repository`] behind `borg serve`;
//! - [`server`]: `rborg serve`, serving a local repository to a borg client;
//! - [`exceptions`]: errors as exception classes and back.

pub mod client;
pub mod codec;
pub mod exceptions;
pub mod server;

pub use client::{OpenRequest, RemoteOptions, RemoteRepository};
pub use server::{RepositoryServer, ServeOptions};
