//! `borg serve`.

use rborg::errors::{Error, Result};

use super::Context;
use crate::cli::ServeArgs;

pub fn run(_ctx: &Context, _args: &ServeArgs) -> Result<()> {
    Err(Error::generic("serve is not implemented yet"))
}
