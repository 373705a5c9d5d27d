//! The man pages and shell completions the packages install: each binary writes them
//! with its undocumented `generate-docs DIR`, from its own command line, with no configuration,
//! token or collector (scripts/build-deb.sh runs it before `cargo deb`).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use driftwatch_tests::agent_bin;
use driftwatch_tests::collector::{collector_bin, driftctl_bin, run};

/// Runs `BIN generate-docs DIR` with a configuration path that does not exist.
fn generate(bin: &Path, dir: &Path) {
    let mut cmd = Command::new(bin);
    cmd.arg("generate-docs")
        .arg(dir)
        .env("DRIFTWATCH_CONFIG", dir.join("absent.toml"))
        .env("DRIFTWATCH_COLLECTOR_CONFIG", dir.join("absent.toml"))
        .env_remove("DRIFTWATCH_TOKEN");
    run(cmd, Duration::from_secs(30)).expect(0);
}

fn read(dir: &Path, path: &str) -> String {
    std::fs::read_to_string(dir.join(path))
        .unwrap_or_else(|e| panic!("{path} was not generated: {e}"))
}

#[track_caller]
fn assert_docs(bin: &Path, name: &str, section: &str, subcommand: &str, option: &str) {
    let dir = tempfile::tempdir().unwrap();
    generate(bin, dir.path());
    let page = read(dir.path(), &format!("man/man{section}/{name}.{section}"));
    assert!(page.contains(&format!(".TH {name} {section}")), "{page}");
    assert!(
        page.contains(subcommand),
        "the page lists {subcommand}: {page}"
    );
    let sub_page = read(
        dir.path(),
        &format!("man/man{section}/{name}-{subcommand}.{section}"),
    );
    // roff escapes the dashes of option names.
    assert!(sub_page.contains(&option.replace('-', "\\-")), "{sub_page}");
    for path in [
        format!("bash-completion/completions/{name}"),
        format!("zsh/vendor-completions/_{name}"),
        format!("fish/vendor_completions.d/{name}.fish"),
    ] {
        let completion = read(dir.path(), &path);
        assert!(completion.contains(subcommand), "{path}: {completion}");
        assert!(
            !completion.contains("generate-docs"),
            "{path} offers generate-docs"
        );
    }
    let pages = std::fs::read_dir(dir.path().join(format!("man/man{section}"))).unwrap();
    for page in pages {
        let file = page.unwrap().file_name().into_string().unwrap();
        assert!(
            !file.contains("generate-docs"),
            "{file} documents generate-docs"
        );
    }
}

#[test]
fn each_binary_writes_its_man_pages_and_completions() {
    assert_docs(
        agent_bin(),
        "driftwatch-agent",
        "8",
        "enroll",
        "--token-file",
    );
    assert_docs(
        collector_bin(),
        "driftwatch-collector",
        "8",
        "serve",
        "--port-file",
    );
    assert_docs(driftctl_bin(), "driftctl", "1", "verify", "--public-key");
}

#[test]
fn generate_docs_refuses_a_directory_it_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "not a directory").unwrap();
    let mut cmd = Command::new(driftctl_bin());
    cmd.arg("generate-docs").arg(blocker.join("docs"));
    let outcome = run(cmd, Duration::from_secs(30));
    outcome.expect(2).stderr_has("cannot create");
}
