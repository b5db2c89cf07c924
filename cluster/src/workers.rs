//! Worker heartbeats: each worker puts its [`WorkerBeat`] every few seconds; the bucket's age
//! limit removes a worker that stopped.

use futures_util::TryStreamExt;

use crate::{Cluster, ClusterError, WorkerBeat};

impl Cluster {
    pub async fn beat(&self, beat: &WorkerBeat) -> Result<(), ClusterError> {
        let body = serde_json::to_vec(beat).expect("a heartbeat serialises");
        self.workers.put(&beat.worker, body.into()).await.map_err(|e| ClusterError::js(format!("KV {} put", self.names.workers()), e))?;
        Ok(())
    }

    /// Workers seen within three lease times, by id.
    pub async fn workers(&self) -> Result<Vec<WorkerBeat>, ClusterError> {
        let what = || format!("KV {} keys", self.names.workers());
        let mut keys: Vec<String> = self.workers.keys().await.map_err(|e| ClusterError::js(what(), e))?.try_collect().await.map_err(|e| ClusterError::js(what(), e))?;
        keys.sort();
        let mut out = Vec::new();
        for key in keys {
            if let Some(bytes) = self.workers.get(&key).await.map_err(|e| ClusterError::js(what(), e))? {
                match serde_json::from_slice(&bytes) {
                    Ok(beat) => out.push(beat),
                    Err(e) => tracing::warn!(worker = %key, "unreadable heartbeat: {e}"),
                }
            }
        }
        Ok(out)
    }
}
