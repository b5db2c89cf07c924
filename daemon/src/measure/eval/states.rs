//! Hypernetwork states along a repository's first-parent history, walked exactly as the
//! daemon walks it (same step policy, same encoder, the origin's snapshot as h₀), kept at
//! the commits asked for.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::{Result, bail};
use evolora_model::Hypernetwork;

use crate::git;
use crate::job::encoder::Encoder;
use crate::job::inputs::{StepInput, Worker};
use crate::job::steps;
use crate::progress::Progress;

/// The states after folding each commit of `wanted` (full ids) reached from `tip`, and the
/// tip's own state (for a Static model, each commit's own snapshot). A commit before the origin (under `paper`, before the first kept
/// commit) has no state and is left out.
pub struct Walked {
    pub at: HashMap<String, Vec<f32>>,
    pub tip: Vec<f32>,
    pub tip_commit: String,
}

pub fn walk(model: &Hypernetwork, encoder: &mut Encoder, repo_path: &Path, tip: &str, wanted: &HashSet<String>, label: &'static str) -> Result<Walked> {
    let loc = git::locate(repo_path)?;
    let repo = git::open(&loc.git_dir)?;
    let tip = git::resolve_commit(&repo, tip)?;
    if !model.is_evo() {
        return snapshots(model, encoder, &repo, tip, wanted, label);
    }
    let commits = git::first_parent_history(&repo, tip)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    let policy = model.meta.step_policy;
    let plan = steps::plan(repo.path(), &commits, policy, None, &[], threads)?;
    let Some(origin) = plan.iter().position(|p| !matches!(p.step, steps::Step::Skip)) else {
        bail!("{}: no commit steps under the {policy} policy", repo_path.display());
    };
    let snapshot = encoder.snapshot(&repo, plan[origin].oid, threads)?;
    let mut state = model.initial_state(&snapshot)?;
    let worker = Worker::open(repo.path(), threads, encoder.diff_encoding());
    let mut at = HashMap::new();
    let total = (plan.len() - origin) as u64;
    let mut bar = Progress::new(label, "commits");
    for (i, p) in plan[origin..].iter().enumerate() {
        if !matches!(p.step, steps::Step::Skip) {
            let vector = match worker.prepare(p, &[])?.input {
                Some(StepInput::Vector(v)) => Some(v),
                Some(StepInput::Text { base, text }) => Some(encoder.diff_vector(&text, base, p.oid)?),
                None => None,
            };
            if let Some(v) = vector {
                state = model.advance(&state, &[v])?;
            }
        }
        let id = p.oid.to_string();
        if wanted.contains(&id) {
            at.insert(id, state.clone());
        }
        bar.update(i as u64 + 1, total, None);
    }
    Ok(Walked { at, tip: state, tip_commit: tip.to_string() })
}

/// A Static model has no history: its state at a commit is that commit's snapshot.
fn snapshots(model: &Hypernetwork, encoder: &mut Encoder, repo: &git2::Repository, tip: git2::Oid, wanted: &HashSet<String>, label: &'static str) -> Result<Walked> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    let mut at = HashMap::new();
    let mut bar = Progress::new(label, "snapshots");
    for (i, id) in wanted.iter().enumerate() {
        let oid = git2::Oid::from_str(id)?;
        at.insert(id.clone(), model.initial_state(&encoder.snapshot(repo, oid, threads)?)?);
        bar.update(i as u64 + 1, wanted.len() as u64, None);
    }
    let tip_state = model.initial_state(&encoder.snapshot(repo, tip, threads)?)?;
    Ok(Walked { at, tip: tip_state, tip_commit: tip.to_string() })
}
