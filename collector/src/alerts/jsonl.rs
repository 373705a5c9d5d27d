use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use super::AlertSink;
use crate::store::Alert;

/// Appends one JSON object per line and syncs it to disk. The file is opened for each
/// alert, so rotating it (rename, then a new file appears) needs no signal.
pub struct JsonLines {
    path: PathBuf,
}

impl JsonLines {
    pub fn new(path: PathBuf) -> Self {
        JsonLines { path }
    }
}

impl AlertSink for JsonLines {
    fn name(&self) -> String {
        format!("jsonl:{}", self.path.display())
    }

    fn deliver(&self, alert: &Alert) -> Result<(), String> {
        let mut line = serde_json::to_vec(&alert.body).map_err(|e| e.to_string())?;
        line.push(b'\n');
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(&self.path)
            .map_err(|e| format!("cannot open {}: {e}", self.path.display()))?;
        // One write call per line, so concurrent readers never see half an alert.
        file.write_all(&line)
            .and_then(|()| file.sync_data())
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))
    }
}
