use std::sync::Arc;

use evolora_protocol::OpError;
use evolora_protocol::reply::{AdapterVersion, RefStatus, RepoStatus, Status};
use evolora_state::RepoRecord;

use super::internal;
use crate::context::Daemon;
use crate::job::vector_digest;

/// Where every repository (or one) stands: per tracked ref, the last processed commit, the
/// step count, a sha256 of the state vector, the current adapter and pending work.
pub async fn run(daemon: &Arc<Daemon>, repo: Option<&str>) -> Result<Status, OpError> {
    let records: Vec<RepoRecord> = match repo {
        Some(path) => vec![super::registered(daemon, path).await?.0],
        None => daemon.store.repos().map_err(internal)?,
    };
    let mut repos = Vec::new();
    for rec in records {
        let refs = daemon
            .store
            .ref_states(&rec.key)
            .map_err(internal)?
            .into_iter()
            .map(|s| RefStatus {
                walk: daemon.jobs.walk(&rec.key, &s.refname),
                verification: daemon.jobs.verification(&rec.key, &s.refname),
                restore_points: daemon.store.restore_point_count(&rec.key, &s.refname),
                state_sha256: vector_digest(&s.vector),
                adapter: s.current_adapter.as_ref().map(|d| daemon.adapters.path(&rec.key, d).display().to_string()),
                refname: s.refname,
                last_commit: s.last_commit,
                origin_commit: s.origin_commit,
                steps: s.steps,
                walked: s.walked,
                steps_since_adapter: s.steps_since_adapter,
                adapter_commit: s.adapter_commit,
                model_fingerprint: s.model_fingerprint,
            })
            .collect();
        // One repository: list its versions (what `pin` and `unpin` take). Not for every
        // repository at once: on a server that is a scan of every adapter record.
        let versions = match repo {
            Some(_) => Some(daemon.adapters.versions(&rec.key).map_err(internal)?),
            None => None,
        };
        let restore_point_bytes = match repo {
            Some(_) => Some(daemon.store.restore_point_bytes(&rec.key).map_err(internal)?),
            None => None,
        };
        repos.push(RepoStatus {
            restore_point_bytes,
            pending: daemon.jobs.is_busy(&rec.key) || daemon.adapters.deleting(),
            error: daemon.jobs.last_error(&rec.key),
            adapter_bytes: versions.as_ref().map(|v| v.iter().map(|r| r.bytes).sum()),
            adapters: versions.map(|v| {
                v.into_iter()
                    .map(|r| AdapterVersion {
                        served_name: crate::adapters::served_name(&rec.key, &r.dir),
                        dir: r.dir,
                        commit: r.commit,
                        refname: r.refname,
                        trigger: r.trigger,
                        created_at: r.created_at,
                        last_queried: r.last_queried,
                        pinned: r.pinned,
                        bytes: r.bytes,
                    })
                    .collect()
            }),
            repo_key: rec.key,
            git_dir: rec.git_dir,
            work_dir: rec.work_dir,
            bare: rec.bare,
            refs,
        });
    }
    Ok(Status {
        repos,
        queued: daemon.jobs.queued(),
        model: daemon.model.get().cloned(),
        model_error: daemon.model_error.get().cloned(),
        state_dir: daemon.state_dir().display().to_string(),
        push: daemon.push.status(),
    })
}
