//! `pin` and `unpin`: keep an adapter version through every retention rule, or let it go.

use std::sync::Arc;

use serde_json::json;

use super::{Fields, blocking, internal};
use crate::protocol::{ErrorCode, OpError};
use crate::shared::Shared;

pub async fn run(shared: &Arc<Shared>, repo: &str, adapter: Option<&str>, pinned: bool) -> Result<Fields, OpError> {
    let (rec, found) = super::registered(shared, repo).await?;
    let name = match adapter {
        Some(name) => name.to_owned(),
        None => {
            // The current adapter of the ref checked out where the client asked.
            let tracked = blocking(move || found.tracked_ref().map_err(internal)).await?;
            let refname = tracked.map(|(r, _)| r).unwrap_or_default();
            let state = shared.store.ref_state(&rec.key, &refname).map_err(internal)?;
            state.and_then(|s| s.current_adapter).ok_or_else(|| {
                OpError::new(ErrorCode::NoAdapter, format!("{repo} has no current adapter to {}", if pinned { "pin" } else { "unpin" }))
            })?
        }
    };
    let store = shared.store.clone();
    let shared2 = shared.clone();
    let key = rec.key.clone();
    let lookup = name.clone();
    let found = blocking(move || shared2.retention.set_pinned(&store, &key, &lookup, pinned).map_err(internal)).await?;
    let Some(found) = found else {
        return Err(OpError::new(
            ErrorCode::NoAdapter,
            format!("{repo} has no adapter named `{name}` (give a directory name from `evolora status` or a commit of at least 7 hex digits)"),
        ));
    };
    let path = shared.adapters_root.join(&rec.key).join(&found.dir);
    let mut f = Fields::new();
    f.insert("path".into(), json!(path.display().to_string()));
    f.insert("commit".into(), json!(found.commit));
    f.insert("ref".into(), json!(found.refname));
    f.insert("pinned".into(), json!(found.pinned));
    Ok(f)
}
