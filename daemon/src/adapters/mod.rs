//! The one owner of adapter versions: publishing a directory and recording it, the
//! `current` link, what each version's `evolora.json` says ([`info`]), which versions stay
//! on disk ([`retention`]), pins, query times, and agreeing with the directories at start.
//!
//! `<root>/<repo key>/<commit>[.<n>]/` and `<root>/<repo key>/current -> <name>`.

pub mod dirs;
pub mod info;
mod reaper;
mod retention;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use evolora_model::hypernet::head::LoraPair;
use evolora_model::peft::{AdapterDirWriter, AdapterDtype, Formats};
use evolora_model::{AdapterWeights, BaseModelShapes, ModelError, ModuleType};
use evolora_state::{AdapterRecord, RefState, StateError, StateStore};
use tracing::{info, warn};

use crate::metrics::Metrics;

pub use info::{AdapterInfo, ModelStamp, SCHEMA};
pub use retention::{Hold, find};
use retention::Retention;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("adapter folder {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Write(#[from] ModelError),
    #[error(transparent)]
    State(#[from] StateError),
}

/// What goes into a version's adapter files.
#[derive(Clone, Copy)]
pub struct Contents<'a> {
    pub weights: &'a AdapterWeights,
    pub base: &'a BaseModelShapes,
    /// Its `evolora.json`.
    pub info: &'a AdapterInfo,
    /// Also write `adapter_model.gguf` for llama.cpp.
    pub gguf: bool,
}

/// A version being written (see [`Adapters::start_version`]); dropped unfinished, its
/// temporary directory goes and its name stays unused.
pub struct NewVersion {
    repo_key: String,
    name: String,
    writer: AdapterDirWriter,
}

impl NewVersion {
    /// Writes the next projection type's factors.
    pub fn put(&mut self, pair: &LoraPair) -> Result<(), ModelError> {
        self.writer.put(pair)
    }
}

/// Retention settings in force for one publish.
#[derive(Debug, Clone, Copy)]
pub struct Keep {
    /// Newest versions kept per repository.
    pub newest: usize,
    /// Bytes all versions may take together (0: no limit).
    pub disk_budget: u64,
    /// A version handed to a client or pushed to a server stays at least this long after
    /// its last hand-out, whatever `newest` and `disk_budget` say: servers re-read an
    /// adapter they evicted from memory from its path.
    pub grace_secs: u64,
}

/// The name a server knows a version by: `<repo key>/<version dir>`, unique per version and
/// never reused, and the version's path relative to the adapter root (vLLM's filesystem
/// resolver with `VLLM_LORA_RESOLVER_CACHE_DIR` set to that root loads it by this name).
pub fn served_name(repo_key: &str, dir: &str) -> String {
    format!("{repo_key}/{dir}")
}

pub struct Adapters {
    root: PathBuf,
    store: StateStore,
    retention: Retention,
    /// Running total of the bytes of versions on record, when known: a full budget pass
    /// reads every record, so it is skipped while this fits.
    bytes_on_record: Mutex<Option<u64>>,
    metrics: Arc<Metrics>,
}

impl Adapters {
    pub fn new(root: PathBuf, store: StateStore, metrics: Arc<Metrics>) -> Self {
        Adapters { root, store, retention: Retention::default(), bytes_on_record: Mutex::new(None), metrics }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn repo_dir(&self, repo_key: &str) -> PathBuf {
        self.root.join(repo_key)
    }

    /// The absolute path clients are handed for a version.
    pub fn path(&self, repo_key: &str, dir: &str) -> PathBuf {
        self.root.join(repo_key).join(dir)
    }

    /// At start, before anything else writes: removes unfinished writes and makes the
    /// records agree with the directories.
    pub fn recover(&self) {
        let orphans = dirs::remove_orphans(&self.root);
        if orphans > 0 {
            info!(orphans, "removed unfinished adapter directories");
        }
        match retention::reconcile(&self.store, &self.root) {
            Ok((0, 0)) => {}
            Ok((dropped, adopted)) => info!(dropped, adopted, "adapter records reconciled with their directories"),
            Err(e) => warn!(error = %e, "could not check adapter records against their directories"),
        }
    }

    /// Starts a new version of a repository's adapter at `commit`: reserves its name (never
    /// used before) and opens its weights file, which [`NewVersion::put`] fills while the
    /// adapter is generated; [`Adapters::finish_version`] publishes it.
    pub fn start_version(&self, repo_key: &str, commit: &str, layout: &[(ModuleType, usize, usize)], rank: usize, base: &BaseModelShapes, dtype: AdapterDtype) -> Result<NewVersion, PublishError> {
        let repo_dir = self.repo_dir(repo_key);
        std::fs::create_dir_all(&repo_dir).map_err(|source| PublishError::Io { path: repo_dir.clone(), source })?;
        let issued = self.store.issued_names(repo_key, commit)?;
        let (index, name) = dirs::fresh_name(&repo_dir, commit, issued);
        self.store.set_issued_names(repo_key, commit, index + 1)?;
        let writer = AdapterDirWriter::begin(&repo_dir.join(&name), layout, rank, base.num_hidden_layers, dtype)?;
        Ok(NewVersion { repo_key: repo_key.to_owned(), name, writer })
    }

    /// Completes `version` with `contents` (the weights put, the other files), points
    /// `current` at it and records it with the state that now names it (flushed with the
    /// caller's next flush). Returns the directory. Retention is the caller's next step
    /// ([`Adapters::retain_after_publish`]), once clients waiting for the version have been told.
    pub fn finish_version(&self, version: NewVersion, state: &mut RefState, contents: Contents) -> Result<PathBuf, PublishError> {
        let Contents { weights, base, info, gguf } = contents;
        let NewVersion { repo_key, name, writer } = version;
        let repo_dir = self.repo_dir(&repo_key);
        let io = |source| PublishError::Io { path: repo_dir.clone(), source };
        let now = info.created_at.unwrap_or_else(crate::clock::now_secs);
        let dir = writer.finish(weights, base, &[(info::FILE, info.to_bytes())], Formats { gguf })?;
        dirs::swap_current(&repo_dir, &name).map_err(io)?;
        state.published(&name, now);
        let bytes = dirs::dir_bytes(&dir);
        let trigger = info.trigger.as_deref().unwrap_or("request");
        let record = AdapterRecord::published(&state.refname, &state.last_commit, &name, trigger, state.steps, bytes, now);
        self.store.record_adapter(&repo_key, state, &record)?;
        {
            let mut total = self.bytes_on_record.lock().expect("bytes lock");
            *total = total.map(|b| b + bytes);
        }
        Ok(dir)
    }

    /// After a publish: the repository's newest versions, then the disk budget. Failures
    /// are logged, never fatal: the new adapter is already published. Unpublished versions
    /// are renamed away here and deleted on the reaper thread.
    pub fn retain_after_publish(&self, repo_key: &str, keep: Keep) {
        self.retain(repo_key, &self.repo_dir(repo_key), keep, crate::clock::now_secs());
    }

    /// Whether versions already unpublished are still being deleted from disk.
    pub fn deleting(&self) -> bool {
        self.retention.reaper.busy()
    }

    fn retain(&self, repo_key: &str, repo_dir: &Path, keep: Keep, now: u64) {
        let hold = Hold { now, grace_secs: keep.grace_secs };
        match self.retention.prune(&self.store, repo_key, repo_dir, keep.newest, hold) {
            Ok(p) => {
                self.metrics.pruned.inc_by(p.removed as u64);
                let mut total = self.bytes_on_record.lock().expect("bytes lock");
                *total = total.map(|b| b.saturating_sub(p.freed));
            }
            Err(e) => warn!(repo = %repo_key, error = %e, "pruning old adapters failed"),
        }
        let fits = self.bytes_on_record.lock().expect("bytes lock").is_some_and(|b| b <= keep.disk_budget);
        if keep.disk_budget == 0 || fits {
            return;
        }
        self.apply_budget(keep.disk_budget, hold);
    }

    /// Evicts least recently used versions across repositories until they fit in `budget`
    /// bytes; logs what it did.
    pub fn apply_budget(&self, budget: u64, hold: Hold) {
        let total = self.retention.apply_budget(&self.store, &self.root, budget, hold, &self.metrics);
        *self.bytes_on_record.lock().expect("bytes lock") = total;
    }

    /// Frees what an earlier pass kept only for the serve grace, once the grace is over:
    /// every repository's newest-K rule, then the disk budget. Does nothing unless such a
    /// version was kept since the last sweep.
    pub fn sweep_held(&self, keep: Keep) {
        if !self.retention.take_held() {
            return;
        }
        let repos = match self.store.repos() {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "adapter retention sweep skipped");
                return;
            }
        };
        let now = crate::clock::now_secs();
        for repo in repos {
            self.retain(&repo.key, &self.repo_dir(&repo.key), keep, now);
        }
    }

    /// Notes that a client was handed `dir` (for least-recently-used eviction and the serve
    /// grace); false when the version is gone (see [`retention::Retention::touch`]).
    pub fn touch(&self, repo_key: &str, dir: &str, now: u64) -> bool {
        self.retention.touch(&self.store, repo_key, dir, now)
    }

    /// Pins or unpins a version named by directory or commit prefix; `None` if no such version.
    pub fn set_pinned(&self, repo_key: &str, name: &str, pinned: bool) -> Result<Option<AdapterRecord>, StateError> {
        self.retention.set_pinned(&self.store, repo_key, name, pinned)
    }

    /// A repository's versions on record, oldest first.
    pub fn versions(&self, repo_key: &str) -> Result<Vec<AdapterRecord>, StateError> {
        Ok(self.store.adapters(repo_key)?.into_iter().map(|(_, r)| r).collect())
    }
}
