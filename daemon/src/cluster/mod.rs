//! Cluster mode (`[cluster]` in the configuration; docs/CLUSTER.md): the same binary as an
//! [`edge`] on a git server (hooks and the watcher publish wake-ups, clients get adapters
//! fetched from the cluster) or a [`worker`] (takes repositories from the queue, walks them
//! on a local mirror with the single daemon's engine, writes states by compare-and-set and
//! adapter versions to the object store). The JetStream layout is evolora-cluster's.
//! Without `[cluster]` none of this runs.

pub mod edge;
pub mod status;
pub mod worker;

use std::path::{Path, PathBuf};

use evolora_cluster::{Cluster, ClusterError, names};

use crate::config::ClusterConfig;

/// This node's connection to the cluster.
pub struct Node {
    pub cluster: Cluster,
    pub config: ClusterConfig,
    /// The daemon's runtime, for the threads that are not tasks (the model thread).
    pub handle: tokio::runtime::Handle,
    /// When this node last wrote a hand-out time per (repository, version).
    pub served: std::sync::Mutex<std::collections::HashMap<(String, String), u64>>,
}

impl Node {
    /// Connects (creating the streams and buckets on first use). Blocks the calling thread,
    /// which must not be a runtime worker.
    pub fn connect(config: &ClusterConfig, handle: &tokio::runtime::Handle) -> Result<Node, ClusterError> {
        let name = format!("evolora-{:?}-{}", config.role, config.node).to_lowercase();
        let cluster = handle.block_on(Cluster::connect(&config.settings(), &name))?;
        Ok(Node { cluster, config: config.clone(), handle: handle.clone(), served: Default::default() })
    }

    /// The cluster id of one of this edge's repositories.
    pub fn repo_id(&self, repo_key: &str) -> String {
        names::repo_id(&self.config.node, repo_key)
    }
}

/// Where a node keeps the adapter versions it fetched for its clients:
/// `<state>/cluster/adapters/<rid>/<version>/`, so `<rid>/<version>` is both the served name
/// and the path under this root (what vLLM's filesystem resolver expects).
pub fn fetched_root(state_dir: &Path) -> PathBuf {
    state_dir.join("cluster").join("adapters")
}

/// Where a worker keeps its bare mirrors: `<state>/cluster/mirrors/<rid>.git`.
pub fn mirrors_root(state_dir: &Path) -> PathBuf {
    state_dir.join("cluster").join("mirrors")
}
