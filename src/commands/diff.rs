//! `borg diff`.

use rborg::errors::{Error, Result};

use super::Context;
use crate::cli::DiffArgs;

pub fn run(_ctx: &Context, _args: &DiffArgs) -> Result<()> {
    Err(Error::generic("diff is not implemented yet"))
}
