//! Per-repository ownership: a key in the leases bucket, created by the worker that takes
//! the repository, refreshed by revision, expired by the bucket's age limit when the worker
//! stops refreshing it (killed, partitioned, paused). The lease keeps two workers from
//! walking one repository at once; it is not what keeps states right (a compare-and-set
//! does that), so a worker that lost its lease mid-walk loses only its work.

use async_nats::jetstream::kv;

use crate::{Cluster, ClusterError};

/// A held lease.
#[derive(Debug, Clone)]
pub struct Lease {
    pub rid: String,
    pub worker: String,
    revision: u64,
}

impl Cluster {
    /// Takes the repository if nobody holds it.
    pub async fn claim(&self, rid: &str, worker: &str) -> Result<Option<Lease>, ClusterError> {
        match self.leases.create(rid, worker.as_bytes().to_vec().into()).await {
            Ok(revision) => Ok(Some(Lease { rid: rid.to_owned(), worker: worker.to_owned(), revision })),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(ClusterError::js(format!("KV {} create {rid}", self.names.leases()), e)),
        }
    }

    /// Extends the lease by another lease time. `false`: it expired and may be someone
    /// else's now.
    pub async fn refresh(&self, lease: &mut Lease) -> Result<bool, ClusterError> {
        match self.leases.update(&lease.rid, lease.worker.as_bytes().to_vec().into(), lease.revision).await {
            Ok(revision) => {
                lease.revision = revision;
                Ok(true)
            }
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
            Err(e) => Err(ClusterError::js(format!("KV {} update {}", self.names.leases(), lease.rid), e)),
        }
    }

    /// Gives the repository up, unless the lease already changed hands.
    pub async fn release(&self, lease: Lease) -> Result<(), ClusterError> {
        match self.leases.delete_expect_revision(&lease.rid, Some(lease.revision)).await {
            Ok(()) => Ok(()),
            // Someone else's lease now (ours expired): nothing of ours to give up.
            Err(e) if e.to_string().contains("wrong last sequence") => Ok(()),
            Err(e) => Err(ClusterError::js(format!("KV {} delete {}", self.names.leases(), lease.rid), e)),
        }
    }

    /// Who holds a repository now.
    pub async fn lease_holder(&self, rid: &str) -> Result<Option<String>, ClusterError> {
        let entry = self.leases.entry(rid).await.map_err(|e| ClusterError::js(format!("KV {} get {rid}", self.names.leases()), e))?;
        Ok(entry.filter(|e| e.operation == kv::Operation::Put).map(|e| String::from_utf8_lossy(&e.value).into_owned()))
    }
}
