//! `borg config`.

use rborg::errors::{Error, Result};

use super::Context;
use crate::cli::ConfigArgs;

pub fn run(_ctx: &Context, _args: &ConfigArgs) -> Result<()> {
    Err(Error::generic("config is not implemented yet"))
}
