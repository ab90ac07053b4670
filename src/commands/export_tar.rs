//! `borg export-tar`.

use rborg::errors::{Error, Result};

use super::Context;
use crate::cli::ExportTarArgs;

pub fn run(_ctx: &Context, _args: &ExportTarArgs) -> Result<()> {
    Err(Error::generic("export-tar is not implemented yet"))
}
