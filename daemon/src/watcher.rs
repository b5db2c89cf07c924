//! The file watcher: covers what hooks miss (merge, fetch, reset, update-ref, a push to a
//! repository without hooks). One inotify watcher serves every repository; it watches only
//! ref storage (the git dir itself, non-recursively, for HEAD and packed-refs; `refs/`
//! recursively), never objects or a work tree. Every event is an idempotent wake-up: the job
//! re-reads refs from git and compares them with the state.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use notify::event::{EventKind, ModifyKind};
use notify::{RecursiveMode, Watcher as _};
use tracing::{debug, warn};

use crate::scheduler::JobFlags;
use crate::shared::Shared;

/// Quiet time after the last event before waking (git writes several files per update).
const SETTLE: Duration = Duration::from_millis(100);
/// While a lock file or a rebase is present, look again after this long.
const RECHECK: Duration = Duration::from_millis(250);
/// Never hold a wake-up back longer than this, whatever git leaves lying around.
const MAX_DEFER: Duration = Duration::from_secs(30);

enum Signal {
    Repo(PathBuf),
    RescanAll,
}

pub struct RefWatcher {
    inner: Mutex<Option<notify::RecommendedWatcher>>,
    repos: Arc<Mutex<HashMap<PathBuf, String>>>,
}

fn interesting(path: &Path, git_dir: &Path) -> bool {
    let Ok(rel) = path.strip_prefix(git_dir) else { return false };
    let first = rel.components().next().map(|c| c.as_os_str().to_string_lossy().into_owned()).unwrap_or_default();
    matches!(first.as_str(), "HEAD" | "packed-refs" | "refs" | "HEAD.lock" | "packed-refs.lock" | "reftable")
}

/// Is git in the middle of something that will move refs again shortly?
fn busy(git_dir: &Path) -> bool {
    ["index.lock", "HEAD.lock", "packed-refs.lock", "rebase-merge", "rebase-apply"].iter().any(|f| git_dir.join(f).exists())
}

impl RefWatcher {
    /// Starts the watcher and its debouncing thread. Returns None (with a warning) when the
    /// platform cannot watch; hooks and explicit wake-ups still work then.
    pub fn start(shared: Arc<Shared>) -> Option<Arc<RefWatcher>> {
        let (tx, rx) = channel::<Signal>();
        let repos: Arc<Mutex<HashMap<PathBuf, String>>> = Arc::default();
        let lookup = repos.clone();
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
            Ok(event) if event.need_rescan() => {
                let _ = tx.send(Signal::RescanAll);
            }
            // Reads (the daemon's own jobs open HEAD) and metadata changes move no ref; acting
            // on them would make every job wake its repository again.
            Ok(event) if matches!(event.kind, EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(_)) | EventKind::Other) => {}
            Ok(event) => {
                let repos = lookup.lock().expect("watch table");
                for path in &event.paths {
                    if let Some(git_dir) = path.ancestors().find(|a| repos.contains_key(*a)) {
                        if interesting(path, git_dir) {
                            let _ = tx.send(Signal::Repo(git_dir.to_path_buf()));
                        }
                    }
                }
            }
            // Queue overflow and friends: re-read every ref.
            Err(_) => {
                let _ = tx.send(Signal::RescanAll);
            }
        });
        let watcher = match watcher {
            Ok(w) => w,
            Err(e) => {
                warn!(error = %e, "file watching unavailable; relying on hooks and explicit notify");
                return None;
            }
        };
        let this = Arc::new(RefWatcher { inner: Mutex::new(Some(watcher)), repos: repos.clone() });
        std::thread::Builder::new()
            .name("evolora-watch".into())
            .spawn(move || debounce(rx, repos, shared))
            .ok()?;
        Some(this)
    }

    /// Watches a repository's ref storage.
    pub fn add(&self, git_dir: &Path, key: &str) {
        self.repos.lock().expect("watch table").insert(git_dir.to_path_buf(), key.to_owned());
        let mut guard = self.inner.lock().expect("watcher");
        let Some(w) = guard.as_mut() else { return };
        let mut result = w.watch(git_dir, RecursiveMode::NonRecursive);
        let refs = git_dir.join("refs");
        if result.is_ok() && refs.is_dir() {
            result = w.watch(&refs, RecursiveMode::Recursive);
        }
        if let Err(e) = result {
            // Typically the inotify watch limit (fs.inotify.max_user_watches).
            warn!(repo = %key, error = %e, "cannot watch this repository's refs; hooks still wake the daemon");
        }
    }

    pub fn remove(&self, git_dir: &Path) {
        self.repos.lock().expect("watch table").remove(git_dir);
        if let Some(w) = self.inner.lock().expect("watcher").as_mut() {
            let _ = w.unwatch(&git_dir.join("refs"));
            let _ = w.unwatch(git_dir);
        }
    }
}

fn debounce(rx: Receiver<Signal>, repos: Arc<Mutex<HashMap<PathBuf, String>>>, shared: Arc<Shared>) {
    // git dir → (wake no earlier than, first event)
    let mut pending: HashMap<PathBuf, (Instant, Instant)> = HashMap::new();
    let mut sender_alive = true;
    while sender_alive || !pending.is_empty() {
        if shared.is_shutting_down() {
            return;
        }
        let timeout = pending.values().map(|(at, _)| at.saturating_duration_since(Instant::now())).min().unwrap_or(Duration::from_millis(500));
        match rx.recv_timeout(timeout) {
            Ok(Signal::Repo(git_dir)) => {
                let now = Instant::now();
                let entry = pending.entry(git_dir).or_insert((now, now));
                entry.0 = now + SETTLE;
            }
            Ok(Signal::RescanAll) => {
                let now = Instant::now();
                for git_dir in repos.lock().expect("watch table").keys() {
                    pending.entry(git_dir.clone()).or_insert((now, now)).0 = now + SETTLE;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => sender_alive = false,
        }
        let now = Instant::now();
        let due: Vec<PathBuf> = pending.iter().filter(|(_, (at, _))| *at <= now).map(|(g, _)| g.clone()).collect();
        for git_dir in due {
            let (_, first) = pending[&git_dir];
            if busy(&git_dir) && now.duration_since(first) < MAX_DEFER {
                pending.get_mut(&git_dir).expect("due entry").0 = now + RECHECK;
                continue;
            }
            pending.remove(&git_dir);
            if let Some(key) = repos.lock().expect("watch table").get(&git_dir).cloned() {
                debug!(repo = %key, "ref change seen by the watcher");
                shared.scheduler.wake(&key, JobFlags::default());
            }
        }
    }
}

