use std::sync::Arc;

use evolora_protocol::reply::Pong;

use crate::context::Daemon;

pub fn run(daemon: &Arc<Daemon>) -> Pong {
    Pong { pong: true, version: env!("CARGO_PKG_VERSION").into(), pid: std::process::id(), model_loaded: daemon.model.get().is_some() }
}
