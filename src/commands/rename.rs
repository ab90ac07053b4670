//! `borg rename`.

use rborg::errors::{Error, Result};

use super::Context;
use crate::cli::RenameArgs;

pub fn run(_ctx: &Context, _args: &RenameArgs) -> Result<()> {
    Err(Error::generic("rename is not implemented yet"))
}
