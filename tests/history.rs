//! History-faithful states: registration walks the whole first-parent history, a kill -9
//! mid-walk resumes to the same bits, and rewrites (rebase, amend, reset, force push, a
//! branch from an old commit) land on the bits a fresh registration of the resulting history
//! reaches, re-walking only from the newest restore point on the new history.

mod util;

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use util::{Daemon, Repo};

const MAIN: &str = "refs/heads/main";

/// Restore points every 5 walked commits, small transaction groups.
const CONFIG: &str = "step_group = 8\n[history]\nrestore_every = 5\nrestore_points = 64\n";

/// A repository with one commit, then `n - 1` more.
fn repo_with_history(path: &Path, n: usize) -> Repo {
    let repo = Repo::with_file(path, "pkg/__init__.py", "VERSION = 1\n");
    if n > 1 {
        repo.append_history(n - 1);
    }
    repo
}

fn commits(repo: &Repo) -> u64 {
    repo.git(&["rev-list", "--first-parent", "--count", "HEAD"]).parse().unwrap()
}

/// What a fresh daemon reaches registering a clone of `repo` at its current HEAD.
fn fresh_registration(root: &Path, repo: &Repo, config: &str) -> Value {
    let dir = root.join(format!("fresh-{}", &repo.head()[..10]));
    let clone = repo.clone_to(&dir.join("repo"));
    // Followed as `main`, whatever branch the source has checked out.
    clone.git(&["checkout", "-q", "-B", "main", &repo.head()]);
    let daemon = Daemon::start_with_config(&dir, config);
    let out = daemon.cli(&["register", "--no-hooks", clone.path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    daemon.settled(&clone.path, MAIN, &clone.head())
}

fn notify_and_settle(daemon: &Daemon, repo: &Path, refname: &str, tip: &str) -> Value {
    daemon.request(json!({"op": "notify", "repo": repo}));
    daemon.settled(repo, refname, tip)
}

#[test]
fn registration_walks_the_whole_history_like_a_daemon_that_followed_it() {
    let root = tempfile::tempdir().unwrap();
    let repo = repo_with_history(&root.path().join("repo"), 120);
    let tip = repo.head();

    // A daemon that followed the repository from its first commit, in uneven batches.
    let followed_dir = root.path().join("followed");
    let first = repo.git(&["rev-list", "--max-parents=0", "HEAD"]);
    let follower = repo.clone_to(&followed_dir.join("repo"));
    follower.git(&["reset", "-q", "--hard", &first]);
    let daemon = Daemon::start_with_config(&followed_dir, CONFIG);
    let out = daemon.cli(&["register", "--no-hooks", follower.path.to_str().unwrap()]);
    assert!(out.status.success());
    let r = daemon.settled(&follower.path, MAIN, &first);
    assert_eq!((r["steps"].as_u64(), r["walked"].as_u64()), (Some(1), Some(1)), "the root is stepped against the empty tree: {r}");
    for back in [100, 61, 60, 7, 1, 0] {
        let at = repo.git(&["rev-parse", &format!("{tip}~{back}")]);
        follower.git(&["reset", "-q", "--hard", &at]);
        notify_and_settle(&daemon, &follower.path, MAIN, &at);
    }
    let followed = daemon.repo_status(&follower.path)["refs"][0].clone();

    // A daemon registering the whole history at once.
    let fresh = fresh_registration(root.path(), &repo, CONFIG);
    assert_eq!(fresh["steps"].as_u64(), Some(commits(&repo)), "N first-parent commits give N steps: {fresh}");
    assert_eq!(fresh["walked"].as_u64(), Some(commits(&repo)));
    assert_eq!(fresh["origin_commit"], first.as_str(), "h₀ from the root's snapshot");
    assert_eq!(fresh["state_sha256"], followed["state_sha256"], "the same bits however the history arrived");
    assert_eq!(fresh["walk"]["start"], "snapshot");
    assert_eq!(fresh["walk"]["walked"].as_u64(), Some(commits(&repo)));
    assert!(fresh["restore_points"].as_u64().unwrap() >= 120 / 5, "a point every 5 commits: {fresh}");
}

#[test]
fn a_kill_during_the_first_walk_resumes_to_the_same_bits() {
    let root = tempfile::tempdir().unwrap();
    let repo = repo_with_history(&root.path().join("repo"), 1500);
    let tip = repo.head();
    let config = "step_group = 4\n";
    let mut daemon = Daemon::start_with_config(&root.path().join("d"), config);
    let out = daemon.cli(&["register", "--no-hooks", repo.path.to_str().unwrap()]);
    assert!(out.status.success());
    // Kill once part of the walk is durable, and before it ends.
    let seen = daemon.wait_for(Duration::from_secs(120), "the first walk under way", || {
        let s = daemon.repo_status(&repo.path);
        let w = s["refs"][0]["walk"].clone();
        (w["running"] == true && w["walked"].as_u64().unwrap_or(0) >= 40).then_some(w)
    });
    assert!(seen["to_walk"].as_u64() == Some(1500) && seen["first"] == true, "{seen}");
    // The adapter reply says the walk is under way instead of a bare no_adapter.
    let reply = daemon.request(json!({"op": "adapter", "repo": repo.path}));
    assert_eq!(reply["error"]["code"], "first_walk", "{reply}");
    assert!(reply["error"]["message"].as_str().unwrap().contains("of 1500 commits walked"), "{reply}");
    daemon.signal_and_wait(libc::SIGKILL, Duration::from_secs(10));

    daemon.restart();
    let resumed = daemon.settled(&repo.path, MAIN, &tip);
    assert_eq!(resumed["walk"]["start"], "resumed", "{resumed}");
    assert!(resumed["walk"]["to_walk"].as_u64().unwrap() < 1500, "only what was not durable is walked again: {resumed}");
    let fresh = fresh_registration(root.path(), &repo, config);
    assert_eq!(resumed["steps"].as_u64(), Some(1500));
    assert_eq!(resumed["state_sha256"], fresh["state_sha256"]);
}

/// Rewrites `count` commits below the tip by amending each one's message.
fn rewrite_last(repo: &Repo, count: usize, tag: &str) {
    repo.git(&["rebase", "-q", &format!("HEAD~{count}"), "--exec", &format!("git commit -q --amend -m '{tag}'")]);
}

#[test]
fn rewrites_restore_the_newest_restore_point_and_match_a_fresh_registration() {
    let root = tempfile::tempdir().unwrap();
    let repo = repo_with_history(&root.path().join("repo"), 300);
    let daemon = Daemon::start_with_config(&root.path().join("d"), CONFIG);
    let out = daemon.cli(&["register", "--no-hooks", repo.path.to_str().unwrap()]);
    assert!(out.status.success());
    daemon.settled(&repo.path, MAIN, &repo.head());

    let check = |what: &str, rewalk_at_most: u64, exact: Option<u64>| {
        let r = notify_and_settle(&daemon, &repo.path, MAIN, &repo.head());
        assert_eq!(r["walk"]["start"], "restored", "{what}: {r}");
        let rewalked = r["walk"]["walked"].as_u64().unwrap();
        assert!(rewalked <= rewalk_at_most, "{what}: re-walked {rewalked} commits: {r}");
        if let Some(n) = exact {
            assert_eq!(rewalked, n, "{what}");
        }
        assert_eq!(r["steps"].as_u64(), Some(commits(&repo)), "{what}");
        let fresh = fresh_registration(root.path(), &repo, CONFIG);
        assert_eq!(r["state_sha256"], fresh["state_sha256"], "{what}: the same bits as a fresh registration");
        let log = daemon.log_text();
        assert!(log.contains(&format!("re-walking {rewalked} commits")), "{what}: the log says how much was re-walked");
    };

    // Points sit every 5 walked commits, so a rebase of the last 10 of 300 resumes at 290.
    rewrite_last(&repo, 10, "rebased");
    check("a rebase of the last 10 commits", 10, Some(10));

    repo.git(&["commit", "-q", "--amend", "-m", "amended"]);
    check("an amend", 5, None);

    repo.git(&["reset", "-q", "--hard", "HEAD~5"]);
    repo.write("pkg/after_reset.py", "X = 1\n");
    repo.commit("after reset 1");
    repo.write("pkg/after_reset.py", "X = 2\n");
    repo.commit("after reset 2");
    check("a reset --hard HEAD~5 and two new commits", 2 + 5, None);
}

#[test]
fn a_force_push_to_a_bare_repository_restores_and_a_branch_from_an_old_commit_forks() {
    let root = tempfile::tempdir().unwrap();
    let work = repo_with_history(&root.path().join("work"), 200);
    let bare = work.bare_clone_to(&root.path().join("served.git"));
    work.git(&["remote", "add", "served", bare.to_str().unwrap()]);
    let daemon = Daemon::start_with_config(&root.path().join("d"), CONFIG);
    let out = daemon.cli(&["register", "--no-hooks", bare.to_str().unwrap()]);
    assert!(out.status.success());
    daemon.settled(&bare, MAIN, &work.head());

    rewrite_last(&work, 12, "force-pushed");
    work.git(&["push", "-q", "--force", "served", "main"]);
    let r = notify_and_settle(&daemon, &bare, MAIN, &work.head());
    assert_eq!(r["walk"]["start"], "restored", "{r}");
    assert!(r["walk"]["walked"].as_u64().unwrap() <= 12 + 5, "{r}");
    let fresh = fresh_registration(root.path(), &work, CONFIG);
    assert_eq!(r["state_sha256"], fresh["state_sha256"], "force push: the same bits as a fresh registration");

    // A branch from an old commit, followed explicitly: it forks from main's restore point
    // at the fork point instead of walking from the root.
    let old = work.git(&["rev-parse", "HEAD~100"]);
    work.git(&["checkout", "-q", "-b", "topic", &old]);
    work.write("pkg/topic.py", "T = 1\n");
    let topic_tip = work.commit("topic work");
    work.git(&["push", "-q", "served", "topic"]);
    let out = daemon.cli(&["register", "--no-hooks", "--ref", MAIN, "--ref", "refs/heads/topic", bare.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let t = notify_and_settle(&daemon, &bare, "refs/heads/topic", &topic_tip);
    assert_eq!(t["walk"]["start"], "forked", "{t}");
    assert!(t["walk"]["walked"].as_u64().unwrap() <= 1 + 5, "walked from the fork point: {t}");
    let fresh = fresh_registration(root.path(), &work, CONFIG);
    assert_eq!(fresh["steps"].as_u64(), Some(commits(&work)));
    assert_eq!(t["state_sha256"], fresh["state_sha256"], "a branch from an old commit: the same bits as a fresh registration");
}

#[test]
fn awkward_histories_keep_their_names() {
    let root = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_with_config(&root.path().join("d"), CONFIG);

    // An empty repository: registered, nothing to walk, said so.
    let empty = Repo::init(&root.path().join("empty"));
    let out = daemon.cli(&["register", "--no-hooks", "--wait", empty.path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no commits"), "{}", String::from_utf8_lossy(&out.stdout));

    // A shallow clone: the walk starts at the oldest commit present, and says so.
    let full = repo_with_history(&root.path().join("full"), 60);
    let shallow = root.path().join("shallow");
    util::git_in(root.path(), &["clone", "-q", "--depth", "20", &format!("file://{}", full.path.display()), shallow.to_str().unwrap()]);
    let shallow = Repo { path: std::fs::canonicalize(&shallow).unwrap() };
    let out = daemon.cli(&["register", "--no-hooks", "--wait", shallow.path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = daemon.settled(&shallow.path, MAIN, &shallow.head());
    assert_eq!(r["steps"].as_u64(), Some(20), "only the commits present are walked: {r}");
    assert!(daemon.log_text().contains("shallow clone"), "the log says the history is cut");

    // A root brought in by merging an unrelated history: the first-parent walk passes the
    // merge, whose diff carries the other history's files.
    let repo = repo_with_history(&root.path().join("merged"), 30);
    let other = Repo::with_file(&root.path().join("other"), "vendor/lib.py", "def lib():\n    return 1\n");
    repo.git(&["fetch", "-q", other.path.to_str().unwrap(), "main:other"]);
    repo.git(&["merge", "-q", "--allow-unrelated-histories", "-m", "merge unrelated", "other"]);
    let out = daemon.cli(&["register", "--no-hooks", "--wait", repo.path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = daemon.settled(&repo.path, MAIN, &repo.head());
    assert_eq!(r["steps"].as_u64(), Some(31), "30 commits and the merge: {r}");
    let fresh = fresh_registration(root.path(), &repo, CONFIG);
    assert_eq!(r["state_sha256"], fresh["state_sha256"]);
}

#[test]
fn history_settings_bound_or_skip_the_walk() {
    let root = tempfile::tempdir().unwrap();
    let repo = repo_with_history(&root.path().join("repo"), 50);
    let tip = repo.head();

    let at_tip = Daemon::start_with_config(&root.path().join("tip"), "[history]\nfrom = \"tip\"\n");
    at_tip.cli(&["register", "--no-hooks", repo.path.to_str().unwrap()]);
    let r = at_tip.settled(&repo.path, MAIN, &tip);
    assert_eq!((r["steps"].as_u64(), r["origin_commit"].as_str()), (Some(0), Some(tip.as_str())), "from = tip: today's snapshot at the tip");

    let config = format!("[history]\nlast = 10\n[[repo]]\npath = \"{}\"\n[repo.history]\nlast = 7\n", repo.path.display());
    let bounded = Daemon::start_with_config(&root.path().join("bounded"), &config);
    let out = bounded.cli(&["register", "--no-hooks", "--wait", repo.path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("7 steps over 7 commits"), "{}", String::from_utf8_lossy(&out.stdout));
    let r = bounded.settled(&repo.path, MAIN, &tip);
    assert_eq!(r["origin_commit"], repo.git(&["rev-parse", "HEAD~6"]).as_str(), "the repository's override wins: {r}");

    let bad = root.path().join("bad.toml");
    std::fs::write(&bad, "[history]\nfrom = \"tip\"\nlast = 3\n").unwrap();
    let out = std::process::Command::new(util::BIN)
        .args(["daemon", "--state-dir"])
        .arg(root.path().join("bad-state"))
        .arg("--socket")
        .arg(root.path().join("bad.sock"))
        .arg("--config")
        .arg(&bad)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() && text.contains("mean nothing with from = \"tip\""), "a contradiction is refused by name: {text}");
}
