//! Ingest throughput on a real Python history (docs/BENCHMARKS.md): commits per second
//! through diff + encode + GRU step + durable state, against two floors on the same commits:
//! git producing the diffs (`git log -p --first-parent`), and the GRU's sequential part
//! (reading W_hh once per commit at the measured memory bandwidth).
//!
//! scripts/make-pypi-history.sh requests 60 /tmp/requests-history
//! cargo bench -p evolora-daemon --bench ingest -- --repo /tmp/requests-history --preset paper
//! (`--threads N` sets `encode_threads`; default 0, one per CPU)

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{arg, bandwidth_gbs, git, histograms, request, start_daemon};

/// Registers `repo` at `root` with a fresh daemon, then moves the branch to `tip` (one ref
/// update) and times the walk until the state records the tip. Returns that time, the
/// steps, and the daemon's own split of the walk: seconds in GRU steps (the model thread)
/// and in diffing and encoding (summed over the encode threads).
fn ingest_once(repo: &Path, dir: &Path, root: &str, tip: &str, preset: &str) -> (Duration, serde_json::Value, f64, f64) {
    git(repo, &["reset", "-q", "--hard", root]);
    let sock = dir.join("e.sock");
    let config = dir.join("evolora.toml");
    std::fs::create_dir_all(dir).unwrap();
    let threads: usize = arg("--threads", 0);
    std::fs::write(&config, format!("encode_threads = {threads}\n")).unwrap();
    let args = [OsStr::new("--config"), config.as_os_str(), "--preset".as_ref(), preset.as_ref(), "--base".as_ref(), "qwen2.5-coder-1.5b".as_ref()];
    let mut daemon = start_daemon(args, &dir.join("state"), &sock);
    let reply = request(&sock, &serde_json::json!({"op": "register", "repo": repo}));
    assert_eq!(reply["ok"], true, "{reply}");
    let status = |sock: &Path| request(sock, &serde_json::json!({"op": "status", "repo": repo}))["repos"][0].clone();
    while !(status(&sock)["refs"][0]["adapter_commit"] == root && status(&sock)["pending"] == false) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = histograms(&sock);
    let t = Instant::now();
    git(repo, &["reset", "-q", "--hard", tip]);
    request(&sock, &serde_json::json!({"op": "notify", "repo": repo}));
    // Every 10 ms (at most 0.7 % of the compact walk): each status request costs the daemon's
    // cores some work and wakes its threads, which a faster poll adds to the walk it times.
    while status(&sock)["refs"][0]["last_commit"] != tip {
        std::thread::sleep(Duration::from_millis(10));
    }
    let ingest = t.elapsed();
    let after = histograms(&sock);
    let spent = |h: &str| after.get(h).map_or(0.0, |a| a.0) - before.get(h).map_or(0.0, |b| b.0);
    let steps = status(&sock)["refs"][0]["steps"].clone();
    let _ = daemon.kill();
    let _ = daemon.wait();
    (ingest, steps, spent("gru_step"), spent("encode"))
}

fn main() {
    let source: PathBuf = arg("--repo", PathBuf::from("/tmp/requests-history"));
    let preset: String = arg("--preset", "tiny".to_owned());
    let gru_hidden: usize = match preset.as_str() {
        "paper" => 2048,
        "compact" => 256,
        _ => 16,
    };
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    Command::new("git").args(["clone", "-q"]).arg(&source).arg(&repo).status().unwrap();
    let root = git(&repo, &["rev-list", "--max-parents=0", "HEAD"]);
    let tip = git(&repo, &["rev-parse", "HEAD"]);
    let commits: usize = git(&repo, &["rev-list", "--first-parent", "--count", &format!("{root}..{tip}")]).parse().unwrap();

    // Three rounds, each measuring its floors right before its ingest (a fresh daemon and
    // state each time), so a ratio compares work done under the same load: on a shared
    // host the bandwidth and git's time drift by 2× within minutes.
    let git_floor = || {
        let t = Instant::now();
        let ok = Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(["log", "-p", "--first-parent", "--no-color", "--no-ext-diff", &format!("{root}..{tip}")])
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok);
        t.elapsed()
    };
    struct Round {
        ingest: Duration,
        git: Duration,
        bandwidth: f64,
        gru_floor: Duration,
        steps: serde_json::Value,
        gru_seconds: f64,
        encode_seconds: f64,
    }
    let mut rounds = Vec::new();
    for run in 0..3 {
        // Floor 1: git producing the same diffs (best of two). Floor 2: the GRU's
        // sequential weight reads at the bandwidth measured now.
        let git = git_floor().min(git_floor());
        let bandwidth = bandwidth_gbs();
        let gru_floor = Duration::from_secs_f64((3 * gru_hidden * gru_hidden * 4) as f64 * commits as f64 / (bandwidth * 1e9));
        let (ingest, steps, gru_seconds, encode_seconds) = ingest_once(&repo, &tmp.path().join(format!("run{run}")), &root, &tip, &preset);
        rounds.push(Round { ingest, git, bandwidth, gru_floor, steps, gru_seconds, encode_seconds });
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let ratio = |r: &Round| r.ingest.as_secs_f64() / r.git.max(r.gru_floor).as_secs_f64();
    println!("history: {} ({commits} first-parent commits), preset {preset}, steps {}", source.display(), rounds[0].steps);
    println!("| round | evolora ingest (diff + encode + GRU + fsynced state) | commits/s | floor: `git log -p --first-parent` | bandwidth | floor: GRU W_hh reads | ratio to the larger floor | daemon: in GRU steps | daemon: diff + encode, all threads |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (i, r) in rounds.iter().enumerate() {
        println!(
            "| {} | {:.1} ms | {:.0} | {:.1} ms | {:.1} GB/s | {:.1} ms | {:.2} | {:.1} ms | {:.1} ms |",
            i + 1,
            ms(r.ingest),
            commits as f64 / r.ingest.as_secs_f64(),
            ms(r.git),
            r.bandwidth,
            ms(r.gru_floor),
            ratio(r),
            r.gru_seconds * 1e3,
            r.encode_seconds * 1e3,
        );
    }
    let mut ratios: Vec<f64> = rounds.iter().map(ratio).collect();
    ratios.sort_by(f64::total_cmp);
    println!("| median | | | | | | **{:.2}** | | |", ratios[1]);
    encoders_alone(&repo, &root, &tip);
}

/// Each hashed encoder version alone, one thread, on every first-parent diff of the
/// history (as the walk diffs them): where version 1's time went.
fn encoders_alone(repo: &Path, root: &str, tip: &str) {
    use evolora_daemon::git::{self as daemon_git, DiffLimits};
    use evolora_model::encoder::HashedEncoder;
    let git_repo = daemon_git::open(&repo.join(".git")).unwrap();
    let listed = git(repo, &["rev-list", "--first-parent", &format!("{root}..{tip}")]);
    let diffs: Vec<_> = listed.lines().map(|c| daemon_git::commit_diff(&git_repo, git2::Oid::from_str(c).unwrap(), DiffLimits::default()).unwrap().input).collect();
    let python_bytes: usize = diffs.iter().flat_map(|d| &d.files).filter(|f| HashedEncoder::is_python(&f.path)).map(|f| f.added.len() + f.removed.len()).sum();
    println!("\n| encoder alone, one thread, {} diffs ({:.1} MB of Python lines) | time | Python MB/s |", diffs.len(), python_bytes as f64 / 1e6);
    println!("|---|---|---|");
    for version in HashedEncoder::VERSIONS {
        let t = Instant::now();
        for d in &diffs {
            std::hint::black_box(version.encode_diff(d));
        }
        let took = t.elapsed().as_secs_f64();
        println!("| {} | {:.1} ms | {:.1} |", version.id(), took * 1e3, python_bytes as f64 / 1e6 / took);
    }
}
