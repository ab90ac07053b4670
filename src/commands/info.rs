//! `borg info`.

use rborg::errors::{Error, Result};

use super::Context;
use crate::cli::InfoArgs;

pub fn run(_ctx: &Context, _args: &InfoArgs) -> Result<()> {
    Err(Error::generic("info is not implemented yet"))
}
