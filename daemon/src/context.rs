//! What the daemon's parts share, one small context per concern: the live configuration,
//! the stop flag, the job board (queue, progress, last errors) and the loaded model's
//! description. [`Daemon`] bundles them with the state store, the adapters owner and the
//! repository lookups for the socket operations; the model thread, the watcher and the
//! retention thread each get only the parts they use.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use evolora_protocol::reply::ModelInfo;
use evolora_state::StateStore;
use tokio::sync::watch;

use crate::adapters::Adapters;
use crate::config::Config;
use crate::repo_cache::RepoCache;
use crate::scheduler::{JobFlags, Scheduler};
use crate::watcher::RefWatcher;

pub const UNTRAINED_WARNING: &str = "the hypernetwork is untrained (seeded initialisation, no checkpoint configured): adapters are structurally valid but carry no learned knowledge";

/// The configuration in force; SIGHUP replaces it.
pub struct LiveConfig(RwLock<Config>);

impl LiveConfig {
    pub fn new(config: Config) -> Self {
        LiveConfig(RwLock::new(config))
    }

    /// A copy of the configuration now (a job keeps its copy for its whole length).
    pub fn get(&self) -> Config {
        self.0.read().expect("config lock").clone()
    }

    /// Applies a reloaded file. Paths and the model need a restart: they keep their values,
    /// and the return value says whether the file asked to change them.
    pub fn reload(&self, mut new: Config) -> bool {
        let mut cfg = self.0.write().expect("config lock");
        let needs_restart = new.model != cfg.model || new.state_dir != cfg.state_dir || new.socket != cfg.socket;
        new.model = cfg.model.clone();
        new.state_dir = cfg.state_dir.clone();
        new.socket = cfg.socket.clone();
        *cfg = new;
        needs_restart
    }
}

/// Set once the daemon is stopping: by SIGTERM or SIGINT directly (signal-hook), or by a
/// `shutdown` request. Long work (a walk) checks it between groups.
#[derive(Clone, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    pub fn set(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// The flag itself, for a signal handler to set.
    pub fn atomic(&self) -> Arc<AtomicBool> {
        self.0.clone()
    }
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    Done,
    Failed(String),
    /// Stopped at a group boundary for a shutdown.
    Interrupted,
}

/// The work queue and what came of each job: wake-ups go in, the model thread takes jobs
/// out, clients watch progress and read the last error per repository.
pub struct Jobs {
    scheduler: Scheduler,
    /// Bumped after every finished job; `adapter --wait` watches it.
    progress: watch::Sender<u64>,
    /// Last job error per repository key (cleared by a successful job).
    errors: Mutex<HashMap<String, String>>,
}

impl Default for Jobs {
    fn default() -> Self {
        Jobs { scheduler: Scheduler::default(), progress: watch::channel(0).0, errors: Mutex::default() }
    }
}

impl Jobs {
    pub fn wake(&self, repo: &str, flags: JobFlags) {
        self.scheduler.wake(repo, flags);
    }

    /// The next job, waiting at most `timeout`; `None` on timeout or once closed.
    pub fn next(&self, timeout: Duration) -> Option<(String, JobFlags)> {
        self.scheduler.next(timeout)
    }

    /// The running job for `repo` ended as `ended` says.
    pub fn finished(&self, repo: &str, ended: Ended) {
        {
            let mut errors = self.errors.lock().expect("errors lock");
            match ended {
                Ended::Done => {
                    errors.remove(repo);
                }
                Ended::Failed(e) => {
                    errors.insert(repo.to_owned(), e);
                }
                // Neither failed nor finished: the last error stands.
                Ended::Interrupted => {}
            }
        }
        self.scheduler.done();
        self.progress.send_modify(|g| *g += 1);
    }

    pub fn last_error(&self, repo: &str) -> Option<String> {
        self.errors.lock().expect("errors lock").get(repo).cloned()
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.progress.subscribe()
    }

    pub fn is_busy(&self, repo: &str) -> bool {
        self.scheduler.is_busy(repo)
    }

    pub fn queued(&self) -> usize {
        self.scheduler.queued()
    }

    pub fn close(&self) {
        self.scheduler.close();
    }

}

impl crate::watcher::WakeUps for Jobs {
    fn wake(&self, repo_key: &str) {
        self.scheduler.wake(repo_key, JobFlags::default());
    }

    fn is_closed(&self) -> bool {
        self.scheduler.is_closed()
    }
}

/// Everything the socket operations reach.
pub struct Daemon {
    pub config: Arc<LiveConfig>,
    pub store: StateStore,
    pub jobs: Arc<Jobs>,
    pub adapters: Arc<Adapters>,
    /// The loaded model, described for clients; set once before the daemon is ready.
    pub model: Arc<OnceLock<ModelInfo>>,
    /// Why the model did not load, when it did not: no job runs, published adapters are
    /// still served.
    pub model_error: OnceLock<String>,
    /// Client paths → repositories.
    pub repos: RepoCache,
    /// The ref watcher, once started (absent where the platform cannot watch).
    pub watcher: OnceLock<Arc<RefWatcher>>,
    pub stop: StopFlag,
    /// Woken by the `shutdown` op; the daemon's main task waits on it with the signals.
    pub shutdown_requested: tokio::sync::Notify,
}

impl Daemon {
    pub fn new(config: Config, store: StateStore) -> Arc<Self> {
        // The adapter paths handed to clients are under the canonical state directory (it
        // only changes with a restart).
        let state_dir = std::fs::canonicalize(&config.state_dir).unwrap_or_else(|_| config.state_dir.clone());
        let adapters = Adapters::new(state_dir.join(crate::config::ADAPTERS_DIR), store.clone());
        Arc::new(Daemon {
            config: Arc::new(LiveConfig::new(config)),
            store,
            jobs: Arc::default(),
            adapters: Arc::new(adapters),
            model: Arc::default(),
            model_error: OnceLock::new(),
            repos: RepoCache::default(),
            watcher: OnceLock::new(),
            stop: StopFlag::default(),
            shutdown_requested: tokio::sync::Notify::new(),
        })
    }

    /// Stops handing out jobs and tells running work to stop at its next boundary.
    pub fn begin_shutdown(&self) {
        self.stop.set();
        self.jobs.close();
    }

    pub fn state_dir(&self) -> PathBuf {
        self.config.get().state_dir
    }
}
