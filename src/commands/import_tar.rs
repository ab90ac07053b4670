//! `borg import-tar`.

use rborg::errors::{Error, Result};

use super::Context;
use crate::cli::ImportTarArgs;

pub fn run(_ctx: &Context, _args: &ImportTarArgs) -> Result<()> {
    Err(Error::generic("import-tar is not implemented yet"))
}
