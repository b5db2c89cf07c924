//! Service figures for docs/BENCHMARKS.md: `adapter` query latency under 1,000 concurrent
//! clients, and daemon memory with 10,000 registered repositories.
//!
//! cargo bench -p evolora-daemon --bench service [-- --repos N --clients N]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{arg, request, start_daemon};

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn make_repo(dir: &Path, i: usize) {
    let repo = git2::Repository::init(dir).unwrap();
    let sig = git2::Signature::now("b", "b@example.invalid").unwrap();
    let blob = repo.blob(format!("def f{i}():\n    return {i}\n").as_bytes()).unwrap();
    let mut tb = repo.treebuilder(None).unwrap();
    tb.insert("m.py", blob, 0o100644).unwrap();
    let tree = repo.find_tree(tb.write().unwrap()).unwrap();
    repo.commit(Some("HEAD"), &sig, &sig, "one", &tree, &[]).unwrap();
}

fn main() {
    let repos = arg("--repos", 10_000);
    let clients = arg("--clients", 1_000);
    let tmp = tempfile::tempdir().unwrap();
    // A small base model keeps 10,000 adapter directories to a few hundred MB.
    let base = tmp.path().join("base");
    std::fs::create_dir_all(&base).unwrap();
    std::fs::write(
        base.join("config.json"),
        r#"{"_name_or_path":"bench/tiny","hidden_size":32,"intermediate_size":48,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":8,"num_hidden_layers":2}"#,
    )
    .unwrap();
    let sock = tmp.path().join("evolora.sock");
    let args = ["--preset".as_ref(), "tiny".as_ref(), "--base".as_ref(), base.as_os_str()];
    let mut daemon = start_daemon::<&std::ffi::OsStr>(args, &tmp.path().join("state"), &sock);
    let pid = daemon.id();
    std::thread::sleep(Duration::from_millis(300));
    let rss_empty = rss_kib(pid);

    let t = Instant::now();
    for i in 0..repos {
        let dir = tmp.path().join(format!("r/{i:05}"));
        make_repo(&dir, i);
        let reply = request(&sock, &serde_json::json!({"op": "register", "repo": dir}));
        assert_eq!(reply["ok"], true, "{reply}");
    }
    // Wait until every cold start is done.
    loop {
        let v = request(&sock, &serde_json::json!({"op": "status"}));
        if v["queued"] == 0 && v["repos"].as_array().unwrap().iter().all(|r| r["pending"] == false && r["refs"][0]["adapter"].is_string()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let registered_in = t.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let rss_full = rss_kib(pid);
    let db_bytes: u64 = std::fs::read_dir(tmp.path().join("state/db")).unwrap().flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum();

    // Latency: `clients` connections, each sending 20 `adapter` requests one after another,
    // driven by one client thread (a thread per client would measure the scheduler).
    let per_client = 20;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (mut all, wall) = runtime.block_on(async {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let mut conns = Vec::with_capacity(clients);
        for c in 0..clients {
            let s = tokio::net::UnixStream::connect(&sock).await.unwrap();
            let repo = tmp.path().join(format!("r/{:05}", c % repos));
            conns.push((s, format!("{{\"op\":\"adapter\",\"repo\":\"{}\"}}\n", repo.display())));
        }
        let t = Instant::now();
        let tasks: Vec<_> = conns
            .into_iter()
            .map(|(s, line)| {
                tokio::spawn(async move {
                    let (r, mut w) = s.into_split();
                    let mut r = tokio::io::BufReader::new(r);
                    let mut lat = Vec::with_capacity(per_client);
                    let mut reply = String::new();
                    for _ in 0..per_client {
                        let t = Instant::now();
                        w.write_all(line.as_bytes()).await.unwrap();
                        reply.clear();
                        r.read_line(&mut reply).await.unwrap();
                        lat.push(t.elapsed());
                        assert!(reply.contains("\"ok\":true"), "{reply}");
                    }
                    lat
                })
            })
            .collect();
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.unwrap());
        }
        (all, t.elapsed())
    });
    all.sort();
    let pct = |p: f64| all[((all.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3;

    println!("| measurement | value |");
    println!("|---|---|");
    println!("| daemon RSS, no repositories (tiny model) | {:.1} MiB |", rss_empty as f64 / 1024.0);
    println!("| daemon RSS, {repos} repositories registered and adapted | {:.1} MiB |", rss_full as f64 / 1024.0);
    println!("| RSS per repository | {:.1} KiB |", (rss_full.saturating_sub(rss_empty)) as f64 / repos as f64);
    println!("| state database on disk | {:.1} MiB ({} B per repository) |", db_bytes as f64 / 1048576.0, db_bytes / repos as u64);
    println!("| registering and cold-starting {repos} repositories | {:.1} s |", registered_in.as_secs_f64());
    println!("| `adapter` latency, {clients} concurrent clients × {per_client} requests: p50 | {:.2} ms |", pct(0.5));
    println!("| p99 | {:.2} ms |", pct(0.99));
    println!("| throughput | {:.0} requests/s |", all.len() as f64 / wall.as_secs_f64());
    let _ = daemon.kill();
    let _ = daemon.wait();
}
