//! An agent's blind spots, heartbeat to heartbeat (pure). Each heartbeat carries the agent's
//! coverage: subtrees without a real-time watch, notifications the kernel dropped, subjects
//! it could not read, whether writers can be named, how each state source answered. What
//! got worse since the previous heartbeat is worth an alert; what stayed the same was
//! already said.

use driftwatch_common::api::v1::{Coverage, SourceCondition};

/// At most this many new unwatched subtrees are named in one alert.
const NAMED_MAX: usize = 5;

/// What got worse between the previous heartbeat's coverage (`None` for the first one) and
/// this one's, each worded for an alert.
///
/// Attribution that is unavailable from the first heartbeat on is how the agent was
/// installed (it is opt-in: CAP_SYS_ADMIN), not a change: only its loss is news.
pub fn losses(was: Option<&Coverage>, now: &Coverage) -> Vec<String> {
    let empty = Coverage::default();
    let before = was.unwrap_or(&empty);
    let mut lost = Vec::new();

    let unwatched: Vec<&str> = now
        .unwatched
        .iter()
        .filter(|subtree| !before.unwatched.contains(subtree))
        .map(String::as_str)
        .collect();
    if !unwatched.is_empty() {
        let mut named = unwatched[..unwatched.len().min(NAMED_MAX)].join(", ");
        if unwatched.len() > NAMED_MAX {
            named.push_str(&format!(" and {} more", unwatched.len() - NAMED_MAX));
        }
        lost.push(format!(
            "no real-time watch (scanned periodically instead): {named}"
        ));
    }

    // The counter restarts with the agent: a smaller number is a new count.
    let dropped = if now.dropped_event_batches >= before.dropped_event_batches {
        now.dropped_event_batches - before.dropped_event_batches
    } else {
        now.dropped_event_batches
    };
    if dropped > 0 {
        lost.push(format!(
            "the kernel dropped notifications {dropped} time(s); the agent rescanned"
        ));
    }

    if now.unreadable > before.unreadable {
        lost.push(format!(
            "{} subject(s) could not be read in the last full scan",
            now.unreadable
        ));
    }

    if let (Some(was), Some(why)) = (was, &now.attribution_unavailable)
        && was.attribution_unavailable.is_none()
    {
        lost.push(format!("writers can no longer be named: {why}"));
    }

    for source in &now.sources {
        let failing = matches!(
            source.condition,
            SourceCondition::Failed | SourceCondition::TimedOut
        );
        let before = before
            .sources
            .iter()
            .find(|s| s.name == source.name)
            .map(|s| s.condition);
        if failing && before != Some(source.condition) {
            let detail = source
                .detail
                .as_deref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default();
            lost.push(format!(
                "state source {} {}{detail}",
                source.name,
                source.condition.name()
            ));
        }
    }
    lost
}

#[cfg(test)]
mod tests {
    use driftwatch_common::api::v1::SourceCoverage;

    use super::*;

    fn source(name: &str, condition: SourceCondition) -> SourceCoverage {
        SourceCoverage {
            name: name.into(),
            condition,
            subjects: 0,
            detail: Some("timed out after 30 s".into()),
        }
    }

    #[test]
    fn nothing_new_is_nothing_to_say() {
        let coverage = Coverage {
            unwatched: vec!["/srv (limit)".into()],
            dropped_event_batches: 3,
            unreadable: 2,
            attribution_unavailable: Some("no CAP_SYS_ADMIN".into()),
            sources: vec![source("user", SourceCondition::TimedOut)],
            ..Coverage::default()
        };
        assert!(losses(Some(&coverage), &coverage).is_empty());
        // A first heartbeat reports what is missing, except attribution (opt-in).
        let first = losses(None, &coverage);
        assert_eq!(first.len(), 4, "{first:?}");
        assert!(!first.iter().any(|l| l.contains("writers")));
    }

    #[test]
    fn each_new_blind_spot_is_worded() {
        let was = Coverage {
            unwatched: vec!["/a (x)".into()],
            dropped_event_batches: 1,
            sources: vec![source("package", SourceCondition::Ok)],
            ..Coverage::default()
        };
        let now = Coverage {
            unwatched: (0..8).map(|i| format!("/d{i} (limit)")).collect(),
            dropped_event_batches: 4,
            unreadable: 1,
            attribution_unavailable: Some("the listener stopped".into()),
            sources: vec![
                source("package", SourceCondition::Failed),
                source("sysctl", SourceCondition::Unavailable),
            ],
            ..Coverage::default()
        };
        let lost = losses(Some(&was), &now);
        assert_eq!(
            lost,
            [
                "no real-time watch (scanned periodically instead): /d0 (limit), /d1 (limit), \
                 /d2 (limit), /d3 (limit), /d4 (limit) and 3 more",
                "the kernel dropped notifications 3 time(s); the agent rescanned",
                "1 subject(s) could not be read in the last full scan",
                "writers can no longer be named: the listener stopped",
                "state source package failed: timed out after 30 s",
            ]
        );
    }

    #[test]
    fn an_agent_restart_starts_its_counters_again() {
        let was = Coverage {
            dropped_event_batches: 9,
            ..Coverage::default()
        };
        let now = Coverage {
            dropped_event_batches: 2,
            ..Coverage::default()
        };
        assert_eq!(
            losses(Some(&was), &now),
            ["the kernel dropped notifications 2 time(s); the agent rescanned"]
        );
    }
}
