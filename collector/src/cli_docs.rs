//! Writes the man pages and shell completions of `driftwatch-collector` and `driftctl`
//! (rendered by `driftwatch_common::cli_docs`) for their `generate-docs DIR`, which the
//! packaging build runs.

use std::path::Path;

use anyhow::Context;

/// Renders `cmd`'s pages in man `section` and its completions, and writes them under `dir`.
pub fn write(cmd: clap::Command, section: &str, dir: &Path) -> anyhow::Result<()> {
    for file in driftwatch_common::cli_docs::render(cmd, section) {
        let path = dir.join(&file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, &file.bytes)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
