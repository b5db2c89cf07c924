use std::sync::Arc;

use serde_json::json;

use super::Fields;
use crate::protocol::OpError;
use crate::shared::Shared;

/// Asks the daemon to stop as SIGTERM would: the running step finishes and is flushed.
pub fn run(shared: &Arc<Shared>) -> Result<Fields, OpError> {
    shared.shutdown_requested.notify_one();
    let mut f = Fields::new();
    f.insert("stopping".into(), json!(true));
    Ok(f)
}
