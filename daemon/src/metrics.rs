//! What the daemon counts and times, in the Prometheus data model (the `prometheus-client`
//! crate): latency histograms for each stage of a commit's way to an adapter, counters of
//! what was published, handed out, pruned and pushed, errors by kind, and gauges read off
//! the job queue when scraped. Exposed through the socket's `metrics` op and, when
//! `[serve] metrics_listen` is set, over HTTP at `/metrics`.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// The exposition's content type (OpenMetrics text, which Prometheus scrapes natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PushLabels {
    pub endpoint: String,
    pub op: String,
    pub outcome: String,
}

pub struct Metrics {
    registry: Mutex<Registry>,
    /// One GRU step (a group's advance divided among its steps).
    pub gru_step: Histogram,
    /// Diffing and encoding one commit.
    pub encode: Histogram,
    /// Running the head: state vector to adapter weights, each type's tensors written to the
    /// weights file as they come.
    pub generation: Histogram,
    /// Finishing a version directory: fsync, the other files, rename, record.
    pub write: Histogram,
    /// From the wake-up (hook, watcher or request) that started a job to its adapter being
    /// published.
    pub commit_to_adapter: Histogram,
    pub commits_walked: Counter,
    pub published: Counter,
    /// Adapter paths handed to clients (`adapter` replies).
    pub served: Counter,
    pub pruned: Counter,
    /// Failures by kind: `job` (a publish that fails fails its job), `push`, `verify`,
    /// `worktree`, `request` (internal errors only).
    pub errors: Family<KindLabel, Counter>,
    /// Load and unload calls to inference servers, by endpoint, op and outcome.
    pub pushes: Family<PushLabels, Counter>,
    /// Set when scraped: repositories waiting for the model thread.
    queue_depth: Gauge,
    /// Set when scraped: commits still to walk in running walks.
    walk_lag: Gauge,
}

/// Latency buckets from 0.1 ms to about 100 s, doubling.
fn latency_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(1e-4, 2.0, 21)
}

impl Default for Metrics {
    fn default() -> Self {
        let m = Metrics {
            registry: Mutex::new(Registry::with_prefix("evolora")),
            gru_step: Histogram::new(latency_buckets()),
            encode: Histogram::new(latency_buckets()),
            generation: Histogram::new(latency_buckets()),
            write: Histogram::new(latency_buckets()),
            commit_to_adapter: Histogram::new(latency_buckets()),
            commits_walked: Counter::default(),
            published: Counter::default(),
            served: Counter::default(),
            pruned: Counter::default(),
            errors: Family::default(),
            pushes: Family::default(),
            queue_depth: Gauge::default(),
            walk_lag: Gauge::default(),
        };
        {
            let mut r = m.registry.lock().expect("metrics lock");
            let secs = Unit::Seconds;
            r.register_with_unit("gru_step", "Time of one GRU step", secs.clone(), m.gru_step.clone());
            r.register_with_unit("encode", "Time to diff and encode one commit", secs.clone(), m.encode.clone());
            r.register_with_unit("generation", "Time to generate an adapter's weights from a state", secs.clone(), m.generation.clone());
            r.register_with_unit("write", "Time to write and fsync an adapter version directory", secs.clone(), m.write.clone());
            r.register_with_unit("commit_to_adapter", "Time from the wake-up that started a job to its adapter being published", secs, m.commit_to_adapter.clone());
            r.register("commits_walked", "Commits folded into states", m.commits_walked.clone());
            r.register("adapters_published", "Adapter versions published", m.published.clone());
            r.register("adapters_served", "Adapter paths handed to clients", m.served.clone());
            r.register("adapters_pruned", "Adapter versions deleted by retention", m.pruned.clone());
            r.register("errors", "Failures by kind", m.errors.clone());
            r.register("pushes", "Load and unload calls to inference servers", m.pushes.clone());
            r.register("queue_depth", "Repositories waiting for the model thread", m.queue_depth.clone());
            r.register("walk_lag", "Commits still to walk in running walks", m.walk_lag.clone());
        }
        m
    }
}

impl Metrics {
    pub fn error(&self, kind: &str) {
        self.errors.get_or_create(&KindLabel { kind: kind.to_owned() }).inc();
    }

    pub fn push(&self, endpoint: &str, op: &str, outcome: &str) {
        self.pushes.get_or_create(&PushLabels { endpoint: endpoint.to_owned(), op: op.to_owned(), outcome: outcome.to_owned() }).inc();
    }

    /// The exposition, with the gauges set to `queue_depth` and `walk_lag` first.
    pub fn render(&self, queue_depth: u64, walk_lag: u64) -> String {
        self.queue_depth.set(i64::try_from(queue_depth).unwrap_or(i64::MAX));
        self.walk_lag.set(i64::try_from(walk_lag).unwrap_or(i64::MAX));
        let mut text = String::new();
        let registry = self.registry.lock().expect("metrics lock");
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("writing to a String cannot fail");
        text
    }
}

/// Seconds as the histograms take them.
pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_every_metric_with_its_counts() {
        let m = Metrics::default();
        m.gru_step.observe(0.002);
        m.gru_step.observe(0.004);
        m.published.inc();
        m.error("push");
        m.push("vllm-a", "load", "ok");
        let text = m.render(3, 17);
        assert!(text.contains("evolora_gru_step_seconds_count 2"), "{text}");
        assert!(text.contains("evolora_adapters_published_total 1"), "{text}");
        assert!(text.contains("evolora_errors_total{kind=\"push\"} 1"), "{text}");
        assert!(text.contains("evolora_queue_depth 3") && text.contains("evolora_walk_lag 17"), "{text}");
        assert!(text.contains("evolora_pushes_total{endpoint=\"vllm-a\",op=\"load\",outcome=\"ok\"} 1"), "{text}");
        assert!(text.trim_end().ends_with("# EOF"));
    }
}
