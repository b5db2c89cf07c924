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

use common::{arg, bandwidth_gbs, git, request, start_daemon};

/// Registers `repo` at `root` with a fresh daemon, then moves the branch to `tip` (one ref
/// update) and times the walk until the state records the tip.
fn ingest_once(repo: &Path, dir: &Path, root: &str, tip: &str, preset: &str) -> (Duration, serde_json::Value) {
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
    let t = Instant::now();
    git(repo, &["reset", "-q", "--hard", tip]);
    request(&sock, &serde_json::json!({"op": "notify", "repo": repo}));
    while status(&sock)["refs"][0]["last_commit"] != tip {
        std::thread::sleep(Duration::from_millis(2));
    }
    let ingest = t.elapsed();
    let steps = status(&sock)["refs"][0]["steps"].clone();
    let _ = daemon.kill();
    let _ = daemon.wait();
    (ingest, steps)
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

    // Floor 1: git producing the same diffs.
    let mut git_best = Duration::MAX;
    for _ in 0..3 {
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
        git_best = git_best.min(t.elapsed());
    }
    // Floor 2: the GRU's sequential weight reads.
    let bw = bandwidth_gbs();
    let gru_floor = Duration::from_secs_f64((3 * gru_hidden * gru_hidden * 4) as f64 * commits as f64 / (bw * 1e9));

    // Best of three, as for git: each run a fresh daemon and state.
    let runs: Vec<(Duration, serde_json::Value)> = (0..3).map(|run| ingest_once(&repo, &tmp.path().join(format!("run{run}")), &root, &tip, &preset)).collect();
    let (ingest, steps) = runs.iter().min_by_key(|(d, _)| *d).cloned().unwrap();
    let floor = git_best.max(gru_floor);
    println!("history: {} ({commits} first-parent commits), preset {preset}, bandwidth {bw:.2} GB/s, steps {steps}", source.display());
    println!("| measurement | time | commits/s | ratio to it |");
    println!("|---|---|---|---|");
    println!("| evolora ingest (diff + encode + GRU + fsynced state) | {:.1} ms | {:.0} | – |", ingest.as_secs_f64() * 1e3, commits as f64 / ingest.as_secs_f64());
    println!("| floor: `git log -p --first-parent` | {:.1} ms | {:.0} | {:.2} |", git_best.as_secs_f64() * 1e3, commits as f64 / git_best.as_secs_f64(), ingest.as_secs_f64() / git_best.as_secs_f64());
    println!("| floor: GRU W_hh reads at measured bandwidth | {:.2} ms | {:.0} | {:.2} |", gru_floor.as_secs_f64() * 1e3, commits as f64 / gru_floor.as_secs_f64(), ingest.as_secs_f64() / gru_floor.as_secs_f64());
    println!("| against the larger floor | | | **{:.2}** |", ingest.as_secs_f64() / floor.as_secs_f64());
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
