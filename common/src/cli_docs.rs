//! Manual pages and shell completions rendered from a binary's own clap definition, and the
//! check that every argument and subcommand of it carries help text.
//!
//! Rendering is pure: the files are returned in memory, laid out as under `/usr/share`;
//! [`write`] puts them under the `DIR` of each binary's `generate-docs DIR` (this module's
//! one write), and `scripts/build-deb.sh` packages them. Rendering
//! from the parser itself keeps the pages and completions true to it. `generate-docs` is
//! recognised before clap parses ([`requested_dir`]), not declared as a hidden
//! subcommand: clap_complete would still offer a hidden one.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::Command;
use clap_complete::Shell;

/// One generated file: its path relative to the output directory, and its bytes.
#[derive(Debug)]
pub struct DocFile {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
}

/// The `DIR` of a command line that is exactly `BIN generate-docs DIR`.
pub fn requested_dir(args: impl IntoIterator<Item = OsString>) -> Option<PathBuf> {
    let mut args = args.into_iter().skip(1);
    match (args.next(), args.next(), args.next()) {
        (Some(command), Some(dir), None) if command == "generate-docs" => Some(dir.into()),
        _ => None,
    }
}

/// Renders `cmd`'s pages in man `section` and its completions ([`render`]) and writes them
/// under `dir`, making the directories they need.
pub fn write(cmd: Command, section: &str, dir: &Path) -> std::io::Result<()> {
    for file in render(cmd, section) {
        let path = dir.join(&file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|err| failed("create", parent, err))?;
        }
        std::fs::write(&path, &file.bytes).map_err(|err| failed("write", &path, err))?;
    }
    Ok(())
}

fn failed(doing: &str, path: &Path, err: std::io::Error) -> std::io::Error {
    std::io::Error::new(
        err.kind(),
        format!("cannot {doing} {}: {err}", path.display()),
    )
}

/// The manual pages (one for the binary, one for every visible subcommand, in `section`:
/// `man/man{section}/NAME.{section}`) and the bash, zsh and fish completions of `cmd`.
pub fn render(cmd: Command, section: &str) -> Vec<DocFile> {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let name = cmd.get_name().to_owned();
    let source = format!("driftwatch {}", cmd.get_version().unwrap_or_default());
    let mut files = Vec::new();
    man_pages(&cmd, section, &source, &mut files);
    for (shell, path) in [
        (Shell::Bash, format!("bash-completion/completions/{name}")),
        (Shell::Zsh, format!("zsh/vendor-completions/_{name}")),
        (
            Shell::Fish,
            format!("fish/vendor_completions.d/{name}.fish"),
        ),
    ] {
        let mut bytes = Vec::new();
        clap_complete::generate(shell, &mut cmd, name.clone(), &mut bytes);
        files.push(DocFile {
            path: PathBuf::from(path),
            bytes,
        });
    }
    files
}

fn man_pages(cmd: &Command, section: &str, source: &str, files: &mut Vec<DocFile>) {
    let mut page = cmd.clone();
    // A page's NAME line needs a description (whatis, apropos); the binaries' tests keep
    // help text on every subcommand, this only keeps a missing one from breaking the page.
    if page.get_about().is_none() {
        let words = page
            .get_display_name()
            .unwrap_or(page.get_name())
            .replace('-', " ");
        page = page.about(words);
    }
    let man = clap_mangen::Man::new(page)
        .section(section)
        .source(source)
        .manual("driftwatch");
    let mut bytes = Vec::new();
    man.render(&mut bytes)
        .expect("rendering into memory cannot fail");
    files.push(DocFile {
        path: PathBuf::from(format!("man/man{section}/{}", man.get_filename())),
        bytes,
    });
    for sub in cmd.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        man_pages(sub, section, source, files);
    }
}

/// Every visible subcommand without an about text and every visible argument without a
/// help text, each named by its command path (`driftctl drift list: --status`).
pub fn missing_help(cmd: Command) -> Vec<String> {
    // clap's own `help` subcommand is not ours to document (the pages leave it out too).
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut missing = Vec::new();
    collect_missing(&cmd, cmd.get_name(), &mut missing);
    missing
}

fn collect_missing(cmd: &Command, path: &str, missing: &mut Vec<String>) {
    for arg in cmd.get_arguments().filter(|arg| !arg.is_hide_set()) {
        if arg.get_help().is_none() && arg.get_long_help().is_none() {
            let shown = match arg.get_long() {
                Some(long) => format!("--{long}"),
                None => arg.get_id().to_string().to_uppercase(),
            };
            missing.push(format!("{path}: {shown}"));
        }
    }
    for sub in cmd.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        let sub_path = format!("{path} {}", sub.get_name());
        if sub.get_about().is_none() && sub.get_long_about().is_none() {
            missing.push(format!("{sub_path}: the subcommand"));
        }
        collect_missing(sub, &sub_path, missing);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Arg;

    fn sample() -> Command {
        Command::new("tool")
            .version("1.2.3")
            .about("A tool.")
            .arg(Arg::new("config").long("config").help("The file."))
            .subcommand(
                Command::new("show")
                    .about("Show it.")
                    .arg(Arg::new("subject").help("What to show.")),
            )
            .subcommand(Command::new("secret").hide(true))
    }

    #[test]
    fn renders_a_page_per_visible_command_and_three_completions() {
        let files = render(sample(), "8");
        let paths: Vec<String> = files.iter().map(|f| f.path.display().to_string()).collect();
        assert_eq!(
            paths,
            [
                "man/man8/tool.8",
                "man/man8/tool-show.8",
                "bash-completion/completions/tool",
                "zsh/vendor-completions/_tool",
                "fish/vendor_completions.d/tool.fish",
            ]
        );
        let page = String::from_utf8(files[0].bytes.clone()).unwrap();
        assert!(page.starts_with(".ie \\n(.g .ds Aq"), "{page}");
        assert!(
            page.contains(".TH tool 8  \"driftwatch 1.2.3\" driftwatch"),
            "{page}"
        );
        assert!(page.contains("The file."), "{page}");
        assert!(
            !page.contains("secret"),
            "a hidden subcommand is not documented"
        );
        let bash = String::from_utf8(files[2].bytes.clone()).unwrap();
        assert!(bash.contains("complete -F _tool"), "{bash}");
        assert!(bash.contains("--config"), "{bash}");
    }

    #[test]
    fn generate_docs_is_recognised_only_as_the_whole_command_line() {
        let args = |list: &[&str]| list.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            requested_dir(args(&["tool", "generate-docs", "out"])),
            Some(PathBuf::from("out"))
        );
        assert_eq!(requested_dir(args(&["tool", "generate-docs"])), None);
        assert_eq!(
            requested_dir(args(&["tool", "generate-docs", "a", "b"])),
            None
        );
        assert_eq!(
            requested_dir(args(&["tool", "check", "generate-docs"])),
            None
        );
        assert_eq!(requested_dir(args(&["tool"])), None);
    }

    #[test]
    fn missing_help_names_each_argument_and_subcommand_without_text() {
        assert_eq!(missing_help(sample()), Vec::<String>::new());
        let bare = sample()
            .arg(Arg::new("quiet").long("quiet"))
            .subcommand(Command::new("list").arg(Arg::new("limit")));
        assert_eq!(
            missing_help(bare),
            [
                "tool: --quiet",
                "tool list: the subcommand",
                "tool list: LIMIT"
            ]
        );
    }
}
