use std::sync::Arc;

use serde_json::json;

use super::Fields;
use crate::protocol::OpError;
use crate::shared::Shared;

pub fn run(shared: &Arc<Shared>) -> Result<Fields, OpError> {
    let mut f = Fields::new();
    f.insert("pong".into(), json!(true));
    f.insert("version".into(), json!(env!("CARGO_PKG_VERSION")));
    f.insert("pid".into(), json!(std::process::id()));
    f.insert("model_loaded".into(), json!(shared.model.read().expect("model lock").is_some()));
    Ok(f)
}
