//! Hook overhead on `git commit` (docs/BENCHMARKS.md): the commit rate with evolora's hooks
//! installed against the rate without, with the daemon up and with it down.
//!
//! cargo bench -p evolora-daemon --bench hooks

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, git, start_daemon};
const COMMITS: usize = 150;

/// Mean wall time of one `git commit --allow-empty` over COMMITS commits (after 10 warm-ups).
fn commit_time(repo: &Path) -> Duration {
    for _ in 0..10 {
        git(repo, &["commit", "-q", "--allow-empty", "-m", "warm"]);
    }
    let t = Instant::now();
    for i in 0..COMMITS {
        git(repo, &["commit", "-q", "--allow-empty", "-m", &format!("c{i}")]);
    }
    t.elapsed() / COMMITS as u32
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("a.py"), "x = 1\n").unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "root"]);
    let socket = tmp.path().join("evolora.sock");

    let bare = commit_time(&repo);

    // The floor for any hook: git starting an empty POSIX sh script.
    let hook = repo.join(".git/hooks/post-commit");
    std::fs::write(&hook, "#!/bin/sh\n:\n").unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let empty_hook = commit_time(&repo);
    std::fs::remove_file(&hook).unwrap();

    let mut daemon = start_daemon(["--preset", "tiny", "--base", "qwen2.5-coder-0.5b"], &tmp.path().join("state"), &socket);
    // Watcher only: no hook runs; the daemon sees the ref move and works concurrently.
    let ok = Command::new(BIN).args(["register", "--no-hooks"]).arg(&repo).env("EVOLORA_SOCKET", &socket).stdout(Stdio::null()).status().unwrap().success();
    assert!(ok);
    let watcher_only = commit_time(&repo);
    let ok = Command::new(BIN).args(["hooks", "install"]).arg(&repo).env("EVOLORA_SOCKET", &socket).stdout(Stdio::null()).status().unwrap().success();
    assert!(ok);
    let up = commit_time(&repo);
    let _ = daemon.kill();
    let _ = daemon.wait();
    let _ = std::fs::remove_file(&socket);
    let down = commit_time(&repo);

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("| git commit | time per commit | added | rate ratio (with / without) |");
    println!("|---|---|---|---|");
    println!("| without hooks | {:.2} ms | – | 1.00 |", ms(bare));
    println!("| empty `#!/bin/sh` hook (floor for any hook) | {:.2} ms | {:.2} ms | {:.3} |", ms(empty_hook), ms(empty_hook) - ms(bare), ms(bare) / ms(empty_hook));
    println!("| no hooks, daemon up (watcher only) | {:.2} ms | {:.2} ms | {:.3} |", ms(watcher_only), ms(watcher_only) - ms(bare), ms(bare) / ms(watcher_only));
    println!("| hooks, daemon up | {:.2} ms | {:.2} ms | {:.3} |", ms(up), ms(up) - ms(bare), ms(bare) / ms(up));
    println!("| hooks, daemon down | {:.2} ms | {:.2} ms | {:.3} |", ms(down), ms(down) - ms(bare), ms(bare) / ms(down));
}
