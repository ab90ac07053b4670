//! `borg benchmark crud`.

use rborg::errors::{Error, Result};

use super::Context;
use crate::cli::BenchmarkArgs;

pub fn run(_ctx: &Context, _args: &BenchmarkArgs) -> Result<()> {
    Err(Error::generic("benchmark crud is not implemented yet"))
}
