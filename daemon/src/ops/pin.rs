//! `pin` and `unpin`: keep an adapter version through every retention rule, or let it go.

use std::sync::Arc;

use evolora_protocol::reply::Pinned;
use evolora_protocol::{ErrorCode, OpError};

use super::{blocking, internal};
use crate::context::Daemon;

pub async fn run(daemon: &Arc<Daemon>, repo: &str, adapter: Option<&str>, pinned: bool) -> Result<Pinned, OpError> {
    let (rec, found) = super::registered(daemon, repo).await?;
    // On an edge the versions live in the cluster.
    if let Some(node) = daemon.cluster.get().filter(|n| n.config.role == crate::config::ClusterRole::Edge) {
        return crate::cluster::edge::pin(daemon, node, &rec, found, adapter, pinned).await;
    }
    let name = match adapter {
        Some(name) => name.to_owned(),
        None => {
            // The current adapter of the ref checked out where the client asked.
            let tracked = blocking(move || found.tracked_ref().map_err(internal)).await?;
            let refname = tracked.map(|(r, _)| r).unwrap_or_default();
            let state = daemon.store.ref_state(&rec.key, &refname).map_err(internal)?;
            state.and_then(|s| s.current_adapter).ok_or_else(|| {
                OpError::new(ErrorCode::NoAdapter, format!("{repo} has no current adapter to {}", if pinned { "pin" } else { "unpin" }))
            })?
        }
    };
    let (adapters, key, lookup) = (daemon.adapters.clone(), rec.key.clone(), name.clone());
    let found = blocking(move || adapters.set_pinned(&key, &lookup, pinned).map_err(internal)).await?;
    let Some(found) = found else {
        return Err(OpError::new(
            ErrorCode::NoAdapter,
            format!("{repo} has no adapter named `{name}` (give a directory name from `evolora status` or a commit of at least 7 hex digits)"),
        ));
    };
    let path = daemon.adapters.path(&rec.key, &found.dir);
    Ok(Pinned { path: path.display().to_string(), commit: found.commit, refname: found.refname, pinned: found.pinned })
}
