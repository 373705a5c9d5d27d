//! Version 1 of the agent <-> collector wire format (JSON over HTTPS, under `/api/v1`).
//!
//! Agent endpoints (bearer token = the agent credential, except enroll):
//!
//! | method and path          | body            | answer             |
//! |--------------------------|-----------------|--------------------|
//! | `POST /api/v1/enroll`    | [`EnrollRequest`] | [`EnrollResponse`] |
//! | `POST /api/v1/events`    | [`EventBatch`]  | [`IngestAck`]      |
//! | `POST /api/v1/heartbeat` | [`Heartbeat`]   | [`HeartbeatResponse`] |
//!
//! Errors are [`ApiErrorBody`] with a stable `code`. Ingest is idempotent:
//! an event id seen before is counted as a duplicate, never stored twice.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::chain_key::{ChainKey, Mac};
use crate::hash::ContentHash;
use crate::pathbytes;
use crate::state::FileState;

/// The URL prefix of this version.
pub const PREFIX: &str = "/api/v1";

/// How far beyond the highest stored sequence number of a host an event's `seq` may be.
/// An honest agent never skips numbers (it deletes only what was acknowledged); the bound
/// keeps one absurd `seq` from moving the chain's head out of reach, and bounds the key
/// derivations the collector does to verify an event.
pub const MAX_SEQ_AHEAD: u64 = 100_000;

/// The reserved subject of the agent's own baseline: a local re-baseline (`baseline init`,
/// `baseline accept` run on an enrolled host without a collector command) is reported as a
/// drift event on it, `before`/`after` carrying the old and new [`BaselineAnchor`] fields.
pub const BASELINE_SUBJECT: &str = "driftwatch:baseline";

/// What the agent says about its baseline, so the collector can anchor it: the root (an
/// unkeyed BLAKE3 digest over every entry, history row and state entry and the baseline's
/// creation time and policy digest; not the time of the last full re-hash) and when the
/// baseline was created (tells a replaced baseline from one edited in place).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaselineAnchor {
    pub root: ContentHash,
    /// RFC 3339, the baseline's `created_at`.
    pub created_at: String,
}

/// What is tracked: `file:/etc/ssh/sshd_config` (the path escaped as in
/// [`pathbytes::escape`]) or a state key such as `package:openssh-server`,
/// `sysctl:net.ipv4.ip_forward`, `port:tcp/22`, `user:deploy`, `module:br_netfilter`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SubjectKey(pub String);

impl SubjectKey {
    pub fn file(path: &[u8]) -> Self {
        SubjectKey(format!("file:{}", pathbytes::escape(path)))
    }

    /// The namespace before the first `:` (`file`, `package`, `sysctl`...).
    pub fn namespace(&self) -> &str {
        self.0.split_once(':').map_or("", |(ns, _)| ns)
    }

    /// The part after the namespace: for files, the escaped path.
    pub fn name(&self) -> &str {
        self.0.split_once(':').map_or(&self.0, |(_, name)| name)
    }
}

impl fmt::Display for SubjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A subject's state: a file's recorded attributes, or the fields of a state
/// key (`{"version": "1:9.2p1-2", "arch": "amd64"}` for a package).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SubjectState {
    File(FileState),
    Fields { fields: BTreeMap<String, String> },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Added,
    Removed,
    /// Content, type or link target changed.
    Content,
    /// Only metadata changed (mode, owner, xattrs...).
    Attributes,
    /// The subject is back in its baseline state: open drift on it resolves.
    Restored,
}

/// How the agent saw the change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeenBy {
    /// The real-time watch.
    Watch,
    /// A periodic or requested scan (also repairs a dropped kernel event).
    Scan,
    /// The scan at agent start: the change happened while the agent was down.
    Startup,
}

/// Who made a change, as far as the kernel let the agent see.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// `fanotify`, `audit`, or `none` when attribution was not available.
    pub source: String,
    pub pid: Option<u32>,
    pub comm: Option<String>,
    pub exe: Option<String>,
    pub uid: Option<u32>,
    pub user: Option<String>,
    /// Audit login uid: the person behind sudo.
    pub login_uid: Option<u32>,
    pub login_user: Option<String>,
    pub session: Option<u32>,
    /// The writer had exited before /proc could be read.
    #[serde(default)]
    pub exited: bool,
    /// Why the actor is unknown or partial.
    pub reason: Option<String>,
    /// The writer's controlling terminal (`pts/3`), if it had one. Absent from the
    /// JSON when unknown, so events without it keep their canonical form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tty: Option<String>,
}

/// What the package manager says about a changed file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// `dpkg` or `rpm`.
    pub manager: String,
    pub package: String,
    pub version: String,
    /// True when the content matches the packaged file.
    pub matches_package: bool,
}

/// One observed difference between a subject and its baseline.
///
/// Events form a per-agent hash chain: `seq` counts up from 1 and
/// `prev_hash` is the [`DriftEvent::chain_hash`] of the previous event (all
/// zeros for the first), so the collector can prove nothing was dropped,
/// reordered or forged between host and collector. Each event is also
/// authenticated by `mac` with a forward-secure per-agent key, so even root on
/// the host cannot re-link or edit events spooled before it took the host.
/// The collector refuses (400) a `seq` more than [`MAX_SEQ_AHEAD`] beyond the
/// highest it stored for the host, and a batch whose `seq`s go down.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftEvent {
    /// Globally unique (UUIDv7, time-ordered).
    pub id: Uuid,
    pub host_id: Uuid,
    pub seq: u64,
    pub prev_hash: ContentHash,
    pub subject: SubjectKey,
    pub kind: ChangeKind,
    /// Names of the attributes or fields that differ.
    #[serde(default)]
    pub changed: Vec<String>,
    pub before: Option<SubjectState>,
    pub after: Option<SubjectState>,
    /// Unified diff of a text file, secrets masked; bounded in size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    /// The change in words, for state subjects ("user eve added with uid 0").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
    pub seen_by: SeenBy,
    /// Agent clock.
    #[serde(with = "time::serde::rfc3339")]
    pub observed_at: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
    /// The other half of a rename (its event id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub related: Option<Uuid>,
    /// The event's authentication tag: BLAKE3 keyed with the agent's chain key of this
    /// `seq` ([`ChainKey`], issued at enrollment and ratcheted forward once per event) over
    /// `0x01` and the canonical JSON (every field above, so `prev_hash` too, never `mac`
    /// itself). Required from every host enrolled with a chain key: missing or wrong, the
    /// event is refused as a forgery and raises a chain alert. Hosts enrolled before chain
    /// keys existed send none and are shown as "chain unauthenticated". Always the last field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<Mac>,
}

/// An event's JSON (exactly what is sent, spooled and stored) and where its canonical
/// form, the JSON without `mac`, ends.
#[derive(Clone, Debug)]
pub struct EncodedEvent {
    pub json: String,
    canonical_end: usize,
}

impl EncodedEvent {
    /// The canonical bytes in two pieces (no copy): `mac` is the last field, so the
    /// canonical JSON is the JSON cut before `,"mac":...` and closed again.
    pub fn canonical(&self) -> [&[u8]; 2] {
        if self.canonical_end == self.json.len() {
            [self.json.as_bytes(), b""]
        } else {
            [&self.json.as_bytes()[..self.canonical_end], b"}"]
        }
    }

    /// The chain link: BLAKE3 over the canonical bytes.
    pub fn chain_hash(&self) -> ContentHash {
        let mut hasher = blake3::Hasher::new();
        for piece in self.canonical() {
            hasher.update(piece);
        }
        hasher.finalize().into()
    }

    /// The MAC `key` gives these canonical bytes.
    pub fn mac_with(&self, key: &ChainKey) -> Mac {
        key.mac(&self.canonical())
    }
}

impl DriftEvent {
    /// The chain link: BLAKE3 over the event's canonical JSON (which includes
    /// `prev_hash` but not `mac`). Canonical = this struct serialized by serde_json,
    /// fields in declaration order, `mac` left out.
    pub fn chain_hash(&self) -> ContentHash {
        self.encode().chain_hash()
    }

    /// `prev_hash` of the first event of an agent.
    pub const GENESIS: ContentHash = ContentHash([0; 32]);

    /// The event's JSON, with its canonical part marked.
    pub fn encode(&self) -> EncodedEvent {
        let json = serde_json::to_string(self).expect("events always serialize");
        let Some(mac) = &self.mac else {
            let canonical_end = json.len();
            return EncodedEvent {
                json,
                canonical_end,
            };
        };
        let suffix = mac_suffix(mac);
        if json.ends_with(&suffix) {
            let canonical_end = json.len() - suffix.len();
            return EncodedEvent {
                json,
                canonical_end,
            };
        }
        // Not expected (serde_json writes fields in order, compactly): take the long way.
        let mut bare = self.clone();
        bare.mac = None;
        let canonical = bare.encode();
        let canonical_end = canonical.json.len() - 1;
        let json = format!("{}{suffix}", &canonical.json[..canonical_end]);
        EncodedEvent {
            json,
            canonical_end,
        }
    }

    /// Sets `mac` to the MAC of this event under `key` (the key of its `seq`) and returns
    /// the JSON to spool and send.
    pub fn seal(&mut self, key: &ChainKey) -> EncodedEvent {
        self.mac = None;
        let bare = self.encode();
        let mac = bare.mac_with(key);
        let canonical_end = bare.json.len() - 1;
        let mut json = bare.json;
        json.truncate(canonical_end);
        json.push_str(&mac_suffix(&mac));
        self.mac = Some(mac);
        EncodedEvent {
            json,
            canonical_end,
        }
    }
}

fn mac_suffix(mac: &Mac) -> String {
    format!(",\"mac\":\"{}\"}}", mac.to_hex())
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventBatch {
    pub events: Vec<DriftEvent>,
}

/// Sent only after the batch is committed: the agent may then delete it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestAck {
    pub accepted: u32,
    /// Already stored before (a retry): harmless.
    pub duplicates: u32,
    /// The highest sequence number stored for this host.
    pub last_seq: u64,
    /// Events refused as forgeries (missing or wrong `mac` from a host with a chain key, a
    /// sequence number no longer verifiable, or another event at a number already stored):
    /// not stored, each recorded in a chain alert. Sending them again cannot change that, so the agent deletes them like the
    /// accepted ones. `accepted + duplicates + rejected` is the batch's length. Left out
    /// when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rejected: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollRequest {
    /// The one-time enrollment token an administrator issued.
    pub token: String,
    pub hostname: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub agent_version: String,
    /// The baseline as it is at enrollment (absent: none yet, or an older agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<BaselineAnchor>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollResponse {
    pub host_id: Uuid,
    /// The agent's own credential: it can only report and read its commands.
    pub credential: String,
    /// The chain key of sequence number 1 (64 hex digits): the agent MACs each event with
    /// the key of its `seq` and ratchets it forward, erasing the old one (see
    /// [`DriftEvent::mac`]). Keep it only in the spool, never beside the credential.
    /// Absent from collectors older than chain keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_key: Option<ChainKey>,
}

/// Host inventory, from sysinfo.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    pub hostname: String,
    pub os: String,
    pub kernel: String,
    pub uptime_secs: u64,
    pub cpus: u32,
    pub memory_bytes: u64,
}

/// What the agent cannot see right now: coverage is a signal.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    /// Subtrees without a real-time watch (scanned periodically instead).
    #[serde(default)]
    pub unwatched: Vec<String>,
    /// Kernel event queue overflows since start.
    pub dropped_event_batches: u64,
    /// Subjects skipped for errors in the last scan.
    pub unreadable: u64,
    /// Why attribution is unavailable, if it is.
    pub attribution_unavailable: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_full_scan_at: Option<OffsetDateTime>,
    /// When the state sources (packages, sysctl...) were last polled.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_source_poll_at: Option<OffsetDateTime>,
    /// Each enabled state source as of its last poll.
    #[serde(default)]
    pub sources: Vec<SourceCoverage>,
}

/// How one state source answered its last poll.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceCoverage {
    /// The source's policy name: `package`, `sysctl`, `module`, `port`, `user`.
    pub name: String,
    pub condition: SourceCondition,
    /// Subjects collected (0 unless `ok`).
    pub subjects: u64,
    /// Why it is not `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Whether a state source could be compared. Anything but `ok` leaves its
/// subjects unverified: a coverage signal, never drift.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceCondition {
    Ok,
    /// The facility does not exist on this host (no dpkg, no /proc/modules...).
    Unavailable,
    /// It exists but could not be read.
    Failed,
    /// Its collection did not finish in time.
    TimedOut,
}

impl SourceCondition {
    pub fn name(self) -> &'static str {
        match self {
            SourceCondition::Ok => "ok",
            SourceCondition::Unavailable => "unavailable",
            SourceCondition::Failed => "failed",
            SourceCondition::TimedOut => "timed out",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentHealth {
    pub agent_version: String,
    pub cpu_percent: f32,
    pub rss_bytes: u64,
    pub spool_depth: u64,
    /// The spool reached its bound: events are being held back (never dropped).
    pub spool_full: bool,
    pub baseline_entries: u64,
    /// The baseline failed its integrity check.
    pub baseline_tampered: bool,
    pub coverage: Coverage,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub host_id: Uuid,
    /// Agent clock, for skew detection.
    #[serde(with = "time::serde::rfc3339")]
    pub sent_at: OffsetDateTime,
    pub inventory: Inventory,
    pub health: AgentHealth,
    /// The last sequence number the agent has committed to its spool when it built this
    /// heartbeat. The collector bounds the spool time of each event with it, on its own
    /// clock: authorization never rests on `observed_at`.
    pub last_seq: u64,
    /// Outcomes of commands received earlier.
    #[serde(default)]
    pub results: Vec<CommandResult>,
    /// The baseline the agent runs on now (absent from older agents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<BaselineAnchor>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    #[serde(with = "time::serde::rfc3339")]
    pub server_time: OffsetDateTime,
    #[serde(default)]
    pub commands: Vec<AgentCommand>,
}

/// A command from the collector to one agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentCommand {
    /// Take `state` as the subject's new baseline, but only if the subject is
    /// in exactly that state now (`None`: accept that it no longer exists).
    BaselineAccept {
        command_id: Uuid,
        subject: SubjectKey,
        state: Option<SubjectState>,
        /// The change window whose close-out this is.
        window_id: Option<Uuid>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResult {
    pub command_id: Uuid,
    pub outcome: CommandOutcome,
    /// The baseline after the command was handled: for an `applied` accept, the root the
    /// collector expects from now on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<BaselineAnchor>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CommandOutcome {
    Applied,
    /// The subject changed again after review: the acceptance does not apply.
    Mismatch {
        current: Option<SubjectState>,
    },
    Failed {
        message: String,
    },
}

/// The body of every error answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiErrorBody {
    pub error: ApiError,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// Stable, machine-readable: `bad_request`, `unauthorized`, `forbidden`,
    /// `not_found`, `conflict`, `payload_too_large`, `unsupported_version`, `internal`;
    /// also `method_not_allowed`, `timeout`, `unsupported_media_type` (a Content-Encoding
    /// other than gzip), `unavailable` and `not_supported` (a planned feature, HTTP 501).
    pub code: String,
    /// What is wrong, for a person.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::FileKind;

    fn event(seq: u64, prev: ContentHash) -> DriftEvent {
        DriftEvent {
            id: Uuid::now_v7(),
            host_id: Uuid::nil(),
            seq,
            prev_hash: prev,
            subject: SubjectKey::file(b"/etc/hosts"),
            kind: ChangeKind::Attributes,
            changed: vec!["mode".into()],
            before: None,
            after: Some(SubjectState::Fields {
                fields: BTreeMap::from([("version".into(), "1.0".into())]),
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

    #[test]
    fn sealed_events_keep_their_chain_hash_and_verify() {
        let key = ChainKey::from_bytes([5; 32]);
        let mut sealed = event(1, DriftEvent::GENESIS);
        let bare_hash = sealed.chain_hash();
        let encoded = sealed.seal(&key);
        let mac = sealed.mac.expect("sealed");
        assert!(
            encoded
                .json
                .ends_with(&format!(",\"mac\":\"{}\"}}", mac.to_hex()))
        );
        assert_eq!(
            encoded.chain_hash(),
            bare_hash,
            "mac is not part of the link"
        );
        // What the collector does with the JSON it received.
        let received: DriftEvent = serde_json::from_str(&encoded.json).unwrap();
        let again = received.encode();
        assert_eq!(again.json, encoded.json);
        assert_eq!(again.chain_hash(), bare_hash);
        assert_eq!(again.mac_with(&key), mac);
        assert_ne!(again.mac_with(&key.next()), mac, "the key of another seq");
        let mut edited = received.clone();
        edited.seq = 2;
        assert_ne!(
            edited.encode().mac_with(&key),
            mac,
            "an edit breaks the mac"
        );
    }

    #[test]
    fn events_round_trip_and_chain() {
        let first = event(1, DriftEvent::GENESIS);
        let json = serde_json::to_string(&first).unwrap();
        let back: DriftEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back, first);
        assert_eq!(back.chain_hash(), first.chain_hash());
        let second = event(2, first.chain_hash());
        assert_ne!(second.chain_hash(), first.chain_hash());
    }

    #[test]
    fn readers_tolerate_unknown_fields() {
        let mut value = serde_json::to_value(event(1, DriftEvent::GENESIS)).unwrap();
        value["added_in_v1_5"] = serde_json::json!(true);
        assert!(serde_json::from_value::<DriftEvent>(value).is_ok());
    }

    #[test]
    fn subject_keys_name_their_namespace() {
        let key = SubjectKey::file(b"/etc/a\nb");
        assert_eq!(key.0, "file:/etc/a\\x0ab");
        assert_eq!(key.namespace(), "file");
        assert_eq!(key.name(), "/etc/a\\x0ab");
        assert_eq!(SubjectKey("package:nginx".into()).namespace(), "package");
    }

    #[test]
    fn file_states_are_tagged() {
        let state = SubjectState::File(FileState {
            kind: FileKind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: 1,
            mtime_ns: 0,
            ctime_ns: 0,
            inode: 1,
            device: 1,
            nlink: 1,
            rdev: None,
            link_target: None,
            content_hash: None,
            xattrs: None,
        });
        let json = serde_json::to_value(&state).unwrap();
        assert_eq!(json["type"], "file");
        assert_eq!(json["mode"], 420);
    }
}
