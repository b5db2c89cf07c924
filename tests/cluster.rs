//! Cluster mode end to end: a real nats-server, one edge and three workers (the real binary,
//! each with its own state directory), fifty real repositories receiving commits through
//! hooks and fast-import (the watcher) while workers and the NATS server are killed with
//! SIGKILL at moments drawn from a seeded schedule (`EVOLORA_CHAOS_SEED` replays one). Every
//! ref's state in the cluster must end bit-identical to a single daemon's over the same
//! histories with every first-parent commit walked once, the edge must hand out the very
//! adapter bytes that daemon makes, and a repository a killed worker held must have a new
//! owner (or be finished) within the lease time plus a poll.

mod util;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use evolora_cluster::local_server::LocalServer;
use serde_json::Value;
use util::{BIN, Daemon, Lcg, Repo};

const REPOS: usize = 50;
const KEEP: usize = 2;
const WORKERS: usize = 3;
const LEASE: Duration = Duration::from_secs(3);
/// Status polls are this far apart.
const POLL: Duration = Duration::from_millis(250);
/// Slack for a lease's expiry: clocks read on both sides of a process boundary.
const EXPIRY_SLACK: Duration = Duration::from_millis(200);

/// Every node shares the retention rules: two newest versions per repository, no serve grace.
fn node_config(role: &str, node: &str, url: &str) -> String {
    format!("keep_adapters = {KEEP}\n[serve]\ngrace_secs = 0\n[cluster]\nrole = \"{role}\"\nurl = \"{url}\"\nnode = \"{node}\"\nlease_secs = {}\n", LEASE.as_secs())
}

fn cluster_status(url: &str) -> Option<Value> {
    let out = Command::new(BIN).args(["cluster", "status", "--json", "--url", url]).output().expect("run evolora");
    out.status.success().then(|| serde_json::from_slice(&out.stdout).expect("status JSON"))
}

fn rows(status: &Value) -> Vec<Value> {
    status["repos"].as_array().cloned().unwrap_or_default()
}

/// True when every repository's main branch has a state at its head with an adapter there
/// and nothing is queued.
fn settled(status: &Value, heads: &[String]) -> bool {
    let rows = rows(status);
    status["queue"]["waiting"] == 0
        && status["queue"]["in_flight"] == 0
        && heads.iter().all(|head| rows.iter().any(|row| row["state_commit"] == head.as_str() && row["tip"] == head.as_str() && row["adapter"].as_str().is_some_and(|a| a.contains(&head[..12]))))
}

fn project(dir: &Path, i: usize) -> Repo {
    let repo = Repo::with_file(dir, "pkg/__init__.py", &format!("NAME = 'project {i}'\n"));
    repo.append_history(6 + 3 * (i % 5));
    repo
}

/// Polls the cluster's status in the background, keeping every answer with its time.
struct Monitor {
    polls: Arc<Mutex<Vec<(Instant, Value)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Monitor {
    fn start(url: &str) -> Monitor {
        let (polls, stop) = (Arc::new(Mutex::new(Vec::new())), Arc::new(AtomicBool::new(false)));
        let (p, s, url) = (polls.clone(), stop.clone(), url.to_owned());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                // Each answer is kept with when its poll began: what it shows held then.
                let began = Instant::now();
                if let Some(status) = cluster_status(&url) {
                    p.lock().unwrap().push((began, status));
                }
                std::thread::sleep(POLL);
            }
        });
        Monitor { polls, stop, thread: Some(thread) }
    }

    fn latest(&self) -> Option<Value> {
        self.polls.lock().unwrap().last().map(|(_, s)| s.clone())
    }

    fn stop(&mut self) -> Vec<(Instant, Value)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        std::mem::take(&mut self.polls.lock().unwrap())
    }
}

/// A worker killed with SIGKILL, and the repositories it held then.
struct Kill {
    at: Instant,
    worker: String,
    held: Vec<String>,
}

/// For each repository a killed worker held: how long its dead lease was still seen (the
/// latest poll begun after the kill that showed it), and how long until another worker held
/// it or it was finished (this includes waiting in the queue behind other repositories).
fn after_kills(kills: &[Kill], polls: &[(Instant, Value)]) -> Vec<(String, Duration, Duration)> {
    let mut spans = Vec::new();
    for kill in kills {
        for rid in &kill.held {
            let mut seen_held = Duration::ZERO;
            let mut taken = None;
            for (t, s) in polls.iter().filter(|(t, _)| *t > kill.at) {
                let rows = rows(s);
                let mine: Vec<&Value> = rows.iter().filter(|r| r["rid"] == rid.as_str()).collect();
                let holder = mine.first().and_then(|r| r["leased_to"].as_str().map(str::to_owned));
                if holder.as_deref() == Some(kill.worker.as_str()) {
                    seen_held = *t - kill.at;
                }
                let finished = mine.iter().all(|r| r["behind"] == false);
                if taken.is_none() && (holder.as_ref().is_some_and(|h| *h != kill.worker) || (holder.is_none() && finished)) {
                    taken = Some(*t - kill.at);
                }
            }
            spans.push((format!("{rid} (held by {})", kill.worker), seen_held, taken.unwrap_or(Duration::MAX)));
        }
    }
    spans
}

#[test]
fn one_edge_and_three_workers_reach_a_single_daemons_states_through_random_kills() {
    let seed: u64 = std::env::var("EVOLORA_CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64
    });
    eprintln!("chaos schedule: EVOLORA_CHAOS_SEED={seed}");
    let mut rng = Lcg(seed);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut nats = LocalServer::start(&root.join("nats")).expect("nats-server starts");
    let url = nats.url();
    let repos: Vec<Repo> = (0..REPOS).map(|i| project(&root.join(format!("repo-{i:02}")), i)).collect();

    let edge = Daemon::start_with_config(&root.join("edge"), &node_config("edge", "git1", &url));
    let mut workers: Vec<Daemon> = (0..WORKERS).map(|i| Daemon::start_with_config(&root.join(format!("w{i}")), &node_config("worker", &format!("w{i}"), &url))).collect();
    for r in &repos {
        let out = edge.cli(&["register", r.path.to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let mut monitor = Monitor::start(&url);
    let started = Instant::now();
    let mut nats_down_at = started;

    // Twenty rounds of commits. In each of the first fourteen a worker may die (and come back
    // two rounds later); then, once the dead leases have had time to expire (they cannot
    // while the server is down), the NATS server dies for a moment with commits made
    // meanwhile; the last rounds only commit.
    let rounds = 20;
    let nats_round = 14;
    let mut kills: Vec<Kill> = Vec::new();
    let mut pinned: Option<String> = None;
    let mut down: Vec<(usize, usize)> = Vec::new(); // (worker, round it died)
    for round in 0..rounds {
        for k in 0..3 {
            let r = &repos[rng.below(REPOS as u64) as usize];
            if rng.below(3) == 0 {
                // A plain commit: the post-commit hook.
                r.write(&format!("pkg/round_{round}_{k}.py"), &format!("ROUND = {round}\n"));
                r.commit(&format!("round {round}"));
            } else {
                // fast-import moves the ref without hooks: the edge's watcher sees it.
                r.append_history(1 + rng.below(3) as usize);
            }
        }
        if round == 3 {
            // Pin the first repository's version of the moment through the edge, then move on.
            let version = edge.wait_for(Duration::from_secs(60), "a first adapter for the pin", || {
                let reply = edge.request(serde_json::json!({"op": "adapter", "repo": repos[0].path}));
                (reply["ok"] == true).then(|| reply["served_name"].as_str().unwrap().rsplit('/').next().unwrap().to_owned())
            });
            let reply = edge.request(serde_json::json!({"op": "pin", "repo": repos[0].path}));
            assert_eq!(reply["pinned"], true, "{reply}");
            assert!(reply["path"].as_str().unwrap().ends_with(&version), "{reply}");
            pinned = Some(version);
            repos[0].append_history(KEEP + 1);
        }
        if round == 9 {
            // A rewritten ref (a force-push): whichever worker takes it goes back to a restore
            // point it got from the cluster.
            let r = &repos[2];
            r.git(&["reset", "-q", "--hard", "HEAD~2"]);
            r.write("pkg/rewritten.py", "REWRITTEN = True\n");
            r.commit("rewritten history");
        }
        // Restart workers that have been down two rounds.
        for (w, _) in down.extract_if(.., |(_, died)| round >= *died + 2) {
            workers[w].restart();
        }
        // Worker kills stay clear of the NATS outage: a dead lease outlives a dead server.
        if round == nats_round {
            std::thread::sleep(LEASE + 2 * POLL);
            nats.kill();
            nats_down_at = Instant::now();
            repos[rng.below(REPOS as u64) as usize].append_history(2);
            let r = &repos[rng.below(REPOS as u64) as usize];
            r.write("pkg/late.py", "LATE = True\n");
            r.commit("made while NATS was down");
            std::thread::sleep(Duration::from_millis(500 + rng.below(1500)));
            nats.restart().expect("nats-server restarts");
        } else if round < nats_round && rng.below(3) == 0 {
            let w = rng.below(WORKERS as u64) as usize;
            if !down.iter().any(|(d, _)| *d == w) {
                // Kill while it holds something when we can: wait briefly for a lease of its.
                let prefix = format!("w{w}-");
                let deadline = Instant::now() + Duration::from_millis(600);
                let mut held = Vec::new();
                while Instant::now() < deadline {
                    held = monitor.latest().map(|s| rows(&s).iter().filter(|r| r["leased_to"].as_str().is_some_and(|h| h.starts_with(&prefix))).map(|r| r["rid"].as_str().unwrap().to_owned()).collect()).unwrap_or_default();
                    if !held.is_empty() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                let worker = format!("{prefix}{}", workers[w].pid());
                workers[w].signal_and_wait(libc::SIGKILL, Duration::from_secs(10));
                held.sort();
                held.dedup();
                kills.push(Kill { at: Instant::now(), worker, held });
                down.push((w, round));
            }
        }
        std::thread::sleep(Duration::from_millis(300 + rng.below(400)));
    }
    for (w, _) in down.drain(..) {
        workers[w].restart();
    }

    let heads: Vec<String> = repos.iter().map(|r| r.head()).collect();
    let deadline = Instant::now() + Duration::from_secs(240);
    let status = loop {
        if let Some(s) = monitor.latest().filter(|s| settled(s, &heads)) {
            break s;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = std::iter::once(&edge).chain(&workers).map(|d| d.log_text()).collect();
            panic!("cluster not settled within 240 s: {:#}\n{}", monitor.latest().unwrap_or_default(), logs.join("\n-----\n"));
        }
        std::thread::sleep(POLL);
    };
    let polls = monitor.stop();
    let gaps: Vec<String> = polls.windows(2).filter(|w| w[1].0 - w[0].0 > Duration::from_secs(1)).map(|w| format!("{:?} at +{:?}", w[1].0 - w[0].0, w[0].0 - started)).collect();
    eprintln!("status polls more than 1 s apart: {gaps:?}; NATS down at +{:?}; kills at {:?}", nats_down_at - started, kills.iter().map(|k| k.at - started).collect::<Vec<_>>());

    // Ownership: what a dead worker held was free again within the lease (its wake-up is
    // redelivered after the same time), and went on to another worker.
    let spans = after_kills(&kills, &polls);
    let longest = |f: fn(&(String, Duration, Duration)) -> Duration| spans.iter().map(f).max().unwrap_or_default();
    eprintln!(
        "{} kills of workers holding {} repositories; dead lease seen at most {:?} after a kill; longest wait for another worker {:?}",
        kills.len(),
        spans.len(),
        longest(|s| s.1),
        longest(|s| s.2)
    );
    for (what, released, taken) in &spans {
        let timeline = || {
            let rid = what.split(' ').next().unwrap();
            let kill = kills.iter().find(|k| k.held.iter().any(|h| h == rid)).unwrap();
            let lines: Vec<String> = polls
                .iter()
                .filter(|(t, _)| *t > kill.at)
                .take(80)
                .map(|(t, s)| {
                    let row = rows(s).into_iter().find(|r| r["rid"] == rid).unwrap_or_default();
                    format!("+{:?}: lease {} behind {} queue {}", *t - kill.at, row["leased_to"], row["behind"], s["queue"])
                })
                .collect();
            lines.join("\n")
        };
        // Expiry is judged from the server's timestamp of the last refresh, which came before
        // the kill: no look at the lease begun a lease time after the kill may find it held.
        assert!(*released <= LEASE + EXPIRY_SLACK, "{what}: the dead worker's lease was still seen {released:?} after the kill (lease {LEASE:?}):\n{}", timeline());
        assert!(*taken < Duration::MAX, "{what} was never taken over");
    }

    // The single daemon over the same histories.
    std::fs::create_dir_all(root.join("reference")).unwrap();
    let reference = Daemon::start(&root.join("reference"));
    for r in &repos {
        let out = reference.cli(&["register", "--no-hooks", r.path.to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let rows = rows(&status);
    for (r, head) in repos.iter().zip(&heads) {
        let single = reference.settled(&r.path, "refs/heads/main", head);
        let row = rows.iter().find(|row| row["state_commit"] == head.as_str()).unwrap();
        let history: u64 = r.git(&["rev-list", "--first-parent", "--count", head]).parse().unwrap();
        assert_eq!(row["walked"], history, "every first-parent commit walked exactly once: {row}");
        assert_eq!(row["vector_sha256"], single["state_sha256"], "cluster state of {} equals the single daemon's", r.path.display());

        // The edge hands out the version the workers made, fetched from the object store
        // (every file checked against its pointer), byte for byte the single daemon's.
        let from_edge = edge.request(serde_json::json!({"op": "adapter", "repo": r.path}));
        assert_eq!(from_edge["ok"], true, "{from_edge}");
        assert_eq!(from_edge["commit"], head.as_str());
        assert_eq!(from_edge["covers_tip"], true);
        let path = from_edge["path"].as_str().unwrap();
        assert!(path.starts_with(root.join("edge").to_str().unwrap()), "{path}");
        assert!(path.ends_with(from_edge["served_name"].as_str().unwrap()), "served name is the path under the root: {from_edge}");
        let single_adapter = reference.request(serde_json::json!({"op": "adapter", "repo": r.path}));
        let files = |dir: &str| -> Vec<(String, Vec<u8>)> {
            let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap()).filter(|e| e.file_name() != "evolora.json").map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap())).collect();
            files.sort();
            files
        };
        assert!(files(path) == files(single_adapter["path"].as_str().unwrap()), "adapter files differ for {}", r.path.display());
    }
    // Retention ran cluster-wide: at most the newest KEEP versions besides the pinned one,
    // which survived three publishes, and the edge keeps copies only of versions the cluster
    // keeps.
    let pinned = pinned.expect("pinned at round 3");
    for row in &rows {
        let extra = row["pinned"].as_array().unwrap().len() as u64;
        assert!(row["versions"].as_u64().unwrap() <= KEEP as u64 + extra, "retention: {row}");
    }
    let first = rows.iter().find(|row| row["state_commit"] == heads[0].as_str()).unwrap();
    assert_eq!(first["pinned"], serde_json::json!([pinned]), "{first}");
    for row in &rows {
        let fetched = root.join("edge/state/cluster/adapters").join(row["rid"].as_str().unwrap());
        let names: Vec<String> = std::fs::read_dir(&fetched).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| !n.starts_with('.')).collect();
        assert!(names.len() as u64 <= row["versions"].as_u64().unwrap(), "the edge keeps only versions the cluster keeps: {names:?} {row}");
    }
    // Restore points travel with the states (one every 16 commits by default).
    for row in &rows {
        if row["walked"].as_u64().unwrap() >= 16 {
            assert!(row["restore_points"].as_u64().unwrap() > 0, "no restore points in the cluster: {row}");
        }
    }
    let beats = status["workers"].as_array().unwrap();
    let dropped: u64 = beats.iter().map(|w| w["discarded"].as_u64().unwrap_or(0)).sum();
    eprintln!("{dropped} walk results dropped by compare-and-set; queue at the end {}", status["queue"]);
    for w in 0..WORKERS {
        assert!(beats.iter().any(|b| b["worker"].as_str().unwrap().starts_with(&format!("w{w}-"))), "no heartbeat from w{w}: {status:#}");
    }
}
