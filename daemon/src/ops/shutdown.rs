use std::sync::Arc;

use evolora_protocol::reply::Stopping;

use crate::context::Daemon;

/// Asks the daemon to stop as SIGTERM would: the running step finishes and is flushed.
pub fn run(daemon: &Arc<Daemon>) -> Stopping {
    daemon.shutdown_requested.notify_one();
    Stopping { stopping: true }
}
