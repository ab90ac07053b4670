//! `borg mount`.

use rborg::errors::{Error, Result};

use super::Context;
use crate::cli::MountArgs;

pub fn run(_ctx: &Context, _args: &MountArgs) -> Result<()> {
    Err(Error::generic("mount is not implemented yet"))
}
