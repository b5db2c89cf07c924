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

use evolora_protocol::reply::{ModelInfo, Verification, WalkProgress};
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
        // The push thread and the metrics listener start with the daemon.
        let serving = new.serve.push != cfg.serve.push || new.serve.metrics_listen != cfg.serve.metrics_listen;
        let needs_restart = new.model != cfg.model || new.state_dir != cfg.state_dir || new.socket != cfg.socket || serving || new.cluster != cfg.cluster;
        new.cluster = cfg.cluster.clone();
        new.serve.push = cfg.serve.push.clone();
        new.serve.metrics_listen = cfg.serve.metrics_listen.clone();
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
    /// Each ref's current (or last) walk, by (repository key, ref name).
    walks: Mutex<HashMap<(String, String), Walk>>,
    /// The last fidelity check of each ref's published adapter.
    verifications: Mutex<HashMap<(String, String), Verification>>,
    /// Adapters of uncommitted work waiting for the model thread.
    worktree: Mutex<std::collections::VecDeque<crate::job::worktree::WorktreeRequest>>,
}

/// A walk as the model thread records it; [`Jobs::walk`] reports it.
#[derive(Debug, Clone)]
struct Walk {
    start: &'static str,
    from_commit: String,
    to_walk: u64,
    walked: u64,
    first: bool,
    began: std::time::Instant,
    ended: Option<std::time::Instant>,
}

impl Default for Jobs {
    fn default() -> Self {
        Jobs {
            scheduler: Scheduler::default(),
            progress: watch::channel(0).0,
            errors: Mutex::default(),
            walks: Mutex::default(),
            verifications: Mutex::default(),
            worktree: Mutex::default(),
        }
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

    /// An adapter was published and its record made durable: wakes clients waiting for it.
    pub fn published(&self) {
        self.progress.send_modify(|g| *g += 1);
    }

    /// A ref's walk begins: `to_walk` commits from `from_commit`, started as `start` says.
    /// `first`: the ref has no adapter yet.
    pub fn walk_began(&self, repo: &str, refname: &str, start: &'static str, from_commit: String, to_walk: u64, first: bool) {
        let walk = Walk { start, from_commit, to_walk, walked: 0, first, began: std::time::Instant::now(), ended: None };
        self.walks.lock().expect("walks lock").insert((repo.to_owned(), refname.to_owned()), walk);
    }

    /// `walked` commits of the ref's walk are folded and durable.
    pub fn walk_advanced(&self, repo: &str, refname: &str, walked: u64) {
        if let Some(w) = self.walks.lock().expect("walks lock").get_mut(&(repo.to_owned(), refname.to_owned())) {
            w.walked = walked;
        }
        self.progress.send_modify(|g| *g += 1);
    }

    /// The ref's walk stopped (finished, failed or interrupted).
    pub fn walk_ended(&self, repo: &str, refname: &str) {
        if let Some(w) = self.walks.lock().expect("walks lock").get_mut(&(repo.to_owned(), refname.to_owned())) {
            w.ended.get_or_insert_with(std::time::Instant::now);
        }
    }

    /// Records the fidelity check of the adapter just published for the ref.
    pub fn verified(&self, repo: &str, refname: &str, outcome: Verification) {
        self.verifications.lock().expect("verifications lock").insert((repo.to_owned(), refname.to_owned()), outcome);
    }

    /// The ref's last fidelity check since the daemon started.
    pub fn verification(&self, repo: &str, refname: &str) -> Option<Verification> {
        self.verifications.lock().expect("verifications lock").get(&(repo.to_owned(), refname.to_owned())).cloned()
    }

    /// The ref's current walk, or its last since the daemon started.
    pub fn walk(&self, repo: &str, refname: &str) -> Option<WalkProgress> {
        let walks = self.walks.lock().expect("walks lock");
        let w = walks.get(&(repo.to_owned(), refname.to_owned()))?;
        let elapsed = w.ended.unwrap_or_else(std::time::Instant::now).duration_since(w.began).as_secs_f64();
        let running = w.ended.is_none();
        // The rate so far, once something is folded.
        let eta = (running && w.walked > 0).then(|| elapsed / w.walked as f64 * w.to_walk.saturating_sub(w.walked) as f64);
        Some(WalkProgress {
            start: w.start.to_owned(),
            from_commit: w.from_commit.clone(),
            to_walk: w.to_walk,
            walked: w.walked,
            running,
            first: w.first,
            elapsed_secs: elapsed,
            eta_secs: eta,
        })
    }

    /// Forgets a ref's walk record (the ref or the repository is gone).
    pub fn forget_walks(&self, repo: &str) {
        self.walks.lock().expect("walks lock").retain(|(r, _), _| r != repo);
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

    /// Queues an adapter of uncommitted work for the model thread, ahead of catch-up jobs.
    pub fn request_worktree(&self, request: crate::job::worktree::WorktreeRequest) {
        self.worktree.lock().expect("worktree lock").push_back(request);
        self.scheduler.poke();
    }

    /// The next adapter of uncommitted work to make, if any.
    pub fn next_worktree(&self) -> Option<crate::job::worktree::WorktreeRequest> {
        self.worktree.lock().expect("worktree lock").pop_front()
    }

    /// When the running job's first wake-up came (for the commit-to-adapter latency).
    pub fn running_woken_at(&self) -> Option<std::time::Instant> {
        self.scheduler.running_woken_at()
    }

    /// Commits still to walk in the walks running now.
    pub fn walk_lag(&self) -> u64 {
        let walks = self.walks.lock().expect("walks lock");
        walks.values().filter(|w| w.ended.is_none()).map(|w| w.to_walk.saturating_sub(w.walked)).sum()
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
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Loads new versions into inference servers (started by the daemon when configured).
    pub push: Arc<crate::push::Pusher>,
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
    /// The cluster connection, in cluster mode (set before the daemon is ready).
    pub cluster: OnceLock<Arc<crate::cluster::Node>>,
}

impl Daemon {
    pub fn new(config: Config, store: StateStore) -> Arc<Self> {
        // The adapter paths handed to clients are under the canonical state directory (it
        // only changes with a restart).
        let state_dir = std::fs::canonicalize(&config.state_dir).unwrap_or_else(|_| config.state_dir.clone());
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let adapters = Adapters::new(state_dir.join(crate::config::ADAPTERS_DIR), store.clone(), metrics.clone());
        Arc::new(Daemon {
            config: Arc::new(LiveConfig::new(config)),
            store,
            jobs: Arc::default(),
            adapters: Arc::new(adapters),
            metrics,
            push: Arc::default(),
            model: Arc::default(),
            model_error: OnceLock::new(),
            repos: RepoCache::default(),
            watcher: OnceLock::new(),
            stop: StopFlag::default(),
            shutdown_requested: tokio::sync::Notify::new(),
            cluster: OnceLock::new(),
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
