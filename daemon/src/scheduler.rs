//! The work queue between wake-ups and the model thread.
//!
//! One entry per repository: a wake-up for a repository that is already queued merges into
//! that entry, and one that arrives while the repository's job runs queues exactly one
//! follow-up. Entries are served first in, first out, so no repository can starve another.

use std::collections::{HashMap, VecDeque};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// What a job must do beyond catching up with git.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobFlags {
    /// Publish an adapter even if no trigger fires.
    pub regenerate: bool,
    /// Rebuild the state from a fresh snapshot of the tip.
    pub reset: bool,
}

impl JobFlags {
    fn merge(&mut self, other: JobFlags) {
        self.regenerate |= other.regenerate;
        self.reset |= other.reset;
    }
}

#[derive(Default)]
struct Queue {
    order: VecDeque<String>,
    pending: HashMap<String, JobFlags>,
    running: Option<String>,
    /// When each queued entry's first wake-up came, and the running job's.
    woken_at: HashMap<String, Instant>,
    running_woken_at: Option<Instant>,
    /// Set by [`Scheduler::poke`]: the model thread has other work than a job.
    poked: bool,
    closed: bool,
}

#[derive(Default)]
pub struct Scheduler {
    queue: Mutex<Queue>,
    ready: Condvar,
}

impl Scheduler {
    /// Queues a job for `repo`, merging with one already waiting.
    pub fn wake(&self, repo: &str, flags: JobFlags) {
        let mut q = self.queue.lock().expect("scheduler lock");
        if q.closed {
            return;
        }
        match q.pending.get_mut(repo) {
            Some(existing) => existing.merge(flags),
            None => {
                q.pending.insert(repo.to_owned(), flags);
                q.woken_at.insert(repo.to_owned(), Instant::now());
                q.order.push_back(repo.to_owned());
            }
        }
        self.ready.notify_one();
    }

    /// Takes the next job, waiting at most `timeout`. `None` on timeout or after close.
    pub fn next(&self, timeout: Duration) -> Option<(String, JobFlags)> {
        let mut q = self.queue.lock().expect("scheduler lock");
        loop {
            if q.closed {
                return None;
            }
            if q.poked {
                q.poked = false;
                return None;
            }
            if let Some(repo) = q.order.pop_front() {
                let flags = q.pending.remove(&repo).unwrap_or_default();
                q.running_woken_at = q.woken_at.remove(&repo);
                q.running = Some(repo.clone());
                return Some((repo, flags));
            }
            let (guard, res) = self.ready.wait_timeout(q, timeout).expect("scheduler lock");
            q = guard;
            if res.timed_out() && q.order.is_empty() {
                return None;
            }
        }
    }

    /// Marks the running job finished.
    pub fn done(&self) {
        let mut q = self.queue.lock().expect("scheduler lock");
        q.running = None;
        q.running_woken_at = None;
    }

    /// Makes a waiting [`Scheduler::next`] return `None` at once, so that the model thread
    /// looks at its other work.
    pub fn poke(&self) {
        self.queue.lock().expect("scheduler lock").poked = true;
        self.ready.notify_all();
    }

    /// When the running job's first wake-up came.
    pub fn running_woken_at(&self) -> Option<Instant> {
        self.queue.lock().expect("scheduler lock").running_woken_at
    }

    /// Is `repo` queued or running?
    pub fn is_busy(&self, repo: &str) -> bool {
        let q = self.queue.lock().expect("scheduler lock");
        q.pending.contains_key(repo) || q.running.as_deref() == Some(repo)
    }

    pub fn queued(&self) -> usize {
        self.queue.lock().expect("scheduler lock").order.len()
    }

    pub fn is_closed(&self) -> bool {
        self.queue.lock().expect("scheduler lock").closed
    }

    /// Stops handing out jobs; the running one finishes.
    pub fn close(&self) {
        self.queue.lock().expect("scheduler lock").closed = true;
        self.ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wake_ups_coalesce_and_order_is_fair() {
        let s = Scheduler::default();
        s.wake("a", JobFlags::default());
        s.wake("b", JobFlags::default());
        s.wake("a", JobFlags { regenerate: true, reset: false });
        let (first, flags) = s.next(Duration::ZERO).unwrap();
        assert_eq!(first, "a");
        assert!(flags.regenerate, "flags of merged wake-ups are kept");
        // A wake-up while `a` runs queues one follow-up behind `b`.
        s.wake("a", JobFlags::default());
        s.wake("a", JobFlags::default());
        s.done();
        assert_eq!(s.next(Duration::ZERO).unwrap().0, "b");
        s.done();
        assert_eq!(s.next(Duration::ZERO).unwrap().0, "a");
        s.done();
        assert!(s.next(Duration::from_millis(1)).is_none());
    }
}
