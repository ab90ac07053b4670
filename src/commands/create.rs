//! `borg create`.

use rborg::errors::{Error, Result};

use super::Context;
use crate::cli::CreateArgs;

pub fn run(_ctx: &Context, _args: &CreateArgs) -> Result<()> {
    Err(Error::generic("create is not implemented yet"))
}
