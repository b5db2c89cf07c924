//! `evolora encode`: a repository's snapshot, one diff, or its whole stepped history as the
//! model's input vectors, with the same encoder settings as the daemon and no daemon. The
//! history file is exactly what `evolora model run --embeddings` takes.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use evolora_model::StepPolicy;
use evolora_model::encoder::DiffInput;
use git2::{Oid, Repository};

use crate::git::{self, DiffLimits};
use crate::job::encoder::Encoder;
use crate::job::inputs::{DiffEncoding, StepInput, Worker};
use crate::job::steps;
use crate::offline::EncoderChoice;

fn open(repo_path: &Path) -> Result<Repository> {
    let loc = git::locate(repo_path)?;
    Ok(git::open(&loc.git_dir)?)
}

fn write(out: &Path, tensors: &[(&str, Vec<usize>, &[f32])], metadata: HashMap<String, String>) -> Result<()> {
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect()).collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| Ok((name.to_string(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), b)?)))
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize_to_file(views, Some(metadata), out).with_context(|| format!("writing {}", out.display()))?;
    println!("{}", out.display());
    Ok(())
}

fn metadata(encoder: &Encoder, pairs: &[(&str, String)]) -> HashMap<String, String> {
    let mut md: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    md.insert("encoder".into(), encoder.id().into());
    if let Some(dir) = encoder.dir() {
        md.insert("encoder_dir".into(), dir.display().to_string());
    }
    md
}

/// `encode snapshot`: tensor `snapshot` [D] at `commit` (HEAD by default).
pub fn snapshot(choice: &EncoderChoice, device: &str, repo_path: &Path, commit: Option<&str>, out: &Path) -> Result<()> {
    let mut encoder = choice.load(device)?;
    let repo = open(repo_path)?;
    let commit = git::resolve_commit(&repo, commit.unwrap_or("HEAD"))?;
    let v = encoder.snapshot(&repo, commit, threads())?;
    write(out, &[("snapshot", vec![v.len()], &v)], metadata(&encoder, &[("commit", commit.to_string())]))
}

/// `encode diff`: tensor `diff` [D] of `commit` against `base` (its first parent, or the
/// empty tree for a root commit, by default).
pub fn diff(choice: &EncoderChoice, device: &str, repo_path: &Path, commit: &str, base: Option<&str>, out: &Path) -> Result<()> {
    let encoder = choice.load(device)?;
    let repo = open(repo_path)?;
    let commit = git::resolve_commit(&repo, commit)?;
    let base = match base {
        Some(b) => Some(git::resolve_commit(&repo, b)?),
        None => repo.find_commit(commit)?.parent_ids().next(),
    };
    let v = diff_vector(&encoder, &repo, base, commit)?;
    let base_text = base.map_or_else(|| git::EMPTY_TREE.to_owned(), |b| b.to_string());
    write(out, &[("diff", vec![v.len()], &v)], metadata(&encoder, &[("commit", commit.to_string()), ("base", base_text)]))
}

fn diff_vector(encoder: &Encoder, repo: &Repository, base: Option<Oid>, commit: Oid) -> Result<Vec<f32>> {
    let DiffEncoding::Hashed(hashed) = encoder.diff_encoding() else {
        let (text, _) = crate::job::encoder::diff_text(repo.path(), base, commit, &[])?;
        return Ok(encoder.diff_vector(&text, base, commit)?);
    };
    let old = base.map(|b| repo.find_commit(b).and_then(|c| c.tree())).transpose()?;
    let new = repo.find_commit(commit)?.tree()?;
    let input: DiffInput = git::tree_diff(repo, old.as_ref(), &new, DiffLimits::default())?.input;
    Ok(hashed.encode_diff(&input).vector)
}

/// `encode history`: `snapshot` [D] at the origin (the root under `every-commit`, the first
/// stepping commit under `paper`) and `diffs` [T, D] for every commit the policy steps from
/// the origin itself (its diff against the empty tree) to the tip; the commits in the
/// metadata, comma-separated.
pub fn history(choice: &EncoderChoice, device: &str, repo_path: &Path, refname: Option<&str>, policy: StepPolicy, out: &Path) -> Result<()> {
    let mut encoder = choice.load(device)?;
    let repo = open(repo_path)?;
    let tip = git::resolve_commit(&repo, refname.unwrap_or("HEAD"))?;
    let commits = git::first_parent_history(&repo, tip)?;
    let threads = threads();
    let plan = steps::plan(repo.path(), &commits, policy, None, &[], threads)?;
    let stepped: Vec<_> = plan.iter().filter(|p| !matches!(p.step, steps::Step::Skip)).collect();
    let Some(origin) = stepped.first().map(|p| p.oid) else {
        bail!("no commit of {} steps under the {policy} policy", refname.unwrap_or("HEAD"));
    };
    let snapshot = encoder.snapshot(&repo, origin, threads)?;
    let worker = Worker::open(repo.path(), threads, encoder.diff_encoding());
    let total = stepped.len();
    let mut diffs = Vec::with_capacity(total * encoder.dim());
    let mut ids = Vec::with_capacity(total);
    let mut bar = crate::progress::Progress::new("encoding", "commits");
    for (i, p) in stepped.iter().enumerate() {
        // The origin's own step is against the empty tree: it is the root under
        // `every-commit`, and the plan starts `paper` from the empty tree.
        let prepared = worker.prepare(p, &[])?;
        let v = match prepared.input {
            Some(StepInput::Vector(v)) => v,
            Some(StepInput::Text { base, text }) => encoder.diff_vector(&text, base, p.oid)?,
            None => continue,
        };
        diffs.extend_from_slice(&v);
        ids.push(p.oid.to_string());
        bar.update(i as u64 + 1, total as u64, None);
    }
    let dim = encoder.dim();
    let md = metadata(&encoder, &[("origin", origin.to_string()), ("commits", ids.join(",")), ("step_policy", policy.to_string())]);
    write(out, &[("snapshot", vec![dim], &snapshot), ("diffs", vec![ids.len(), dim], &diffs)], md)
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(8)
}
