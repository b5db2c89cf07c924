//! The step policy at work: which commits of a walk step the GRU, and on which diff. The
//! model crate says what a policy is ([`StepPolicy`]); this decides it commit by commit.
//!
//! `every-commit` steps on each first-parent commit's diff. `paper` steps only on the
//! commits the authors' Code2LoRA pipeline keeps (code2lora 0.3.3, `process_repo`): those
//! where a Python test file gains an assertion key (see [`assertions`]) over its previous
//! version, on the diff of non-test `.py`/`.md`/`.rst` files since the previous such commit
//! (the state's `step_base`).
//!
//! The authors walk the whole first-parent history once, from the root, holding one key set
//! per path: renames move a set, deletions drop it. For a path that is a test file in both
//! the commit and its first parent (or the rename source) that set is the key set of the
//! parent's version, so each commit is decided here from (first parent tree, commit tree,
//! renames) alone, which lets any window of a walk be planned on its own. The one corner
//! where the running set differs: a test file renamed to a non-test path (or one git quotes)
//! carries its set there, and a later rename back to a test path compares with that old set;
//! here it compares with nothing, so such a commit is kept whenever it has any key.

pub mod assertions;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use evolora_model::encoder::qwen3::{is_test_path, SKIP_DIRS};
use evolora_model::hypernet::StepPolicy;
use git2::{Oid, Repository};

use crate::git::{self, GitError, TreeChange, GITLINK_MODE};
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

/// Decides how each commit steps the GRU. Under the paper policy a commit steps if the
/// authors' pipeline keeps it, and its input is the diff since the previous stepping commit,
/// starting from `step_base`. Each commit's changes against its first parent come from the
/// git CLI (on `threads` threads); each changed test file's blob is parsed once.
pub fn plan(git_dir: &Path, commits: &[Oid], policy: StepPolicy, step_base: Option<Oid>, globs: &[String], threads: usize) -> Result<Vec<Planned>, GitError> {
    if policy == StepPolicy::EveryCommit {
        return Ok(commits.iter().map(|&oid| Planned { oid, step: Step::FirstParent, manifest_changed: None }).collect());
    }
    let changes = first_parent_changes(git_dir, commits, threads)?;
    let keys = KeySets::of_changes(git_dir, &changes, threads)?;
    let mut base = step_base;
    Ok(commits
        .iter()
        .zip(&changes)
        .map(|(&oid, changed)| {
            let step = if keys.kept(changed) { Step::Since(base.replace(oid)) } else { Step::Skip };
            let manifest_changed = changed.iter().any(|c| touches_manifest(c, globs));
            Planned { oid, step, manifest_changed: Some(manifest_changed) }
        })
        .collect())
}

/// The commits the paper policy keeps among `commits` (each decided against its first
/// parent), in order: for tests, benchmarks and the reference comparison.
pub fn kept_commits(git_dir: &Path, commits: &[Oid], threads: usize) -> Result<Vec<Oid>, GitError> {
    let planned = plan(git_dir, commits, StepPolicy::Paper, None, &[], threads)?;
    Ok(planned.into_iter().filter(|p| matches!(p.step, Step::Since(_))).map(|p| p.oid).collect())
}

fn first_parent_changes(git_dir: &Path, commits: &[Oid], threads: usize) -> Result<Vec<Vec<TreeChange>>, GitError> {
    let repo = git::open(git_dir)?;
    let parents = commits.iter().map(|&oid| Ok(repo.find_commit(oid)?.parent_ids().next())).collect::<Result<Vec<_>, GitError>>()?;
    git::first_parent_changes(git_dir, commits, &parents, threads)
}

/// Whether a change counts as touching a dependency manifest: a content change (not a mode
/// change, not a submodule) of a file, on either side of a rename, whose name matches.
fn touches_manifest(change: &TreeChange, globs: &[String]) -> bool {
    let content_changed = change.old_blob != change.new_blob && change.old_mode != GITLINK_MODE && change.new_mode != GITLINK_MODE;
    content_changed && (git::matches_any(&change.path, globs) || git::matches_any(&change.old_path, globs))
}

/// A Python test file as the authors' pipeline tells them, by the path git prints: a `.py`
/// suffix in any case, no component among [`SKIP_DIRS`], "test" in some component in any
/// case. A path git quotes (control characters, `"`, `\`, non-ASCII) is printed quoted, ends
/// in `"`, and so is never one.
pub fn is_python_test_file(path: &str) -> bool {
    let quoted = path.chars().any(|c| c < ' ' || c == '"' || c == '\\' || c == '\u{7f}' || !c.is_ascii());
    let name = path.rsplit('/').next().unwrap_or(path);
    // The suffix is what follows the name's last dot, unless that dot starts or ends it.
    let suffix = name.rfind('.').filter(|&i| i > 0 && i + 1 < name.len()).map(|i| &name[i..]);
    !quoted && suffix.is_some_and(|s| s.eq_ignore_ascii_case(".py")) && !path.split('/').any(|part| SKIP_DIRS.contains(&part)) && is_test_path(path)
}

/// The key sets of the test-file blobs a plan's changes need, each parsed once; `None` for
/// an id that is not a readable blob (a submodule's commit).
struct KeySets(HashMap<Oid, Option<Arc<HashSet<assertions::AssertionKey>>>>);

impl KeySets {
    fn of_changes(git_dir: &Path, changes: &[Vec<TreeChange>], threads: usize) -> Result<Self, GitError> {
        let mut wanted = HashSet::new();
        for change in changes.iter().flatten() {
            if let Some((old, new)) = compared_blobs(change) {
                wanted.insert(new);
                wanted.extend(old);
            }
        }
        let wanted: Vec<Oid> = wanted.into_iter().collect();
        let mut sets = HashMap::with_capacity(wanted.len());
        let mut failed = None;
        ordered_map(&wanted, threads, 4 * threads, || git::open(git_dir), |repo, &blob| blob_keys(repo, blob), |i, r| match r {
            Ok(keys) => {
                sets.insert(wanted[i], keys.map(Arc::new));
                true
            }
            Err(e) => {
                failed = Some(e);
                false
            }
        });
        match failed {
            Some(e) => Err(e),
            None => Ok(KeySets(sets)),
        }
    }

    fn get(&self, blob: Oid) -> Option<&HashSet<assertions::AssertionKey>> {
        self.0.get(&blob).and_then(|s| s.as_deref())
    }

    /// Whether a commit with these changes is kept: some changed test file has a key its
    /// previous version lacks.
    fn kept(&self, changes: &[TreeChange]) -> bool {
        changes.iter().filter_map(compared_blobs).any(|(old, new)| {
            let Some(new) = self.get(new) else { return false };
            let old = old.and_then(|o| self.get(o));
            new.iter().any(|k| !old.is_some_and(|o| o.contains(k)))
        })
    }
}

/// For a change to a test file: the blob its keys are compared with (None: nothing, the
/// empty set) and its new blob. None for a change that is not one.
fn compared_blobs(change: &TreeChange) -> Option<(Option<Oid>, Oid)> {
    if change.status == b'D' || !is_python_test_file(&change.path) || change.new_mode == GITLINK_MODE {
        return None;
    }
    let had_keys = match change.status {
        b'A' => false,
        // A set moves with a rename only from a path that had one: a test file.
        b'R' | b'C' => is_python_test_file(&change.old_path),
        _ => true,
    };
    let old = (had_keys && change.old_mode != GITLINK_MODE && !change.old_blob.is_zero()).then_some(change.old_blob);
    Some((old, change.new_blob))
}

fn blob_keys(repo: &Result<Repository, GitError>, blob: Oid) -> Result<Option<HashSet<assertions::AssertionKey>>, GitError> {
    let repo = repo.as_ref().map_err(|e| GitError::NotARepository(e.to_string()))?;
    let blob = match repo.find_blob(blob) {
        Ok(b) => b,
        Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    Ok(Some(assertions::assertion_keys(&String::from_utf8_lossy(blob.content()))))
}

/// Where the next step's diff starts after a group whose commits stepped as `stepped` says
/// (oldest first), or `None` if the group leaves it where it was.
pub fn step_base_after(policy: StepPolicy, group: &[(Oid, bool)]) -> Option<Oid> {
    match policy {
        StepPolicy::EveryCommit => group.last().map(|(oid, _)| *oid),
        StepPolicy::Paper => group.iter().rev().find(|(_, stepped)| *stepped).map(|(oid, _)| *oid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_test_files_are_the_authors() {
        for path in ["tests/test_core.py", "pkg/core_test.py", "test/helpers.py", "Tests/Conftest.PY", "pkg/testing.py", "a/latest/x.py", "..py/test.py"] {
            assert!(is_python_test_file(path), "{path}");
        }
        for path in ["tests/data.json", "pkg/core.py", "build/tests/test_a.py", "tests/.venv/test_a.py", "test/.py", "test/x.py.", "tests/t\u{e9}st.py", "tests/a\"b.py", "tests/a\tb.py"] {
            assert!(!is_python_test_file(path), "{path}");
        }
    }

    /// A repository whose history is written by `git` commands, with fixed dates.
    struct History {
        _dir: tempfile::TempDir,
        work: std::path::PathBuf,
    }

    impl History {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let work = dir.path().to_path_buf();
            let h = History { _dir: dir, work };
            h.git(&["init", "-q", "-b", "main"]);
            h
        }

        fn git(&self, args: &[&str]) -> String {
            let out = std::process::Command::new("git")
                .arg("-C")
                .arg(&self.work)
                .args(["-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"])
                .args(args)
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_AUTHOR_DATE", "2024-01-01T00:00:00Z")
                .env("GIT_COMMITTER_DATE", "2024-01-01T00:00:00Z")
                .output()
                .unwrap();
            assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        }

        fn write(&self, path: &str, text: &str) {
            let file = self.work.join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, text).unwrap();
        }

        /// Commits everything; returns the commit's id.
        fn commit(&self, message: &str) -> Oid {
            self.git(&["add", "-A"]);
            self.git(&["commit", "-q", "--allow-empty", "-m", message]);
            Oid::from_str(&self.git(&["rev-parse", "HEAD"])).unwrap()
        }

        /// The messages of the commits the paper policy keeps on the first-parent history.
        fn kept(&self) -> Vec<String> {
            let git_dir = self.work.join(".git");
            let repo = git::open(&git_dir).unwrap();
            let tip = repo.head().unwrap().target().unwrap();
            let commits = git::first_parent_history(&repo, tip).unwrap();
            let kept = kept_commits(&git_dir, &commits, 2).unwrap();
            kept.iter().map(|&oid| repo.find_commit(oid).unwrap().message().unwrap_or_default().trim().to_owned()).collect()
        }
    }

    const TEST_V1: &str = "import pkg\n\n\ndef test_add():\n    assert pkg.add(1, 2) == 3\n";

    #[test]
    fn commits_are_kept_when_a_test_file_gains_an_assertion_key() {
        let h = History::new();
        h.write("pkg/__init__.py", "def add(a, b):\n    return a + b\n");
        h.write("tests/test_pkg.py", TEST_V1);
        h.commit("first test");
        h.write("pkg/__init__.py", "def add(a, b):\n    return b + a\n");
        h.commit("code only");
        h.write("tests/test_pkg.py", &format!("{TEST_V1}\n\ndef helper():\n    return 1\n"));
        h.commit("below the assertions");
        h.write("tests/test_pkg.py", &format!("import os\n{TEST_V1}"));
        h.commit("above an assertion");
        h.write("build/tests/test_gen.py", "assert 1 == 1\n");
        h.write("tests/t\u{e9}st_x.py", "assert 1 == 1\n");
        h.write("tests/data.txt", "assert 1 == 1\n");
        h.commit("not test files");
        h.write("tests/test_py2.py", "print 'hello'\nassert 1 == 1\n");
        h.commit("python 2");
        h.write("tests/test_py2.py", "print('hello')\nassert 1 == 1\n");
        h.commit("ported to python 3");
        assert_eq!(h.kept(), ["first test", "above an assertion", "ported to python 3"]);
    }

    #[test]
    fn renames_carry_keys_and_deletions_drop_them() {
        let h = History::new();
        let body: String = (0..40).map(|i| format!("def test_{i}():\n    assert f({i}) == {i}\n\n")).collect();
        h.write("tests/test_a.py", &body);
        h.write("pkg/__init__.py", "");
        h.commit("add");
        h.git(&["mv", "tests/test_a.py", "tests/test_b.py"]);
        h.write("tests/test_b.py", &format!("{body}\ndef helper():\n    pass\n"));
        h.commit("rename with an edit below");
        h.git(&["mv", "tests/test_b.py", "pkg/helpers_b.py"]);
        h.commit("rename to a non-test path");
        h.git(&["mv", "pkg/helpers_b.py", "tests/test_b.py"]);
        h.commit("rename back");
        h.git(&["rm", "-q", "tests/test_b.py"]);
        h.commit("delete");
        h.write("tests/test_b.py", &body);
        h.commit("add again");
        // The authors' running set would not keep "rename back" (the set went along to the
        // non-test path and came back); deciding from the first parent alone keeps it.
        assert_eq!(h.kept(), ["add", "rename back", "add again"]);
    }

    #[test]
    fn a_merge_is_compared_with_its_first_parent() {
        let h = History::new();
        h.write("tests/test_a.py", TEST_V1);
        h.commit("base");
        h.git(&["checkout", "-q", "-b", "side"]);
        h.write("tests/test_a.py", &format!("{TEST_V1}\n\ndef test_more():\n    assert 2 == 2\n"));
        h.commit("side assertion");
        h.git(&["checkout", "-q", "main"]);
        h.write("README.md", "hello\n");
        h.commit("docs");
        h.git(&["merge", "-q", "--no-ff", "-m", "merge side", "side"]);
        assert_eq!(h.kept(), ["base", "merge side"], "the side commit is not on the first-parent path");
    }

    #[test]
    fn the_plan_steps_kept_commits_from_the_previous_one() {
        let h = History::new();
        h.write("tests/test_a.py", TEST_V1);
        let a = h.commit("a");
        h.write("pkg/x.py", "x = 1\n");
        let b = h.commit("b");
        h.write("tests/test_a.py", &format!("{TEST_V1}    assert 1\n"));
        let c = h.commit("c");
        let git_dir = h.work.join(".git");
        let plan = plan(&git_dir, &[a, b, c], StepPolicy::Paper, None, &["*.py".to_owned()], 2).unwrap();
        let steps: Vec<Option<Option<Oid>>> = plan.iter().map(|p| if let Step::Since(base) = p.step { Some(base) } else { None }).collect();
        assert_eq!(steps, [Some(None), None, Some(Some(a))]);
        assert!(plan.iter().all(|p| p.manifest_changed == Some(true)));
        let from_b = plan_from(&git_dir, &[b, c], Some(a));
        assert!(matches!(from_b[1].step, Step::Since(Some(base)) if base == a), "a window planned on its own agrees");
    }

    fn plan_from(git_dir: &Path, commits: &[Oid], base: Option<Oid>) -> Vec<Planned> {
        plan(git_dir, commits, StepPolicy::Paper, base, &[], 1).unwrap()
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
