//! `borg recreate`.

use rborg::errors::{Error, Result};

use super::Context;
use crate::cli::RecreateArgs;

pub fn run(_ctx: &Context, _args: &RecreateArgs) -> Result<()> {
    Err(Error::generic("recreate is not implemented yet"))
}
