//! The configuration reference (`docs/configuration.md`, and the command table in README.md),
//! rendered from the clap definitions so that it cannot drift from the binary. The test below
//! fails when either file is stale; `UPDATE_GOLDEN=1` rewrites them.

use clap::{Arg, ArgAction, Command};

/// Where the README's generated part starts and ends.
pub const README_START: &str = "<!-- cli-reference:start -->";
pub const README_END: &str = "<!-- cli-reference:end -->";
const DOC: &str = "docs/configuration.md";

/// Table cells stay on one line and cannot end the cell early.
fn cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

fn flag(arg: &Arg) -> String {
    let value = || {
        arg.get_value_names()
            .and_then(|v| v.first())
            .map(ToString::to_string)
            .unwrap_or_else(|| arg.get_id().as_str().to_uppercase())
    };
    if arg.is_positional() {
        return format!("`<{}>`", value());
    }
    let mut names = Vec::new();
    if let Some(long) = arg.get_long() {
        names.push(format!("--{long}"));
    }
    if let Some(short) = arg.get_short() {
        names.push(format!("-{short}"));
    }
    let takes_value = arg.get_action().takes_values();
    let mut text = names.join(", ");
    if takes_value {
        text.push_str(&format!(" <{}>", value()));
    }
    format!("`{text}`")
}

fn help(arg: &Arg) -> String {
    let mut text = arg.get_help().map(ToString::to_string).unwrap_or_default();
    // clap drops a doc comment's final period; notes appended below need it back.
    let mut add = |note: String| {
        if !text.is_empty() && !text.ends_with('.') {
            text.push('.');
        }
        text.push(' ');
        text.push_str(&note);
    };
    let values: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| format!("`{}`", v.get_name()))
        .collect();
    if arg.get_action().takes_values() && !values.is_empty() {
        add(format!("One of {}.", values.join(", ")));
    }
    let said = arg
        .get_help()
        .is_some_and(|h| h.to_string().contains("repeatable"));
    if matches!(arg.get_action(), ArgAction::Append) && !said {
        add("Repeatable.".into());
    }
    if arg.is_required_set() {
        add("Required.".into());
    }
    cell(&text)
}

fn default(arg: &Arg) -> String {
    if !arg.get_action().takes_values() {
        return String::new();
    }
    let values: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    if values.is_empty() {
        String::new()
    } else {
        format!("`{}`", cell(&values.join(",")))
    }
}

fn arguments(cmd: &Command) -> Vec<&Arg> {
    cmd.get_arguments()
        .filter(|a| !a.is_hide_set() && !matches!(a.get_id().as_str(), "help" | "version"))
        .collect()
}

fn table(args: &[&Arg]) -> String {
    let mut out =
        String::from("| flag | environment | default | description |\n|---|---|---|---|\n");
    for arg in args {
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            flag(arg),
            arg.get_env()
                .map(|e| format!("`{}`", e.to_string_lossy()))
                .unwrap_or_default(),
            default(arg),
            help(arg)
        ));
    }
    out
}

fn subcommands(cmd: &Command) -> impl Iterator<Item = &Command> {
    cmd.get_subcommands().filter(|c| c.get_name() != "help")
}

fn section(cmd: &Command, path: &str, out: &mut String) {
    out.push_str(&format!("\n## `{path}`\n\n"));
    if let Some(about) = cmd.get_long_about().or(cmd.get_about()) {
        out.push_str(&format!("{about}\n"));
    }
    let args = arguments(cmd);
    if !args.is_empty() {
        out.push('\n');
        out.push_str(&table(&args));
    }
    if let Some(after) = cmd.get_after_help() {
        out.push_str(&format!(
            "\n```text\n{}\n```\n",
            after.to_string().trim_end()
        ));
    }
    let children: Vec<&Command> = subcommands(cmd).collect();
    if !children.is_empty() && cmd.get_arguments().all(|a| a.get_id() == "help") {
        out.push_str("\nSubcommands:\n\n");
        for c in &children {
            let child = format!("{path} {}", c.get_name());
            out.push_str(&format!(
                "- [`{child}`](#{}): {}\n",
                anchor(&child),
                cell(&c.get_about().map(ToString::to_string).unwrap_or_default())
            ));
        }
    }
    for c in children {
        section(c, &format!("{path} {}", c.get_name()), out);
    }
}

/// GitHub's heading anchor for a heading that is just `path` in backticks.
fn anchor(path: &str) -> String {
    path.replace(' ', "-")
}

/// `docs/configuration.md`.
pub fn markdown(root: &Command) -> String {
    let name = root.get_name();
    let mut out = format!(
        "# Configuration reference\n\n\
         Every command, flag, environment variable and default of `{name}` {}, generated from \
         its command-line definitions (`host/src/cli/`): do not edit this file; \
         `UPDATE_GOLDEN=1 cargo test -p vk-stackpath --bin vk-stackpath reference` rewrites it. \
         A flag's environment variable is read when the flag is not given. \
         `{name} <command> --help` prints the same.\n\n\
         ## Global flags\n\nAccepted by every command.\n\n",
        root.get_version().unwrap_or_default()
    );
    out.push_str(&table(&arguments(root)));
    if let Some(after) = root.get_after_help() {
        out.push_str(&format!(
            "\n```text\n{}\n```\n",
            after.to_string().trim_end()
        ));
    }
    for c in subcommands(root) {
        section(c, &format!("{name} {}", c.get_name()), &mut out);
    }
    out
}

/// The README's generated part: one row per command, linking to its section.
pub fn readme_block(root: &Command) -> String {
    let name = root.get_name();
    let mut out = format!(
        "{README_START}\n\
         Every flag with its environment variable and default: [{DOC}]({DOC}) (generated from the \
         command-line definitions).\n\n| command | what it does |\n|---|---|\n"
    );
    fn rows(cmd: &Command, path: &str, out: &mut String) {
        for c in subcommands(cmd) {
            let child = format!("{path} {}", c.get_name());
            if subcommands(c).next().is_some() {
                rows(c, &child, out);
                continue;
            }
            out.push_str(&format!(
                "| [`{child}`]({DOC}#{}) | {} |\n",
                anchor(&child),
                cell(&c.get_about().map(ToString::to_string).unwrap_or_default())
            ));
        }
    }
    rows(root, name, &mut out);
    out.push_str(README_END);
    out
}

/// `readme` with the text between the markers replaced by `block` (markers included);
/// `None` when the markers are missing.
pub fn splice_readme(readme: &str, block: &str) -> Option<String> {
    let start = readme.find(README_START)?;
    let end = readme[start..].find(README_END)? + start + README_END.len();
    Some(format!("{}{block}{}", &readme[..start], &readme[end..]))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use clap::CommandFactory as _;

    use super::*;

    fn workspace() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    fn root() -> Command {
        super::super::Cli::command()
    }

    /// docs/configuration.md and README's command table match the binary's flags.
    #[test]
    fn configuration_reference_is_current() {
        let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
        let root = root();
        let doc_path = workspace().join(DOC);
        let doc = markdown(&root);
        let readme_path = workspace().join("README.md");
        let readme = std::fs::read_to_string(&readme_path).expect("README.md is readable");
        let spliced = splice_readme(&readme, &readme_block(&root))
            .unwrap_or_else(|| panic!("README.md lacks the markers {README_START} … {README_END}"));
        if update {
            std::fs::write(&doc_path, &doc).expect("writing docs/configuration.md");
            std::fs::write(&readme_path, &spliced).expect("writing README.md");
            return;
        }
        let current = std::fs::read_to_string(&doc_path).unwrap_or_default();
        assert!(
            current == doc,
            "{DOC} is stale: run `UPDATE_GOLDEN=1 cargo test -p vk-stackpath --bin vk-stackpath \
             reference` and commit the result"
        );
        assert!(
            readme == spliced,
            "README.md's command table is stale: run `UPDATE_GOLDEN=1 cargo test -p \
             vk-stackpath --bin vk-stackpath reference` and commit the result"
        );
    }

    #[test]
    fn every_flag_env_and_default_is_rendered() {
        let doc = markdown(&root());
        for needle in [
            "## `vk-stackpath policy diff`",
            "| `--policy-timeout <POLICY_TIMEOUT>` |  | `1s` |",
            "| `--kubelet-port <KUBELET_PORT>` | `KUBELET_PORT` | `10250` |",
            "| `--log-format <LOG_FORMAT>` | `VK_LOG_FORMAT` | `text` | Log format on stderr. One of `text`, `json`. |",
            "| `--node-label <NODE_LABELS>` |",
            "Repeatable.",
            "| `<FILE>` |",
            "  3  the diff could not be made",
        ] {
            assert!(doc.contains(needle), "`{needle}` missing from:\n{doc}");
        }
        // Every long flag of every command appears.
        fn walk(cmd: &Command, doc: &str) {
            for a in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
                if let Some(long) = a.get_long().filter(|l| *l != "help" && *l != "version") {
                    assert!(doc.contains(&format!("`--{long}")), "--{long} missing");
                }
            }
            for c in cmd.get_subcommands() {
                walk(c, doc);
            }
        }
        walk(&root(), &doc);
    }

    #[test]
    fn splice_keeps_the_rest_of_the_readme() {
        let readme = format!("a\n{README_START}\nold\n{README_END}\nb\n");
        let out = splice_readme(&readme, &format!("{README_START}new{README_END}")).unwrap();
        assert_eq!(out, format!("a\n{README_START}new{README_END}\nb\n"));
        assert_eq!(splice_readme("no markers", "x"), None);
    }
}
