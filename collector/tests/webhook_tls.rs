//! The webhook sink against a real HTTPS receiver on 127.0.0.1 whose certificate comes from a
//! private CA: `ca_file` makes it trusted (and only it), the secret goes in its header, and
//! an error never shows the URL's path.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::post;
use axum_server::tls_rustls::RustlsConfig;
use driftwatch_collector::alerts::{AlertSink, Webhook};
use driftwatch_collector::store::Alert;
use driftwatch_config::collector::{Webhook as Config, WebhookFormat};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use serde_json::{Value, json};
use uuid::Uuid;

/// A CA's PEM, and a leaf for 127.0.0.1 signed by it (cert and key PEM).
fn private_ca() -> (String, String, String) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    (ca.pem(), leaf.pem(), leaf_key.serialize_pem())
}

type Seen = Arc<Mutex<Vec<(Option<String>, Value)>>>;

/// An HTTPS receiver; returns its base URL and what it received.
async fn receiver(cert: &str, key: &str) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let log = Arc::clone(&seen);
    let app = Router::new().route(
        "/hook/secret-path",
        post(move |headers: HeaderMap, body: axum::Json<Value>| {
            let log = Arc::clone(&log);
            async move {
                let token = headers
                    .get("x-hook-token")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                log.lock().unwrap().push((token, body.0));
                "ok"
            }
        }),
    );
    let tls = RustlsConfig::from_pem(cert.as_bytes().to_vec(), key.as_bytes().to_vec())
        .await
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = axum_server::from_tcp_rustls(listener, tls).unwrap();
    tokio::spawn(async move { server.serve(app.into_make_service()).await });
    (format!("https://{addr}"), seen)
}

fn alert() -> Alert {
    Alert {
        id: Uuid::now_v7(),
        kind: "agent_silent".into(),
        host_id: None,
        created_at: 1_795_428_000_000,
        body: json!({ "kind": "agent_silent", "host": { "hostname": "db-1" }, "summary": "no heartbeat from db-1" }),
        delivered_at: None,
        attempts: 0,
        last_error: None,
        deliveries: Vec::new(),
    }
}

#[tokio::test]
async fn a_private_ca_is_trusted_through_ca_file_and_only_then() {
    let (ca, cert, key) = private_ca();
    let (base, seen) = receiver(&cert, &key).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), &ca).unwrap();
    std::fs::write(dir.path().join("other-ca.pem"), private_ca().0).unwrap();
    std::fs::write(dir.path().join("secret"), "t0ken\n").unwrap();
    let config = |ca_file: Option<&str>| Config {
        url: format!("{base}/hook/secret-path"),
        format: WebhookFormat::Json,
        ca_file: ca_file.map(|name| dir.path().join(name)),
        secret_file: Some(dir.path().join("secret")),
        secret_header: Some("X-Hook-Token".into()),
        signing_secret_file: None,
        timeout: Duration::from_secs(10),
    };
    let alert = alert();

    let trusted = Webhook::new("hook".into(), config(Some("ca.pem"))).unwrap();
    trusted.deliver(&alert).await.expect("delivered over TLS");
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0.as_deref(), Some("t0ken"));
    assert_eq!(got[0].1["version"], 1);
    assert_eq!(got[0].1["alert"]["id"], json!(alert.id));

    for refused in [Some("other-ca.pem"), None] {
        let hook = Webhook::new("hook".into(), config(refused)).unwrap();
        let err = hook.deliver(&alert).await.unwrap_err().message;
        assert!(err.contains("POST to https://127.0.0.1:"), "{err}");
        assert!(!err.contains("secret-path"), "the path leaked: {err}");
        assert!(
            err.to_lowercase().contains("certificate"),
            "{refused:?}: {err}"
        );
    }
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "nothing reached the receiver"
    );

    // A CA file without a certificate is refused when the sink is built.
    std::fs::write(dir.path().join("empty.pem"), "not a pem\n").unwrap();
    let err = Webhook::new("hook".into(), config(Some("empty.pem")))
        .err()
        .unwrap();
    assert!(err.contains("holds no PEM certificate"), "{err}");
}
