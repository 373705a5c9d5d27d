use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use serde_json::{Value, json};

use super::{AlertSink, BoxFuture, DeliveryError};
use crate::store::Alert;

/// Appends one JSON object per line and syncs it to disk. The file is opened for each
/// alert, so rotating it (rename, then a new file appears) needs no signal.
pub struct JsonLines {
    name: String,
    path: PathBuf,
}

impl JsonLines {
    pub fn new(name: String, path: PathBuf) -> Self {
        JsonLines { name, path }
    }

    fn append(path: &std::path::Path, alert: &Alert) -> Result<(), String> {
        let mut line = serde_json::to_vec(&alert.body).map_err(|e| e.to_string())?;
        line.push(b'\n');
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        // One write call per line, so concurrent readers never see half an alert.
        file.write_all(&line)
            .and_then(|()| file.sync_data())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}

impl AlertSink for JsonLines {
    fn name(&self) -> &str {
        &self.name
    }

    fn describe(&self) -> Value {
        json!({ "type": "jsonl", "path": self.path })
    }

    fn deliver<'a>(&'a self, alert: &'a Alert) -> BoxFuture<'a, Result<(), DeliveryError>> {
        let (path, alert) = (self.path.clone(), alert.clone());
        Box::pin(async move {
            // Blocking file I/O (with fsync): off the async threads.
            tokio::task::spawn_blocking(move || Self::append(&path, &alert))
                .await
                .unwrap_or_else(|err| Err(format!("delivery task failed: {err}")))
                .map_err(DeliveryError::from)
        })
    }
}
