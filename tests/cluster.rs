//! Cluster mode end to end: a real nats-server, one edge and two workers (the real binary,
//! each with its own state directory), real repositories receiving commits through hooks and
//! fast-import (the watcher), a worker and the NATS server killed with SIGKILL mid-run. Every
//! ref's state in the cluster must end bit-identical to a single daemon's over the same
//! histories, and the edge must hand out the very adapter bytes that daemon makes.

mod util;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use evolora_cluster::local_server::LocalServer;
use serde_json::Value;
use util::{BIN, Daemon, Repo};

fn node_config(role: &str, node: &str, url: &str) -> String {
    format!("[cluster]\nrole = \"{role}\"\nurl = \"{url}\"\nnode = \"{node}\"\nlease_secs = 3\n")
}

fn cluster_status(url: &str) -> Option<Value> {
    let out = Command::new(BIN).args(["cluster", "status", "--json", "--url", url]).output().expect("run evolora");
    out.status.success().then(|| serde_json::from_slice(&out.stdout).expect("status JSON"))
}

/// Waits until every repository's main branch has a state at its head with an adapter there.
fn wait_settled(url: &str, repos: &[Repo], within: Duration, logs: &[&Daemon]) -> Value {
    let deadline = Instant::now() + within;
    loop {
        if let Some(s) = cluster_status(url) {
            let rows = s["repos"].as_array().cloned().unwrap_or_default();
            let done = repos.iter().all(|r| {
                let head = r.head();
                rows.iter().any(|row| row["state_commit"] == head.as_str() && row["tip"] == head.as_str() && row["adapter"].as_str().is_some_and(|a| a.contains(&head[..12])))
            });
            if done && s["queue_depth"] == 0 {
                return s;
            }
            if Instant::now() > deadline {
                let text: Vec<String> = logs.iter().map(|d| d.log_text()).collect();
                panic!("cluster not settled within {within:?}: {s:#}\n{}", text.join("\n-----\n"));
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn project(dir: &Path, i: usize) -> Repo {
    let repo = Repo::with_file(dir, "pkg/__init__.py", &format!("NAME = 'project {i}'\n"));
    repo.append_history(12 + 6 * i);
    repo
}

#[test]
fn an_edge_and_two_workers_reach_a_single_daemons_states_through_kills() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut nats = LocalServer::start(&root.join("nats")).expect("nats-server starts");
    let url = nats.url();
    let repos: Vec<Repo> = (0..4).map(|i| project(&root.join(format!("repo-{i}")), i)).collect();

    let edge = Daemon::start_with_config(&root.join("edge"), &node_config("edge", "git1", &url));
    let mut w1 = Daemon::start_with_config(&root.join("w1"), &node_config("worker", "w1", &url));
    let w2 = Daemon::start_with_config(&root.join("w2"), &node_config("worker", "w2", &url));
    for r in &repos {
        let out = edge.cli(&["register", r.path.to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    // A worker dies with SIGKILL as soon as the cluster holds a state: its lease expires and
    // the other worker takes over whatever it held.
    edge.wait_for(Duration::from_secs(60), "a first state in the cluster", || {
        cluster_status(&url).filter(|s| s["repos"].as_array().is_some_and(|r| r.iter().any(|row| row["state_commit"].is_string()))).map(|_| ())
    });
    w1.signal_and_wait(libc::SIGKILL, Duration::from_secs(10));

    // More history: fast-import moves refs without hooks (the edge's watcher sees it), and a
    // plain commit runs the post-commit hook.
    for r in &repos {
        r.append_history(5);
    }
    repos[0].write("pkg/extra.py", "def extra():\n    return 1\n");
    repos[0].commit("extra");

    // The NATS server dies with SIGKILL; a commit made meanwhile is published once it is back.
    nats.kill();
    repos[1].write("pkg/late.py", "LATE = True\n");
    repos[1].commit("made while NATS was down");
    std::thread::sleep(Duration::from_millis(1500));
    nats.restart().expect("nats-server restarts");

    let status = wait_settled(&url, &repos, Duration::from_secs(180), &[&edge, &w2]);

    // The single daemon over the same histories.
    std::fs::create_dir_all(root.join("reference")).unwrap();
    let reference = Daemon::start(&root.join("reference"));
    for r in &repos {
        let out = reference.cli(&["register", "--no-hooks", r.path.to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let rows = status["repos"].as_array().unwrap();
    for r in &repos {
        let head = r.head();
        let single = reference.settled(&r.path, "refs/heads/main", &head);
        let row = rows.iter().find(|row| row["state_commit"] == head.as_str()).unwrap();
        let history: u64 = r.git(&["rev-list", "--first-parent", "--count", &head]).parse().unwrap();
        assert_eq!(row["walked"], history, "every first-parent commit walked exactly once: {row}");
        assert_eq!(row["vector_sha256"], single["state_sha256"], "cluster state of {} equals the single daemon's", r.path.display());

        // The edge hands out the version the workers made, fetched from the object store,
        // byte for byte the single daemon's adapter.
        let from_edge = edge.request(serde_json::json!({"op": "adapter", "repo": r.path}));
        assert_eq!(from_edge["ok"], true, "{from_edge}");
        assert_eq!(from_edge["commit"], head.as_str());
        assert_eq!(from_edge["covers_tip"], true);
        let path = from_edge["path"].as_str().unwrap();
        assert!(path.starts_with(root.join("edge").to_str().unwrap()), "{path}");
        assert!(path.ends_with(from_edge["served_name"].as_str().unwrap()), "served name is the path under the root: {from_edge}");
        let single_adapter = reference.request(serde_json::json!({"op": "adapter", "repo": r.path}));
        let weights = |dir: &str| std::fs::read(Path::new(dir).join("adapter_model.safetensors")).unwrap();
        assert!(weights(path) == weights(single_adapter["path"].as_str().unwrap()), "adapter bytes differ for {}", r.path.display());
    }
    let workers = status["workers"].as_array().unwrap();
    assert!(workers.iter().any(|w| w["worker"].as_str().unwrap().starts_with("w2-")), "{status:#}");
}
