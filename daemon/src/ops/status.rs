use std::sync::Arc;

use serde_json::{Value, json};

use super::{Fields, internal};
use crate::engine::vector_digest;
use crate::protocol::OpError;
use crate::shared::Shared;
use evolora_state::RepoRecord;

/// Where every repository (or one) stands: per tracked ref, the last processed commit, the
/// step count, a sha256 of the state vector, the current adapter and pending work.
pub async fn run(shared: &Arc<Shared>, repo: Option<&str>) -> Result<Fields, OpError> {
    let records: Vec<RepoRecord> = match repo {
        Some(path) => vec![super::registered(shared, path).await?.0],
        None => shared.store.repos().map_err(internal)?,
    };
    let adapters = &shared.adapters_root;
    let mut repos = Vec::new();
    for rec in records {
        let refs: Vec<Value> = shared
            .store
            .ref_states(&rec.key)
            .map_err(internal)?
            .into_iter()
            .map(|s| {
                json!({
                    "ref": s.refname,
                    "last_commit": s.last_commit,
                    "origin_commit": s.origin_commit,
                    "steps": s.steps,
                    "walked": s.walked,
                    "steps_since_adapter": s.steps_since_adapter,
                    "state_sha256": vector_digest(&s.vector),
                    "adapter": s.current_adapter.as_ref().map(|d| adapters.join(&rec.key).join(d).display().to_string()),
                    "adapter_commit": s.adapter_commit,
                    "model_fingerprint": s.model_fingerprint,
                })
            })
            .collect();
        let error = shared.errors.lock().expect("errors lock").get(&rec.key).cloned();
        let mut entry = json!({
            "repo_key": rec.key,
            "git_dir": rec.git_dir,
            "work_dir": rec.work_dir,
            "bare": rec.bare,
            "pending": shared.scheduler.is_busy(&rec.key),
            "error": error,
            "refs": refs,
        });
        if repo.is_some() {
            // One repository: list its versions (what `pin` and `unpin` take). Not for every
            // repository at once: on a server that is a scan of every adapter record.
            let versions = shared.store.adapters(&rec.key).map_err(internal)?;
            entry["adapter_bytes"] = json!(versions.iter().map(|(_, v)| v.bytes).sum::<u64>());
            entry["adapters"] = versions
                .iter()
                .map(|(_, v)| {
                    json!({
                        "dir": v.dir,
                        "commit": v.commit,
                        "ref": v.refname,
                        "trigger": v.trigger,
                        "created_at": v.created_at,
                        "last_queried": v.last_queried,
                        "pinned": v.pinned,
                        "bytes": v.bytes,
                    })
                })
                .collect();
        }
        repos.push(entry);
    }
    let mut f = Fields::new();
    f.insert("repos".into(), Value::Array(repos));
    f.insert("queued".into(), json!(shared.scheduler.queued()));
    f.insert("model".into(), json!(*shared.model.read().expect("model lock")));
    f.insert("model_error".into(), json!(*shared.model_error.read().expect("model lock")));
    f.insert("state_dir".into(), json!(shared.config().state_dir.display().to_string()));
    Ok(f)
}
