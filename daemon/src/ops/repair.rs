//! Explicit `regenerate` and `reset` requests.

use std::sync::Arc;

use evolora_protocol::OpError;
use evolora_protocol::reply::Queued;

use crate::context::Daemon;
use crate::scheduler::JobFlags;

pub async fn regenerate(daemon: &Arc<Daemon>, repo: &str) -> Result<Queued, OpError> {
    queue(daemon, repo, JobFlags { regenerate: true, reset: false }).await
}

/// Rebuilds the state from a fresh snapshot of the tip (drift control) and publishes.
pub async fn reset(daemon: &Arc<Daemon>, repo: &str) -> Result<Queued, OpError> {
    queue(daemon, repo, JobFlags { regenerate: true, reset: true }).await
}

async fn queue(daemon: &Arc<Daemon>, repo: &str, flags: JobFlags) -> Result<Queued, OpError> {
    let (rec, _) = super::registered(daemon, repo).await?;
    daemon.jobs.wake(&rec.key, flags);
    Ok(Queued { queued: true, repo_key: rec.key })
}
