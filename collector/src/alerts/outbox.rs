//! The outbox's bookkeeping rules, pure: both stores read the facts, call these and write
//! what they decide, so SQLite and PostgreSQL cannot disagree on them.

use uuid::Uuid;

use crate::clock::Millis;
use crate::store::{DeadLetter, DeliveryState, Dropped, SinkDelivery, StoreError};

/// One clock alert per host and burst: a new one is raised only when the latest alert of
/// the same kind for the host (`latest`) is at least `burst_ms` older than `at`.
pub fn clock_alert_due(latest: Option<Millis>, at: Millis, burst_ms: i64) -> bool {
    latest.is_none_or(|latest| latest <= at.saturating_sub(burst_ms))
}

/// A sink's delivery state from what is recorded: delivered wins, then dropped, then a
/// dead letter, then an error (failing, retried later); nothing recorded is pending.
pub fn delivery_state(
    delivered_at: Option<Millis>,
    dropped: Option<&Dropped>,
    dead_letter: Option<&DeadLetter>,
    last_error: Option<&str>,
) -> DeliveryState {
    match (delivered_at, dropped, dead_letter, last_error) {
        (Some(_), ..) => DeliveryState::Delivered,
        (None, Some(_), ..) => DeliveryState::Dropped,
        (None, None, Some(_), _) => DeliveryState::DeadLetter,
        (None, None, None, Some(_)) => DeliveryState::Failing,
        (None, None, None, None) => DeliveryState::Pending,
    }
}

/// The precondition of retrying or dropping a dead letter: `sink` tried `alert_id`
/// (`delivery` is its record) and the receiver refused it for good. Anything else is
/// refused with the state it is in.
pub fn require_dead_letter(
    alert_id: Uuid,
    sink: &str,
    delivery: Option<SinkDelivery>,
) -> Result<SinkDelivery, StoreError> {
    let delivery = delivery.ok_or_else(|| {
        StoreError::NotFound(format!("sink `{sink}` has not tried alert {alert_id}"))
    })?;
    if delivery.state != DeliveryState::DeadLetter {
        let state = serde_json::to_value(delivery.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        return Err(StoreError::Conflict(format!(
            "sink `{sink}`'s delivery of alert {alert_id} is {state}, not a dead letter"
        )));
    }
    Ok(delivery)
}

/// Whether an alert is delivered: every configured sink (`sinks`, duplicates counted
/// once) has delivered it or dropped it, `done` being the distinct sinks among them that
/// have.
pub fn every_sink_done(done: usize, sinks: &[String]) -> bool {
    done >= sinks
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(state: DeliveryState) -> SinkDelivery {
        SinkDelivery {
            sink: "hook".into(),
            state,
            attempts: 1,
            last_error: None,
            last_attempt_at: None,
            next_attempt_at: None,
            delivered_at: None,
            dead_letter: None,
            dropped: None,
        }
    }

    #[test]
    fn a_clock_alert_is_raised_once_per_burst() {
        assert!(clock_alert_due(None, 10_000, 5_000), "the first one");
        assert!(
            !clock_alert_due(Some(9_000), 10_000, 5_000),
            "within the burst"
        );
        assert!(!clock_alert_due(Some(5_001), 10_000, 5_000), "just within");
        assert!(clock_alert_due(Some(5_000), 10_000, 5_000), "a burst later");
        assert!(
            clock_alert_due(Some(i64::MIN), i64::MIN + 1, i64::MAX),
            "saturates instead of overflowing"
        );
    }

    #[test]
    fn the_state_of_a_delivery_follows_what_is_recorded() {
        let dead = DeadLetter {
            at: 1,
            status: Some(400),
            response: String::new(),
        };
        let dropped = Dropped {
            at: 2,
            by: "ann".into(),
            reason: "gone".into(),
        };
        assert_eq!(
            delivery_state(Some(3), Some(&dropped), Some(&dead), Some("x")),
            DeliveryState::Delivered
        );
        assert_eq!(
            delivery_state(None, Some(&dropped), Some(&dead), Some("x")),
            DeliveryState::Dropped
        );
        assert_eq!(
            delivery_state(None, None, Some(&dead), Some("x")),
            DeliveryState::DeadLetter
        );
        assert_eq!(
            delivery_state(None, None, None, Some("x")),
            DeliveryState::Failing
        );
        assert_eq!(
            delivery_state(None, None, None, None),
            DeliveryState::Pending
        );
    }

    #[test]
    fn only_a_dead_letter_is_retried_or_dropped() {
        let id = Uuid::nil();
        let missing = require_dead_letter(id, "hook", None).unwrap_err();
        assert!(matches!(missing, StoreError::NotFound(ref m) if m.contains("has not tried")));
        for state in [
            DeliveryState::Pending,
            DeliveryState::Delivered,
            DeliveryState::Failing,
            DeliveryState::Dropped,
        ] {
            let refused = require_dead_letter(id, "hook", Some(delivery(state))).unwrap_err();
            assert!(
                matches!(refused, StoreError::Conflict(ref m) if m.contains("not a dead letter")),
                "{state:?}: {refused}"
            );
        }
        let dead = require_dead_letter(id, "hook", Some(delivery(DeliveryState::DeadLetter)));
        assert_eq!(dead.unwrap().state, DeliveryState::DeadLetter);
    }

    #[test]
    fn an_alert_is_delivered_when_every_distinct_sink_is_done() {
        let sinks = vec!["a".to_owned(), "b".to_owned(), "a".to_owned()];
        assert!(!every_sink_done(1, &sinks));
        assert!(every_sink_done(2, &sinks));
        assert!(every_sink_done(0, &[]), "no sink owes anything");
    }
}
