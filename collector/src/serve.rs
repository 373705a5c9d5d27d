//! Running the service: the HTTP server (plain or TLS), the background round (alerts,
//! liveness, delivery), and a graceful stop.

use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use driftwatch_config::collector::Transport;

use crate::api;
use crate::app::App;
use crate::store::Store;

/// How often the background round runs.
pub const TICK: Duration = Duration::from_secs(1);
/// How long in-flight requests may take to finish once a stop is asked.
pub const GRACE: Duration = Duration::from_secs(20);

/// Serves `app` on `listener` until `shutdown` completes, then lets in-flight requests
/// finish (up to [`GRACE`]) and runs a last delivery round.
pub async fn serve<S: Store>(
    app: Arc<App<S>>,
    transport: &Transport,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    listener
        .set_nonblocking(true)
        .context("cannot make the listening socket non-blocking")?;
    let handle: Handle<std::net::SocketAddr> = Handle::new();
    let stopper = handle.clone();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let asked = Arc::clone(&stop_tx);
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("stopping: finishing in-flight requests");
        let _ = asked.send(true);
        stopper.graceful_shutdown(Some(GRACE));
    });

    let background = {
        let app = Arc::clone(&app);
        let mut stop = stop_rx;
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(TICK);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {
                        if let Err(err) = app.tick().await {
                            tracing::error!(error = %err, "background round failed");
                        }
                    }
                    _ = stop.changed() => break,
                }
            }
        })
    };

    let service = api::router(Arc::clone(&app)).into_make_service();
    let served = match transport {
        Transport::PlainHttp => {
            axum_server::from_tcp(listener)
                .context("cannot serve on the listening socket")?
                .handle(handle)
                .serve(service)
                .await
        }
        Transport::Tls { cert, key } => {
            let tls = RustlsConfig::from_pem_file(cert, key)
                .await
                .with_context(|| {
                    format!(
                        "cannot load the TLS certificate {} and key {}",
                        cert.display(),
                        key.display()
                    )
                })?;
            axum_server::tls_rustls::from_tcp_rustls(listener, tls)
                .context("cannot serve on the listening socket")?
                .handle(handle)
                .serve(service)
                .await
        }
    };
    // The server ended (asked to, or failed): stop the background round too.
    let _ = stop_tx.send(true);
    let _ = background.await;
    // Alerts raised by the last requests still go out before the process ends.
    if let Err(err) = app.tick().await {
        tracing::warn!(error = %err, "last alert round failed");
    }
    served.context("the HTTP server failed")
}
