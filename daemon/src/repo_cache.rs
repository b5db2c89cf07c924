//! Client paths → repositories, remembered for a few seconds.
//!
//! Every request names its repository by a path. Finding the repository behind a path means
//! discovering and opening it (a stat per parent directory, reading every config file), and
//! that was most of an `adapter` request's cost. An entry is trusted for [`TTL`] while the
//! path and the repository's HEAD still exist (two stats): a deleted repository is noticed
//! at once; a path that starts belonging to another repository (a new repository created
//! between it and the old one) is noticed when the entry expires.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use git2::{Oid, Repository};

use crate::git::{self, GitError, Location};

pub const TTL: Duration = Duration::from_secs(10);
/// Open repositories hold tens of KiB each: expired entries are swept as new ones arrive,
/// and past this many live ones the cache starts over.
const MAX_ENTRIES: usize = 1024;

/// One path's repository: where it is, its key, and an open handle on the work tree (or
/// git dir) the path is in, whose HEAD says which branch that checkout follows.
pub struct Found {
    pub location: Location,
    pub key: String,
    opened: Instant,
    /// HEAD of the checkout the path is in (`<git dir>/HEAD`, per worktree).
    head_file: std::path::PathBuf,
    repo: Mutex<Repository>,
}

impl Found {
    /// Two stats instead of a discovery: the path and the repository are both still there.
    fn still_there(&self, path: &str) -> bool {
        Path::new(path).exists() && self.head_file.exists()
    }
}

impl Found {
    /// The branch checked out where the path points, and its tip; read fresh each time.
    pub fn tracked_ref(&self) -> Result<Option<(String, Option<Oid>)>, GitError> {
        git::tracked_ref(&self.repo.lock().expect("repository lock"))
    }

    /// The work tree of the checkout the path is in (none for a bare repository).
    pub fn work_dir(&self) -> Option<std::path::PathBuf> {
        self.repo.lock().expect("repository lock").workdir().map(Path::to_path_buf)
    }

    pub fn ref_tip(&self, refname: &str) -> Option<Oid> {
        self.repo.lock().expect("repository lock").refname_to_id(refname).ok()
    }
}

#[derive(Default)]
pub struct RepoCache {
    entries: Mutex<HashMap<String, Arc<Found>>>,
}

impl RepoCache {
    /// The repository containing `path` (blocking: may open it).
    pub fn lookup(&self, path: &str) -> Result<Arc<Found>, GitError> {
        if let Some(hit) = self.entries.lock().expect("cache lock").get(path).filter(|f| f.opened.elapsed() < TTL).cloned()
            && hit.still_there(path)
        {
            return Ok(hit);
        }
        let found = Arc::new(Self::discover(path)?);
        let mut entries = self.entries.lock().expect("cache lock");
        entries.retain(|_, f| f.opened.elapsed() < TTL);
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(path.to_owned(), found.clone());
        Ok(found)
    }

    /// The repository containing `path`, looked at afresh and not remembered (registration:
    /// thousands of paths seen once each).
    pub fn discover(path: &str) -> Result<Found, GitError> {
        let repo = Repository::discover(path).map_err(|_| GitError::NotARepository(path.to_owned()))?;
        let location = git::location_of(&repo);
        let key = git::repo_key(&location.git_dir);
        let head_file = repo.path().join("HEAD");
        Ok(Found { location, key, opened: Instant::now(), head_file, repo: Mutex::new(repo) })
    }

    /// Forgets every path into the repository whose common git dir is `git_dir`.
    pub fn forget(&self, git_dir: &Path) {
        self.entries.lock().expect("cache lock").retain(|_, f| f.location.git_dir != git_dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_that_stops_being_a_repository_is_noticed_at_once() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("r");
        git2::Repository::init(&dir).unwrap();
        let cache = RepoCache::default();
        let path = dir.to_str().unwrap();
        let first = cache.lookup(path).unwrap();
        let again = cache.lookup(path).unwrap();
        assert!(Arc::ptr_eq(&first, &again), "a second lookup within the TTL is served from the cache");
        std::fs::remove_dir_all(dir.join(".git")).unwrap();
        assert!(cache.lookup(path).is_err(), "a deleted repository is not served from the cache");
        git2::Repository::init(&dir).unwrap();
        let back = cache.lookup(path).unwrap();
        cache.forget(&back.location.git_dir);
        assert!(!Arc::ptr_eq(&back, &cache.lookup(path).unwrap()), "forgetting drops the entry");
    }
}
