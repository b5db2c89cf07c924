use std::sync::Arc;

use evolora_protocol::OpError;
use evolora_protocol::reply::Queued;

use crate::context::Daemon;
use crate::scheduler::JobFlags;

/// A hook's or watcher's wake-up. Replies as soon as the job is queued.
pub async fn run(daemon: &Arc<Daemon>, repo: &str) -> Result<Queued, OpError> {
    let (rec, _) = super::registered(daemon, repo).await?;
    daemon.jobs.wake(&rec.key, JobFlags::default());
    Ok(Queued { queued: true, repo_key: rec.key })
}
