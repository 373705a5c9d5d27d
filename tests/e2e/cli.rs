//! Command-line basics: help, version, usage errors.

use driftwatch_tests::{Agent, EXIT_CLEAN, EXIT_ERROR};

const EXIT_CODE_LINES: [&str; 5] = [
    "0  no drift",
    "1  drift found",
    "2  error",
    "3  no drift found, but some subjects could not be read",
    "4  the baseline failed its integrity check",
];

fn assert_documents_exit_codes(args: &[&str]) {
    let run = Agent::new().args(args).run();
    run.expect(EXIT_CLEAN).stdout_has("Exit codes");
    for line in EXIT_CODE_LINES {
        run.stdout_has(line);
    }
}

#[test]
fn help_documents_exit_codes() {
    assert_documents_exit_codes(&["--help"]);
}

#[test]
fn check_help_documents_exit_codes() {
    assert_documents_exit_codes(&["check", "--help"]);
    Agent::new()
        .args(["check", "--help"])
        .run()
        .stdout_has("--paranoid")
        .stdout_has("--path")
        .stdout_has("--db");
}

#[test]
fn baseline_init_help_works() {
    Agent::new()
        .args(["baseline", "init", "--help"])
        .run()
        .expect(EXIT_CLEAN)
        .stdout_has("--force")
        .stdout_has("--path");
}

#[test]
fn baseline_init_help_documents_exit_codes() {
    assert_documents_exit_codes(&["baseline", "init", "--help"]);
}

#[test]
fn version_prints_name_and_version() {
    let run = Agent::new().arg("--version").run();
    run.expect(EXIT_CLEAN)
        .stdout_has("driftwatch-agent ")
        .stdout_has(env!("CARGO_PKG_VERSION"));
}

#[test]
fn unknown_subcommand_is_a_usage_error() {
    Agent::new()
        .arg("frobnicate")
        .run()
        .expect(EXIT_ERROR)
        .stderr_has("frobnicate");
}

#[test]
fn missing_subcommand_is_a_usage_error() {
    let run = Agent::new().run();
    run.expect(EXIT_ERROR).stderr_has("Usage");
    assert!(run.stdout.is_empty(), "{run}");
}
