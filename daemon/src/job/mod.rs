//! The model thread: catches each repository up with git, one job at a time.
//!
//! burn modules are not `Sync`, and a GRU step or an adapter at paper size is hundreds of
//! milliseconds of CPU: all model work happens here, never on the async workers. A job, for
//! each followed ref: resolve its tip; [`start`] decides where the walk begins (the stored
//! state, a forked branch's, or a [`snapshot`]); [`walk`] folds the new commits in groups
//! (which commits step: [`steps`]; their GRU inputs: [`inputs`]), one durable state write
//! per group; then [`publish`] asks the [`triggers`] and publishes through the adapters
//! owner.

pub mod embed_cache;
pub mod encoder;
pub mod inputs;
pub mod model;
mod publish;
pub mod snapshot;
pub mod start;
pub mod steps;
pub mod triggers;
mod verify;
mod walk;
pub mod worktree;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use evolora_model::{Hypernetwork, ModelError};
use evolora_state::{RefState, StateError, StateStore};
use git2::{Oid, Repository};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::adapters::{Adapters, PublishError};
pub use crate::clock::now_secs;
use crate::context::{Daemon, Ended, Jobs, LiveConfig, StopFlag, UNTRAINED_WARNING};
use crate::git::{self, GitError};
use crate::scheduler::JobFlags;
use encoder::Encoder;
use crate::config::Config;
use start::{Cold, How, Start};

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
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Encode(#[from] encoder::EncodeError),
    #[error("no adapter of the uncommitted work: {0}")]
    WorkTree(String),
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
    pub published: Option<std::path::PathBuf>,
    pub idle_reason: Option<&'static str>,
    /// A shutdown stopped the walk before the tip.
    pub interrupted: bool,
}

/// sha256 of the state vector's little-endian bytes, as reported by `status`.
pub fn vector_digest(v: &[f32]) -> String {
    let mut h = Sha256::new();
    for x in v {
        h.update(x.to_le_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The parts of the daemon the model thread uses.
pub struct JobContext {
    pub config: Arc<LiveConfig>,
    pub store: StateStore,
    pub jobs: Arc<Jobs>,
    pub adapters: Arc<Adapters>,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub push: Arc<crate::push::Pusher>,
    pub stop: StopFlag,
}

impl JobContext {
    pub fn of(daemon: &Daemon) -> Self {
        JobContext {
            config: daemon.config.clone(),
            store: daemon.store.clone(),
            jobs: daemon.jobs.clone(),
            adapters: daemon.adapters.clone(),
            metrics: daemon.metrics.clone(),
            push: daemon.push.clone(),
            stop: daemon.stop.clone(),
        }
    }
}

pub struct Engine {
    ctx: JobContext,
    model: Hypernetwork,
    encoder: Encoder,
    /// The base LM for `verify_after_publish`, once needed.
    verifier: Option<verify::Verifier>,
}

impl Engine {
    pub fn new(ctx: JobContext, model: Hypernetwork, encoder: Encoder) -> Self {
        if !model.meta.trained {
            warn!("{UNTRAINED_WARNING}");
        }
        Engine { ctx, model, encoder, verifier: None }
    }

    /// What the engine works with (a cluster worker reads and writes the same store).
    pub fn context(&self) -> &JobContext {
        &self.ctx
    }

    /// The loaded model's fingerprint and whether it was trained.
    pub fn model_identity(&self) -> (&str, bool) {
        (&self.model.meta.fingerprint, self.model.meta.trained)
    }

    /// Serves jobs until the queue closes.
    pub fn run(mut self) {
        // A stop (signal or request) ends the loop before the next job, even before the
        // queue is closed.
        while !self.ctx.stop.is_set() {
            // A client waits on each of these: they go before catch-ups.
            while let Some(request) = self.ctx.jobs.next_worktree() {
                self.serve_worktree(request);
            }
            let Some((key, flags)) = self.ctx.jobs.next(Duration::from_millis(500)) else {
                continue;
            };
            // A bug met on one repository's data must not stop the service for the others.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.sync(&key, flags)))
                .unwrap_or_else(|payload| Err(JobError::Panicked(panic_message(&payload))));
            match &result {
                Ok(out) if out.interrupted => {
                    info!(repo = %key, steps = out.steps, "stopped mid-walk for shutdown: steps so far are durable, the rest is walked at the next start");
                }
                Ok(out) if out.steps > 0 || out.published.is_some() => info!(repo = %key, steps = out.steps, adapter = ?out.published, "caught up"),
                Ok(_) => {}
                Err(e) => {
                    self.ctx.metrics.error("job");
                    warn!(repo = %key, error = %e, "job failed");
                }
            }
            let ended = match result {
                Ok(out) if out.interrupted => Ended::Interrupted,
                Ok(_) => Ended::Done,
                Err(e) => Ended::Failed(e.to_string()),
            };
            self.ctx.jobs.finished(&key, ended);
            // systemd's status line: what the daemon is doing right now.
            let queued = self.ctx.jobs.queued();
            let line = if queued == 0 { "idle".to_owned() } else { format!("catching up: {queued} repositories queued") };
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(&line)]);
        }
    }

    /// A state started from the snapshot at `commit`, made durable before it is used. With
    /// `step_origin` the commit's own step is still to come (the paper's walk); without, the
    /// snapshot stands for everything up to it. The ref's restore points belong to the state
    /// being replaced and go with it.
    fn cold_state(&mut self, key: &str, repo: &Repository, refname: &str, commit: Oid, step_origin: bool) -> Result<RefState, JobError> {
        let threads = self.ctx.config.get().encode_threads();
        let snapshot = self.encoder.snapshot(repo, commit, threads)?;
        let vector = self.model.initial_state(&snapshot)?;
        let fingerprint = &self.model.meta.fingerprint;
        let state = if step_origin {
            RefState::before_origin(refname, vector, &commit.to_string(), fingerprint, now_secs())
        } else {
            RefState::from_snapshot(refname, vector, &commit.to_string(), fingerprint, now_secs())
        };
        self.ctx.store.clear_restore_points(key, refname)?;
        self.ctx.store.commit_steps(key, &state)?;
        Ok(state)
    }

    /// Rebuilds a ref's state as it was when the adapter at `upto` was published: h₀ from the
    /// snapshot at `origin`, then the same walk the daemon made: from the origin itself when
    /// the adapter's state had `walked` one commit more than the commits after the origin.
    /// Used by `state rebuild`.
    pub fn replay(&mut self, key: &str, git_dir: &Path, refname: &str, origin: Oid, walked: Option<u64>, upto: Oid) -> Result<RefState, JobError> {
        let cfg = self.ctx.config.get();
        let repo = git::open(git_dir).map_err(|_| JobError::Missing(git_dir.display().to_string()))?;
        let mut commits = if origin == upto { Vec::new() } else { git::first_parent_walk(&repo, origin, upto)? };
        let origin_stepped = walked == Some(commits.len() as u64 + 1);
        let mut state = self.cold_state(key, &repo, refname, origin, origin_stepped)?;
        if origin_stepped {
            commits.insert(0, origin);
        }
        self.walk(&cfg, key, &repo, &mut state, &commits, &mut Outcome::default())?;
        Ok(state)
    }

    /// Catches every followed ref of a repository up with git.
    pub fn sync(&mut self, key: &str, flags: JobFlags) -> Result<Outcome, JobError> {
        let rec = self.ctx.store.repo(key)?.ok_or(JobError::NotRegistered)?;
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
            let out = self.sync_ref(key, Path::new(&rec.git_dir), &repo, &refname, tip, flags)?;
            total.steps += out.steps;
            total.commits += out.commits;
            total.published = out.published.or(total.published);
            total.interrupted |= out.interrupted;
            if self.ctx.stop.is_set() {
                break;
            }
        }
        Ok(total)
    }

    /// Drops the states of refs that no longer exist (a deleted branch): they would keep
    /// their adapters protected from retention forever. A branch merely not checked out any
    /// more keeps its state.
    fn forget_deleted_refs(&self, key: &str, repo: &Repository, followed: &[(String, Option<Oid>)]) -> Result<(), JobError> {
        for name in self.ctx.store.ref_names(key)? {
            if followed.iter().any(|(r, _)| *r == name) {
                continue;
            }
            if matches!(repo.find_reference(&name), Err(e) if e.code() == git2::ErrorCode::NotFound) {
                info!(repo = %key, %name, "the ref was deleted: forgetting its state");
                self.ctx.store.remove_ref_state(key, &name)?;
            }
        }
        Ok(())
    }

    /// Where `refname`'s walk starts and what it walks (see [`start`]). Returns the state,
    /// the commits to fold (oldest first), and whether the state was restarted (a snapshot or
    /// a restore point: the served adapter no longer stands for the history).
    fn starting_state(&mut self, cfg: &Config, key: &str, repo: &Repository, refname: &str, tip: Oid, reset: bool) -> Result<(RefState, Vec<Oid>, bool), JobError> {
        let previous = self.ctx.store.ref_state(key, refname)?;
        let restore_points = if previous.is_some() { self.ctx.store.restore_points(key, refname)? } else { Vec::new() };
        let others = if previous.is_none() {
            let mut o = self.ctx.store.ref_states(key)?;
            o.extend(self.ctx.store.repo_restore_points(key)?);
            o
        } else {
            Vec::new()
        };
        let had_adapter = previous.as_ref().is_some_and(|p| p.adapter().is_some());
        let known = start::Known { previous, restore_points, others };
        let policy = self.model.meta.step_policy;
        let (git_dir, globs, threads) = (repo.path().to_path_buf(), cfg.triggers.manifest_globs.clone(), cfg.encode_threads());
        // Planned a window at a time, stopping at the first stepping commit: a commit's plan
        // depends only on it and its first parent, and the walk plans the rest anyway.
        let mut first_stepping = |commits: &[Oid]| -> Result<Option<usize>, GitError> {
            let window = 64 * threads.max(1);
            for (w, chunk) in commits.chunks(window).enumerate() {
                let plan = steps::plan(&git_dir, chunk, policy, None, &globs, threads)?;
                if let Some(i) = plan.iter().position(|p| !matches!(p.step, steps::Step::Skip)) {
                    return Ok(Some(w * window + i));
                }
            }
            Ok(None)
        };
        let origin = start::Origin { settings: &cfg.history, first_stepping: &mut first_stepping };
        let fingerprint = self.model.meta.fingerprint.clone();
        let (state, commits, restarted, how, from) = match start::choose(refname, known, &fingerprint, reset, tip, repo, origin)? {
            Start::Continue { state, how, commits } => {
                let from = if state.origin_pending() { state.origin_commit.clone() } else { state.last_commit.clone() };
                match how {
                    How::Restored => info!(repo = %key, %refname, from = %from, walked = state.walked, "history rewritten: restored the state at a restore point; re-walking {} commits", commits.len()),
                    How::Forked => info!(repo = %key, %refname, from = %from, "new branch: continuing the state at its fork point; walking {} commits", commits.len()),
                    How::Resumed => {}
                }
                // A restored or forked ref has no adapter for its history yet: publish one.
                (state, commits, how != How::Resumed, Some(how), from)
            }
            Start::Snapshot { at, why, step_at, commits, previous } => {
                match why {
                    Cold::Rewritten => warn!(repo = %key, %refname, "history rewritten and no restore point is on it: walking it afresh from {at}"),
                    Cold::LostCommit => warn!(repo = %key, %refname, "the last processed commit is gone and no restore point is on the history: walking it afresh from {at}"),
                    Cold::New if commits.len() > 1 => info!(repo = %key, %refname, origin = %at, "first walk of the history: {} commits", commits.len()),
                    _ => {}
                }
                if repo.is_shallow() && step_at {
                    warn!(repo = %key, %refname, origin = %at, "shallow clone: the walk starts at the oldest commit present, not at the repository's root");
                }
                let fresh = self.cold_state(key, repo, refname, at, step_at)?;
                let state = match &previous {
                    Some(old) => fresh.keeping_adapter_of(old),
                    None => fresh,
                };
                (state, commits, true, None, at.to_string())
            }
        };
        // A resumed ref with nothing new did nothing worth reporting: keep the last walk's.
        if !(commits.is_empty() && how == Some(How::Resumed)) {
            let start = how.map_or("snapshot", How::name);
            self.ctx.jobs.walk_began(key, refname, start, from, commits.len() as u64, !had_adapter);
        }
        Ok((state, commits, restarted))
    }

    fn sync_ref(&mut self, key: &str, git_dir: &Path, repo: &Repository, refname: &str, tip: Oid, flags: JobFlags) -> Result<Outcome, JobError> {
        let mut cfg = self.ctx.config.get();
        match cfg.triggers_for(git_dir) {
            Ok(t) => cfg.triggers = t,
            Err(e) => warn!(repo = %key, "ignoring its trigger overrides: {e}"),
        }
        match cfg.history_for(git_dir) {
            Ok(h) => cfg.history = h,
            Err(e) => warn!(repo = %key, "ignoring its history overrides: {e}"),
        }
        let mut out = Outcome::default();
        let (mut state, commits, mut restarted) = self.starting_state(&cfg, key, repo, refname, tip, flags.reset)?;
        let walked = self.walk(&cfg, key, repo, &mut state, &commits, &mut out);
        self.ctx.jobs.walk_ended(key, refname);
        if !walked? {
            // Shutting down: the state is durable up to the last group; the rest is walked
            // after restart.
            out.interrupted = true;
            return Ok(out);
        }

        // Drift control: a long walk since the last snapshot is replaced by a fresh one.
        let drift = cfg.triggers.drift_reset_every;
        if drift > 0 && state.walked >= drift {
            info!(repo = %key, %refname, walked = state.walked, "drift reset: new snapshot at the tip");
            state = self.cold_state(key, repo, refname, tip, false)?.keeping_adapter_of(&state);
            restarted = true;
        }

        if let Some(trigger) = publish::due(&cfg, &state, flags, restarted, now_secs()) {
            let (dir, weights) = self.publish(&cfg, git_dir, key, &mut state, trigger, out.commits)?;
            // The published state is a restore point: a rewrite lands back on it exactly.
            self.ctx.store.put_restore_point(key, &state, cfg.history.restore_points)?;
            self.ctx.store.flush()?;
            // Durable: clients waiting for it are answered before older versions are pruned.
            self.ctx.jobs.published();
            self.ctx.adapters.retain_after_publish(key, cfg.keep());
            if cfg.verify_after_publish {
                self.verify_published(&cfg, key, refname, &dir, &weights);
            }
            out.published = Some(dir);
        }
        Ok(out)
    }
}

fn panic_message(payload: &Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
