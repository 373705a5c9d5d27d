//! The shipper against a local HTTP server: what it sends, and that it deletes
//! from the spool only what the collector acknowledged. Plus HTTPS with a
//! pinned CA (rcgen-made CA and leaf), and a server from another CA refused.

use std::io::Read;
use std::sync::Mutex;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use driftwatch_common::api::v1::{ChangeKind, EventBatch, SeenBy};
use driftwatch_common::pathbytes::PathBytes;

use super::*;
use crate::daemon::detect::Remember;
use crate::daemon::events::Pending;
use crate::daemon::spool::Limits;

#[derive(Clone, Copy, PartialEq)]
enum Answer {
    Ack,
    PartialAck,
    Error,
    Garbage,
}

#[derive(Default)]
struct Seen {
    batches: Vec<(HeaderMap, EventBatch)>,
}

type Shared = Arc<(Mutex<Seen>, Mutex<Option<Answer>>)>;

async fn events(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_end(&mut json)
        .expect("the body is gzip");
    let batch: EventBatch = serde_json::from_slice(&json).expect("the body is an event batch");
    let n = batch.events.len() as u32;
    shared.0.lock().unwrap().batches.push((headers, batch));
    match shared.1.lock().unwrap().unwrap_or(Answer::Ack) {
        Answer::Ack => axum::Json(IngestAck {
            accepted: n,
            duplicates: 0,
            last_seq: 0,
            rejected: 0,
        })
        .into_response(),
        Answer::PartialAck => axum::Json(IngestAck {
            accepted: n - 1,
            duplicates: 0,
            last_seq: 0,
            rejected: 0,
        })
        .into_response(),
        Answer::Error => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "{\"error\":{\"code\":\"internal\",\"message\":\"boom\"}}",
        )
            .into_response(),
        Answer::Garbage => (StatusCode::OK, "<html>").into_response(),
    }
}

async fn server() -> (String, Shared) {
    let shared: Shared = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/api/v1/events", post(events))
        .with_state(Arc::clone(&shared));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, shared)
}

fn pending(i: u64) -> Pending {
    Pending {
        id: uuid::Uuid::now_v7(),
        path: PathBytes(format!("/etc/f{i}").into_bytes()),
        kind: ChangeKind::Added,
        changed: Vec::new(),
        before: None,
        after: None,
        diff: None,
        actor: None,
        provenance: None,
        related: None,
        remember: Remember::Drifted(None),
        new_snapshot: None,
    }
}

fn shipper(
    dir: &tempfile::TempDir,
    url: &str,
    events: u64,
    settings: CollectorSettings,
) -> Shipper {
    let db = dir.path().join(crate::daemon::spool::FILE_NAME);
    let mut spool = Spool::open(&db).unwrap();
    let batch: Vec<Pending> = (0..events).map(pending).collect();
    spool
        .commit(
            &batch,
            SeenBy::Watch,
            OffsetDateTime::now_utc(),
            Limits {
                max_events: 1000,
                max_bytes: 1 << 30,
            },
        )
        .unwrap();
    let (engine, _) = mpsc::channel(1);
    Shipper {
        client: Some(Client::new(&settings, url, Some("secret-credential".into())).unwrap()),
        spool,
        settings,
        status: StatusHandle::default(),
        wake: Arc::new(Notify::new()),
        engine,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_gzip_bounded_authenticated_and_deleted_only_after_the_ack() {
    let (url, shared) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let settings = CollectorSettings {
        batch_max_events: 2,
        ..CollectorSettings::default()
    };
    let mut shipper = shipper(&dir, &url, 3, settings);
    assert!(matches!(shipper.attempt().await, Attempt::Delivered));
    assert_eq!(shipper.spool.depth().unwrap().events, 1);
    assert!(matches!(shipper.attempt().await, Attempt::Delivered));
    assert!(matches!(shipper.attempt().await, Attempt::Empty));
    let seen = shared.0.lock().unwrap();
    assert_eq!(seen.batches.len(), 2);
    let (headers, first) = &seen.batches[0];
    assert_eq!(headers["content-encoding"], "gzip");
    assert_eq!(headers["authorization"], "Bearer secret-credential");
    assert_eq!(first.events.len(), 2);
    assert_eq!(first.events[0].seq, 1);
    assert_eq!(first.events[1].prev_hash, first.events[0].chain_hash());
    assert_eq!(seen.batches[1].1.events[0].seq, 3);
    assert_eq!(shipper.status.snapshot().delivery.events_acked, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_garbage_and_partial_acks_keep_the_batch() {
    let (url, shared) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let mut shipper = shipper(&dir, &url, 3, CollectorSettings::default());
    for answer in [Answer::Error, Answer::Garbage, Answer::PartialAck] {
        *shared.1.lock().unwrap() = Some(answer);
        assert!(matches!(shipper.attempt().await, Attempt::Failed));
        assert_eq!(shipper.spool.depth().unwrap().events, 3, "nothing deleted");
    }
    let status = shipper.status.snapshot();
    assert_eq!(status.delivery.consecutive_failures, 3);
    assert!(
        status
            .delivery
            .last_error
            .unwrap()
            .contains("acknowledged 2")
    );
    *shared.1.lock().unwrap() = Some(Answer::Ack);
    assert!(matches!(shipper.attempt().await, Attempt::Delivered));
    assert_eq!(shipper.spool.depth().unwrap().events, 0);
    assert_eq!(shipper.status.snapshot().delivery.consecutive_failures, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_is_a_failure_not_a_loss() {
    let dir = tempfile::tempdir().unwrap();
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut shipper = shipper(&dir, &url, 2, CollectorSettings::default());
    assert!(matches!(shipper.attempt().await, Attempt::Failed));
    assert_eq!(shipper.spool.depth().unwrap().events, 2);
    let error = shipper.status.snapshot().delivery.last_error.unwrap();
    assert!(error.contains("cannot reach the collector"), "{error}");
}

/// A CA and a leaf for 127.0.0.1 signed by it, as PEM: (ca, leaf cert, leaf key).
fn pki() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    (ca.pem(), leaf.pem(), leaf_key.serialize_pem())
}

async fn tls_server(cert: String, key: String) -> (String, Shared) {
    let shared: Shared = Arc::default();
    let config =
        axum_server::tls_rustls::RustlsConfig::from_pem(cert.into_bytes(), key.into_bytes())
            .await
            .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/api/v1/events", post(events))
        .with_state(Arc::clone(&shared));
    let server = axum_server::from_tcp_rustls(listener, config).unwrap();
    tokio::spawn(async move { server.serve(app.into_make_service()).await.unwrap() });
    (url, shared)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_pinned_ca_works_and_another_ca_is_refused() {
    let (ca, cert, key) = pki();
    let (url, _) = tls_server(cert, key).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca).unwrap();
    let pinned = CollectorSettings {
        ca_file: Some(ca_file),
        ..CollectorSettings::default()
    };
    let mut shipper = shipper(&dir, &url, 1, pinned);
    assert!(
        matches!(shipper.attempt().await, Attempt::Delivered),
        "{:?}",
        shipper.status.snapshot().delivery.last_error
    );

    // Pinned to another CA: the server's certificate is refused.
    let (other_ca, _, _) = pki();
    let other_file = dir.path().join("other.pem");
    std::fs::write(&other_file, other_ca).unwrap();
    let other = tempfile::tempdir().unwrap();
    let wrong = CollectorSettings {
        ca_file: Some(other_file),
        ..CollectorSettings::default()
    };
    let mut refused = shipper_in(&other, &url, wrong);
    assert!(matches!(refused.attempt().await, Attempt::Failed));
    let error = refused.status.snapshot().delivery.last_error.unwrap();
    assert!(error.to_lowercase().contains("certificate"), "{error}");
}

fn shipper_in(dir: &tempfile::TempDir, url: &str, settings: CollectorSettings) -> Shipper {
    shipper(dir, url, 1, settings)
}
