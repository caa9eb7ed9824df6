//! Every flag and argument of every subcommand explains itself in `--help`.

use clap::CommandFactory;

use crate::app::Cli;

/// `path: arg` for each argument without help text, walking the whole command tree.
fn missing_help(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
    for arg in cmd.get_arguments() {
        let builtin = matches!(arg.get_id().as_str(), "help" | "version");
        if !builtin && arg.get_help().is_none() && arg.get_long_help().is_none() {
            out.push(format!("{path}: {}", arg.get_id()));
        }
    }
    for sub in cmd.get_subcommands() {
        if sub.get_about().is_none() && sub.get_long_about().is_none() {
            out.push(format!(
                "{path} {}: (the subcommand itself)",
                sub.get_name()
            ));
        }
        missing_help(sub, &format!("{path} {}", sub.get_name()), out);
    }
}

#[test]
fn every_flag_and_subcommand_has_help_text() {
    let mut missing = Vec::new();
    missing_help(&Cli::command(), "ferry", &mut missing);
    assert!(
        missing.is_empty(),
        "{} without help text (add a /// doc comment):\n{}",
        missing.len(),
        missing.join("\n")
    );
}
