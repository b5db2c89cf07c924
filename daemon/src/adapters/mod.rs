//! The one owner of adapter versions: publishing a directory and recording it, the
//! `current` link, what each version's `evolora.json` says ([`info`]), which versions stay
//! on disk ([`retention`]), pins, query times, and agreeing with the directories at start.
//!
//! `<root>/<repo key>/<commit>[.<n>]/` and `<root>/<repo key>/current -> <name>`.

pub mod dirs;
pub mod info;
mod retention;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use evolora_model::peft::{AdapterDtype, write_adapter_dir};
use evolora_model::{AdapterWeights, BaseModelShapes, ModelError};
use evolora_state::{AdapterRecord, RefState, StateError, StateStore};
use tracing::{info, warn};

pub use info::{AdapterInfo, ModelStamp, SCHEMA};
pub use retention::find;
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
    pub dtype: AdapterDtype,
    /// Its `evolora.json`.
    pub info: &'a AdapterInfo,
}

/// Retention settings in force for one publish.
#[derive(Debug, Clone, Copy)]
pub struct Keep {
    /// Newest versions kept per repository.
    pub newest: usize,
    /// Bytes all versions may take together (0: no limit).
    pub disk_budget: u64,
}

pub struct Adapters {
    root: PathBuf,
    store: StateStore,
    retention: Retention,
    /// Running total of the bytes of versions on record, when known: a full budget pass
    /// reads every record, so it is skipped while this fits.
    bytes_on_record: Mutex<Option<u64>>,
}

impl Adapters {
    pub fn new(root: PathBuf, store: StateStore) -> Self {
        Adapters { root, store, retention: Retention::default(), bytes_on_record: Mutex::new(None) }
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

    /// Publishes `contents` as a new version of `state`'s ref: writes the directory under a
    /// fresh name, points `current` at it, records it with the state that now names it,
    /// then applies retention. Returns the directory.
    pub fn publish(&self, repo_key: &str, state: &mut RefState, contents: Contents, keep: Keep) -> Result<PathBuf, PublishError> {
        let Contents { weights, base, dtype, info } = contents;
        let repo_dir = self.repo_dir(repo_key);
        let io = |source| PublishError::Io { path: repo_dir.clone(), source };
        std::fs::create_dir_all(&repo_dir).map_err(io)?;
        let name = dirs::fresh_name(&repo_dir, &state.last_commit);
        let now = info.created_at.unwrap_or_else(crate::clock::now_secs);
        let dir = write_adapter_dir(&repo_dir.join(&name), weights, base, dtype, &[(info::FILE, info.to_bytes())])?;
        dirs::swap_current(&repo_dir, &name).map_err(io)?;
        state.published(&name, now);
        let bytes = dirs::dir_bytes(&dir);
        let trigger = info.trigger.as_deref().unwrap_or("request");
        let record = AdapterRecord::published(&state.refname, &state.last_commit, &name, trigger, state.steps, bytes, now);
        self.store.record_adapter(repo_key, state, &record)?;
        {
            let mut total = self.bytes_on_record.lock().expect("bytes lock");
            *total = total.map(|b| b + bytes);
        }
        self.retain(repo_key, &repo_dir, keep);
        Ok(dir)
    }

    /// After a publish: the repository's newest versions, then the disk budget. Failures
    /// are logged, never fatal: the new adapter is already published.
    fn retain(&self, repo_key: &str, repo_dir: &Path, keep: Keep) {
        match self.retention.prune(&self.store, repo_key, repo_dir, keep.newest) {
            Ok(p) => {
                let mut total = self.bytes_on_record.lock().expect("bytes lock");
                *total = total.map(|b| b.saturating_sub(p.freed));
            }
            Err(e) => warn!(repo = %repo_key, error = %e, "pruning old adapters failed"),
        }
        let fits = self.bytes_on_record.lock().expect("bytes lock").is_some_and(|b| b <= keep.disk_budget);
        if keep.disk_budget == 0 || fits {
            return;
        }
        self.apply_budget(keep.disk_budget);
    }

    /// Evicts least recently used versions across repositories until they fit in `budget`
    /// bytes; logs what it did.
    pub fn apply_budget(&self, budget: u64) {
        let total = self.retention.apply_budget(&self.store, &self.root, budget);
        *self.bytes_on_record.lock().expect("bytes lock") = total;
    }

    /// Notes that a client was handed `dir` (for least-recently-used eviction).
    pub fn touch(&self, repo_key: &str, dir: &str, now: u64) {
        self.retention.touch(&self.store, repo_key, dir, now);
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
