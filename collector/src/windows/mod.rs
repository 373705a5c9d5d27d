//! Change windows: what they are, which requests are possible ([`validate`]) and which
//! transitions are allowed to whom ([`lifecycle`]). Pure: no I/O, no clock of its own.

pub mod lifecycle;
pub mod schedule;
#[cfg(test)]
mod tests;
pub mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use driftwatch_common::api::v1::SubjectState;
use driftwatch_common::hash::ContentHash;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::clock::Millis;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowKind {
    /// Requested ahead, approved by someone else, then done.
    #[default]
    Normal,
    /// A pre-approved routine change: one-off, or recurring on a [`schedule::Schedule`].
    Standard,
    /// Done first, recorded and approved after the fact.
    Emergency,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowStatus {
    Requested,
    Approved,
    Rejected,
    Cancelled,
    Closed,
}

macro_rules! names {
    ($ty:ty, $what:literal { $($variant:ident => $name:literal),* $(,)? }) => {
        impl $ty {
            pub fn name(self) -> &'static str {
                match self { $(Self::$variant => $name),* }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
        impl FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($name => Ok(Self::$variant),)*
                    _ => Err(format!(
                        "unknown {} `{s}`, expected one of {}",
                        $what, [$($name),*].join(", ")
                    )),
                }
            }
        }
    };
}

names!(WindowKind, "window kind" { Normal => "normal", Standard => "standard", Emergency => "emergency" });
names!(WindowStatus, "window status" {
    Requested => "requested",
    Approved => "approved",
    Rejected => "rejected",
    Cancelled => "cancelled",
    Closed => "closed",
});

/// Which hosts a window covers: a host is in scope when its name is listed, or matches one
/// of the globs, or carries every one of the labels.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostScope {
    #[serde(default)]
    pub names: Vec<String>,
    #[serde(default)]
    pub globs: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl HostScope {
    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && self.globs.is_empty() && self.labels.is_empty()
    }
}

/// The end state a window approves for one subject: exactly one of the three.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedState {
    /// A subject key, not a glob (`file:/etc/nginx/nginx.conf`, `package:nginx`).
    pub subject: String,
    /// The file's content hash (BLAKE3, hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<ContentHash>,
    /// The state key's `version` field (packages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The subject is removed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub absent: bool,
}

impl ExpectedState {
    /// Whether `after` (the state an event reports) is this expectation.
    pub fn is_met_by(&self, after: Option<&SubjectState>) -> bool {
        if self.absent {
            return after.is_none();
        }
        match (after, &self.hash, &self.version) {
            (Some(SubjectState::File(file)), Some(hash), _) => file.content_hash == Some(*hash),
            (Some(SubjectState::Fields { fields }), _, Some(version)) => {
                fields.get("version") == Some(version)
            }
            _ => false,
        }
    }

    /// For people: `hash 1a2b…`, `version 1.24.0-1`, `absent`.
    pub fn describe(&self) -> String {
        match (&self.hash, &self.version) {
            _ if self.absent => "absent".to_owned(),
            (Some(hash), _) => format!("hash {hash}"),
            (None, Some(version)) => format!("version {version}"),
            (None, None) => "nothing".to_owned(),
        }
    }
}

/// A change window as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    pub id: Uuid,
    pub ticket: String,
    pub title: String,
    pub kind: WindowKind,
    pub status: WindowStatus,
    pub requester: String,
    /// Who approved or rejected it.
    pub decided_by: Option<String>,
    pub decided_at: Option<Millis>,
    pub decision_comment: Option<String>,
    pub hosts: HostScope,
    /// Subject globs, `namespace:pattern` (`file:/etc/nginx/**`, `package:nginx*`).
    pub subjects: Vec<String>,
    pub start: Millis,
    pub end: Millis,
    /// IANA name; start and end are shown in it.
    pub time_zone: String,
    pub expected: Vec<ExpectedState>,
    /// The login users allowed to make the change (empty: anyone but the approver).
    pub implementers: Vec<String>,
    /// A recurring standard window: open on these occurrences only, between `start` and
    /// `end` (the period the approval is valid for).
    pub schedule: Option<schedule::Schedule>,
    pub created_at: Millis,
    /// When it was cancelled or closed, and by whom.
    pub ended_at: Option<Millis>,
    pub ended_by: Option<String>,
}

impl Window {
    /// Whether the window was ever approved, so that it covers drift in its interval.
    pub fn was_approved(&self) -> bool {
        match self.status {
            WindowStatus::Approved | WindowStatus::Closed => true,
            // Cancelled after approval: what happened before the cancellation stays covered.
            WindowStatus::Cancelled => self.decided_by.is_some(),
            WindowStatus::Requested | WindowStatus::Rejected => false,
        }
    }

    /// The interval it authorizes: closing or cancelling ends it early.
    pub fn effective_end(&self) -> Millis {
        match self.ended_at {
            Some(ended) => ended.min(self.end),
            None => self.end,
        }
    }
}
