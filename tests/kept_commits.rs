//! The `paper` step policy keeps exactly the commits the authors' pipeline keeps, on a real
//! history: psf/cachecontrol (a git bundle in tests/fixtures/kept-commits), compared with the
//! independent Python statement of the rule, tests/reference/kept_commits.py, which uses
//! Python's own parser.

use std::path::{Path, PathBuf};
use std::process::Command;

use evolora_daemon::git;
use evolora_daemon::job::steps::{self, Step};
use evolora_model::hypernet::StepPolicy;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn clone_fixture(into: &Path) -> PathBuf {
    let bundle = root().join("tests/fixtures/kept-commits/cachecontrol.bundle");
    let repo = into.join("cachecontrol");
    let out = Command::new("git").arg("clone").arg("-q").arg(&bundle).arg(&repo).env("GIT_CONFIG_GLOBAL", "/dev/null").env("GIT_CONFIG_NOSYSTEM", "1").output().unwrap();
    assert!(out.status.success(), "git clone {}: {}", bundle.display(), String::from_utf8_lossy(&out.stderr));
    repo
}

/// The fixture cloned under `into`: its work tree, git dir and first-parent history.
fn fixture_history(into: &Path) -> (PathBuf, PathBuf, Vec<git2::Oid>) {
    let work = clone_fixture(into);
    let git_dir = work.join(".git");
    let repo = git::open(&git_dir).unwrap();
    let commits = git::first_parent_history(&repo, repo.head().unwrap().target().unwrap()).unwrap();
    (work, git_dir, commits)
}

#[test]
fn the_paper_policy_keeps_what_the_reference_keeps_on_cachecontrol() {
    let dir = tempfile::tempdir().unwrap();
    let (work, git_dir, commits) = fixture_history(dir.path());
    assert_eq!(commits.len(), 456);

    let plan = steps::plan(&git_dir, &commits, StepPolicy::Paper, None, &[], 4).unwrap();
    let ours: Vec<String> = plan.iter().filter(|p| matches!(p.step, Step::Since(_))).map(|p| p.oid.to_string()).collect();

    let script = root().join("tests/reference/kept_commits.py");
    let out = Command::new("python3").arg(&script).arg(&work).output().expect("python3 is needed by the tests (./scripts/test.sh installs it)");
    assert!(out.status.success(), "{}: {}", script.display(), String::from_utf8_lossy(&out.stderr));
    let reference: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect();

    assert_eq!(reference.len(), 104, "the authors' pipeline keeps 104 commits of this history");
    let missing: Vec<_> = reference.iter().filter(|c| !ours.contains(c)).collect();
    let extra: Vec<_> = ours.iter().filter(|c| !reference.contains(c)).collect();
    assert!(missing.is_empty() && extra.is_empty(), "kept by the reference only: {missing:?}; by evolora only: {extra:?}");
    assert_eq!(ours, reference, "same commits, same order");
}

#[test]
fn windows_of_the_history_planned_on_their_own_agree_with_the_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (_, git_dir, commits) = fixture_history(dir.path());
    let whole = steps::kept_commits(&git_dir, &commits, 2).unwrap();
    let mut pieces = Vec::new();
    for window in commits.chunks(37) {
        pieces.extend(steps::kept_commits(&git_dir, window, 1).unwrap());
    }
    assert_eq!(pieces, whole);
}
