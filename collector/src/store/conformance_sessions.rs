//! What every store must do with web console sessions (issue 11): keep a session by its
//! digest with its sign-in entry, record each use, end it once (with the sign-out entry
//! only when it ended now), and prune what ended, expired or idled.

use serde_json::json;
use uuid::Uuid;

use super::{Store, TokenRecord, WebSession};
use crate::audit::NewAudit;
use crate::identity::Role;

const T0: i64 = 1_764_000_000_000;

fn audit(action: &str) -> NewAudit {
    NewAudit::new(T0, "eve", action, "test", json!({}))
}

fn session(digest: u8, token_id: Uuid, expires_at: i64) -> WebSession {
    WebSession {
        digest: [digest; 32],
        token_id,
        created_at: T0,
        expires_at,
        last_used_at: T0,
        ended_at: None,
    }
}

async fn actions<S: Store>(store: &S) -> Vec<String> {
    let (entries, _) = store.audit_log().await.unwrap();
    entries.into_iter().map(|e| e.action).collect()
}

pub async fn story<S: Store>(store: S) {
    let token = TokenRecord {
        id: Uuid::now_v7(),
        name: "eve".into(),
        role: Role::Security,
        host_id: None,
        digest: [9; 32],
        created_at: T0,
        created_by: "root".into(),
        revoked_at: None,
        person_id: None,
        person: None,
        created_by_token: None,
    };
    store
        .insert_token(token.clone(), audit("token.created"))
        .await
        .unwrap();

    assert_eq!(store.use_session([1; 32], T0).await.unwrap(), None);
    store
        .insert_session(
            session(1, token.id, T0 + 3_600_000),
            audit("session.signed_in"),
        )
        .await
        .unwrap();
    assert_eq!(actions(&store).await.last().unwrap(), "session.signed_in");

    // A use answers the session as it was and records the use.
    let first = store
        .use_session([1; 32], T0 + 1_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.last_used_at, T0);
    assert_eq!(first.token_id, token.id);
    let second = store
        .use_session([1; 32], T0 + 2_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.last_used_at, T0 + 1_000);

    // Ended once: the entry is appended once; later uses see it ended and record nothing.
    assert!(
        store
            .end_session([1; 32], T0 + 3_000, Some(audit("session.signed_out")))
            .await
            .unwrap()
    );
    assert!(
        !store
            .end_session([1; 32], T0 + 4_000, Some(audit("session.signed_out")))
            .await
            .unwrap()
    );
    let signed_out = actions(&store)
        .await
        .iter()
        .filter(|a| *a == "session.signed_out")
        .count();
    assert_eq!(signed_out, 1);
    let ended = store
        .use_session([1; 32], T0 + 5_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ended.ended_at, Some(T0 + 3_000));
    assert_eq!(ended.last_used_at, T0 + 2_000);

    // Prune: ended, past its expiry, or idle; a live one stays.
    store
        .insert_session(session(2, token.id, T0 + 10), audit("session.signed_in"))
        .await
        .unwrap();
    store
        .insert_session(
            session(3, token.id, T0 + 3_600_000),
            audit("session.signed_in"),
        )
        .await
        .unwrap();
    store
        .insert_session(
            session(4, token.id, T0 + 3_600_000),
            audit("session.signed_in"),
        )
        .await
        .unwrap();
    store.use_session([4; 32], T0 + 60_000).await.unwrap();
    assert_eq!(
        store.prune_sessions(T0 + 100, T0 + 30_000).await.unwrap(),
        3
    );
    assert_eq!(store.use_session([1; 32], T0 + 70_000).await.unwrap(), None);
    assert_eq!(store.use_session([2; 32], T0 + 70_000).await.unwrap(), None);
    assert_eq!(store.use_session([3; 32], T0 + 70_000).await.unwrap(), None);
    assert!(
        store
            .use_session([4; 32], T0 + 70_000)
            .await
            .unwrap()
            .is_some()
    );
}
