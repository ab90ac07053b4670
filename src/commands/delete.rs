//! `borg delete`.

use rborg::errors::{Error, Result};

use super::Context;
use crate::cli::DeleteArgs;

pub fn run(_ctx: &Context, _args: &DeleteArgs) -> Result<()> {
    Err(Error::generic("delete is not implemented yet"))
}
