//! The web console's sessions (`crate::web`): sign-in with a person's API token, checked
//! exactly as the API checks it; a random session id whose SHA-256 alone is stored; every
//! request resolves the session to the same `Principal` the token gives, read again from
//! the token's record (a revoked token ends its sessions' use).

use std::time::Duration;

use driftwatch_config::collector::Dashboard;
use serde_json::json;

use crate::audit::NewAudit;
use crate::clock::{Millis, rfc3339};
use crate::identity::{self, Principal, Role};
use crate::store::{Store, StoreError, WebSession};

use super::{App, Error, Result, require};

/// Who may sign in to the console: people (never agent credentials or metrics scrapers).
pub const CONSOLE_ROLES: [Role; 4] = Role::PEOPLE;

/// How long sessions last and whether their cookie is `Secure` (the collector serves TLS).
#[derive(Clone, Debug)]
pub struct DashboardSettings {
    pub session_ttl_ms: i64,
    pub session_idle_ms: i64,
    pub secure_cookies: bool,
}

impl Default for DashboardSettings {
    fn default() -> Self {
        DashboardSettings::new(&Dashboard::default(), true)
    }
}

impl DashboardSettings {
    pub fn new(dashboard: &Dashboard, tls: bool) -> Self {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        DashboardSettings {
            session_ttl_ms: ms(dashboard.session_ttl),
            session_idle_ms: ms(dashboard.session_idle),
            secure_cookies: tls,
        }
    }
}

/// A session just created: the cookie's value (shown once, never stored; no `Debug`).
pub struct SignedIn {
    pub secret: String,
    pub principal: Principal,
    pub expires_at: Millis,
}

/// The session id is 32 random bytes in hex; the store keeps SHA-256 of that text.
fn parse_secret(secret: &str) -> Option<[u8; 32]> {
    (secret.len() == 64 && secret.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| identity::digest(secret))
}

impl<S: Store> App<S> {
    pub fn with_dashboard(mut self, dashboard: DashboardSettings) -> Self {
        self.dashboard = dashboard;
        self
    }

    pub fn dashboard(&self) -> &DashboardSettings {
        &self.dashboard
    }

    /// Signs a person in with their API token: the same check as a bearer token, then a
    /// new session and its `session.signed_in` audit entry.
    pub async fn sign_in(&self, token: &str) -> Result<SignedIn> {
        let principal = self.authenticate(token.trim()).await?;
        require(&principal, &CONSOLE_ROLES, "signing in to the web console")?;
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the operating system has randomness");
        let secret = identity::hex(&bytes);
        let now = self.now();
        let session = WebSession {
            digest: identity::digest(&secret),
            token_id: principal.token_id,
            created_at: now,
            expires_at: now.saturating_add(self.dashboard.session_ttl_ms),
            last_used_at: now,
            ended_at: None,
        };
        let audit = NewAudit::new(
            now,
            &principal.name,
            "session.signed_in",
            format!("token:{}", principal.token_id),
            json!({ "role": principal.role, "expires_at": rfc3339(session.expires_at) }),
        );
        let expires_at = session.expires_at;
        self.store.insert_session(session, audit).await?;
        tracing::info!(token = %principal.token_id, role = %principal.role, "web console sign-in");
        Ok(SignedIn {
            secret,
            principal,
            expires_at,
        })
    }

    /// The principal of a live session: unknown, ended, expired (absolute or idle) or
    /// resting on a revoked token is `Unauthorized`; an expired one is ended.
    pub async fn session(&self, secret: &str) -> Result<Principal> {
        let signed_out = || Error::Unauthorized("not signed in".into());
        let digest = parse_secret(secret).ok_or_else(signed_out)?;
        let now = self.now();
        let session = self
            .store
            .use_session(digest, now)
            .await?
            .ok_or_else(signed_out)?;
        if session.ended_at.is_some() {
            return Err(signed_out());
        }
        if now >= session.expires_at
            || now.saturating_sub(session.last_used_at) >= self.dashboard.session_idle_ms
        {
            self.store.end_session(digest, now, None).await?;
            return Err(Error::Unauthorized(
                "the session expired: sign in again".into(),
            ));
        }
        let record = match self.store.token(session.token_id).await {
            Ok(record) => record,
            Err(StoreError::NotFound(_)) => return Err(signed_out()),
            Err(err) => return Err(err.into()),
        };
        if record.revoked_at.is_some() {
            self.store.end_session(digest, now, None).await?;
            return Err(Error::Unauthorized(
                "the token behind this session was revoked".into(),
            ));
        }
        let principal = super::identity::principal_of(record);
        require(&principal, &CONSOLE_ROLES, "using the web console")?;
        Ok(principal)
    }

    /// Ends the caller's session server-side, with its `session.signed_out` entry.
    pub async fn sign_out(&self, actor: &Principal, secret: &str) -> Result<()> {
        let Some(digest) = parse_secret(secret) else {
            return Ok(());
        };
        let now = self.now();
        let audit = NewAudit::new(
            now,
            &actor.name,
            "session.signed_out",
            format!("token:{}", actor.token_id),
            json!({}),
        );
        self.store.end_session(digest, now, Some(audit)).await?;
        Ok(())
    }

    /// Removes ended and expired sessions (each background round).
    pub(super) async fn prune_sessions(&self) -> Result<()> {
        let now = self.now();
        let removed = self
            .store
            .prune_sessions(now, now.saturating_sub(self.dashboard.session_idle_ms))
            .await?;
        if removed > 0 {
            tracing::debug!(removed, "web console sessions pruned");
        }
        Ok(())
    }
}
