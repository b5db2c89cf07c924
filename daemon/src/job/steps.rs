//! The step policy at work: which commits of a walk step the GRU, and on which diff. The
//! model crate says what a policy is ([`StepPolicy`]); this decides it commit by commit.
//!
//! `every-commit` steps on each first-parent commit's diff. `paper` steps only on commits
//! that add or change assertions in Python test files, on the diff of non-test
//! `.py`/`.md`/`.rst` files since the previous such commit (the state's `step_base`).

use std::path::Path;

use evolora_model::encoder::DiffInput;
use evolora_model::hypernet::StepPolicy;
use git2::{Oid, Repository};

use crate::git::{self, DiffLimits, GitError};
use crate::parallel::ordered_map;

/// How one commit of a walk is turned into a GRU input.
#[derive(Debug, Clone, Copy)]
pub enum Step {
    /// Its diff against its first parent (every-commit policy).
    FirstParent,
    /// Its whole tree against the empty tree: the origin's own step under the every-commit
    /// policy (for a root commit the same as `FirstParent`).
    Whole,
    /// The production-code diff since `base`, the previous stepping commit (paper policy;
    /// `None`: since the empty tree).
    Since(Option<Oid>),
    /// No step; the commit is walked only.
    Skip,
}

#[derive(Debug, Clone, Copy)]
pub struct Planned {
    pub oid: Oid,
    pub step: Step,
    /// Whether the commit touched a dependency manifest, when already known.
    pub manifest_changed: Option<bool>,
}

/// Decides how each commit steps the GRU. Under the paper policy this reads every commit's
/// first-parent diff first (on `threads` threads): a commit steps only if it adds or changes
/// test assertions, and its input is the diff since the previous such commit, starting from
/// `step_base`.
pub fn plan(git_dir: &Path, commits: &[Oid], policy: StepPolicy, step_base: Option<Oid>, globs: &[String], threads: usize) -> Result<Vec<Planned>, GitError> {
    match policy {
        StepPolicy::EveryCommit => Ok(commits.iter().map(|&oid| Planned { oid, step: Step::FirstParent, manifest_changed: None }).collect()),
        StepPolicy::Paper => {
            let mut facts = Vec::with_capacity(commits.len());
            let mut failed = None;
            ordered_map(commits, threads, 4 * threads, || git::open(git_dir), |repo, &oid| first_parent_facts(repo, oid, globs), |_, r| match r {
                Ok(f) => {
                    facts.push(f);
                    true
                }
                Err(e) => {
                    failed = Some(e);
                    false
                }
            });
            if let Some(e) = failed {
                return Err(e);
            }
            let mut base = step_base;
            Ok(commits
                .iter()
                .zip(facts)
                .map(|(&oid, (asserts, manifest))| {
                    let step = if asserts { Step::Since(base.replace(oid)) } else { Step::Skip };
                    Planned { oid, step, manifest_changed: Some(manifest) }
                })
                .collect())
        }
    }
}

/// First-parent facts of a commit: (adds test assertions, touched a manifest).
fn first_parent_facts(repo: &Result<Repository, GitError>, oid: Oid, globs: &[String]) -> Result<(bool, bool), GitError> {
    let repo = repo.as_ref().map_err(|e| GitError::NotARepository(e.to_string()))?;
    let d = git::commit_diff(repo, oid, DiffLimits::default())?;
    Ok((adds_assertions(&d.input), d.paths.iter().any(|p| git::matches_any(p, globs))))
}

/// Where the next step's diff starts after a group whose commits stepped as `stepped` says
/// (oldest first), or `None` if the group leaves it where it was.
pub fn step_base_after(policy: StepPolicy, group: &[(Oid, bool)]) -> Option<Oid> {
    match policy {
        StepPolicy::EveryCommit => group.last().map(|(oid, _)| *oid),
        StepPolicy::Paper => group.iter().rev().find(|(_, stepped)| *stepped).map(|(oid, _)| *oid),
    }
}

/// A Python test file, as the paper's mining treats them: `test_*.py`, `*_test.py`, or any
/// `.py` under a `test`/`tests` directory.
pub fn is_test_file(path: &str) -> bool {
    if !path.ends_with(".py") {
        return false;
    }
    let name = path.rsplit('/').next().unwrap_or(path);
    name.starts_with("test_") || name.ends_with("_test.py") || path.split('/').rev().skip(1).any(|d| d == "tests" || d == "test")
}

/// Production code and docs the paper's diff embedding covers: non-test .py, .md, .rst.
pub fn is_production_file(path: &str) -> bool {
    (path.ends_with(".py") && !is_test_file(path)) || path.ends_with(".md") || path.ends_with(".rst")
}

/// Does a commit add or change an assertion in a Python test file? Bare `assert`,
/// `self.assert*`, `pytest.raises`/`pytest.approx` and NumPy-style `assert_*` count.
pub fn adds_assertions(diff: &DiffInput) -> bool {
    diff.files.iter().filter(|f| is_test_file(&f.path)).any(|f| {
        f.added.lines().any(|l| {
            let t = l.trim_start();
            t.starts_with("assert ") || t.starts_with("assert(") || t.contains("self.assert") || t.contains("pytest.raises")
                || t.contains("pytest.approx") || t.contains(".assert_") || t.starts_with("assert_")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use evolora_model::encoder::FileDiff;

    #[test]
    fn test_files_and_assertions() {
        assert!(is_test_file("tests/test_core.py") && is_test_file("pkg/core_test.py") && is_test_file("test/helpers.py"));
        assert!(!is_test_file("pkg/testing.py") && !is_test_file("tests/data.json"));
        assert!(is_production_file("pkg/core.py") && is_production_file("docs/x.rst") && !is_production_file("tests/test_a.py"));
        let mk = |path: &str, added: &str| DiffInput { files: vec![FileDiff { path: path.into(), added: added.into(), removed: String::new() }], truncated: false };
        assert!(adds_assertions(&mk("tests/test_a.py", "    assert f(1) == 2\n")));
        assert!(adds_assertions(&mk("tests/test_a.py", "        self.assertEqual(x, 3)\n")));
        assert!(adds_assertions(&mk("tests/test_a.py", "    with pytest.raises(ValueError):\n")));
        assert!(!adds_assertions(&mk("tests/test_a.py", "    x = compute()\n")));
        assert!(!adds_assertions(&mk("pkg/core.py", "    assert x > 0\n")), "asserts in production code do not count");
    }

    #[test]
    fn the_step_base_follows_the_policy() {
        let (a, b, c) = (Oid::from_bytes(&[1; 20]).unwrap(), Oid::from_bytes(&[2; 20]).unwrap(), Oid::from_bytes(&[3; 20]).unwrap());
        let group = [(a, true), (b, true), (c, false)];
        assert_eq!(step_base_after(StepPolicy::EveryCommit, &group), Some(c), "every commit is a base");
        assert_eq!(step_base_after(StepPolicy::Paper, &group), Some(b), "the last commit that stepped");
        assert_eq!(step_base_after(StepPolicy::Paper, &[(c, false)]), None, "a group without a step keeps the base");
    }
}
