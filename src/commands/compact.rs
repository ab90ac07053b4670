//! `borg compact`.

use rborg::errors::{Error, Result};

use super::Context;
use crate::cli::CompactArgs;

pub fn run(_ctx: &Context, _args: &CompactArgs) -> Result<()> {
    Err(Error::generic("compact is not implemented yet"))
}
