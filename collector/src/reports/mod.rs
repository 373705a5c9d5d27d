//! Evidence for auditors: the export of a period ([`export`]) and the close-out bundle of
//! a change window ([`bundle`]), with the escaping their formats need ([`text`]) and the
//! figures and sample ([`metrics`]). Pure: `app` reads the store and checks roles.

pub mod bundle;
pub mod export;
pub mod metrics;
pub mod ops;
pub mod seal;
pub mod text;

use std::fmt;
use std::str::FromStr;

use driftwatch_common::api::v1::{Actor, ChangeKind, SeenBy, SubjectState};

/// `GET /api/v1/reports/export` formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    Csv,
    Json,
}

impl FromStr for ExportFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "csv" => Ok(ExportFormat::Csv),
            "json" => Ok(ExportFormat::Json),
            _ => Err(format!("unknown format `{s}`, expected csv or json")),
        }
    }
}

/// `GET /api/v1/windows/{id}/evidence` formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BundleFormat {
    Json,
    Markdown,
    Html,
}

impl FromStr for BundleFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "json" => Ok(BundleFormat::Json),
            "md" => Ok(BundleFormat::Markdown),
            "html" => Ok(BundleFormat::Html),
            _ => Err(format!("unknown format `{s}`, expected json, md or html")),
        }
    }
}

impl fmt::Display for BundleFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BundleFormat::Json => "json",
            BundleFormat::Markdown => "md",
            BundleFormat::Html => "html",
        })
    }
}

impl fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExportFormat::Csv => "csv",
            ExportFormat::Json => "json",
        })
    }
}

pub fn kind_name(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Added => "added",
        ChangeKind::Removed => "removed",
        ChangeKind::Content => "content",
        ChangeKind::Attributes => "attributes",
        ChangeKind::Restored => "restored",
    }
}

pub fn seen_by_name(seen_by: SeenBy) -> &'static str {
    match seen_by {
        SeenBy::Watch => "watch",
        SeenBy::Scan => "scan",
        SeenBy::Startup => "startup",
    }
}

/// Who made a change, in one line: `alice (login uid 1000) as root via vi[4242]
/// /usr/bin/vim.basic (fanotify)`, or `unknown: <why>`.
pub fn actor_text(actor: Option<&Actor>) -> String {
    let Some(a) = actor else {
        return "unknown: not reported".into();
    };
    let mut parts = Vec::new();
    let login = match (&a.login_user, a.login_uid) {
        (Some(user), Some(uid)) => Some(format!("{user} (login uid {uid})")),
        (Some(user), None) => Some(user.clone()),
        (None, Some(uid)) => Some(format!("login uid {uid}")),
        (None, None) => None,
    };
    parts.extend(login);
    match (&a.user, a.uid) {
        (Some(user), _) => parts.push(format!("as {user}")),
        (None, Some(uid)) => parts.push(format!("as uid {uid}")),
        _ => {}
    }
    match (&a.comm, a.pid) {
        (Some(comm), Some(pid)) => parts.push(format!("via {comm}[{pid}]")),
        (Some(comm), None) => parts.push(format!("via {comm}")),
        (None, Some(pid)) => parts.push(format!("via pid {pid}")),
        _ => {}
    }
    parts.extend(a.exe.clone());
    if a.exited {
        parts.push("(exited before it could be read)".into());
    }
    if parts.is_empty() {
        return format!(
            "unknown: {}",
            a.reason.as_deref().unwrap_or("no attribution available")
        );
    }
    let mut text = parts.join(" ");
    if !a.source.is_empty() {
        text.push_str(&format!(" ({})", a.source));
    }
    if let Some(reason) = &a.reason {
        text.push_str(&format!("; {reason}"));
    }
    text
}

/// A subject's state in one line: `hash <hex>, mode 0644, owner 0:0, size 12` for files,
/// `version=1.2, arch=amd64` for state keys, `absent` when it does not exist.
pub fn state_text(state: Option<&SubjectState>) -> String {
    match state {
        None => "absent".into(),
        Some(SubjectState::Fields { fields }) => fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", "),
        Some(SubjectState::File(f)) => {
            let mut parts = Vec::new();
            if let Some(hash) = &f.content_hash {
                parts.push(format!("hash {hash}"));
            }
            if let Some(target) = &f.link_target {
                parts.push(format!("link to {target}"));
            }
            parts.push(format!("mode {:04o}", f.mode));
            parts.push(format!("owner {}:{}", f.uid, f.gid));
            parts.push(format!("size {}", f.size));
            parts.join(", ")
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn formats_parse_by_name_and_refuse_others() {
        assert_eq!("csv".parse::<ExportFormat>(), Ok(ExportFormat::Csv));
        assert!(
            "xlsx"
                .parse::<ExportFormat>()
                .unwrap_err()
                .contains("csv or json")
        );
        assert_eq!("md".parse::<BundleFormat>(), Ok(BundleFormat::Markdown));
        assert!(
            "pdf"
                .parse::<BundleFormat>()
                .unwrap_err()
                .contains("json, md or html")
        );
    }

    #[test]
    fn actors_read_as_a_sentence() {
        assert_eq!(actor_text(None), "unknown: not reported");
        let actor = Actor {
            source: "fanotify".into(),
            pid: Some(42),
            comm: Some("vi".into()),
            exe: Some("/usr/bin/vim".into()),
            uid: Some(0),
            user: Some("root".into()),
            login_uid: Some(1000),
            login_user: Some("alice".into()),
            session: None,
            tty: None,
            exited: false,
            reason: None,
        };
        assert_eq!(
            actor_text(Some(&actor)),
            "alice (login uid 1000) as root via vi[42] /usr/bin/vim (fanotify)"
        );
        let unknown = Actor {
            source: "none".into(),
            reason: Some("no CAP_SYS_ADMIN".into()),
            ..Actor::default()
        };
        assert_eq!(actor_text(Some(&unknown)), "unknown: no CAP_SYS_ADMIN");
    }

    #[test]
    fn states_read_in_one_line() {
        assert_eq!(state_text(None), "absent");
        let fields = SubjectState::Fields {
            fields: BTreeMap::from([
                ("arch".to_owned(), "amd64".to_owned()),
                ("version".to_owned(), "1.2".to_owned()),
            ]),
        };
        assert_eq!(state_text(Some(&fields)), "arch=amd64, version=1.2");
    }
}
