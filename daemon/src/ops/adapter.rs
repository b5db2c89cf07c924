use std::sync::Arc;
use std::time::Duration;

use evolora_protocol::reply::AdapterReply;
use evolora_protocol::{ErrorCode, OpError};

use super::internal;
use crate::context::{Daemon, UNTRAINED_WARNING};
use crate::scheduler::JobFlags;

/// Longest wait a client may ask for.
const MAX_WAIT: Duration = Duration::from_secs(600);

/// The newest adapter of a repository's tracked ref. With `wait_ms`, waits (bounded) until
/// the adapter covers the ref's current tip.
pub async fn run(daemon: &Arc<Daemon>, repo: &str, refname: Option<&str>, wait_ms: u64) -> Result<AdapterReply, OpError> {
    let (rec, found) = super::registered(daemon, repo).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms).min(MAX_WAIT);
    let mut progress = daemon.jobs.subscribe();
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
        let state = if refname.is_empty() { None } else { daemon.store.ref_state(&rec.key, &refname).map_err(internal)? };
        let current = state.as_ref().and_then(|s| s.adapter()).map(|(dir, commit)| (dir.to_owned(), commit.to_owned()));
        // The adapter covers the tip when it was made there, or made from the same vector: the
        // commits walked since did not step the GRU (the paper policy skips most commits).
        let unchanged_since = |t: &str| state.as_ref().is_some_and(|s| s.last_commit == t && s.adapter_is_current());
        let covers_tip = matches!((&current, &tip), (Some((_, c)), Some(t)) if c == t || unchanged_since(t));
        // Without a model nothing new will come: no point waiting.
        let stalled = daemon.model_error.get().is_some();
        if covers_tip || wait_ms == 0 || stalled || tokio::time::Instant::now() >= deadline {
            let Some((dir, commit)) = current else {
                // No adapter is served while the first walk runs: a state part way through the
                // history stands for an old commit, and would be handed out as the tip's.
                if let Some(walk) = daemon.jobs.walk(&rec.key, &refname).filter(|w| w.running && w.first) {
                    let why = format!("no adapter yet for {repo}: the first walk of its history is under way ({})", walk.describe());
                    return Err(OpError::new(ErrorCode::FirstWalk, why));
                }
                let why = match (&tip, daemon.jobs.last_error(&rec.key)) {
                    _ if daemon.model_error.get().is_some() => {
                        format!("no adapter yet for {repo}: the model did not load: {}", daemon.model_error.get().expect("checked"))
                    }
                    (_, Some(err)) => format!("no adapter yet for {repo}: last job failed: {err}"),
                    (None, _) => format!("no adapter yet for {repo}: the repository has no commits on a branch"),
                    _ if wait_ms > 0 => format!("no adapter yet for {repo} after waiting {wait_ms} ms"),
                    _ => format!("no adapter yet for {repo}; the daemon is still processing it (use --wait)"),
                };
                let code = if wait_ms > 0 && tip.is_some() { ErrorCode::Timeout } else { ErrorCode::NoAdapter };
                return Err(OpError::new(code, why));
            };
            if wait_ms > 0 && !covers_tip {
                let why = match daemon.model_error.get() {
                    Some(e) => format!("the adapter for {repo} still covers {commit}, not the tip, and the model did not load: {e}"),
                    None => format!("the adapter for {repo} still covers {commit}, not the tip; waited {wait_ms} ms"),
                };
                return Err(OpError::new(ErrorCode::Timeout, why));
            }
            daemon.adapters.touch(&rec.key, &dir, crate::job::now_secs());
            daemon.metrics.served.inc();
            let trained = daemon.model.get().is_some_and(|m| m.trained);
            return Ok(AdapterReply {
                path: daemon.adapters.path(&rec.key, &dir).display().to_string(),
                served_name: crate::adapters::served_name(&rec.key, &dir),
                commit,
                refname,
                tip,
                covers_tip,
                trained,
                warning: (!trained).then(|| UNTRAINED_WARNING.to_owned()),
            });
        }
        if !woke {
            // The hook may have been missed; make sure the repository is being caught up.
            daemon.jobs.wake(&rec.key, JobFlags::default());
            woke = true;
        }
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let _ = tokio::time::timeout(remaining.min(Duration::from_millis(250)), progress.changed()).await;
    }
}
