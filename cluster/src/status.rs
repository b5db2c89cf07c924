//! `evolora cluster status`: the pool, the leases, each ref's state against its newest tip,
//! and the wake-up queue.

use serde::Serialize;

use crate::{Cluster, ClusterError, QueueDepth, WorkerBeat};

/// One followed ref of one repository.
#[derive(Debug, Clone, Serialize)]
pub struct RepoRow {
    pub rid: String,
    pub edge: String,
    pub repo_key: String,
    pub refname: String,
    /// The tip the newest wake-up named (absent: no wake-up recorded for the ref).
    pub tip: Option<String>,
    /// The commit the state has folded in (absent: no state yet).
    pub state_commit: Option<String>,
    pub walked: u64,
    pub vector_sha256: Option<String>,
    /// The state is behind the newest tip.
    pub behind: bool,
    /// Seconds since the newest wake-up when the state is behind it.
    pub lag_secs: Option<u64>,
    pub adapter: Option<String>,
    /// The worker holding the repository's lease now.
    pub leased_to: Option<String>,
    /// The worker that wrote the state.
    pub written_by: Option<String>,
    /// Restore points the state carries.
    pub restore_points: usize,
    /// Adapter versions the cluster keeps for the repository, and the pinned ones' names.
    pub versions: usize,
    pub pinned: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    pub workers: Vec<WorkerBeat>,
    pub repos: Vec<RepoRow>,
    pub queue: QueueDepth,
}

impl Cluster {
    pub async fn overview(&self, now: u64) -> Result<Overview, ClusterError> {
        let workers = self.workers().await?;
        let states = self.states().await?;
        let mut rows: Vec<RepoRow> = Vec::new();
        let mut rids: Vec<String> = states.iter().map(|s| s.record.rid.clone()).collect();
        {
            use futures_util::TryStreamExt;
            let what = || format!("KV {} keys", self.names.tips());
            let keys: Vec<String> = self.tips.keys().await.map_err(|e| ClusterError::js(what(), e))?.try_collect().await.map_err(|e| ClusterError::js(what(), e))?;
            rids.extend(keys);
        }
        rids.sort();
        rids.dedup();
        for rid in rids {
            let tip = self.tip(&rid).await?;
            let leased_to = self.lease_holder(&rid).await?;
            let (versions, _) = self.versions(&rid).await?;
            let pinned: Vec<String> = versions.list.iter().filter(|v| v.pinned).map(|v| v.pointer.name.clone()).collect();
            let mut refnames: Vec<String> = states.iter().filter(|s| s.record.rid == rid).map(|s| s.record.refname.clone()).collect();
            if let Some(t) = &tip {
                refnames.extend(t.refs.iter().map(|r| r.name.clone()));
            }
            refnames.sort();
            refnames.dedup();
            for refname in refnames {
                let state = states.iter().find(|s| s.record.rid == rid && s.record.refname == refname).map(|s| &s.record);
                let ref_tip = tip.as_ref().and_then(|t| t.refs.iter().find(|r| r.name == refname).map(|r| r.tip.clone()));
                let behind = ref_tip.is_some() && ref_tip.as_deref() != state.map(|s| s.last_commit.as_str());
                let first = state.map(|s| (s.edge.clone(), s.repo_key.clone())).or_else(|| tip.as_ref().map(|t| (t.edge.clone(), t.repo_key.clone())));
                let (edge, repo_key) = first.unwrap_or_default();
                rows.push(RepoRow {
                    rid: rid.clone(),
                    edge,
                    repo_key,
                    refname,
                    tip: ref_tip,
                    state_commit: state.map(|s| s.last_commit.clone()),
                    walked: state.map_or(0, |s| s.walked),
                    vector_sha256: state.map(|s| s.vector_sha256.clone()),
                    behind,
                    lag_secs: if behind { tip.as_ref().map(|t| now.saturating_sub(t.at)) } else { None },
                    adapter: state.and_then(|s| s.adapter.as_ref().map(|a| format!("{rid}/{}", a.name))),
                    leased_to: leased_to.clone(),
                    written_by: state.map(|s| s.worker.clone()),
                    restore_points: state.map_or(0, |s| s.restore_points.len()),
                    versions: versions.list.len(),
                    pinned: pinned.clone(),
                });
            }
        }
        Ok(Overview { workers, repos: rows, queue: self.queue().await? })
    }
}
