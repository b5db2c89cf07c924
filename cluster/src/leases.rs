//! Per-repository ownership: a key in the leases bucket, created by the worker that takes
//! the repository, refreshed by revision, and over once a lease time has passed since the
//! server stored its last refresh (the worker was killed, partitioned, paused). An expired
//! key is taken over by compare-and-set on its revision; the bucket's age limit removes
//! those nobody takes, though the server's expiry timer may run a second or more late. The lease keeps two workers from
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
    /// Takes the repository if nobody holds it, or its holder's lease has run out.
    pub async fn claim(&self, rid: &str, worker: &str) -> Result<Option<Lease>, ClusterError> {
        let lease = |revision| Some(Lease { rid: rid.to_owned(), worker: worker.to_owned(), revision });
        match self.leases.create(rid, worker.as_bytes().to_vec().into()).await {
            Ok(revision) => return Ok(lease(revision)),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
            Err(e) => return Err(ClusterError::js(format!("KV {} create {rid}", self.names.leases()), e)),
        }
        let Some(entry) = self.live_or_expired(rid).await?.filter(|(_, expired)| *expired).map(|(e, _)| e) else { return Ok(None) };
        match self.leases.update(rid, worker.as_bytes().to_vec().into(), entry.revision).await {
            Ok(revision) => Ok(lease(revision)),
            // Someone else took it over (or its holder refreshed it) first.
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(None),
            Err(e) => Err(ClusterError::js(format!("KV {} update {rid}", self.names.leases()), e)),
        }
    }

    /// The lease key's entry and whether a lease time has passed since the server stored it.
    async fn live_or_expired(&self, rid: &str) -> Result<Option<(kv::Entry, bool)>, ClusterError> {
        let entry = self.leases.entry(rid).await.map_err(|e| ClusterError::js(format!("KV {} get {rid}", self.names.leases()), e))?;
        let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else { return Ok(None) };
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i128);
        let age_nanos = now - entry.created.unix_timestamp_nanos();
        let expired = age_nanos > self.settings.lease.as_nanos() as i128;
        Ok(Some((entry, expired)))
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

    /// Who holds a repository now (an expired lease is nobody's).
    pub async fn lease_holder(&self, rid: &str) -> Result<Option<String>, ClusterError> {
        let live = self.live_or_expired(rid).await?.filter(|(_, expired)| !expired);
        Ok(live.map(|(e, _)| String::from_utf8_lossy(&e.value).into_owned()))
    }
}
