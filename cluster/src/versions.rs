//! Which adapter versions the cluster keeps: one record per repository in the KV bucket
//! `<p>_versions` listing its versions in the object store, each with its pin and the last
//! time a node handed it out. Every change (a new version, a pin, a hand-out, a prune) is a
//! compare-and-set on the record's revision, so a pin can never be lost to a prune that
//! decided before it: the prune's write fails and it decides again.
//!
//! The rules are the single daemon's: never removed are a version some ref's state names and
//! pinned ones; besides those each repository keeps its newest `keep` versions; and a version
//! handed out within the serve grace stays until the grace ends. A pruned version leaves the
//! record first and the object store second, so no node is ever told about a version whose
//! files are going.

use std::collections::HashSet;

use async_nats::jetstream::kv;
use serde::{Deserialize, Serialize};

use crate::{AdapterPointer, Cluster, ClusterError};

/// One version of a repository's adapter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionEntry {
    pub refname: String,
    pub pointer: AdapterPointer,
    #[serde(default)]
    pub pinned: bool,
    /// Unix seconds of the last hand-out to a client on any node (written at most once a
    /// minute per node), 0 if never.
    #[serde(default)]
    pub served_at: u64,
}

/// A repository's versions, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versions {
    pub list: Vec<VersionEntry>,
}

impl Versions {
    fn from_json(bytes: &[u8]) -> Result<Self, ClusterError> {
        serde_json::from_slice(bytes).map_err(|e| ClusterError::Record { what: "version list".into(), message: e.to_string() })
    }

    /// A version by its name, or by a commit (a prefix of at least 7 hex digits; the newest
    /// version at that commit wins).
    pub fn find(&self, name: &str) -> Option<&VersionEntry> {
        if let Some(hit) = self.list.iter().find(|v| v.pointer.name == name) {
            return Some(hit);
        }
        let hex = name.len() >= 7 && name.bytes().all(|b| b.is_ascii_hexdigit());
        let name = name.to_ascii_lowercase();
        hex.then(|| self.list.iter().rev().find(|v| v.pointer.commit.starts_with(&name))).flatten()
    }

    /// The versions the rules let go, oldest first, given the names some state points at.
    pub fn prunable(&self, keep: usize, grace_secs: u64, now: u64, current: &HashSet<String>) -> Vec<VersionEntry> {
        let mut newest_first: Vec<&VersionEntry> = self.list.iter().collect();
        newest_first.sort_by_key(|v| std::cmp::Reverse(v.pointer.published_at));
        newest_first
            .into_iter()
            .skip(keep)
            .filter(|v| !v.pinned && !current.contains(&v.pointer.name) && v.served_at.saturating_add(grace_secs) <= now)
            .rev()
            .cloned()
            .collect()
    }
}

/// What a retention pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    pub removed: Vec<String>,
    pub freed: u64,
}

impl Cluster {
    /// A repository's versions (empty when none was ever recorded), with the revision a
    /// change must expect.
    pub async fn versions(&self, rid: &str) -> Result<(Versions, Option<u64>), ClusterError> {
        let entry = self.versions.entry(rid).await.map_err(|e| ClusterError::js(format!("KV {} get {rid}", self.names.versions()), e))?;
        match entry.filter(|e| e.operation == kv::Operation::Put) {
            Some(e) => Ok((Versions::from_json(&e.value)?, Some(e.revision))),
            None => Ok((Versions::default(), None)),
        }
    }

    /// Applies `change` to the record by compare-and-set, reading again after a lost race.
    /// `change` returns whether it changed anything; the record after it is returned.
    async fn change_versions<T>(&self, rid: &str, mut change: impl FnMut(&mut Versions) -> (bool, T)) -> Result<(Versions, T), ClusterError> {
        let what = || format!("KV {} write {rid}", self.names.versions());
        loop {
            let (mut versions, revision) = self.versions(rid).await?;
            let (changed, out) = change(&mut versions);
            if !changed {
                return Ok((versions, out));
            }
            let value = serde_json::to_vec(&versions).expect("a version list serialises").into();
            let written = match revision {
                None => self.versions.create(rid, value).await.map(|_| ()).map_err(|e| (e.kind() == kv::CreateErrorKind::AlreadyExists, ClusterError::js(what(), e))),
                Some(r) => self.versions.update(rid, value, r).await.map(|_| ()).map_err(|e| (e.kind() == kv::UpdateErrorKind::WrongLastRevision, ClusterError::js(what(), e))),
            };
            match written {
                Ok(()) => return Ok((versions, out)),
                Err((true, _)) => continue,
                Err((false, e)) => return Err(e),
            }
        }
    }

    /// Records a version just uploaded (once: the same version made twice is one entry).
    pub async fn record_version(&self, rid: &str, refname: &str, pointer: &AdapterPointer) -> Result<(), ClusterError> {
        self.change_versions(rid, |v| {
            if v.list.iter().any(|e| e.pointer.name == pointer.name) {
                return (false, ());
            }
            v.list.push(VersionEntry { refname: refname.to_owned(), pointer: pointer.clone(), pinned: false, served_at: 0 });
            (true, ())
        })
        .await
        .map(|_| ())
    }

    /// Pins or unpins the version `name` names; `None` when there is no such version.
    pub async fn set_pinned(&self, rid: &str, name: &str, pinned: bool) -> Result<Option<VersionEntry>, ClusterError> {
        let (_, found) = self
            .change_versions(rid, |v| {
                let Some(target) = v.find(name).map(|e| e.pointer.name.clone()) else { return (false, None) };
                let entry = v.list.iter_mut().find(|e| e.pointer.name == target).expect("just found");
                let changed = entry.pinned != pinned;
                entry.pinned = pinned;
                (changed, Some(entry.clone()))
            })
            .await?;
        Ok(found)
    }

    /// Notes that a node handed `version` to a client at `now`. `false` when the version is
    /// no longer on record (pruned meanwhile): the caller must not hand it out.
    pub async fn touch_version(&self, rid: &str, version: &str, now: u64) -> Result<bool, ClusterError> {
        let (_, present) = self
            .change_versions(rid, |v| match v.list.iter_mut().find(|e| e.pointer.name == version) {
                Some(e) => {
                    let changed = e.served_at < now;
                    e.served_at = e.served_at.max(now);
                    (changed, true)
                }
                None => (false, false),
            })
            .await?;
        Ok(present)
    }

    /// Applies the retention rules to one repository: drops what they let go from the record,
    /// then deletes those versions' objects.
    pub async fn prune_versions(&self, rid: &str, keep: usize, grace_secs: u64, now: u64) -> Result<Pruned, ClusterError> {
        let current: HashSet<String> = self.states_of(rid).await?.into_iter().filter_map(|s| s.record.adapter.map(|a| a.name)).collect();
        let (_, gone) = self
            .change_versions(rid, |v| {
                let gone = v.prunable(keep, grace_secs, now, &current);
                v.list.retain(|e| !gone.iter().any(|g| g.pointer.name == e.pointer.name));
                (!gone.is_empty(), gone)
            })
            .await?;
        let mut pruned = Pruned::default();
        for entry in gone {
            self.delete_adapter(rid, &entry.pointer).await?;
            pruned.freed += entry.pointer.files.iter().map(|f| f.size).sum::<u64>();
            pruned.removed.push(entry.pointer.name);
        }
        Ok(pruned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, commit: &str, at: u64) -> VersionEntry {
        VersionEntry { refname: "refs/heads/main".into(), pointer: AdapterPointer { name: name.into(), commit: commit.into(), files: vec![], published_at: at }, pinned: false, served_at: 0 }
    }

    #[test]
    fn the_rules_keep_the_newest_the_current_the_pinned_and_the_recently_served() {
        let mut v = Versions { list: (1..=6).map(|i| entry(&format!("v{i}"), &format!("c{i}aaaaaaa"), i * 100)).collect() };
        v.list[0].pinned = true; // v1
        v.list[1].served_at = 950; // v2, within a 100 s grace at 1000
        v.list[2].served_at = 850; // v3, past it
        let current: HashSet<String> = ["v4".to_owned()].into();
        let gone: Vec<String> = v.prunable(2, 100, 1000, &current).into_iter().map(|e| e.pointer.name).collect();
        assert_eq!(gone, vec!["v3".to_owned()], "v6 and v5 are the newest two; v4 current; v2 served lately; v1 pinned");
        assert!(v.prunable(10, 100, 1000, &current).is_empty());
    }

    #[test]
    fn versions_are_found_by_name_or_commit_prefix() {
        let v = Versions { list: vec![entry("c1aaaaaaa-1", "c1aaaaaaa", 1), entry("c1aaaaaaa-2", "c1aaaaaaa", 2)] };
        assert_eq!(v.find("c1aaaaaaa-1").unwrap().pointer.name, "c1aaaaaaa-1");
        assert_eq!(v.find("C1AAAAA").unwrap().pointer.name, "c1aaaaaaa-2", "newest at the commit");
        assert!(v.find("c1a").is_none(), "too short to be a commit");
    }
}
