//! Runs a sweep's jobs several at a time and hands their results back in job order, so a
//! parallel sweep prints, sums and stops exactly where a sequential one does.
//!
//! Not here: how a job runs (the caller's function; `detcd-sim sweep --jobs N` runs each
//! in a process of its own, since a simulation run forks and a process with several
//! threads must not fork), or what a result means.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

/// Runs `run(i)` for every `i` below `count` on `workers` threads and calls `take(i,
/// value)` on the calling thread in index order as the values come in. Once `take`
/// returns false no further job starts and later values are dropped; the call returns
/// when the jobs already running have finished.
pub fn in_order<T: Send>(
    count: usize,
    workers: usize,
    run: impl Fn(usize) -> T + Sync,
    mut take: impl FnMut(usize, T) -> bool,
) {
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let (done, results) = mpsc::channel();
    std::thread::scope(|scope| {
        for _ in 0..workers.clamp(1, count.max(1)) {
            let done = done.clone();
            let (next, stop, run) = (&next, &stop, &run);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count || done.send((i, run(i))).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done);
        let mut waiting = BTreeMap::new();
        let mut due = 0;
        for (i, value) in results {
            if stop.load(Ordering::Relaxed) {
                continue;
            }
            waiting.insert(i, value);
            while let Some(value) = waiting.remove(&due) {
                if !take(due, value) {
                    stop.store(true, Ordering::Relaxed);
                    break;
                }
                due += 1;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Later jobs finish first (they sleep less), yet arrive in index order.
    #[test]
    fn values_come_in_job_order() {
        let mut seen = Vec::new();
        in_order(
            12,
            4,
            |i| {
                std::thread::sleep(Duration::from_millis((12 - i as u64) * 3));
                i * 10
            },
            |i, v| {
                seen.push((i, v));
                true
            },
        );
        let expected: Vec<_> = (0..12).map(|i| (i, i * 10)).collect();
        assert_eq!(seen, expected);
    }

    /// A `take` that says stop ends the sweep there: nothing after it is taken, and jobs
    /// not yet started never run.
    #[test]
    fn stopping_takes_nothing_after() {
        let started = AtomicUsize::new(0);
        let mut seen = Vec::new();
        in_order(
            200,
            2,
            |i| {
                started.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
                i
            },
            |i, _| {
                seen.push(i);
                i < 3
            },
        );
        assert_eq!(seen, vec![0, 1, 2, 3]);
        assert!(started.load(Ordering::Relaxed) < 20, "jobs kept starting");
    }

    #[test]
    fn no_jobs_and_one_worker() {
        let mut seen = Vec::new();
        in_order(
            0,
            3,
            |i| i,
            |i, _| {
                seen.push(i);
                true
            },
        );
        assert!(seen.is_empty());
        in_order(
            3,
            1,
            |i| i,
            |i, _| {
                seen.push(i);
                true
            },
        );
        assert_eq!(seen, vec![0, 1, 2]);
    }
}
