//! The drift lifecycle, per (host, subject): what an event or a decision does to the drift
//! item tracking the subject. Pure; the store applies the result in the event's transaction.
//!
//! ```text
//!             untraced event                     security resolves
//!  (none) ──────────────────► open ──────────────────────────────► resolved
//!     │                      ▲  │  restored event (automatic, recorded)   ▲
//!     │ authorized event     │  └──────────────────────────────────────────┤
//!     ▼                      │ untraced event                              │
//!  authorized ───────────────┘                                             │
//!     │  └────────────── restored event ───────────────────────────────────┘
//!     └── window closed (close-out) ──► accepted
//! ```
//! An open item becomes authorized when every event that needed review is later covered
//! by an approved window (an emergency window approved after the fact).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::matcher::Outcome;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftStatus {
    /// Needs a person: some change on it is untraced or not the approved state.
    Open,
    /// Every change on it is covered by a window; waits for close-out.
    Authorized,
    /// Closed with a reason (by security, or automatically when restored).
    Resolved,
    /// Accepted at close-out: the agents take the reviewed state as baseline.
    Accepted,
}

impl DriftStatus {
    pub fn name(self) -> &'static str {
        match self {
            DriftStatus::Open => "open",
            DriftStatus::Authorized => "authorized",
            DriftStatus::Resolved => "resolved",
            DriftStatus::Accepted => "accepted",
        }
    }

    /// Open and authorized items are active: at most one per (host, subject).
    pub fn is_active(self) -> bool {
        matches!(self, DriftStatus::Open | DriftStatus::Authorized)
    }
}

impl fmt::Display for DriftStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DriftStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        [
            DriftStatus::Open,
            DriftStatus::Authorized,
            DriftStatus::Resolved,
            DriftStatus::Accepted,
        ]
        .into_iter()
        .find(|status| status.name() == s)
        .ok_or_else(|| {
            format!("unknown drift status `{s}`, expected open, authorized, resolved or accepted")
        })
    }
}

/// Why security closed untraced drift.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResolutionCategory {
    /// An unauthorized change, handled as an incident.
    ConfirmedUnauthorized,
    /// An emergency change approved after the fact; names its ticket.
    EmergencyChange,
    /// Noise: the policy should be tuned.
    FalsePositive,
    /// Set by the collector: the subject went back to its baseline state.
    Restored,
}

impl ResolutionCategory {
    pub fn name(self) -> &'static str {
        match self {
            ResolutionCategory::ConfirmedUnauthorized => "confirmed_unauthorized",
            ResolutionCategory::EmergencyChange => "emergency_change",
            ResolutionCategory::FalsePositive => "false_positive",
            ResolutionCategory::Restored => "restored",
        }
    }
}

/// What one event does to the active item of its subject (`None`: there is none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Record the event without an item (a restore with nothing open).
    Nothing,
    /// Start an item with this status.
    Open(DriftStatus),
    /// Keep the item, with this status (the same or another).
    Update(DriftStatus),
    /// The subject is back to baseline: resolve the item automatically.
    AutoResolve,
}

pub fn step(active: Option<DriftStatus>, outcome: &Outcome) -> Step {
    let review = outcome.needs_review();
    match (active, outcome) {
        (None, Outcome::Restored) => Step::Nothing,
        (Some(_), Outcome::Restored) => Step::AutoResolve,
        (None, _) if review => Step::Open(DriftStatus::Open),
        (None, _) => Step::Open(DriftStatus::Authorized),
        (Some(_), _) if review => Step::Update(DriftStatus::Open),
        // An authorized change does not cover an earlier untraced one.
        (Some(status), _) => Step::Update(status),
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    #[test]
    fn each_event_moves_the_item_as_documented() {
        let authorized = Outcome::Authorized {
            window_id: Uuid::nil(),
        };
        let unexpected = Outcome::UnexpectedState {
            window_id: Uuid::nil(),
            expected: "version 1".into(),
        };
        use DriftStatus::*;
        #[rustfmt::skip]
        let cases = [
            (None, &Outcome::Untraced, Step::Open(Open)),
            (None, &unexpected, Step::Open(Open)),
            (None, &authorized, Step::Open(Authorized)),
            (None, &Outcome::Restored, Step::Nothing),
            (Some(Open), &authorized, Step::Update(Open)),
            (Some(Open), &Outcome::Untraced, Step::Update(Open)),
            (Some(Authorized), &authorized, Step::Update(Authorized)),
            (Some(Authorized), &Outcome::Untraced, Step::Update(Open)),
            (Some(Authorized), &unexpected, Step::Update(Open)),
            (Some(Open), &Outcome::Restored, Step::AutoResolve),
            (Some(Authorized), &Outcome::Restored, Step::AutoResolve),
        ];
        for (active, outcome, expected) in cases {
            assert_eq!(step(active, outcome), expected, "{active:?} + {outcome:?}");
        }
    }

    #[test]
    fn statuses_parse_by_name() {
        assert_eq!("open".parse::<DriftStatus>().unwrap(), DriftStatus::Open);
        assert!("closed".parse::<DriftStatus>().is_err());
        assert!(DriftStatus::Authorized.is_active());
        assert!(!DriftStatus::Accepted.is_active());
    }
}
