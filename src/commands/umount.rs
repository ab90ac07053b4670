//! `borg umount`.

use rborg::errors::{Error, Result};

use super::Context;
use crate::cli::UmountArgs;

pub fn run(_ctx: &Context, _args: &UmountArgs) -> Result<()> {
    Err(Error::generic("umount is not implemented yet"))
}
