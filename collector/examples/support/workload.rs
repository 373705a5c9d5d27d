//! The benchmark's workload, shared by the `ingest` (App + SQLite) and `ingest_http` (the
//! real binary over loopback HTTP) examples: the same windows, hosts and events.

use std::collections::BTreeMap;

use driftwatch_collector::clock::rfc3339;
use driftwatch_collector::windows::schedule::Schedule;
use driftwatch_collector::windows::validate::WindowRequest;
use driftwatch_collector::windows::{HostScope, WindowKind};
use driftwatch_common::api::v1::{
    Actor, ChangeKind, DriftEvent, Heartbeat, Provenance, SeenBy, SubjectKey, SubjectState,
};
use driftwatch_common::chain_key::ChainKey;
use driftwatch_common::hash::ContentHash;

pub const BATCH: usize = 500;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

pub fn role(host: usize) -> &'static str {
    if host.is_multiple_of(2) { "web" } else { "db" }
}

pub fn labels(host: usize) -> BTreeMap<String, String> {
    BTreeMap::from([("role".to_owned(), role(host).to_owned())])
}

/// 1% recurring standard windows by label (daily, open from half an hour before `now` for
/// an hour); the rest one-off windows spread over a month around `now`, each naming 3
/// hosts, a quarter of them naming implementers.
pub fn window(w: usize, windows: usize, hosts: usize, now: i64) -> WindowRequest {
    let recurring = (windows / 100).max(1);
    if w < recurring {
        let clock = jiff::Timestamp::from_millisecond(now - HOUR / 2)
            .expect("now is a time")
            .to_zoned(jiff::tz::TimeZone::UTC)
            .strftime("%H:%M")
            .to_string();
        return WindowRequest {
            ticket: format!("STD-{w}"),
            title: "bench".into(),
            kind: WindowKind::Standard,
            hosts: HostScope {
                labels: labels(w),
                ..HostScope::default()
            },
            subjects: vec![format!("package:lib{}*", w % 10)],
            start: rfc3339(now - DAY),
            end: rfc3339(now + 300 * DAY),
            time_zone: "UTC".into(),
            schedule: Some(Schedule {
                weekdays: ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
                    .map(str::to_owned)
                    .to_vec(),
                start: clock,
                duration_minutes: 60,
            }),
            implementers: vec!["ops".into()],
            ..WindowRequest::default()
        };
    }
    let start = now - 15 * DAY + (w as i64 * 30 * DAY / windows as i64);
    WindowRequest {
        ticket: format!("CHG-{w}"),
        title: "bench".into(),
        kind: WindowKind::Emergency,
        hosts: HostScope {
            names: (0..3)
                .map(|i| format!("host-{}", (w * 7 + i) % hosts))
                .collect(),
            ..HostScope::default()
        },
        subjects: vec!["file:/etc/app/**".into(), "package:app*".into()],
        start: rfc3339(start),
        end: rfc3339(start + 4 * HOUR),
        time_zone: "UTC".into(),
        implementers: if w.is_multiple_of(4) {
            vec!["ops".into()]
        } else {
            vec![]
        },
        ..WindowRequest::default()
    }
}

/// 5% of changes by an unknown actor, 5% by a user no window names, the rest by `ops`.
fn actor(n: u64) -> Option<Actor> {
    let login = match n % 20 {
        0 => return None,
        1 => "mallory",
        _ => "ops",
    };
    Some(Actor {
        source: "fanotify".into(),
        uid: Some(0),
        user: Some("root".into()),
        login_uid: Some(1000),
        login_user: Some(login.into()),
        ..Actor::default()
    })
}

/// One agent's chain: its host id, last seq and chain hash, and the chain key of the next
/// seq (each event is MAC'd like a real agent's, and the key ratcheted).
pub struct Chain {
    pub host_id: uuid::Uuid,
    pub seq: u64,
    pub prev: ContentHash,
    pub key: Option<ChainKey>,
}

impl Chain {
    /// `key`: the chain key the enrollment answer carried.
    pub fn new(host_id: uuid::Uuid, key: Option<ChainKey>) -> Chain {
        Chain {
            host_id,
            seq: 0,
            prev: DriftEvent::GENESIS,
            key,
        }
    }

    /// The next `count` events: files and packages in turn, a third of the files with
    /// package provenance (one in two of those not the packaged content).
    pub fn batch(&mut self, count: usize) -> Vec<DriftEvent> {
        (0..count)
            .map(|i| {
                self.seq += 1;
                let seq = self.seq;
                let file = i.is_multiple_of(2);
                let mut event = DriftEvent {
                    id: uuid::Uuid::now_v7(),
                    host_id: self.host_id,
                    seq,
                    prev_hash: self.prev,
                    subject: SubjectKey(if file {
                        format!("file:/etc/app/f{}", seq % 50)
                    } else {
                        format!("package:lib{}", seq % 50)
                    }),
                    kind: ChangeKind::Content,
                    changed: vec!["version".into()],
                    before: None,
                    after: Some(SubjectState::Fields {
                        fields: BTreeMap::from([("version".to_owned(), seq.to_string())]),
                    }),
                    diff: None,
                    actor: actor(seq),
                    seen_by: SeenBy::Watch,
                    observed_at: time::OffsetDateTime::now_utc(),
                    provenance: (file && seq.is_multiple_of(3)).then(|| Provenance {
                        manager: "dpkg".into(),
                        package: "app".into(),
                        version: "1".into(),
                        matches_package: !seq.is_multiple_of(6),
                    }),
                    related: None,
                    summary: None,
                    mac: None,
                };
                self.prev = match &mut self.key {
                    Some(key) => {
                        let sealed = event.seal(key);
                        key.advance();
                        sealed.chain_hash()
                    }
                    None => event.chain_hash(),
                };
                event
            })
            .collect()
    }
}

/// A heartbeat from a freshly enrolled agent (nothing spooled yet), as every agent sends
/// one when it starts: the collector bounds the spool time of the events that follow by
/// its arrival, so matching runs on collector-side bounds as in production.
pub fn heartbeat(host_id: uuid::Uuid) -> Heartbeat {
    Heartbeat {
        host_id,
        sent_at: time::OffsetDateTime::now_utc(),
        inventory: Default::default(),
        health: Default::default(),
        last_seq: 0,
        results: Vec::new(),
        baseline: None,
    }
}

/// p-th percentile of sorted latencies.
pub fn percentile(sorted: &[std::time::Duration], p: usize) -> std::time::Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}
