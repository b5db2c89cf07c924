//! The file watcher: covers what hooks miss (merge, fetch, reset, update-ref, a push to a
//! repository without hooks). One inotify watcher serves every repository; it watches only
//! ref storage (the git dir itself, non-recursively, for HEAD and packed-refs; `refs/`
//! recursively), never objects or a work tree. Every event is an idempotent wake-up: the job
//! re-reads refs from git and compares them with the state. The watcher knows nothing of
//! the daemon: it sends wake-ups through [`WakeUps`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{debug, warn};

/// Where the watcher sends wake-ups (the daemon's job queue).
pub trait WakeUps: Send + Sync + 'static {
    /// Asks for a catch-up of the repository `repo_key`.
    fn wake(&self, repo_key: &str);
    /// No more wake-ups are taken: the watcher stops.
    fn is_closed(&self) -> bool;
}

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

#[cfg(target_os = "linux")]
pub use linux::RefWatcher;
#[cfg(not(target_os = "linux"))]
pub use portable::RefWatcher;

/// Linux: inotify directly, subscribed only to events that can move a ref (creates, renames,
/// writes closed, deletes). notify's inotify backend also subscribes to opens, so every
/// reader of HEAD (our own jobs, `git status`, an editor) produces events; with thousands of
/// repositories those overflow the kernel queue, and an overflow means "rescan everything",
/// whose reads overflow it again.
#[cfg(target_os = "linux")]
mod linux {
    use super::*;
    use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};

    const MASK: WatchMask = WatchMask::CREATE
        .union(WatchMask::MOVED_TO)
        .union(WatchMask::MOVED_FROM)
        .union(WatchMask::CLOSE_WRITE)
        .union(WatchMask::DELETE);

    #[derive(Default)]
    struct Table {
        /// watch → (git dir, watched directory)
        by_wd: HashMap<WatchDescriptor, (PathBuf, PathBuf)>,
        /// git dir → (repository key, its watches)
        by_repo: HashMap<PathBuf, (String, Vec<WatchDescriptor>)>,
    }

    pub struct RefWatcher {
        watches: Mutex<Watches>,
        table: Arc<Mutex<Table>>,
    }

    fn watch_tree(watches: &mut Watches, table: &mut Table, git_dir: &Path, dir: &Path) {
        let Ok(wd) = watches.add(dir, MASK) else { return };
        table.by_wd.insert(wd.clone(), (git_dir.to_path_buf(), dir.to_path_buf()));
        if let Some((_, wds)) = table.by_repo.get_mut(git_dir) {
            wds.push(wd);
        }
        if dir != git_dir {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    watch_tree(watches, table, git_dir, &entry.path());
                }
            }
        }
    }

    impl RefWatcher {
        pub fn start(wake: Arc<dyn WakeUps>) -> Option<Arc<RefWatcher>> {
            let mut inotify = match Inotify::init() {
                Ok(i) => i,
                Err(e) => {
                    warn!(error = %e, "file watching unavailable; relying on hooks and explicit notify");
                    return None;
                }
            };
            let table: Arc<Mutex<Table>> = Arc::default();
            let this = Arc::new(RefWatcher { watches: Mutex::new(inotify.watches()), table: table.clone() });
            let (tx, rx) = channel::<Signal>();
            let mut reader_watches = inotify.watches();
            let reader_table = table.clone();
            std::thread::Builder::new()
                .name("evolora-inotify".into())
                .spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let Ok(events) = inotify.read_events_blocking(&mut buf) else { return };
                        for ev in events {
                            if ev.mask.contains(EventMask::Q_OVERFLOW) {
                                let _ = tx.send(Signal::RescanAll);
                                continue;
                            }
                            let mut t = reader_table.lock().expect("watch table");
                            if ev.mask.contains(EventMask::IGNORED) {
                                t.by_wd.remove(&ev.wd);
                                continue;
                            }
                            let Some((git_dir, dir)) = t.by_wd.get(&ev.wd).cloned() else { continue };
                            let path = match ev.name {
                                Some(n) => dir.join(n),
                                None => dir.clone(),
                            };
                            // New ref directories (refs/heads/feature/...) get watched too.
                            if ev.mask.contains(EventMask::ISDIR) && ev.mask.intersects(EventMask::CREATE | EventMask::MOVED_TO) && path.starts_with(git_dir.join("refs")) {
                                watch_tree(&mut reader_watches, &mut t, &git_dir, &path);
                            }
                            drop(t);
                            if interesting(&path, &git_dir) {
                                let _ = tx.send(Signal::Repo(git_dir));
                            }
                        }
                    }
                })
                .ok()?;
            let repos = RepoKeys(table);
            std::thread::Builder::new().name("evolora-watch".into()).spawn(move || debounce(rx, repos, wake)).ok()?;
            Some(this)
        }

        /// Watches a repository's git dir (HEAD, packed-refs) and every directory under refs/.
        pub fn add(&self, git_dir: &Path, key: &str) {
            let mut t = self.table.lock().expect("watch table");
            if t.by_repo.contains_key(git_dir) {
                return;
            }
            t.by_repo.insert(git_dir.to_path_buf(), (key.to_owned(), Vec::new()));
            let mut w = self.watches.lock().expect("watches");
            watch_tree(&mut w, &mut t, git_dir, git_dir);
            watch_tree(&mut w, &mut t, git_dir, &git_dir.join("refs"));
            if t.by_repo.get(git_dir).is_some_and(|(_, wds)| wds.is_empty()) {
                // Typically the inotify watch limit (fs.inotify.max_user_watches).
                warn!(repo = %key, "cannot watch this repository's refs; hooks still wake the daemon");
            }
        }

        pub fn remove(&self, git_dir: &Path) {
            let mut t = self.table.lock().expect("watch table");
            if let Some((_, wds)) = t.by_repo.remove(git_dir) {
                let mut w = self.watches.lock().expect("watches");
                for wd in wds {
                    t.by_wd.remove(&wd);
                    let _ = w.remove(wd);
                }
            }
        }
    }

    struct RepoKeys(Arc<Mutex<Table>>);

    impl KeyLookup for RepoKeys {
        fn key(&self, git_dir: &Path) -> Option<String> {
            self.0.lock().expect("watch table").by_repo.get(git_dir).map(|(k, _)| k.clone())
        }
        fn all(&self) -> Vec<PathBuf> {
            self.0.lock().expect("watch table").by_repo.keys().cloned().collect()
        }
    }
}

/// Elsewhere: the notify crate.
#[cfg(not(target_os = "linux"))]
mod portable {
    use super::*;
    use notify::event::{EventKind, ModifyKind};
    use notify::{RecursiveMode, Watcher as _};

    pub struct RefWatcher {
        inner: Mutex<Option<notify::RecommendedWatcher>>,
        repos: Arc<Mutex<HashMap<PathBuf, String>>>,
    }

    struct RepoKeys(Arc<Mutex<HashMap<PathBuf, String>>>);

    impl KeyLookup for RepoKeys {
        fn key(&self, git_dir: &Path) -> Option<String> {
            self.0.lock().expect("watch table").get(git_dir).cloned()
        }
        fn all(&self) -> Vec<PathBuf> {
            self.0.lock().expect("watch table").keys().cloned().collect()
        }
    }

    impl RefWatcher {
        pub fn start(wake: Arc<dyn WakeUps>) -> Option<Arc<RefWatcher>> {
            let (tx, rx) = channel::<Signal>();
            let repos: Arc<Mutex<HashMap<PathBuf, String>>> = Arc::default();
            let lookup = repos.clone();
            let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
                Ok(event) if event.need_rescan() => {
                    let _ = tx.send(Signal::RescanAll);
                }
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
            let keys = RepoKeys(repos);
            std::thread::Builder::new().name("evolora-watch".into()).spawn(move || debounce(rx, keys, wake)).ok()?;
            Some(this)
        }

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
}

fn interesting(path: &Path, git_dir: &Path) -> bool {
    let Ok(rel) = path.strip_prefix(git_dir) else { return false };
    let first = rel.components().next().map(|c| c.as_os_str().to_string_lossy().into_owned()).unwrap_or_default();
    matches!(first.as_str(), "HEAD" | "packed-refs" | "refs" | "reftable")
}

/// Is git in the middle of something that will move refs again shortly?
fn busy(git_dir: &Path) -> bool {
    ["index.lock", "HEAD.lock", "packed-refs.lock", "rebase-merge", "rebase-apply"].iter().any(|f| git_dir.join(f).exists())
}

/// Which repository a git dir belongs to, for the debouncer.
trait KeyLookup {
    fn key(&self, git_dir: &Path) -> Option<String>;
    fn all(&self) -> Vec<PathBuf>;
}

fn debounce(rx: Receiver<Signal>, repos: impl KeyLookup, wake: Arc<dyn WakeUps>) {
    // git dir → (wake no earlier than, first event)
    let mut pending: HashMap<PathBuf, (Instant, Instant)> = HashMap::new();
    let mut sender_alive = true;
    while sender_alive || !pending.is_empty() {
        if wake.is_closed() {
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
                for git_dir in repos.all() {
                    pending.entry(git_dir).or_insert((now, now)).0 = now + SETTLE;
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
            if let Some(key) = repos.key(&git_dir) {
                debug!(repo = %key, "ref change seen by the watcher");
                wake.wake(&key);
            }
        }
    }
}

