//! `evolora state rebuild`: recreates the database from git history and the adapter
//! directories, for when it is lost or corrupt. The daemon must be stopped.
//!
//! Each repository's adapter folder names it (the folder is its key) and each published
//! directory's `evolora.json` says which repository, ref, origin commit and commit it was made
//! at. The newest one's state is replayed from its origin snapshot with the same walk the
//! daemon made, and checked against the state digest recorded at publication; the daemon then
//! catches up from there to the tip as usual.

use std::path::{Path, PathBuf};

use evolora_state::{AdapterRecord, RepoRecord, StateError, StateStore};
use git2::Oid;

use crate::adapters::dirs;
use crate::config::Config;
use crate::context::Daemon;
use crate::daemon::DaemonError;
use crate::git;
use crate::job::{self, Engine, JobContext, now_secs, vector_digest};

#[derive(Debug, Default)]
pub struct Report {
    pub repositories: usize,
    /// States replayed whose digest matched the one recorded with their adapter.
    pub verified: usize,
    /// States replayed without a recorded digest to compare (or a different one).
    pub unverified: Vec<String>,
    pub adapters: usize,
    pub skipped: Vec<String>,
    pub moved_aside: Option<PathBuf>,
}

pub fn rebuild(config: Config) -> Result<Report, DaemonError> {
    crate::git::tune_for_reading();
    let mut report = Report::default();
    let db_dir = config.db_dir();
    if db_dir.exists() {
        match StateStore::open(&db_dir) {
            Err(StateError::Locked(p)) => return Err(StateError::Locked(p).into()),
            Ok(store) => drop(store),
            Err(_) => {}
        }
        let aside = config.state_dir.join(format!("db.before-rebuild-{}", now_secs()));
        std::fs::rename(&db_dir, &aside)?;
        report.moved_aside = Some(aside);
    }
    let store = StateStore::open(&db_dir)?;
    // Names the old database issued stay used (servers cache adapters by name), when it
    // can still be read; directories still on disk are skipped by name either way.
    if let Some(aside) = &report.moved_aside
        && let Ok(old) = StateStore::open(aside)
    {
        match store.import_issued_names(&old) {
            Ok(n) if n > 0 => tracing::info!(names = n, "kept the record of issued adapter names"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not keep the record of issued adapter names: a pruned version's name may be issued again"),
        }
    }
    let daemon = Daemon::new(config.clone(), store.clone());
    let cache = config.embeddings_dir();
    let (model, encoder) = job::model::load_with_encoder(&config.model, Some((&cache, config.embedding_cache_budget.0)), 0).map_err(|e| DaemonError::Model(e.to_string()))?;
    let fingerprint = model.meta.fingerprint.clone();
    let mut engine = Engine::new(JobContext::of(&daemon), model, encoder);

    let adapters_root = config.adapters_dir();
    for entry in std::fs::read_dir(&adapters_root).into_iter().flatten().flatten() {
        let key = entry.file_name().to_string_lossy().into_owned();
        let repo_dir = entry.path();
        let versions = dirs::published(&repo_dir);
        let Some(newest) = versions.last() else {
            report.skipped.push(format!("{key}: no complete adapter directory"));
            continue;
        };
        let info = &newest.info;
        let git_dir = info.repo.clone().unwrap_or_default();
        let loc = match git::locate(Path::new(&git_dir)) {
            Ok(l) => l,
            Err(e) => {
                report.skipped.push(format!("{key}: {e}"));
                continue;
            }
        };
        let rec = RepoRecord {
            key: key.clone(),
            git_dir: loc.git_dir.display().to_string(),
            work_dir: loc.work_dir.as_ref().map(|p| p.display().to_string()),
            bare: loc.bare,
            tracked_refs: Vec::new(),
            registered_at: now_secs(),
        };
        store.put_repo(&rec)?;
        report.repositories += 1;

        let records: Vec<AdapterRecord> = versions.iter().map(|v| v.record(&repo_dir)).collect();
        let replayable = info.model.fingerprint == fingerprint;
        let commits = (Oid::from_str(info.origin_commit.as_deref().unwrap_or("")), Oid::from_str(info.commit.as_deref().unwrap_or("")));
        let state = match (replayable, commits) {
            (true, (Ok(origin), Ok(upto))) => {
                let refname = info.refname.as_deref().unwrap_or_default();
                match engine.replay(&key, &loc.git_dir, refname, origin, info.walked, upto) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        report.skipped.push(format!("{key}: state not replayed ({e}); it restarts from a snapshot"));
                        None
                    }
                }
            }
            (false, _) => {
                report.skipped.push(format!("{key}: made by another model; its state restarts from a snapshot"));
                None
            }
            _ => None,
        };
        match state {
            Some(mut state) => {
                if info.state_sha256.as_deref() == Some(vector_digest(&state.vector).as_str()) {
                    report.verified += 1;
                } else {
                    report.unverified.push(key.clone());
                }
                state.published(&newest.name, info.created_at.unwrap_or(0));
                for r in &records {
                    store.record_adapter(&key, &state, r)?;
                }
            }
            None => {
                for r in &records {
                    store.insert_adapter_record(&key, r)?;
                }
            }
        }
        report.adapters += records.len();
        dirs::swap_current(&repo_dir, &newest.name)?;
    }
    store.flush()?;
    Ok(report)
}
