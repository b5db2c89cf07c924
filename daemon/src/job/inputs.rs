//! What each planned commit of a walk feeds the GRU: its diff (as [`super::steps`] planned
//! it), encoded.
//!
//! Diffing and encoding are pure functions of the commits, so a catch-up prepares many
//! commits on several threads while the model thread folds the finished ones into the state
//! in order; the state comes out bit-identical however the work was spread.

use std::path::Path;

use evolora_model::encoder::{qwen3, DiffInput, HashedEncoder};
use git2::{Oid, Repository};

use super::steps::{Planned, Step};
use crate::git::{self, DiffLimits, GitError};
use crate::parallel::ordered_map;

/// What a stepping commit feeds the GRU, as far as the encode threads take it.
#[derive(Debug)]
pub enum StepInput {
    /// Encoded already (the hashed encoder).
    Vector(Vec<f32>),
    /// The recipe's diff text, for a transformer encoder on the model thread; `base` is
    /// the diff's other end (None: the empty tree).
    Text { base: Option<Oid>, text: String },
}

/// One commit, ready for the GRU.
#[derive(Debug)]
pub struct Prepared {
    pub oid: Oid,
    pub manifest_changed: bool,
    /// The GRU input, absent for a commit the policy does not step on.
    pub input: Option<StepInput>,
    /// The diff was cut at the byte limit.
    pub truncated: bool,
}

/// What the encode threads make of a diff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiffEncoding {
    /// A vector, by this version of the hashed encoder.
    Hashed(HashedEncoder),
    /// The recipe's diff text, for a transformer encoder on the model thread.
    Text,
}

/// Per-thread state: an open repository (git2 handles are not shared between threads).
pub struct Worker {
    repo: Result<Repository, GitError>,
    encoding: DiffEncoding,
    /// Threads one commit's files are spread over (a lone commit has the CPUs to itself).
    file_threads: usize,
}

impl Worker {
    pub fn open(git_dir: &Path, file_threads: usize, encoding: DiffEncoding) -> Self {
        Worker { repo: git::open(git_dir), encoding, file_threads }
    }

    fn repo(&self) -> Result<&Repository, GitError> {
        self.repo.as_ref().map_err(|e| GitError::NotARepository(e.to_string()))
    }

    /// A diff's vector; with `file_threads` > 1 its files are encoded in parallel and pooled
    /// in file order, which gives the same bits.
    fn encode(&self, encoder: HashedEncoder, diff: &DiffInput) -> Vec<f32> {
        if self.file_threads <= 1 {
            return encoder.encode_diff(diff).vector;
        }
        let mut files = Vec::with_capacity(diff.files.len());
        ordered_map(&diff.files, self.file_threads, 4 * self.file_threads, || encoder, |enc, f| enc.diff_file_vector(f), |_, v| {
            files.push(v);
            true
        });
        encoder.pool_diff(diff, files).vector
    }

    /// Diffs and encodes one planned commit.
    pub fn prepare(&self, plan: &Planned, globs: &[String]) -> Result<Prepared, GitError> {
        let DiffEncoding::Hashed(encoder) = self.encoding else {
            return self.prepare_text(plan, globs);
        };
        let repo = self.repo()?;
        let limits = DiffLimits::default();
        let (input, manifest_changed) = match plan.step {
            Step::Skip => (None, plan.manifest_changed.unwrap_or(false)),
            Step::FirstParent | Step::Whole => {
                let d = match plan.step {
                    Step::Whole => git::tree_diff(repo, None, &repo.find_commit(plan.oid)?.tree()?, limits)?,
                    _ => git::commit_diff(repo, plan.oid, limits)?,
                };
                let manifest = plan.manifest_changed.unwrap_or_else(|| d.paths.iter().any(|p| git::matches_any(p, globs)));
                (Some(d.input), manifest)
            }
            Step::Since(base) => {
                let old_tree = base.and_then(|b| repo.find_commit(b).ok()).map(|c| c.tree()).transpose()?;
                let new_tree = repo.find_commit(plan.oid)?.tree()?;
                let mut span = git::tree_diff(repo, old_tree.as_ref(), &new_tree, limits)?.input;
                span.files.retain(|f| qwen3::keeps_diff_path(&f.path));
                (Some(span), plan.manifest_changed.unwrap_or(false))
            }
        };
        let truncated = input.as_ref().is_some_and(|i| i.truncated);
        let input = input.map(|i| StepInput::Vector(self.encode(encoder, &i)));
        Ok(Prepared { oid: plan.oid, manifest_changed, input, truncated })
    }

    /// The recipe's diff text of one planned commit: from its first parent, or from the
    /// previous stepping commit under the paper policy.
    fn prepare_text(&self, plan: &Planned, globs: &[String]) -> Result<Prepared, GitError> {
        let repo = self.repo()?;
        let base = match plan.step {
            Step::Skip => return Ok(Prepared { oid: plan.oid, manifest_changed: plan.manifest_changed.unwrap_or(false), input: None, truncated: false }),
            Step::FirstParent => repo.find_commit(plan.oid)?.parent_ids().next(),
            Step::Whole => None,
            Step::Since(base) => base,
        };
        let (text, manifest) = super::encoder::diff_text(repo.path(), base, plan.oid, globs)?;
        let manifest_changed = plan.manifest_changed.unwrap_or(manifest);
        Ok(Prepared { oid: plan.oid, manifest_changed, input: Some(StepInput::Text { base, text }), truncated: false })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use evolora_model::encoder::FileDiff;

    #[test]
    fn a_commit_whose_files_are_spread_over_threads_encodes_to_the_same_bits() {
        let files = (0..23)
            .map(|i| FileDiff {
                path: if i % 3 == 0 { format!("docs/f{i}.md") } else { format!("pkg/m{i}.py") },
                added: format!("import os\ndef f{i}(x, y={i}):\n    return os.path.join(x, str(y))\n"),
                removed: format!("def g{i}():\n    pass\n").repeat(i % 4),
            })
            .collect();
        let diff = DiffInput { files, truncated: false };
        let one = HashedEncoder::LATEST.encode_diff(&diff).vector;
        for threads in [2, 3, 8, 64] {
            let worker = Worker { repo: Err(GitError::NotARepository("unused".into())), encoding: DiffEncoding::Hashed(HashedEncoder::LATEST), file_threads: threads };
            let many = worker.encode(HashedEncoder::LATEST, &diff);
            assert!(one.iter().zip(&many).all(|(a, b)| a.to_bits() == b.to_bits()), "{threads} threads");
        }
    }
}
