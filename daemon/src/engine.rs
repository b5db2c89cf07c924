//! The model thread: catches each repository up with git, one job at a time.
//!
//! burn modules are not `Sync`, and a GRU step or an adapter at paper size is hundreds of
//! milliseconds of CPU: all model work happens here, never on the async workers. A job:
//! resolve the tracked ref's tip; walk first-parent commits since the state's last commit
//! (or rebuild from a snapshot when that commit is gone or no longer an ancestor); encode
//! each diff; advance the GRU in groups, one durable state transaction per group; then ask
//! the triggers whether to publish an adapter.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use evolora_model::encoder::HashedEncoder;
use evolora_model::hypernet::StepPolicy;
use evolora_model::peft::{AdapterDtype, write_adapter_dir};
use evolora_model::{BaseModelShapes, HyperConfig, Hypernetwork, ModelError};
use evolora_state::{RefState, StateError};
use git2::{Oid, Repository};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::config::{Config, ModelSettings};
use crate::git::{self, DiffLimits, GitError};
use crate::inputs;
use crate::parallel::ordered_map;
use crate::publish;
use crate::scheduler::JobFlags;
use crate::shared::{ModelInfo, Shared, UNTRAINED_WARNING};
use crate::triggers::{self, Since};

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("repository is not registered")]
    NotRegistered,
    #[error("repository at {0} is gone or unreadable; unregister it or restore it")]
    Missing(String),
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("internal error while processing this repository (a bug; please report it): {0}")]
    Panicked(String),
}

impl From<git2::Error> for JobError {
    fn from(e: git2::Error) -> Self {
        JobError::Git(GitError::Git(e))
    }
}

/// What a job did, for logs and tests.
#[derive(Debug, Default)]
pub struct Outcome {
    /// GRU steps applied.
    pub steps: u64,
    /// Commits walked (more than `steps` under the paper policy).
    pub commits: u64,
    pub published: Option<PathBuf>,
    pub idle_reason: Option<&'static str>,
    /// A shutdown stopped the walk before the tip.
    pub interrupted: bool,
}

pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// sha256 of the state vector's little-endian bytes, as reported by `status`.
pub fn vector_digest(v: &[f32]) -> String {
    let mut h = Sha256::new();
    for x in v {
        h.update(x.to_le_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Loads the configured model (a checkpoint, or the seeded untrained preset). The daemon
/// requires the hashed encoder it runs (`Some(HashedEncoder::ID)`); `model run` takes any
/// vectors and passes `None`. `task` picks the row of a multi-task checkpoint.
pub fn load_model(settings: &ModelSettings, expect_encoder: Option<&str>, task: usize) -> Result<Hypernetwork, ModelError> {
    let device = evolora_model::select_device(&settings.device)?;
    let base = BaseModelShapes::resolve(&settings.base)?;
    match &settings.checkpoint {
        None => {
            let cfg = HyperConfig::preset(&settings.preset)?;
            Hypernetwork::untrained(cfg, base, settings.seed, HashedEncoder::ID, device)
        }
        Some(path) => {
            let mut ck = evolora_model::checkpoint::load(path, &base)?;
            if let Some(enc) = expect_encoder.filter(|enc| *enc != ck.meta.encoder) {
                return Err(ModelError::EncoderMismatch { checkpoint: ck.meta.encoder, configured: enc.into() });
            }
            ck.meta.task = task;
            Hypernetwork::from_weights(ck.config, base, &mut ck.weights, ck.meta, device)
        }
    }
}

pub struct Engine {
    shared: Arc<Shared>,
    model: Hypernetwork,
    encoder: HashedEncoder,
    /// Snapshot file vectors by blob id: re-encoding after a commit touches changed files only.
    /// Keyed by blob and by whether its path is Python: the same bytes are encoded
    /// differently as Python and as other text.
    blob_cache: HashMap<(Oid, bool), Vec<f32>>,
    /// Running total of adapter bytes on disk, when known (see [`Engine::retain`]).
    adapter_bytes: Option<u64>,
}

const BLOB_CACHE_MAX: usize = 16_384;

/// Groups per window of a walk (see [`Engine::walk`]).
const WINDOW_GROUPS: usize = 8;

impl Engine {
    pub fn new(shared: Arc<Shared>, model: Hypernetwork) -> Self {
        let m = &model;
        let info = ModelInfo {
            architecture: m.meta.architecture.to_string(),
            encoder: m.meta.encoder.clone(),
            fingerprint: m.meta.fingerprint.clone(),
            trained: m.meta.trained,
            base: m.base.name.clone(),
            gru_hidden: m.config.gru_hidden,
            head_hidden: m.config.head_hidden,
            rank: m.config.rank,
        };
        if !info.trained {
            warn!("{UNTRAINED_WARNING}");
        }
        *shared.model.write().expect("model lock") = Some(info);
        Engine { shared, model, encoder: HashedEncoder, blob_cache: HashMap::new(), adapter_bytes: None }
    }

    /// Serves jobs until the scheduler closes.
    pub fn run(mut self) {
        loop {
            let Some((key, flags)) = self.shared.scheduler.next(Duration::from_millis(500)) else {
                if self.shared.is_shutting_down() {
                    break;
                }
                continue;
            };
            // A bug met on one repository's data must not stop the service for the others.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.sync(&key, flags)))
                .unwrap_or_else(|payload| Err(JobError::Panicked(panic_message(&payload))));
            {
                let mut errors = self.shared.errors.lock().expect("errors lock");
                match &result {
                    Ok(out) if out.interrupted => {
                        info!(repo = %key, steps = out.steps, "stopped mid-walk for shutdown: steps so far are durable, the rest is walked at the next start");
                    }
                    Ok(out) => {
                        errors.remove(&key);
                        if out.steps > 0 || out.published.is_some() {
                            info!(repo = %key, steps = out.steps, adapter = ?out.published, "caught up");
                        }
                    }
                    Err(e) => {
                        warn!(repo = %key, error = %e, "job failed");
                        errors.insert(key.clone(), e.to_string());
                    }
                }
            }
            self.shared.scheduler.done();
            self.shared.bump_progress();
            // systemd's status line: what the daemon is doing right now.
            let queued = self.shared.scheduler.queued();
            let line = if queued == 0 { "idle".to_owned() } else { format!("catching up: {queued} repositories queued") };
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(&line)]);
        }
    }

    /// The snapshot embedding of a commit's tree. Files not in the blob cache are encoded on
    /// `encode_threads` threads; pooling takes them in tree order, as one thread would.
    fn snapshot_vector(&mut self, repo: &Repository, commit: Oid) -> Result<Vec<f32>, JobError> {
        let files = git::snapshot_files(repo, commit, HashedEncoder::MAX_FILE_BYTES)?;
        if self.blob_cache.len() > BLOB_CACHE_MAX {
            self.blob_cache.clear();
        }
        let key = |path: &str, blob: Oid| (blob, HashedEncoder::is_python(path));
        let mut missing: Vec<&(String, Oid, String)> = files.iter().filter(|(path, blob, _)| !self.blob_cache.contains_key(&key(path, *blob))).collect();
        missing.dedup_by_key(|(path, blob, _)| key(path, *blob));
        let threads = self.shared.config().encode_threads();
        let cache = &mut self.blob_cache;
        ordered_map(&missing, threads, 8 * threads, || HashedEncoder, |enc, (path, _, text)| enc.file_vector(path, text).0, |i, v| {
            cache.insert(key(&missing[i].0, missing[i].1), v);
            true
        });
        let vectors = files.iter().map(|(path, blob, _)| self.blob_cache[&key(path, *blob)].as_slice());
        Ok(self.encoder.pool(vectors))
    }

    /// A state rebuilt from the snapshot at `commit`, made durable before it is used.
    fn cold_state(&mut self, key: &str, repo: &Repository, refname: &str, commit: Oid) -> Result<RefState, JobError> {
        let snapshot = self.snapshot_vector(repo, commit)?;
        let vector = self.model.initial_state(&snapshot)?;
        let state = RefState {
            refname: refname.to_owned(),
            vector,
            last_commit: commit.to_string(),
            origin_commit: commit.to_string(),
            step_base: commit.to_string(),
            walked: 0,
            steps: 0,
            steps_since_adapter: 0,
            manifest_changed: false,
            model_fingerprint: self.model.meta.fingerprint.clone(),
            current_adapter: None,
            adapter_commit: None,
            adapter_at: None,
            updated_at: now_secs(),
        };
        self.shared.store.commit_steps(key, &state)?;
        Ok(state)
    }

    /// The state of another ref of this repository whose last commit is an ancestor of `tip`
    /// (the closest one), copied for `refname`; it has no adapter of its own yet.
    fn fork_state(&self, key: &str, repo: &Repository, refname: &str, tip: Oid) -> Result<Option<RefState>, JobError> {
        let mut best: Option<(usize, RefState)> = None;
        for s in self.shared.store.ref_states(key)? {
            if s.model_fingerprint != self.model.meta.fingerprint {
                continue;
            }
            let Ok(last) = Oid::from_str(&s.last_commit) else { continue };
            if repo.find_commit(last).is_err() || !git::is_ancestor(repo, last, tip)? {
                continue;
            }
            let (ahead, _) = repo.graph_ahead_behind(tip, last)?;
            if best.as_ref().is_none_or(|(a, _)| ahead < *a) {
                best = Some((ahead, s));
            }
        }
        Ok(best.map(|(_, mut s)| {
            s.refname = refname.to_owned();
            s.current_adapter = None;
            s.adapter_commit = None;
            s.adapter_at = None;
            s
        }))
    }

    /// Folds `commits` (oldest first, first-parent) into `state`, one durable transaction per
    /// group. Commits are diffed and encoded on `encode_threads` threads ahead of the GRU,
    /// which takes them in order. Returns false if it stopped early for a shutdown.
    fn walk(&mut self, cfg: &Config, key: &str, repo: &Repository, state: &mut RefState, commits: &[Oid], out: &mut Outcome) -> Result<bool, JobError> {
        // Groups (one transaction each) end at multiples of `step_group` commits since the
        // origin, so a walk cut short by a crash resumes on the same boundaries. Windows of
        // whole groups bound the planning done ahead (and how late a shutdown is noticed).
        let group_len = cfg.step_group.max(1);
        let mut start = 0;
        while start < commits.len() {
            let to_boundary = group_len - (state.walked % group_len as u64) as usize;
            let end = (start + to_boundary + (WINDOW_GROUPS - 1) * group_len).min(commits.len());
            if !self.walk_window(cfg, key, repo, state, &commits[start..end], out)? || self.shared.is_shutting_down() {
                return Ok(false);
            }
            start = end;
        }
        Ok(true)
    }

    /// One window of [`Engine::walk`]: plans its commits, prepares them on the encode
    /// threads and folds each group as soon as its commits are in.
    fn walk_window(&mut self, cfg: &Config, key: &str, repo: &Repository, state: &mut RefState, commits: &[Oid], out: &mut Outcome) -> Result<bool, JobError> {
        let git_dir = repo.path().to_path_buf();
        let threads = cfg.encode_threads();
        let globs = &cfg.triggers.manifest_globs;
        let policy = self.model.meta.step_policy;
        let plan = inputs::plan(&git_dir, commits, policy, Oid::from_str(&state.step_base).ok(), globs, threads)?;
        // Commits in parallel when there are several; one commit's files in parallel when not.
        let file_threads = if plan.len() == 1 { threads } else { 1 };
        let group_len = cfg.step_group.max(1) as u64;
        let mut group: Vec<inputs::Prepared> = Vec::new();
        let mut failed: Option<JobError> = None;
        let mut finished = true;
        ordered_map(
            &plan,
            threads,
            2 * group_len as usize,
            || inputs::Worker::open(&git_dir, file_threads),
            |w, p| w.prepare(p, globs),
            |i, prepared| {
                let prepared = match prepared {
                    Ok(p) => p,
                    Err(e) => {
                        failed = Some(e.into());
                        return false;
                    }
                };
                if prepared.truncated {
                    warn!(repo = %key, commit = %prepared.oid, "diff larger than {} bytes: encoded its first part only", DiffLimits::default().max_bytes);
                }
                group.push(prepared);
                let at_boundary = (state.walked + group.len() as u64).is_multiple_of(group_len);
                if !(at_boundary || i + 1 == plan.len()) {
                    return true;
                }
                if let Err(e) = self.fold_group(key, state, std::mem::take(&mut group), policy, out) {
                    failed = Some(e);
                    return false;
                }
                if self.shared.is_shutting_down() {
                    finished = false;
                    return false;
                }
                true
            },
        );
        match failed {
            Some(e) => Err(e),
            None => Ok(finished),
        }
    }

    /// Advances the state over one group of prepared commits and makes it durable.
    fn fold_group(&mut self, key: &str, state: &mut RefState, group: Vec<inputs::Prepared>, policy: StepPolicy, out: &mut Outcome) -> Result<(), JobError> {
        let walked = group.len() as u64;
        let last = group.last().expect("non-empty group").oid;
        let mut diffs = Vec::new();
        for p in group {
            state.manifest_changed |= p.manifest_changed;
            if let Some(v) = p.vector {
                diffs.push(v);
                if policy == StepPolicy::Paper {
                    state.step_base = p.oid.to_string();
                }
            }
        }
        let steps = diffs.len() as u64;
        state.vector = self.model.advance(&state.vector, &diffs, state.steps)?;
        state.last_commit = last.to_string();
        if policy == StepPolicy::EveryCommit {
            state.step_base = state.last_commit.clone();
        }
        state.walked += walked;
        state.steps += steps;
        state.steps_since_adapter += steps;
        state.updated_at = now_secs();
        self.shared.store.commit_steps(key, state)?;
        out.steps += steps;
        out.commits += walked;
        Ok(())
    }

    /// Rebuilds a ref's state as it was when the adapter at `upto` was published: h₀ from the
    /// snapshot at `origin`, then the same walk the daemon made. Used by `state rebuild`.
    pub fn replay(&mut self, key: &str, git_dir: &Path, refname: &str, origin: Oid, upto: Oid) -> Result<RefState, JobError> {
        let cfg = self.shared.config();
        let repo = git::open(git_dir).map_err(|_| JobError::Missing(git_dir.display().to_string()))?;
        let mut state = self.cold_state(key, &repo, refname, origin)?;
        let commits = if origin == upto { Vec::new() } else { git::first_parent_walk(&repo, origin, upto)? };
        let mut out = Outcome::default();
        self.walk(&cfg, key, &repo, &mut state, &commits, &mut out)?;
        Ok(state)
    }

    /// Catches every followed ref of a repository up with git.
    pub fn sync(&mut self, key: &str, flags: JobFlags) -> Result<Outcome, JobError> {
        let rec = self.shared.store.repo(key)?.ok_or(JobError::NotRegistered)?;
        let repo = git::open(Path::new(&rec.git_dir)).map_err(|_| JobError::Missing(rec.git_dir.clone()))?;
        let mut total = Outcome::default();
        let refs = git::followed_refs(&repo, &rec.tracked_refs)?;
        self.forget_deleted_refs(key, &repo, &refs)?;
        if refs.is_empty() {
            total.idle_reason = Some("HEAD is detached or missing");
        }
        for (refname, tip) in refs {
            let Some(tip) = tip else {
                total.idle_reason = Some("the repository has no commits yet");
                continue;
            };
            let out = self.sync_ref(key, &rec.git_dir, &repo, &refname, tip, flags)?;
            total.steps += out.steps;
            total.commits += out.commits;
            total.published = out.published.or(total.published);
            total.interrupted |= out.interrupted;
            if self.shared.is_shutting_down() {
                break;
            }
        }
        Ok(total)
    }

    /// Drops the states of refs that no longer exist (a deleted branch): they would keep
    /// their adapters protected from retention forever. A branch merely not checked out any
    /// more keeps its state.
    fn forget_deleted_refs(&self, key: &str, repo: &Repository, followed: &[(String, Option<Oid>)]) -> Result<(), JobError> {
        for name in self.shared.store.ref_names(key)? {
            if followed.iter().any(|(r, _)| *r == name) {
                continue;
            }
            if matches!(repo.find_reference(&name), Err(e) if e.code() == git2::ErrorCode::NotFound) {
                info!(repo = %key, %name, "the ref was deleted: forgetting its state");
                self.shared.store.remove_ref_state(key, &name)?;
            }
        }
        Ok(())
    }

    fn sync_ref(&mut self, key: &str, git_dir: &str, repo: &Repository, refname: &str, tip: Oid, flags: JobFlags) -> Result<Outcome, JobError> {
        let mut cfg = self.shared.config();
        match cfg.triggers_for(Path::new(git_dir)) {
            Ok(t) => cfg.triggers = t,
            Err(e) => warn!(repo = %key, "ignoring its trigger overrides: {e}"),
        }
        let mut out = Outcome::default();

        let previous = self.shared.store.ref_state(key, refname)?;
        let mut cold = false;
        let mut state = match previous {
            Some(s) if s.model_fingerprint == self.model.meta.fingerprint && !flags.reset => {
                let last = Oid::from_str(&s.last_commit).ok().filter(|o| repo.find_commit(*o).is_ok());
                match last {
                    Some(last) if git::is_ancestor(repo, last, tip)? => s,
                    // History was rewritten: restart from the merge base when there is one.
                    Some(last) => {
                        cold = true;
                        let base = repo.merge_base(last, tip).unwrap_or(tip);
                        warn!(repo = %key, %refname, "last processed commit is no longer an ancestor of the tip; rebuilding from {base}");
                        keep_adapter_fields(self.cold_state(key, repo, refname, base)?, &s)
                    }
                    None => {
                        cold = true;
                        keep_adapter_fields(self.cold_state(key, repo, refname, tip)?, &s)
                    }
                }
            }
            Some(s) => {
                cold = true;
                keep_adapter_fields(self.cold_state(key, repo, refname, tip)?, &s)
            }
            None => match self.fork_state(key, repo, refname, tip)? {
                // A new branch continues from the branch it left, when that state's commit
                // is in its history: no snapshot, no re-walk of shared commits.
                Some(s) => s,
                None => {
                    cold = true;
                    self.cold_state(key, repo, refname, tip)?
                }
            },
        };

        let since = Oid::from_str(&state.last_commit)?;
        let commits = if since == tip { Vec::new() } else { git::first_parent_walk(repo, since, tip)? };
        if !self.walk(&cfg, key, repo, &mut state, &commits, &mut out)? {
            // Shutting down: the state is durable up to the last group; the rest is walked
            // after restart.
            out.interrupted = true;
            return Ok(out);
        }

        // Drift control: a long walk since the last snapshot is replaced by a fresh one.
        let drift = cfg.triggers.drift_reset_every;
        if drift > 0 && state.walked >= drift {
            info!(repo = %key, %refname, walked = state.walked, "drift reset: new snapshot at the tip");
            let fresh = self.cold_state(key, repo, refname, tip)?;
            state = keep_adapter_fields(fresh, &state);
            cold = true;
        }

        let now = now_secs();
        let decision = triggers::decide(
            &cfg.triggers,
            Since {
                commits: state.steps_since_adapter,
                manifest_changed: state.manifest_changed,
                secs_since_adapter: state.adapter_at.map(|t| now.saturating_sub(t)),
                explicit: flags.regenerate,
                cold_start: cold,
            },
        );
        if let Some(trigger) = decision
            && (state.adapter_commit.as_deref() != Some(state.last_commit.as_str()) || flags.regenerate || cold)
        {
            out.published = Some(self.publish(&cfg, git_dir, key, &mut state, trigger, out.commits)?);
        }
        Ok(out)
    }

    fn publish(&mut self, cfg: &Config, git_dir: &str, key: &str, state: &mut RefState, trigger: &str, walked: u64) -> Result<PathBuf, JobError> {
        let weights = self.model.adapter(&state.vector)?;
        let repo_dir = cfg.adapters_dir().join(key);
        std::fs::create_dir_all(&repo_dir).map_err(|e| ModelError::AdapterIo { path: repo_dir.clone(), source: e })?;
        let name = publish::fresh_name(&repo_dir, &state.last_commit);
        let now = now_secs();
        let meta = &self.model.meta;
        let info = serde_json::json!({
            "repo": git_dir,
            "repo_key": key,
            "ref": state.refname,
            "commit": state.last_commit,
            "origin_commit": state.origin_commit,
            "steps": state.steps,
            "commits_walked": walked,
            "trigger": trigger,
            "created_at": now,
            "model": {
                "architecture": meta.architecture,
                "fingerprint": meta.fingerprint,
                "encoder": meta.encoder,
                "trained": meta.trained,
            },
            "state_sha256": vector_digest(&state.vector),
            "warning": if meta.trained { serde_json::Value::Null } else { UNTRAINED_WARNING.into() },
        });
        let dtype: AdapterDtype = cfg.model.dtype.parse().unwrap_or_default();
        let extra = [("evolora.json", serde_json::to_vec_pretty(&info).expect("json"))];
        let dir = write_adapter_dir(&repo_dir.join(&name), &weights, &self.model.base, dtype, &extra)?;
        publish::swap_current(&repo_dir, &name).map_err(|e| ModelError::AdapterIo { path: repo_dir.clone(), source: e })?;
        state.current_adapter = Some(name.clone());
        state.adapter_commit = Some(state.last_commit.clone());
        state.adapter_at = Some(now);
        state.steps_since_adapter = 0;
        state.manifest_changed = false;
        let bytes = crate::retention::dir_bytes(&dir);
        let record = publish::record(&state.refname, &state.last_commit, &name, trigger, state.steps, bytes, now);
        self.shared.store.record_adapter(key, state, &record)?;
        self.adapter_bytes = self.adapter_bytes.map(|b| b + bytes);
        self.retain(cfg, key, &repo_dir);
        Ok(dir)
    }

    /// Applies retention after a publish: the repository's newest K, then the disk budget.
    /// Failures are logged, never fatal: the new adapter is already published.
    fn retain(&mut self, cfg: &Config, key: &str, repo_dir: &Path) {
        let retention = &self.shared.retention;
        match retention.prune(&self.shared.store, key, repo_dir, cfg.keep_adapters) {
            Ok(p) => self.adapter_bytes = self.adapter_bytes.map(|b| b.saturating_sub(p.freed)),
            Err(e) => warn!(repo = %key, error = %e, "pruning old adapters failed"),
        }
        let budget = cfg.adapter_disk_budget.0;
        // A full pass reads every adapter record; skip it while the running total fits.
        if budget == 0 || self.adapter_bytes.is_some_and(|b| b <= budget) {
            return;
        }
        self.adapter_bytes = retention.apply_budget(&self.shared.store, &cfg.adapters_dir(), budget);
    }
}

fn panic_message(payload: &Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// A rebuilt state still points at the adapter that is published, until a new one is.
fn keep_adapter_fields(mut fresh: RefState, old: &RefState) -> RefState {
    fresh.current_adapter = old.current_adapter.clone();
    fresh.adapter_commit = old.adapter_commit.clone();
    fresh.adapter_at = old.adapter_at;
    fresh
}
