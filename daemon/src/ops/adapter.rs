use std::sync::Arc;
use std::time::Duration;

use evolora_protocol::reply::AdapterReply;
use evolora_protocol::{ErrorCode, OpError};

use super::internal;
use crate::context::{Daemon, UNTRAINED_WARNING};
use crate::job::worktree::WorktreeRequest;
use crate::repo_cache::Found;
use crate::scheduler::JobFlags;

/// Longest wait a client may ask for.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(600);

/// The newest adapter of a repository's tracked ref. With `wait_ms`, waits (bounded) until
/// the adapter covers the ref's current tip.
pub async fn run(daemon: &Arc<Daemon>, repo: &str, refname: Option<&str>, wait_ms: u64) -> Result<AdapterReply, OpError> {
    let (rec, found) = super::registered(daemon, repo).await?;
    // On an edge the cluster's workers make the adapters.
    if let Some(node) = daemon.cluster.get().filter(|n| n.config.role == crate::config::ClusterRole::Edge) {
        return crate::cluster::edge::adapter(daemon, node, &rec, found, refname, wait_ms).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms).min(MAX_WAIT);
    let mut progress = daemon.jobs.subscribe();
    let mut woke = false;
    let mut vanished = 0;
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
            if !daemon.adapters.touch(&rec.key, &dir, crate::job::now_secs()) {
                // Replaced and pruned since the state was read: read it again (a version the
                // state names but the records lack is not waited on for ever).
                vanished += 1;
                if vanished < 3 {
                    continue;
                }
                return Err(OpError::new(ErrorCode::NoAdapter, format!("the adapter of {repo} that the state names ({dir}) is not on record; `evolora regenerate` makes a new one")));
            }
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
                ephemeral: false,
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

/// `adapter --worktree`: an ephemeral adapter of the uncommitted work at `repo`, or the
/// current adapter when there is none.
pub async fn worktree(daemon: &Arc<Daemon>, repo: &str, wait_ms: u64) -> Result<AdapterReply, OpError> {
    let (rec, found) = super::registered(daemon, repo).await?;
    if let Some(e) = daemon.model_error.get() {
        return Err(OpError::new(ErrorCode::NoAdapter, format!("no adapter of the uncommitted work: the model did not load: {e}")));
    }
    let f = found.clone();
    let snapshot = super::blocking(move || worktree_snapshot(&f)).await?;
    let Some((refname, head, snapshot)) = snapshot else {
        // Nothing uncommitted: the committed adapter is the answer.
        return run(daemon, repo, None, wait_ms).await;
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    daemon.jobs.request_worktree(WorktreeRequest { key: rec.key.clone(), refname: refname.clone(), head, snapshot, reply: tx });
    // The model thread may first have to catch the repository up.
    let limit = Duration::from_millis(wait_ms).clamp(Duration::from_secs(60), MAX_WAIT);
    let path = match tokio::time::timeout(limit, rx).await {
        Ok(Ok(Ok(path))) => path,
        Ok(Ok(Err(why))) => return Err(OpError::new(ErrorCode::NoAdapter, why)),
        Ok(Err(_)) => return Err(OpError::new(ErrorCode::NoAdapter, "no adapter of the uncommitted work: the daemon is stopping")),
        Err(_) => return Err(OpError::new(ErrorCode::Timeout, format!("no adapter of the uncommitted work within {} s", limit.as_secs()))),
    };
    let trained = daemon.model.get().is_some_and(|m| m.trained);
    Ok(AdapterReply {
        path: path.display().to_string(),
        // Outside the adapter root, so no resolver finds it by name: load it by path.
        served_name: String::new(),
        commit: head.to_string(),
        refname,
        tip: Some(head.to_string()),
        covers_tip: true,
        trained,
        warning: (!trained).then(|| UNTRAINED_WARNING.to_owned()),
        ephemeral: true,
    })
}

/// The branch, HEAD and the commit `git stash create` makes of the work tree at the client's
/// checkout; None when nothing tracked differs from HEAD.
fn worktree_snapshot(found: &Found) -> Result<Option<(String, git2::Oid, git2::Oid)>, OpError> {
    let bad = |why: String| OpError::new(ErrorCode::BadRequest, why);
    let work_dir = found.work_dir().ok_or_else(|| bad("a bare repository has no work tree".into()))?;
    let (refname, head) = match found.tracked_ref().map_err(internal)? {
        Some((r, Some(h))) => (r, h),
        Some((r, None)) => return Err(bad(format!("{r} has no commits yet"))),
        None => return Err(bad("HEAD is detached: the work tree has no branch to build on".into())),
    };
    // A fixed identity: the stash commit is never stored under a ref, and git refuses to
    // make one without an identity where none is configured.
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(&work_dir)
        .args(["stash", "create"])
        .env("GIT_AUTHOR_NAME", "evolora")
        .env("GIT_AUTHOR_EMAIL", "evolora@localhost")
        .env("GIT_COMMITTER_NAME", "evolora")
        .env("GIT_COMMITTER_EMAIL", "evolora@localhost")
        .output()
        .map_err(|e| internal(format!("running git stash create: {e}")))?;
    if !out.status.success() {
        return Err(internal(format!("git stash create: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if text.is_empty() {
        return Ok(None);
    }
    let snapshot = git2::Oid::from_str(&text).map_err(|e| internal(format!("git stash create printed `{text}`: {e}")))?;
    Ok(Some((refname, head, snapshot)))
}
