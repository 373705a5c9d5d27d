//! Listings with a cursor (issue 10): drift, hosts, windows and the audit log page by
//! keyset (`crate::paging`); the roles are those of the unpaged reads.

use crate::audit::AuditEntry;
use crate::identity::{Principal, Role};
use crate::paging::{self, Key, Listing, Page};
use crate::store::{DriftFilter, DriftItem, Host, Store};
use crate::windows::{Window, WindowStatus};

use super::{App, Error, Limit, Result, require};

/// The key `cursor` names in `listing` (a 400 when it is not one of its cursors).
fn key(listing: Listing, cursor: Option<&str>) -> Result<Option<Key>> {
    cursor
        .map(|c| Key::decode(listing, c).map_err(Error::BadRequest))
        .transpose()
}

impl<S: Store> App<S> {
    /// Drift, newest opened first, after `cursor`.
    pub async fn drift_page(
        &self,
        actor: &Principal,
        mut filter: DriftFilter,
        cursor: Option<&str>,
        limit: Limit,
    ) -> Result<Page<DriftItem>> {
        require(actor, &Role::PEOPLE, "reading drift")?;
        let limit = limit.checked()?;
        let after = match key(Listing::Drift, cursor)? {
            Some(Key::Drift(at, id)) => Some((at, id)),
            _ => None,
        };
        filter.limit = Some(limit + 1);
        let rows = self.store.drift_page(filter, after).await?;
        Ok(paging::page(rows, limit, |d| Key::Drift(d.opened_at, d.id)))
    }

    /// Hosts by name, after `cursor`.
    pub async fn hosts_page(
        &self,
        actor: &Principal,
        cursor: Option<&str>,
        limit: Limit,
    ) -> Result<Page<Host>> {
        require(actor, &Role::PEOPLE, "reading hosts")?;
        let limit = limit.checked()?;
        let after = match key(Listing::Hosts, cursor)? {
            Some(Key::Host(name, id)) => Some((name, id)),
            _ => None,
        };
        let rows = self.store.hosts_page(after, limit + 1).await?;
        Ok(paging::page(rows, limit, |h| {
            Key::Host(h.hostname.clone(), h.id)
        }))
    }

    /// Windows by start, after `cursor`.
    pub async fn windows_page(
        &self,
        actor: &Principal,
        status: Option<WindowStatus>,
        cursor: Option<&str>,
        limit: Limit,
    ) -> Result<Page<Window>> {
        require(actor, &Role::PEOPLE, "reading windows")?;
        let limit = limit.checked()?;
        let after = match key(Listing::Windows, cursor)? {
            Some(Key::Window(at, id)) => Some((at, id)),
            _ => None,
        };
        let rows = self.store.windows_page(status, after, limit + 1).await?;
        Ok(paging::page(rows, limit, |w| Key::Window(w.start, w.id)))
    }

    /// Audit entries after `cursor`, or after the seq `after` (the older parameter; not
    /// both).
    pub async fn audit_page(
        &self,
        actor: &Principal,
        after: Option<u64>,
        cursor: Option<&str>,
        limit: Limit,
    ) -> Result<Page<AuditEntry>> {
        require(actor, &Role::PEOPLE, "reading the audit log")?;
        let limit = limit.checked()?;
        let after = match (after, key(Listing::Audit, cursor)?) {
            (Some(_), Some(_)) => {
                return Err(Error::BadRequest(
                    "give either after or cursor, not both".into(),
                ));
            }
            (Some(seq), None) => seq,
            (None, Some(Key::Audit(seq))) => seq,
            (None, _) => 0,
        };
        let rows = self.store.audit_page(after, limit + 1).await?;
        Ok(paging::page(rows, limit, |e| Key::Audit(e.seq)))
    }
}
