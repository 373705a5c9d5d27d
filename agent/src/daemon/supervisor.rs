//! `driftwatch-agent run`: the supervisor of the long-running agent.
//!
//! Start: take the state directory's lock (one daemon per state directory),
//! load and verify the baseline (a tampered one stops the start, exit 4),
//! open the spool, then start a *generation*: the detector thread
//! ([`engine`](crate::daemon::engine)), the watch coalescer, the scheduler of
//! periodic and fallback scans, the shipper and the heartbeats. The
//! detector watches, runs the startup scan, and only then is the service
//! ready (`READY=1` for systemd's `Type=notify`). The state sources
//! (packages, sysctl...) are polled by their own task, at start and every
//! `[sources] interval_secs`, off the detector's thread (each collection
//! bounded by a timeout), and the finished poll is handed to the detector.
//!
//! SIGHUP reloads the configuration along the same path: a valid new one
//! replaces the generation (its first scan, `seen_by: scan`, covers the
//! moment without watches); an invalid one is reported precisely and the
//! running generation goes on. SIGTERM and SIGINT stop the watch, let the
//! detector finish what it is committing, give the shipper a few seconds to
//! deliver, and exit: everything not delivered stays in the spool.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use driftwatch_common::api::v1::SeenBy;
use driftwatch_config::AgentConfig;
use sd_notify::NotifyState;
use time::OffsetDateTime;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::Exit;
use crate::baseline::store::{Baseline, BaselineStore};
use crate::daemon::engine::{Engine, EngineMsg, ScanKind, load_baseline};
use crate::daemon::enroll::Credential;
use crate::daemon::heartbeat::Heartbeats;
use crate::daemon::ship::{Client, Shipper};
use crate::daemon::spool::{self, Spool};
use crate::daemon::status::{self, ReloadRecord, Status, StatusHandle};
use crate::daemon::watch::{self, Watcher};
use crate::observe::sources::poll::{Poller, collect_timeout};

/// `driftwatch-agent run`.
pub fn run(config_path: &Path, config: AgentConfig) -> anyhow::Result<Exit> {
    let state_dir = config.state_dir.clone();
    let _lock = lock_state_dir(&state_dir)?;
    let (store, baseline) = load_baseline(&state_dir)?;
    let mut spool = Spool::open(&state_dir.join(spool::FILE_NAME))?;
    let credential_path = config.daemon.credential_file(&state_dir);
    let credential = Credential::read(&credential_path)?;
    if let Some(credential) = &credential {
        let restamped = spool.adopt_identity(credential.host_id, None)?;
        if restamped > 0 {
            info!(events = restamped, host_id = %credential.host_id, "spooled events stamped with this host's id");
        }
        if !spool.chain_keyed()? {
            warn!(host_id = %credential.host_id, "the spool holds no chain key for this host: its events are not authenticated (a collector that issued a key refuses them as forgeries); enroll again to get one");
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("agent")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let status = StatusHandle::new(Status {
        pid: std::process::id(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at: Some(OffsetDateTime::now_utc()),
        phase: "starting".into(),
        config: config_path.to_owned(),
        ..Status::default()
    });
    let textfile = config.metrics.textfile.clone();
    let outcome = runtime.block_on(supervise(
        config_path.to_owned(),
        config,
        Start {
            store,
            baseline,
            spool,
            credential,
        },
        status.clone(),
    ));
    status.update(|s| {
        s.ready = false;
        s.phase = "stopped".into();
    });
    let _ = status.write(&state_dir);
    if let Some(path) = textfile {
        crate::daemon::metrics::write_final(&path, &status.snapshot());
    }
    runtime.shutdown_timeout(Duration::from_secs(2));
    outcome
}

/// Holds `agent.lock` for the life of the daemon.
fn lock_state_dir(state_dir: &Path) -> anyhow::Result<File> {
    let path = state_dir.join(status::LOCK_NAME);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| {
            format!(
                "cannot open {} (does the state directory exist? run `driftwatch-agent baseline init` first)",
                path.display()
            )
        })?;
    for _ in 0..20 {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Err(std::fs::TryLockError::Error(err)) => {
                return Err(err).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
    }
    anyhow::bail!(
        "another driftwatch-agent is running with the state directory {} (it holds {})",
        state_dir.display(),
        path.display()
    )
}

/// What a generation starts from.
struct Start {
    store: BaselineStore,
    baseline: Baseline,
    spool: Spool,
    credential: Option<Credential>,
}

async fn supervise(
    config_path: PathBuf,
    config: AgentConfig,
    start: Start,
    status: StatusHandle,
) -> anyhow::Result<Exit> {
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;

    let background = CancellationToken::new();
    tokio::spawn(
        status
            .clone()
            .run_writer(config.state_dir.clone(), background.clone()),
    );
    // The agent's own metrics ([metrics], off by default); an address that cannot be
    // bound stops the start.
    if let Some(addr) = config.metrics.listen {
        crate::daemon::metrics::serve(addr, status.clone(), background.clone()).await?;
    }
    if let Some(path) = config.metrics.textfile.clone() {
        tokio::spawn(crate::daemon::metrics::write_textfile(
            path,
            config.metrics.textfile_interval,
            status.clone(),
            background.clone(),
        ));
    }
    if let Some(interval) = sd_notify::watchdog_enabled() {
        tokio::spawn(watchdog(interval / 2, background.clone()));
    }
    let _background = background.drop_guard();

    let mut current = config;
    let mut generation = Generation::start(&current, start, ScanKind::Startup, &status)?;
    let _ = sd_notify::notify(&[NotifyState::Status("startup scan")]);
    tokio::select! {
        ready = generation.ready() => ready?,
        _ = term.recv() => return stop(generation, &status, "SIGTERM during start").await,
        _ = int.recv() => return stop(generation, &status, "SIGINT during start").await,
    }
    status.update(|s| {
        s.ready = true;
        s.phase = "running".into();
    });
    let _ = status.write(&current.state_dir);
    let snapshot = status.snapshot();
    let summary = format!(
        "watching {} directories; {} event(s) waiting for delivery",
        snapshot.watches, snapshot.spool.events
    );
    let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(&summary)]);
    info!(
        watches = snapshot.watches,
        unwatched = snapshot.coverage.unwatched.len(),
        spooled = snapshot.spool.events,
        "ready"
    );

    loop {
        tokio::select! {
            _ = term.recv() => return stop(generation, &status, "SIGTERM").await,
            _ = int.recv() => return stop(generation, &status, "SIGINT").await,
            _ = hup.recv() => {
                info!(config = %config_path.display(), "SIGHUP: reloading the configuration");
                generation = reload(&config_path, &mut current, generation, &status).await?;
            }
            _ = generation.detector_exited() => {
                generation.shutdown().await;
                anyhow::bail!("the detector stopped unexpectedly; see the log above");
            }
        }
    }
}

async fn stop(generation: Generation, status: &StatusHandle, why: &str) -> anyhow::Result<Exit> {
    info!("{why}: stopping");
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
    status.update(|s| s.phase = "stopping".into());
    generation.shutdown().await;
    info!("stopped");
    Ok(Exit::Clean)
}

/// Applies a new configuration, or keeps the running one and says why not.
async fn reload(
    config_path: &Path,
    current: &mut AgentConfig,
    generation: Generation,
    status: &StatusHandle,
) -> anyhow::Result<Generation> {
    let refuse = |errors: Vec<String>| {
        // One line (one journal entry at priority err) naming every problem.
        error!(
            errors = %errors.join("; "),
            "configuration reload refused; the running configuration stays in force"
        );
        status.update(|s| {
            s.last_reload = Some(ReloadRecord {
                at: OffsetDateTime::now_utc(),
                ok: false,
                errors,
            })
        });
    };
    let new = match AgentConfig::load(config_path) {
        Ok(new) => new,
        Err(errors) => {
            refuse(errors.0.iter().map(ToString::to_string).collect());
            return Ok(generation);
        }
    };
    if new.state_dir != current.state_dir {
        refuse(vec![format!(
            "{}: state_dir changed from {} to {}: that needs a restart",
            config_path.display(),
            current.state_dir.display(),
            new.state_dir.display()
        )]);
        return Ok(generation);
    }
    if new.metrics != current.metrics {
        warn!("[metrics] changed: the new settings take effect at the next restart");
    }
    let (store, baseline) = match load_baseline(&new.state_dir) {
        Ok(loaded) => loaded,
        Err(err) => {
            let tampered = err
                .downcast_ref::<crate::baseline::store::StoreError>()
                .is_some_and(crate::baseline::store::StoreError::is_integrity_failure);
            if tampered {
                error!(
                    error = format!("{err:#}"),
                    "BASELINE INTEGRITY CHECK FAILED on reload: still running on the baseline verified at start"
                );
                status.update(|s| s.baseline_tampered = true);
            }
            refuse(vec![format!("{err:#}")]);
            return Ok(generation);
        }
    };
    let _ = sd_notify::notify(&[NotifyState::Reloading, NotifyState::Status("reloading")]);
    status.update(|s| s.phase = "reloading".into());
    generation.shutdown().await;
    let spool = Spool::open(&new.state_dir.join(spool::FILE_NAME))?;
    let credential = Credential::read(&new.daemon.credential_file(&new.state_dir))?;
    let start = Start {
        store,
        baseline,
        spool,
        credential,
    };
    let mut next = Generation::start(&new, start, ScanKind::Reload, status)?;
    next.ready().await?;
    *current = new;
    status.update(|s| {
        s.phase = "running".into();
        s.last_reload = Some(ReloadRecord {
            at: OffsetDateTime::now_utc(),
            ok: true,
            errors: Vec::new(),
        });
    });
    let _ = sd_notify::notify(&[
        NotifyState::Ready,
        NotifyState::Status("running (reloaded)"),
    ]);
    info!("configuration reloaded");
    Ok(next)
}

/// One configuration's set of tasks.
struct Generation {
    /// Stops the watch coalescer, the scheduler and the heartbeats.
    cancel: CancellationToken,
    /// Stops the shipper (after the detector, so it can flush its last events).
    ship_cancel: CancellationToken,
    /// Interrupts a running scan.
    stop: Arc<AtomicBool>,
    engine: mpsc::Sender<EngineMsg>,
    detector: Option<std::thread::JoinHandle<()>>,
    detector_done: Option<oneshot::Receiver<()>>,
    ready: Option<oneshot::Receiver<anyhow::Result<()>>>,
    tasks: Vec<JoinHandle<()>>,
    shipper: JoinHandle<()>,
}

impl Generation {
    fn start(
        config: &AgentConfig,
        start: Start,
        first_scan: ScanKind,
        status: &StatusHandle,
    ) -> anyhow::Result<Generation> {
        let daemon = &config.daemon;
        let (engine_tx, engine_rx) = mpsc::channel(4);
        let wake = Arc::new(Notify::new());
        let stop = Arc::new(AtomicBool::new(false));
        let cancel = CancellationToken::new();
        let ship_cancel = CancellationToken::new();
        let mut tasks = Vec::new();

        let (watcher, hints) = if daemon.watch.enabled {
            match Watcher::new(&daemon.watch) {
                Ok((watcher, hints)) => (Some(watcher), Some(hints)),
                Err(err) => {
                    error!(error = %err, "cannot start the real-time watch (inotify); falling back to periodic scans");
                    (None, None)
                }
            }
        } else {
            warn!(
                "the real-time watch is disabled ([watch] enabled = false): changes are found by scans only"
            );
            (None, None)
        };
        let watching = watcher.is_some();

        let host_id = start.credential.as_ref().map(|c| c.host_id);
        let url = daemon
            .collector
            .url
            .clone()
            .or_else(|| start.credential.as_ref().map(|c| c.collector_url.clone()));
        let client = match (&url, &start.credential) {
            (Some(url), Some(credential)) => Some(Client::new(
                &daemon.collector,
                url,
                Some(credential.credential.clone()),
            )?),
            (Some(url), None) => {
                warn!(collector = %url, "not enrolled: events are kept in the spool until `driftwatch-agent enroll`");
                None
            }
            (None, _) => {
                warn!(
                    "no collector configured: events are kept in the spool (bounded) until one is"
                );
                None
            }
        };
        let spool_depth = start.spool.depth()?;
        let poller = Arc::new(Poller::new(
            &config.sources,
            collect_timeout(config.sources.interval),
        ));
        status.update(|s| {
            // What the previous configuration polled may no longer be enabled.
            s.coverage
                .sources
                .retain(|source| config.sources.enabled.contains(&source.name));
            s.host_id = host_id;
            s.collector_url = url.clone();
            s.watch_enabled = watching;
            s.spool = spool_depth;
            s.spool_max_events = daemon.spool.max_events;
            s.spool_max_bytes = daemon.spool.max_bytes;
        });

        let ship_spool = Spool::open(start.spool.path())?;
        let engine = Engine::new(
            config.clone(),
            start.store,
            start.baseline,
            start.spool,
            watcher,
            status.clone(),
            Arc::clone(&wake),
            Arc::clone(&stop),
        )?;
        // Coverage is a signal: say whether, and why not, writers can be named.
        let attribution = engine.attribution_unavailable().map(str::to_owned);
        status.update(|s| s.coverage.attribution_unavailable = attribution);
        let (ready_tx, ready_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel();
        let detector = std::thread::Builder::new()
            .name("detector".into())
            .spawn(move || {
                engine.run(first_scan, ready_tx, engine_rx);
                let _ = done_tx.send(());
            })
            .context("cannot start the detector thread")?;

        if let Some(hints) = hints {
            tasks.push(tokio::spawn(watch::run_coalescer(
                hints,
                daemon.watch.clone(),
                engine_tx.clone(),
                status.clone(),
                cancel.clone(),
            )));
        }
        // Without a watch, everything is "unwatched": the fallback interval scans it all.
        let fallback = Some(daemon.watch.fallback_scan_interval);
        tasks.push(tokio::spawn(schedule(
            daemon.scan_interval,
            fallback,
            engine_tx.clone(),
            cancel.clone(),
        )));
        if !poller.is_empty() {
            tasks.push(tokio::spawn(poll_sources(
                Arc::clone(&poller),
                config.sources.interval,
                first_scan.seen_by(),
                engine_tx.clone(),
                cancel.clone(),
            )));
        }
        if let (Some(client), Some(host_id)) = (&client, host_id) {
            tasks.push(tokio::spawn(
                Heartbeats {
                    client: client.clone(),
                    host_id,
                    interval: daemon.heartbeat.interval,
                    status: status.clone(),
                    engine: engine_tx.clone(),
                    sources: Arc::clone(&poller),
                    baseline: crate::baseline::store::StorePaths::in_state_dir(&config.state_dir),
                }
                .run(cancel.clone()),
            ));
        }
        let shipper = tokio::spawn(
            Shipper {
                client,
                spool: ship_spool,
                settings: daemon.collector.clone(),
                status: status.clone(),
                wake,
                engine: engine_tx.clone(),
            }
            .run(ship_cancel.clone()),
        );
        Ok(Generation {
            cancel,
            ship_cancel,
            stop,
            engine: engine_tx,
            detector: Some(detector),
            detector_done: Some(done_rx),
            ready: Some(ready_rx),
            tasks,
            shipper,
        })
    }

    /// Waits for the detector's first scan.
    async fn ready(&mut self) -> anyhow::Result<()> {
        match self.ready.take() {
            Some(ready) => ready
                .await
                .map_err(|_| anyhow::anyhow!("the detector stopped during its first scan"))?,
            None => Ok(()),
        }
    }

    /// Resolves if the detector thread ends on its own.
    async fn detector_exited(&mut self) {
        match &mut self.detector_done {
            Some(done) => {
                let _ = done.await;
                self.detector_done = None;
            }
            None => std::future::pending().await,
        }
    }

    /// Stops the watch and the scans, lets the detector finish what it is
    /// doing, then gives the shipper its last chance to deliver.
    async fn shutdown(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.cancel.cancel();
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        // Wakes a detector waiting for work (it sees `stop` and ends).
        let _ = self.engine.try_send(EngineMsg::SpaceFreed);
        drop(self.engine);
        if let Some(detector) = self.detector.take() {
            let _ = tokio::task::spawn_blocking(move || detector.join()).await;
        }
        self.ship_cancel.cancel();
        let _ = self.shipper.await;
    }
}

/// Asks for periodic full scans and for scans of the unwatched subtrees.
async fn schedule(
    periodic: Option<Duration>,
    fallback: Option<Duration>,
    engine: mpsc::Sender<EngineMsg>,
    cancel: CancellationToken,
) {
    let timer = |every: Option<Duration>| {
        every.map(|every| {
            let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            timer
        })
    };
    let mut periodic = timer(periodic);
    let mut fallback = timer(fallback);
    async fn tick(timer: &mut Option<tokio::time::Interval>) {
        match timer {
            Some(timer) => {
                timer.tick().await;
            }
            None => std::future::pending().await,
        }
    }
    loop {
        let kind = tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick(&mut periodic) => ScanKind::Periodic,
            _ = tick(&mut fallback) => ScanKind::Fallback,
        };
        let message = EngineMsg::Scan { kind, reply: None };
        tokio::select! {
            _ = cancel.cancelled() => return,
            sent = engine.send(message) => if sent.is_err() { return },
        }
    }
}

/// Polls the state sources now (`first`: how the detector reports what the
/// first poll finds), then every `every`, and hands each finished poll to
/// the detector. Collection runs on blocking threads with a timeout, so a
/// hanging source delays neither file events nor shutdown.
async fn poll_sources(
    poller: Arc<Poller>,
    every: Duration,
    first: SeenBy,
    engine: mpsc::Sender<EngineMsg>,
    cancel: CancellationToken,
) {
    let mut seen_by = first;
    loop {
        let collecting = Arc::clone(&poller);
        let poll = tokio::select! {
            _ = cancel.cancelled() => return,
            poll = tokio::task::spawn_blocking(move || collecting.poll()) => match poll {
                Ok(poll) => poll,
                Err(err) => {
                    error!(error = %err, "collecting the state sources failed");
                    return;
                }
            },
        };
        let message = EngineMsg::Sources {
            poll: Box::new(poll),
            seen_by,
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            sent = engine.send(message) => if sent.is_err() { return },
        }
        seen_by = SeenBy::Scan;
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// Tells systemd the agent is alive, at half the watchdog interval.
async fn watchdog(every: Duration, cancel: CancellationToken) {
    let mut timer = tokio::time::interval(every.max(Duration::from_millis(100)));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = timer.tick() => { let _ = sd_notify::notify(&[NotifyState::Watchdog]); }
        }
    }
}
