//! State beyond files (`[sources]`), read from a fixture system root so the
//! test can change packages and accounts without touching this host.

use std::path::{Path, PathBuf};

use driftwatch_tests::{Agent, EXIT_CLEAN, EXIT_DRIFT, HostDir, p};
use serde_json::Value;

const PASSWD: &str =
    "root:x:0:0:root:/root:/bin/bash\nbob:x:1001:1001:Bob:/home/bob:/usr/sbin/nologin\n";
const GROUP: &str = "root:x:0:\nsudo:x:27:\n";
const DPKG: &str = "Package: nginx\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.22.1-9\n\n\
                    Package: openssh-server\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1:9.2p1-2\n";

/// A system root with accounts and a dpkg database, and a policy that reads it.
fn sysroot(host: &HostDir) -> (PathBuf, PathBuf) {
    let root = host.root().join("sysroot");
    write(&root, "etc/passwd", PASSWD);
    write(&root, "etc/group", GROUP);
    write(&root, "var/lib/dpkg/status", DPKG);
    host.write("app.conf", "x = 1\n");
    let config = host.root().join("agent.toml");
    let text = format!(
        "state_dir = \"{state}\"\n[sources]\nenabled = [\"package\", \"user\"]\nroot = \"{root}\"\n\
         [[rule]]\npath = \"{tree}\"\n",
        state = p(&host.state().join("agent")),
        root = p(&root),
        tree = p(host.tree()),
    );
    std::fs::write(&config, text).unwrap();
    (root, config)
}

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn agent(config: &Path, args: &[&str]) -> Agent {
    Agent::new().arg("--config").arg(config).args(args)
}

fn state_drifts(report: &Value) -> Vec<(String, String)> {
    report["state_drifts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["subject"].as_str().unwrap().to_owned(),
                c["summary"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn packages_and_accounts_are_baselined_checked_and_accepted() {
    let host = HostDir::new();
    let (root, config) = sysroot(&host);
    let init = agent(&config, &["baseline", "init", "--json", "--quiet"]).run();
    init.expect(EXIT_CLEAN);
    // 2 packages, 2 users, 2 groups.
    assert_eq!(init.json()["state_subjects"], 6, "{init}");
    agent(&config, &["check", "--quiet"])
        .run()
        .expect(EXIT_CLEAN);

    // An upgrade and a second root account.
    write(
        &root,
        "var/lib/dpkg/status",
        &DPKG.replace("1.22.1-9", "1.24.0-1"),
    );
    write(
        &root,
        "etc/passwd",
        &format!("{PASSWD}eve:x:0:0::/home/eve:/bin/bash\n"),
    );
    let run = agent(&config, &["check", "--json", "--quiet"]).run();
    run.expect(EXIT_DRIFT);
    assert_eq!(
        state_drifts(&run.json()),
        [
            (
                "package:nginx".to_owned(),
                "package nginx: version 1.22.1-9 -> 1.24.0-1".to_owned()
            ),
            (
                "user:eve".to_owned(),
                "user eve added with uid 0, gid 0, home /home/eve, shell /bin/bash".to_owned()
            ),
        ],
        "{run}"
    );
    agent(&config, &["check", "--quiet"])
        .run()
        .stdout_has("user eve added with uid 0");

    // Accepting the upgrade leaves the account unexplained.
    agent(
        &config,
        &[
            "baseline",
            "accept",
            "package:nginx",
            "--reason",
            "CHG-42 nginx upgrade",
            "--quiet",
        ],
    )
    .run()
    .expect(EXIT_CLEAN)
    .stdout_has("accepted changed     package:nginx");
    let run = agent(&config, &["check", "--json", "--quiet"]).run();
    run.expect(EXIT_DRIFT);
    let remaining: Vec<String> = state_drifts(&run.json())
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(remaining, ["user:eve"], "{run}");

    // A whole namespace at once; the history keeps both decisions.
    agent(
        &config,
        &[
            "baseline",
            "accept",
            "user:",
            "--reason",
            "INC-7 approved after the fact",
            "--quiet",
        ],
    )
    .run()
    .expect(EXIT_CLEAN);
    agent(&config, &["check", "--quiet"])
        .run()
        .expect(EXIT_CLEAN);
    agent(&config, &["baseline", "show"])
        .run()
        .stdout_has("CHG-42 nginx upgrade")
        .stdout_has("INC-7 approved after the fact");
}

#[test]
fn a_missing_source_is_noted_not_fatal() {
    let host = HostDir::new();
    let (root, config) = sysroot(&host);
    std::fs::remove_file(root.join("var/lib/dpkg/status")).unwrap();
    let init = agent(&config, &["baseline", "init", "--json", "--quiet"]).run();
    init.expect(EXIT_CLEAN);
    let report = init.json();
    assert_eq!(report["state_subjects"], 4, "{init}");
    assert!(
        report["sources_unavailable"][0]
            .as_str()
            .unwrap()
            .contains("package"),
        "{init}"
    );
}
