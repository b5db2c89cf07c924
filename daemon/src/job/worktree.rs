//! Adapters of uncommitted work: the diff of a work tree and its index against HEAD, folded
//! into a copy of the ref's state (never stored), turned into an ephemeral adapter under
//! `<state>/worktree/<repo key>/`.
//!
//! The work tree is taken as the commit `git stash create` makes of it (tracked files, index
//! and work tree; nothing is stashed, no ref moves), so its diff is encoded exactly as a
//! commit's would be. A directory is named by HEAD, that tree and the state, so the same
//! uncommitted work asked for twice is one directory. At most [`MAX_EPHEMERAL`] directories
//! live at once; each goes after `[serve] worktree_ttl_secs` without a request.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use evolora_model::hypernet::StepPolicy;
use evolora_model::peft::{Formats, write_adapter_dir_with};
use git2::Oid;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::inputs::{StepInput, Worker};
use super::steps::{Planned, Step};
use super::{Engine, JobError, now_secs, vector_digest};
use crate::adapters::{AdapterInfo, ModelStamp, SCHEMA, info};
use crate::git;
use crate::scheduler::JobFlags;

/// Most ephemeral adapters on disk at once (all repositories); the least recently asked for
/// goes first, but never one asked for within [`MIN_KEEP`] (a client may be loading it):
/// the count may run over for that long.
pub const MAX_EPHEMERAL: usize = 16;

/// An ephemeral adapter handed out is kept at least this long, whatever the count.
pub const MIN_KEEP: Duration = Duration::from_secs(120);

/// Folder of the ephemeral adapters under the state directory.
pub const WORKTREE_DIR: &str = "worktree";

/// A request from the socket, answered on `reply`.
pub struct WorktreeRequest {
    pub key: String,
    pub refname: String,
    /// HEAD of the work tree.
    pub head: Oid,
    /// The commit `git stash create` made of the work tree (first parent: HEAD).
    pub snapshot: Oid,
    pub reply: tokio::sync::oneshot::Sender<Result<PathBuf, String>>,
}

impl Engine {
    /// Answers one request; the answer goes back on its channel.
    pub fn serve_worktree(&mut self, request: WorktreeRequest) {
        let WorktreeRequest { key, refname, head, snapshot, reply } = request;
        if reply.is_closed() {
            // The client gave up waiting (a long catch-up came first).
            return;
        }
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.worktree_adapter(&key, &refname, head, snapshot)))
            .unwrap_or_else(|_| Err(JobError::Panicked("while making a work-tree adapter".into())));
        if let Err(e) = &result {
            self.ctx.metrics.error("worktree");
            warn!(repo = %key, error = %e, "no adapter for the uncommitted work");
        }
        let _ = reply.send(result.map_err(|e| e.to_string()));
    }

    fn worktree_adapter(&mut self, key: &str, refname: &str, head: Oid, snapshot: Oid) -> Result<PathBuf, JobError> {
        // The committed state must stand at HEAD first: catch up as any wake-up would.
        self.sync(key, JobFlags::default())?;
        let cfg = self.ctx.config.get();
        let rec = self.ctx.store.repo(key)?.ok_or(JobError::NotRegistered)?;
        let state = self.ctx.store.ref_state(key, refname)?.ok_or_else(|| JobError::WorkTree(format!("{refname} has no state yet")))?;
        if state.last_commit != head.to_string() {
            return Err(JobError::WorkTree(format!("the state of {refname} is at {}, not at HEAD {head}; try again once it has caught up", state.last_commit)));
        }
        let git_dir = Path::new(&rec.git_dir);
        let tree = git::open(git_dir)?.find_commit(snapshot)?.tree_id();
        let digest = vector_digest(&state.vector);
        let root = ephemeral_root(&cfg.state_dir).join(key);
        // The state and the settings that shape the files (dtype, formats, base name) name it
        // along with HEAD and the work tree, so a name always means the same files.
        let settings = [cfg.model.dtype.as_str(), if cfg.serve.gguf() { "gguf" } else { "peft" }, cfg.serve.base_model_name.as_deref().unwrap_or("")].join("\n");
        let settings: String = Sha256::digest(settings.as_bytes()).iter().take(4).map(|b| format!("{b:02x}")).collect();
        let name = format!("{}-{}-{}{settings}", &head.to_string()[..12], &tree.to_string()[..12], &digest[..12]);
        let dir = root.join(&name);
        if dir.is_dir() {
            touch(&dir);
            return Ok(dir);
        }
        // The work tree as one more commit on HEAD: its whole diff under every-commit, the
        // recipe's files since the last stepping commit under the paper policy.
        let step = match self.model.meta.step_policy {
            StepPolicy::Paper => Step::Since(Oid::from_str(&state.step_base).ok()),
            StepPolicy::EveryCommit => Step::FirstParent,
        };
        let plan = Planned { oid: snapshot, step, manifest_changed: Some(false) };
        let worker = Worker::open(git_dir, cfg.encode_threads(), self.encoder.diff_encoding());
        let prepared = worker.prepare(&plan, &cfg.triggers.manifest_globs)?;
        let diff = match prepared.input {
            Some(StepInput::Vector(v)) => v,
            Some(StepInput::Text { base, text }) => self.encoder.diff_vector(&text, base, snapshot)?,
            None => return Err(JobError::WorkTree("the work tree's changes give no step".into())),
        };
        let vector = self.model.advance(&state.vector, &[diff])?;
        let weights = self.model.adapter(&vector)?;
        let info = AdapterInfo {
            schema: SCHEMA,
            source: Some("worktree".into()),
            repo: Some(rec.git_dir.clone()),
            repo_key: Some(key.to_owned()),
            refname: Some(refname.to_owned()),
            commit: Some(head.to_string()),
            origin_commit: Some(state.origin_commit.clone()),
            steps: Some(state.steps + 1),
            created_at: Some(now_secs()),
            model: ModelStamp { checkpoint: cfg.model.checkpoint.as_ref().map(|c| c.display().to_string()), ..ModelStamp::of(&self.model) },
            state_sha256: Some(vector_digest(&vector)),
            ..AdapterInfo::default()
        };
        let base = cfg.serve.served_base(&self.model.base);
        std::fs::create_dir_all(&root).map_err(|e| JobError::WorkTree(format!("{}: {e}", root.display())))?;
        let written = write_adapter_dir_with(&dir, &weights, &base, cfg.model.dtype, &[(info::FILE, info.to_bytes())], Formats { gguf: cfg.serve.gguf_for(&base) })?;
        info!(repo = %key, %refname, adapter = %written.display(), "adapter of the uncommitted work");
        sweep(&cfg.state_dir, Duration::from_secs(cfg.serve.worktree_ttl_secs), MAX_EPHEMERAL);
        Ok(written)
    }
}

pub fn ephemeral_root(state_dir: &Path) -> PathBuf {
    state_dir.join(WORKTREE_DIR)
}

/// Marks a directory as just asked for (its mtime is its last use).
fn touch(dir: &Path) {
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.set_modified(SystemTime::now());
    }
}

/// Removes ephemeral adapters unused for `ttl`, then the least recently used beyond `max`
/// that were not used within [`MIN_KEEP`]. Returns how many went.
pub fn sweep(state_dir: &Path, ttl: Duration, max: usize) -> usize {
    let root = ephemeral_root(state_dir);
    let mut all: Vec<(SystemTime, PathBuf)> = Vec::new();
    for repo in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        for e in std::fs::read_dir(repo.path()).into_iter().flatten().flatten() {
            let used = e.metadata().and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH);
            all.push((used, e.path()));
        }
    }
    all.sort();
    let now = SystemTime::now();
    let excess = all.len().saturating_sub(max);
    let mut removed = 0;
    for (i, (used, path)) in all.iter().enumerate() {
        let age = now.duration_since(*used).unwrap_or_default();
        let evictable = i < excess && age >= MIN_KEEP;
        if (evictable || age >= ttl) && std::fs::remove_dir_all(path).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweep_removes_expired_then_least_recently_used() {
        let tmp = tempfile::tempdir().unwrap();
        let make = |repo: &str, name: &str, age_secs: u64| {
            let d = ephemeral_root(tmp.path()).join(repo).join(name);
            std::fs::create_dir_all(&d).unwrap();
            let f = std::fs::File::open(&d).unwrap();
            f.set_modified(SystemTime::now() - Duration::from_secs(age_secs)).unwrap();
        };
        make("a", "old", 5000);
        make("a", "mid", 500);
        make("b", "new", 300);
        make("b", "newer", 60);
        make("b", "newest", 1);
        assert_eq!(sweep(tmp.path(), Duration::from_secs(1000), 16), 1, "past the TTL");
        assert_eq!(sweep(tmp.path(), Duration::from_secs(1000), 2), 2, "beyond the count, oldest first");
        assert_eq!(sweep(tmp.path(), Duration::from_secs(1000), 1), 0, "never one used within MIN_KEEP, even over the count");
        let left: Vec<bool> = ["a/mid", "b/new", "b/newer", "b/newest"].iter().map(|p| ephemeral_root(tmp.path()).join(p).exists()).collect();
        assert_eq!(left, [false, false, true, true]);
    }
}
