//! Running the service: the HTTP server (plain or TLS), the background round (alerts,
//! liveness, delivery), and a graceful stop.
//!
//! The accept loop is our own (hyper-util's connection builder over tokio, rustls for TLS)
//! so that it can hold the limits that keep the collector up under abuse:
//!
//! - at most `max_connections` connections are served at once; the loop takes a slot
//!   before it accepts, so beyond the cap new connections wait in the kernel's accept
//!   queue instead of taking file descriptors (the cap is lowered at start if the process's
//!   descriptor limit could not hold it). After [`QUEUE_WAIT`] the slot of a connection
//!   not being served a request is taken back (one that never completed a request head
//!   first, oldest first), so a flood of slow connections cannot keep `/healthz` or an
//!   agent out; a connection whose request is being handled is never closed for room;
//! - the TLS handshake and each request's headers must arrive within
//!   `header_read_timeout` (hyper's own timer, which also runs while an HTTP/1.1
//!   keep-alive connection waits for its next request);
//! - a connection on which no byte moved for `idle_timeout` while no request was being
//!   handled is closed (slow bodies, HTTP/2, idle keep-alive);
//! - each request carries the client's address (`ConnectInfo`) and, over TLS, the client
//!   certificate it presented ([`PeerCertificate`]), for `crate::api`.
//!
//! The TLS setup (certificate chain, key, client CA) is a [`LiveTls`]: each new connection
//! takes the current one, and a reload (SIGHUP) replaces it without touching connections
//! already open.

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::ConnectInfo;
use driftwatch_config::collector::{Limits, Transport};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use rustls::RootCertStore;
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::api::{self, Endpoints};
use crate::app::App;
use crate::store::Store;

/// How often the background round runs.
pub const TICK: Duration = Duration::from_secs(1);
/// How long in-flight requests may take to finish once a stop is asked.
pub const GRACE: Duration = Duration::from_secs(20);
/// File descriptors kept for everything but client connections (database, logs, sinks).
pub const RESERVED_FDS: u64 = 64;
/// Largest request head (request line and headers) read; hyper answers 431 beyond it.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Connections the separate metrics listener serves at once.
pub const METRICS_CONNECTIONS: usize = 16;

/// The client certificate a TLS connection presented (already verified against the
/// configured client CA), in every request's extensions.
#[derive(Clone, Debug, Default)]
pub struct PeerCertificate(pub Option<Arc<CertificateDer<'static>>>);

/// Whether agents must present a client certificate (`[tls] client_ca` is set), in every
/// request's extensions.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientCertPolicy {
    pub required_for_agents: bool,
}

/// How to serve: the transport, the client CA, and where `/metrics` lives.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub transport: Transport,
    /// PEM file of the CA whose certificates agents must present.
    pub client_ca: Option<PathBuf>,
}

/// Serves `app` on `listener` until `shutdown` completes, then lets in-flight requests
/// finish (up to [`GRACE`]) and runs a last delivery round.
pub async fn serve<S: Store>(
    app: Arc<App<S>>,
    transport: &Transport,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let options = ServeOptions {
        transport: transport.clone(),
        client_ca: None,
    };
    serve_with(app, &options, listener, None, shutdown).await
}

/// [`serve`], with a client CA and an optional listener of its own for `/metrics`.
pub async fn serve_with<S: Store>(
    app: Arc<App<S>>,
    options: &ServeOptions,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let tls = LiveTls::for_transport(&options.transport, options.client_ca.as_deref())?;
    serve_live(app, options, tls, listener, metrics_listener, shutdown).await
}

/// [`serve_with`] on a TLS setup the caller keeps, to replace it while serving
/// ([`LiveTls::replace`]); `None` for plain HTTP.
pub async fn serve_live<S: Store>(
    app: Arc<App<S>>,
    options: &ServeOptions,
    tls: Option<Arc<LiveTls>>,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let limits = app.settings.limits.clone();
    // Plain HTTP; over TLS each connection takes the policy of the setup it was accepted with.
    let policy = ClientCertPolicy {
        required_for_agents: options.client_ca.is_some(),
    };
    let main = to_tokio(listener)?;
    let metrics = metrics_listener.map(to_tokio).transpose()?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let asked = Arc::clone(&stop_tx);
    let streams = Arc::clone(&app);
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("stopping: finishing in-flight requests");
        // Live drift streams never finish by themselves: end them, or the graceful
        // shutdown below would wait its whole grace for them.
        streams.close_streams();
        let _ = asked.send(true);
    });

    let background = {
        let app = Arc::clone(&app);
        let mut stop = stop_rx.clone();
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

    // Window changes made through other nodes on one database: the index follows early
    // (ingest checks anyway, so nothing waits on this).
    let follower = {
        let app = Arc::clone(&app);
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = app.follow_windows_hints() => {}
                    _ = stop.changed() => break,
                }
            }
        })
    };

    let graceful = GracefulShutdown::new();
    let slots = connection_slots(limits.max_connections);
    let endpoints = if metrics.is_some() {
        Endpoints::WithoutMetrics
    } else {
        Endpoints::All
    };
    let main_loop = accept_loop(
        main,
        Served {
            router: api::router_for(Arc::clone(&app), endpoints),
            tls: tls.clone(),
            policy,
            limits: limits.clone(),
            slots: Arc::new(Semaphore::new(slots)),
            open: Arc::default(),
        },
        &graceful,
        stop_rx.clone(),
    );
    let metrics_loop = async {
        if let Some(listener) = metrics {
            accept_loop(
                listener,
                Served {
                    router: api::router_for(Arc::clone(&app), Endpoints::MetricsOnly),
                    tls: tls.clone(),
                    policy,
                    limits: limits.clone(),
                    slots: Arc::new(Semaphore::new(METRICS_CONNECTIONS)),
                    open: Arc::default(),
                },
                &graceful,
                stop_rx.clone(),
            )
            .await;
        }
    };
    tokio::join!(main_loop, metrics_loop);
    if tokio::time::timeout(GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "requests still running after {} s: stopping anyway",
            GRACE.as_secs()
        );
    }

    // The server ended: stop the background round too.
    let _ = stop_tx.send(true);
    let _ = background.await;
    let _ = follower.await;
    // Alerts raised by the last requests still go out before the process ends.
    if let Err(err) = app.tick().await {
        tracing::warn!(error = %err, "last alert round failed");
    }
    Ok(())
}

fn to_tokio(listener: TcpListener) -> anyhow::Result<tokio::net::TcpListener> {
    listener
        .set_nonblocking(true)
        .context("cannot make the listening socket non-blocking")?;
    tokio::net::TcpListener::from_std(listener).context("cannot serve on the listening socket")
}

/// What each connection of one listener is served with.
#[derive(Clone)]
struct Served {
    router: Router,
    tls: Option<Arc<LiveTls>>,
    policy: ClientCertPolicy,
    limits: Limits,
    slots: Arc<Semaphore>,
    open: Arc<OpenConnections>,
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    served: Served,
    graceful: &GracefulShutdown,
    mut stop: watch::Receiver<bool>,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(served.limits.header_read_timeout)
        // A request head larger than this is answered 431 (hyper's default is ~400 KiB).
        .max_buf_size(MAX_HEAD_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEAD_BYTES as u32);
    let mut last_eviction: Option<Instant> = None;
    loop {
        if *stop.borrow() {
            return;
        }
        // A slot first: beyond the cap, connections wait in the kernel's queue, briefly;
        // then the slot of a connection that is not being served a request (a half-sent
        // head first, oldest first) is taken back.
        let permit = match Arc::clone(&served.slots).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                // Under pressure already (a slot was taken back within the last second):
                // take back another at once, so a queue of slow connections drains fast.
                let pressed =
                    last_eviction.is_some_and(|at: Instant| at.elapsed() < Duration::from_secs(1));
                let waited = if pressed {
                    None
                } else {
                    tokio::select! {
                        permit = Arc::clone(&served.slots).acquire_owned() => Some(permit),
                        _ = tokio::time::sleep(QUEUE_WAIT) => None,
                        _ = stop.changed() => return,
                    }
                };
                match waited {
                    Some(Ok(permit)) => permit,
                    Some(Err(_)) => return,
                    None => {
                        if served.open.evict_one() {
                            last_eviction = Some(Instant::now());
                            metrics::counter!("driftwatch_connections_evicted_total").increment(1);
                        }
                        tokio::select! {
                            permit = Arc::clone(&served.slots).acquire_owned() => match permit {
                                Ok(permit) => permit,
                                Err(_) => return,
                            },
                            _ = stop.changed() => return,
                        }
                    }
                }
            }
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of descriptors or a connection reset before accept: not fatal.
                tracing::warn!(error = %err, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let served = served.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            connection(stream, peer, served, builder, watcher).await;
            drop(permit);
        });
    }
}

async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    served: Served,
    builder: Builder<TokioExecutor>,
    watcher: Watcher,
) {
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let registered = served.open.register(Arc::clone(&activity));
    tokio::select! {
        () = serve_one(stream, peer, &served, builder, watcher, activity) => {}
        () = registered.evicted.notified() => {
            tracing::debug!(client = %peer, "connection closed to make room: it was not being served a request");
        }
    }
}

async fn serve_one(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    served: &Served,
    builder: Builder<TokioExecutor>,
    watcher: Watcher,
    activity: Arc<Activity>,
) {
    let io = Tracked {
        inner: stream,
        activity: Arc::clone(&activity),
    };
    match &served.tls {
        None => {
            let policy = served.policy;
            drive(io, peer, None, policy, served, builder, watcher, activity).await
        }
        Some(live) => {
            let (acceptor, policy) = live.current();
            let handshake = acceptor.accept(io);
            let stream =
                match tokio::time::timeout(served.limits.header_read_timeout, handshake).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(err)) => {
                        tracing::warn!(client = %peer, error = %err, "TLS handshake refused");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(client = %peer, "TLS handshake timed out");
                        return;
                    }
                };
            let certificate = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|leaf| Arc::new(leaf.clone().into_owned()));
            drive(
                stream,
                peer,
                certificate,
                policy,
                served,
                builder,
                watcher,
                activity,
            )
            .await;
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn drive<I>(
    io: I,
    peer: SocketAddr,
    certificate: Option<Arc<CertificateDer<'static>>>,
    policy: ClientCertPolicy,
    served: &Served,
    builder: Builder<TokioExecutor>,
    watcher: Watcher,
    activity: Arc<Activity>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let busy = Arc::clone(&activity);
    let service = served
        .router
        .clone()
        .map_request(move |mut request: axum::http::Request<Incoming>| {
            let extensions = request.extensions_mut();
            extensions.insert(ConnectInfo(peer));
            extensions.insert(PeerCertificate(certificate.clone()));
            extensions.insert(policy);
            request
        })
        .map_future(move |future| {
            let handling = Handling::start(Arc::clone(&busy));
            async move {
                let response = future.await;
                // A live stream is a request being served for as long as its body runs:
                // neither idle nor a candidate to be taken back under pressure.
                response.map(|response| held_while_streaming(response, handling))
            }
        });
    let connection = builder
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(service))
        .into_owned();
    let connection = watcher.watch(connection);
    tokio::pin!(connection);
    let idle = served.limits.idle_timeout;
    loop {
        let deadline = activity.last() + idle;
        tokio::select! {
            result = &mut connection => {
                if let Err(err) = result {
                    tracing::debug!(client = %peer, error = %err, "connection ended");
                }
                return;
            }
            _ = tokio::time::sleep_until(deadline) => {
                if activity.in_flight() == 0 && activity.last() + idle <= Instant::now() {
                    tracing::debug!(client = %peer, "idle connection closed");
                    return;
                }
            }
        }
    }
}

/// Keeps `handling` (the connection counts as serving a request) until the body of a
/// `text/event-stream` response ends; any other response lets it go at once.
fn held_while_streaming(
    response: axum::response::Response,
    handling: Handling,
) -> axum::response::Response {
    use futures_util::StreamExt;
    let streaming = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !streaming {
        drop(handling);
        return response;
    }
    let (parts, body) = response.into_parts();
    let body = body.into_data_stream().map(move |chunk| {
        let _serving = &handling;
        chunk
    });
    axum::response::Response::from_parts(parts, axum::body::Body::from_stream(body))
}

/// How long a new connection waits for a free slot before one is taken back.
pub const QUEUE_WAIT: Duration = Duration::from_millis(200);

/// The connections of one listener, so that a slot can be taken back when all are taken.
#[derive(Default)]
struct OpenConnections {
    next: AtomicU64,
    entries: std::sync::Mutex<std::collections::HashMap<u64, Registered>>,
}

#[derive(Clone)]
struct Registered {
    activity: Arc<Activity>,
    evicted: Arc<tokio::sync::Notify>,
}

/// Removes its connection from [`OpenConnections`] when the connection ends.
struct Registration {
    id: u64,
    open: Arc<OpenConnections>,
    evicted: Arc<tokio::sync::Notify>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut entries = self.open.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.remove(&self.id);
    }
}

impl OpenConnections {
    fn register(self: &Arc<Self>, activity: Arc<Activity>) -> Registration {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let evicted = Arc::new(tokio::sync::Notify::new());
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.insert(
            id,
            Registered {
                activity,
                evicted: Arc::clone(&evicted),
            },
        );
        Registration {
            id,
            open: Arc::clone(self),
            evicted,
        }
    }

    /// Closes the connection with the least claim to its slot: none of its requests being
    /// handled, never a request served (a half-sent head) before idle keep-alive, oldest
    /// first. False when every connection is busy.
    fn evict_one(&self) -> bool {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let victim = entries
            .iter()
            .filter(|(_, r)| r.activity.in_flight() == 0)
            .min_by_key(|(_, r)| {
                (
                    r.activity.served.load(Ordering::Relaxed) > 0,
                    r.activity.start,
                )
            })
            .map(|(id, _)| *id);
        match victim.and_then(|id| entries.remove(&id)) {
            Some(registered) => {
                registered.evicted.notify_one();
                true
            }
            None => false,
        }
    }
}

/// When a connection last moved a byte, and how many of its requests are being handled.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
    /// Requests whose handling started.
    served: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            served: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// One request being handled (the idle clock does not run meanwhile).
struct Handling(Arc<Activity>);

impl Handling {
    fn start(activity: Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        activity.served.fetch_add(1, Ordering::Relaxed);
        Handling(activity)
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// A stream that notes when bytes move.
struct Tracked<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The connection cap, lowered (with a warning) when the process may not open that many
/// descriptors even after raising its soft limit to the hard one.
fn connection_slots(configured: u32) -> usize {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let wanted = u64::from(configured) + RESERVED_FDS + METRICS_CONNECTIONS as u64;
    let available = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < wanted => {
            let raised = wanted.min(hard);
            match setrlimit(Resource::RLIMIT_NOFILE, raised, hard) {
                Ok(()) => raised,
                Err(_) => soft,
            }
        }
        Ok((soft, _)) => soft,
        Err(_) => wanted,
    };
    let fits = available.saturating_sub(RESERVED_FDS + METRICS_CONNECTIONS as u64);
    if fits < u64::from(configured) {
        let lowered = fits.max(1);
        tracing::warn!(
            configured,
            lowered,
            fd_limit = available,
            "the file descriptor limit cannot hold limits.max_connections: serving fewer at once"
        );
        return usize::try_from(lowered).unwrap_or(1);
    }
    usize::try_from(configured).unwrap_or(usize::MAX)
}

/// The TLS setup new connections are accepted with: replaced whole (certificate chain, key,
/// client CA and the policy that follows from it) by [`LiveTls::replace`]; connections
/// already open keep the one they were accepted with.
pub struct LiveTls {
    current: RwLock<(TlsAcceptor, ClientCertPolicy)>,
}

impl LiveTls {
    /// Loads the certificate chain, key and client CA (errors name the file).
    pub fn load(cert: &Path, key: &Path, client_ca: Option<&Path>) -> anyhow::Result<LiveTls> {
        Ok(LiveTls {
            current: RwLock::new(Self::setup(cert, key, client_ca)?),
        })
    }

    /// [`LiveTls::load`] for a TLS transport, `None` for plain HTTP.
    pub fn for_transport(
        transport: &Transport,
        client_ca: Option<&Path>,
    ) -> anyhow::Result<Option<Arc<LiveTls>>> {
        match transport {
            Transport::PlainHttp => Ok(None),
            Transport::Tls { cert, key } => {
                Ok(Some(Arc::new(LiveTls::load(cert, key, client_ca)?)))
            }
        }
    }

    /// Loads the files again and serves new connections with them; on an error the setup
    /// in force stays.
    pub fn replace(&self, cert: &Path, key: &Path, client_ca: Option<&Path>) -> anyhow::Result<()> {
        let setup = Self::setup(cert, key, client_ca)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = setup;
        Ok(())
    }

    fn current(&self) -> (TlsAcceptor, ClientCertPolicy) {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn setup(
        cert: &Path,
        key: &Path,
        client_ca: Option<&Path>,
    ) -> anyhow::Result<(TlsAcceptor, ClientCertPolicy)> {
        let config = tls_config(cert, key, client_ca)?;
        let policy = ClientCertPolicy {
            required_for_agents: client_ca.is_some(),
        };
        Ok((TlsAcceptor::from(config), policy))
    }
}

/// rustls with the certificate chain and key; with a client CA, a client certificate is
/// verified when presented (required for agents by the API, not by the handshake, so that
/// people's `driftctl` keeps working without one).
fn tls_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> anyhow::Result<Arc<ServerConfig>> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cannot load the TLS certificate {}", cert.display()))?;
    let key_der = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot load the TLS key {}", key.display()))?;
    let builder = ServerConfig::builder();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(ca)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .with_context(|| format!("cannot load tls.client_ca {}", ca.display()))?;
            for cert in certs {
                roots.add(cert).with_context(|| {
                    format!("tls.client_ca {} holds a bad certificate", ca.display())
                })?;
            }
            if roots.is_empty() {
                anyhow::bail!("tls.client_ca {} holds no certificate", ca.display());
            }
            let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
                .allow_unauthenticated()
                .build()
                .context("cannot build the client certificate verifier")?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key_der).with_context(|| {
        format!(
            "the TLS certificate {} and key {} do not make a usable pair",
            cert.display(),
            key.display()
        )
    })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
