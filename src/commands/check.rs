//! `borg check`.

use rborg::errors::{Error, Result};

use super::Context;
use crate::cli::CheckArgs;

pub fn run(_ctx: &Context, _args: &CheckArgs) -> Result<()> {
    Err(Error::generic("check is not implemented yet"))
}
