//! `borg debug …` (developer tools).

use rborg::errors::{Error, Result};

use super::Context;
use crate::cli::DebugArgs;

pub fn run(_ctx: &Context, _args: &DebugArgs) -> Result<()> {
    Err(Error::generic("debug commands are not implemented yet"))
}
