//! `borg extract`.

use rborg::errors::{Error, Result};

use super::Context;
use crate::cli::ExtractArgs;

pub fn run(_ctx: &Context, _args: &ExtractArgs) -> Result<()> {
    Err(Error::generic("extract is not implemented yet"))
}
