//! Registering a real history (docs/BENCHMARKS.md): the first walk from the root to the tip
//! (time, steps, restore-point bytes), then a rebase of the last 10 commits (re-walked from
//! the newest restore point), against floors measured in the same run: git producing every
//! first-parent diff of the history (`git log -p --first-parent`), which any walk must read,
//! and the GRU's sequential part (W_hh read once per commit at the memory bandwidth measured
//! with a vectorised read on every core).
//!
//! git clone https://github.com/psf/requests /tmp/requests     (2,663 first-parent commits)
//! cargo bench -p evolora-daemon --bench history -- --repo /tmp/requests --preset compact

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{arg, bandwidth_gbs, git, request, start_daemon};

/// Seconds for git to write every first-parent diff of the history, best of three.
fn git_floor(repo: &Path) -> f64 {
    (0..3)
        .map(|_| {
            let t = Instant::now();
            let status = Command::new("git")
                .arg("-C")
                .arg(repo)
                .args(["log", "-p", "--first-parent", "--no-color", "--format=%H", "HEAD"])
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .stdout(Stdio::null())
                .status()
                .unwrap();
            assert!(status.success());
            t.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min)
}

fn status(sock: &Path, repo: &Path) -> serde_json::Value {
    request(sock, &serde_json::json!({"op": "status", "repo": repo}))["repos"][0].clone()
}

/// Waits until the ref has an adapter at `tip` and nothing is pending; returns its status.
fn settled(sock: &Path, repo: &Path, tip: &str, within: Duration) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        let s = status(sock, repo);
        if s["refs"][0]["adapter_commit"] == tip && s["pending"] == false {
            return s;
        }
        assert!(Instant::now() < deadline, "no adapter at {tip} within {within:?}: {s}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn main() {
    let source: PathBuf = arg("--repo", PathBuf::from("/tmp/requests"));
    let preset: String = arg("--preset", "compact".to_owned());
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    git(work.path(), &["clone", "-q", source.to_str().unwrap(), repo.to_str().unwrap()]);
    let commits: u64 = git(&repo, &["rev-list", "--first-parent", "--count", "HEAD"]).parse().unwrap();
    let floor = git_floor(&repo);
    let gru_hidden: f64 = match preset.as_str() {
        "paper" => 2048.0,
        "compact" => 256.0,
        _ => 16.0,
    };
    let bandwidth = bandwidth_gbs();
    let gru_floor = commits as f64 * 3.0 * gru_hidden * gru_hidden * 4.0 / (bandwidth * 1e9);

    let dir = work.path().join("daemon");
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("e.sock");
    let args = [OsStr::new("--preset"), preset.as_ref(), "--base".as_ref(), "qwen2.5-coder-1.5b".as_ref()];
    let mut daemon = start_daemon(args, &dir.join("state"), &sock);
    let tip = git(&repo, &["rev-parse", "HEAD"]);
    let t = Instant::now();
    let reply = request(&sock, &serde_json::json!({"op": "register", "repo": repo}));
    assert_eq!(reply["ok"], true, "{reply}");
    let first = settled(&sock, &repo, &tip, Duration::from_secs(6 * 3600));
    let register_secs = t.elapsed().as_secs_f64();
    let r = &first["refs"][0];
    assert_eq!(r["walked"].as_u64(), Some(commits), "the walk covers every first-parent commit: {first}");

    // A rebase of the last 10 commits: the restore point at or below tip~10 is restored.
    git(&repo, &["rebase", "-q", "HEAD~10", "--exec", "git commit -q --amend -m rewritten"]);
    let new_tip = git(&repo, &["rev-parse", "HEAD"]);
    let t = Instant::now();
    request(&sock, &serde_json::json!({"op": "notify", "repo": repo}));
    let after = settled(&sock, &repo, &new_tip, Duration::from_secs(3600));
    let rewrite_secs = t.elapsed().as_secs_f64();
    let a = &after["refs"][0];
    let _ = daemon.kill();
    let _ = daemon.wait();

    println!("history: {} ({commits} first-parent commits), preset {preset}", source.display());
    println!("git floor (every first-parent diff): {floor:.2} s");
    println!("GRU floor (W_hh once per commit at {bandwidth:.1} GB/s): {gru_floor:.2} s");
    let larger = floor.max(gru_floor);
    println!(
        "first walk: {register_secs:.2} s = {:.2}x the larger floor, {} steps over {} commits, {:.2} ms per commit",
        register_secs / larger,
        r["steps"],
        r["walked"],
        register_secs * 1e3 / commits as f64
    );
    println!(
        "restore points: {} for the ref, {} bytes ({:.1} KiB per point)",
        r["restore_points"],
        first["restore_point_bytes"],
        first["restore_point_bytes"].as_f64().unwrap_or(0.0) / 1024.0 / r["restore_points"].as_f64().unwrap_or(1.0)
    );
    println!(
        "rebase of the last 10: {rewrite_secs:.2} s, {} commits re-walked from a {} state (a fresh walk: {commits})",
        a["walk"]["walked"], a["walk"]["start"]
    );
}
