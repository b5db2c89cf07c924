//! The worker role: takes wake-ups from the cluster's queue one at a time and, for each,
//! claims the repository's lease, fetches its refs into a local bare mirror, installs the
//! cluster's state of each ref into the local store, runs the single daemon's engine on the
//! mirror (the same walk, groups, snapshots, restore points and publishing), then uploads
//! any new adapter version and writes each changed state back by compare-and-set on the
//! revision it read. A write that loses the race is dropped (the other worker's state
//! stands), so a step lands in the cluster exactly once; since a state's bits do not depend
//! on how its history was split into walks, whichever worker wins writes the same bits.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use evolora_cluster::{Delivery, Lease, StateRecord, Stored, WakeUp, WorkerBeat, Written};
use evolora_state::{RefState, RepoRecord};
use tracing::{info, warn};

use super::Node;
use crate::clock::now_secs;
use crate::job::{Engine, vector_digest};
use crate::scheduler::JobFlags;

/// What a worker reports in its heartbeat.
#[derive(Default)]
struct Activity {
    busy: Mutex<Option<String>>,
    jobs: AtomicU64,
    discarded: AtomicU64,
    /// Wakes the heartbeat when a job starts or ends, so `cluster status` shows it at once.
    changed: tokio::sync::Notify,
}

/// Serves the cluster's queue on the model thread until the daemon stops.
pub fn run(mut engine: Engine, node: Arc<Node>, device: String) {
    let id = format!("{}-{}", node.config.node, std::process::id());
    let activity = Arc::new(Activity::default());
    let stop = engine.context().stop.clone();
    node.handle.spawn(heartbeat(node.clone(), id.clone(), device, activity.clone()));
    let queue = loop {
        match node.handle.block_on(node.cluster.wake_queue()) {
            Ok(q) => break q,
            Err(e) if !stop.is_set() => {
                warn!(error = %e, "cannot bind the wake-up queue; retrying");
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(_) => return,
        }
    };
    info!(worker = %id, "worker taking wake-ups");
    while !stop.is_set() {
        let delivery = match node.handle.block_on(queue.next(Duration::from_millis(500))) {
            Ok(Some(d)) => d,
            Ok(None) => continue,
            Err(e) => {
                warn!(error = %e, "fetching a wake-up failed");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        handle(&mut engine, &node, &id, &activity, delivery);
    }
    info!(worker = %id, "worker stopped");
}

async fn heartbeat(node: Arc<Node>, worker: String, device: String, activity: Arc<Activity>) {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_owned()).unwrap_or_default();
    let started_at = now_secs();
    let period = (node.cluster.lease_time() / 3).max(Duration::from_millis(500));
    loop {
        let beat = WorkerBeat {
            worker: worker.clone(),
            host: host.clone(),
            pid: std::process::id(),
            device: device.clone(),
            started_at,
            beat_at: now_secs(),
            busy: activity.busy.lock().expect("activity lock").clone(),
            jobs: activity.jobs.load(Ordering::Relaxed),
            discarded: activity.discarded.load(Ordering::Relaxed),
        };
        if let Err(e) = node.cluster.beat(&beat).await {
            tracing::debug!(error = %e, "heartbeat not sent");
        }
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = activity.changed.notified() => {}
        }
    }
}

/// One delivery, start to acknowledgement.
fn handle(engine: &mut Engine, node: &Arc<Node>, id: &str, activity: &Activity, delivery: Delivery) {
    let h = &node.handle;
    let wake = match &delivery.wake {
        Ok(w) => w.clone(),
        Err(e) => {
            warn!(error = %e, "dropping an unreadable wake-up");
            let _ = h.block_on(delivery.reject());
            return;
        }
    };
    let lease = match h.block_on(node.cluster.claim(&wake.rid, id)) {
        Ok(Some(lease)) => lease,
        Ok(None) => {
            // Another worker is on it; it walks to whatever the refs hold when it looks, so
            // this wake-up may well be moot by the time it comes back.
            let _ = h.block_on(delivery.retry(Duration::from_secs(1)));
            return;
        }
        Err(e) => {
            warn!(rid = %wake.rid, error = %e, "cannot claim the repository");
            let _ = h.block_on(delivery.retry(Duration::from_secs(1)));
            return;
        }
    };
    *activity.busy.lock().expect("activity lock") = Some(wake.rid.clone());
    activity.changed.notify_one();
    let (keepalive, lost) = keep_alive(node, &delivery, lease);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| process(engine, node, id, activity, &wake)))
        .unwrap_or_else(|p| Err(format!("internal error (a bug; please report it): {}", panic_text(&p))));
    let lease = keepalive.finish(h);
    *activity.busy.lock().expect("activity lock") = None;
    if lost.load(Ordering::Relaxed) {
        warn!(rid = %wake.rid, "the lease expired during the job; its writes were guarded by compare-and-set");
    }
    if let Some(lease) = lease {
        let _ = h.block_on(node.cluster.release(lease));
    }
    match result {
        Ok(Done::Complete) => {
            activity.jobs.fetch_add(1, Ordering::Relaxed);
            activity.changed.notify_one();
            if let Err(e) = h.block_on(delivery.done()) {
                warn!(rid = %wake.rid, error = %e, "acknowledging the wake-up failed; it will come again (harmless)");
            }
        }
        Ok(Done::Interrupted) => {
            let _ = h.block_on(delivery.retry(Duration::ZERO));
        }
        Ok(Done::Conflicted) => {
            let _ = h.block_on(delivery.retry(Duration::from_secs(1)));
        }
        Err(e) => {
            let delay = Duration::from_secs(1u64 << delivery.delivered.clamp(1, 6) as u32);
            warn!(rid = %wake.rid, repo = %wake.repo_key, edge = %wake.edge, error = %e, "job failed; the wake-up comes back in {} s", delay.as_secs());
            let _ = h.block_on(delivery.retry(delay));
        }
    }
}

enum Done {
    Complete,
    /// The daemon is stopping: what was walked is written, the rest is for the next worker.
    Interrupted,
    /// Another worker's write won a compare-and-set: the wake-up comes back, and the next
    /// walk continues from that worker's state.
    Conflicted,
}

/// Refreshes the lease and tells JetStream the wake-up is being worked on, until finished.
struct Keepalive {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Option<Lease>>,
}

fn keep_alive(node: &Arc<Node>, delivery: &Delivery, mut lease: Lease) -> (Keepalive, Arc<AtomicBool>) {
    let (stop, mut stopped) = tokio::sync::oneshot::channel();
    let lost = Arc::new(AtomicBool::new(false));
    let (cluster, progress, lost_flag) = (node.cluster.clone(), delivery.keepalive(), lost.clone());
    let period = node.cluster.lease_time().min(node.cluster.ack_wait()) / 3;
    let task = node.handle.spawn(async move {
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                _ = tokio::time::sleep(period) => {
                    let _ = progress.progress().await;
                    if !lost_flag.load(Ordering::Relaxed) && !cluster.refresh(&mut lease).await.unwrap_or(true) {
                        lost_flag.store(true, Ordering::Relaxed);
                    }
                }
            }
        }
        (!lost_flag.load(Ordering::Relaxed)).then_some(lease)
    });
    (Keepalive { stop, task }, lost)
}

impl Keepalive {
    /// Stops the task; the lease, if still held.
    fn finish(self, h: &tokio::runtime::Handle) -> Option<Lease> {
        let _ = self.stop.send(());
        h.block_on(self.task).ok().flatten()
    }
}

fn process(engine: &mut Engine, node: &Node, id: &str, activity: &Activity, wake: &WakeUp) -> Result<Done, String> {
    let h = &node.handle;
    // The id names the mirror's directory and every key: it must be the one its edge and
    // repository key give, so no wake-up can reach another repository's state.
    if evolora_cluster::names::repo_id(&wake.edge, &wake.repo_key) != wake.rid || evolora_cluster::names::check_component(&wake.rid).is_err() {
        return Err(format!("a wake-up whose id {:?} is not that of {:?} on edge {:?}; ignored", wake.rid, wake.repo_key, wake.edge));
    }
    if let Some(bad) = wake.refs.iter().find(|r| !r.name.starts_with("refs/") || r.name.contains("..") || r.name.starts_with("refs/-") || r.name.contains(':')) {
        return Err(format!("a wake-up names the ref {:?}, which is not a ref name", bad.name));
    }
    let cfg = engine.context().config.get();
    let store = engine.context().store.clone();
    let (fingerprint, trained) = {
        let (f, t) = engine.model_identity();
        (f.to_owned(), t)
    };
    let mirror = mirror(&super::mirrors_root(&cfg.state_dir), wake)?;
    let key = crate::git::repo_key(&mirror);
    let refnames: Vec<String> = wake.refs.iter().map(|r| r.name.clone()).collect();
    let record = RepoRecord { key: key.clone(), git_dir: mirror.display().to_string(), work_dir: None, bare: true, tracked_refs: refnames.clone(), registered_at: now_secs() };
    if store.repo(&key).map_err(|e| e.to_string())?.as_ref() != Some(&record) {
        let registered_at = store.repo(&key).ok().flatten().map_or(record.registered_at, |r| r.registered_at);
        store.put_repo(&RepoRecord { registered_at, ..record }).map_err(|e| e.to_string())?;
    }

    // The cluster's state of each ref becomes the local one: the walk continues from it.
    let mut read: HashMap<String, (Option<Stored>, Option<RefState>)> = HashMap::new();
    for refname in &refnames {
        let stored = h.block_on(node.cluster.state(&wake.rid, refname)).map_err(|e| e.to_string())?;
        let state = match &stored {
            Some(s) => Some(RefState::from_bytes(&s.record.state).map_err(|e| format!("the cluster's state of {refname}: {e}"))?),
            None => None,
        };
        if let Some(st) = &state {
            if st.model_fingerprint != fingerprint {
                return Err(format!("the cluster's state of {refname} was made by another model ({}); this worker runs {fingerprint}: every worker needs the same [model]", st.model_fingerprint));
            }
            if store.ref_state(&key, refname).map_err(|e| e.to_string())?.as_ref() != Some(st) {
                // The ref's restore points travel with it: this worker's own may be from an
                // older walk, the cluster's are those of the state it continues.
                store.clear_restore_points(&key, refname).map_err(|e| e.to_string())?;
                for bytes in &stored.as_ref().expect("a state was read").record.restore_points {
                    let point = RefState::from_bytes(bytes).map_err(|e| format!("a restore point of {refname} in the cluster: {e}"))?;
                    store.put_restore_point(&key, &point, cfg.history.restore_points).map_err(|e| e.to_string())?;
                }
                store.commit_steps(&key, st).map_err(|e| e.to_string())?;
            }
        }
        read.insert(refname.clone(), (stored, state));
    }

    let out = engine.sync(&key, JobFlags::default()).map_err(|e| e.to_string())?;

    let mut published = false;
    let mut conflicted = false;
    for refname in &refnames {
        let Some(after) = store.ref_state(&key, refname).map_err(|e| e.to_string())? else { continue };
        let (stored, before) = read.remove(refname).unwrap_or((None, None));
        if before.as_ref() == Some(&after) {
            continue;
        }
        let new_version = after.current_adapter.is_some() && before.as_ref().is_none_or(|b| (&b.current_adapter, b.adapter_at) != (&after.current_adapter, after.adapter_at));
        let adapter = match (&after.current_adapter, &after.adapter_commit) {
            (Some(dir), Some(commit)) if new_version => {
                let path = engine.context().adapters.path(&key, dir);
                let pointer = h.block_on(node.cluster.put_adapter(&wake.rid, commit, &path, after.adapter_at.unwrap_or_else(now_secs))).map_err(|e| e.to_string())?;
                // On record before any state names it, so retention knows every version.
                h.block_on(node.cluster.record_version(&wake.rid, refname, &pointer)).map_err(|e| e.to_string())?;
                published = true;
                Some(pointer)
            }
            _ => stored.as_ref().and_then(|s| s.record.adapter.clone()),
        };
        let record = StateRecord {
            rid: wake.rid.clone(),
            edge: wake.edge.clone(),
            repo_key: wake.repo_key.clone(),
            refname: refname.clone(),
            last_commit: after.last_commit.clone(),
            walked: after.walked,
            vector_sha256: vector_digest(&after.vector),
            state: after.to_bytes(),
            restore_points: exported_points(&store.restore_points(&key, refname).map_err(|e| e.to_string())?),
            adapter,
            trained,
            worker: id.to_owned(),
            updated_at: now_secs(),
        };
        match h.block_on(node.cluster.write_state(&record, stored.as_ref().map(|s| s.revision))).map_err(|e| e.to_string())? {
            Written::Applied(revision) => info!(rid = %wake.rid, %refname, commit = %after.last_commit, walked = after.walked, revision, "state written"),
            Written::Conflict => {
                activity.discarded.fetch_add(1, Ordering::Relaxed);
                conflicted = true;
                info!(rid = %wake.rid, %refname, "another worker advanced this state meanwhile: this walk's result is dropped");
            }
        }
    }
    if published {
        // The cluster-wide retention rules, with this worker's `keep_adapters` and serve grace
        // (every worker should share them). A failure here costs only space.
        match h.block_on(node.cluster.prune_versions(&wake.rid, cfg.keep_adapters, cfg.serve.grace_secs, now_secs())) {
            Ok(p) if !p.removed.is_empty() => info!(rid = %wake.rid, removed = p.removed.len(), freed = p.freed, "adapter versions pruned from the cluster"),
            Ok(_) => {}
            Err(e) => warn!(rid = %wake.rid, error = %e, "adapter retention failed; the versions stay until the next publish"),
        }
    }
    // States of refs the edge no longer follows (deleted branches) go, as on one daemon.
    for gone in h.block_on(node.cluster.states_of(&wake.rid)).map_err(|e| e.to_string())? {
        if !refnames.contains(&gone.record.refname) {
            h.block_on(node.cluster.delete_state(&wake.rid, &gone.record.refname, gone.revision)).map_err(|e| e.to_string())?;
            info!(rid = %wake.rid, refname = %gone.record.refname, "state of a ref no longer followed removed from the cluster");
        }
    }
    Ok(if out.interrupted {
        Done::Interrupted
    } else if conflicted {
        // The other worker may have walked to older tips than this wake-up names: look again.
        Done::Conflicted
    } else {
        Done::Complete
    })
}

/// Most bytes of restore points a state record carries, well inside JetStream's default
/// 1 MiB message (32 points of a paper-size state take about 270 KB): beyond it the oldest
/// points stay behind, which costs only a longer walk after a rewrite of old history.
const RESTORE_POINT_BYTES: usize = 640 * 1024;

/// The newest restore points that fit [`RESTORE_POINT_BYTES`], oldest first.
fn exported_points(points: &[RefState]) -> Vec<Vec<u8>> {
    let mut total = 0;
    let mut out: Vec<Vec<u8>> = points
        .iter()
        .rev()
        .map(RefState::to_bytes)
        .take_while(|b| {
            total += b.len();
            total <= RESTORE_POINT_BYTES
        })
        .collect();
    out.reverse();
    out
}

/// Longest a fetch into a mirror may take (a first fetch of a large repository included).
const FETCH_TIMEOUT: Duration = Duration::from_secs(3600);

/// Fetches the wake-up's refs into `<root>/<rid>.git` (created bare the first time) and
/// returns its canonical path.
fn mirror(root: &Path, wake: &WakeUp) -> Result<PathBuf, String> {
    let path = root.join(format!("{}.git", wake.rid));
    let git = |dir: &Path, args: &[&str]| -> Result<(), String> {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .map_err(|e| format!("running git: {e}"))?;
        if out.status.success() { Ok(()) } else { Err(format!("git {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim())) }
    };
    if !path.join("HEAD").is_file() {
        std::fs::create_dir_all(root).map_err(|e| format!("{}: {e}", root.display()))?;
        let tmp = root.join(format!(".tmp-{}-{}", wake.rid, std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
        git(&tmp, &["init", "--bare", "--quiet"])?;
        std::fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    // A fetch that stops moving (an edge gone mid-transfer) is given up, so that the lease
    // and the wake-up go back to the pool instead of being kept alive forever.
    let mut args: Vec<String> = ["-c", "http.lowSpeedLimit=1000", "-c", "http.lowSpeedTime=120", "fetch", "--quiet", "--no-tags", "--force", "--"].map(String::from).to_vec();
    args.push(wake.url.clone());
    args.extend(wake.refs.iter().map(|r| format!("+{0}:{0}", r.name)));
    let mut fetch = Command::new("git");
    fetch.arg("-C").arg(&path).args(&args).env_remove("GIT_DIR").env_remove("GIT_WORK_TREE").env("GIT_TERMINAL_PROMPT", "0");
    if std::env::var_os("GIT_SSH_COMMAND").is_none() {
        fetch.env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes -o ServerAliveInterval=30 -o ServerAliveCountMax=4");
    }
    let mut child = fetch.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().map_err(|e| format!("running git: {e}"))?;
    let deadline = std::time::Instant::now() + FETCH_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| format!("waiting for git fetch: {e}"))? {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("git fetch from {} took over {} s; given up", wake.url, FETCH_TIMEOUT.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if !status.success() {
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut stderr);
        }
        return Err(format!("git fetch from {}: {}", wake.url, stderr.trim()));
    }
    std::fs::canonicalize(&path).map_err(|e| format!("{}: {e}", path.display()))
}

fn panic_text(payload: &Box<dyn std::any::Any + Send>) -> String {
    payload.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| payload.downcast_ref::<String>().cloned()).unwrap_or_else(|| "unknown panic".into())
}
