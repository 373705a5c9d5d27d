//! What every store must do with people (segregation of duties by person): unique names
//! and skeletons, a token issued with its new person in one transaction, the chain of
//! tokens that issued a token, and the adoption of tokens issued before people existed.

use serde_json::json;
use uuid::Uuid;

use super::{Store, StoreError, TokenRecord};
use crate::audit::NewAudit;
use crate::identity::Role;
use crate::people::{Person, check_name};

const T0: i64 = 1_764_000_000_000;

fn audit(action: &str) -> NewAudit {
    NewAudit::new(T0, "root", action, "test", json!({}))
}

fn person(name: &str) -> Person {
    let checked = check_name(name).unwrap();
    Person {
        id: Uuid::now_v7(),
        name: checked.display,
        canonical: checked.canonical,
        key: checked.key,
        created_at: T0,
        created_by: "root".into(),
    }
}

fn token(person: Option<&Person>, issued_by: Option<Uuid>, digest: u8) -> TokenRecord {
    TokenRecord {
        id: Uuid::now_v7(),
        name: person.map_or("legacy".into(), |p| p.name.clone()),
        role: Role::ChangeManager,
        host_id: None,
        digest: [digest; 32],
        created_at: T0,
        created_by: "root".into(),
        revoked_at: None,
        person_id: person.map(|p| p.id),
        person: None,
        created_by_token: issued_by,
    }
}

pub async fn story<S: Store>(store: S) {
    let alice = person("alice");
    store
        .insert_person(alice.clone(), audit("person.created"))
        .await
        .unwrap();
    // The same name once normalised, and a confusable one: refused, nothing written.
    for taken in ["ALICE", "\u{430}lice"] {
        let err = store
            .insert_person(person(taken), audit("person.created"))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Conflict(m) if m.contains("`alice`")),
            "{taken}: {err}"
        );
    }
    assert_eq!(store.people().await.unwrap(), vec![alice.clone()]);

    // A token and its new person in one transaction; the chain of issuers.
    let first = token(Some(&alice), None, 1);
    store
        .insert_person_token(None, first.clone(), audit("token.created"))
        .await
        .unwrap();
    let bob = person("bob");
    let second = token(Some(&bob), Some(first.id), 2);
    store
        .insert_person_token(
            Some((bob.clone(), audit("person.created"))),
            second.clone(),
            audit("token.created"),
        )
        .await
        .unwrap();
    let third = token(Some(&bob), Some(second.id), 3);
    store
        .insert_person_token(None, third.clone(), audit("token.created"))
        .await
        .unwrap();
    let stored = store.token(third.id).await.unwrap();
    assert_eq!(stored.person.as_deref(), Some("bob"));
    assert_eq!(stored.person_id, Some(bob.id));
    assert_eq!(stored.created_by_token, Some(second.id));
    let lineage: Vec<Uuid> = store
        .token_lineage(third.id)
        .await
        .unwrap()
        .iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(lineage, [third.id, second.id, first.id]);
    // A person whose name is taken fails the whole issue: no token either.
    let clash = token(Some(&person("Bob")), None, 4);
    assert!(
        store
            .insert_person_token(
                Some((person("Bob"), audit("person.created"))),
                clash.clone(),
                audit("token.created"),
            )
            .await
            .is_err()
    );
    assert!(matches!(
        store.token(clash.id).await,
        Err(StoreError::NotFound(_))
    ));

    // Adoption of a token without a person.
    let legacy = token(None, None, 5);
    store
        .insert_token(legacy.clone(), audit("token.created"))
        .await
        .unwrap();
    assert_eq!(store.token(legacy.id).await.unwrap().person, None);
    let carol = person("carol");
    store
        .adopt_tokens(
            vec![carol.clone()],
            vec![(legacy.id, carol.id)],
            vec![audit("person.created")],
        )
        .await
        .unwrap();
    let adopted = store.token(legacy.id).await.unwrap();
    assert_eq!(
        (adopted.person.as_deref(), adopted.name.as_str()),
        (Some("carol"), "legacy")
    );
    let (log, _) = store.audit_log().await.unwrap();
    assert_eq!(
        log.len(),
        7,
        "every accepted write was audited, no refused one"
    );
}
