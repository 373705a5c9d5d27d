//! TLS with rustls: a certificate from a private CA (made here with rcgen), a client that
//! trusts only that CA, and a client that does not trust it.

mod support;

use driftwatch_config::collector::Transport;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use reqwest::{Certificate, Method, StatusCode};
use support::{Body, Server, settings};

struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn private_ca() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        cert_pem: leaf.pem(),
        key_pem: leaf_key.serialize_pem(),
    }
}

#[tokio::test]
async fn serves_tls_to_a_client_that_pins_the_ca() {
    let pki = private_ca();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (
        dir.path().join("collector.crt"),
        dir.path().join("collector.key"),
    );
    std::fs::write(&cert, &pki.cert_pem).unwrap();
    std::fs::write(&key, &pki.key_pem).unwrap();
    let pinned = reqwest::Client::builder()
        .tls_certs_only([Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap()])
        .build()
        .unwrap();
    let server = Server::start_with(settings(), Transport::Tls { cert, key }, pinned).await;
    assert!(server.url.starts_with("https://"));

    let (status, body) = server.send(Method::GET, "/healthz", None, Body::None).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let (status, _) = server.get("/api/v1/windows", &server.admin.clone()).await;
    assert_eq!(status, StatusCode::OK);

    // A client trusting another CA refuses the connection.
    let stranger = private_ca();
    let other = reqwest::Client::builder()
        .tls_certs_only([Certificate::from_pem(stranger.ca_pem.as_bytes()).unwrap()])
        .build()
        .unwrap();
    let err = other
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    // Plain HTTP on the TLS port gets no answer.
    let plain = server.url.replacen("https://", "http://", 1);
    assert!(
        reqwest::get(format!("{plain}/healthz"))
            .await
            .map(|r| r.status() != StatusCode::OK)
            .unwrap_or(true)
    );
}
