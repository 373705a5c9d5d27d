//! Authentication, people and tokens: API tokens, enrollment tokens, revocation.

use serde_json::json;
use uuid::Uuid;

use crate::audit::NewAudit;
use crate::clock::{Millis, rfc3339};
use crate::identity::{self, Principal, Role, TokenKind};
use crate::people::{self, Clash, Merge, Person, PersonName};
use crate::store::{EnrollmentTokenRecord, Store, StoreError, TokenRecord};
use driftwatch_common::pathbytes::Shown;

use super::{App, Error, Result, require};

/// Longest enrollment token lifetime (a week) and most uses.
pub const MAX_ENROLLMENT_TTL_SECS: u64 = 7 * 86_400;
pub const MAX_ENROLLMENT_USES: u32 = 10_000;

/// A token just issued: its record and its text (shown once; no `Debug`, so it is never
/// logged by accident).
#[derive(Clone)]
pub struct IssuedToken {
    pub record: TokenRecord,
    pub text: String,
    /// Whether the person was created for it.
    pub person_created: bool,
}

/// The principal a verified, unrevoked token record acts as (the API's bearer tokens and
/// the web console's sessions alike).
pub(super) fn principal_of(record: TokenRecord) -> Principal {
    Principal {
        token_id: record.id,
        // A person's token acts as the person (segregation of duties compares people).
        name: record.person.unwrap_or(record.name),
        role: record.role,
        host_id: record.host_id,
    }
}

impl<S: Store> App<S> {
    /// The principal a bearer token belongs to; every failure reads the same.
    pub async fn authenticate(&self, token: &str) -> Result<Principal> {
        let invalid = || Error::Unauthorized("invalid or revoked token".into());
        let id = identity::parse(token, TokenKind::Api)
            .or_else(|| identity::parse(token, TokenKind::Agent))
            .ok_or_else(invalid)?;
        let record = match self.store.token(id).await {
            Ok(record) => record,
            Err(StoreError::NotFound(_)) => return Err(invalid()),
            Err(err) => return Err(err.into()),
        };
        if !identity::constant_time_eq(&record.digest, &identity::digest(token))
            || record.revoked_at.is_some()
        {
            return Err(invalid());
        }
        Ok(principal_of(record))
    }

    /// Issues a token to `person` (created first when no person has that name) on behalf
    /// of the admin `actor`; the text is returned once and never stored.
    pub async fn create_token(
        &self,
        actor: &Principal,
        person: &str,
        role: Role,
    ) -> Result<IssuedToken> {
        require(actor, &[Role::Admin], "issuing tokens")?;
        self.issue_token(&actor.name, Some(actor.token_id), person, role)
            .await
    }

    /// The offline bootstrap (`driftwatch-collector token create`): `local` names who ran it.
    pub async fn create_token_offline(
        &self,
        local: &str,
        person: &str,
        role: Role,
    ) -> Result<IssuedToken> {
        self.issue_token(local, None, person, role).await
    }

    async fn issue_token(
        &self,
        actor: &str,
        actor_token: Option<Uuid>,
        person: &str,
        role: Role,
    ) -> Result<IssuedToken> {
        if role == Role::Agent {
            return Err(Error::BadRequest(
                "agent credentials are issued by enrollment (POST /api/v1/enroll), not here".into(),
            ));
        }
        let name = people::check_name(person).map_err(|e| Error::BadRequest(e.to_string()))?;
        let now = self.now();
        let known = self.store.people().await?;
        let (owner, new_person) = match people::clash(&name, &known) {
            Some(Clash::SameName(p)) => (p.clone(), None),
            Some(looks @ Clash::LooksLike(_)) => {
                return Err(Error::Conflict(looks.message(&name.display)));
            }
            None => {
                let created = self.new_person(actor, name, now);
                (created.0.clone(), Some(created))
            }
        };
        let minted = identity::mint(TokenKind::Api);
        let record = TokenRecord {
            id: minted.id,
            name: owner.name.clone(),
            role,
            host_id: None,
            digest: minted.digest,
            created_at: now,
            created_by: actor.to_owned(),
            revoked_at: None,
            person_id: Some(owner.id),
            person: Some(owner.name.clone()),
            created_by_token: actor_token,
        };
        let audit = NewAudit::new(
            now,
            actor,
            "token.created",
            format!("token:{}", record.id),
            json!({
                "name": owner.name, "person": owner.name, "person_id": owner.id, "role": role,
                "created_by_token": actor_token,
            }),
        );
        let person_created = new_person.is_some();
        self.store
            .insert_person_token(new_person, record.clone(), audit)
            .await?;
        tracing::info!(token = %record.id, person = %Shown(&owner.name), %role, by = %Shown(actor), person_created, "token issued");
        Ok(IssuedToken {
            record,
            text: minted.text,
            person_created,
        })
    }

    fn new_person(&self, actor: &str, name: PersonName, now: Millis) -> (Person, NewAudit) {
        let person = Person {
            id: Uuid::now_v7(),
            name: name.display,
            canonical: name.canonical,
            key: name.key,
            created_at: now,
            created_by: actor.to_owned(),
        };
        let audit = NewAudit::new(
            now,
            actor,
            "person.created",
            format!("person:{}", person.id),
            json!({ "name": person.name }),
        );
        (person, audit)
    }

    /// Records a person (admin). A name equal to an existing one once normalised, or that
    /// looks like one (confusable), is refused with a message naming that person.
    pub async fn create_person(&self, actor: &Principal, name: &str) -> Result<Person> {
        require(actor, &[Role::Admin], "creating people")?;
        let name = people::check_name(name).map_err(|e| Error::BadRequest(e.to_string()))?;
        let known = self.store.people().await?;
        if let Some(clash) = people::clash(&name, &known) {
            return Err(Error::Conflict(clash.message(&name.display)));
        }
        let (person, audit) = self.new_person(&actor.name, name, self.now());
        self.store.insert_person(person.clone(), audit).await?;
        tracing::info!(person = %Shown(&person.name), by = %Shown(&actor.name), "person created");
        Ok(person)
    }

    pub async fn people(&self, actor: &Principal) -> Result<Vec<Person>> {
        require(actor, &[Role::Admin, Role::Auditor], "listing people")?;
        Ok(self.store.people().await?)
    }

    pub async fn tokens(&self, actor: &Principal) -> Result<Vec<TokenRecord>> {
        require(actor, &[Role::Admin, Role::Auditor], "listing tokens")?;
        Ok(self.store.tokens().await?)
    }

    /// Gives every person's token issued before people existed a person, by its name;
    /// names that are one person once normalised (or confusable) share it, and each such
    /// merge is logged and audited. Runs at start; nothing to do is one query.
    pub(super) async fn adopt_legacy_tokens(&self) -> Result<Vec<Merge>> {
        let mut legacy: Vec<TokenRecord> = self
            .store
            .tokens()
            .await?
            .into_iter()
            .filter(|t| t.role != Role::Agent && t.person_id.is_none())
            .collect();
        if legacy.is_empty() {
            return Ok(Vec::new());
        }
        legacy.sort_by_key(|t| (t.created_at, t.id));
        let known = self.store.people().await?;
        let names: Vec<(Uuid, String)> = legacy.iter().map(|t| (t.id, t.name.clone())).collect();
        let plan = people::adopt(&known, &names);
        let now = self.now();
        let actor = "migration";
        let mut audits = Vec::new();
        let created: Vec<Person> = plan
            .new_people
            .iter()
            .map(|name| {
                let (person, audit) = self.new_person(actor, name.clone(), now);
                audits.push(audit);
                person
            })
            .collect();
        let owners: Vec<(Uuid, Uuid)> = plan
            .owners
            .iter()
            .map(|(token, owner)| {
                let person = match owner {
                    people::Owner::Existing(id) => *id,
                    people::Owner::New(i) => created[*i].id,
                };
                (*token, person)
            })
            .collect();
        for (token, person) in &owners {
            audits.push(NewAudit::new(
                now,
                actor,
                "token.person_assigned",
                format!("token:{token}"),
                json!({ "person_id": person }),
            ));
        }
        for merge in &plan.merges {
            tracing::warn!(
                person = %Shown(&merge.person),
                names = %Shown(&merge.names.join("`, `")),
                "tokens issued under these names now belong to one person (the names are equal \
                 once case, whitespace and Unicode forms are normalised, or confusable): they \
                 cannot approve each other's windows; if they are different people, revoke \
                 the tokens and issue new ones to distinct names"
            );
            audits.push(NewAudit::new(
                now,
                actor,
                "person.names_merged",
                format!("person:{}", merge.person),
                json!({ "person": merge.person, "token_names": merge.names }),
            ));
        }
        self.store.adopt_tokens(created, owners, audits).await?;
        tracing::info!(
            tokens = legacy.len(),
            people = plan.new_people.len(),
            "tokens issued before people existed now belong to people"
        );
        Ok(plan.merges)
    }

    pub async fn revoke_token(&self, actor: &Principal, id: Uuid) -> Result<TokenRecord> {
        require(actor, &[Role::Admin], "revoking a token")?;
        let now = self.now();
        let audit = NewAudit::new(
            now,
            &actor.name,
            "token.revoked",
            format!("token:{id}"),
            json!({}),
        );
        Ok(self.store.revoke_token(id, now, audit).await?)
    }

    pub async fn create_enrollment_token(
        &self,
        actor: &Principal,
        ttl_secs: u64,
        uses: u32,
    ) -> Result<(EnrollmentTokenRecord, String)> {
        require(actor, &[Role::Admin], "creating enrollment tokens")?;
        if ttl_secs == 0 || ttl_secs > MAX_ENROLLMENT_TTL_SECS {
            return Err(Error::BadRequest(format!(
                "ttl_secs must be between 1 and {MAX_ENROLLMENT_TTL_SECS} (a week), got {ttl_secs}"
            )));
        }
        if uses == 0 || uses > MAX_ENROLLMENT_USES {
            return Err(Error::BadRequest(format!(
                "uses must be between 1 and {MAX_ENROLLMENT_USES}, got {uses}"
            )));
        }
        let minted = identity::mint(TokenKind::Enrollment);
        let now = self.now();
        let record = EnrollmentTokenRecord {
            id: minted.id,
            digest: minted.digest,
            created_by: actor.name.clone(),
            created_at: now,
            expires_at: now + (ttl_secs as i64) * 1000,
            uses_left: uses,
        };
        let audit = NewAudit::new(
            now,
            &actor.name,
            "enrollment_token.created",
            format!("enrollment_token:{}", record.id),
            json!({ "expires_at": rfc3339(record.expires_at), "uses": uses }),
        );
        self.store
            .insert_enrollment_token(record.clone(), audit)
            .await?;
        Ok((record, minted.text))
    }

    /// Whether `id` names an issued token (revoked or not), so that only real token ids
    /// count toward a lockout (`api::extract`); asked after a failed authentication.
    pub async fn is_issued_token(&self, id: Uuid) -> bool {
        self.store.token(id).await.is_ok()
    }
}
