//! Every way a commit arrives: hooks in working and bare repositories (with a foreign hook
//! present), the watcher for what hooks miss (update-ref, reset), rewritten history (rebase,
//! amend, reset), merges, branch switches, and commits made while the daemon was down.
//! Final states are checked against git's own count of first-parent commits from the root
//! and, where the path was indirect, against a fresh daemon walking the same history.

mod util;

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use util::{Daemon, Repo, reference_digest};

fn project(root: &Path) -> Repo {
    let repo = Repo::init(&root.join("project"));
    repo.write("pkg/core.py", "def add(a, b):\n    return a + b\n");
    repo.write("tests/test_core.py", "from pkg.core import add\n\ndef test_add():\n    assert add(1, 2) == 3\n");
    repo.commit("initial");
    repo
}

fn register(daemon: &Daemon, path: &Path) {
    let out = daemon.cli(&["register", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// First-parent commits from the root to `tip`: the steps of a history-faithful state.
fn history_len(repo: &Repo, tip: &str) -> u64 {
    repo.git(&["rev-list", "--first-parent", "--count", tip]).parse().unwrap()
}

fn adapter_dirs(daemon: &Daemon) -> usize {
    std::fs::read_dir(daemon.state_dir.join("adapters"))
        .unwrap()
        .flat_map(|r| std::fs::read_dir(r.unwrap().path()).unwrap())
        .filter(|e| {
            let n = e.as_ref().unwrap().file_name().to_string_lossy().into_owned();
            !n.starts_with('.') && n != "current"
        })
        .count()
}


/// A daemon with the project registered through its hooks and settled at its first commit
/// (returned third).
fn started(root: &Path) -> (Daemon, Repo, String) {
    let daemon = Daemon::start(root);
    let repo = project(root);
    let origin = repo.head();
    register(&daemon, &repo.path);
    daemon.settled(&repo.path, "refs/heads/main", &origin);
    (daemon, repo, origin)
}

#[test]
fn a_foreign_hook_keeps_running_beside_ours() {
    let tmp = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(tmp.path());
    let repo = project(tmp.path());
    let marker = tmp.path().join("foreign-ran");
    let hook = repo.path.join(".git/hooks/post-commit");
    std::fs::write(&hook, format!("#!/bin/sh\necho ran >> '{}'\n", marker.display())).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    register(&daemon, &repo.path);
    daemon.settled(&repo.path, "refs/heads/main", &repo.head());
    repo.write("pkg/more.py", "import os\n");
    let tip = repo.commit("more");
    let r = daemon.settled(&repo.path, "refs/heads/main", &tip);
    assert_eq!(r["steps"], 2, "the root and the new commit");
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "ran\n", "the foreign hook ran once");
    let out = daemon.cli(&["hooks", "uninstall", repo.path.to_str().unwrap()]);
    assert!(out.status.success());
    assert_eq!(std::fs::read_to_string(&hook).unwrap(), format!("#!/bin/sh\necho ran >> '{}'\n", marker.display()));
}

#[test]
fn a_rebase_of_ten_commits_is_one_walk_and_one_adapter() {
    let tmp = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(tmp.path());
    let repo = project(tmp.path());
    let base = repo.head();
    repo.git(&["checkout", "-q", "-b", "feature"]);
    for i in 0..10 {
        repo.write(&format!("pkg/f{i}.py"), &format!("def f{i}():\n    return {i}\n"));
        repo.commit(&format!("feature {i}"));
    }
    register(&daemon, &repo.path);
    daemon.settled(&repo.path, "refs/heads/feature", &repo.head());
    repo.git(&["checkout", "-q", "main"]);
    repo.write("pkg/core.py", "def add(a, b):\n    return b + a\n");
    repo.commit("main moves");
    repo.git(&["checkout", "-q", "feature"]);
    daemon.settled(&repo.path, "refs/heads/feature", &repo.head());
    let before = adapter_dirs(&daemon);

    repo.git(&["rebase", "-q", "main"]);
    let tip = repo.head();
    let r = daemon.settled(&repo.path, "refs/heads/feature", &tip);
    std::thread::sleep(Duration::from_millis(600)); // let any late wake-up (watcher) land
    let r2 = daemon.settled(&repo.path, "refs/heads/feature", &tip);
    assert_eq!(r, r2, "late wake-ups change nothing");
    assert_eq!(adapter_dirs(&daemon), before + 1, "one regeneration for the whole rebase");
    assert_eq!(r["origin_commit"], base.as_str(), "walked afresh from the root: no restore point is on the rebased history");
    assert_eq!(r["walk"]["start"], "snapshot", "{r}");
    assert_eq!(r["steps"], history_len(&repo, &tip));
    assert_eq!(r["state_sha256"].as_str().unwrap(), reference_digest(tmp.path(), &repo, &base, &tip));
}

#[test]
fn an_amend_rebuilds_from_the_parent() {
    let tmp = tempfile::tempdir().unwrap();
    let (daemon, repo, _) = started(tmp.path());
    repo.write("pkg/a.py", "A = 1\n");
    let first = repo.commit("a");
    daemon.settled(&repo.path, "refs/heads/main", &first);
    repo.write("pkg/a.py", "A = 2\n");
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "--amend", "-m", "a, amended"]);
    let tip = repo.head();
    let r = daemon.settled(&repo.path, "refs/heads/main", &tip);
    let parent = repo.git(&["rev-parse", "HEAD~1"]);
    assert_eq!((r["walk"]["start"].as_str(), r["walk"]["from_commit"].as_str()), (Some("restored"), Some(parent.as_str())), "restored at the parent's restore point: {r}");
    assert_eq!(r["walk"]["walked"], 1, "only the amended commit is walked again");
    assert_eq!(r["steps"], 2);
    assert_eq!(r["state_sha256"].as_str().unwrap(), reference_digest(tmp.path(), &repo, &parent, &tip));
}

#[test]
fn a_merge_steps_once_on_the_first_parent_line() {
    let tmp = tempfile::tempdir().unwrap();
    let (daemon, repo, origin) = started(tmp.path());
    repo.git(&["checkout", "-q", "-b", "side"]);
    for i in 0..3 {
        repo.write(&format!("pkg/s{i}.py"), &format!("S{i} = {i}\n"));
        repo.commit(&format!("side {i}"));
    }
    repo.git(&["checkout", "-q", "main"]);
    repo.git(&["merge", "-q", "--no-ff", "-m", "merge side", "side"]);
    let tip = repo.head();
    let r = daemon.settled(&repo.path, "refs/heads/main", &tip);
    assert_eq!(r["steps"], 2, "the root, then the merge commit as one step; side commits are not walked");
    assert_eq!(r["steps"], history_len(&repo, &tip));
    assert_eq!(r["state_sha256"].as_str().unwrap(), reference_digest(tmp.path(), &repo, &origin, &tip));
}

#[test]
fn the_watcher_sees_update_ref_and_reset_that_no_hook_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let (daemon, repo, origin) = started(tmp.path());

    // Build commits without moving the branch (no hook fires), then move it with update-ref.
    let mut parent = origin.clone();
    for i in 0..4 {
        repo.write(&format!("pkg/u{i}.py"), &format!("U{i} = {i}\n"));
        repo.git(&["add", "-A"]);
        let tree = repo.git(&["write-tree"]);
        parent = repo.git(&["commit-tree", &tree, "-p", &parent, "-m", &format!("u{i}")]);
    }
    repo.git(&["update-ref", "refs/heads/main", &parent]);
    let r = daemon.settled(&repo.path, "refs/heads/main", &parent);
    assert_eq!(r["steps"], 5);

    repo.git(&["reset", "-q", "--hard", "HEAD~3"]);
    let tip = repo.head();
    let r = daemon.settled(&repo.path, "refs/heads/main", &tip);
    assert_eq!(r["origin_commit"], origin.as_str(), "history went backwards: restored, not started afresh");
    assert_eq!((r["walk"]["start"].as_str(), r["walk"]["from_commit"].as_str()), (Some("restored"), Some(origin.as_str())), "{r}");
    assert_eq!(r["steps"], 2);
}

#[test]
fn branches_keep_their_own_state_and_a_new_branch_forks_from_its_parent() {
    let tmp = tempfile::tempdir().unwrap();
    let (daemon, repo, _) = started(tmp.path());
    repo.write("pkg/m.py", "M = 1\n");
    let main_tip = repo.commit("on main");
    let main_state = daemon.settled(&repo.path, "refs/heads/main", &main_tip);

    repo.git(&["checkout", "-q", "-b", "topic"]);
    repo.write("pkg/t.py", "T = 1\n");
    let topic_tip = repo.commit("on topic");
    let topic = daemon.settled(&repo.path, "refs/heads/topic", &topic_tip);
    assert_eq!(topic["origin_commit"], main_state["origin_commit"], "forked from main's state, not a new snapshot");
    assert_eq!(topic["steps"], 3);
    assert!(daemon.log_text().contains("new branch: continuing the state at its fork point"), "forked, not walked afresh");

    repo.git(&["checkout", "-q", "main"]);
    let back = daemon.settled(&repo.path, "refs/heads/main", &main_tip);
    assert_eq!(back["state_sha256"], main_state["state_sha256"], "switching back redoes nothing");
    assert_eq!(back["steps"], 2);
    let reply = daemon.request(json!({"op": "adapter", "repo": repo.path}));
    assert_eq!(reply["commit"], main_tip.as_str(), "the adapter follows the checked-out branch: {reply}");
}

#[test]
fn commits_made_while_the_daemon_is_down_are_caught_up_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(tmp.path());
    let repo = project(tmp.path());
    let origin = repo.head();
    register(&daemon, &repo.path);
    daemon.settled(&repo.path, "refs/heads/main", &origin);
    daemon.signal_and_wait(libc::SIGTERM, Duration::from_secs(30));
    for i in 0..3 {
        repo.write(&format!("pkg/d{i}.py"), &format!("D{i} = {i}\n"));
        repo.commit(&format!("while down {i}")); // the hook finds no daemon and stays quiet
    }
    let tip = repo.head();
    daemon.restart();
    let r = daemon.settled(&repo.path, "refs/heads/main", &tip);
    assert_eq!(r["steps"], 4);
}

#[test]
fn a_push_to_a_bare_repository_arrives_through_post_receive() {
    let tmp = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(tmp.path());
    let work = project(tmp.path());
    let server = work.bare_clone_to(&tmp.path().join("server.git"));
    register(&daemon, &server);
    assert!(server.join("hooks/post-receive").exists());
    let origin = work.head();
    daemon.settled(&server, "refs/heads/main", &origin);

    work.git(&["remote", "add", "server", server.to_str().unwrap()]);
    for i in 0..2 {
        work.write(&format!("pkg/p{i}.py"), &format!("P{i} = {i}\n"));
        work.commit(&format!("pushed {i}"));
    }
    let tip = work.head();
    work.git(&["push", "-q", "server", "main"]);
    let r = daemon.settled(&server, "refs/heads/main", &tip);
    assert_eq!(r["steps"], 3);
    assert_eq!(r["state_sha256"].as_str().unwrap(), reference_digest(tmp.path(), &work, &origin, &tip));
}

#[test]
fn a_linked_worktree_follows_its_own_branch() {
    let tmp = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(tmp.path());
    let repo = project(tmp.path());
    register(&daemon, &repo.path);
    let main_tip = repo.head();
    daemon.settled(&repo.path, "refs/heads/main", &main_tip);
    let wt = tmp.path().join("wt");
    repo.git(&["worktree", "add", "-q", "-b", "wt-branch", wt.to_str().unwrap()]);
    let wt_repo = Repo { path: std::fs::canonicalize(&wt).unwrap() };
    wt_repo.write("pkg/wt.py", "W = 1\n");
    let tip = wt_repo.commit("in the worktree"); // the shared hooks directory fires
    let r = daemon.settled(&repo.path, "refs/heads/wt-branch", &tip);
    assert_eq!(r["steps"], 2, "forked from main's state: {r}");
    assert!(daemon.log_text().contains("new branch: continuing the state at its fork point"), "forked, not walked afresh");
    let reply = daemon.request(json!({"op": "adapter", "repo": wt_repo.path}));
    assert_eq!(reply["commit"], tip.as_str(), "asking from the worktree gives its branch's adapter: {reply}");
    let reply = daemon.request(json!({"op": "adapter", "repo": repo.path}));
    assert_eq!(reply["commit"], main_tip.as_str(), "the main work tree still gets main's: {reply}");
}

#[test]
fn a_fetch_then_fast_forward_arrives_once() {
    let tmp = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(tmp.path());
    let upstream = project(tmp.path());
    let work = upstream.clone_to(&tmp.path().join("work"));
    register(&daemon, &work.path);
    let origin = work.head();
    daemon.settled(&work.path, "refs/heads/main", &origin);
    for i in 0..3 {
        upstream.write(&format!("pkg/up{i}.py"), &format!("UP{i} = {i}\n"));
        upstream.commit(&format!("upstream {i}"));
    }
    let tip = upstream.head();
    work.git(&["fetch", "-q"]);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(daemon.repo_status(&work.path)["refs"][0]["last_commit"], origin.as_str(), "a fetch moves no followed ref");
    work.git(&["merge", "-q", "--ff-only", "origin/main"]);
    let r = daemon.settled(&work.path, "refs/heads/main", &tip);
    assert_eq!(r["steps"], 4);
}

#[test]
fn a_git_server_can_follow_configured_refs() {
    let tmp = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(tmp.path());
    let work = project(tmp.path());
    work.git(&["branch", "release"]);
    let server = work.bare_clone_to(&tmp.path().join("srv.git"));
    let out = daemon.cli(&["register", server.to_str().unwrap(), "--ref", "refs/heads/main", "--ref", "refs/heads/release"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let origin = work.head();
    daemon.settled(&server, "refs/heads/main", &origin);
    daemon.settled(&server, "refs/heads/release", &origin);
    work.git(&["checkout", "-q", "release"]);
    work.write("pkg/fix.py", "FIX = 1\n");
    let fix = work.commit("release fix");
    work.git(&["push", "-q", server.to_str().unwrap(), "release"]);
    let r = daemon.settled(&server, "refs/heads/release", &fix);
    assert_eq!(r["steps"], 2);
    let reply = daemon.request(json!({"op": "adapter", "repo": server, "ref": "refs/heads/release"}));
    assert_eq!(reply["commit"], fix.as_str(), "{reply}");
    let main = daemon.request(json!({"op": "adapter", "repo": server, "ref": "refs/heads/main"}));
    assert_eq!(main["commit"], origin.as_str(), "{main}");
}
