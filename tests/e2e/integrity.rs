//! The baseline's keyed integrity check: tampering with the database or its
//! key outside driftwatch exits 4 (never 0 or 1: a forged baseline must not
//! pass for "no drift").

use driftwatch_tests::{EXIT_DRIFT, EXIT_ERROR, EXIT_INTEGRITY, HostDir, Run};

fn initialised() -> HostDir {
    let host = HostDir::new();
    host.write("etc/passwd", "root:x:0:0\n");
    host.write("etc/motd", "welcome\n");
    host.init();
    host
}

#[track_caller]
fn assert_integrity_failure(host: &HostDir) -> Run {
    let run = host.agent(["check"]).run();
    run.expect(EXIT_INTEGRITY);
    assert!(
        run.stdout.is_empty(),
        "no report from an untrusted baseline: {run}"
    );
    run
}

/// Replaces the first occurrence of `from` in the database with `to` (same length).
fn patch_db(host: &HostDir, from: &[u8], to: &[u8]) {
    assert_eq!(from.len(), to.len());
    let mut bytes = std::fs::read(host.db()).unwrap();
    let at = bytes
        .windows(from.len())
        .position(|w| w == from)
        .unwrap_or_else(|| panic!("{:?} not in the db", String::from_utf8_lossy(from)));
    bytes[at..at + to.len()].copy_from_slice(to);
    std::fs::write(host.db(), bytes).unwrap();
}

fn hex_to_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn another_valid_key_fails_integrity() {
    let host = initialised();
    let original = std::fs::read_to_string(host.key()).unwrap();
    let forged = "0123456789abcdef".repeat(4);
    assert_ne!(original.trim(), forged);
    std::fs::write(host.key(), format!("{forged}\n")).unwrap();
    assert_integrity_failure(&host).stderr_has("INTEGRITY");
    // show and accept refuse too.
    host.agent(["baseline", "show"])
        .run()
        .expect(EXIT_INTEGRITY)
        .stderr_has("INTEGRITY");
    host.agent(["baseline", "accept", "--reason", "x"])
        .arg(host.tree())
        .run()
        .expect(EXIT_INTEGRITY);
}

#[test]
fn missing_key_fails_integrity() {
    let host = initialised();
    std::fs::remove_file(host.key()).unwrap();
    assert_integrity_failure(&host)
        .stderr_has("missing")
        .stderr_has("baseline.db.key");
}

#[test]
fn malformed_key_fails_integrity() {
    let host = initialised();
    std::fs::write(host.key(), "not a key\n").unwrap();
    assert_integrity_failure(&host).stderr_has("invalid");
}

#[test]
fn garbage_database_fails_integrity() {
    let host = initialised();
    let garbage: Vec<u8> = (0..32_768u32).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(host.db(), garbage).unwrap();
    assert_integrity_failure(&host).stderr_has("INTEGRITY");
}

#[test]
fn truncated_database_fails() {
    let host = initialised();
    let bytes = std::fs::read(host.db()).unwrap();
    assert!(bytes.len() > 8192, "db is {} bytes", bytes.len());
    std::fs::write(host.db(), &bytes[..bytes.len() / 2]).unwrap();
    let run = host.agent(["check"]).run();
    assert!(
        run.code() == EXIT_INTEGRITY || run.code() == EXIT_ERROR,
        "truncated db must fail with 4 or 2: {run}"
    );
    assert!(run.stderr.contains("baseline"), "{run}");
}

#[test]
fn empty_database_fails() {
    let host = initialised();
    std::fs::write(host.db(), b"").unwrap();
    let run = host.agent(["check"]).run();
    assert!(
        run.code() == EXIT_INTEGRITY || run.code() == EXIT_ERROR,
        "empty db must fail with 4 or 2: {run}"
    );
}

#[test]
fn trailing_junk_after_the_database_never_passes_as_drift() {
    // SQLite ignores bytes past its recorded size, so the records themselves are intact;
    // what matters is that the result is either a verified baseline or a failure.
    let host = initialised();
    let mut bytes = std::fs::read(host.db()).unwrap();
    bytes.extend_from_slice(&[0xA5; 5000]);
    std::fs::write(host.db(), bytes).unwrap();
    let run = host.agent(["check"]).run();
    assert_ne!(run.code(), EXIT_DRIFT, "{run}");
    if run.code() == 0 {
        run.stdout_has("no drift");
        host.agent(["baseline", "show"])
            .run()
            .stdout_has("integrity    verified");
    } else {
        assert!([EXIT_ERROR, EXIT_INTEGRITY].contains(&run.code()), "{run}");
    }
}

#[test]
fn edited_history_row_fails_integrity() {
    let host = initialised();
    // The init history entry reads "<n> entries, 0 unreadable, ..."; rewrite it in place.
    patch_db(&host, b"0 unreadable", b"9 unreadable");
    assert_integrity_failure(&host).stderr_has("INTEGRITY");
}

#[test]
fn edited_record_fails_integrity() {
    let host = initialised();
    let passwd = host.path("etc/passwd");
    let shown = host
        .agent(["baseline", "show", "--json"])
        .arg(&passwd)
        .run()
        .json();
    let hash = hex_to_bytes(shown["state"]["content_hash"].as_str().unwrap());
    // Make the baseline claim another hash for /etc/passwd, as an attacker
    // hiding a change would.
    let mut forged = hash.clone();
    forged[0] ^= 0xff;
    patch_db(&host, &hash, &forged);
    assert_integrity_failure(&host).stderr_has("INTEGRITY");
}

#[test]
fn force_reinit_recovers_from_a_failed_integrity_check() {
    let host = initialised();
    std::fs::write(host.key(), format!("{}\n", "ab".repeat(32))).unwrap();
    assert_integrity_failure(&host);
    let run = host.agent(["baseline", "init", "--force"]).run();
    run.expect(0).stdout_has("failed to load or verify");
    host.agent(["check"]).run().expect(0);
    // The replaced baseline's failure is recorded in the new history.
    host.agent(["baseline", "show"])
        .run()
        .expect(0)
        .stdout_has("reinit")
        .stdout_has("failed to load or verify");
}
