use std::sync::Arc;

use evolora_state::RepoRecord;
use serde_json::json;

use super::{Fields, internal};
use crate::engine::now_secs;
use crate::protocol::OpError;
use crate::scheduler::JobFlags;
use crate::shared::Shared;

/// Registers a repository and queues its first job (snapshot → h₀ → first adapter). An
/// empty repository is accepted; its state starts with its first commit.
pub async fn register(shared: &Arc<Shared>, repo: &str, refs: Vec<String>) -> Result<Fields, OpError> {
    if let Some(bad) = refs.iter().find(|r| !r.starts_with("refs/")) {
        return Err(OpError::new(crate::protocol::ErrorCode::BadRequest, format!("`{bad}` is not a full ref name (refs/heads/...)")));
    }
    // Registration looks at the path afresh rather than trusting a cached answer.
    let found = super::find_uncached(repo).await?;
    let (loc, key) = (found.location.clone(), found.key.clone());
    let existing = shared.store.repo(&key).map_err(internal)?;
    let already = existing.is_some();
    if let Some(mut rec) = existing.filter(|r| !refs.is_empty() && r.tracked_refs != refs) {
        rec.tracked_refs = refs.clone();
        let store = shared.store.clone();
        super::blocking(move || store.put_repo(&rec).map_err(internal)).await?;
    } else if !already {
        let rec = RepoRecord {
            key: key.clone(),
            git_dir: loc.git_dir.display().to_string(),
            work_dir: loc.work_dir.as_ref().map(|p| p.display().to_string()),
            bare: loc.bare,
            tracked_refs: refs.clone(),
            registered_at: now_secs(),
            trigger_overrides: None,
        };
        let store = shared.store.clone();
        super::blocking(move || store.put_repo(&rec).map_err(internal)).await?;
    }
    if let Some(w) = shared.watcher.get() {
        w.add(&loc.git_dir, &key);
    }
    shared.scheduler.wake(&key, JobFlags::default());
    let mut f = Fields::new();
    f.insert("repo_key".into(), json!(key));
    f.insert("git_dir".into(), json!(loc.git_dir.display().to_string()));
    f.insert("bare".into(), json!(loc.bare));
    f.insert("already_registered".into(), json!(already));
    Ok(f)
}

/// Forgets a repository's state. Its adapter directories stay on disk.
pub async fn unregister(shared: &Arc<Shared>, repo: &str) -> Result<Fields, OpError> {
    let (rec, found) = super::registered(shared, repo).await?;
    shared.repo_cache.forget(&found.location.git_dir);
    let store = shared.store.clone();
    let key = rec.key.clone();
    super::blocking(move || store.remove_repo(&key).map_err(internal)).await?;
    if let Some(w) = shared.watcher.get() {
        w.remove(std::path::Path::new(&rec.git_dir));
    }
    let mut f = Fields::new();
    f.insert("repo_key".into(), json!(rec.key));
    f.insert("unregistered".into(), json!(true));
    Ok(f)
}
