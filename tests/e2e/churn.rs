//! Files appearing and vanishing while a scan runs: the check must finish
//! with a verdict (0, 1 or 3), never an error, a crash or a hang.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use driftwatch_tests::{EXIT_CLEAN, EXIT_DRIFT, EXIT_INCOMPLETE, HostDir};

#[test]
fn check_survives_files_vanishing_mid_scan() {
    let host = HostDir::new();
    for d in 0..8 {
        for f in 0..40 {
            host.write(format!("d{d}/f{f}"), format!("{d}/{f}\n"));
        }
    }
    host.mkdir("churn");
    host.init();

    let stop = Arc::new(AtomicBool::new(false));
    let churn_dir = host.path("churn");
    let tree = host.tree().to_owned();
    let churner = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut round = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for i in 0..50 {
                    let dir = churn_dir.join(format!("sub{}", i % 5));
                    let _ = std::fs::create_dir(&dir);
                    let _ = std::fs::write(dir.join(format!("t{i}")), round.to_le_bytes());
                }
                // Also replace baselined files, and make directories vanish.
                let victim = tree.join(format!("d{}/f{}", round % 8, round % 40));
                let _ = std::fs::remove_file(&victim);
                let _ = std::fs::write(&victim, format!("{round}\n"));
                for i in 0..5 {
                    let _ = std::fs::remove_dir_all(churn_dir.join(format!("sub{i}")));
                }
                round += 1;
            }
            round
        })
    };

    let mut codes = Vec::new();
    for args in [
        &["check"][..],
        &["check", "--paranoid"],
        &["check", "--json"],
    ] {
        let run = host.agent(args).timeout(Duration::from_secs(30)).run();
        assert!(
            [EXIT_CLEAN, EXIT_DRIFT, EXIT_INCOMPLETE].contains(&run.code()),
            "a check racing with changes must still give a verdict: {run}"
        );
        assert!(!run.stderr.contains("panicked"), "{run}");
        codes.push(run.code());
    }
    stop.store(true, Ordering::Relaxed);
    let rounds = churner.join().expect("churn thread");
    assert!(rounds > 0, "the churn thread never ran");

    // Once quiet, the tree still checks (drift from the churn is expected).
    let run = host.agent(["check"]).run();
    assert!([EXIT_CLEAN, EXIT_DRIFT].contains(&run.code()), "{run}");
}
