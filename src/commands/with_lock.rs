//! `borg with-lock`.

use rborg::errors::{Error, Result};

use super::Context;
use crate::cli::WithLockArgs;

pub fn run(_ctx: &Context, _args: &WithLockArgs) -> Result<()> {
    Err(Error::generic("with-lock is not implemented yet"))
}
