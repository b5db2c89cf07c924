//! State store figures for docs/BENCHMARKS.md: bytes on disk per repository and per step,
//! and the latency of one durable step (transaction + fsync).
//!
//! cargo bench -p evolora-state --bench store

use std::time::{Duration, Instant};

use evolora_state::{RefState, RepoRecord, StateStore};

fn state(dim: usize, step: u64) -> RefState {
    RefState {
        refname: "refs/heads/main".into(),
        vector: (0..dim).map(|i| (i as f32 * 0.001 + step as f32).sin()).collect(),
        last_commit: format!("{:040x}", step),
        origin_commit: "0".repeat(40),
        step_base: format!("{:040x}", step),
        walked: step,
        steps: step,
        steps_since_adapter: step % 7,
        manifest_changed: false,
        model_fingerprint: "f".repeat(64),
        current_adapter: Some(format!("{:040x}", step)),
        adapter_commit: Some(format!("{:040x}", step)),
        adapter_at: Some(1_700_000_000),
        updated_at: 1_700_000_000 + step,
    }
}

fn dir_bytes(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| if e.path().is_dir() { dir_bytes(&e.path()) } else { e.metadata().map(|m| m.len()).unwrap_or(0) })
                .sum()
        })
        .unwrap_or(0)
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p) as usize]
}

fn main() {
    println!("| state vector | repositories | on disk | bytes per repository | logical bytes per repository |");
    println!("|---|---|---|---|---|");
    for dim in [256usize, 2048] {
        let tmp = tempfile::tempdir().unwrap();
        let store = StateStore::open(tmp.path()).unwrap();
        let empty = dir_bytes(tmp.path());
        let n = 2000;
        for i in 0..n {
            let key = format!("repo-{i:06}");
            store
                .put_repo(&RepoRecord {
                    key: key.clone(),
                    git_dir: format!("/srv/git/project-{i}.git"),
                    work_dir: None,
                    bare: true,
                    tracked_refs: vec![],
                    registered_at: 1_700_000_000,
                })
                .unwrap();
            store.commit_steps(&key, &state(dim, 1)).unwrap();
        }
        store.flush().unwrap();
        let logical = state(dim, 1).to_bytes().len() + 120;
        let bytes = dir_bytes(tmp.path()) - empty;
        println!("| {dim} floats | {n} | {:.1} MiB | {} | {} |", bytes as f64 / 1048576.0, bytes / n as u64, logical);
    }

    println!();
    println!("| state vector | steps | p50 step (insert + fsync) | p99 | disk growth per step |");
    println!("|---|---|---|---|---|");
    for dim in [256usize, 2048] {
        let tmp = tempfile::tempdir().unwrap();
        let store = StateStore::open(tmp.path()).unwrap();
        store.commit_steps("r", &state(dim, 0)).unwrap();
        let before = dir_bytes(tmp.path());
        let steps = 500;
        let mut lat = Vec::with_capacity(steps);
        for s in 1..=steps as u64 {
            let st = state(dim, s);
            let t = Instant::now();
            store.commit_steps("r", &st).unwrap();
            lat.push(t.elapsed());
        }
        let growth = dir_bytes(tmp.path()).saturating_sub(before) / steps as u64;
        println!(
            "| {dim} floats | {steps} | {:.2} ms | {:.2} ms | {growth} B |",
            percentile(&mut lat, 0.5).as_secs_f64() * 1e3,
            percentile(&mut lat, 0.99).as_secs_f64() * 1e3
        );
    }
}
