//! Drift items and their resolution.

use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::audit::NewAudit;
use crate::detail::{self, DriftDetail};

use crate::drift::ResolutionCategory;
use crate::identity::{Principal, Role};
use crate::store::{DriftFilter, DriftItem, OpenDriftQuery, Resolution, Store, StoredEvent};

use super::agents::host_facts;
use super::{App, Error, Limit, Result, require};

/// Who may resolve drift (the web console shows the resolve controls to these roles only).
pub const RESOLVE_ROLES: &[Role] = &[Role::Security];

impl<S: Store> App<S> {
    pub async fn drift_items(
        &self,
        actor: &Principal,
        mut filter: DriftFilter,
        limit: Limit,
    ) -> Result<Vec<DriftItem>> {
        require(actor, &Role::PEOPLE, "reading drift")?;
        filter.limit = Some(limit.checked()?);
        Ok(self.store.drift_items(filter).await?)
    }

    /// Open drift for the untraced inbox (issue 11), filtered in the store so a filter
    /// finds matching items among all open drift, newest first, at most the limit.
    pub async fn inbox_items(
        &self,
        actor: &Principal,
        mut query: OpenDriftQuery,
        limit: Limit,
    ) -> Result<Vec<DriftItem>> {
        require(actor, &Role::PEOPLE, "reading drift")?;
        query.limit = limit.checked()?;
        Ok(self.store.open_drift(query).await?)
    }

    pub async fn drift_item(
        &self,
        actor: &Principal,
        id: Uuid,
    ) -> Result<(DriftItem, Vec<StoredEvent>)> {
        require(actor, &Role::PEOPLE, "reading drift")?;
        let item = self.store.drift_item(id).await?;
        let events = self.store.events(id).await?;
        Ok((item, events))
    }

    /// The drift detail (issue 11): the item, its events, history and the subject's
    /// timeline on its host, and why no window covered it (every stored window is a
    /// possible candidate; the matcher's rule decides each, see `crate::detail`).
    pub async fn drift_detail(&self, actor: &Principal, id: Uuid) -> Result<DriftDetail> {
        require(actor, &Role::PEOPLE, "reading drift")?;
        let record = self.store.drift_record(id, detail::MAX_TIMELINE).await?;
        let host = self.store.host(record.item.host_id).await?;
        let windows = self.store.windows(None).await?;
        Ok(detail::assemble(
            record,
            host_facts(&host),
            &windows,
            self.settings.tolerance_ms,
        ))
    }

    pub async fn resolve(
        &self,
        actor: &Principal,
        id: Uuid,
        request: ResolveRequest,
    ) -> Result<DriftItem> {
        require(actor, RESOLVE_ROLES, "resolving drift")?;
        let comment = request.comment.trim();
        if comment.is_empty() {
            return Err(Error::BadRequest(
                "comment is empty: say what was found".into(),
            ));
        }
        let ticket = request
            .ticket
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty());
        match request.category {
            ResolutionCategory::Restored => {
                return Err(Error::BadRequest(
                    "`restored` is recorded by the collector when an agent reports it; choose \
                     confirmed_unauthorized, emergency_change or false_positive"
                        .into(),
                ));
            }
            ResolutionCategory::EmergencyChange if ticket.is_none() => {
                return Err(Error::BadRequest(
                    "an emergency_change resolution names its ticket (`ticket`)".into(),
                ));
            }
            _ => {}
        }
        let now = self.now();
        let resolution = Resolution {
            category: request.category,
            comment: comment.to_owned(),
            ticket,
            by: actor.name.clone(),
            at: now,
        };
        let audit = NewAudit::new(
            now,
            &actor.name,
            "drift.resolved",
            format!("drift:{id}"),
            json!({ "category": resolution.category, "comment": resolution.comment, "ticket": resolution.ticket }),
        );
        let item = self.store.resolve_drift(id, resolution, audit).await?;
        self.drift_changed();
        Ok(item)
    }
}

impl<S: Store> App<S> {
    /// The latest event of each drift item (the web inbox groups by the resulting state).
    pub async fn latest_events(
        &self,
        actor: &Principal,
        items: &[DriftItem],
    ) -> Result<std::collections::BTreeMap<Uuid, StoredEvent>> {
        require(actor, &Role::PEOPLE, "reading drift")?;
        let ids: Vec<Uuid> = items.iter().map(|item| item.last_event_id).collect();
        let events = self.store.events_by_id(ids).await?;
        let by_event: std::collections::BTreeMap<Uuid, StoredEvent> =
            events.into_iter().map(|e| (e.event.id, e)).collect();
        Ok(items
            .iter()
            .filter_map(|item| {
                by_event
                    .get(&item.last_event_id)
                    .map(|e| (item.id, e.clone()))
            })
            .collect())
    }
}

/// `POST /api/v1/drift/{id}/resolve`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    pub category: ResolutionCategory,
    pub comment: String,
    #[serde(default)]
    pub ticket: Option<String>,
}
