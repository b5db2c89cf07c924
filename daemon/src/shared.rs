//! State shared by the socket server, the model thread and the watcher.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use evolora_state::StateStore;
use serde::Serialize;
use tokio::sync::watch;

use crate::config::Config;
use crate::scheduler::Scheduler;

/// What clients are told about the loaded model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub architecture: String,
    pub encoder: String,
    pub fingerprint: String,
    pub trained: bool,
    pub base: String,
    pub gru_hidden: usize,
    pub head_hidden: usize,
    pub rank: usize,
}

pub const UNTRAINED_WARNING: &str = "the hypernetwork is untrained (seeded initialisation, no checkpoint configured): adapters are structurally valid but carry no learned knowledge";

pub struct Shared {
    pub config: RwLock<Config>,
    /// `<state_dir>/adapters` under the canonical state directory: the paths handed to
    /// clients.
    /// (The state directory only changes with a restart.)
    pub adapters_root: std::path::PathBuf,
    pub store: StateStore,
    pub scheduler: Scheduler,
    /// Bumped after every finished job; `adapter --wait` watches it.
    pub progress: watch::Sender<u64>,
    pub model: RwLock<Option<ModelInfo>>,
    /// Set when the model failed to load; jobs are refused with this message.
    pub model_error: RwLock<Option<String>>,
    /// Last job error per repository key (cleared by a successful job).
    pub errors: Mutex<HashMap<String, String>>,
    pub shutting_down: AtomicBool,
    /// Woken by the `shutdown` op; the daemon's main task waits on it with the signals.
    pub shutdown_requested: tokio::sync::Notify,
    /// The ref watcher, once started (absent where the platform cannot watch).
    pub watcher: std::sync::OnceLock<Arc<crate::watcher::RefWatcher>>,
    /// Pins, query times and deletions of adapter versions.
    pub retention: crate::retention::Retention,
    /// Client paths → repositories.
    pub repo_cache: crate::repo_cache::RepoCache,
}

impl Shared {
    pub fn new(config: Config, store: StateStore) -> Arc<Self> {
        let state_dir = std::fs::canonicalize(&config.state_dir).unwrap_or_else(|_| config.state_dir.clone());
        Arc::new(Shared {
            adapters_root: state_dir.join(crate::config::ADAPTERS_DIR),
            config: RwLock::new(config),
            store,
            scheduler: Scheduler::default(),
            progress: watch::channel(0).0,
            model: RwLock::new(None),
            model_error: RwLock::new(None),
            errors: Mutex::new(HashMap::new()),
            shutting_down: AtomicBool::new(false),
            shutdown_requested: tokio::sync::Notify::new(),
            watcher: std::sync::OnceLock::new(),
            retention: Default::default(),
            repo_cache: Default::default(),
        })
    }

    pub fn config(&self) -> Config {
        self.config.read().expect("config lock").clone()
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.scheduler.close();
    }

    pub fn bump_progress(&self) {
        self.progress.send_modify(|g| *g += 1);
    }
}
