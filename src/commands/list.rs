//! `borg list`.

use rborg::errors::{Error, Result};

use super::Context;
use crate::cli::ListArgs;

pub fn run(_ctx: &Context, _args: &ListArgs) -> Result<()> {
    Err(Error::generic("list is not implemented yet"))
}
