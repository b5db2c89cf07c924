//! What the cluster stores. Wake-ups and worker heartbeats are JSON (small, and readable with
//! the `nats` CLI); a state is a versioned bincode-2 envelope like the single daemon's sled
//! values, since its vector must come back bit for bit.

use serde::{Deserialize, Serialize};

use crate::ClusterError;

/// A ref and the commit it points to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefTip {
    pub name: String,
    pub tip: String,
}

/// "This repository's refs moved": published by an edge on every wake-up of a repository,
/// idempotent and coalesced (the stream keeps the newest per repository).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WakeUp {
    /// Cluster id ([`crate::names::repo_id`]).
    pub rid: String,
    /// The edge that saw it, and its key for the repository.
    pub edge: String,
    pub repo_key: String,
    /// Where a worker fetches the repository from (any URL `git fetch` takes).
    pub url: String,
    /// The refs the edge follows for it, with their tips at the time.
    pub refs: Vec<RefTip>,
    /// Unix seconds.
    pub at: u64,
    /// Which move of the refs this is, as the edge counts: the same tips published again
    /// (a hook and the watcher reporting one push) keep it, a move to other tips takes a new
    /// one. So a return to earlier tips (A → B → A) is a new wake-up, not a duplicate.
    #[serde(default)]
    pub generation: u64,
}

impl WakeUp {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a wake-up serialises")
    }
    pub fn from_json(bytes: &[u8]) -> Result<Self, ClusterError> {
        serde_json::from_slice(bytes).map_err(|e| ClusterError::Record { what: "wake-up".into(), message: e.to_string() })
    }
    /// A digest of the refs and their tips.
    pub fn tips_digest(&self) -> String {
        let mut text = self.rid.clone();
        for r in &self.refs {
            text.push('\n');
            text.push_str(&r.name);
            text.push(' ');
            text.push_str(&r.tip);
        }
        crate::names::sha256_hex(text.as_bytes())[..16].to_owned()
    }

    /// The message id JetStream deduplicates on: the same move of a repository's refs is one
    /// wake-up however many hooks and watchers reported it.
    pub fn dedup_id(&self) -> String {
        format!("{}:{}:{}", self.rid, self.tips_digest(), self.generation)
    }
}

/// One file of an adapter version in the object store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdapterFile {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// Where an adapter version lives: every file is in the object store before a pointer to it
/// is written, so a pointer never names an incomplete version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdapterPointer {
    /// [`crate::names::version_name`]; the objects are `<rid>/<name>/<file>`.
    pub name: String,
    /// The commit it was generated at.
    pub commit: String,
    pub files: Vec<AdapterFile>,
    /// Unix seconds.
    pub published_at: u64,
}

impl AdapterPointer {
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// A ref's state in the cluster, the KV value behind [`crate::names::state_key`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateRecord {
    pub rid: String,
    pub edge: String,
    pub repo_key: String,
    pub refname: String,
    /// The newest commit folded in (empty before the origin's own step).
    pub last_commit: String,
    pub walked: u64,
    /// sha256 of the vector's little-endian bytes, as `evolora status` shows it.
    pub vector_sha256: String,
    /// The state crate's own encoding of the ref state (opaque here).
    pub state: Vec<u8>,
    /// The ref's restore points in the same encoding, oldest first, so that whichever worker
    /// walks next can go back to one when the ref is rewritten.
    pub restore_points: Vec<Vec<u8>>,
    /// The ref's current adapter version, if one was published.
    pub adapter: Option<AdapterPointer>,
    /// Whether the model that made it was trained (an untrained one is served with a warning).
    pub trained: bool,
    /// The worker that wrote this revision.
    pub worker: String,
    /// Unix seconds.
    pub updated_at: u64,
}

#[derive(Serialize, Deserialize)]
enum StateEnvelope {
    V1(StateRecord),
}

impl StateRecord {
    pub fn to_bytes(&self) -> Vec<u8> {
        bincode::serde::encode_to_vec(StateEnvelope::V1(self.clone()), bincode::config::standard()).expect("a state record serialises")
    }
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ClusterError> {
        let (envelope, _): (StateEnvelope, usize) = bincode::serde::decode_from_slice(bytes, bincode::config::standard())
            .map_err(|e| ClusterError::Record { what: "state".into(), message: e.to_string() })?;
        match envelope {
            StateEnvelope::V1(r) => Ok(r),
        }
    }
}

/// A worker's heartbeat, so `cluster status` can list the pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerBeat {
    pub worker: String,
    pub host: String,
    pub pid: u32,
    pub device: String,
    pub started_at: u64,
    pub beat_at: u64,
    /// The repository it is working on, if any.
    pub busy: Option<String>,
    /// Jobs finished since it started.
    pub jobs: u64,
    /// Steps it applied that a compare-and-set then refused (another worker got there first).
    pub discarded: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_records_round_trip_bit_for_bit() {
        let rec = StateRecord {
            rid: "e-0123".into(),
            edge: "e".into(),
            repo_key: "r-1".into(),
            refname: "refs/heads/main".into(),
            last_commit: "ab".repeat(20),
            walked: 7,
            vector_sha256: "00".into(),
            state: vec![0, 255, 7, 1],
            restore_points: vec![vec![4, 5], vec![6]],
            adapter: Some(AdapterPointer { name: "n".into(), commit: "c".into(), files: vec![AdapterFile { name: "a".into(), size: 3, sha256: "s".into() }], published_at: 5 }),
            trained: true,
            worker: "w".into(),
            updated_at: 9,
        };
        assert_eq!(StateRecord::from_bytes(&rec.to_bytes()).unwrap(), rec);
        assert!(StateRecord::from_bytes(b"\x07garbage").is_err());
    }

    #[test]
    fn dedup_ids_follow_the_tips() {
        let mut w = WakeUp { rid: "e-1".into(), edge: "e".into(), repo_key: "k".into(), url: "/x".into(), refs: vec![RefTip { name: "refs/heads/main".into(), tip: "a".into() }], at: 1, generation: 7 };
        let first = w.dedup_id();
        w.at = 2;
        assert_eq!(w.dedup_id(), first, "the time is not part of the identity");
        w.refs[0].tip = "b".into();
        assert_ne!(w.dedup_id(), first);
        w.refs[0].tip = "a".into();
        w.generation = 9;
        assert_ne!(w.dedup_id(), first, "back at earlier tips is another move");
    }
}
