//! A full disk while writing the baseline: a clear error, nothing half-made
//! left behind, and the previous baseline untouched. Needs root to mount a
//! tiny tmpfs; elsewhere the tests say so and pass without checking.

use std::path::{Path, PathBuf};
use std::process::Command;

use driftwatch_tests::{Agent, EXIT_DRIFT, EXIT_ERROR, HostDir, is_root};

/// A 96 KiB tmpfs mounted for the duration of a test.
struct TinyDisk {
    dir: PathBuf,
}

impl TinyDisk {
    fn mount(host: &HostDir) -> Option<TinyDisk> {
        if !is_root() {
            eprintln!("skipped: mounting a tmpfs needs root");
            return None;
        }
        let dir = host.root().join("tiny");
        std::fs::create_dir(&dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=96k", "tmpfs"])
            .arg(&dir)
            .status()
            .unwrap();
        if !status.success() {
            eprintln!("skipped: mount is not permitted here");
            return None;
        }
        Some(TinyDisk { dir })
    }

    fn db(&self) -> PathBuf {
        self.dir.join("baseline.db")
    }

    fn files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

fn agent(host: &HostDir, db: &Path, args: &[&str]) -> Agent {
    Agent::new()
        .args(args)
        .arg("--path")
        .arg(host.tree())
        .arg("--db")
        .arg(db)
}

/// Enough entries that their records cannot fit in 96 KiB.
fn fill_tree(host: &HostDir, count: usize) {
    for i in 0..count {
        host.write(
            format!("d{}/file-with-a-long-name-{i:05}.conf", i % 40),
            "x\n",
        );
    }
}

#[test]
fn init_on_a_full_disk_fails_clearly_and_leaves_nothing() {
    let host = HostDir::new();
    let Some(disk) = TinyDisk::mount(&host) else {
        return;
    };
    fill_tree(&host, 3000);
    let run = agent(&host, &disk.db(), &["baseline", "init", "--quiet"]).run();
    run.expect(EXIT_ERROR).stderr_has("full");
    assert!(
        disk.files().is_empty(),
        "left behind: {:?}\n{run}",
        disk.files()
    );
}

#[test]
fn a_failed_reinit_keeps_the_previous_baseline() {
    let host = HostDir::new();
    let Some(disk) = TinyDisk::mount(&host) else {
        return;
    };
    host.write("small.conf", "a = 1\n");
    agent(&host, &disk.db(), &["baseline", "init", "--quiet"])
        .run()
        .expect(0);
    fill_tree(&host, 3000);
    agent(
        &host,
        &disk.db(),
        &["baseline", "init", "--force", "--quiet"],
    )
    .run()
    .expect(EXIT_ERROR)
    .stderr_has("previous baseline is unchanged");
    assert_eq!(disk.files(), ["baseline.db", "baseline.db.key"]);
    // The old baseline still verifies: the new files are drift against it, not an integrity failure.
    let check = agent(&host, &disk.db(), &["check", "--json", "--quiet"]).run();
    check.expect(EXIT_DRIFT);
    let report = check.json();
    assert_eq!(report["summary"]["removed"], 0, "{check}");
    assert!(
        report["summary"]["added"].as_u64().unwrap() >= 3000,
        "{check}"
    );
}
