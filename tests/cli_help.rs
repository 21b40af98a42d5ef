//! Every argument of every (sub)command has a help line: a newcomer reading `--help` never meets
//! a bare `--config <CONFIG>` or `<PATHS>...`.

use clap::CommandFactory;
use fapi_guard::cli::Cli;

/// Walks the command tree and names every argument without a description.
fn undocumented(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
    let here = format!("{path} {}", cmd.get_name());
    for arg in cmd.get_arguments() {
        // clap's own --help / --version carry their help text already.
        if matches!(arg.get_id().as_str(), "help" | "version") {
            continue;
        }
        let described = arg
            .get_help()
            .or_else(|| arg.get_long_help())
            .is_some_and(|h| !h.to_string().trim().is_empty());
        if !described {
            out.push(format!("{here}: {}", arg.get_id()));
        }
    }
    for sub in cmd.get_subcommands() {
        if cmd.get_subcommands().count() > 0 && sub.get_name() == "help" {
            continue;
        }
        if sub.get_about().is_none() {
            out.push(format!(
                "{here} {}: subcommand without description",
                sub.get_name()
            ));
        }
        undocumented(sub, &here, out);
    }
}

#[test]
fn every_argument_of_every_command_has_a_description() {
    let cmd = Cli::command();
    cmd.clone().debug_assert();
    let mut missing = Vec::new();
    undocumented(&cmd, "", &mut missing);
    assert!(
        missing.is_empty(),
        "arguments without help text:\n{}",
        missing.join("\n")
    );
}

/// The rendered `--help` of every subcommand, as a user sees it: each argument line carries text
/// after the argument's name.
#[test]
fn rendered_help_has_no_bare_argument_lines() {
    fn walk(cmd: &mut clap::Command, path: String, out: &mut Vec<String>) {
        let help = cmd.render_long_help().to_string();
        let mut in_section = false;
        let mut lines = help.lines().peekable();
        while let Some(line) = lines.next() {
            if line.ends_with(':') && !line.starts_with(' ') {
                in_section = matches!(line, "Arguments:" | "Options:");
                continue;
            }
            let trimmed = line.trim_start();
            let indent = line.len() - trimmed.len();
            // Long help puts the description on the following, more indented line.
            if in_section
                && indent == 2
                && (trimmed.starts_with('-')
                    || trimmed.starts_with('<')
                    || trimmed.starts_with('['))
            {
                // Short form: `--config <CONFIG>  Path of ...` on one line.
                let inline = trimmed
                    .split_once("  ")
                    .is_some_and(|(_, text)| !text.trim().is_empty());
                let next_described = lines
                    .peek()
                    .is_some_and(|n| n.len() - n.trim_start().len() > 2 && !n.trim().is_empty());
                if !inline && !next_described {
                    out.push(format!("{path}: {trimmed}"));
                }
            }
        }
        let names: Vec<String> = cmd
            .get_subcommands()
            .map(|s| s.get_name().to_owned())
            .collect();
        for name in names {
            if name == "help" {
                continue;
            }
            if let Some(sub) = cmd.find_subcommand_mut(&name) {
                walk(sub, format!("{path} {name}"), out);
            }
        }
    }
    let mut cmd = Cli::command();
    cmd.build();
    let mut bare = Vec::new();
    walk(&mut cmd, "fapi-guard".into(), &mut bare);
    assert!(
        bare.is_empty(),
        "help lines without description:\n{}",
        bare.join("\n")
    );
}
