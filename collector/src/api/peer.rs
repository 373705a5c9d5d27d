//! Client certificates of agents: when `[tls] client_ca` is set, the agent routes (enroll,
//! events, heartbeat) need a certificate from that CA (the handshake already verified the
//! chain) whose DNS name (subjectAltName dNSName; the CN is not used) is the host's
//! enrolled hostname. People's tokens need none, so `driftctl` works without a certificate.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use rustls_pki_types::ServerName;

use super::error::ApiError;
use crate::serve::{ClientCertPolicy, PeerCertificate};

/// What the connection said about the client: its certificate and whether one is needed.
pub struct PeerIdentity {
    certificate: PeerCertificate,
    policy: ClientCertPolicy,
    client: Option<SocketAddr>,
}

impl<S: Send + Sync> FromRequestParts<S> for PeerIdentity {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(PeerIdentity::of(parts))
    }
}

impl PeerIdentity {
    pub fn of(parts: &Parts) -> Self {
        PeerIdentity {
            certificate: parts
                .extensions
                .get::<PeerCertificate>()
                .cloned()
                .unwrap_or_default(),
            policy: parts
                .extensions
                .get::<ClientCertPolicy>()
                .copied()
                .unwrap_or_default(),
            client: parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
        }
    }

    /// Whether an agent calling itself `hostname` may go on: always without a client CA;
    /// with one, only with a certificate for that name.
    pub fn check_agent(&self, hostname: &str) -> Result<(), ApiError> {
        if !self.policy.required_for_agents {
            return Ok(());
        }
        let client = self
            .client
            .map_or_else(|| "unknown".to_owned(), |c| c.to_string());
        let Some(certificate) = &self.certificate.0 else {
            tracing::warn!(%client, hostname, "agent refused: no client certificate");
            metrics::counter!("driftwatch_client_cert_refusals_total", "reason" => "missing")
                .increment(1);
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "client_certificate_required",
                "agents must present a client certificate from the collector's client CA",
            ));
        };
        let matches = webpki::EndEntityCert::try_from(certificate.as_ref())
            .ok()
            .zip(ServerName::try_from(hostname).ok())
            .is_some_and(|(cert, name)| cert.verify_is_valid_for_subject_name(&name).is_ok());
        if !matches {
            tracing::warn!(%client, hostname, "agent refused: its client certificate is not for this host");
            metrics::counter!("driftwatch_client_cert_refusals_total", "reason" => "mismatch")
                .increment(1);
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "client_certificate_mismatch",
                format!(
                    "the client certificate is not for `{hostname}`: its subjectAltName must \
                     name the host's enrolled hostname"
                ),
            ));
        }
        Ok(())
    }
}
