//! `borg prune`.

use rborg::errors::{Error, Result};

use super::Context;
use crate::cli::PruneArgs;

pub fn run(_ctx: &Context, _args: &PruneArgs) -> Result<()> {
    Err(Error::generic("prune is not implemented yet"))
}
