//! The adapter folder of each repository on disk: immutable version directories, a
//! `current` symlink swapped by rename, clean-up of unfinished writes, and the listing of
//! complete versions. What is deleted when is [`super::retention`]'s business.
//!
//! `<state_dir>/adapters/<repo key>/<commit>[.<n>]/` and `<repo key>/current -> <name>`.

use std::fs;
use std::path::{Path, PathBuf};

use evolora_model::peft::TEMP_PREFIX;
use evolora_state::AdapterRecord;

use super::info::AdapterInfo;

pub const CURRENT: &str = "current";

/// The name of the next version at `commit`, given how many were issued there before:
/// `<commit>` first, then `<commit>.1`, `<commit>.2`, … Names are never reused (servers
/// cache adapters by name), so the count comes from the state store, which outlives the
/// directories; a directory already on disk is skipped too. Returns (index, name); the
/// caller records `index + 1` as issued.
pub fn fresh_name(repo_dir: &Path, commit: &str, issued: u32) -> (u32, String) {
    let name = |n: u32| if n == 0 { commit.to_owned() } else { format!("{commit}.{n}") };
    (issued..).map(|n| (n, name(n))).find(|(_, name)| !repo_dir.join(name).exists()).expect("unbounded")
}

/// The index [`fresh_name`] gave `name` at `commit` (`<commit>` is 0, `<commit>.<n>` is n).
pub fn name_index(name: &str, commit: &str) -> Option<u32> {
    match name.strip_prefix(commit)? {
        "" => Some(0),
        rest => rest.strip_prefix('.')?.parse().ok(),
    }
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

/// A complete version directory found on disk, with its `evolora.json`.
pub struct Published {
    pub name: String,
    pub info: AdapterInfo,
}

impl Published {
    /// The adapter record this directory would have had.
    pub fn record(&self, repo_dir: &Path) -> AdapterRecord {
        let info = &self.info;
        AdapterRecord {
            refname: info.refname.clone().unwrap_or_default(),
            commit: info.commit.clone().unwrap_or_default(),
            dir: self.name.clone(),
            trigger: info.trigger.clone().unwrap_or_else(|| "rebuild".into()),
            created_at: info.created_at.unwrap_or(0),
            pinned: false,
            steps: info.steps.unwrap_or(0),
            bytes: dir_bytes(&repo_dir.join(&self.name)),
            last_queried: 0,
        }
    }
}

/// The complete version directories of a repository's adapter folder, oldest first.
/// (Directories are renamed into place whole, so a complete one has all three files.)
pub fn published(repo_dir: &Path) -> Vec<Published> {
    let mut out: Vec<Published> = fs::read_dir(repo_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name == CURRENT || !e.path().join("adapter_model.safetensors").is_file() || !e.path().join("adapter_config.json").is_file() {
                return None;
            }
            Some(Published { name, info: AdapterInfo::read(&e.path())? })
        })
        .collect();
    out.sort_by_key(|p| (p.info.created_at.unwrap_or(0), p.info.steps.unwrap_or(0), p.name.clone()));
    out
}

/// Bytes of the files directly inside an adapter directory.
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    entries.flatten().filter_map(|e| e.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum()
}
