//! Which adapter versions stay on disk.
//!
//! Never deleted: the adapter any existing ref's state names as current, the one the
//! `current` link points to, and pinned ones. Besides those, each repository keeps its newest
//! `keep_adapters` versions (a protected version among the newest counts towards them). With
//! a disk budget, unprotected versions are evicted across all repositories, least recently
//! used first (last handed to a client, else published), until the versions on record fit.
//! The budget wins over `keep_adapters`: it is a cap, the count is a ceiling. Both yield to
//! the serve grace: a version handed to a client or pushed to a server within the last
//! `grace_secs` stays (servers re-read an adapter they evicted from memory from its path),
//! and a budget pass says when the grace alone holds it over budget.
//!
//! Record updates (pins, query times, deletions) go through one lock, so a version being
//! pinned can never be deleted by a prune that decided before the pin; deleting passes run
//! one at a time.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::Path;
use std::sync::Mutex;

use evolora_model::peft::TEMP_PREFIX;
use evolora_state::{AdapterKey, AdapterRecord, StateError, StateStore};
use tracing::{info, warn};

use super::dirs::{self, dir_bytes};
use super::reaper::Reaper;

/// Query times are written at most this often per adapter (seconds).
const QUERY_WRITE_INTERVAL: u64 = 60;

/// What a retention pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub removed: usize,
    pub freed: u64,
}

/// What a budget pass found and did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BudgetReport {
    pub evicted: usize,
    pub freed: u64,
    /// Bytes of the adapter versions on record after the pass (directories left behind by
    /// `unregister` are not on record).
    pub total: u64,
    /// Bytes that may not be evicted (current and pinned versions).
    pub protected: u64,
    /// Bytes of other versions kept because they were handed out within the grace.
    pub held_by_grace: u64,
}

impl BudgetReport {
    fn log(&self, budget: u64) {
        if self.evicted > 0 {
            info!(evicted = self.evicted, freed = self.freed, total = self.total, budget, "adapter disk budget: evicted least recently queried versions");
        }
        if self.total > budget && self.held_by_grace > 0 {
            warn!(total = self.total, protected = self.protected, held_by_grace = self.held_by_grace, budget, "adapter disk budget exceeded: versions handed out within the serve grace are kept until it ends");
        } else if self.total > budget {
            warn!(total = self.total, protected = self.protected, budget, "adapter disk budget exceeded by current and pinned adapters alone");
        }
    }
}

/// When a pass runs, and how long hand-outs protect a version.
#[derive(Debug, Clone, Copy)]
pub struct Hold {
    pub now: u64,
    pub grace_secs: u64,
}

/// Per version, as this process saw it.
#[derive(Debug, Default, Clone, Copy)]
struct Queried {
    /// The query time last written to the record.
    written: u64,
    /// The last hand-out, exact.
    handed: u64,
}

pub struct Retention {
    /// Guards record rewrites; holds, per (repo key, dir), query times.
    written: Mutex<HashMap<(String, String), Queried>>,
    /// Set when a pass kept a version only for the grace, so that a later sweep frees it.
    held: std::sync::atomic::AtomicBool,
    /// One deleting pass at a time (the model thread's after a publish, the budget thread's
    /// after a start or reload): each counts what is on disk before deciding what to free.
    pass: Mutex<()>,
    /// Frees the blocks of unpublished versions off the publishing path.
    pub(super) reaper: Reaper,
}

/// How a client names an adapter: its directory name, or a commit (a prefix of at least 7
/// hex digits; the newest version at that commit wins).
pub fn find<'a, K>(records: &'a [(K, AdapterRecord)], name: &str) -> Option<&'a (K, AdapterRecord)> {
    if let Some(hit) = records.iter().find(|(_, r)| r.dir == name) {
        return Some(hit);
    }
    let is_hex_prefix = name.len() >= 7 && name.bytes().all(|b| b.is_ascii_hexdigit());
    if !is_hex_prefix {
        return None;
    }
    records.iter().rev().find(|(_, r)| r.commit.starts_with(&name.to_ascii_lowercase()))
}

/// Directory names of a repository that no rule may delete except by unpinning: every
/// ref's current adapter and the target of the `current` link.
fn protected_dirs(store: &StateStore, repo_key: &str, repo_dir: &Path) -> Result<HashSet<String>, StateError> {
    let mut names: HashSet<String> = store.ref_states(repo_key)?.into_iter().filter_map(|s| s.current_adapter).collect();
    if let Some(target) = dirs::current_target(repo_dir).and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())) {
        names.insert(target);
    }
    Ok(names)
}

impl Default for Retention {
    fn default() -> Self {
        // A version kept for the grace by the previous process is not known to this one: the
        // first sweep looks at everything.
        Retention { written: Mutex::default(), held: std::sync::atomic::AtomicBool::new(true), pass: Mutex::default(), reaper: Reaper::default() }
    }
}

impl Retention {
    /// Notes that a client was handed `dir`; persisted at most once a minute per adapter,
    /// without a flush (sled writes it within its flush interval).
    /// Returns false when the version is no longer on record (pruned since the caller
    /// looked), so that the caller looks again rather than hand out a deleted path. Under
    /// the same lock as deletions: once this returns true, the grace protects the version.
    pub fn touch(&self, store: &StateStore, repo_key: &str, dir: &str, now: u64) -> bool {
        let mut written = self.written.lock().expect("retention lock");
        let slot = (repo_key.to_owned(), dir.to_owned());
        // A version written recently is still on record: deleting one drops its entry here,
        // under this lock. So the common case reads no record.
        if let Some(seen) = written.get_mut(&slot)
            && seen.written > 0
            && now < seen.written + QUERY_WRITE_INTERVAL
        {
            seen.handed = seen.handed.max(now);
            return true;
        }
        let Ok(Some((key, mut rec))) = store.adapter_by_dir(repo_key, dir) else {
            return false;
        };
        let seen = written.entry(slot).or_default();
        seen.handed = seen.handed.max(now);
        rec.last_queried = now;
        if store.update_adapter_record(&key, &rec, false).is_ok() {
            seen.written = now;
        }
        true
    }

    /// Whether `rec` was handed out within the grace. This process's own hand-outs count
    /// exactly; before them (after a restart) the record's time plus the write interval
    /// stands in, since a hand-out within that interval of a written one is not written.
    fn in_grace(written: &HashMap<(String, String), Queried>, repo_key: &str, rec: &AdapterRecord, hold: Hold) -> bool {
        if hold.grace_secs == 0 {
            return false;
        }
        let handed = written.get(&(repo_key.to_owned(), rec.dir.clone())).map_or(0, |q| q.handed);
        let last = match (handed, rec.last_queried) {
            (0, 0) => return false,
            // Our first hand-out of a version is always written, so ours are the newest.
            (0, recorded) => recorded + QUERY_WRITE_INTERVAL,
            (ours, _) => ours,
        };
        hold.now < last.saturating_add(hold.grace_secs)
    }

    /// True once since the last call when a pass kept a version only for the grace.
    pub fn take_held(&self) -> bool {
        self.held.swap(false, std::sync::atomic::Ordering::Relaxed)
    }

    /// Pins or unpins the adapter `name` (see [`find`]) of a repository, durably.
    pub fn set_pinned(&self, store: &StateStore, repo_key: &str, name: &str, pinned: bool) -> Result<Option<AdapterRecord>, StateError> {
        let _guard = self.written.lock().expect("retention lock");
        let records = store.adapters(repo_key)?;
        let Some((key, rec)) = find(&records, name) else { return Ok(None) };
        let mut rec = rec.clone();
        rec.pinned = pinned;
        store.update_adapter_record(key, &rec, true)?;
        Ok(Some(rec))
    }

    /// Deletes a repository's versions beyond its newest `keep` (protected ones and those
    /// in their grace excepted).
    pub fn prune(&self, store: &StateStore, repo_key: &str, repo_dir: &Path, keep: usize, hold: Hold) -> Result<Pruned, StateError> {
        let _pass = self.pass.lock().expect("retention pass lock");
        let records = store.adapters(repo_key)?;
        let excess = records.len().saturating_sub(keep);
        let doomed: Vec<String> = records.iter().take(excess).map(|(_, r)| r.dir.clone()).collect();
        self.delete(store, repo_key, repo_dir, &doomed, hold)
    }

    /// Evicts least recently used versions across all repositories until the adapter
    /// directories under `root` fit in `budget` bytes.
    pub fn enforce_budget(&self, store: &StateStore, root: &Path, budget: u64, hold: Hold) -> Result<BudgetReport, StateError> {
        let _pass = self.pass.lock().expect("retention pass lock");
        let mut all = store.all_adapters()?;
        for (repo, key, rec) in all.iter_mut().filter(|(_, _, r)| r.bytes == 0) {
            // Records from before sizes were kept: measure once, remember. Only the size is
            // written back, onto the record as it is now (a pin may have landed meanwhile).
            rec.bytes = dir_bytes(&root.join(repo.as_str()).join(&rec.dir));
            let _guard = self.written.lock().expect("retention lock");
            if let (true, Some((_, mut now))) = (rec.bytes > 0, store.adapter_by_dir(repo, &rec.dir)?) {
                now.bytes = rec.bytes;
                store.update_adapter_record(key, &now, false)?;
            }
        }
        let mut report = BudgetReport { total: all.iter().map(|(_, _, r)| r.bytes).sum(), ..Default::default() };
        if report.total <= budget {
            return Ok(report);
        }
        let mut protected: HashMap<String, HashSet<String>> = HashMap::new();
        for (repo, _, _) in &all {
            if !protected.contains_key(repo) {
                protected.insert(repo.clone(), protected_dirs(store, repo, &root.join(repo.as_str()))?);
            }
        }
        let mut candidates: Vec<&(String, AdapterKey, AdapterRecord)> = Vec::new();
        {
            let written = self.written.lock().expect("retention lock");
            for entry in &all {
                let (repo, _, rec) = entry;
                if rec.pinned || protected[repo].contains(&rec.dir) {
                    report.protected += rec.bytes;
                } else if Self::in_grace(&written, repo, rec, hold) {
                    report.held_by_grace += rec.bytes;
                } else {
                    candidates.push(entry);
                }
            }
        }
        if report.held_by_grace > 0 {
            self.held.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        candidates.sort_by_key(|(_, _, r)| (r.last_used(), r.created_at));
        for (repo, _, rec) in candidates {
            if report.total <= budget {
                break;
            }
            let done = self.delete(store, repo, &root.join(repo.as_str()), std::slice::from_ref(&rec.dir), hold)?;
            report.evicted += done.removed;
            report.freed += done.freed;
            report.total -= done.freed.min(report.total);
        }
        Ok(report)
    }

    /// [`Retention::enforce_budget`], its outcome logged. Returns the bytes on record
    /// afterwards, if the pass completed.
    pub fn apply_budget(&self, store: &StateStore, root: &Path, budget: u64, hold: Hold, metrics: &crate::metrics::Metrics) -> Option<u64> {
        match self.enforce_budget(store, root, budget, hold) {
            Ok(report) => {
                metrics.pruned.inc_by(report.evicted as u64);
                report.log(budget);
                Some(report.total)
            }
            Err(e) => {
                warn!(error = %e, "adapter disk budget not enforced");
                None
            }
        }
    }

    /// Deletes the named versions of one repository unless protected or pinned at the moment
    /// of deletion. A directory is renamed away before its record goes, so a crash never
    /// leaves a half-deleted directory under a published name; the renamed directory is
    /// deleted by the reaper thread, and remains are swept at start.
    fn delete(&self, store: &StateStore, repo_key: &str, repo_dir: &Path, dirs: &[String], hold: Hold) -> Result<Pruned, StateError> {
        let mut out = Pruned::default();
        if dirs.is_empty() {
            return Ok(out);
        }
        let protected = protected_dirs(store, repo_key, repo_dir)?;
        let mut renamed = Vec::new();
        {
            let mut written = self.written.lock().expect("retention lock");
            for name in dirs {
                let Some((key, rec)) = store.adapter_by_dir(repo_key, name)? else { continue };
                if rec.pinned || protected.contains(name) {
                    continue;
                }
                if Self::in_grace(&written, repo_key, &rec, hold) {
                    self.held.store(true, std::sync::atomic::Ordering::Relaxed);
                    continue;
                }
                let dir = repo_dir.join(name);
                let bytes = if rec.bytes > 0 { rec.bytes } else { dir_bytes(&dir) };
                let doomed = repo_dir.join(format!("{TEMP_PREFIX}pruned-{name}"));
                // Remains of an earlier interrupted deletion would block the rename.
                let _ = fs::remove_dir_all(&doomed);
                match fs::rename(&dir, &doomed) {
                    Ok(()) => renamed.push(doomed),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        warn!(repo = %repo_key, version = %name, error = %e, "cannot delete an adapter version");
                        continue;
                    }
                }
                store.remove_adapter_record(&key)?;
                written.remove(&(repo_key.to_owned(), name.clone()));
                out.removed += 1;
                out.freed += bytes;
            }
        }
        if out.removed > 0 {
            store.flush()?;
        }
        for doomed in renamed {
            self.reaper.remove(doomed);
        }
        Ok(out)
    }

}

/// Makes the records of each registered repository agree with its adapter folder: drops
/// records whose directory is gone (a kill between unpublishing a version and forgetting
/// it), records complete directories that have none (a kill between publishing a directory
/// and recording it; `current` may already point there). Run at start, before anything else
/// writes records. Returns (dropped, adopted).
pub fn reconcile(store: &StateStore, root: &Path) -> Result<(usize, usize), StateError> {
    if !root.is_dir() {
        // Nothing published yet, or the folder is not there at all (an unmounted disk):
        // forgetting every version would be wrong either way.
        return Ok((0, 0));
    }
    let (mut dropped, mut adopted) = (0, 0);
    for repo in store.repos()? {
        let repo_dir = root.join(&repo.key);
        let records = store.adapters(&repo.key)?;
        for (key, rec) in &records {
            if !repo_dir.join(&rec.dir).is_dir() {
                store.remove_adapter_record(key)?;
                dropped += 1;
            }
        }
        for version in dirs::published(&repo_dir) {
            if !records.iter().any(|(_, r)| r.dir == version.name) {
                let record = version.record(&repo_dir);
                // Its name was issued, whether or not the count reached the disk.
                if let Some(index) = dirs::name_index(&version.name, &record.commit) {
                    store.set_issued_names(&repo.key, &record.commit, index + 1)?;
                }
                store.insert_adapter_record(&repo.key, &record)?;
                adopted += 1;
            }
        }
    }
    if dropped + adopted > 0 {
        store.flush()?;
    }
    Ok((dropped, adopted))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn rec(dir: &str, commit: &str) -> ((), AdapterRecord) {
        let r = AdapterRecord {
            refname: "refs/heads/main".into(),
            commit: commit.into(),
            dir: dir.into(),
            trigger: "t".into(),
            created_at: 0,
            pinned: false,
            steps: 0,
            bytes: 0,
            last_queried: 0,
        };
        ((), r)
    }

    #[test]
    fn reconcile_drops_records_without_directories_and_adopts_directories_without_records() {
        let tmp = tempfile::tempdir().unwrap();
        let store = StateStore::open(&tmp.path().join("db")).unwrap();
        let root = tmp.path().join("adapters");
        let repo = evolora_state::RepoRecord {
            key: "r-1".into(),
            git_dir: "/nowhere/.git".into(),
            work_dir: None,
            bare: false,
            tracked_refs: Vec::new(),
            registered_at: 0,
        };
        store.put_repo(&repo).unwrap();
        let complete = |name: &str| {
            let d = root.join("r-1").join(name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("adapter_model.safetensors"), b"x").unwrap();
            std::fs::write(d.join("adapter_config.json"), b"{}").unwrap();
            std::fs::write(d.join("evolora.json"), br#"{"ref":"refs/heads/main","commit":"abc","steps":4,"created_at":9}"#).unwrap();
        };
        complete("kept");
        complete("unrecorded");
        // Published under its issued name, killed before the count reached the disk.
        complete("abc.2");
        store.insert_adapter_record("r-1", &AdapterRecord::published("refs/heads/main", "k", "kept", "t", 1, 3, 1)).unwrap();
        store.insert_adapter_record("r-1", &AdapterRecord::published("refs/heads/main", "g", "gone", "t", 1, 3, 1)).unwrap();
        assert_eq!(reconcile(&store, &root).unwrap(), (1, 2));
        let dirs: BTreeSet<String> = store.adapters("r-1").unwrap().into_iter().map(|(_, r)| r.dir).collect();
        assert_eq!(dirs, BTreeSet::from(["kept".to_owned(), "unrecorded".to_owned(), "abc.2".to_owned()]));
        assert_eq!(store.issued_names("r-1", "abc").unwrap(), 3, "an adopted directory's name stays issued");
        assert_eq!((dirs::name_index("abc", "abc"), dirs::name_index("abc.7", "abc"), dirs::name_index("abcd", "abc")), (Some(0), Some(7), None));
        let adopted = store.adapter_by_dir("r-1", "unrecorded").unwrap().unwrap().1;
        assert_eq!((adopted.commit.as_str(), adopted.steps, adopted.created_at), ("abc", 4, 9));
        assert_eq!(reconcile(&store, &root).unwrap(), (0, 0), "a second pass finds nothing to do");
    }

    #[test]
    fn the_grace_counts_from_the_last_hand_out_and_errs_long_after_a_restart() {
        let hold = |now| Hold { now, grace_secs: 100 };
        let mut seen = HashMap::new();
        let (_, mut r) = rec("v", "c");
        assert!(!Retention::in_grace(&seen, "k", &r, hold(1)), "never handed out");
        // Only the record, as after a restart: it may lag the last hand-out by the write
        // interval, so the grace is stretched by it.
        r.last_queried = 1000;
        assert!(Retention::in_grace(&seen, "k", &r, hold(1000 + 100 + QUERY_WRITE_INTERVAL - 1)));
        assert!(!Retention::in_grace(&seen, "k", &r, hold(1000 + 100 + QUERY_WRITE_INTERVAL)));
        // This process's hand-outs are exact.
        seen.insert(("k".to_owned(), "v".to_owned()), Queried { written: 1000, handed: 1010 });
        assert!(Retention::in_grace(&seen, "k", &r, hold(1109)));
        assert!(!Retention::in_grace(&seen, "k", &r, hold(1110)));
        assert!(!Retention::in_grace(&seen, "other", &rec("v", "c").1, hold(1010)), "per repository");
        assert!(!Retention::in_grace(&seen, "k", &r, Hold { now: 1010, grace_secs: 0 }), "no grace configured");
    }

    #[test]
    fn adapters_are_found_by_dir_or_commit_prefix() {
        let a = "a1b2c3d4".repeat(5);
        let records = vec![rec(&a, &a), rec(&format!("{a}.1"), &a), rec("ffff", "ffff")];
        assert_eq!(find(&records, &a).unwrap().1.dir, a);
        assert_eq!(find(&records, "A1B2C3D").unwrap().1.dir, format!("{a}.1"), "newest at that commit");
        assert!(find(&records, "a1b2c3").is_none(), "prefixes shorter than 7 are not commits");
        assert!(find(&records, "current").is_none());
    }
}
