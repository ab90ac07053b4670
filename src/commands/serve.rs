//! `borg serve`: serve repositories to a client over stdin/stdout (the engine is
//! [`rborg::remote::server`]).

use rborg::errors::Result;
use rborg::remote::{server, ServeOptions};

use super::Context;
use crate::cli::ServeArgs;

pub fn run(_ctx: &Context, args: &ServeArgs) -> Result<()> {
    server::serve_stdio(ServeOptions {
        restrict_to_paths: args.restrict_to_paths.clone(),
        restrict_to_repositories: args.restrict_to_repositories.clone(),
        append_only: args.append_only,
        storage_quota: args.storage_quota,
    })
}
