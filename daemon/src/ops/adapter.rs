use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::{Fields, internal};
use crate::protocol::{ErrorCode, OpError};
use crate::scheduler::JobFlags;
use crate::shared::{Shared, UNTRAINED_WARNING};

/// Longest wait a client may ask for.
const MAX_WAIT: Duration = Duration::from_secs(600);

/// The newest adapter of a repository's tracked ref. With `wait_ms`, waits (bounded) until
/// the adapter covers the ref's current tip.
pub async fn run(shared: &Arc<Shared>, repo: &str, refname: Option<&str>, wait_ms: u64) -> Result<Fields, OpError> {
    let (rec, found) = super::registered(shared, repo).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms).min(MAX_WAIT);
    let mut progress = shared.progress.subscribe();
    let mut woke = false;
    loop {
        // The ref is the one checked out where the client asked (a linked worktree has its
        // own HEAD), unless it named one.
        let (found, wanted) = (found.clone(), refname.map(str::to_owned));
        let tracked = super::blocking(move || match wanted {
            Some(name) => Ok(Some((name.clone(), found.ref_tip(&name)))),
            None => found.tracked_ref().map_err(internal),
        })
        .await?;
        let (refname, tip) = match tracked {
            Some((r, t)) => (r, t.map(|t| t.to_string())),
            None => (String::new(), None),
        };
        let state = if refname.is_empty() { None } else { shared.store.ref_state(&rec.key, &refname).map_err(internal)? };
        let current = state.as_ref().and_then(|s| Some((s.current_adapter.clone()?, s.adapter_commit.clone()?)));
        let covers_tip = matches!((&current, &tip), (Some((_, c)), Some(t)) if c == t);
        if covers_tip || wait_ms == 0 || tokio::time::Instant::now() >= deadline {
            let Some((dir, commit)) = current else {
                let why = match (&tip, shared.errors.lock().expect("errors lock").get(&rec.key)) {
                    (_, Some(err)) => format!("no adapter yet for {repo}: last job failed: {err}"),
                    (None, _) => format!("no adapter yet for {repo}: the repository has no commits on a branch"),
                    _ if wait_ms > 0 => format!("no adapter yet for {repo} after waiting {wait_ms} ms"),
                    _ => format!("no adapter yet for {repo}; the daemon is still processing it (use --wait)"),
                };
                let code = if wait_ms > 0 && tip.is_some() { ErrorCode::Timeout } else { ErrorCode::NoAdapter };
                return Err(OpError::new(code, why));
            };
            if wait_ms > 0 && !covers_tip {
                return Err(OpError::new(
                    ErrorCode::Timeout,
                    format!("the adapter for {repo} still covers {commit}, not the tip; waited {wait_ms} ms"),
                ));
            }
            shared.retention.touch(&shared.store, &rec.key, &dir, crate::engine::now_secs());
            let path = shared.adapters_root.join(&rec.key).join(&dir);
            let model = shared.model.read().expect("model lock").clone();
            let trained = model.as_ref().map(|m| m.trained).unwrap_or(false);
            let mut f = Fields::new();
            f.insert("path".into(), json!(path.display().to_string()));
            f.insert("commit".into(), json!(commit));
            f.insert("ref".into(), json!(refname));
            f.insert("tip".into(), json!(tip));
            f.insert("covers_tip".into(), json!(covers_tip));
            f.insert("trained".into(), json!(trained));
            if !trained {
                f.insert("warning".into(), json!(UNTRAINED_WARNING));
            }
            return Ok(f);
        }
        if !woke {
            // The hook may have been missed; make sure the repository is being caught up.
            shared.scheduler.wake(&rec.key, JobFlags::default());
            woke = true;
        }
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let _ = tokio::time::timeout(remaining.min(Duration::from_millis(250)), progress.changed()).await;
    }
}
