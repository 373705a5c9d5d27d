//! Build facts for `driftwatch_build_info`: the compiler's version, and the git commit when
//! the build is told it (`DRIFTWATCH_GIT_COMMIT`, as `.ci/run` and the package builds set it).
//! Nothing runs git here: a build script that reran on every commit would rebuild the
//! workspace each time, and a source tarball has no repository.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=DRIFTWATCH_GIT_COMMIT");
    println!("cargo:rerun-if-env-changed=RUSTC");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.split_whitespace().nth(1).map(str::to_owned))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=DRIFTWATCH_RUSTC_VERSION={version}");
    let commit = std::env::var("DRIFTWATCH_GIT_COMMIT")
        .ok()
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty() && c.len() <= 64 && c.bytes().all(|b| b.is_ascii_alphanumeric()))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=DRIFTWATCH_GIT_COMMIT={commit}");
}
