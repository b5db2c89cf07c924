//! Explicit `regenerate` and `reset` requests.

use std::sync::Arc;

use serde_json::json;

use super::Fields;
use crate::protocol::OpError;
use crate::scheduler::JobFlags;
use crate::shared::Shared;

pub async fn regenerate(shared: &Arc<Shared>, repo: &str) -> Result<Fields, OpError> {
    queue(shared, repo, JobFlags { regenerate: true, reset: false }).await
}

/// Rebuilds the state from a fresh snapshot of the tip (drift control) and publishes.
pub async fn reset(shared: &Arc<Shared>, repo: &str) -> Result<Fields, OpError> {
    queue(shared, repo, JobFlags { regenerate: true, reset: true }).await
}

async fn queue(shared: &Arc<Shared>, repo: &str, flags: JobFlags) -> Result<Fields, OpError> {
    let (rec, _) = super::registered(shared, repo).await?;
    shared.scheduler.wake(&rec.key, flags);
    let mut f = Fields::new();
    f.insert("queued".into(), json!(true));
    f.insert("repo_key".into(), json!(rec.key));
    Ok(f)
}
