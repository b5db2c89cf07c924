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
        (&self.repos, &self.refs, &self.adapters)
            .transaction(|(repos, refs, adapters)| {
                repos.remove(key.as_bytes())?;
                for k in &ref_keys {
                    refs.remove(k.clone())?;
                }
                for k in &adapter_keys {
                    adapters.remove(k.clone())?;
                }
                Ok::<_, ConflictableTransactionError<StateError>>(())
            })
            .map_err(tx_error)?;
        self.flush()
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
        self.flush()
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
        let all = s.all_adapters().unwrap();
        assert_eq!(all.iter().map(|(r, _, _)| r.as_str()).collect::<Vec<_>>(), ["a", "ab"]);
        s.remove_repo("a").unwrap();
        assert!(s.ref_states("a").unwrap().is_empty());
        assert!(s.adapters("a").unwrap().is_empty());
        assert_eq!(s.ref_states("b").unwrap().len(), 1);
    }
}
