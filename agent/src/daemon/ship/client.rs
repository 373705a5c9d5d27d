//! The HTTP client for the collector's API: HTTPS through reqwest (rustls),
//! optionally trusting only a pinned CA and presenting a client certificate,
//! the agent's credential as a Bearer token, gzip-compressed JSON bodies.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use driftwatch_common::api::v1::{ApiErrorBody, PREFIX};
use driftwatch_config::CollectorSettings;
use flate2::Compression;
use flate2::write::GzEncoder;
use serde::de::DeserializeOwned;

/// Why a request failed; every failure is retried (except at enrollment).
#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    #[error("cannot reach the collector: {0}")]
    Transport(String),
    #[error("the collector answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("the collector's answer is not understood: {0}")]
    BadAnswer(String),
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    credential: Option<String>,
}

impl Client {
    /// A client for `base_url` with the TLS settings of `[collector]`.
    pub fn new(
        settings: &CollectorSettings,
        base_url: &str,
        credential: Option<String>,
    ) -> anyhow::Result<Client> {
        let mut builder = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("driftwatch-agent/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &settings.ca_file {
            let pem = std::fs::read(ca)
                .with_context(|| format!("cannot read collector.ca_file {}", ca.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).with_context(|| {
                format!(
                    "collector.ca_file {} holds no valid PEM certificate",
                    ca.display()
                )
            })?;
            anyhow::ensure!(
                !certs.is_empty(),
                "collector.ca_file {} holds no certificate",
                ca.display()
            );
            // Only this CA: not the system's roots.
            builder = builder.tls_certs_only(certs);
        }
        if let (Some(cert), Some(key)) = (&settings.client_cert_file, &settings.client_key_file) {
            let mut pem = std::fs::read(cert).with_context(|| {
                format!("cannot read collector.client_cert_file {}", cert.display())
            })?;
            pem.push(b'\n');
            pem.extend(std::fs::read(key).with_context(|| {
                format!("cannot read collector.client_key_file {}", key.display())
            })?);
            let identity = reqwest::Identity::from_pem(&pem)
                .context("the client certificate or key is not valid PEM")?;
            builder = builder.identity(identity);
        }
        Ok(Client {
            http: builder.build().context("cannot set up the HTTPS client")?,
            base: base_url.trim_end_matches('/').to_owned(),
            credential,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// POSTs JSON (gzip-compressed when `gzip`) to `PREFIX/endpoint` and decodes the answer.
    pub async fn post<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        json: Vec<u8>,
        gzip: bool,
    ) -> Result<T, ShipError> {
        let url = format!("{}{PREFIX}/{endpoint}", self.base);
        let mut request = self
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if let Some(credential) = &self.credential {
            request = request.bearer_auth(credential);
        }
        let body = if gzip {
            request = request.header(reqwest::header::CONTENT_ENCODING, "gzip");
            compress(&json)
        } else {
            json
        };
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|err| ShipError::Transport(error_chain(&err)))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|err| ShipError::Transport(error_chain(&err)))?;
        if !status.is_success() {
            let message = serde_json::from_slice::<ApiErrorBody>(&bytes)
                .map(|body| format!("{}: {}", body.error.code, body.error.message))
                .unwrap_or_else(|_| {
                    let text = String::from_utf8_lossy(&bytes);
                    text.chars().take(200).collect()
                });
            return Err(ShipError::Status {
                status: status.as_u16(),
                message,
            });
        }
        serde_json::from_slice(&bytes).map_err(|err| ShipError::BadAnswer(err.to_string()))
    }
}

pub fn compress(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(bytes.len() / 4), Compression::fast());
    encoder
        .write_all(bytes)
        .expect("writing to a Vec never fails");
    encoder.finish().expect("writing to a Vec never fails")
}

/// reqwest's errors keep the useful part (connection refused, certificate
/// unknown...) in their sources.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
        source = cause_source(source);
    }
    text
}

fn cause_source<'a>(
    err: Option<&'a (dyn std::error::Error + 'static)>,
) -> Option<&'a (dyn std::error::Error + 'static)> {
    err.and_then(std::error::Error::source)
}
