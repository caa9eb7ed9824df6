//! `ferry config check`: load the configuration as every command does and print it, key by
//! key, with where each value came from. Secrets are masked.

use crate::{
    app::Ctx,
    exit::{Code, Result},
    output,
};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Validate the configuration and print every effective value (secrets masked) with its
    /// source: file, default, or the environment variable that set it.
    Check,
}

pub fn run(ctx: &Ctx, command: Command) -> Result<Code> {
    match command {
        Command::Check => {
            let settings = ctx.config.effective();
            if ctx.json {
                output::json(&settings);
                return Ok(Code::Ok);
            }
            let mut t = output::table(&["key", "value", "source"]);
            for s in settings {
                t.add_row(vec![s.key, s.value, s.source]);
            }
            println!("{t}");
            println!("configuration is valid");
            Ok(Code::Ok)
        }
    }
}
