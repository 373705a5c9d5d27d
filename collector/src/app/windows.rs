//! Change windows: requests, decisions, the index ingest matches against.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::json;
use uuid::Uuid;

use crate::audit::{self, NewAudit};

use crate::identity::{Principal, Role};
use crate::matcher::{self, EventFacts, Outcome, WindowIndex};
use crate::store::{CloseOutcome, ReviewOutcome, Store, StoreError};
use crate::windows::lifecycle::{self, Action, Refusal};
use crate::windows::validate::{self, WindowRequest};
use crate::windows::{Window, WindowStatus};
use driftwatch_common::pathbytes::Shown;

use super::agents::host_facts;
use super::{App, Error, Result, require};

impl<S: Store> App<S> {
    pub async fn create_window(
        &self,
        actor: &Principal,
        request: &WindowRequest,
    ) -> Result<Window> {
        require(
            actor,
            &lifecycle::WINDOW_ROLES,
            "requesting a change window",
        )?;
        let now = self.now();
        let window = validate::validate(request, &actor.name, now)
            .map_err(|problems| Error::BadRequest(problems.join("; ")))?;
        let audit = NewAudit::new(
            now,
            &actor.name,
            "window.requested",
            format!("window:{}", window.id),
            audit::evidence::request_details(&window),
        );
        self.store.insert_window(window.clone(), audit).await?;
        tracing::info!(window = %window.id, ticket = %Shown(&window.ticket), by = %Shown(&actor.name), "window requested");
        Ok(window)
    }

    /// Approves, rejects, cancels or closes a window. Approval re-evaluates the untraced
    /// drift the window covers; closing accepts its authorized drift.
    pub async fn decide(
        &self,
        actor: &Principal,
        id: Uuid,
        action: Action,
        comment: Option<String>,
    ) -> Result<Decision> {
        let comment = comment
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty());
        if action == Action::Reject && comment.is_none() {
            return Err(Error::BadRequest(
                "a rejection needs a comment saying why".into(),
            ));
        }
        // Held for writing: matching waits until the index reflects this decision.
        let mut index = self.index.write().await;
        let window = self.store.window(id).await?;
        let issuers = self.may_decide(actor, &window, action).await?;
        let now = self.now();
        let mut updated = window.clone();
        updated.status = action.outcome();
        match action {
            Action::Approve | Action::Reject => {
                updated.decided_by = Some(actor.name.clone());
                updated.decided_at = Some(now);
                updated.decision_comment = comment.clone();
            }
            Action::Cancel | Action::Close => {
                updated.ended_at = Some(now);
                updated.ended_by = Some(actor.name.clone());
            }
        }
        let audit = NewAudit::new(
            now,
            &actor.name,
            &format!("window.{}", action.outcome()),
            format!("window:{id}"),
            json!({
                "ticket": window.ticket, "comment": comment, "requester": window.requester,
                // Which token decided, and who issued it (an admin who issues someone a
                // token can act as them: the log says so).
                "token": actor.token_id, "token_issuers": issuers,
            }),
        );
        let mut decision = Decision {
            window: updated.clone(),
            review: None,
            close: None,
        };
        if action == Action::Close {
            decision.close = Some(self.store.close_window(updated.clone(), audit).await?);
        } else {
            self.store
                .update_window(updated.clone(), window.status, audit)
                .await?;
        }
        if window.was_approved() || updated.was_approved() {
            *index = Arc::new(index.updated(&updated).map_err(|(id, why)| {
                Error::Store(StoreError::other(format!(
                    "window {id} does not compile: {why}"
                )))
            })?);
        }
        if action == Action::Approve {
            decision.review = Some(self.reevaluate(&updated, &actor.name).await?);
        }
        drop(index);
        // A close-out accepts drift, an approval may authorize it.
        self.drift_changed();
        tracing::info!(window = %id, action = %action, by = %Shown(&actor.name), "window decided");
        Ok(decision)
    }

    /// Whether `actor` may `action` `window` in its current status: the one rule
    /// [`App::decide`] applies (`lifecycle::check` with the issuers of the actor's token,
    /// so a token the requester issued cannot approve). `Ok` carries those issuers (the
    /// audit entry names them); `Error::Forbidden` / `Error::Conflict` say why not. The web
    /// console shows a decision's button only when this is `Ok`.
    pub async fn may_decide(
        &self,
        actor: &Principal,
        window: &Window,
        action: Action,
    ) -> Result<Vec<String>> {
        let issuers = match action {
            Action::Approve | Action::Reject => self.issuers(actor).await?,
            Action::Cancel | Action::Close => Vec::new(),
        };
        lifecycle::check(window, action, actor, &issuers).map_err(|refusal| match refusal {
            Refusal::Forbidden(why) => Error::Forbidden(why),
            Refusal::Conflict(why) => Error::Conflict(why),
        })?;
        Ok(issuers)
    }

    /// Who issued `actor`'s token, and who issued that one, back to a token made offline:
    /// a requester among them cannot approve through it (the admin self-mint loophole).
    async fn issuers(&self, actor: &Principal) -> Result<Vec<String>> {
        let lineage = match self.store.token_lineage(actor.token_id).await {
            Ok(lineage) => lineage,
            // A principal made in-process (benchmarks), not from a stored token.
            Err(StoreError::NotFound(_)) => return Ok(Vec::new()),
            Err(err) => return Err(err.into()),
        };
        let mut names: Vec<String> = Vec::new();
        for (i, token) in lineage.iter().enumerate() {
            let mut add = |name: String| {
                if !names.contains(&name) {
                    names.push(name);
                }
            };
            if i > 0 {
                add(token.person.clone().unwrap_or_else(|| token.name.clone()));
            }
            add(token.created_by.clone());
        }
        Ok(names)
    }

    /// After-the-fact coverage: events that needed review and that `window` authorizes.
    async fn reevaluate(&self, window: &Window, by: &str) -> Result<ReviewOutcome> {
        let tolerance = self.settings.tolerance_ms;
        let single = WindowIndex::build(std::slice::from_ref(window))
            .map_err(|(_, why)| Error::Store(StoreError::other(why)))?;
        // Candidates are pre-selected by spool bounds within the widest span the window
        // can cover; the matcher applies the rule exactly (close time, occurrences).
        let candidates = self
            .store
            .review_candidates(window.start - tolerance, window.end + tolerance)
            .await?;
        let decisions: Vec<(Uuid, Outcome)> = candidates
            .iter()
            .filter_map(|c| {
                let outcome = matcher::match_event(
                    &single,
                    host_facts(&c.host),
                    EventFacts {
                        subject: &c.event.subject.0,
                        kind: c.event.kind,
                        after: c.event.after.as_ref(),
                        spooled: c.spooled,
                        actor: c.event.actor.as_ref(),
                        provenance: c.event.provenance.as_ref(),
                    },
                    tolerance,
                );
                matches!(outcome, Outcome::Authorized { .. }).then_some((c.event.id, outcome))
            })
            .collect();
        if decisions.is_empty() {
            return Ok(ReviewOutcome::default());
        }
        let outcome = self
            .store
            .apply_review(window.id, decisions, self.now(), by.to_owned())
            .await?;
        tracing::info!(window = %window.id, events = outcome.events, drift = outcome.drift_authorized, "untraced drift covered after the fact");
        Ok(outcome)
    }

    pub async fn window(&self, actor: &Principal, id: Uuid) -> Result<Window> {
        require(actor, &Role::PEOPLE, "reading windows")?;
        Ok(self.store.window(id).await?)
    }

    pub async fn windows(
        &self,
        actor: &Principal,
        status: Option<WindowStatus>,
    ) -> Result<Vec<Window>> {
        require(actor, &Role::PEOPLE, "reading windows")?;
        Ok(self.store.windows(status).await?)
    }
}

/// The outcome of a window decision.
#[derive(Clone, Debug)]
pub struct Decision {
    pub window: Window,
    /// Approval: drift covered after the fact.
    pub review: Option<ReviewOutcome>,
    /// Close-out: drift accepted, commands queued.
    pub close: Option<CloseOutcome>,
}

/// How long a node waits for another node's window change before it checks anyway.
const WINDOWS_HINT_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

impl<S: Store> App<S> {
    /// Rebuilds the matcher index when the store's windows moved since it was built
    /// (another node changed one, or this node did); whether it did. Ingest calls it when
    /// the store refuses a batch matched with a stale index; a notification from another
    /// node may call it earlier.
    pub async fn follow_windows(&self) -> Result<bool> {
        // Most wake-ups find nothing moved: checked before holding ingest back.
        if self.store.windows_version().await? == self.index_version.load(Ordering::SeqCst) {
            return Ok(false);
        }
        let mut index = self.index.write().await;
        let version = self.store.windows_version().await?;
        if version == self.index_version.load(Ordering::SeqCst) {
            return Ok(false);
        }
        // Read after the version: a change in between only makes the next check rebuild.
        *index = Arc::new(build_index(&self.store).await?);
        self.index_version.store(version, Ordering::SeqCst);
        tracing::debug!(version, windows = index.len(), "window index rebuilt");
        Ok(true)
    }

    /// Waits for a window change another node announces (or half a minute), then follows
    /// it (`serve` runs this in a loop).
    pub async fn follow_windows_hints(&self) {
        self.store.windows_hint(WINDOWS_HINT_WAIT).await;
        if let Err(err) = self.follow_windows().await {
            tracing::warn!(error = %err, "cannot follow the stored windows; ingest will");
        }
    }
}

pub(super) async fn build_index<S: Store>(store: &S) -> Result<WindowIndex> {
    let windows = store.windows(None).await?;
    WindowIndex::build(&windows).map_err(|(id, why)| {
        Error::Store(StoreError::other(format!(
            "stored window {id} does not compile: {why}"
        )))
    })
}
