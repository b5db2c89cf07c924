//! Exactly-once steps under SIGKILL: the daemon is killed at random moments while it walks
//! 300 commits and regenerates, restarted each time, and must end bit-identical to a run that
//! was never interrupted, with every published adapter complete and no temporary debris.

mod util;

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use util::{Daemon, Lcg, Repo};

const COMMITS: usize = 300;
const TENSORS_05B: usize = 24 * 7 * 2;

fn setup(root: &Path, source: &Repo, base_commit: &str) -> (Daemon, Repo) {
    // Small groups: many transactions, many places for a kill to land.
    let daemon = Daemon::start_with_config(root, "step_group = 4\nkeep_adapters = 2\n");
    let repo = source.clone_to(&root.join("repo"));
    repo.git(&["reset", "-q", "--hard", base_commit]);
    let out = daemon.cli(&["register", "--no-hooks", repo.path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    daemon.wait_for(Duration::from_secs(60), "the cold start", || {
        let s = daemon.repo_status(&repo.path);
        (s["refs"][0]["adapter_commit"] == base_commit).then_some(())
    });
    (daemon, repo)
}

fn adapters_dir(daemon: &Daemon) -> std::path::PathBuf {
    let entries: Vec<_> = std::fs::read_dir(daemon.state_dir.join("adapters")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(entries.len(), 1, "one repository");
    entries[0].clone()
}

/// Every published directory is complete and `current` resolves to one of them.
fn check_adapters(dir: &Path) -> usize {
    let mut complete = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(".tmp-") || name == "current" {
            continue;
        }
        util::assert_complete_adapter(&e.path(), TENSORS_05B);
        complete += 1;
    }
    let current = std::fs::canonicalize(dir.join("current")).expect("`current` always resolves");
    util::assert_complete_adapter(&current, TENSORS_05B);
    complete
}

fn finish(daemon: &Daemon, repo: &Repo, tip: &str) -> Value {
    daemon.request(json!({"op": "notify", "repo": repo.path}));
    daemon.wait_for(Duration::from_secs(120), "the walk to finish", || {
        let s = daemon.repo_status(&repo.path);
        (s["refs"][0]["adapter_commit"] == tip && s["pending"] == false).then_some(s)
    })
}

#[test]
fn sigkill_during_ingest_and_regeneration_loses_and_repeats_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let source = Repo::init(&tmp.path().join("source"));
    source.write("pkg/__init__.py", "");
    source.write("requirements.txt", "requests\n");
    let root_commit = source.commit("root");
    let tip = source.append_history(COMMITS);

    // The uninterrupted run.
    let (reference, ref_repo) = setup(&tmp.path().join("reference"), &source, &root_commit);
    ref_repo.git(&["reset", "-q", "--hard", &tip]);
    let expected = finish(&reference, &ref_repo, &tip);
    let expected = &expected["refs"][0];
    assert_eq!(expected["steps"], COMMITS as u64 + 1, "the root and every commit after it");
    drop(reference);

    // The same commits, with SIGKILLs.
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    eprintln!("kill schedule seed: {seed}");
    let mut rng = Lcg(seed);
    let (mut daemon, repo) = setup(&tmp.path().join("faulty"), &source, &root_commit);
    repo.git(&["reset", "-q", "--hard", &tip]);
    let dir = adapters_dir(&daemon);
    // Commits arrive in pushes of 30; each push is killed at random moments until one kill
    // lands after its work is done. Kill delays adapt so that most land mid-work.
    let (mut during_walk, mut during_publish, mut idle) = (0, 0, 0);
    let mut max_delay_ms = 40u64;
    let mut arrived = 0;
    while arrived < COMMITS {
        arrived = (arrived + 30).min(COMMITS);
        let stage_tip = repo.git(&["rev-parse", &format!("{tip}~{}", COMMITS - arrived)]);
        repo.git(&["reset", "-q", "--hard", &stage_tip]);
        // At most three kills per push, then let it finish, so the run always ends.
        for _ in 0..3 {
            daemon.request(json!({"op": "notify", "repo": repo.path}));
            std::thread::sleep(Duration::from_millis(rng.below(max_delay_ms)));
            let s = daemon.repo_status(&repo.path);
            let r = &s["refs"][0];
            let walking = r["last_commit"] != stage_tip.as_str();
            let publishing = !walking && r["adapter_commit"] != stage_tip.as_str();
            daemon.signal_and_wait(libc::SIGKILL, Duration::from_secs(10));
            check_adapters(&dir);
            daemon.restart();
            // Publishing takes longer than walking: aim earlier after a kill that missed the walk.
            if walking {
                during_walk += 1;
                max_delay_ms = (max_delay_ms * 5 / 4).min(400);
            } else if publishing {
                during_publish += 1;
                max_delay_ms = (max_delay_ms * 3 / 4).max(5);
            } else {
                idle += 1;
                max_delay_ms = (max_delay_ms / 2).max(5);
                break;
            }
        }
    }
    eprintln!("kills: {during_walk} during the walk, {during_publish} while publishing, {idle} when idle");
    assert!(during_walk + during_publish >= 20, "only {} kills landed mid-work; the test is not testing", during_walk + during_publish);
    assert!(during_walk >= 5, "only {during_walk} kills landed during the walk");
    let got = finish(&daemon, &repo, &tip);
    let got = &got["refs"][0];
    assert_eq!(got["last_commit"], tip.as_str());
    assert_eq!(got["steps"], COMMITS as u64 + 1, "every commit stepped exactly once");
    assert_eq!(got["state_sha256"], expected["state_sha256"], "state bit-identical to the uninterrupted run");
    assert!(check_adapters(&dir) >= 1);
    let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with(".tmp-")).collect();
    assert!(leftovers.is_empty(), "temporary entries left behind: {leftovers:?}");
    // Every version on record is on disk (a kill between unpublishing a version and
    // forgetting it leaves a record that the next start drops), and none is on disk
    // without a record.
    let on_record: std::collections::BTreeSet<String> =
        daemon.repo_status(&repo.path)["adapters"].as_array().unwrap().iter().map(|a| a["dir"].as_str().unwrap().to_owned()).collect();
    let on_disk: std::collections::BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "current")
        .collect();
    assert_eq!(on_record, on_disk, "adapter records and directories disagree");
}
