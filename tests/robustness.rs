//! Bad input and bad luck: a repository deleted while registered, a disk that fills while an
//! adapter is published, a corrupt or newer-version database. Each is named, nothing is lost,
//! and the daemon keeps serving the other repositories.

mod util;

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use util::{Daemon, Repo};

fn project(root: &Path, name: &str) -> Repo {
    Repo::with_file(&root.join(name), "pkg/core.py", &format!("def {name}(x):\n    return x\n"))
}

#[test]
fn a_deleted_repository_is_reported_and_the_others_keep_going() {
    let tmp = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(tmp.path());
    let gone = project(tmp.path(), "gone");
    let alive = project(tmp.path(), "alive");
    daemon.register_and_wait(&gone);
    daemon.register_and_wait(&alive);
    std::fs::remove_dir_all(&gone.path).unwrap();

    // Startup and wake-ups visit every repository; the missing one must not stop the rest.
    let all = daemon.request(json!({"op": "status"}));
    assert_eq!(all["repos"].as_array().unwrap().len(), 2);
    alive.write("pkg/more.py", "import os\n");
    let tip = alive.commit("more");
    let reply = daemon.request(json!({"op": "adapter", "repo": alive.path, "wait_ms": 30000}));
    assert_eq!(reply["commit"], tip.as_str(), "{reply}");

    // A wake-up for the deleted one: the path no longer resolves, and says so.
    let reply = daemon.request(json!({"op": "notify", "repo": gone.path}));
    assert_eq!(reply["error"]["code"], "not_a_repository", "{reply}");
    // A daemon restart visits it too and records why it cannot.
    let mut daemon = daemon;
    daemon.signal_and_wait(libc::SIGTERM, Duration::from_secs(30));
    daemon.restart();
    let status = daemon.wait_for(Duration::from_secs(30), "the missing repository's error", || {
        let all = daemon.request(json!({"op": "status"}));
        all["repos"].as_array().unwrap().iter().find(|r| r["error"].is_string()).cloned()
    });
    assert!(status["error"].as_str().unwrap().contains("gone or unreadable"), "{status}");
    assert!(status["git_dir"].as_str().unwrap().contains("gone"), "{status}");
}

#[test]
fn a_full_disk_while_publishing_keeps_the_previous_adapter_current() {
    let tmp = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(tmp.path());
    let a = project(tmp.path(), "a");
    let b = project(tmp.path(), "b");
    daemon.register_and_wait(&a);
    daemon.register_and_wait(&b);
    let before = daemon.request(json!({"op": "adapter", "repo": a.path}));
    let before_path = before["path"].as_str().unwrap().to_owned();
    daemon.signal_and_wait(libc::SIGTERM, Duration::from_secs(30));

    // Room for the database, not for a 35 MB adapter.
    daemon.file_size_limit = Some(4 << 20);
    daemon.restart();
    a.write("pkg/new.py", "import json\n");
    let tip = a.commit("new module");
    daemon.request(json!({"op": "notify", "repo": a.path}));
    let s = daemon.wait_for(Duration::from_secs(60), "the failed publish", || {
        let s = daemon.repo_status(&a.path);
        (s["refs"][0]["last_commit"] == tip.as_str() && s["error"].is_string() && s["pending"] == false).then_some(s)
    });
    assert!(s["error"].as_str().unwrap().contains("adapter"), "{s}");
    let reply = daemon.request(json!({"op": "adapter", "repo": a.path}));
    assert_eq!(reply["path"], before_path.as_str(), "the previous adapter stays current: {reply}");
    assert_eq!(reply["covers_tip"], false);
    util::assert_complete_adapter(Path::new(&before_path), 24 * 7 * 2);
    let leftovers: Vec<_> = std::fs::read_dir(Path::new(&before_path).parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "a failed write cleans up after itself: {leftovers:?}");
    // The other repository is still served.
    let other = daemon.request(json!({"op": "adapter", "repo": b.path}));
    assert_eq!(other["ok"], true, "{other}");

    // Space comes back: the unadapted commit is published without a new commit.
    daemon.signal_and_wait(libc::SIGTERM, Duration::from_secs(30));
    daemon.file_size_limit = None;
    daemon.restart();
    let reply = daemon.request(json!({"op": "adapter", "repo": a.path, "wait_ms": 30000}));
    assert_eq!(reply["commit"], tip.as_str(), "{reply}");
}

fn start_fails(root: &Path) -> String {
    let mut child = std::process::Command::new(util::BIN)
        .args(["daemon", "--preset", "tiny", "--state-dir"])
        .arg(root.join("state"))
        .arg("--socket")
        .arg(root.join("run/evolora.sock"))
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the daemon started on a database it must refuse");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "the daemon must refuse this database");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn corrupt_and_future_databases_are_refused_with_the_way_out() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let mut daemon = Daemon::start(tmp.path());
        let a = project(tmp.path(), "a");
        daemon.register_and_wait(&a);
        daemon.signal_and_wait(libc::SIGTERM, Duration::from_secs(30));
    }
    let db = tmp.path().join("state/db");

    // A newer schema than this build knows.
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&db).unwrap() {
        let e = entry.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), copy.path().join(e.file_name())).unwrap();
        }
    }
    {
        let sled_db = sled::open(&db).unwrap();
        sled_db.open_tree("meta").unwrap().insert("schema_version", &9u32.to_be_bytes()).unwrap();
        sled_db.flush().unwrap();
    }
    let err = start_fails(tmp.path());
    assert!(err.contains("schema version 9") && err.contains("evolora state rebuild"), "{err}");

    // Garbage where the log should be.
    std::fs::remove_dir_all(&db).unwrap();
    std::fs::create_dir_all(&db).unwrap();
    for entry in std::fs::read_dir(copy.path()).unwrap() {
        std::fs::copy(entry.as_ref().unwrap().path(), db.join(entry.unwrap().file_name())).unwrap();
    }
    let log = db.join("db");
    let len = std::fs::metadata(&log).unwrap().len() as usize;
    let garbage: Vec<u8> = (0..len).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(&log, garbage).unwrap();
    let err = start_fails(tmp.path());
    assert!(err.contains("evolora state rebuild"), "{err}");
}

#[test]
fn state_rebuild_recreates_the_database_from_git_and_the_adapters() {
    let tmp = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(tmp.path());
    let a = project(tmp.path(), "a");
    daemon.register_and_wait(&a);
    for i in 0..4 {
        a.write(&format!("pkg/m{i}.py"), &format!("import os\n\ndef m{i}():\n    return os.getcwd()\n"));
        a.commit(&format!("m{i}"));
    }
    let tip = a.head();
    let before = daemon.wait_for(Duration::from_secs(60), "the adapter at the tip", || {
        let s = daemon.repo_status(&a.path);
        (s["refs"][0]["adapter_commit"] == tip.as_str() && s["pending"] == false).then_some(s)
    });
    daemon.signal_and_wait(libc::SIGTERM, Duration::from_secs(30));

    // The database is lost.
    std::fs::remove_dir_all(daemon.state_dir.join("db")).unwrap();
    let out = std::process::Command::new(util::BIN)
        .args(["state", "rebuild", "--preset", "tiny", "--base", "qwen2.5-coder-0.5b", "--state-dir"])
        .arg(&daemon.state_dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("rebuilt 1 repositories") && text.contains("1 states replayed and verified"), "{text}");

    daemon.restart();
    let after = daemon.wait_for(Duration::from_secs(60), "the rebuilt state", || {
        let s = daemon.repo_status(&a.path);
        (s["pending"] == false).then_some(s)
    });
    for field in ["last_commit", "steps", "state_sha256", "adapter", "adapter_commit", "origin_commit"] {
        assert_eq!(after["refs"][0][field], before["refs"][0][field], "{field} after rebuild");
    }
    // And it carries on from there.
    a.write("pkg/after.py", "x = 1\n");
    let next = a.commit("after rebuild");
    let reply = daemon.request(json!({"op": "adapter", "repo": a.path, "wait_ms": 30000}));
    assert_eq!(reply["commit"], next.as_str(), "{reply}");
    let history: u64 = a.git(&["rev-list", "--first-parent", "--count", "HEAD"]).parse().unwrap();
    assert_eq!(daemon.repo_status(&a.path)["refs"][0]["steps"], history, "one step per commit from the root");
}

#[test]
fn a_different_model_rebuilds_states_from_snapshots_instead_of_mixing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(tmp.path());
    let a = project(tmp.path(), "a");
    daemon.register_and_wait(&a);
    a.write("pkg/x.py", "import sys\n");
    let tip = a.commit("x");
    let before = daemon.wait_for(Duration::from_secs(60), "one step", || {
        let s = daemon.repo_status(&a.path);
        (s["refs"][0]["adapter_commit"] == tip.as_str() && s["pending"] == false).then_some(s)
    });
    assert_eq!(before["refs"][0]["steps"], 2, "the root and one commit");
    daemon.signal_and_wait(libc::SIGTERM, Duration::from_secs(30));

    // Same preset, another seed: another model.
    drop(daemon);
    let daemon = Daemon::start_with_config(tmp.path(), "[model]\nseed = 12345\n");
    let after = daemon.wait_for(Duration::from_secs(60), "the rebuilt state", || {
        let s = daemon.repo_status(&a.path);
        (s["pending"] == false && s["refs"][0]["model_fingerprint"] != before["refs"][0]["model_fingerprint"]).then_some(s)
    });
    let r = &after["refs"][0];
    let root = a.git(&["rev-list", "--max-parents=0", "HEAD"]);
    assert_eq!((r["walk"]["start"].as_str(), r["origin_commit"].as_str()), (Some("snapshot"), Some(root.as_str())), "no vector from the old model is carried over: walked afresh from the root: {r}");
    assert_eq!(r["steps"], before["refs"][0]["steps"]);
    assert_eq!(r["restore_points"], 1, "the old model's restore points went with its state: {r}");
    assert_ne!(r["adapter"], before["refs"][0]["adapter"], "a new adapter from the new model");
}
