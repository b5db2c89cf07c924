//! The adapter folder of each repository: immutable version directories, a `current`
//! symlink swapped by rename, retention, and clean-up of unfinished writes.
//!
//! `<state_dir>/adapters/<repo key>/<commit>[.<n>]/` and `<repo key>/current -> <name>`.

use std::fs;
use std::path::{Path, PathBuf};

use evolora_model::peft::TEMP_PREFIX;
use evolora_state::{AdapterRecord, StateStore};

pub const CURRENT: &str = "current";

/// A fresh directory name for an adapter at `commit`: never reuses a published name, since
/// servers cache adapters by path.
pub fn fresh_name(repo_dir: &Path, commit: &str) -> String {
    if !repo_dir.join(commit).exists() {
        return commit.to_owned();
    }
    (1..).map(|n| format!("{commit}.{n}")).find(|name| !repo_dir.join(name).exists()).expect("unbounded")
}

/// Points `current` at `name` atomically (a new symlink renamed over the old one).
pub fn swap_current(repo_dir: &Path, name: &str) -> std::io::Result<()> {
    let tmp = repo_dir.join(format!("{TEMP_PREFIX}{CURRENT}-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(name, &tmp)?;
    fs::rename(&tmp, repo_dir.join(CURRENT))?;
    fs::File::open(repo_dir)?.sync_all()
}

/// Where `current` points, if anywhere.
pub fn current_target(repo_dir: &Path) -> Option<PathBuf> {
    let link = fs::read_link(repo_dir.join(CURRENT)).ok()?;
    Some(repo_dir.join(link))
}

/// Deletes adapter versions beyond the newest `keep`, never the current or a pinned one.
/// Returns how many were removed.
pub fn prune(store: &StateStore, repo_key: &str, repo_dir: &Path, current: Option<&str>, keep: usize) -> usize {
    let Ok(records) = store.adapters(repo_key) else { return 0 };
    let total = records.len();
    let mut removed = 0;
    for (i, (key, rec)) in records.iter().enumerate() {
        let newest = total - i <= keep;
        if newest || rec.pinned || Some(rec.dir.as_str()) == current {
            continue;
        }
        let dir = repo_dir.join(&rec.dir);
        // Rename first: a crash mid-deletion must never leave a half-emptied directory under
        // a published name. The renamed remains are swept like any unfinished write.
        let doomed = repo_dir.join(format!("{TEMP_PREFIX}pruned-{}", rec.dir));
        let gone = match fs::rename(&dir, &doomed) {
            Ok(()) => fs::remove_dir_all(&doomed).is_ok(),
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        };
        if gone {
            let _ = store.remove_adapter_record(key);
            removed += 1;
        }
    }
    removed
}

/// Removes temporary directories and links left by an interrupted write. Returns how many.
pub fn remove_orphans(adapters_root: &Path) -> usize {
    let mut removed = 0;
    let Ok(repos) = fs::read_dir(adapters_root) else { return 0 };
    for repo in repos.flatten() {
        let Ok(entries) = fs::read_dir(repo.path()) else { continue };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                let p = e.path();
                let gone = if p.is_dir() && !p.is_symlink() { fs::remove_dir_all(&p) } else { fs::remove_file(&p) };
                if gone.is_ok() {
                    removed += 1;
                }
            }
        }
    }
    removed
}

/// A record for a just-published directory.
pub fn record(refname: &str, commit: &str, dir: &str, trigger: &str, steps: u64, now: u64) -> AdapterRecord {
    AdapterRecord {
        refname: refname.to_owned(),
        commit: commit.to_owned(),
        dir: dir.to_owned(),
        trigger: trigger.to_owned(),
        created_at: now,
        pinned: false,
        steps,
    }
}
