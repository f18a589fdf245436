//! Small helpers for CPU-parallel work over a list, with an optional progress bar.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use indicatif::ProgressBar;

/// Number of worker threads to use: the machine's parallelism.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// A progress bar of `len` steps: [`crate::util::progress_bar`] with a known total (kept for the
/// callers that use this name).
pub fn progress_bar(len: u64, message: &str) -> ProgressBar {
    crate::util::progress_bar(Some(len), message)
}

/// Applies `f` to every item on `threads` threads (items are handed out one at a time, so slow
/// items do not stall a whole chunk) and returns the results in input order. The bar, if given, advances once per item.
pub fn map_parallel<T, R, F>(items: &[T], threads: usize, bar: Option<&ProgressBar>, f: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> R + Sync,
{
    let threads = threads.clamp(1, items.len().max(1));
    if threads == 1 {
        return items
            .iter()
            .map(|item| {
                let r = f(item);
                if let Some(bar) = bar {
                    bar.inc(1);
                }
                r
            })
            .collect();
    }
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut local = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    local.push((i, f(item)));
                    if let Some(bar) = bar {
                        bar.inc(1);
                    }
                    if local.len() >= 64 {
                        flush(&results, &mut local);
                    }
                }
                flush(&results, &mut local);
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .into_iter()
        .map(|r| r.expect("map_parallel: every index is filled exactly once"))
        .collect()
}

fn flush<R>(results: &Mutex<Vec<Option<R>>>, local: &mut Vec<(usize, R)>) {
    let mut guard = results
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for (i, r) in local.drain(..) {
        guard[i] = Some(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_on_any_thread_count() {
        let items: Vec<usize> = (0..1000).collect();
        for threads in [1, 2, 7] {
            let out = map_parallel(&items, threads, None, |&x| x * 2);
            assert_eq!(out, items.iter().map(|x| x * 2).collect::<Vec<_>>());
        }
        assert!(map_parallel(&[] as &[u8], 4, None, |_| 0).is_empty());
    }
}
