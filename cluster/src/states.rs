//! Ref states, advanced only by compare-and-set: a worker reads a state with its revision,
//! walks, and writes the result expecting that revision. If another worker advanced it
//! meanwhile, the write is refused and the result dropped, so no step is ever applied twice.

use async_nats::jetstream::kv;
use futures_util::TryStreamExt;

use crate::{Cluster, ClusterError, StateRecord, names};

/// A state as read, with the revision a write must expect.
#[derive(Debug, Clone)]
pub struct Stored {
    pub record: StateRecord,
    pub revision: u64,
}

/// What a compare-and-set did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Stored under this new revision.
    Applied(u64),
    /// Refused: the state is no longer at the expected revision.
    Conflict,
}

impl Cluster {
    pub async fn state(&self, rid: &str, refname: &str) -> Result<Option<Stored>, ClusterError> {
        let key = names::state_key(rid, refname);
        let entry = self.states.entry(&key).await.map_err(|e| ClusterError::js(format!("KV {} get {key}", self.names.states()), e))?;
        match entry {
            Some(e) if e.operation == kv::Operation::Put => Ok(Some(Stored { record: StateRecord::from_bytes(&e.value)?, revision: e.revision })),
            _ => Ok(None),
        }
    }

    /// Writes `record` if the stored state is still at `expected` (`None`: there is none).
    pub async fn write_state(&self, record: &StateRecord, expected: Option<u64>) -> Result<Written, ClusterError> {
        let key = names::state_key(&record.rid, &record.refname);
        let what = || format!("KV {} write {key}", self.names.states());
        let value = record.to_bytes().into();
        match expected {
            None => match self.states.create(&key, value).await {
                Ok(rev) => Ok(Written::Applied(rev)),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(Written::Conflict),
                Err(e) => Err(ClusterError::js(what(), e)),
            },
            Some(revision) => match self.states.update(&key, value, revision).await {
                Ok(rev) => Ok(Written::Applied(rev)),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(Written::Conflict),
                Err(e) => Err(ClusterError::js(what(), e)),
            },
        }
    }

    /// Removes a ref's state if it is still at `revision` (`false`: it changed meanwhile).
    pub async fn delete_state(&self, rid: &str, refname: &str, revision: u64) -> Result<bool, ClusterError> {
        let key = names::state_key(rid, refname);
        match self.states.delete_expect_revision(&key, Some(revision)).await {
            Ok(()) => Ok(true),
            Err(e) if e.to_string().contains("wrong last sequence") => Ok(false),
            Err(e) => Err(ClusterError::js(format!("KV {} delete {key}", self.names.states()), e)),
        }
    }

    /// The stored states of one repository's refs, found by the server's subject index (the
    /// bucket's keys are `<rid>.<ref id>`), not by listing every key.
    pub async fn states_of(&self, rid: &str) -> Result<Vec<Stored>, ClusterError> {
        let what = || format!("KV {} keys of {rid}", self.names.states());
        let subjects: Vec<(String, usize)> = self.states.stream.info_with_subjects(format!("{}{rid}.>", self.states.prefix)).await.map_err(|e| ClusterError::js(what(), e))?.try_collect().await.map_err(|e| ClusterError::js(what(), e))?;
        let keys = subjects.into_iter().filter_map(|(subject, _)| subject.strip_prefix(&self.states.prefix).map(str::to_owned)).collect();
        self.read_states(keys).await
    }

    /// Every stored state (for `cluster status` and tests), in key order.
    pub async fn states(&self) -> Result<Vec<Stored>, ClusterError> {
        let what = || format!("KV {} keys", self.names.states());
        let keys = self.states.keys().await.map_err(|e| ClusterError::js(what(), e))?.try_collect().await.map_err(|e| ClusterError::js(what(), e))?;
        self.read_states(keys).await
    }

    /// The states under `keys` still present, in key order.
    async fn read_states(&self, mut keys: Vec<String>) -> Result<Vec<Stored>, ClusterError> {
        keys.sort();
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let entry = self.states.entry(&key).await.map_err(|e| ClusterError::js(format!("KV {} get {key}", self.names.states()), e))?;
            if let Some(e) = entry.filter(|e| e.operation == kv::Operation::Put) {
                out.push(Stored { record: StateRecord::from_bytes(&e.value)?, revision: e.revision });
            }
        }
        Ok(out)
    }
}
