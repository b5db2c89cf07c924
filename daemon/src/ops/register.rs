use std::sync::Arc;

use evolora_protocol::reply::{Registered, Unregistered};
use evolora_protocol::{ErrorCode, OpError};
use evolora_state::RepoRecord;

use super::internal;
use crate::context::Daemon;
use crate::job::now_secs;
use crate::scheduler::JobFlags;

/// Registers a repository and queues its first job (the walk of its history from the origin
/// `[history]` gives → first adapter). An empty repository is accepted; its state starts
/// with its first commit.
pub async fn register(daemon: &Arc<Daemon>, repo: &str, refs: Vec<String>) -> Result<Registered, OpError> {
    if let Some(bad) = refs.iter().find(|r| !r.starts_with("refs/")) {
        return Err(OpError::new(ErrorCode::BadRequest, format!("`{bad}` is not a full ref name (refs/heads/...)")));
    }
    // Registration looks at the path afresh rather than trusting a cached answer.
    let found = super::find_uncached(repo).await?;
    let (loc, key) = (found.location.clone(), found.key.clone());
    let existing = daemon.store.repo(&key).map_err(internal)?;
    let already = existing.is_some();
    if let Some(mut rec) = existing.filter(|r| !refs.is_empty() && r.tracked_refs != refs) {
        rec.tracked_refs = refs.clone();
        let store = daemon.store.clone();
        super::blocking(move || store.put_repo(&rec).map_err(internal)).await?;
    } else if !already {
        let rec = RepoRecord {
            key: key.clone(),
            git_dir: loc.git_dir.display().to_string(),
            work_dir: loc.work_dir.as_ref().map(|p| p.display().to_string()),
            bare: loc.bare,
            tracked_refs: refs.clone(),
            registered_at: now_secs(),
        };
        let store = daemon.store.clone();
        super::blocking(move || store.put_repo(&rec).map_err(internal)).await?;
    }
    if let Some(w) = daemon.watcher.get() {
        w.add(&loc.git_dir, &key);
    }
    daemon.jobs.wake(&key, JobFlags::default());
    Ok(Registered { repo_key: key, git_dir: loc.git_dir.display().to_string(), bare: loc.bare, already_registered: already })
}

/// Forgets a repository's state. Its adapter directories stay on disk.
pub async fn unregister(daemon: &Arc<Daemon>, repo: &str) -> Result<Unregistered, OpError> {
    let (rec, found) = super::registered(daemon, repo).await?;
    daemon.repos.forget(&found.location.git_dir);
    let store = daemon.store.clone();
    let key = rec.key.clone();
    super::blocking(move || store.remove_repo(&key).map_err(internal)).await?;
    daemon.jobs.forget_walks(&rec.key);
    if let Some(w) = daemon.watcher.get() {
        w.remove(std::path::Path::new(&rec.git_dir));
    }
    Ok(Unregistered { repo_key: rec.key, unregistered: true })
}
