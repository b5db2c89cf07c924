//! Commit → fresh adapter (docs/BENCHMARKS.md): from the start of `git commit` in a
//! repository with evolora's hooks installed until the daemon's socket names an adapter made
//! at the new commit, for ordinary small commits, with the seeded model of a preset on
//! Qwen2.5-Coder-1.5B's 28 layers (every adapter a full PEFT directory, fsynced).
//!
//! cargo build --release -p evolora-hooks --bins
//! cargo bench -p evolora-daemon --bench fresh -- --preset paper|compact [--commits 30] [--dtype f32|bf16]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, arg, git, request, start_daemon};

/// Changes a.py the way an ordinary commit does (one new function) and stages it.
fn edit(repo: &Path, i: usize) {
    let path = repo.join("a.py");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(&format!("\n\ndef handler_{i}(request, *, timeout={i}):\n    data = parse(request.body)\n    return respond(data, status=200)\n"));
    std::fs::write(&path, text).unwrap();
    git(repo, &["add", "a.py"]);
}

fn adapter_at(sock: &Path, repo: &Path, commit: &str) -> Duration {
    let t = Instant::now();
    loop {
        let reply = request(sock, &serde_json::json!({"op": "adapter", "repo": repo, "wait_ms": 60_000}));
        if reply["commit"].as_str() == Some(commit) {
            return t.elapsed();
        }
        assert!(t.elapsed() < Duration::from_secs(120), "no adapter at {commit}: {reply}");
    }
}

fn main() {
    let preset: String = arg("--preset", "paper".to_string());
    let commits: usize = arg("--commits", 30);
    let dtype: String = arg("--dtype", "f32".to_string());
    let tmp = tempfile::tempdir_in(std::env::var_os("EVOLORA_BENCH_DIR").unwrap_or_else(|| ".".into())).unwrap();
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("a.py"), "import json\n").unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "root"]);
    let repo = std::fs::canonicalize(&repo).unwrap();

    // git alone, for the breakdown: the same commits without hooks or daemon.
    let plain = (0..10)
        .map(|i| {
            edit(&repo, 1000 + i);
            let t = Instant::now();
            git(&repo, &["commit", "-q", "-m", "plain"]);
            t.elapsed()
        })
        .min()
        .unwrap();

    let config = tmp.path().join("evolora.toml");
    // No serve grace: every version this bench asks for would otherwise stay on disk for an
    // hour, and on this VM class a page cache growing into never-touched guest memory makes
    // each write up to twice as slow as one reusing freed pages (the cost of the grace, not
    // of publishing).
    std::fs::write(&config, format!("[model]\ndtype = \"{dtype}\"\n[serve]\ngrace_secs = 0\n")).unwrap();
    let sock = tmp.path().join("evolora.sock");
    let mut daemon = start_daemon(["--preset", &preset, "--base", "qwen2.5-coder-1.5b", "--config", config.to_str().unwrap()], &tmp.path().join("state"), &sock);
    let ok = Command::new(BIN).arg("register").arg(&repo).env("EVOLORA_SOCKET", &sock).stdout(Stdio::null()).status().unwrap().success();
    assert!(ok, "register");
    let tip = git(&repo, &["rev-parse", "HEAD"]);
    adapter_at(&sock, &repo, &tip);

    let mut times = Vec::new();
    for i in 0..commits + 3 {
        edit(&repo, i);
        let t = Instant::now();
        git(&repo, &["commit", "-q", "-m", &format!("c{i}")]);
        let tip = git(&repo, &["rev-parse", "HEAD"]);
        adapter_at(&sock, &repo, &tip);
        if i >= 3 {
            times.push(t.elapsed());
        }
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("preset {preset}, {dtype}, {commits} commits (after 3 warm-ups), base qwen2.5-coder-1.5b (28 layers)");
    println!("| measurement | median | p90 | min |");
    println!("|---|---|---|---|");
    println!("| commit → fresh adapter | {:.1} ms | {:.1} ms | {:.1} ms |", ms(times[times.len() / 2]), ms(times[times.len() * 9 / 10]), ms(times[0]));
    println!("| `git commit` alone, no hooks, no daemon (best of 10) | {:.1} ms | | |", ms(plain));
}
