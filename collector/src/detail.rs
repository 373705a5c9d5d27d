//! What the drift detail screen shows (issue 11), assembled from what the store read: the
//! item, its events (masked diff, attributes before and after, who, how it was seen,
//! package provenance: as the events carry them), its history (opened untraced, authorized
//! after the fact by an emergency window, resolved by whom and why), the subject's
//! timeline on that host (its other drift items), and why no window covered it: for its
//! latest events, the candidate windows with the matcher's own decision on each
//! ([`crate::matcher::explain`]).
//!
//! Pure: `App::drift_detail` reads and calls [`assemble`]. The explanation judges the
//! events against the windows as they are now (a window approved since shows as
//! authorizing), on the same spool interval and tolerance ingest used.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::clock::Millis;
use crate::matcher::explain::{self, Candidate};
use crate::matcher::{EventFacts, HostFacts, Outcome};
use crate::store::{DriftItem, DriftRecord, StatusChange, StoredEvent};
use crate::windows::Window;
use driftwatch_common::api::v1::ChangeKind;

/// Most events one detail shows (the latest); earlier ones are counted.
pub const MAX_DETAIL_EVENTS: usize = 1_000;
/// Most other items of the subject's timeline.
pub const MAX_TIMELINE: u32 = 50;
/// Most events explained (the latest that need a window).
pub const MAX_EXPLAINED_EVENTS: usize = 5;

/// One drift item with everything its detail shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DriftDetail {
    pub item: DriftItem,
    /// The latest [`MAX_DETAIL_EVENTS`] events, oldest first.
    pub events: Vec<StoredEvent>,
    pub events_omitted: usize,
    /// Its status changes, oldest first.
    pub history: Vec<StatusChange>,
    /// The other drift of the same host and subject, newest first.
    pub timeline: Vec<DriftItem>,
    pub explanation: Explanation,
}

/// Why no window covered the item's changes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    /// The latest events that need a window (not `restored`), newest first.
    pub events: Vec<EventExplanation>,
    /// Further such events, not explained.
    pub events_not_explained: usize,
    /// The clock tolerance that widened each window's start and planned end.
    pub tolerance_ms: i64,
}

/// The candidate windows of one event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventExplanation {
    pub event_id: Uuid,
    pub seq: u64,
    /// The decision stored at ingest (or by a later approval).
    pub outcome: Outcome,
    /// When the change can have reached the agent's spool, on the collector's clock:
    /// what a window must cover.
    #[serde(with = "crate::clock::as_rfc3339")]
    pub spooled_after: Millis,
    #[serde(with = "crate::clock::as_rfc3339")]
    pub spooled_before: Millis,
    /// Who the matcher holds responsible (login user behind sudo, else process user).
    pub person: Option<String>,
    /// Nearest first.
    pub candidates: Vec<Candidate>,
    pub candidates_omitted: usize,
}

/// Explains the latest events of `events` (oldest first, as stored) on `host` against
/// `windows` (every window, any state).
pub fn explanation(
    events: &[StoredEvent],
    host: HostFacts<'_>,
    windows: &[Window],
    tolerance_ms: i64,
) -> Explanation {
    let wanting: Vec<&StoredEvent> = events
        .iter()
        .rev()
        .filter(|e| e.event.kind != ChangeKind::Restored)
        .collect();
    let explained = wanting
        .iter()
        .take(MAX_EXPLAINED_EVENTS)
        .map(|stored| {
            let event = &stored.event;
            let found = explain::explain(
                windows,
                host,
                EventFacts {
                    subject: &event.subject.0,
                    kind: event.kind,
                    after: event.after.as_ref(),
                    spooled: stored.spool.bounds(),
                    actor: event.actor.as_ref(),
                    provenance: event.provenance.as_ref(),
                },
                tolerance_ms,
                explain::MAX_CANDIDATES,
            );
            EventExplanation {
                event_id: event.id,
                seq: event.seq,
                outcome: stored.outcome.clone(),
                spooled_after: stored.spool.spooled_after,
                spooled_before: stored.spool.spooled_before,
                person: found.person,
                candidates: found.candidates,
                candidates_omitted: found.omitted,
            }
        })
        .collect();
    Explanation {
        events: explained,
        events_not_explained: wanting.len().saturating_sub(MAX_EXPLAINED_EVENTS),
        tolerance_ms,
    }
}

/// The detail of `record`'s item on `host`, explained against `windows`.
pub fn assemble(
    mut record: DriftRecord,
    host: HostFacts<'_>,
    windows: &[Window],
    tolerance_ms: i64,
) -> DriftDetail {
    let explanation = explanation(&record.events, host, windows, tolerance_ms);
    let omitted = record.events.len().saturating_sub(MAX_DETAIL_EVENTS);
    record.events.drain(..omitted);
    DriftDetail {
        item: record.item,
        events: record.events,
        events_omitted: omitted,
        history: record.history,
        timeline: record.timeline,
        explanation,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use driftwatch_common::api::v1::{DriftEvent, SeenBy, SubjectKey};
    use driftwatch_common::hash::ContentHash;

    use super::*;
    use crate::drift::DriftStatus;
    use crate::matcher::{Decision, Miss};
    use crate::spool_time::SpoolTime;
    use crate::windows::{HostScope, WindowKind, WindowStatus};

    const T0: Millis = 1_800_000_000_000;
    const MINUTE: i64 = 60_000;

    fn stored(seq: u64, kind: ChangeKind, at: Millis) -> StoredEvent {
        StoredEvent {
            event: DriftEvent {
                id: Uuid::from_u128(u128::from(seq)),
                host_id: Uuid::from_u128(1),
                seq,
                prev_hash: ContentHash([0; 32]),
                subject: SubjectKey("file:/etc/app.conf".into()),
                kind,
                changed: vec![],
                before: None,
                after: None,
                diff: None,
                summary: None,
                actor: None,
                seen_by: SeenBy::Watch,
                observed_at: time::OffsetDateTime::from_unix_timestamp(at / 1000).unwrap(),
                provenance: None,
                related: None,
                mac: None,
            },
            received_at: at,
            event_time: at,
            outcome: Outcome::Untraced,
            chain: "ok".into(),
            drift_id: Some(Uuid::from_u128(9)),
            spool: SpoolTime {
                spooled_after: at - 1000,
                spooled_before: at,
                ..SpoolTime::default()
            },
            decision_mac: None,
        }
    }

    fn window(id: u128, host: &str, end: Millis) -> Window {
        Window {
            id: Uuid::from_u128(id),
            ticket: format!("CHG-{id}"),
            title: "t".into(),
            kind: WindowKind::Normal,
            status: WindowStatus::Approved,
            requester: "alice".into(),
            decided_by: Some("bob".into()),
            decided_at: Some(0),
            decision_comment: None,
            hosts: HostScope {
                names: vec![host.into()],
                ..HostScope::default()
            },
            subjects: vec!["file:/etc/**".into()],
            start: end - 60 * MINUTE,
            end,
            time_zone: "UTC".into(),
            expected: vec![],
            implementers: vec![],
            schedule: None,
            created_at: 0,
            ended_at: None,
            ended_by: None,
        }
    }

    fn item() -> DriftItem {
        DriftItem {
            id: Uuid::from_u128(9),
            host_id: Uuid::from_u128(1),
            hostname: "web-1".into(),
            subject: "file:/etc/app.conf".into(),
            status: DriftStatus::Open,
            reason: Some("untraced".into()),
            window_id: None,
            opened_at: T0,
            untraced_since: Some(T0),
            events: 1,
            last_event_id: Uuid::from_u128(1),
            last_event_at: T0,
            alerted_at: None,
            resolution: None,
            updated_at: T0,
        }
    }

    #[test]
    fn the_latest_changes_are_explained_against_every_window() {
        let labels = BTreeMap::new();
        let host = HostFacts {
            hostname: "web-1",
            labels: &labels,
        };
        let mut events: Vec<StoredEvent> = (1..=7)
            .map(|seq| stored(seq, ChangeKind::Content, T0 + seq as i64 * MINUTE))
            .collect();
        events.push(stored(8, ChangeKind::Restored, T0 + 8 * MINUTE));
        // Ended 12 minutes before the last content change; another host's window.
        let windows = [
            window(1, "web-1", T0 - 5 * MINUTE),
            window(2, "db-1", T0 + 30 * MINUTE),
        ];
        let detail = assemble(
            DriftRecord {
                item: item(),
                events,
                history: vec![],
                timeline: vec![],
            },
            host,
            &windows,
            60_000,
        );
        assert_eq!(detail.events.len(), 8);
        assert_eq!(detail.events_omitted, 0);
        let explained = &detail.explanation;
        // The restored event needs no window; the latest five others, newest first.
        let seqs: Vec<u64> = explained.events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [7, 6, 5, 4, 3]);
        assert_eq!(explained.events_not_explained, 2);
        let latest = &explained.events[0];
        assert_eq!(latest.candidates.len(), 2);
        let reasons: BTreeMap<String, &Decision> = latest
            .candidates
            .iter()
            .map(|c| (c.window.ticket.clone(), &c.decision))
            .collect();
        assert_eq!(reasons["CHG-2"], &Decision::Misses(Miss::HostOutOfScope));
        assert!(matches!(
            reasons["CHG-1"],
            Decision::Misses(Miss::After { by_ms, .. }) if *by_ms == 12 * MINUTE - 1000
        ));
        // Read back as the API and driftctl see it.
        let text = serde_json::to_string(&detail).unwrap();
        assert_eq!(serde_json::from_str::<DriftDetail>(&text).unwrap(), detail);
    }

    #[test]
    fn only_the_latest_events_are_kept_and_the_rest_counted() {
        let labels = BTreeMap::new();
        let host = HostFacts {
            hostname: "web-1",
            labels: &labels,
        };
        let events: Vec<StoredEvent> = (1..=(MAX_DETAIL_EVENTS as u64 + 3))
            .map(|seq| stored(seq, ChangeKind::Content, T0 + seq as i64 * 1000))
            .collect();
        let detail = assemble(
            DriftRecord {
                item: item(),
                events,
                history: vec![],
                timeline: vec![],
            },
            host,
            &[],
            60_000,
        );
        assert_eq!(detail.events.len(), MAX_DETAIL_EVENTS);
        assert_eq!(detail.events_omitted, 3);
        assert_eq!(detail.events[0].event.seq, 4);
        assert!(detail.explanation.events[0].candidates.is_empty());
    }
}
