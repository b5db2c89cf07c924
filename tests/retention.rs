//! Which adapter versions stay on disk: the newest K per repository, every ref's current
//! one, pinned ones, and a global disk budget that evicts the least recently queried.

mod util;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use util::{Daemon, Repo};

/// Commits a change and waits for the ref's adapter to cover it; returns the commit.
fn commit_and_adapt(daemon: &Daemon, repo: &Repo, at: &Path, refname: &str, text: &str) -> String {
    let r = Repo { path: at.to_path_buf() };
    r.write("pkg/m.py", text);
    let tip = r.commit(text);
    daemon.settled(&repo.path, refname, &tip);
    tip
}

fn versions(daemon: &Daemon, repo: &Repo) -> Vec<Value> {
    daemon.repo_status(&repo.path)["adapters"].as_array().cloned().unwrap()
}

fn project(root: &Path, name: &str) -> Repo {
    Repo::with_file(&root.join(name), "pkg/__init__.py", "")
}

#[test]
fn newest_k_per_repository_never_a_current_or_pinned_one() {
    let tmp = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_with_config(tmp.path(), "keep_adapters = 1\n");
    let repo = project(tmp.path(), "project");
    daemon.register_and_wait(&repo);
    let key = daemon.repo_status(&repo.path)["repo_key"].as_str().unwrap().to_owned();

    // A second branch in a linked worktree: its current adapter is not the newest version.
    let wt = tmp.path().join("wt");
    repo.git(&["worktree", "add", "-q", "-b", "feature", wt.to_str().unwrap()]);
    let wt = std::fs::canonicalize(&wt).unwrap();
    let f1 = commit_and_adapt(&daemon, &repo, &wt, "refs/heads/feature", "F = 1\n");
    let m1 = commit_and_adapt(&daemon, &repo, &repo.path, "refs/heads/main", "M = 1\n");
    let m2 = commit_and_adapt(&daemon, &repo, &repo.path, "refs/heads/main", "M = 2\n");
    assert_eq!(daemon.versions_on_disk(&key), BTreeSet::from([f1.clone(), m2.clone()]), "the feature branch's current adapter survives K = 1");

    // Pin main's current adapter (by default) and move on twice: it stays.
    let out = daemon.cli(&["pin", repo.path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&m2), "pin names the directory");
    let m3 = commit_and_adapt(&daemon, &repo, &repo.path, "refs/heads/main", "M = 3\n");
    let m4 = commit_and_adapt(&daemon, &repo, &repo.path, "refs/heads/main", "M = 4\n");
    assert_eq!(daemon.versions_on_disk(&key), BTreeSet::from([f1.clone(), m2.clone(), m4.clone()]));
    let pinned: Vec<Value> = versions(&daemon, &repo).into_iter().filter(|v| v["pinned"] == true).collect();
    assert_eq!(pinned.len(), 1);
    assert_eq!(pinned[0]["dir"], m2.as_str());

    // Unpin by commit prefix; the next publish prunes it.
    let reply = daemon.request(json!({"op": "unpin", "repo": repo.path, "adapter": &m2[..9]}));
    assert_eq!(reply["pinned"], false, "{reply}");
    let m5 = commit_and_adapt(&daemon, &repo, &repo.path, "refs/heads/main", "M = 5\n");
    assert_eq!(daemon.versions_on_disk(&key), BTreeSet::from([f1.clone(), m5]));
    assert!(!daemon.versions_on_disk(&key).contains(&m1) && !daemon.versions_on_disk(&key).contains(&m3));

    // The feature branch is deleted: its state goes, and its adapter is prunable again.
    repo.git(&["worktree", "remove", wt.to_str().unwrap()]);
    repo.git(&["branch", "-D", "feature"]);
    let m6 = commit_and_adapt(&daemon, &repo, &repo.path, "refs/heads/main", "M = 6\n");
    let refs = daemon.repo_status(&repo.path)["refs"].as_array().cloned().unwrap();
    assert_eq!(refs.len(), 1, "only main's state is left: {refs:?}");
    assert_eq!(daemon.versions_on_disk(&key), BTreeSet::from([m6]));

    let reply = daemon.request(json!({"op": "pin", "repo": repo.path, "adapter": "no-such-version"}));
    assert_eq!(reply["error"]["code"], "no_adapter", "{reply}");
}

#[test]
fn a_disk_budget_evicts_the_least_recently_queried_first() {
    let tmp = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start_with_config(tmp.path(), "keep_adapters = 10\n[serve]\ngrace_secs = 0\n");
    let x = project(tmp.path(), "x");
    let y = project(tmp.path(), "y");
    // Times are kept in seconds: a pause between phases orders them.
    let tick = || std::thread::sleep(Duration::from_millis(1100));
    daemon.register_and_wait(&x); // X1, the oldest version
    let x1 = x.head();
    tick();
    daemon.register_and_wait(&y); // Y1
    let y1 = y.head();
    let y2 = commit_and_adapt(&daemon, &y, &y.path, "refs/heads/main", "Y = 2\n");
    tick();
    let reply = daemon.request(json!({"op": "adapter", "repo": x.path})); // X1 is in use
    assert_eq!(reply["commit"], x1.as_str());
    tick();
    let x2 = commit_and_adapt(&daemon, &x, &x.path, "refs/heads/main", "X = 2\n");

    let key = |r: &Repo| daemon.repo_status(&r.path)["repo_key"].as_str().unwrap().to_owned();
    let (kx, ky) = (key(&x), key(&y));
    let bytes = |r: &Repo, dir: &str| versions(&daemon, r).iter().find(|v| v["dir"] == dir).unwrap()["bytes"].as_u64().unwrap();
    let (bx1, bx2, by1, by2) = (bytes(&x, &x1), bytes(&x, &x2), bytes(&y, &y1), bytes(&y, &y2));
    for b in [bx1, bx2, by1, by2] {
        assert!(b > 1_000_000 && b.abs_diff(bx1) < 1000, "sizes are recorded: {bx1} {bx2} {by1} {by2}");
    }

    // Room for all but one version: the oldest by creation is X1, but it was queried after
    // Y1 was published, so Y1 goes.
    daemon.reconfigure(&format!("keep_adapters = 10\nadapter_disk_budget = {}\n[serve]\ngrace_secs = 0\n", bx1 + bx2 + by2 + 100));
    daemon.wait_for(Duration::from_secs(30), "an eviction", || (!daemon.versions_on_disk(&ky).contains(&y1)).then_some(()));
    assert_eq!(daemon.versions_on_disk(&kx), BTreeSet::from([x1.clone(), x2.clone()]));
    assert_eq!(daemon.versions_on_disk(&ky), BTreeSet::from([y2.clone()]));
    assert_eq!(versions(&daemon, &y).len(), 1, "the evicted version's record goes with it");

    // A budget nothing fits in: current and pinned versions stay, and the log says so.
    let out = daemon.cli(&["pin", x.path.to_str().unwrap(), &x1]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    daemon.reconfigure("keep_adapters = 10\nadapter_disk_budget = \"1 kB\"\n[serve]\ngrace_secs = 0\n");
    daemon.wait_for(Duration::from_secs(30), "the over-budget warning", || {
        daemon.log_text().contains("exceeded by current and pinned adapters alone").then_some(())
    });
    assert_eq!(daemon.versions_on_disk(&kx), BTreeSet::from([x1.clone(), x2.clone()]));
    assert_eq!(daemon.versions_on_disk(&ky), BTreeSet::from([y2.clone()]));

    // Unpinned, X1 goes at the next start (the budget is applied on start too).
    let out = daemon.cli(&["unpin", x.path.to_str().unwrap(), &x1]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(daemon.signal_and_wait(libc::SIGTERM, Duration::from_secs(30)).success());
    daemon.restart();
    daemon.wait_for(Duration::from_secs(30), "X1's eviction", || (daemon.versions_on_disk(&kx) == BTreeSet::from([x2.clone()])).then_some(()));
    assert_eq!(daemon.request(json!({"op": "adapter", "repo": x.path}))["commit"], x2.as_str());
}
