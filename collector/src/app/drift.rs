//! Drift items and their resolution.

use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::audit::NewAudit;

use crate::drift::ResolutionCategory;
use crate::identity::{Principal, Role};
use crate::store::{DriftFilter, DriftItem, Resolution, Store, StoredEvent};

use super::{App, Error, Limit, Result, require};

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

    pub async fn resolve(
        &self,
        actor: &Principal,
        id: Uuid,
        request: ResolveRequest,
    ) -> Result<DriftItem> {
        require(actor, &[Role::Security], "resolving drift")?;
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

/// `POST /api/v1/drift/{id}/resolve`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    pub category: ResolutionCategory,
    pub comment: String,
    #[serde(default)]
    pub ticket: Option<String>,
}
