//! A repository as training data: its tasks (mined from its history, RepoPeftBench rules)
//! tokenised as the evaluation prompts them, and its vectors (the origin's snapshot and every
//! stepped diff, walked as the daemon walks) from the configured encoder. Both are cached in
//! one file per repository and tip, so a second run (or a resumed one) starts at once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use evolora_eval::tasks::{self, MineOptions, Split, Track};
use evolora_model::train::{Example, RepoData, Task};
use evolora_model::{Architecture, LanguageModel, StepPolicy};
use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::git;
use crate::job::encoder::Encoder;
use crate::job::inputs::{StepInput, Worker};
use crate::job::steps;
use crate::progress::Progress;

/// How a repository becomes data; everything here is part of the cache key.
pub struct Recipe<'a> {
    pub architecture: Architecture,
    pub policy: StepPolicy,
    pub track: Track,
    pub lm: &'a LanguageModel,
    pub tokenizer_id: String,
}

/// One repository's training data: its tasks by split, each anchored at the number of
/// diffs folded before it (the train split is `data.tasks`, what the trainer draws from).
pub struct Prepared {
    /// Identifies the data: repository tip, recipe and encoder (the cache file's name).
    pub key: String,
    pub data: RepoData,
    pub val: Vec<Task>,
    pub test: Vec<Task>,
}

#[derive(Serialize, Deserialize)]
struct CachedTask {
    commit: usize,
    split: Split,
    prefix: Vec<u32>,
    target: Vec<u32>,
}

/// The tasks and vectors of `repo` at its HEAD, from `cache_dir` when they are there.
pub fn prepare(repo: &Path, recipe: &Recipe, encoder: &mut Encoder, cache_dir: &Path) -> Result<Prepared> {
    let loc = git::locate(repo)?;
    let git_repo = git::open(&loc.git_dir)?;
    let tip = git::resolve_commit(&git_repo, "HEAD")?;
    let key = cache_key(recipe, encoder.id(), tip);
    let path = cache_dir.join(format!("{key}.safetensors"));
    let name = repo.display().to_string();
    if let Ok(bytes) = std::fs::read(&path)
        && let Ok(prepared) = read_cache(&bytes, &name, &key)
    {
        return Ok(prepared);
    }

    let mined = tasks::mine(repo, &MineOptions { track: recipe.track, ..MineOptions::default() }).with_context(|| format!("mining tasks from {name}"))?;
    for w in &mined.warnings {
        eprintln!("warning: {name}: {w}");
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    let Walked { snapshot, diffs, folded } = match recipe.architecture {
        Architecture::Evo => walk(encoder, &git_repo, tip, recipe.policy, threads, &name)?,
        Architecture::Static => {
            // One vector per repository: the snapshot where its training tasks end, so that
            // it has not seen the code its validation and test tasks come from.
            let last_train = mined.tasks.iter().filter(|t| t.split == Split::Train).filter_map(|t| t.parent.clone()).next_back();
            let at = match last_train {
                Some(commit) => git2::Oid::from_str(&commit)?,
                None => tip,
            };
            Walked { snapshot: encoder.snapshot(&git_repo, at, threads)?, diffs: Vec::new(), folded: HashMap::new() }
        }
    };
    let stop = recipe.lm.stop[0];
    let mut cached = Vec::new();
    for t in &mined.tasks {
        // Evo: the state before the task's commit (its parent's), as `evolora eval` scores it.
        let commit = match recipe.architecture {
            Architecture::Static => 0,
            Architecture::Evo => match t.parent.as_ref().and_then(|p| folded.get(p)) {
                Some(&n) => n,
                None => continue,
            },
        };
        // Whole here; cut to --max-len when batched, keeping the stop id first as eval does.
        let prefix = crate::measure::eval::prompt_ids(recipe.lm, &t.prefix, usize::MAX)?;
        let mut target = recipe.lm.encode(&t.target)?;
        target.push(stop);
        cached.push(CachedTask { commit, split: t.split, prefix, target });
    }
    write_cache(&path, &snapshot, &diffs, &cached)?;
    Ok(assemble(name, key, snapshot, diffs, cached))
}

fn assemble(name: String, key: String, snapshot: Vec<f32>, diffs: Vec<Vec<f32>>, cached: Vec<CachedTask>) -> Prepared {
    let (mut train, mut val, mut test) = (Vec::new(), Vec::new(), Vec::new());
    for c in cached {
        let task = Task { commit: c.commit, example: Example { prefix: c.prefix, target: c.target } };
        match c.split {
            Split::Train => train.push(task),
            Split::Val => val.push(task),
            Split::Test => test.push(task),
        }
    }
    Prepared { key, data: RepoData { name, snapshot, diffs, tasks: train }, val, test }
}

/// What a walk yields: the origin's snapshot, the diff vectors of every stepped commit, and
/// for each commit from the origin on how many diffs the state has folded after it.
struct Walked {
    snapshot: Vec<f32>,
    diffs: Vec<Vec<f32>>,
    folded: HashMap<String, usize>,
}

fn walk(encoder: &mut Encoder, repo: &git2::Repository, tip: git2::Oid, policy: StepPolicy, threads: usize, name: &str) -> Result<Walked> {
    let commits = git::first_parent_history(repo, tip)?;
    let plan = steps::plan(repo.path(), &commits, policy, None, &[], threads)?;
    let Some(origin) = plan.iter().position(|p| !matches!(p.step, steps::Step::Skip)) else {
        bail!("{name}: no commit steps under the {policy} policy");
    };
    let snapshot = encoder.snapshot(repo, plan[origin].oid, threads)?;
    let worker = Worker::open(repo.path(), threads, encoder.diff_encoding());
    let (mut diffs, mut folded) = (Vec::new(), HashMap::new());
    let total = (plan.len() - origin) as u64;
    let mut bar = Progress::new("encoding", "commits");
    for (i, p) in plan[origin..].iter().enumerate() {
        if !matches!(p.step, steps::Step::Skip) {
            match worker.prepare(p, &[])?.input {
                Some(StepInput::Vector(v)) => diffs.push(v),
                Some(StepInput::Text { base, text }) => diffs.push(encoder.diff_vector(&text, base, p.oid)?),
                None => {}
            }
        }
        folded.insert(p.oid.to_string(), diffs.len());
        bar.update(i as u64 + 1, total, None);
    }
    Ok(Walked { snapshot, diffs, folded })
}

fn cache_key(recipe: &Recipe, encoder: &str, tip: git2::Oid) -> String {
    let mut h = Sha256::new();
    for part in [tip.to_string(), recipe.architecture.to_string(), recipe.policy.to_string(), format!("{:?}", recipe.track), encoder.to_owned(), recipe.tokenizer_id.clone(), "train-data-v1".into()] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().iter().take(12).map(|b| format!("{b:02x}")).collect()
}

fn write_cache(path: &Path, snapshot: &[f32], diffs: &[Vec<f32>], tasks: &[CachedTask]) -> Result<()> {
    let dim = snapshot.len();
    let snapshot_bytes: Vec<u8> = snapshot.iter().flat_map(|v| v.to_le_bytes()).collect();
    let diff_bytes: Vec<u8> = diffs.iter().flatten().flat_map(|v| v.to_le_bytes()).collect();
    let mut views = vec![("snapshot".to_string(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![dim], &snapshot_bytes)?)];
    views.push(("diffs".to_string(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![diffs.len(), dim], &diff_bytes)?));
    let metadata = HashMap::from([("tasks".to_string(), serde_json::to_string(tasks)?)]);
    let bytes = safetensors::serialize(views, Some(metadata))?;
    super::write_durably(path, &bytes)
}

fn read_cache(bytes: &[u8], name: &str, key: &str) -> Result<Prepared> {
    let (_, header) = SafeTensors::read_metadata(bytes)?;
    let tasks: Vec<CachedTask> = serde_json::from_str(header.metadata().as_ref().and_then(|m| m.get("tasks")).context("no tasks")?)?;
    let st = SafeTensors::deserialize(bytes)?;
    let floats = |name: &str| -> Result<(Vec<usize>, Vec<f32>)> {
        let view = st.tensor(name)?;
        Ok((view.shape().to_vec(), view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()))
    };
    let (_, snapshot) = floats("snapshot")?;
    let (shape, flat) = floats("diffs")?;
    let diffs = if shape[0] == 0 { Vec::new() } else { flat.chunks_exact(shape[1]).map(<[f32]>::to_vec).collect() };
    Ok(assemble(name.to_owned(), key.to_owned(), snapshot, diffs, tasks))
}

impl Prepared {
    /// Drops the tasks whose target leaves no room for a prefix in `max_len` tokens; returns
    /// how many went.
    pub fn keep_fitting(&mut self, max_len: usize) -> usize {
        let count = |p: &Prepared| p.data.tasks.len() + p.val.len() + p.test.len();
        let before = count(self);
        for tasks in [&mut self.data.tasks, &mut self.val, &mut self.test] {
            tasks.retain(|t| t.example.fits(max_len));
        }
        before - count(self)
    }
}

/// Where a run keeps its cached data.
pub fn cache_dir(out: &Path) -> PathBuf {
    out.join("cache")
}
