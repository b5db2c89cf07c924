use std::path::{Path, PathBuf};

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use crate::{AdapterRecord, RefState, RepoRecord, StateError};

/// Version of the layout described in the crate docs. 2: adapter records carry their size
/// and last query time. 3: repository records lose their unused trigger-override field.
/// Older records still read; an older binary refuses a newer database by name.
pub const SCHEMA_VERSION: u32 = 3;
const SCHEMA_KEY: &[u8] = b"schema_version";

/// The daemon's handle on its database. Cheap to clone; all clones share one sled `Db`,
/// which must stay alive for the life of the process (its background flusher stops with it).
#[derive(Clone)]
pub struct StateStore {
    path: PathBuf,
    db: sled::Db,
    repos: sled::Tree,
    refs: sled::Tree,
    adapters: sled::Tree,
    /// Restore points: exact earlier states of each ref, keyed by ref then commits walked.
    restore: sled::Tree,
    /// How many adapter version names were issued per (repository, commit).
    issued: sled::Tree,
    /// Our own lock on the directory, held while any clone lives (see [`lock_dir`]).
    _lock: std::sync::Arc<std::fs::File>,
}

/// Where one adapter record is stored. Opaque: handed out with a record and handed back to
/// update or remove that record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AdapterKey(Vec<u8>);

fn ref_key(repo: &str, refname: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(repo.len() + refname.len() + 1);
    k.extend_from_slice(repo.as_bytes());
    k.push(0);
    k.extend_from_slice(refname.as_bytes());
    k
}

fn repo_prefix(repo: &str) -> Vec<u8> {
    let mut k = repo.as_bytes().to_vec();
    k.push(0);
    k
}

/// A ref's restore points share this prefix; the walked count (u64 BE) follows, so a scan
/// returns them oldest first.
fn restore_prefix(repo: &str, refname: &str) -> Vec<u8> {
    let mut k = ref_key(repo, refname);
    k.push(0);
    k
}

fn tx_error(e: TransactionError<StateError>) -> StateError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => StateError::Sled(e),
    }
}

impl StateStore {
    /// Opens (or creates) the database in `dir`. A second process on the same directory gets
    /// [`StateError::Locked`]; unreadable files [`StateError::Corrupt`]; a database written by
    /// a newer schema [`StateError::FutureSchema`].
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        std::fs::create_dir_all(dir).map_err(|e| StateError::Corrupt { path: dir.into(), reason: e.to_string() })?;
        // sled treats an unreadable log as a torn tail and opens what precedes it, which for a
        // garbled file is nothing: an existing database that comes back without its schema
        // version was lost, and must not be mistaken for a new one.
        // The marker is written only after the schema version is durable, so a crash during
        // creation is not mistaken for corruption.
        let lock = lock_dir(dir)?;
        let marker = dir.join("evolora-schema");
        let existed = marker.exists();
        let db = sled::Config::new().path(dir).flush_every_ms(Some(500)).open().map_err(|e| classify(dir, e))?;
        let meta = db.open_tree("meta")?;
        match meta.get(SCHEMA_KEY)? {
            None if existed => {
                return Err(StateError::Corrupt { path: dir.into(), reason: "the database has no schema version (its log is unreadable or it was not written by evolora)".into() });
            }
            None => {
                meta.insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())?;
                db.flush()?;
                std::fs::write(&marker, format!("{SCHEMA_VERSION}\n"))
                    .map_err(|e| StateError::Corrupt { path: marker.clone(), reason: e.to_string() })?;
            }
            Some(v) => {
                let found = <[u8; 4]>::try_from(v.as_ref())
                    .map(u32::from_be_bytes)
                    .map_err(|_| StateError::Corrupt { path: dir.into(), reason: "bad schema_version".into() })?;
                if found > SCHEMA_VERSION {
                    return Err(StateError::FutureSchema { path: dir.into(), found, supported: SCHEMA_VERSION });
                }
                if found < SCHEMA_VERSION {
                    // Older records convert on read; from now on newer ones are written.
                    meta.insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())?;
                    db.flush()?;
                }
            }
        }
        Ok(StateStore {
            path: dir.into(),
            repos: db.open_tree("repos")?,
            refs: db.open_tree("refs")?,
            adapters: db.open_tree("adapters")?,
            restore: db.open_tree("restore_points")?,
            issued: db.open_tree("issued_names")?,
            db,
            _lock: std::sync::Arc::new(lock),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when the last process did not shut down cleanly.
    pub fn was_recovered(&self) -> bool {
        self.db.was_recovered()
    }

    pub fn flush(&self) -> Result<(), StateError> {
        self.db.flush()?;
        Ok(())
    }

    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    pub fn put_repo(&self, repo: &RepoRecord) -> Result<(), StateError> {
        self.repos.insert(repo.key.as_bytes(), repo.to_bytes())?;
        self.flush()
    }

    pub fn repo(&self, key: &str) -> Result<Option<RepoRecord>, StateError> {
        self.repos.get(key.as_bytes())?.map(|v| RepoRecord::from_bytes(&v)).transpose()
    }

    pub fn repos(&self) -> Result<Vec<RepoRecord>, StateError> {
        self.repos.iter().values().map(|v| RepoRecord::from_bytes(&v?)).collect()
    }

    /// Removes a repository with its ref states and adapter records.
    pub fn remove_repo(&self, key: &str) -> Result<(), StateError> {
        let prefix = repo_prefix(key);
        let ref_keys: Vec<_> = self.refs.scan_prefix(&prefix).keys().collect::<Result<_, _>>()?;
        let adapter_keys: Vec<_> = self.adapters.scan_prefix(&prefix).keys().collect::<Result<_, _>>()?;
        let restore_keys: Vec<_> = self.restore.scan_prefix(&prefix).keys().collect::<Result<_, _>>()?;
        (&self.repos, &self.refs, &self.adapters, &self.restore)
            .transaction(|(repos, refs, adapters, restore)| {
                repos.remove(key.as_bytes())?;
                for k in &ref_keys {
                    refs.remove(k.clone())?;
                }
                for k in &adapter_keys {
                    adapters.remove(k.clone())?;
                }
                for k in &restore_keys {
                    restore.remove(k.clone())?;
                }
                Ok::<_, ConflictableTransactionError<StateError>>(())
            })
            .map_err(tx_error)?;
        self.flush()
    }

    /// How many version names were issued for adapters of `repo` at `commit` (0: none).
    pub fn issued_names(&self, repo: &str, commit: &str) -> Result<u32, StateError> {
        let v = self.issued.get(ref_key(repo, commit))?;
        Ok(v.and_then(|b| <[u8; 4]>::try_from(b.as_ref()).ok()).map_or(0, u32::from_be_bytes))
    }

    /// Records that `count` names were issued at `commit` (never lowers the count). Not
    /// flushed: the publish that hands the name out flushes it with its record, and a
    /// directory left by a crash before that is adopted at start-up, which records its name
    /// again ([`StateStore::set_issued_names`] from the directory's name).
    pub fn set_issued_names(&self, repo: &str, commit: &str, count: u32) -> Result<(), StateError> {
        if self.issued_names(repo, commit)? < count {
            self.issued.insert(ref_key(repo, commit), &count.to_be_bytes())?;
        }
        Ok(())
    }

    /// Copies every issued-name count of `other` that exceeds this store's (after a
    /// rebuild: names the old database issued stay used). Returns how many were copied.
    pub fn import_issued_names(&self, other: &StateStore) -> Result<usize, StateError> {
        let mut copied = 0;
        for kv in other.issued.iter() {
            let (k, v) = kv?;
            let theirs = <[u8; 4]>::try_from(v.as_ref()).map(u32::from_be_bytes).unwrap_or(0);
            let ours = self.issued.get(&k)?.and_then(|b| <[u8; 4]>::try_from(b.as_ref()).ok()).map_or(0, u32::from_be_bytes);
            if theirs > ours {
                self.issued.insert(k, &theirs.to_be_bytes())?;
                copied += 1;
            }
        }
        self.flush()?;
        Ok(copied)
    }

    pub fn ref_state(&self, repo: &str, refname: &str) -> Result<Option<RefState>, StateError> {
        self.refs.get(ref_key(repo, refname))?.map(|v| RefState::from_bytes(&v)).transpose()
    }

    pub fn ref_states(&self, repo: &str) -> Result<Vec<RefState>, StateError> {
        self.refs.scan_prefix(repo_prefix(repo)).values().map(|v| RefState::from_bytes(&v?)).collect()
    }

    /// The refs of a repository that have a state, read from the keys alone.
    pub fn ref_names(&self, repo: &str) -> Result<Vec<String>, StateError> {
        let prefix = repo_prefix(repo);
        self.refs
            .scan_prefix(&prefix)
            .keys()
            .map(|k| Ok(String::from_utf8_lossy(&k?[prefix.len()..]).into_owned()))
            .collect()
    }

    /// Forgets one ref's state (the ref was deleted); its adapter records stay.
    pub fn remove_ref_state(&self, repo: &str, refname: &str) -> Result<(), StateError> {
        self.refs.remove(ref_key(repo, refname))?;
        self.clear_restore_points(repo, refname)?;
        self.flush()
    }

    /// Keeps `state` as a restore point of its ref (replacing one at the same walked count),
    /// then thins the ref's points to at most `keep` (see [`thin`]). Durable with the next
    /// flush: a point is an exact earlier state, so losing the newest one in a crash costs
    /// only a longer re-walk.
    pub fn put_restore_point(&self, repo: &str, state: &RefState, keep: usize) -> Result<(), StateError> {
        let prefix = restore_prefix(repo, &state.refname);
        let mut key = prefix.clone();
        key.extend_from_slice(&state.walked.to_be_bytes());
        self.restore.insert(key, state.to_bytes())?;
        let walked: Vec<u64> = self
            .restore
            .scan_prefix(&prefix)
            .keys()
            .map(|k| k.map(|k| walked_of(&k, prefix.len())))
            .collect::<Result<_, _>>()?;
        for w in thin(&walked, keep) {
            let mut k = prefix.clone();
            k.extend_from_slice(&w.to_be_bytes());
            self.restore.remove(k)?;
        }
        Ok(())
    }

    /// A ref's restore points, oldest first.
    pub fn restore_points(&self, repo: &str, refname: &str) -> Result<Vec<RefState>, StateError> {
        self.restore.scan_prefix(restore_prefix(repo, refname)).values().map(|v| RefState::from_bytes(&v?)).collect()
    }

    /// How many restore points a ref has, from the keys alone.
    pub fn restore_point_count(&self, repo: &str, refname: &str) -> usize {
        self.restore.scan_prefix(restore_prefix(repo, refname)).keys().count()
    }

    /// Every restore point of a repository's refs.
    pub fn repo_restore_points(&self, repo: &str) -> Result<Vec<RefState>, StateError> {
        self.restore.scan_prefix(repo_prefix(repo)).values().map(|v| RefState::from_bytes(&v?)).collect()
    }

    /// Bytes the restore points of one repository take (keys and values, before sled's own
    /// overhead).
    pub fn restore_point_bytes(&self, repo: &str) -> Result<u64, StateError> {
        self.restore.scan_prefix(repo_prefix(repo)).map(|kv| kv.map(|(k, v)| (k.len() + v.len()) as u64)).sum::<Result<u64, _>>().map_err(Into::into)
    }

    /// Forgets a ref's restore points (its state starts over from a new snapshot).
    pub fn clear_restore_points(&self, repo: &str, refname: &str) -> Result<(), StateError> {
        let keys: Vec<_> = self.restore.scan_prefix(restore_prefix(repo, refname)).keys().collect::<Result<_, _>>()?;
        for k in keys {
            self.restore.remove(k)?;
        }
        Ok(())
    }

    /// Stores the state after one step (or one group of steps) and makes it durable before
    /// returning: the vector, the last commit and the counters move together or not at all.
    pub fn commit_steps(&self, repo: &str, state: &RefState) -> Result<(), StateError> {
        self.refs.insert(ref_key(repo, &state.refname), state.to_bytes())?;
        self.flush()
    }

    /// Records a published adapter and the ref state that now points at it, atomically.
    /// Call only once the adapter directory is complete on disk.
    pub fn record_adapter(&self, repo: &str, state: &RefState, adapter: &AdapterRecord) -> Result<(), StateError> {
        let seq = self.db.generate_id()?;
        let mut akey = repo_prefix(repo);
        akey.extend_from_slice(&seq.to_be_bytes());
        let rkey = ref_key(repo, &state.refname);
        let (sbytes, abytes) = (state.to_bytes(), adapter.to_bytes());
        (&self.refs, &self.adapters)
            .transaction(|(refs, adapters)| {
                refs.insert(rkey.clone(), sbytes.clone())?;
                adapters.insert(akey.clone(), abytes.clone())?;
                Ok::<_, ConflictableTransactionError<StateError>>(())
            })
            .map_err(tx_error)?;
        self.flush()
    }

    /// Records an adapter without touching any ref state (used when rebuilding).
    pub fn insert_adapter_record(&self, repo: &str, adapter: &AdapterRecord) -> Result<(), StateError> {
        let seq = self.db.generate_id()?;
        let mut akey = repo_prefix(repo);
        akey.extend_from_slice(&seq.to_be_bytes());
        self.adapters.insert(akey, adapter.to_bytes())?;
        self.flush()
    }

    /// Adapter records of a repository, oldest first.
    pub fn adapters(&self, repo: &str) -> Result<Vec<(AdapterKey, AdapterRecord)>, StateError> {
        self.adapters
            .scan_prefix(repo_prefix(repo))
            .map(|kv| {
                let (k, v) = kv?;
                Ok((AdapterKey(k.to_vec()), AdapterRecord::from_bytes(&v)?))
            })
            .collect()
    }

    /// Every adapter record of every repository: (repo key, record key, record).
    pub fn all_adapters(&self) -> Result<Vec<(String, AdapterKey, AdapterRecord)>, StateError> {
        self.adapters
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                let repo = k.iter().position(|&b| b == 0).map(|i| String::from_utf8_lossy(&k[..i]).into_owned()).unwrap_or_default();
                Ok((repo, AdapterKey(k.to_vec()), AdapterRecord::from_bytes(&v)?))
            })
            .collect()
    }

    /// The record of a repository's adapter directory `dir`.
    pub fn adapter_by_dir(&self, repo: &str, dir: &str) -> Result<Option<(AdapterKey, AdapterRecord)>, StateError> {
        Ok(self.adapters(repo)?.into_iter().find(|(_, r)| r.dir == dir))
    }

    /// Rewrites one adapter record; `durable` flushes before returning (pins must survive a
    /// crash; query times may lag by sled's flush interval).
    pub fn update_adapter_record(&self, key: &AdapterKey, rec: &AdapterRecord, durable: bool) -> Result<(), StateError> {
        self.adapters.insert(key.0.as_slice(), rec.to_bytes())?;
        if durable {
            self.flush()?;
        }
        Ok(())
    }

    pub fn remove_adapter_record(&self, key: &AdapterKey) -> Result<(), StateError> {
        self.adapters.remove(key.0.as_slice())?;
        Ok(())
    }
}

fn walked_of(key: &[u8], prefix_len: usize) -> u64 {
    key.get(prefix_len..prefix_len + 8).and_then(|b| <[u8; 8]>::try_from(b).ok()).map_or(0, u64::from_be_bytes)
}

/// Which restore points (by walked count, ascending) to drop so at most `keep` remain. The
/// newest and the oldest stay; each drop removes the point whose neighbours are closest
/// together relative to its distance from the newest, so spacing grows with age: recent
/// history (what rebases and amends rewrite) keeps dense points, old history sparse ones.
pub fn thin(walked: &[u64], keep: usize) -> Vec<u64> {
    let mut kept = walked.to_vec();
    let mut dropped = Vec::new();
    while kept.len() > keep.max(2) {
        let newest = kept[kept.len() - 1];
        let crowding = |i: usize| (kept[i + 1] - kept[i - 1]) as f64 / (newest - kept[i]) as f64;
        let i = (1..kept.len() - 1).min_by(|&a, &b| crowding(a).total_cmp(&crowding(b)).then(kept[a].cmp(&kept[b]))).expect("more than two points");
        dropped.push(kept.remove(i));
    }
    if keep < kept.len() {
        // `keep` of 0 or 1: only the newest (or nothing).
        let n = kept.len() - keep;
        dropped.extend(kept.drain(..n));
    }
    dropped
}

/// Takes an exclusive lock on `<dir>/evolora.lock` before sled opens the database. sled
/// locks its own files too, but reports a held lock only in an error message; this lock
/// tells a second process apart from a broken database by the error code.
fn lock_dir(dir: &Path) -> Result<std::fs::File, StateError> {
    use std::os::fd::AsRawFd;
    let path = dir.join("evolora.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StateError::Corrupt { path: path.clone(), reason: e.to_string() })?;
    // SAFETY: flock on a descriptor we own; no memory is involved.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let err = std::io::Error::last_os_error();
        return Err(match err.kind() {
            std::io::ErrorKind::WouldBlock => StateError::Locked(dir.into()),
            _ => StateError::Corrupt { path, reason: err.to_string() },
        });
    }
    Ok(file)
}

fn classify(dir: &Path, e: sled::Error) -> StateError {
    match &e {
        sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock => StateError::Locked(dir.into()),
        sled::Error::Corruption { .. } | sled::Error::Unsupported(_) => {
            StateError::Corrupt { path: dir.into(), reason: e.to_string() }
        }
        sled::Error::Io(io) if io.kind() == std::io::ErrorKind::InvalidData || io.kind() == std::io::ErrorKind::UnexpectedEof => {
            StateError::Corrupt { path: dir.into(), reason: e.to_string() }
        }
        _ => StateError::Sled(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(refname: &str, steps: u64) -> RefState {
        RefState {
            refname: refname.into(),
            vector: vec![steps as f32; 4],
            last_commit: format!("{steps:040}"),
            origin_commit: "0".repeat(40),
            step_base: "0".repeat(40),
            walked: steps,
            steps,
            steps_since_adapter: steps,
            manifest_changed: false,
            model_fingerprint: "fp".into(),
            current_adapter: None,
            adapter_commit: None,
            adapter_at: None,
            updated_at: 0,
        }
    }

    #[test]
    fn steps_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = StateStore::open(dir.path()).unwrap();
            s.commit_steps("r", &state("refs/heads/main", 3)).unwrap();
            s.commit_steps("r", &state("refs/heads/dev", 1)).unwrap();
        }
        let s = StateStore::open(dir.path()).unwrap();
        assert_eq!(s.ref_state("r", "refs/heads/main").unwrap().unwrap().steps, 3);
        assert_eq!(s.ref_states("r").unwrap().len(), 2);
        assert_eq!(s.ref_names("r").unwrap(), ["refs/heads/dev", "refs/heads/main"]);
        assert!(s.ref_states("rr").unwrap().is_empty(), "prefix scan must not leak into other repos");
    }

    #[test]
    fn issued_names_survive_reopen_and_unregistration() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = StateStore::open(dir.path()).unwrap();
            assert_eq!(s.issued_names("r", "abc").unwrap(), 0);
            s.set_issued_names("r", "abc", 2).unwrap();
            s.remove_repo("r").unwrap();
        }
        let s = StateStore::open(dir.path()).unwrap();
        assert_eq!(s.issued_names("r", "abc").unwrap(), 2);
        assert_eq!(s.issued_names("r", "abd").unwrap(), 0);
        assert_eq!(s.issued_names("rr", "abc").unwrap(), 0);
        // A rebuilt database keeps them.
        let other = tempfile::tempdir().unwrap();
        let fresh = StateStore::open(other.path()).unwrap();
        fresh.set_issued_names("r", "abd", 1).unwrap();
        assert_eq!(fresh.import_issued_names(&s).unwrap(), 1);
        assert_eq!((fresh.issued_names("r", "abc").unwrap(), fresh.issued_names("r", "abd").unwrap()), (2, 1));
    }


    #[test]
    fn future_schema_is_refused_with_rebuild_hint() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            db.open_tree("meta").unwrap().insert(SCHEMA_KEY, &99u32.to_be_bytes()).unwrap();
            db.flush().unwrap();
        }
        let err = StateStore::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("schema version 99") && err.contains("evolora state rebuild"), "{err}");
    }

    #[test]
    fn an_older_schema_opens_and_is_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = StateStore::open(dir.path()).unwrap();
            s.commit_steps("r", &state("refs/heads/main", 3)).unwrap();
            s.db.open_tree("meta").unwrap().insert(SCHEMA_KEY, &1u32.to_be_bytes()).unwrap();
            s.flush().unwrap();
        }
        let s = StateStore::open(dir.path()).unwrap();
        assert_eq!(s.ref_state("r", "refs/heads/main").unwrap().unwrap().steps, 3);
        let v = s.db.open_tree("meta").unwrap().get(SCHEMA_KEY).unwrap().unwrap();
        assert_eq!(v.as_ref(), SCHEMA_VERSION.to_be_bytes());
    }

    #[test]
    fn a_garbled_log_is_corrupt_not_empty() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = StateStore::open(dir.path()).unwrap();
            s.commit_steps("r", &state("refs/heads/main", 3)).unwrap();
        }
        let log = dir.path().join("db");
        let len = std::fs::metadata(&log).unwrap().len() as usize;
        std::fs::write(&log, (0..len).map(|i| (i * 31 % 253) as u8).collect::<Vec<_>>()).unwrap();
        let err = StateStore::open(dir.path()).err().expect("must not open as empty").to_string();
        assert!(err.contains("evolora state rebuild"), "{err}");
    }

    #[test]
    fn remove_repo_removes_everything_it_owns() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateStore::open(dir.path()).unwrap();
        let st = state("refs/heads/main", 1);
        s.commit_steps("a", &st).unwrap();
        s.commit_steps("b", &st).unwrap();
        let rec = AdapterRecord { refname: st.refname.clone(), commit: "c".into(), dir: "d".into(), trigger: "t".into(), created_at: 0, pinned: false, steps: 1, bytes: 0, last_queried: 0 };
        s.record_adapter("a", &st, &rec).unwrap();
        s.record_adapter("ab", &st, &rec).unwrap();
        s.put_restore_point("a", &st, 4).unwrap();
        s.put_restore_point("ab", &st, 4).unwrap();
        let all = s.all_adapters().unwrap();
        assert_eq!(all.iter().map(|(r, _, _)| r.as_str()).collect::<Vec<_>>(), ["a", "ab"]);
        s.remove_repo("a").unwrap();
        assert!(s.ref_states("a").unwrap().is_empty());
        assert!(s.adapters("a").unwrap().is_empty());
        assert!(s.repo_restore_points("a").unwrap().is_empty());
        assert_eq!(s.repo_restore_points("ab").unwrap().len(), 1, "a repository whose key extends another's keeps its points");
        assert_eq!(s.ref_states("b").unwrap().len(), 1);
    }

    #[test]
    fn restore_points_are_kept_per_ref_oldest_first_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateStore::open(dir.path()).unwrap();
        for walked in (0..=400).step_by(16) {
            s.put_restore_point("a", &state("refs/heads/main", walked), 8).unwrap();
        }
        s.put_restore_point("a", &state("refs/heads/main2", 5), 8).unwrap();
        let points = s.restore_points("a", "refs/heads/main").unwrap();
        let walked: Vec<u64> = points.iter().map(|p| p.walked).collect();
        assert_eq!(walked.len(), 8, "{walked:?}");
        assert_eq!((walked[0], walked[7]), (0, 400), "the oldest and the newest stay: {walked:?}");
        assert!(walked.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(points[7], state("refs/heads/main", 400), "a point reads back exactly");
        assert_eq!(s.repo_restore_points("a").unwrap().len(), 9);
        assert!(s.restore_point_bytes("a").unwrap() > 0);
        s.remove_ref_state("a", "refs/heads/main").unwrap();
        assert!(s.restore_points("a", "refs/heads/main").unwrap().is_empty());
        assert_eq!(s.restore_points("a", "refs/heads/main2").unwrap().len(), 1, "another ref sharing the name's prefix keeps its points");
    }

    #[test]
    fn thinning_keeps_recent_points_dense_and_old_ones_sparse() {
        let walked: Vec<u64> = (0..100).map(|i| i * 10).collect();
        let dropped = thin(&walked, 10);
        let kept: Vec<u64> = walked.iter().copied().filter(|w| !dropped.contains(w)).collect();
        assert_eq!(kept.len(), 10);
        assert_eq!((kept[0], kept[9]), (0, 990));
        // Each new point is added at the end and thinned at once, as the daemon does.
        let mut live: Vec<u64> = Vec::new();
        for w in walked {
            live.push(w);
            let gone = thin(&live, 10);
            live.retain(|x| !gone.contains(x));
        }
        assert_eq!(live.len(), 10);
        let gaps: Vec<u64> = live.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(gaps.last(), Some(&10), "the newest points keep their spacing: {live:?}");
        assert!(gaps.windows(2).all(|g| g[0] >= g[1]), "spacing grows with age: {live:?}");
        assert_eq!(thin(&[1, 2, 3], 1), vec![2, 1], "one point: the newest");
        assert_eq!(thin(&[1, 2, 3], 0).len(), 3);
    }
}
