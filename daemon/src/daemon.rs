//! The daemon's lifecycle: open state, load the model, bind the socket, announce readiness,
//! catch every registered repository up, serve, and stop cleanly on a signal.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use evolora_state::{StateError, StateStore};
use tokio::net::UnixListener;
use tracing::{error, info, warn};

use crate::config::{ClusterRole, Config};
use crate::context::Daemon;
use crate::job::{self, Engine, JobContext};
use crate::scheduler::JobFlags;
use crate::server;
use crate::signals::{Signal, SignalStream};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("another evolora daemon is already serving {0}")]
    AlreadyRunning(PathBuf),
    #[error("socket {path}: {source}")]
    Socket { path: PathBuf, source: std::io::Error },
    #[error("metrics listener {addr}: {source}")]
    Metrics { addr: String, source: std::io::Error },
    #[error("loading the model: {0}")]
    Model(String),
    #[error("cluster: {0}")]
    Cluster(#[from] evolora_cluster::ClusterError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// How long SIGTERM waits for the running step to finish before giving up on it.
const STOP_GRACE: Duration = Duration::from_secs(30);

fn sd_notify(state: &[sd_notify::NotifyState]) {
    let _ = sd_notify::notify(state);
}

/// Binds the socket with owner-only permissions, replacing a stale socket file but never a
/// live daemon's.
fn bind_socket(path: &Path) -> Result<UnixListener, DaemonError> {
    let err = |source| DaemonError::Socket { path: path.into(), source };
    if let Some(dir) = path.parent()
        && !dir.exists()
    {
        std::fs::create_dir_all(dir).map_err(err)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(DaemonError::AlreadyRunning(path.into()));
        }
        std::fs::remove_file(path).map_err(err)?;
    }
    // Create the socket already private, not chmod it after a window where it is open.
    // SAFETY: umask has no preconditions; the previous mask is restored right after bind.
    let old = unsafe { libc::umask(0o177) };
    let bound = std::os::unix::net::UnixListener::bind(path);
    unsafe { libc::umask(old) };
    let listener = bound.map_err(err)?;
    listener.set_nonblocking(true).map_err(err)?;
    UnixListener::from_std(listener).map_err(err)
}

/// The metrics listener, when one is configured. An address already in use stops the start
/// with its name, as a taken socket path does.
fn bind_metrics(addr: Option<&str>) -> Result<Option<tokio::net::TcpListener>, DaemonError> {
    let Some(addr) = addr else { return Ok(None) };
    let listener = std::net::TcpListener::bind(addr).and_then(|l| l.set_nonblocking(true).map(|()| l));
    let listener = listener.map_err(|source| DaemonError::Metrics { addr: addr.to_owned(), source })?;
    info!(address = %addr, "metrics at http://{addr}/metrics");
    Ok(Some(tokio::net::TcpListener::from_std(listener)?))
}

/// Runs the daemon in the foreground until SIGTERM, SIGINT or a `shutdown` request.
pub fn run(config: Config, config_file: Option<PathBuf>) -> Result<(), DaemonError> {
    // A file-size limit must fail the write (EFBIG, handled like a full disk), not kill us.
    // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    crate::git::tune_for_reading();
    std::fs::create_dir_all(&config.state_dir)?;
    let store = StateStore::open(&config.db_dir())?;
    if store.was_recovered() {
        warn!("the previous daemon did not shut down cleanly; state was recovered from the log");
    }
    let daemon = Daemon::new(config.clone(), store.clone());
    daemon.adapters.recover();
    daemon.push.start(config.serve.push.clone(), config.serve.grace_secs, &config.state_dir, daemon.adapters.clone(), daemon.metrics.clone());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("evolora-io")
        .build()?;
    let (listener, signals, metrics_listener) = {
        // All register with the runtime's reactor.
        let _guard = runtime.enter();
        (bind_socket(&config.socket)?, SignalStream::install(&daemon.stop), bind_metrics(config.serve.metrics_listen.as_deref())?)
    };
    let socket_path = config.socket.clone();

    // Cluster mode: connected (streams and buckets made) before the daemon is ready.
    let node = match &config.cluster {
        Some(c) => {
            let node = Arc::new(crate::cluster::Node::connect(c, runtime.handle())?);
            info!(role = ?c.role, node = %c.node, url = %c.url, "cluster mode");
            let _ = daemon.cluster.set(node.clone());
            Some(node)
        }
        None => None,
    };
    let role = config.cluster.as_ref().map(|c| c.role);

    // The model loads on its own thread, which then serves jobs; startup waits for the load.
    // A model that cannot load (a torn checkpoint, tokenizer or weights file) leaves the
    // daemon up without a model thread: adapters already published are still served, and
    // `status` and every `adapter` reply name the failure. An edge loads no model: its thread
    // publishes wake-ups; a worker's serves the cluster's queue instead of the local one.
    let (loaded_tx, loaded_rx) = std::sync::mpsc::channel();
    let job_context = JobContext::of(&daemon);
    let model_info = daemon.model.clone();
    let settings = config.model.clone();
    let cache = (config.embeddings_dir(), config.embedding_cache_budget.0);
    let edge_daemon = daemon.clone();
    let engine_thread = std::thread::Builder::new().name("evolora-model".into()).spawn(move || {
        if let (Some(ClusterRole::Edge), Some(node)) = (role, &node) {
            let _ = loaded_tx.send(Ok(()));
            return crate::cluster::edge::run(edge_daemon, node.clone());
        }
        drop(edge_daemon);
        match job::model::load_with_encoder(&settings, Some((&cache.0, cache.1)), 0) {
            Ok((model, encoder)) => {
                let _ = model_info.set(job::model::describe(&model, &settings, &encoder));
                let engine = Engine::new(job_context, model, encoder);
                let _ = loaded_tx.send(Ok(()));
                match node {
                    Some(node) => crate::cluster::worker::run(engine, node, settings.device.clone()),
                    None => engine.run(),
                }
            }
            Err(e) => {
                let _ = loaded_tx.send(Err(e.to_string()));
            }
        }
    })?;
    let load_error = match loaded_rx.recv() {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(_) => Some("the model thread died while loading".to_owned()),
    };
    if let Some(e) = load_error {
        error!(error = %e, "the model did not load: serving the adapters already published, generating none until the configuration is fixed and the daemon restarted");
        let _ = daemon.model_error.set(e);
    }

    // A worker's registered repositories are its mirrors: the cluster's queue drives them.
    let repos = if role == Some(ClusterRole::Worker) { Vec::new() } else { store.repos()? };
    let watcher = if role == Some(ClusterRole::Worker) { None } else { crate::watcher::RefWatcher::start(daemon.jobs.clone()) };
    for rec in &repos {
        if let Some(w) = &watcher {
            w.add(Path::new(&rec.git_dir), &rec.key);
        }
        daemon.jobs.wake(&rec.key, JobFlags::default());
    }
    if let Some(w) = watcher {
        let _ = daemon.watcher.set(w);
    }
    enforce_budget_in_background(&daemon);
    info!(socket = %socket_path.display(), state = %config.state_dir.display(), repositories = repos.len(), "evolora daemon ready");
    sd_notify(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status(&format!("serving {} repositories", repos.len()))]);

    let serving = daemon.clone();
    runtime.block_on(async move {
        tokio::spawn(sweep_after_grace(serving.clone()));
        if let Some(l) = metrics_listener {
            tokio::spawn(crate::metrics_http::serve(l, serving.clone()));
        }
        let shutdown = wait_for_shutdown(serving.clone(), signals, config_file);
        server::run(listener, shutdown, serving).await;
    });

    info!("stopping: finishing the current step");
    sd_notify(&[sd_notify::NotifyState::Stopping]);
    daemon.begin_shutdown();
    let deadline = std::time::Instant::now() + STOP_GRACE;
    while !engine_thread.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if engine_thread.is_finished() {
        let _ = engine_thread.join();
    } else {
        error!("the model thread did not stop within {:?}; its last step is not acknowledged", STOP_GRACE);
    }
    let _ = std::fs::remove_file(&socket_path);
    store.flush()?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM, SIGINT or a `shutdown` request; reloads the config on SIGHUP.
async fn wait_for_shutdown(daemon: Arc<Daemon>, signals: std::io::Result<SignalStream>, config_file: Option<PathBuf>) {
    let mut signals = match signals {
        Ok(s) => s,
        Err(e) => {
            error!(error = %e, "cannot install signal handlers; stop the daemon with the `shutdown` request");
            daemon.shutdown_requested.notified().await;
            return;
        }
    };
    loop {
        tokio::select! {
            sig = signals.next() => match sig {
                Some(Signal::Reload) => {
                    reload(&daemon, config_file.as_deref());
                    enforce_budget_in_background(&daemon);
                }
                Some(Signal::Stop(name)) => {
                    info!("{name}");
                    break;
                }
                None => break,
            },
            _ = daemon.shutdown_requested.notified() => {
                info!("shutdown requested");
                break;
            }
        }
    }
    signals.close();
}

/// Applies the adapter disk budget now (at start, and after a reload may have lowered it)
/// rather than at the next publish; on its own thread, as it may delete many directories.
fn enforce_budget_in_background(daemon: &Arc<Daemon>) {
    let keep = daemon.config.get().keep();
    if keep.disk_budget == 0 {
        return;
    }
    let adapters = daemon.adapters.clone();
    let hold = crate::adapters::Hold { now: crate::clock::now_secs(), grace_secs: keep.grace_secs };
    let spawned = std::thread::Builder::new().name("evolora-retention".into()).spawn(move || adapters.apply_budget(keep.disk_budget, hold));
    if let Err(e) = spawned {
        warn!(error = %e, "adapter disk budget not enforced");
    }
}

/// Frees the versions retention kept only for the serve grace once it is over, rather than
/// at the next publish (which may never come for a quiet repository).
async fn sweep_after_grace(daemon: Arc<Daemon>) {
    loop {
        let serve = daemon.config.get().serve;
        tokio::time::sleep(Duration::from_secs(serve.grace_secs.min(serve.worktree_ttl_secs).clamp(1, 60))).await;
        let (adapters, cfg) = (daemon.adapters.clone(), daemon.config.get());
        let _ = tokio::task::spawn_blocking(move || {
            adapters.sweep_held(cfg.keep());
            let ttl = Duration::from_secs(cfg.serve.worktree_ttl_secs);
            crate::job::worktree::sweep(&cfg.state_dir, ttl, crate::job::worktree::MAX_EPHEMERAL);
        })
        .await;
    }
}

/// Applies a changed config file. Triggers, retention and grouping change at once; paths and
/// the model need a restart, which is logged.
fn reload(daemon: &Daemon, file: Option<&Path>) {
    sd_notify(&[sd_notify::NotifyState::Reloading]);
    match Config::load(file) {
        Ok(new) => {
            if daemon.config.reload(new) {
                warn!("model, state_dir, socket, [[serve.push]] and metrics_listen changes take effect after a restart");
            }
            info!("configuration reloaded");
        }
        Err(e) => error!("configuration not reloaded: {e}"),
    }
    sd_notify(&[sd_notify::NotifyState::Ready]);
}
