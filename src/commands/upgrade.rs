//! `borg upgrade`.

use rborg::errors::{Error, Result};

use super::Context;
use crate::cli::UpgradeArgs;

pub fn run(_ctx: &Context, _args: &UpgradeArgs) -> Result<()> {
    Err(Error::generic("upgrade is not implemented yet"))
}
