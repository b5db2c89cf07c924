//! Commit → fresh adapter (docs/BENCHMARKS.md): from the start of `git commit` in a
//! repository with evolora's hooks installed until the daemon's socket names an adapter made
//! at the new commit, for ordinary small commits, with the seeded model of a preset on
//! Qwen2.5-Coder-1.5B's 28 layers (every adapter a full PEFT directory, fsynced).
//!
//! Floor, measured in the same run: `git commit` alone, plus reading the lone GRU step's
//! and the head's weights once at the measured bandwidth, or writing and fsyncing a plain
//! file as large as the adapter where the disk is slower than the head (the daemon writes
//! while the head runs). The daemon's own histograms split the median's time.
//!
//! cargo build --release -p evolora-hooks --bins
//! cargo bench -p evolora-daemon --bench fresh -- --preset paper|compact [--commits 30] [--dtype f32|bf16]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{arg, bin, bandwidth_gbs, floors, git, histograms, request, start_daemon};
use evolora_model::{BaseModelShapes, HyperConfig};

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
    let ok = Command::new(bin()).arg("register").arg(&repo).env("EVOLORA_SOCKET", &sock).stdout(Stdio::null()).status().unwrap().success();
    assert!(ok, "register");
    let tip = git(&repo, &["rev-parse", "HEAD"]);
    adapter_at(&sock, &repo, &tip);

    // This host's bandwidth moves within minutes: the floor takes the mean of a reading
    // before the commits and one after.
    let bw_before = bandwidth_gbs();
    let before = histograms(&sock);
    let mut times = Vec::new();
    for i in 0..commits + 3 {
        edit(&repo, i);
        let t = Instant::now();
        git(&repo, &["commit", "-q", "-m", &format!("c{i}")]);
        // The new tip from the ref file itself: a `git rev-parse` would add a process start
        // to every measurement.
        let tip = std::fs::read_to_string(repo.join(".git/refs/heads/main")).unwrap().trim().to_owned();
        adapter_at(&sock, &repo, &tip);
        if i >= 3 {
            times.push(t.elapsed());
        }
    }
    let after = histograms(&sock);
    let newest = request(&sock, &serde_json::json!({"op": "adapter", "repo": repo}));
    let weights = Path::new(newest["path"].as_str().unwrap()).join(evolora_model::peft::ADAPTER_WEIGHTS);
    let adapter_bytes = std::fs::metadata(&weights).unwrap().len() as usize;
    let _ = daemon.kill();
    let _ = daemon.wait();

    // Floors, with the daemon gone.
    let bw_after = bandwidth_gbs();
    let bw = (bw_before + bw_after) / 2.0;
    let cfg = HyperConfig::preset(&preset).unwrap();
    let base = BaseModelShapes::preset("qwen2.5-coder-1.5b").unwrap();
    let head = floors::head_bytes(&cfg, &base) / (bw * 1e9);
    let step = floors::gru_step_bytes(&cfg).1 / (bw * 1e9);
    let disk = floors::plain_file(tmp.path(), adapter_bytes).as_secs_f64();
    let floor = plain.as_secs_f64() + step + head.max(disk);

    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let median = times[times.len() / 2];
    println!("preset {preset}, {dtype}, {commits} commits (after 3 warm-ups), base qwen2.5-coder-1.5b (28 layers); bandwidth {bw:.1} GB/s (before {bw_before:.1}, after {bw_after:.1})");
    println!("| measurement | median | p90 | min | floor | ratio (median / floor) |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| commit → fresh adapter | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.2} |",
        ms(median),
        ms(times[times.len() * 9 / 10]),
        ms(times[0]),
        floor * 1e3,
        median.as_secs_f64() / floor
    );
    println!("\nfloor's parts and the daemon's own means over the timed commits (its histograms):");
    println!("| part | floor | daemon, mean |");
    println!("|---|---|---|");
    let mean = |name: &str| {
        let (s1, c1) = after.get(name).copied().unwrap_or_default();
        let (s0, c0) = before.get(name).copied().unwrap_or_default();
        if c1 > c0 { format!("{:.1} ms", (s1 - s0) / (c1 - c0) * 1e3) } else { "–".to_owned() }
    };
    println!("| `git commit` alone, no hooks, no daemon (best of 10) | {:.1} ms | – |", ms(plain));
    println!("| wake-up → adapter published (`commit_to_adapter`) | – | {} |", mean("commit_to_adapter"));
    println!("| diff and encode a commit (`encode`) | – | {} |", mean("encode"));
    println!("| GRU step (`gru_step`; floor: diff projection, W_ih, W_hh read once) | {:.1} ms | {} |", step * 1e3, mean("gru_step"));
    println!("| head, the weights file written meanwhile (`generation`; floor: head weights read once) | {:.1} ms | {} |", head * 1e3, mean("generation"));
    println!(
        "| finishing the version: last writes, fsyncs, renames, state record (`write`; floor: a plain {:.1} MB file written and fsynced) | {:.1} ms | {} |",
        adapter_bytes as f64 / 1e6,
        disk * 1e3,
        mean("write")
    );
}
