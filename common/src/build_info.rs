//! What this build is, for `driftwatch_build_info` and `--version`-like reports: set at
//! compile time by `build.rs` (constants, no I/O).

/// The workspace version (`Cargo.toml`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit the build was told (`DRIFTWATCH_GIT_COMMIT` at build time), or `unknown`.
pub const GIT_COMMIT: &str = env!("DRIFTWATCH_GIT_COMMIT");
/// The compiler's version, such as `1.95.0`, or `unknown`.
pub const RUSTC_VERSION: &str = env!("DRIFTWATCH_RUSTC_VERSION");

/// The labels of a `*_build_info` gauge, in order.
pub fn labels() -> [(&'static str, &'static str); 3] {
    [
        ("version", VERSION),
        ("commit", GIT_COMMIT),
        ("rustc", RUSTC_VERSION),
    ]
}
