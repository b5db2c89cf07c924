//! The edge role: the daemon on a git server. Hooks, the watcher and the scheduler work as on
//! one machine, but a job publishes a wake-up (repository, followed refs and tips, where to
//! fetch it) instead of walking; no model is loaded. Clients' `adapter` requests are answered
//! from the cluster's states, with the version fetched into `<state>/cluster/adapters`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use evolora_cluster::{RefTip, WakeUp, fetch_adapter_into};
use evolora_protocol::reply::AdapterReply;
use evolora_protocol::{ErrorCode, OpError};
use evolora_state::{RefState, RepoRecord};
use tracing::{info, warn};

use super::Node;
use crate::context::{Daemon, Ended, UNTRAINED_WARNING};
use crate::git;
use crate::repo_cache::Found;
use crate::scheduler::JobFlags;

/// After a failed publish (NATS unreachable) the repository is queued again after this long.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Serves the scheduler's queue until the daemon stops: one wake-up per job.
pub fn run(daemon: Arc<Daemon>, node: Arc<Node>) {
    let mut failing: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut moves = Moves::default();
    while !daemon.stop.is_set() {
        let Some((key, _flags)) = daemon.jobs.next(Duration::from_millis(500)) else { continue };
        let result = wake_up(&daemon, &node, &key, &mut moves);
        let ended = match &result {
            Ok(Some(wake)) => {
                if failing.remove(&key) {
                    info!(repo = %key, "publishing wake-ups again");
                }
                info!(repo = %key, rid = %wake.rid, refs = wake.refs.len(), "wake-up published");
                Ended::Done
            }
            Ok(None) => Ended::Done,
            Err(e) => {
                // One line per failure streak, not one per retry.
                if failing.insert(key.clone()) {
                    warn!(repo = %key, error = %e, "wake-up not published; retrying every {} s", RETRY_AFTER.as_secs());
                }
                daemon.metrics.error("cluster");
                Ended::Failed(e.clone())
            }
        };
        daemon.jobs.finished(&key, ended);
        if result.is_err() {
            let (jobs, key) = (daemon.jobs.clone(), key.clone());
            node.handle.spawn(async move {
                tokio::time::sleep(RETRY_AFTER).await;
                jobs.wake(&key, JobFlags::default());
            });
        }
    }
}

/// Numbers each repository's moves: the generation of its last published tips, kept while
/// they stay the same, and a new one (never used before by this edge, across restarts too:
/// it starts from the clock) when they change.
struct Moves {
    last: std::collections::HashMap<String, (String, u64)>,
    next: u64,
}

impl Default for Moves {
    fn default() -> Self {
        let millis = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        Moves { last: Default::default(), next: millis }
    }
}

impl Moves {
    fn generation(&mut self, key: &str, tips: String) -> u64 {
        match self.last.get(key) {
            Some((t, g)) if *t == tips => *g,
            _ => {
                self.next += 1;
                self.last.insert(key.to_owned(), (tips, self.next));
                self.next
            }
        }
    }
}

/// The wake-up for a repository's followed refs now, published; `None` when it has no commit
/// on a followed ref yet, or is no longer registered.
fn wake_up(daemon: &Daemon, node: &Node, key: &str, moves: &mut Moves) -> Result<Option<WakeUp>, String> {
    let Some(rec) = daemon.store.repo(key).map_err(|e| e.to_string())? else { return Ok(None) };
    let mut wake = describe(node, &rec)?;
    if wake.refs.is_empty() {
        return Ok(None);
    }
    wake.generation = moves.generation(key, wake.tips_digest());
    node.handle.block_on(node.cluster.publish_wake(&wake)).map_err(|e| e.to_string())?;
    Ok(Some(wake))
}

fn describe(node: &Node, rec: &RepoRecord) -> Result<WakeUp, String> {
    let repo = git::open(Path::new(&rec.git_dir)).map_err(|e| format!("repository at {} is unreadable: {e}", rec.git_dir))?;
    let refs = git::followed_refs(&repo, &rec.tracked_refs).map_err(|e| e.to_string())?;
    let refs = refs.into_iter().filter_map(|(name, tip)| tip.map(|t| RefTip { name, tip: t.to_string() })).collect();
    Ok(WakeUp {
        rid: node.repo_id(&rec.key),
        edge: node.config.node.clone(),
        repo_key: rec.key.clone(),
        url: node.config.fetch_url.replace("{git_dir}", &rec.git_dir),
        refs,
        at: crate::clock::now_secs(),
        generation: 0,
    })
}

/// `adapter` on an edge: the ref's state in the cluster names the version; it is fetched
/// once into this node's adapter root and its path returned. With `wait_ms`, waits until
/// the version covers the ref's tip.
pub async fn adapter(daemon: &Arc<Daemon>, node: &Node, rec: &RepoRecord, found: Arc<Found>, refname: Option<&str>, wait_ms: u64) -> Result<AdapterReply, OpError> {
    let rid = node.repo_id(&rec.key);
    let repo = found.location.git_dir.display().to_string();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms).min(super::super::ops::adapter::MAX_WAIT);
    let mut woke = false;
    loop {
        let (f, wanted) = (found.clone(), refname.map(str::to_owned));
        let tracked = crate::ops::blocking(move || match wanted {
            Some(name) => Ok(Some((name.clone(), f.ref_tip(&name)))),
            None => f.tracked_ref().map_err(crate::ops::internal),
        })
        .await?;
        let (refname, tip) = match tracked {
            Some((r, t)) => (r, t.map(|t| t.to_string())),
            None => (String::new(), None),
        };
        let unavailable = |e: evolora_cluster::ClusterError| OpError::new(ErrorCode::NoAdapter, format!("no adapter for {repo}: the cluster did not answer: {e}"));
        let stored = if refname.is_empty() { None } else { node.cluster.state(&rid, &refname).await.map_err(unavailable)? };
        let state = stored.as_ref().and_then(|s| RefState::from_bytes(&s.record.state).ok());
        let pointer = stored.as_ref().and_then(|s| s.record.adapter.clone());
        let unchanged_since = |t: &str| state.as_ref().is_some_and(|s| s.last_commit == t && s.adapter_is_current());
        let covers_tip = matches!((&pointer, &tip), (Some(p), Some(t)) if p.commit == *t || unchanged_since(t));
        if covers_tip || wait_ms == 0 || tokio::time::Instant::now() >= deadline {
            let Some(pointer) = pointer else {
                let code = if wait_ms > 0 && tip.is_some() { ErrorCode::Timeout } else { ErrorCode::NoAdapter };
                let why = match stored {
                    Some(s) => format!("no adapter yet for {repo}: the cluster's state is at {} ({} commits walked), none published yet", s.record.last_commit, s.record.walked),
                    None => format!("no adapter yet for {repo}: no worker has walked it yet (cluster id {rid})"),
                };
                return Err(OpError::new(code, why));
            };
            if wait_ms > 0 && !covers_tip {
                return Err(OpError::new(ErrorCode::Timeout, format!("the adapter for {repo} still covers {}, not the tip; waited {wait_ms} ms", pointer.commit)));
            }
            let root = super::fetched_root(&daemon.state_dir());
            let fresh = !root.join(&rid).join(&pointer.name).is_dir();
            let path = fetch_adapter_into(&node.cluster, &rid, &pointer, &root).await.map_err(unavailable)?;
            note_served(node, &rid, &pointer.name).await;
            if fresh {
                sweep_fetched(node, &rid, &root.join(&rid), &pointer.name).await;
            }
            daemon.metrics.served.inc();
            let trained = stored.as_ref().is_some_and(|s| s.record.trained);
            return Ok(AdapterReply {
                path: path.display().to_string(),
                served_name: format!("{rid}/{}", pointer.name),
                commit: pointer.commit.clone(),
                refname,
                tip,
                covers_tip,
                trained,
                warning: (!trained).then(|| UNTRAINED_WARNING.to_owned()),
                ephemeral: false,
            });
        }
        if !woke {
            daemon.jobs.wake(&rec.key, JobFlags::default());
            woke = true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Hand-outs written to the cluster's version record at most this often per version and node
/// (the serve grace is counted from them).
const SERVED_WRITE_INTERVAL: u64 = 60;

/// Records a hand-out of `version` in the cluster, so retention keeps it for the serve grace.
async fn note_served(node: &Node, rid: &str, version: &str) {
    let now = crate::clock::now_secs();
    let slot = (rid.to_owned(), version.to_owned());
    let due = node.served.lock().expect("served lock").get(&slot).is_none_or(|t| now >= t + SERVED_WRITE_INTERVAL);
    if !due {
        return;
    }
    match node.cluster.touch_version(rid, version, now).await {
        Ok(_) => {
            node.served.lock().expect("served lock").insert(slot, now);
        }
        Err(e) => warn!(%rid, %version, error = %e, "hand-out not recorded in the cluster"),
    }
}

/// After a new version was fetched: removes this node's copies of the repository's versions
/// that the cluster's retention has let go.
async fn sweep_fetched(node: &Node, rid: &str, dir: &Path, serving: &str) {
    let kept = match node.cluster.versions(rid).await {
        Ok((v, _)) => v.list.into_iter().map(|e| e.pointer.name).collect::<std::collections::HashSet<_>>(),
        Err(e) => {
            warn!(%rid, error = %e, "cannot read the cluster's versions; fetched copies stay");
            return;
        }
    };
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == serving || name.starts_with('.') || kept.contains(&name) {
            continue;
        }
        match std::fs::remove_dir_all(entry.path()) {
            Ok(()) => info!(%rid, version = %name, "fetched adapter version removed: the cluster no longer keeps it"),
            Err(e) => warn!(%rid, version = %name, error = %e, "cannot remove a fetched adapter version"),
        }
    }
}

/// `pin` and `unpin` on an edge: the cluster's record of the version, by name or commit, or
/// the current version of the ref checked out where the client asked.
pub async fn pin(daemon: &Arc<Daemon>, node: &Node, rec: &RepoRecord, found: Arc<Found>, name: Option<&str>, pinned: bool) -> Result<evolora_protocol::reply::Pinned, OpError> {
    let rid = node.repo_id(&rec.key);
    let repo = found.location.git_dir.display().to_string();
    let unavailable = |e: evolora_cluster::ClusterError| OpError::new(ErrorCode::NoAdapter, format!("cannot {} for {repo}: the cluster did not answer: {e}", if pinned { "pin" } else { "unpin" }));
    let name = match name {
        Some(n) => n.to_owned(),
        None => {
            let f = found.clone();
            let tracked = crate::ops::blocking(move || f.tracked_ref().map_err(crate::ops::internal)).await?;
            let refname = tracked.map(|(r, _)| r).unwrap_or_default();
            let stored = node.cluster.state(&rid, &refname).await.map_err(unavailable)?;
            stored.and_then(|s| s.record.adapter.map(|a| a.name)).ok_or_else(|| OpError::new(ErrorCode::NoAdapter, format!("{repo} has no current adapter in the cluster to {}", if pinned { "pin" } else { "unpin" })))?
        }
    };
    let entry = node.cluster.set_pinned(&rid, &name, pinned).await.map_err(unavailable)?.ok_or_else(|| {
        OpError::new(ErrorCode::NoAdapter, format!("the cluster has no adapter version of {repo} named `{name}` (a version name from `evolora cluster status` or a commit of at least 7 hex digits)"))
    })?;
    let path = fetch_adapter_into(&node.cluster, &rid, &entry.pointer, &super::fetched_root(&daemon.state_dir())).await.map_err(unavailable)?;
    Ok(evolora_protocol::reply::Pinned { path: path.display().to_string(), commit: entry.pointer.commit, refname: entry.refname, pinned: entry.pinned })
}
