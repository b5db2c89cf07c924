//! An in-order parallel map: work items run on several threads, results come back to the
//! calling thread in item order, so that a sequential consumer (the GRU) can start on the
//! first results while later ones are still being computed.

use std::any::Any;
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::{Condvar, Mutex};

struct Progress<R> {
    /// A worker's panic, re-raised on the calling thread (a lost item would hang it).
    panic: Option<Box<dyn Any + Send>>,
    /// Next item a worker may take.
    next: usize,
    /// Items handed to the consumer so far.
    consumed: usize,
    ready: BTreeMap<usize, R>,
    stop: bool,
}

/// Runs `work` over `items` on `threads` threads (each with its own state from `init`) and
/// calls `sink(index, result)` on the calling thread, in index order. Workers run at most
/// `lookahead` items ahead of the consumer, which bounds memory. `sink` returning false
/// stops the map: items not yet started are never started. A panic in `work` stops the
/// map and is re-raised on the calling thread.
///
/// With one thread, or one item, everything runs on the calling thread.
pub fn ordered_map<T, R, S>(
    items: &[T],
    threads: usize,
    lookahead: usize,
    init: impl Fn() -> S + Sync,
    work: impl Fn(&mut S, &T) -> R + Sync,
    mut sink: impl FnMut(usize, R) -> bool,
) where
    T: Sync,
    R: Send,
{
    let threads = threads.max(1).min(items.len());
    if threads <= 1 {
        let mut state = init();
        for (i, item) in items.iter().enumerate() {
            if !sink(i, work(&mut state, item)) {
                return;
            }
        }
        return;
    }
    let lookahead = lookahead.max(threads);
    let progress = Mutex::new(Progress { panic: None, next: 0, consumed: 0, ready: BTreeMap::new(), stop: false });
    let changed = Condvar::new();
    std::thread::scope(|scope| {
        // However the consumer leaves (done, told to stop, or a panic in `sink`), workers
        // waiting at the lookahead must be released, or the scope would wait for them forever.
        struct Release<'a, R>(&'a Mutex<Progress<R>>, &'a Condvar);
        impl<R> Drop for Release<'_, R> {
            fn drop(&mut self) {
                if let Ok(mut p) = self.0.lock() {
                    p.stop = true;
                }
                self.1.notify_all();
            }
        }
        let _release = Release(&progress, &changed);
        for _ in 0..threads {
            scope.spawn(|| {
                let mut state = init();
                loop {
                    let index = {
                        let mut p = progress.lock().expect("progress lock");
                        while !p.stop && p.next < items.len() && p.next >= p.consumed + lookahead {
                            p = changed.wait(p).expect("progress lock");
                        }
                        if p.stop || p.next >= items.len() {
                            return;
                        }
                        p.next += 1;
                        p.next - 1
                    };
                    let result = catch_unwind(AssertUnwindSafe(|| work(&mut state, &items[index])));
                    let failed = {
                        let mut p = progress.lock().expect("progress lock");
                        match result {
                            Ok(r) => {
                                p.ready.insert(index, r);
                                false
                            }
                            Err(payload) => {
                                p.panic.get_or_insert(payload);
                                p.stop = true;
                                true
                            }
                        }
                    };
                    changed.notify_all();
                    if failed {
                        return;
                    }
                }
            });
        }
        for index in 0..items.len() {
            let result = {
                let mut p = progress.lock().expect("progress lock");
                loop {
                    if let Some(r) = p.ready.remove(&index) {
                        p.consumed += 1;
                        break r;
                    }
                    if let Some(payload) = p.panic.take() {
                        drop(p);
                        resume_unwind(payload);
                    }
                    p = changed.wait(p).expect("progress lock");
                }
            };
            changed.notify_all();
            if !sink(index, result) {
                break;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn results_arrive_in_order_whatever_the_finishing_order() {
        let items: Vec<u64> = (0..200).collect();
        let mut seen = Vec::new();
        ordered_map(
            &items,
            4,
            16,
            || (),
            |_, &x| {
                // Later items often finish first.
                std::thread::sleep(std::time::Duration::from_micros((200 - x) * 20));
                x * x
            },
            |i, r| {
                seen.push((i, r));
                true
            },
        );
        assert_eq!(seen, items.iter().enumerate().map(|(i, &x)| (i, x * x)).collect::<Vec<_>>());
    }

    #[test]
    fn workers_stay_within_the_lookahead_and_stop_when_told() {
        let items: Vec<usize> = (0..1000).collect();
        let started = AtomicUsize::new(0);
        let mut consumed = 0;
        ordered_map(
            &items,
            3,
            8,
            || (),
            |_, &x| {
                started.fetch_add(1, Ordering::SeqCst);
                x
            },
            |i, _| {
                consumed += 1;
                // The consumer has taken i + 1 items; workers may have started up to 8 more.
                assert!(started.load(Ordering::SeqCst) <= i + 1 + 8, "ran ahead of the lookahead");
                i < 99
            },
        );
        assert_eq!(consumed, 100);
        assert!(started.load(Ordering::SeqCst) <= 100 + 8, "items after the stop were started");
    }

    #[test]
    fn a_panicking_item_is_raised_on_the_caller_instead_of_hanging_it() {
        let items: Vec<usize> = (0..100).collect();
        let outcome = std::panic::catch_unwind(|| {
            ordered_map(&items, 3, 8, || (), |_, &x| if x == 37 { panic!("item 37") } else { x }, |_, _| true);
        });
        let payload = outcome.expect_err("the panic reaches the caller");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"item 37"));
    }

    #[test]
    fn a_panicking_consumer_releases_the_workers() {
        let items: Vec<usize> = (0..1000).collect();
        let outcome = std::panic::catch_unwind(|| {
            ordered_map(&items, 3, 4, || (), |_, &x| x, |i, _| if i == 10 { panic!("consumer") } else { true });
        });
        assert!(outcome.is_err(), "the consumer's panic comes back, rather than a hang");
    }

    #[test]
    fn each_worker_has_its_own_state() {
        let items: Vec<u32> = (0..64).collect();
        let inits = AtomicUsize::new(0);
        let mut total = 0;
        ordered_map(
            &items,
            2,
            4,
            || {
                inits.fetch_add(1, Ordering::SeqCst);
                0u32
            },
            |count, &x| {
                *count += 1;
                x
            },
            |_, x| {
                total += x;
                true
            },
        );
        assert_eq!(total, (0..64).sum::<u32>());
        assert_eq!(inits.load(Ordering::SeqCst), 2);
    }
}
