//! `borg break-lock`.

use rborg::errors::{Error, Result};

use super::Context;
use crate::cli::BreakLockArgs;

pub fn run(_ctx: &Context, _args: &BreakLockArgs) -> Result<()> {
    Err(Error::generic("break-lock is not implemented yet"))
}
