//! Cluster throughput (docs/CLUSTER.md): one edge and 1, 2, 3 workers on this machine, a real
//! nats-server, N repositories of M commits each registered on the edge at once; the time
//! until every repository's state is at its tip with an adapter there, against one daemon
//! doing the same work in the same run. Each worker walks with the daemon's engine, so the
//! figures are the single daemon's work plus what the cluster adds (fetch into a mirror,
//! state import/export, the adapter's upload, KV writes).
//!
//! cargo bench -p evolora-daemon --bench throughput -- [--repos 24] [--commits 40] [--workers 1,2,3] [--preset compact] [--dtype f32]

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, arg, git, request, start_daemon};
use evolora_cluster::local_server::LocalServer;

/// A repository of `commits` first-parent commits of ordinary Python edits.
fn make_repo(dir: &Path, seed: usize, commits: usize) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q", "-b", "main"]);
    let mut stream = String::new();
    for i in 0..commits {
        let body = format!("def handler_{seed}_{i}(request, *, timeout={i}):\n    data = parse(request.body)\n    return respond(data, status={})\n", 200 + i % 7);
        let mut files = format!("M 100644 inline pkg/mod_{}.py\ndata {}\n{body}\n", i % 9, body.len());
        if i % 4 == 0 {
            let t = format!("def test_{i}():\n    assert handler_{seed}_{i}\n");
            files += &format!("M 100644 inline tests/test_{}.py\ndata {}\n{t}\n", i % 9, t.len());
        }
        let msg = format!("change {i}");
        stream += &format!("commit refs/heads/main\ncommitter Bench <bench@example.invalid> {} +0000\ndata {}\n{msg}\n{files}\n", 1_700_000_000 + i, msg.len());
    }
    let mut child = Command::new("git").arg("-C").arg(dir).args(["fast-import", "--quiet"]).stdin(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(stream.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
    git(dir, &["reset", "-q", "--hard", "main"]);
    std::fs::canonicalize(dir).unwrap()
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn status(url: &str) -> Option<serde_json::Value> {
    let out = Command::new(BIN).args(["cluster", "status", "--json", "--url", url]).output().unwrap();
    out.status.success().then(|| serde_json::from_slice(&out.stdout).unwrap())
}

struct Run {
    seconds: f64,
    adapter_bytes: u64,
}

fn cluster_run(root: &Path, repos: &[PathBuf], heads: &[String], workers: usize, model: &[String], extra_config: &str) -> Run {
    let mut nats = LocalServer::start(&root.join("nats")).expect("nats-server");
    let url = nats.url();
    let node = |role: &str, name: &str| -> Child {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("evolora.toml");
        std::fs::write(&config, format!("{extra_config}\n[cluster]\nrole = \"{role}\"\nurl = \"{url}\"\nnode = \"{name}\"\n")).unwrap();
        let mut args = model.to_vec();
        args.extend(["--config".to_owned(), config.display().to_string()]);
        start_daemon(&args, &dir.join("state"), &dir.join("sock"))
    };
    let edge = node("edge", "edge");
    let pool: Vec<Child> = (0..workers).map(|i| node("worker", &format!("w{i}"))).collect();
    // Every worker has bound the queue and loaded its model before the clock starts.
    while status(&url).is_none_or(|s| s["workers"].as_array().is_none_or(|w| w.len() < workers)) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let t = Instant::now();
    for r in repos {
        let ok = Command::new(BIN).arg("register").arg("--no-hooks").arg(r).env("EVOLORA_SOCKET", root.join("edge/sock")).stdout(Stdio::null()).status().unwrap().success();
        assert!(ok, "register on the edge");
    }
    loop {
        let s = status(&url).expect("status");
        let rows = s["repos"].as_array().cloned().unwrap_or_default();
        let all = heads.iter().all(|h| rows.iter().any(|r| r["state_commit"] == h.as_str() && r["adapter"].as_str().is_some_and(|a| a.contains(&h[..12]))));
        if all {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(1800), "the cluster did not finish: {s}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let seconds = t.elapsed().as_secs_f64();
    let adapter_bytes = dir_bytes(&root.join("nats"));
    stop(edge);
    for w in pool {
        stop(w);
    }
    nats.kill();
    Run { seconds, adapter_bytes }
}

fn single_run(root: &Path, repos: &[PathBuf], heads: &[String], model: &[String], extra_config: &str) -> f64 {
    std::fs::create_dir_all(root).unwrap();
    let config = root.join("evolora.toml");
    std::fs::write(&config, extra_config).unwrap();
    let mut args = model.to_vec();
    args.extend(["--config".to_owned(), config.display().to_string()]);
    let sock = root.join("sock");
    let daemon = start_daemon(&args, &root.join("state"), &sock);
    let t = Instant::now();
    for r in repos {
        let ok = Command::new(BIN).arg("register").arg("--no-hooks").arg(r).env("EVOLORA_SOCKET", &sock).stdout(Stdio::null()).status().unwrap().success();
        assert!(ok, "register");
    }
    for (r, h) in repos.iter().zip(heads) {
        let reply = request(&sock, &serde_json::json!({"op": "adapter", "repo": r, "wait_ms": 600_000}));
        assert_eq!(reply["commit"].as_str(), Some(h.as_str()), "{reply}");
    }
    let seconds = t.elapsed().as_secs_f64();
    stop(daemon);
    seconds
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries.flatten().map(|e| if e.file_type().unwrap().is_dir() { dir_bytes(&e.path()) } else { e.metadata().map_or(0, |m| m.len()) }).sum()
}

/// What this machine's nats-server sustains for the operations a job makes: compare-and-set
/// state writes one after another (a worker's latency) and from 16 tasks on distinct keys
/// (a pool's rate), and an adapter version's upload and checked download.
fn jetstream_floors(root: &Path, adapter_bytes: usize) -> Vec<(String, String)> {
    use evolora_cluster::{Cluster, ClusterSettings, StateRecord, Written, fetch_adapter_into};
    let mut nats = LocalServer::start(&root.join("nats-floor")).expect("nats-server");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let record = |rid: &str, i: u64| StateRecord {
        rid: rid.into(),
        edge: "bench".into(),
        repo_key: rid.into(),
        refname: "refs/heads/main".into(),
        last_commit: format!("{i:040x}"),
        walked: i,
        vector_sha256: String::new(),
        // Between a compact state (1.3 KB) and a paper one (8.5 KB).
        state: vec![7; 4096],
        restore_points: Vec::new(),
        adapter: None,
        trained: false,
        worker: "bench".into(),
        updated_at: i,
    };
    let rows = rt.block_on(async {
        let cluster = Cluster::connect(&ClusterSettings::new(&nats.url()), "bench").await.unwrap();
        let writes = 2000u64;
        let t = Instant::now();
        let mut revision = None;
        for i in 0..writes {
            let Written::Applied(r) = cluster.write_state(&record("bench-seq", i), revision).await.unwrap() else { panic!("conflict") };
            revision = Some(r);
        }
        let sequential = writes as f64 / t.elapsed().as_secs_f64();
        let t = Instant::now();
        let tasks: Vec<_> = (0..16)
            .map(|k| {
                let cluster = cluster.clone();
                tokio::spawn(async move {
                    let rid = format!("bench-par{k}");
                    let mut revision = None;
                    for i in 0..writes / 16 {
                        let Written::Applied(r) = cluster.write_state(&record(&rid, i), revision).await.unwrap() else { panic!("conflict") };
                        revision = Some(r);
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let parallel = writes as f64 / t.elapsed().as_secs_f64();

        let dir = root.join("floor-version");
        std::fs::create_dir_all(&dir).unwrap();
        let weights: Vec<u8> = (0..adapter_bytes as u64).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        std::fs::write(dir.join("adapter_model.safetensors"), &weights).unwrap();
        std::fs::write(dir.join("adapter_config.json"), b"{}").unwrap();
        let t = Instant::now();
        let pointer = cluster.put_adapter("bench-obj", &format!("{:040x}", 1), &dir, 1).await.unwrap();
        let up = t.elapsed().as_secs_f64();
        let t = Instant::now();
        fetch_adapter_into(&cluster, "bench-obj", &pointer, &root.join("floor-fetched")).await.unwrap();
        let down = t.elapsed().as_secs_f64();
        let mb = adapter_bytes as f64 / 1e6;
        vec![
            ("state compare-and-set, one after another".to_owned(), format!("{sequential:.0} writes/s ({:.2} ms each)", 1e3 / sequential)),
            ("state compare-and-set, 16 tasks on distinct keys".to_owned(), format!("{parallel:.0} writes/s")),
            (format!("adapter version upload ({mb:.0} MB, object store)"), format!("{:.0} ms ({:.0} MB/s)", up * 1e3, mb / up)),
            (format!("adapter version fetch, checked and fsynced ({mb:.0} MB)"), format!("{:.0} ms ({:.0} MB/s)", down * 1e3, mb / down)),
        ]
    });
    nats.kill();
    let _ = std::fs::remove_dir_all(root.join("floor-version"));
    let _ = std::fs::remove_dir_all(root.join("floor-fetched"));
    rows
}

fn main() {
    let n: usize = arg("--repos", 24);
    let commits: usize = arg("--commits", 40);
    let counts: String = arg("--workers", "1,2,3".to_owned());
    let preset: String = arg("--preset", "compact".to_owned());
    let dtype: String = arg("--dtype", "f32".to_owned());
    let counts: Vec<usize> = counts.split(',').map(|c| c.parse().expect("--workers 1,2,3")).collect();
    let model: Vec<String> = ["--preset", &preset, "--base", "qwen2.5-coder-1.5b"].map(str::to_owned).to_vec();
    // No serve grace and one kept version: the runs measure work, not retention.
    let extra = format!("keep_adapters = 1\n[model]\ndtype = \"{dtype}\"\n[serve]\ngrace_secs = 0\n");
    let tmp = tempfile::tempdir_in(std::env::var_os("EVOLORA_BENCH_DIR").unwrap_or_else(|| ".".into())).unwrap();
    let repos: Vec<PathBuf> = (0..n).map(|i| make_repo(&tmp.path().join(format!("repos/r{i:03}")), i, commits)).collect();
    let heads: Vec<String> = repos.iter().map(|r| git(r, &["rev-parse", "HEAD"])).collect();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());

    // The 1.5B base's adapter at f32 (bf16 halves it).
    let floors = jetstream_floors(tmp.path(), if dtype == "bf16" { 36_950_000 } else { 73_900_000 });
    let single = single_run(&tmp.path().join("single"), &repos, &heads, &model, &extra);
    let _ = std::fs::remove_dir_all(tmp.path().join("single"));
    let mut rows = Vec::new();
    for &k in &counts {
        let root = tmp.path().join(format!("cluster-{k}"));
        let run = cluster_run(&root, &repos, &heads, k, &model, &extra);
        let _ = std::fs::remove_dir_all(&root);
        rows.push((k, run));
    }
    let total = (n * commits) as f64;
    println!("| JetStream on this machine (one nats-server, file storage) | rate |");
    println!("|---|---|");
    for (what, rate) in &floors {
        println!("| {what} | {rate} |");
    }
    println!();
    println!("{n} repositories × {commits} commits, preset {preset} on qwen2.5-coder-1.5b ({dtype}), {cpus} CPUs; every node on this machine");
    println!("| setup | time | repositories/s | commits/s | vs one daemon | JetStream bytes on disk |");
    println!("|---|---|---|---|---|---|");
    println!("| one daemon (no cluster) | {single:.2} s | {:.2} | {:.0} | 1.00 | – |", n as f64 / single, total / single);
    for (k, r) in &rows {
        println!(
            "| edge + {k} worker{} | {:.2} s | {:.2} | {:.0} | {:.2} | {:.1} MB |",
            if *k == 1 { "" } else { "s" },
            r.seconds,
            n as f64 / r.seconds,
            total / r.seconds,
            single / r.seconds,
            r.adapter_bytes as f64 / 1e6
        );
    }
}
