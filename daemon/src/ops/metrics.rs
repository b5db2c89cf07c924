use evolora_protocol::reply::MetricsReply;

use crate::context::Daemon;

/// The metrics exposition, with the queue gauges read now.
pub fn run(daemon: &Daemon) -> MetricsReply {
    MetricsReply { content_type: crate::metrics::CONTENT_TYPE.to_owned(), text: exposition(daemon) }
}

pub fn exposition(daemon: &Daemon) -> String {
    daemon.metrics.render(daemon.jobs.queued() as u64, daemon.jobs.walk_lag())
}
