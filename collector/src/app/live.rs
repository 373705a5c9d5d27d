//! The live drift stream's side in `App` (rules in `crate::live`): who may follow, how
//! many at once, and the stream itself. Operations that change drift (ingest, resolve, a
//! window's approval or close-out) poke [`Live`] after their commit; a poke only wakes the
//! streams, which read the store after their own cursor, so a missed or early poke loses
//! nothing (a slow fallback read covers changes another collector on the same database made).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::identity::{Principal, Role};
use crate::live::{self, ChangeView, ReadyView, ResetView, Start};
use crate::store::Store;

use super::{App, Error, Result, require};

/// A stream reads the store at least this often, even without a poke (changes made by
/// another collector of the same database).
pub const FALLBACK_READ: Duration = Duration::from_secs(5);

/// Name of the gauge of open streams in `/metrics`.
pub const OPEN_STREAMS: &str = "driftwatch_live_streams";

/// The streams' shared state: the poke, the stop, the cap, the last pages read.
pub(super) struct Live {
    poke: watch::Sender<u64>,
    closing: watch::Sender<bool>,
    slots: Arc<Semaphore>,
    max: usize,
    heartbeat: Duration,
    /// The latest pages read, most recent last, shared by the streams at the same cursor:
    /// one commit wakes every stream, and 200 streams at one cursor read the store once.
    pages: tokio::sync::Mutex<VecDeque<SharedPage>>,
}

/// Pages kept for streams at other cursors (a stream that fell behind reads its own).
const SHARED_PAGES: usize = 4;

/// One page of changes read after `after`, with the poke generation its reader had seen
/// before reading: it holds every change committed before that poke.
struct SharedPage {
    after: i64,
    generation: u64,
    items: Arc<Vec<LiveItem>>,
}

impl Live {
    pub(super) fn new(limits: &driftwatch_config::collector::Limits) -> Self {
        let max = limits.max_streams.max(1) as usize;
        Live {
            poke: watch::channel(0).0,
            closing: watch::channel(false).0,
            slots: Arc::new(Semaphore::new(max)),
            max,
            heartbeat: limits.stream_heartbeat,
            pages: tokio::sync::Mutex::new(VecDeque::with_capacity(SHARED_PAGES)),
        }
    }

    /// The changes after `after` as a stream that has seen poke `generation` needs them:
    /// a page another stream read after seeing that poke (or a later one) is reused,
    /// else the store is read and the page kept. `fresh`: the stream woke without a
    /// poke (another collector's changes), so only a read from now will do.
    async fn changes_after<S: Store>(
        &self,
        store: &S,
        after: i64,
        generation: u64,
        fresh: bool,
    ) -> crate::store::Result<Arc<Vec<LiveItem>>> {
        // Held across the read: streams woken together wait for the first one's page
        // instead of all reading the store.
        let mut pages = self.pages.lock().await;
        if !fresh
            && let Some(page) = pages
                .iter()
                .rev()
                .find(|p| p.after == after && p.generation >= generation)
        {
            return Ok(Arc::clone(&page.items));
        }
        let page = store.drift_changes(after, live::PAGE).await?;
        let items: Arc<Vec<LiveItem>> = Arc::new(
            page.changes
                .iter()
                .map(|c| LiveItem::Change(ChangeView::from(c)))
                .collect(),
        );
        pages.retain(|p| p.after != after);
        if pages.len() >= SHARED_PAGES {
            pages.pop_front();
        }
        pages.push_back(SharedPage {
            after,
            generation,
            items: Arc::clone(&items),
        });
        Ok(items)
    }

    /// Wakes every stream (after a commit that changed drift).
    pub(super) fn poke(&self) {
        self.poke.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// One item of a drift stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LiveItem {
    /// First on a stream opened without a cursor: where it follows from (the event id).
    Ready(ReadyView),
    /// A drift change; its `seq` is the event id.
    Change(ChangeView),
    /// The client missed too much or brought an unknown cursor: reload, then go on after
    /// `head` (the event id).
    Reset(ResetView),
    /// The collector is stopping: the stream ends after this (the client reconnects with
    /// its last id).
    Bye,
}

impl LiveItem {
    /// The event id (cursor) it carries, if any.
    pub fn cursor(&self) -> Option<i64> {
        match self {
            LiveItem::Ready(view) => Some(view.head),
            LiveItem::Change(view) => Some(view.seq),
            LiveItem::Reset(view) => Some(view.head),
            LiveItem::Bye => None,
        }
    }
}

/// An open drift stream: [`DriftStream::next`] until `None`. Holds one of the
/// `limits.max_streams` slots and counts in the open-streams gauge until dropped.
pub struct DriftStream<S: Store> {
    app: Arc<App<S>>,
    cursor: i64,
    pending: VecDeque<LiveItem>,
    poke: watch::Receiver<u64>,
    closing: watch::Receiver<bool>,
    ended: bool,
    /// The last wait ended without a poke: the next read must not reuse a shared page.
    fresh: bool,
    _slot: Slot,
}

/// The slot and the gauge, given back on drop.
struct Slot(#[allow(dead_code)] OwnedSemaphorePermit);

impl Slot {
    fn new(permit: OwnedSemaphorePermit) -> Self {
        metrics::gauge!(OPEN_STREAMS).increment(1.0);
        Slot(permit)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        metrics::gauge!(OPEN_STREAMS).decrement(1.0);
    }
}

impl<S: Store> App<S> {
    /// Opens a live stream of drift changes for `actor` (the roles that may list drift),
    /// after `resume` (a `Last-Event-ID`; `None`: from now on). The API's bearer handler
    /// and the web dashboard's session handler both call this with their `Principal`.
    /// `Error::Unavailable` when `limits.max_streams` streams are open.
    pub async fn drift_stream(
        self: &Arc<Self>,
        actor: &Principal,
        resume: Option<i64>,
    ) -> Result<DriftStream<S>> {
        require(actor, &Role::PEOPLE, "following drift")?;
        let permit = Arc::clone(&self.live.slots)
            .try_acquire_owned()
            .map_err(|_| {
                Error::Unavailable(format!(
                    "{} live drift streams are open, the most this collector serves \
                     (limits.max_streams); try again later",
                    self.live.max
                ))
            })?;
        let slot = Slot::new(permit);
        // Subscribed before the first read: a change committed after it wakes the stream.
        let mut poke = self.live.poke.subscribe();
        poke.borrow_and_update();
        let first = match resume {
            None => self.store.drift_changes(0, 0).await?,
            Some(cursor) => {
                self.store
                    .drift_changes(cursor, live::MAX_REPLAY + 1)
                    .await?
            }
        };
        let (cursor, pending) = match live::start(resume, first) {
            Start::Replay { from, changes } => {
                let cursor = changes.last().map_or(from, |c| c.seq);
                let mut pending: VecDeque<LiveItem> = changes
                    .iter()
                    .map(|c| LiveItem::Change(ChangeView::from(c)))
                    .collect();
                if resume.is_none() {
                    pending.push_front(LiveItem::Ready(ReadyView { head: from }));
                }
                (cursor, pending)
            }
            Start::Reset { head, why } => {
                tracing::info!(resume = ?resume, head, why, "live drift stream reset");
                let reset = LiveItem::Reset(ResetView {
                    head,
                    reason: why.into(),
                });
                (head, VecDeque::from([reset]))
            }
        };
        Ok(DriftStream {
            app: Arc::clone(self),
            cursor,
            pending,
            poke,
            closing: self.live.closing.subscribe(),
            ended: false,
            fresh: false,
            _slot: slot,
        })
    }

    /// The stream's head now (the newest drift change's cursor), for the roles that may
    /// follow drift. A page read after it opens its stream with `?after=` this cursor, so
    /// nothing that changed between rendering and connecting is missed.
    pub async fn drift_stream_head(&self, actor: &Principal) -> Result<i64> {
        require(actor, &Role::PEOPLE, "following drift")?;
        Ok(self.store.drift_changes(0, 0).await?.head)
    }

    /// Ends every open drift stream (a `bye` event, then the end), so a graceful
    /// shutdown does not wait for them. Streams opened later end at once.
    pub fn close_streams(&self) {
        let _ = self.live.closing.send(true);
    }

    /// How often an open stream sends a heartbeat comment (`limits.stream_heartbeat_secs`).
    pub fn stream_heartbeat(&self) -> Duration {
        self.live.heartbeat
    }

    /// Wakes the drift streams: called after every commit that may have changed drift.
    pub(super) fn drift_changed(&self) {
        self.live.poke();
    }
}

impl<S: Store> DriftStream<S> {
    /// The next item, waiting for one; `None` when the stream ended (the collector stops,
    /// or the store failed: the client reconnects with its last id).
    pub async fn next(&mut self) -> Option<LiveItem> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            if self.ended {
                return None;
            }
            if *self.closing.borrow() {
                self.ended = true;
                return Some(LiveItem::Bye);
            }
            // Marked seen before reading: a poke from here on wakes the wait below.
            let generation = *self.poke.borrow_and_update();
            let fresh = std::mem::take(&mut self.fresh);
            let read = self
                .app
                .live
                .changes_after(&self.app.store, self.cursor, generation, fresh)
                .await;
            let items = match read {
                Ok(items) => items,
                Err(err) => {
                    tracing::warn!(error = %err, "live drift stream ends: cannot read drift changes");
                    return None;
                }
            };
            if let Some(last) = items.last().and_then(LiveItem::cursor) {
                self.cursor = last;
                self.pending.extend(items.iter().cloned());
                continue;
            }
            tokio::select! {
                changed = self.poke.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
                _ = self.closing.changed() => {}
                () = tokio::time::sleep(FALLBACK_READ) => self.fresh = true,
            }
        }
    }

    /// The cursor of the last change read from the store.
    pub fn cursor(&self) -> i64 {
        self.cursor
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use driftwatch_common::api::v1::DriftEvent;

    use super::*;
    use crate::alerts::Sinks;
    use crate::app::Settings;
    use crate::clock::{ManualClock, Millis};
    use crate::identity::Principal;
    use crate::matcher::Outcome;
    use crate::store::conformance_evidence::{enroll, event};
    use crate::store::{Decided, SqliteStore};

    const T0: Millis = 1_800_000_000_000;

    fn decided(event: &DriftEvent) -> Decided {
        let at = crate::clock::from_offset(event.observed_at);
        Decided {
            event_time: at,
            spool: crate::spool_time::SpoolTime {
                spooled_after: at,
                spooled_before: at,
                ..Default::default()
            },
            event: event.clone(),
            outcome: Outcome::Untraced,
        }
    }

    async fn app(max_streams: u32) -> Arc<App<SqliteStore>> {
        let settings = Settings {
            hold_ms: 60_000,
            burst_ms: 10_000,
            tolerance_ms: 60_000,
            silent_after_ms: 300_000,
            emergency_approval_ms: 3_600_000,
            max_body_bytes: 1 << 16,
            max_export_rows: 10,
            limits: driftwatch_config::collector::Limits {
                max_streams,
                ..Default::default()
            },
            metrics: Default::default(),
        };
        let store = SqliteStore::open_in_memory().unwrap();
        Arc::new(
            App::new(
                store,
                settings,
                Arc::new(ManualClock::at(T0)),
                Sinks::none(),
            )
            .await
            .unwrap(),
        )
    }

    fn security() -> Principal {
        Principal {
            token_id: uuid::Uuid::new_v4(),
            name: "sam".into(),
            role: Role::Security,
            host_id: None,
        }
    }

    async fn next<S: Store>(stream: &mut DriftStream<S>, within: Duration) -> Option<LiveItem> {
        tokio::time::timeout(within, stream.next())
            .await
            .expect("an item in time")
    }

    fn subject(item: Option<LiveItem>) -> String {
        match item {
            Some(LiveItem::Change(view)) => view.subject,
            other => panic!("not a change: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_stream_is_woken_capped_resumed_and_closed() {
        let app = app(1).await;
        let host = enroll(&app.store, "web-1", 41).await;
        let mut stream = app.drift_stream(&security(), None).await.unwrap();
        assert_eq!(
            next(&mut stream, Duration::from_secs(1)).await,
            Some(LiveItem::Ready(ReadyView { head: 0 }))
        );
        // The cap: one stream here.
        assert!(matches!(
            app.drift_stream(&security(), None).await,
            Err(Error::Unavailable(why)) if why.contains("max_streams")
        ));

        // A poke after the commit wakes the waiting stream at once (well before the
        // fallback read).
        let first = event(host.id, None, "package:a", T0 + 1000);
        let commit = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            app.store
                .ingest(host.id, vec![decided(&first)], T0 + 2000)
                .await
                .unwrap();
            app.drift_changed();
        };
        let (item, ()) = tokio::join!(next(&mut stream, Duration::from_secs(2)), commit);
        assert_eq!(subject(item), "package:a");
        let after_a = stream.cursor();

        // No poke (another collector of the same database): the fallback read finds it.
        let second = event(host.id, Some(&first), "package:b", T0 + 3000);
        let started = std::time::Instant::now();
        let commit = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            app.store
                .ingest(host.id, vec![decided(&second)], T0 + 4000)
                .await
                .unwrap();
        };
        let (item, ()) = tokio::join!(
            next(&mut stream, FALLBACK_READ + Duration::from_secs(3)),
            commit
        );
        assert_eq!(subject(item), "package:b");
        assert!(
            started.elapsed() >= FALLBACK_READ - Duration::from_millis(500),
            "found by the fallback read, not a poke"
        );

        // Stopping: `bye`, then the end; the slot comes back with the stream.
        app.close_streams();
        assert_eq!(
            next(&mut stream, Duration::from_secs(1)).await,
            Some(LiveItem::Bye)
        );
        assert_eq!(next(&mut stream, Duration::from_secs(1)).await, None);
        drop(stream);

        // Resumed after `a`: b only (then the stop, still asked).
        let mut resumed = app.drift_stream(&security(), Some(after_a)).await.unwrap();
        assert_eq!(
            subject(next(&mut resumed, Duration::from_secs(1)).await),
            "package:b"
        );
        assert_eq!(
            next(&mut resumed, Duration::from_secs(1)).await,
            Some(LiveItem::Bye)
        );
    }

    /// Streams woken together share pages read after the poke they saw: every stream still
    /// gets every change once, in order, also one opened between commits (another cursor)
    /// and one that reads only after many commits (pages beyond the shared ones).
    #[tokio::test]
    async fn streams_sharing_reads_each_get_every_change_in_order() {
        let app = app(64).await;
        let host = enroll(&app.store, "web-1", 42).await;
        let mut early = Vec::new();
        for _ in 0..20 {
            let mut stream = app.drift_stream(&security(), None).await.unwrap();
            assert!(matches!(
                next(&mut stream, Duration::from_secs(1)).await,
                Some(LiveItem::Ready(_))
            ));
            early.push(stream);
        }
        let mut late = None;
        let mut prev: Option<DriftEvent> = None;
        for n in 0..30 {
            let e = event(
                host.id,
                prev.as_ref(),
                &format!("package:p{n}"),
                T0 + 1000 + n,
            );
            app.store
                .ingest(host.id, vec![decided(&e)], T0 + 2000 + n)
                .await
                .unwrap();
            app.drift_changed();
            prev = Some(e);
            if n == 9 {
                let mut stream = app.drift_stream(&security(), None).await.unwrap();
                assert!(matches!(
                    next(&mut stream, Duration::from_secs(1)).await,
                    Some(LiveItem::Ready(ReadyView { head: 10 }))
                ));
                late = Some(stream);
            }
            // Half the early streams keep up after each commit; the others read later.
            for stream in early.iter_mut().step_by(2) {
                assert_eq!(
                    subject(next(stream, Duration::from_secs(1)).await),
                    format!("package:p{n}")
                );
            }
        }
        for stream in early.iter_mut().skip(1).step_by(2) {
            for n in 0..30 {
                assert_eq!(
                    subject(next(stream, Duration::from_secs(1)).await),
                    format!("package:p{n}")
                );
            }
        }
        let mut late = late.unwrap();
        for n in 10..30 {
            assert_eq!(
                subject(next(&mut late, Duration::from_secs(1)).await),
                format!("package:p{n}")
            );
        }
        // Nothing more on any: the next read finds no change (and waits).
        for stream in early.iter_mut().chain([&mut late]) {
            assert!(
                tokio::time::timeout(Duration::from_millis(50), stream.next())
                    .await
                    .is_err()
            );
        }
    }
}
