//! Each agent's events form a hash chain (`seq` counting from 1, `prev_hash` = the previous
//! event's `chain_hash`), and each event of a host enrolled with a chain key carries a MAC
//! made with the forward-secure key of its `seq` ([`ChainKey`]). Checking both per event
//! proves nothing was dropped, reordered, edited or forged between the moment the agent
//! spooled it and the store, even by root on the host who holds the key of today.
//! Pure: the store hands in what it has.

use driftwatch_common::api::v1::{DriftEvent, EncodedEvent, MAX_SEQ_AHEAD};
use driftwatch_common::chain_key::ChainKey;
use driftwatch_common::hash::ContentHash;
use serde::{Deserialize, Serialize};

/// The last link stored for a host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub hash: ContentHash,
}

/// What an incoming event (with an id never seen before) does to the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The next link: extends the chain.
    Next,
    /// Sequence numbers were skipped: events `from..=to` never arrived (yet).
    Gap { from: u64, to: u64 },
    /// The right sequence number, but `prev_hash` is not the stored head: the agent's
    /// history diverged from what the collector holds.
    Fork { expected: ContentHash },
    /// Below the head and filling a hole left by a gap, agreeing with the stored events on
    /// both sides: stored, nothing to report.
    Late,
    /// Below the head and filling a hole, but its `prev_hash` is not the stored
    /// predecessor's hash, or the stored successor's `prev_hash` is not its hash: an event
    /// spliced into the hole.
    Splice {
        predecessor_differs: bool,
        successor_differs: bool,
    },
    /// Below the head where another event already holds this sequence number.
    Conflict { existing: ContentHash },
}

/// A problem worth an alert of its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum ChainProblem {
    Gap {
        from: u64,
        to: u64,
    },
    Fork {
        seq: u64,
        expected_prev: String,
        got_prev: String,
    },
    /// Two different events claim one sequence number.
    Conflict {
        seq: u64,
    },
    /// An event id seen before, now with different content.
    Replay {
        seq: u64,
        event_id: uuid::Uuid,
    },
    /// A gap-filling event that does not fit between its stored neighbours.
    Splice {
        seq: u64,
        event_id: uuid::Uuid,
        predecessor_differs: bool,
        successor_differs: bool,
    },
    /// An event from a host with a chain key whose MAC is missing or wrong (or whose
    /// number can no longer be verified): refused, not stored.
    Forged {
        seq: u64,
        event_id: uuid::Uuid,
        reason: Forgery,
    },
}

impl ChainProblem {
    /// Whether this problem may have refused (not stored) `event`: a forgery names it, a
    /// conflict only its number.
    pub fn refused(&self, event: &DriftEvent) -> bool {
        match self {
            ChainProblem::Forged { event_id, .. } => *event_id == event.id,
            ChainProblem::Conflict { seq } => *seq == event.seq,
            _ => false,
        }
    }
}

/// Why an event's authentication failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Forgery {
    /// No `mac`, from a host that has a chain key: never accepted as plain.
    MissingMac,
    /// A `mac` that the key of its `seq` did not make.
    WrongMac,
    /// A `seq` below the oldest key the collector kept (a hole given up on) or too far
    /// ahead: the MAC cannot be checked, so the event cannot be trusted.
    Unverifiable,
}

impl Forgery {
    pub fn name(self) -> &'static str {
        match self {
            Forgery::MissingMac => "missing mac",
            Forgery::WrongMac => "wrong mac",
            Forgery::Unverifiable => "unverifiable sequence number",
        }
    }
}

impl ChainProblem {
    pub fn name(&self) -> &'static str {
        match self {
            ChainProblem::Gap { .. } => "gap",
            ChainProblem::Fork { .. } => "fork",
            ChainProblem::Conflict { .. } => "conflict",
            ChainProblem::Replay { .. } => "replay",
            ChainProblem::Splice { .. } => "splice",
            ChainProblem::Forged { .. } => "forged",
        }
    }
}

/// What the store holds around a sequence number below the head.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Neighbours {
    /// The chain hash of a stored event with the same sequence number.
    pub holder: Option<ContentHash>,
    /// The chain hash of the stored event just before (the genesis hash for seq 1).
    pub predecessor: Option<ContentHash>,
    /// The `prev_hash` of the stored event just after.
    pub successor_prev: Option<ContentHash>,
}

/// The body of the chain alert for `problem` on a host (the store queues it with the batch).
pub fn alert_body(
    host_id: uuid::Uuid,
    hostname: &str,
    problem: &ChainProblem,
) -> serde_json::Value {
    serde_json::json!({
        "kind": "chain",
        "host": { "id": host_id, "hostname": hostname },
        "summary": summary(problem, hostname),
        "problem": problem,
    })
}

fn summary(problem: &ChainProblem, hostname: &str) -> String {
    match problem {
        ChainProblem::Gap { from, to } => {
            format!("events {from} to {to} from {hostname} never arrived")
        }
        ChainProblem::Fork { seq, .. } => {
            format!("event {seq} from {hostname} does not continue the stored chain (fork)")
        }
        ChainProblem::Conflict { seq } => {
            format!("two different events from {hostname} claim sequence number {seq}")
        }
        ChainProblem::Replay { seq, event_id } => format!(
            "event {event_id} (seq {seq}) from {hostname} was sent again with different content"
        ),
        ChainProblem::Splice { seq, .. } => format!(
            "event {seq} from {hostname} fills a gap but does not fit its stored neighbours (forged)"
        ),
        ChainProblem::Forged {
            seq,
            event_id,
            reason,
        } => format!(
            "event {event_id} (seq {seq}) from {hostname} was refused as a forgery ({}): the host's spool was edited or the event made elsewhere",
            reason.name()
        ),
    }
}

/// Why a batch's sequence numbers cannot be taken at all (nothing of it is stored): a
/// number more than [`MAX_SEQ_AHEAD`] beyond the highest stored one (taken as the head, it
/// would make every later event "late" and switch the chain check off for the host), or
/// numbers that go down within the batch.
pub fn batch_sequence_problems(events: &[DriftEvent], stored_seq: u64) -> Vec<String> {
    let mut problems = Vec::new();
    let mut previous = 0;
    for (i, event) in events.iter().enumerate() {
        if event.seq > stored_seq.saturating_add(MAX_SEQ_AHEAD) {
            problems.push(format!(
                "events[{i}].seq {} is more than {MAX_SEQ_AHEAD} beyond the highest sequence \
                 number stored for this host ({stored_seq})",
                event.seq
            ));
        } else if event.seq < previous {
            problems.push(format!(
                "events[{i}].seq {} is below the one before it ({previous}): send events in order",
                event.seq
            ));
        }
        previous = event.seq;
    }
    problems
}

/// Judges `event` (whose chain hash is `hash`) against the host's `head`; below the head,
/// against what the store holds around its number.
pub fn check(
    head: Option<Head>,
    event: &DriftEvent,
    hash: ContentHash,
    around: Neighbours,
) -> Verdict {
    let head = head.unwrap_or(Head {
        seq: 0,
        hash: DriftEvent::GENESIS,
    });
    if event.seq <= head.seq {
        if let Some(existing) = around.holder {
            return Verdict::Conflict { existing };
        }
        let predecessor_differs = around.predecessor.is_some_and(|p| p != event.prev_hash);
        let successor_differs = around.successor_prev.is_some_and(|p| p != hash);
        if predecessor_differs || successor_differs {
            return Verdict::Splice {
                predecessor_differs,
                successor_differs,
            };
        }
        return Verdict::Late;
    }
    if event.seq > head.seq + 1 {
        return Verdict::Gap {
            from: head.seq + 1,
            to: event.seq - 1,
        };
    }
    if event.prev_hash != head.hash {
        return Verdict::Fork {
            expected: head.hash,
        };
    }
    Verdict::Next
}

impl Verdict {
    /// The alert this verdict raises, if any.
    pub fn problem(&self, event: &DriftEvent) -> Option<ChainProblem> {
        match self {
            Verdict::Next | Verdict::Late => None,
            Verdict::Gap { from, to } => Some(ChainProblem::Gap {
                from: *from,
                to: *to,
            }),
            Verdict::Fork { expected } => Some(ChainProblem::Fork {
                seq: event.seq,
                expected_prev: expected.to_hex(),
                got_prev: event.prev_hash.to_hex(),
            }),
            Verdict::Conflict { .. } => Some(ChainProblem::Conflict { seq: event.seq }),
            Verdict::Splice {
                predecessor_differs,
                successor_differs,
            } => Some(ChainProblem::Splice {
                seq: event.seq,
                event_id: event.id,
                predecessor_differs: *predecessor_differs,
                successor_differs: *successor_differs,
            }),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Next => "ok",
            Verdict::Gap { .. } => "gap",
            Verdict::Fork { .. } => "fork",
            Verdict::Late => "late",
            Verdict::Conflict { .. } => "conflict",
            Verdict::Splice { .. } => "splice",
        }
    }
}

/// How the store admits one event of a batch whose id it has never stored: the one rule
/// both backends follow (the store reads what it asks for and writes what it decides).
///
/// Per event, in order: [`BatchChain::holder_needed`] says whether the store must read the
/// chain hash of a stored event with the same number; [`BatchChain::admit`] refuses a
/// forgery or a second event at a held number; [`BatchChain::neighbours_needed`] says
/// whether the store must read the stored links around it; [`BatchChain::link`] judges
/// it, moves the head and the keys and names what the evidence shows. After the batch,
/// [`BatchChain::floor_candidate`] is where the keys' floor may rise to (the store
/// advances it past stored events that follow) and [`BatchChain::finish`] raises it.
#[derive(Clone, Debug)]
pub struct BatchChain {
    head: Head,
    keys: Option<ChainKeys>,
    /// Numbers stored by this batch under a chain key, in order.
    stored: Vec<u64>,
}

/// Whether an event gets checked against the chain at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Checked; `Authentic` or `Unauthenticated` (a host without a chain key).
    Admitted(Authenticity),
    /// Refused and not stored; the problem raises an alert.
    Refused(ChainProblem),
}

/// What [`BatchChain::link`] decided for an admitted event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Linked {
    /// The alert this event raises, if any (it is stored all the same).
    pub problem: Option<ChainProblem>,
    /// The word stored with the event: the verdict's name, or `unauthenticated` for the
    /// next link of a host without a chain key.
    pub word: &'static str,
}

impl BatchChain {
    pub fn new(head: Head, keys: Option<ChainKeys>) -> BatchChain {
        BatchChain {
            head,
            keys,
            stored: Vec::new(),
        }
    }

    /// The head as the batch has moved it so far.
    pub fn head(&self) -> Head {
        self.head
    }

    /// The keys as the batch has moved them (`None`: the host has no chain key).
    pub fn keys(&self) -> Option<&ChainKeys> {
        self.keys.as_ref()
    }

    /// Whether another event may already hold `seq` (it is at or below the head).
    pub fn holder_needed(&self, seq: u64) -> bool {
        seq <= self.head.seq
    }

    /// The admission rule. A host with a chain key: every event proves it was spooled with
    /// the key of its number, or it is refused; another event at a number already held
    /// (the stored one was verified) is a conflict, refused too: it must not move drift (a
    /// "restored"). A host without one: admitted unauthenticated (a held number is judged
    /// a conflict by [`check`], and stored).
    pub fn admit(
        &mut self,
        event: &DriftEvent,
        encoded: &EncodedEvent,
        holder: Option<ContentHash>,
    ) -> Admission {
        let authenticity = match (&mut self.keys, holder) {
            (None, _) => Authenticity::Unauthenticated,
            (Some(_), Some(_)) => {
                return Admission::Refused(ChainProblem::Conflict { seq: event.seq });
            }
            (Some(keys), None) => keys.authenticate(event, encoded),
        };
        match authenticity {
            Authenticity::Forged(reason) => Admission::Refused(ChainProblem::Forged {
                seq: event.seq,
                event_id: event.id,
                reason,
            }),
            admitted => Admission::Admitted(admitted),
        }
    }

    /// Whether [`BatchChain::link`] needs the stored links around `seq`: below the head, in
    /// a hole (no holder).
    pub fn neighbours_needed(&self, seq: u64, holder: Option<ContentHash>) -> bool {
        seq <= self.head.seq && holder.is_none()
    }

    /// Judges an admitted event (chain hash `hash`) and moves the head and keys past it.
    /// `around` is what the store read when [`BatchChain::neighbours_needed`] (else only the
    /// holder).
    pub fn link(
        &mut self,
        event: &DriftEvent,
        hash: ContentHash,
        authenticity: Authenticity,
        around: Neighbours,
    ) -> Linked {
        let verdict = check(Some(self.head), event, hash, around);
        if event.seq > self.head.seq {
            self.head = Head {
                seq: event.seq,
                hash,
            };
        }
        if let Some(keys) = &mut self.keys
            && around.holder.is_none()
        {
            keys.stored_up_to(event.seq);
            self.stored.push(event.seq);
        }
        // What the evidence shows: the chain's verdict, and whether it was authenticated.
        let word = match (&verdict, authenticity) {
            (Verdict::Next, Authenticity::Unauthenticated) => "unauthenticated",
            _ => verdict.name(),
        };
        Linked {
            problem: verdict.problem(event),
            word,
        }
    }

    /// With a chain key: the lowest number that may still be missing once this batch is
    /// stored, counting only this batch. Events stored before it may follow a hole it just
    /// filled: the store moves the candidate up past each stored number (no higher than
    /// the head) before [`BatchChain::finish`].
    pub fn floor_candidate(&self) -> Option<u64> {
        let keys = self.keys.as_ref()?;
        let mut floor = keys.floor_seq;
        for stored in &self.stored {
            if *stored == floor {
                floor += 1;
            }
        }
        Some(floor)
    }

    /// Raises the keys' floor to `floor` (see [`ChainKeys::raise_floor`]); the head and the
    /// keys to store.
    pub fn finish(mut self, floor: Option<u64>) -> (Head, Option<ChainKeys>) {
        if let (Some(keys), Some(floor)) = (&mut self.keys, floor) {
            keys.raise_floor(floor);
        }
        (self.head, self.keys)
    }
}

/// What the collector keeps of a host's chain key: the key of the lowest sequence number
/// not yet received (`floor`: every number below it is stored, or was given up on) and the
/// key of the number after the highest stored one (`next`). Any number it may still
/// receive is at or above `floor`, so its key is derived forward from one of them, at most
/// [`MAX_SEQ_AHEAD`] steps (plus a batch) away. Read and written once per batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainKeys {
    pub floor_seq: u64,
    pub floor: ChainKey,
    pub next_seq: u64,
    pub next: ChainKey,
    /// The last key derived while checking a batch: events come in order, so the next one
    /// is usually one step on.
    cursor: Option<(u64, ChainKey)>,
}

/// The result of authenticating one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Authenticity {
    /// Its MAC is the one the key of its `seq` makes.
    Authentic,
    /// The host has no chain key (enrolled before chain keys existed).
    Unauthenticated,
    Forged(Forgery),
}

impl ChainKeys {
    /// A freshly enrolled host: `first` is the key of sequence number 1.
    pub fn enrolled(first: ChainKey) -> ChainKeys {
        ChainKeys::stored(1, first.clone(), 1, first)
    }

    pub fn stored(floor_seq: u64, floor: ChainKey, next_seq: u64, next: ChainKey) -> ChainKeys {
        ChainKeys {
            floor_seq,
            floor,
            next_seq,
            next,
            cursor: None,
        }
    }

    /// The key of `seq`, if it can still be derived within bounds.
    pub fn key_for(&mut self, seq: u64) -> Option<ChainKey> {
        if seq < self.floor_seq || seq > self.next_seq.saturating_add(MAX_SEQ_AHEAD) {
            return None;
        }
        let (mut at, mut key) = if seq >= self.next_seq {
            (self.next_seq, self.next.clone())
        } else {
            (self.floor_seq, self.floor.clone())
        };
        if let Some((cursor_seq, cursor_key)) = &self.cursor
            && *cursor_seq <= seq
            && *cursor_seq > at
        {
            (at, key) = (*cursor_seq, cursor_key.clone());
        }
        while at < seq {
            key.advance();
            at += 1;
        }
        self.cursor = Some((seq, key.clone()));
        Some(key)
    }

    /// Checks `event`'s MAC against the key of its `seq`.
    pub fn authenticate(&mut self, event: &DriftEvent, encoded: &EncodedEvent) -> Authenticity {
        let Some(mac) = event.mac else {
            return Authenticity::Forged(Forgery::MissingMac);
        };
        match self.key_for(event.seq) {
            None => Authenticity::Forged(Forgery::Unverifiable),
            Some(key) if encoded.mac_with(&key) == mac => Authenticity::Authentic,
            Some(_) => Authenticity::Forged(Forgery::WrongMac),
        }
    }

    /// Moves `next` past `seq`, an event just stored above the previous head.
    pub fn stored_up_to(&mut self, seq: u64) {
        if seq < self.next_seq {
            return;
        }
        let mut key = self
            .key_for(seq)
            .expect("a stored number was verifiable, so its key derives");
        key.advance();
        self.next_seq = seq + 1;
        self.next = key;
    }

    /// Raises `floor` to `seq` (every number below it is stored) and never lets it trail
    /// `next` by more than [`MAX_SEQ_AHEAD`]: a hole older than that is given up on, and an
    /// event claiming it later is unverifiable.
    pub fn raise_floor(&mut self, seq: u64) {
        let seq = seq
            .max(self.next_seq.saturating_sub(MAX_SEQ_AHEAD))
            .min(self.next_seq);
        if seq <= self.floor_seq {
            return;
        }
        let key = self
            .key_for(seq)
            .expect("a number between floor and next derives");
        self.floor_seq = seq;
        self.floor = key;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use driftwatch_common::api::v1::{ChangeKind, SeenBy, SubjectKey, SubjectState};
    use time::OffsetDateTime;
    use uuid::Uuid;

    use super::*;

    fn event(seq: u64, prev: ContentHash) -> DriftEvent {
        DriftEvent {
            id: Uuid::now_v7(),
            host_id: Uuid::nil(),
            seq,
            prev_hash: prev,
            subject: SubjectKey("package:nginx".into()),
            kind: ChangeKind::Content,
            changed: vec![],
            before: None,
            after: Some(SubjectState::Fields {
                fields: BTreeMap::new(),
            }),
            diff: None,
            summary: None,
            actor: None,
            seen_by: SeenBy::Watch,
            observed_at: OffsetDateTime::UNIX_EPOCH,
            provenance: None,
            related: None,
            mac: None,
        }
    }

    fn judge(head: Option<Head>, event: &DriftEvent, around: Neighbours) -> Verdict {
        check(head, event, event.chain_hash(), around)
    }

    fn head(event: &DriftEvent) -> Option<Head> {
        Some(Head {
            seq: event.seq,
            hash: event.chain_hash(),
        })
    }

    #[test]
    fn an_absurd_or_descending_seq_refuses_the_batch() {
        let g = DriftEvent::GENESIS;
        let honest = [event(11, g), event(12, g)];
        assert!(batch_sequence_problems(&honest, 10).is_empty());
        // At the bound is fine; one past it, or 2^63-1, is not.
        assert!(batch_sequence_problems(&[event(10 + MAX_SEQ_AHEAD, g)], 10).is_empty());
        let far = batch_sequence_problems(&[event(11 + MAX_SEQ_AHEAD, g)], 10);
        assert_eq!(far.len(), 1);
        assert!(far[0].contains("beyond the highest"), "{far:?}");
        let huge = batch_sequence_problems(&[event(i64::MAX as u64, g)], u64::MAX - 1);
        assert!(
            huge.is_empty(),
            "the bound saturates instead of overflowing"
        );
        let down = batch_sequence_problems(&[event(12, g), event(11, g)], 10);
        assert_eq!(down.len(), 1);
        assert!(down[0].contains("below the one before it"), "{down:?}");
    }

    /// The events of a keyed host, sealed with the key of their number.
    fn keyed(first: &ChainKey, seq: u64, prev: ContentHash) -> DriftEvent {
        let mut e = event(seq, prev);
        let _ = e.seal(&first.forward(seq - 1));
        e
    }

    #[test]
    fn a_batch_admits_authentic_events_and_refuses_forgeries_and_conflicts() {
        let first = ChainKey::from_bytes([7; 32]);
        let genesis = Head {
            seq: 0,
            hash: DriftEvent::GENESIS,
        };
        let mut chain = BatchChain::new(genesis, Some(ChainKeys::enrolled(first.clone())));
        let one = keyed(&first, 1, DriftEvent::GENESIS);
        assert!(!chain.holder_needed(1));
        let admitted = chain.admit(&one, &one.encode(), None);
        assert_eq!(admitted, Admission::Admitted(Authenticity::Authentic));
        let linked = chain.link(
            &one,
            one.chain_hash(),
            Authenticity::Authentic,
            Neighbours::default(),
        );
        assert_eq!((linked.problem, linked.word), (None, "ok"));
        assert_eq!(chain.head().seq, 1);

        // No MAC from a keyed host: refused, not judged.
        let mut bare = event(2, one.chain_hash());
        bare.mac = None;
        assert!(matches!(
            chain.admit(&bare, &bare.encode(), None),
            Admission::Refused(ChainProblem::Forged {
                reason: Forgery::MissingMac,
                ..
            })
        ));
        // A MAC made with another number's key.
        let mut wrong = event(2, one.chain_hash());
        let _ = wrong.seal(&first);
        assert!(matches!(
            chain.admit(&wrong, &wrong.encode(), None),
            Admission::Refused(ChainProblem::Forged {
                reason: Forgery::WrongMac,
                ..
            })
        ));
        // Another event at a number already held: a conflict, refused.
        let rival = keyed(&first, 1, DriftEvent::GENESIS);
        assert!(chain.holder_needed(1));
        assert_eq!(
            chain.admit(&rival, &rival.encode(), Some(one.chain_hash())),
            Admission::Refused(ChainProblem::Conflict { seq: 1 })
        );

        // A gap: judged, stored, alerted; the keys move past it.
        let four = keyed(&first, 4, ContentHash([9; 32]));
        assert_eq!(
            chain.admit(&four, &four.encode(), None),
            Admission::Admitted(Authenticity::Authentic)
        );
        let linked = chain.link(
            &four,
            four.chain_hash(),
            Authenticity::Authentic,
            Neighbours::default(),
        );
        assert_eq!(linked.problem, Some(ChainProblem::Gap { from: 2, to: 3 }));
        assert_eq!(linked.word, "gap");
        assert!(chain.neighbours_needed(2, None), "a hole below the head");
        assert!(!chain.neighbours_needed(5, None));
        // Stored 1 and 4: the floor rises past 1 only (2 and 3 are missing).
        assert_eq!(chain.floor_candidate(), Some(2));
        let (head, keys) = chain.finish(Some(2));
        assert_eq!(head.seq, 4);
        let keys = keys.unwrap();
        assert_eq!((keys.floor_seq, keys.next_seq), (2, 5));
        assert_eq!(keys.next, first.forward(4));
    }

    #[test]
    fn a_host_without_a_chain_key_is_admitted_unauthenticated() {
        let mut chain = BatchChain::new(
            Head {
                seq: 0,
                hash: DriftEvent::GENESIS,
            },
            None,
        );
        let one = event(1, DriftEvent::GENESIS);
        let admitted = chain.admit(&one, &one.encode(), None);
        assert_eq!(admitted, Admission::Admitted(Authenticity::Unauthenticated));
        let linked = chain.link(
            &one,
            one.chain_hash(),
            Authenticity::Unauthenticated,
            Neighbours::default(),
        );
        assert_eq!(linked.word, "unauthenticated", "the evidence says so");
        // A second event at a held number is judged (a conflict), not refused.
        let rival = event(1, DriftEvent::GENESIS);
        let holder = Some(one.chain_hash());
        assert_eq!(
            chain.admit(&rival, &rival.encode(), holder),
            Admission::Admitted(Authenticity::Unauthenticated)
        );
        let linked = chain.link(
            &rival,
            rival.chain_hash(),
            Authenticity::Unauthenticated,
            Neighbours {
                holder,
                ..Neighbours::default()
            },
        );
        assert_eq!(linked.problem, Some(ChainProblem::Conflict { seq: 1 }));
        assert_eq!(chain.floor_candidate(), None);
        let (head, keys) = chain.finish(None);
        assert_eq!((head.seq, keys), (1, None));
    }

    #[test]
    fn a_well_formed_chain_extends() {
        let first = event(1, DriftEvent::GENESIS);
        assert_eq!(judge(None, &first, Neighbours::default()), Verdict::Next);
        let second = event(2, first.chain_hash());
        assert_eq!(
            judge(head(&first), &second, Neighbours::default()),
            Verdict::Next
        );
    }

    #[test]
    fn skipped_numbers_are_a_gap() {
        let first = event(1, DriftEvent::GENESIS);
        let fifth = event(5, ContentHash([7; 32]));
        assert_eq!(
            judge(head(&first), &fifth, Neighbours::default()),
            Verdict::Gap { from: 2, to: 4 }
        );
        // An agent whose first event the collector sees is not 1.
        assert_eq!(
            judge(None, &fifth, Neighbours::default()),
            Verdict::Gap { from: 1, to: 4 }
        );
    }

    #[test]
    fn a_wrong_previous_hash_is_a_fork() {
        let first = event(1, DriftEvent::GENESIS);
        let forged = event(2, ContentHash([1; 32]));
        let verdict = judge(head(&first), &forged, Neighbours::default());
        assert_eq!(
            verdict,
            Verdict::Fork {
                expected: first.chain_hash()
            }
        );
        assert!(matches!(
            verdict.problem(&forged),
            Some(ChainProblem::Fork { seq: 2, .. })
        ));
        assert_eq!(
            judge(None, &event(1, ContentHash([1; 32])), Neighbours::default()).name(),
            "fork"
        );
    }

    #[test]
    fn old_numbers_fill_holes_or_conflict() {
        let third = event(3, ContentHash([3; 32]));
        let second = event(2, ContentHash([2; 32]));
        assert_eq!(
            judge(head(&third), &second, Neighbours::default()),
            Verdict::Late
        );
        assert_eq!(
            judge(head(&third), &second, Neighbours::default()).problem(&second),
            None
        );
        let other = ContentHash([9; 32]);
        assert_eq!(
            judge(
                head(&third),
                &second,
                Neighbours {
                    holder: Some(other),
                    ..Default::default()
                }
            ),
            Verdict::Conflict { existing: other }
        );
    }

    #[test]
    fn a_gap_filler_must_fit_both_neighbours() {
        let first = event(1, DriftEvent::GENESIS);
        let second = event(2, first.chain_hash());
        let third = event(3, second.chain_hash());
        let around = Neighbours {
            holder: None,
            predecessor: Some(first.chain_hash()),
            successor_prev: Some(third.prev_hash),
        };
        assert_eq!(judge(head(&third), &second, around), Verdict::Late);
        // A forged filler: linked to the predecessor, but not what the successor names.
        let forged = event(2, first.chain_hash());
        let verdict = judge(head(&third), &forged, around);
        assert_eq!(
            verdict,
            Verdict::Splice {
                predecessor_differs: false,
                successor_differs: true
            }
        );
        assert!(matches!(
            verdict.problem(&forged),
            Some(ChainProblem::Splice { seq: 2, .. })
        ));
        // Linked to something else than the stored predecessor.
        let astray = event(2, ContentHash([8; 32]));
        assert_eq!(
            judge(
                head(&third),
                &astray,
                Neighbours {
                    successor_prev: None,
                    ..around
                }
            ),
            Verdict::Splice {
                predecessor_differs: true,
                successor_differs: false
            }
        );
        // Neighbours not stored (a wider hole) cannot be compared yet.
        assert_eq!(
            judge(head(&third), &astray, Neighbours::default()),
            Verdict::Late
        );
    }

    fn sealed(keys: &ChainKey, seq: u64) -> (DriftEvent, EncodedEvent) {
        let mut event = event(seq, ContentHash([seq as u8; 32]));
        let encoded = event.seal(&keys.forward(seq - 1));
        (event, encoded)
    }

    #[test]
    fn macs_verify_with_the_key_of_their_number_only() {
        let first = ChainKey::from_bytes([3; 32]);
        let mut keys = ChainKeys::enrolled(first.clone());
        let (one, encoded) = sealed(&first, 1);
        assert_eq!(keys.authenticate(&one, &encoded), Authenticity::Authentic);
        keys.stored_up_to(1);
        assert_eq!((keys.next_seq, &keys.next), (2, &first.next()));
        // Made with the key of 1 but claiming 2 (what root holding an old key would do).
        let mut replayed = event(2, one.chain_hash());
        let replayed_json = replayed.seal(&first);
        assert_eq!(
            keys.authenticate(&replayed, &replayed_json),
            Authenticity::Forged(Forgery::WrongMac)
        );
        let (mut bare, _) = sealed(&first, 2);
        bare.mac = None;
        assert_eq!(
            keys.authenticate(&bare, &bare.encode()),
            Authenticity::Forged(Forgery::MissingMac)
        );
        // An edit after sealing.
        let (mut edited, _) = sealed(&first, 2);
        edited.changed.push("mode".into());
        assert_eq!(
            keys.authenticate(&edited, &edited.encode()),
            Authenticity::Forged(Forgery::WrongMac)
        );
    }

    #[test]
    fn keys_derive_forward_within_bounds_and_never_below_the_floor() {
        let first = ChainKey::from_bytes([4; 32]);
        let mut keys = ChainKeys::enrolled(first.clone());
        // A gap: 5 arrives first; 2..=4 are holes, still verifiable from the floor.
        let (five, encoded) = sealed(&first, 5);
        assert_eq!(keys.authenticate(&five, &encoded), Authenticity::Authentic);
        keys.stored_up_to(5);
        keys.raise_floor(1);
        assert_eq!((keys.floor_seq, keys.next_seq), (1, 6));
        let (three, encoded) = sealed(&first, 3);
        assert_eq!(keys.authenticate(&three, &encoded), Authenticity::Authentic);
        keys.raise_floor(3);
        assert_eq!(keys.floor, first.forward(2));
        let (one, encoded) = sealed(&first, 1);
        assert_eq!(
            keys.authenticate(&one, &encoded),
            Authenticity::Forged(Forgery::Unverifiable),
            "below the floor"
        );
        assert!(keys.key_for(6 + MAX_SEQ_AHEAD).is_some());
        assert!(
            keys.key_for(7 + MAX_SEQ_AHEAD).is_none(),
            "absurdly far ahead"
        );
        // A floor never trails next by more than the bound: old holes are given up.
        keys.next_seq += 3 * MAX_SEQ_AHEAD;
        keys.next = first.forward(keys.next_seq - 1);
        keys.raise_floor(3);
        assert_eq!(keys.floor_seq, keys.next_seq - MAX_SEQ_AHEAD);
        assert_eq!(keys.floor, first.forward(keys.floor_seq - 1));
    }

    #[test]
    fn a_chain_alert_names_the_host_and_says_what_broke() {
        let host = Uuid::from_u128(1);
        let gap = alert_body(host, "web-1", &ChainProblem::Gap { from: 3, to: 4 });
        assert_eq!(gap["kind"], "chain");
        assert_eq!(gap["host"]["hostname"], "web-1");
        assert_eq!(gap["summary"], "events 3 to 4 from web-1 never arrived");
        assert_eq!(gap["problem"]["problem"], "gap");
        let conflict = alert_body(host, "web-1", &ChainProblem::Conflict { seq: 9 });
        assert_eq!(
            conflict["summary"],
            "two different events from web-1 claim sequence number 9"
        );
    }
}
