//! Reaching the database: the URL of `[store]` with its password from a file, TLS through
//! the workspace's rustls (`disable`, `require`, `verify-full` with a CA file), a pool of
//! `pool_size` connections.

use std::str::FromStr;
use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use driftwatch_config::collector::{PostgresSettings, PostgresTls};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::store::{Result, StoreError};

/// How to open one connection outside the pool (the windows listener, `cluster.rs`).
#[derive(Clone)]
pub struct Connector {
    config: tokio_postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

/// A pool for `settings` and a connector for connections of its own; no connection is
/// opened yet.
pub fn pool(settings: &PostgresSettings) -> Result<(Pool, Connector)> {
    driftwatch_config::collector::check_url(&settings.url)
        .map_err(|why| StoreError::other(format!("[store] url {why}")))?;
    let mut config = tokio_postgres::Config::from_str(&settings.url)
        .map_err(|err| StoreError::other(format!("[store] url cannot be used: {err}")))?;
    if let Some(path) = &settings.password_file {
        let text = std::fs::read_to_string(path).map_err(|err| {
            StoreError::other(format!(
                "cannot read [store] password_file {}: {err}",
                path.display()
            ))
        })?;
        let password = text.strip_suffix('\n').unwrap_or(&text);
        let password = password.strip_suffix('\r').unwrap_or(password);
        if password.is_empty() {
            return Err(StoreError::other(format!(
                "[store] password_file {} is empty",
                path.display()
            )));
        }
        config.password(password);
    }
    // A database that does not answer is an error at start, not a hang.
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(std::time::Duration::from_secs(10));
    }
    if config.get_application_name().is_none() {
        config.application_name("driftwatch-collector");
    }
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let (manager, connector) = match &settings.tls {
        PostgresTls::Disable => {
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
            let connector = Connector {
                config: config.clone(),
                tls: None,
            };
            (
                Manager::from_config(config, tokio_postgres::NoTls, manager_config),
                connector,
            )
        }
        PostgresTls::Require => {
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
            let tls = rustls::ClientConfig::builder()
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate::new()))
                .with_no_client_auth();
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls);
            let connector = Connector {
                config: config.clone(),
                tls: Some(tls.clone()),
            };
            (Manager::from_config(config, tls, manager_config), connector)
        }
        PostgresTls::VerifyFull { ca_file } => {
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
            let roots = ca_roots(ca_file)?;
            let tls = rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth();
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls);
            let connector = Connector {
                config: config.clone(),
                tls: Some(tls.clone()),
            };
            (Manager::from_config(config, tls, manager_config), connector)
        }
    };
    let pool = Pool::builder(manager)
        .max_size(settings.pool_size as usize)
        .build()
        .map_err(StoreError::other)?;
    Ok((pool, connector))
}

impl Connector {
    /// Listens on `channel` on a connection of its own, calling `heard` on each
    /// notification and once after each (re)connection (what was missed while it was
    /// down); reconnects after a second when the connection is lost. Runs until the task
    /// is dropped with its runtime or `alive` says no more (checked at each message).
    pub async fn listen(
        self,
        channel: &'static str,
        heard: impl Fn() + Send + Sync + 'static,
        alive: impl Fn() -> bool + Send + Sync + 'static,
    ) {
        while alive() {
            let ended = match &self.tls {
                None => {
                    listen_once(&self.config, tokio_postgres::NoTls, channel, &heard, &alive).await
                }
                Some(tls) => listen_once(&self.config, tls.clone(), channel, &heard, &alive).await,
            };
            if let Err(err) = ended {
                tracing::debug!(error = %err, channel, "listener connection lost; reconnecting");
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }
}

async fn listen_once<T>(
    config: &tokio_postgres::Config,
    tls: T,
    channel: &'static str,
    heard: &(impl Fn() + Send + Sync),
    alive: &(impl Fn() -> bool + Send + Sync),
) -> std::result::Result<(), tokio_postgres::Error>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>,
    T::Stream: Send + 'static,
{
    let (client, mut connection) = config.connect(tls).await?;
    // The connection runs only while polled: poll it until LISTEN is answered.
    let statement = format!("LISTEN {channel}");
    let listen = client.batch_execute(&statement);
    tokio::pin!(listen);
    loop {
        tokio::select! {
            answered = &mut listen => {
                answered?;
                break;
            }
            message = std::future::poll_fn(|cx| connection.poll_message(cx)) => match message {
                None => return Ok(()),
                Some(Err(err)) => return Err(err),
                Some(Ok(_)) => {}
            },
        }
    }
    heard();
    while alive() {
        match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            Some(Ok(tokio_postgres::AsyncMessage::Notification(_))) => heard(),
            Some(Ok(_)) => {}
            Some(Err(err)) => return Err(err),
            None => return Ok(()),
        }
    }
    Ok(())
}

fn ca_roots(path: &std::path::Path) -> Result<rustls::RootCertStore> {
    let pem = std::fs::read(path).map_err(|err| {
        StoreError::other(format!(
            "cannot read [store] ca_file {}: {err}",
            path.display()
        ))
    })?;
    let mut roots = rustls::RootCertStore::empty();
    let mut reader = pem.as_slice();
    for cert in rustls_pemfile_certs(&mut reader) {
        let cert = cert.map_err(|err| {
            StoreError::other(format!("[store] ca_file {}: {err}", path.display()))
        })?;
        roots.add(cert).map_err(|err| {
            StoreError::other(format!("[store] ca_file {}: {err}", path.display()))
        })?;
    }
    if roots.is_empty() {
        return Err(StoreError::other(format!(
            "[store] ca_file {} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(roots)
}

fn rustls_pemfile_certs(
    reader: &mut &[u8],
) -> impl Iterator<Item = std::result::Result<CertificateDer<'static>, String>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(reader).map(|cert| cert.map_err(|err| err.to_string()))
}

/// `tls = "require"`: encrypted, the certificate not checked (libpq's `sslmode=require`).
/// Signatures are still verified, so the handshake is a real one.
#[derive(Debug)]
struct AnyCertificate {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl AnyCertificate {
    fn new() -> AnyCertificate {
        let provider = rustls::crypto::CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
        AnyCertificate { provider }
    }
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
