//! Deleting unpublished versions off the publishing path.
//!
//! A pruned version is renamed to a temporary name first (retention's business), which is
//! what unpublishes it; what is left is freeing its blocks. On ext4 unlinking a 74 MB
//! weights file takes 30-40 ms of the calling thread, as long as the fsyncs of a whole
//! version directory, so a publish that deleted inline made every client wait for it. Here
//! one low-priority thread deletes the renamed directories in the order they come. Anything
//! it had not reached when the process ended carries the temporary prefix and goes with
//! the orphans at the next start ([`super::dirs::remove_orphans`]).

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex};

use tracing::warn;

/// Deletes directories handed to it on a thread of its own, started with the first.
#[derive(Default)]
pub struct Reaper {
    queue: Mutex<Option<Sender<PathBuf>>>,
    /// Directories handed over and not yet deleted; [`Reaper::wait_idle`] waits for zero.
    pending: Arc<(Mutex<usize>, Condvar)>,
}

impl Reaper {
    /// Deletes `dir` (a temporary name nothing serves any more) soon, on the reaper thread;
    /// on this one if no thread can be started.
    pub fn remove(&self, dir: PathBuf) {
        let mut queue = self.queue.lock().expect("reaper lock");
        if queue.is_none() {
            let (tx, rx) = channel();
            let pending = self.pending.clone();
            match std::thread::Builder::new().name("evolora-reaper".into()).spawn(move || reap(rx, pending)) {
                Ok(_) => *queue = Some(tx),
                Err(_) => {
                    drop(queue);
                    remove_now(&dir);
                    return;
                }
            }
        }
        *self.pending.0.lock().expect("reaper lock") += 1;
        if let Err(back) = queue.as_ref().expect("started above").send(dir) {
            // The thread is gone (it never exits while the sender lives, short of a panic).
            *self.pending.0.lock().expect("reaper lock") -= 1;
            *queue = None;
            drop(queue);
            remove_now(&back.0);
        }
    }

    /// Whether directories handed over are still being deleted.
    pub fn busy(&self) -> bool {
        *self.pending.0.lock().expect("reaper lock") > 0
    }

    /// Waits until every directory handed over so far is deleted.
    #[cfg(test)]
    pub fn wait_idle(&self) {
        let (count, done) = &*self.pending;
        let mut n = count.lock().expect("reaper lock");
        while *n > 0 {
            n = done.wait(n).expect("reaper lock");
        }
    }
}

fn reap(rx: Receiver<PathBuf>, pending: Arc<(Mutex<usize>, Condvar)>) {
    lower_priority();
    for dir in rx {
        remove_now(&dir);
        let (count, done) = &*pending;
        *count.lock().expect("reaper lock") -= 1;
        done.notify_all();
    }
}

fn remove_now(dir: &std::path::Path) {
    if let Err(e) = std::fs::remove_dir_all(dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        warn!(path = %dir.display(), error = %e, "an adapter version was unpublished but not fully deleted; it is removed at the next start");
    }
}

/// The kernel's work of freeing blocks runs on this thread: nice 19, so that it gives way
/// to the head's threads making the next adapter.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid has no preconditions; setpriority on our own thread id only changes
    // this thread's nice value (Linux applies PRIO_PROCESS to a single thread).
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_handed_over_are_deleted() {
        let tmp = tempfile::tempdir().unwrap();
        let reaper = Reaper::default();
        let dirs: Vec<PathBuf> = (0..5).map(|i| tmp.path().join(format!(".tmp-pruned-{i}"))).collect();
        for d in &dirs {
            std::fs::create_dir_all(d.join("sub")).unwrap();
            std::fs::write(d.join("sub/f"), vec![0u8; 1 << 16]).unwrap();
            reaper.remove(d.clone());
        }
        reaper.wait_idle();
        assert!(dirs.iter().all(|d| !d.exists()));
        // A directory already gone is not an error, and the thread keeps serving.
        reaper.remove(dirs[0].clone());
        let late = tmp.path().join(".tmp-pruned-late");
        std::fs::create_dir(&late).unwrap();
        reaper.remove(late.clone());
        reaper.wait_idle();
        assert!(!late.exists());
    }
}
