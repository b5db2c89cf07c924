use std::sync::Arc;

use serde_json::json;

use super::Fields;
use crate::protocol::OpError;
use crate::scheduler::JobFlags;
use crate::shared::Shared;

/// A hook's or watcher's wake-up. Replies as soon as the job is queued.
pub async fn run(shared: &Arc<Shared>, repo: &str) -> Result<Fields, OpError> {
    let (rec, _) = super::registered(shared, repo).await?;
    shared.scheduler.wake(&rec.key, JobFlags::default());
    let mut f = Fields::new();
    f.insert("queued".into(), json!(true));
    f.insert("repo_key".into(), json!(rec.key));
    Ok(f)
}
