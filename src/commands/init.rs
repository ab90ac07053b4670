//! `borg init`.

use rborg::errors::{Error, Result};

use super::Context;
use crate::cli::InitArgs;

pub fn run(_ctx: &Context, _args: &InitArgs) -> Result<()> {
    Err(Error::generic("init is not implemented yet"))
}
